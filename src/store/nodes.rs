//! Nodes of the tenant tree.
//!
//! Each node stores its materialised path (`/<root id>/…/<own id>/`), so "is X in Y's subtree" is
//! a prefix test and a subtree is one index range scan; a move rewrites the moved subtree's paths
//! in one statement. Nodes are deleted softly: the id is never reused and history stays readable.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::nodes;
use super::{DbConnection, corrupt};
use crate::domain::ids::NodeId;
use crate::domain::mail::{InboundRecipients, LocalPartCase};
use crate::domain::tree::{self, NodeKind, NodeStatus};
use diesel::sql_types::{Integer, Text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: NodeId,
    pub parent_id: Option<NodeId>,
    pub path: String,
    pub kind: NodeKind,
    pub name: String,
    pub description: Option<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub status: NodeStatus,
    /// The topmost node of its lineage (itself included) whose status is `suspended`: while there
    /// is one, the node is read-only (see `auth::guard`). Read in the same statement as the node.
    pub suspended_by: Option<NodeId>,
    /// A customer setting: how many aliases one of its mailboxes may have.
    pub max_aliases_per_mailbox: i32,
    /// A customer setting: whether a check may enrol a sender it has not seen before.
    pub auto_enrol: bool,
    /// A customer setting: which recipients on its domains are accepted inbound.
    pub inbound_recipients: InboundRecipients,
    /// A customer setting: where its domains' postmaster@ is delivered (stored address form).
    pub role_recipient: Option<String>,
    /// A customer setting: whether its local parts compare regardless of case.
    pub local_part_case: LocalPartCase,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Aliases per mailbox unless a customer says otherwise.
pub(crate) const DEFAULT_MAX_ALIASES: i32 = 10;

#[derive(Queryable, Selectable)]
#[diesel(table_name = nodes)]
struct NodeRow {
    id: String,
    parent_id: Option<String>,
    path: String,
    kind: String,
    name: String,
    description: Option<String>,
    contact_phone: Option<String>,
    contact_email: Option<String>,
    status: String,
    max_aliases_per_mailbox: i32,
    auto_enrol: bool,
    inbound_recipients: String,
    role_recipient: Option<String>,
    local_part_case: String,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// The id of the topmost suspended node whose path is a prefix of the row's (the row itself
/// included), as a scalar subquery on the outer `nodes` row. A prefix of a path sorts before it, so
/// the first in path order is the topmost. It scans only the partial index `nodes_suspended`
/// (live suspended nodes), from its start up to the row's own path.
type SuspendedBy = diesel::expression::SqlLiteral<diesel::sql_types::Nullable<Text>>;
fn suspended_by() -> SuspendedBy {
    diesel::dsl::sql(
        "(SELECT s.id FROM nodes s \
          WHERE s.status = 'suspended' AND s.deleted_at IS NULL \
            AND s.path <= nodes.path AND substr(nodes.path, 1, length(s.path)) = s.path \
          ORDER BY s.path LIMIT 1)",
    )
}

/// What every query that loads a [`Node`] selects.
fn node_select() -> (
    diesel::dsl::AsSelect<NodeRow, super::DbBackend>,
    SuspendedBy,
) {
    (NodeRow::as_select(), suspended_by())
}

type Loaded = (NodeRow, Option<String>);

impl TryFrom<Loaded> for Node {
    type Error = diesel::result::Error;
    fn try_from((row, suspended_by): Loaded) -> Result<Self, Self::Error> {
        Ok(Node {
            id: row.id.parse().map_err(corrupt)?,
            parent_id: row
                .parent_id
                .map(|p| p.parse())
                .transpose()
                .map_err(corrupt)?,
            path: row.path,
            kind: row.kind.parse().map_err(corrupt)?,
            name: row.name,
            description: row.description,
            contact_phone: row.contact_phone,
            contact_email: row.contact_email,
            status: row.status.parse().map_err(corrupt)?,
            suspended_by: suspended_by
                .map(|id| id.parse())
                .transpose()
                .map_err(corrupt)?,
            max_aliases_per_mailbox: row.max_aliases_per_mailbox,
            auto_enrol: row.auto_enrol,
            inbound_recipients: row.inbound_recipients.parse().map_err(corrupt)?,
            role_recipient: row.role_recipient,
            local_part_case: row.local_part_case.parse().map_err(corrupt)?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A live node by id; deleted nodes are not found.
pub(crate) fn find(conn: &mut DbConnection, id: NodeId) -> QueryResult<Option<Node>> {
    nodes::table
        .find(id.to_string())
        .filter(nodes::deleted_at.is_null())
        .select(node_select())
        .first::<Loaded>(conn)
        .optional()?
        .map(Node::try_from)
        .transpose()
}

/// The materialised path of node `id`, deleted or not (a deletion's own event still reaches the
/// subscriptions of its lineage).
pub(crate) fn path_of(conn: &mut DbConnection, id: NodeId) -> QueryResult<Option<String>> {
    nodes::table
        .find(id.to_string())
        .select(nodes::path)
        .first(conn)
        .optional()
}

pub fn owner(conn: &mut DbConnection) -> QueryResult<Option<Node>> {
    nodes::table
        .filter(nodes::kind.eq(NodeKind::Owner.as_str()))
        .select(node_select())
        .first::<Loaded>(conn)
        .optional()?
        .map(Node::try_from)
        .transpose()
}

/// Creates the root of the tree. The database refuses a second owner (a unique partial index).
pub(crate) fn insert_owner(conn: &mut DbConnection, name: &str) -> QueryResult<Node> {
    let new = NewNode {
        kind: NodeKind::Owner,
        name: name.to_owned(),
        description: None,
        contact_phone: None,
        contact_email: None,
    };
    insert(conn, None, new)
}

impl Node {
    /// Whether `other` is this node or lies below it.
    pub fn contains(&self, other: &Node) -> bool {
        tree::contains(&self.path, &other.path)
    }

    /// The path of `ancestor` (this node or one above it), a prefix of this node's path.
    pub fn path_of(&self, ancestor: NodeId) -> Option<&str> {
        tree::path_of(&self.path, ancestor)
    }

    /// Keeps `suspended_by` true after the node's own status changed: a suspended ancestor still
    /// covers it; otherwise it is covered by itself or by nothing.
    fn refresh_suspension(&mut self) {
        if self.suspended_by.is_none_or(|by| by == self.id) {
            self.suspended_by = (self.status == NodeStatus::Suspended).then_some(self.id);
        }
    }

    /// The ids from the root down to this node, itself included.
    pub fn lineage(&self) -> Vec<NodeId> {
        tree::lineage(&self.path)
    }
}

pub(crate) use tree::subtree_range;

/// Locks the given nodes' rows until the transaction ends, in path order (ancestors first, and
/// one global order for unrelated nodes, so two writers never wait on each other in a cycle).
/// PostgreSQL only: on SQLite the `BEGIN IMMEDIATE` write transaction already excludes every
/// other writer. See `store::write_tx`.
pub(crate) fn lock(conn: &mut DbConnection, ids: &[NodeId]) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        nodes::table
            .filter(nodes::id.eq_any(ids))
            .order(nodes::path)
            .select(nodes::id)
            .for_update()
            .load::<String>(pg)?;
    }
    Ok(())
}

/// Reads node `id` and locks it, its parent and `others` (in path order), then reads it again:
/// on PostgreSQL a concurrent move may have committed between the first read and the lock, and
/// everything decided afterwards must see the node as it is now. Once its row is locked nobody can
/// move it, so a second look suffices; if its parent did change, the new parent is locked too.
pub(crate) fn find_locked(
    conn: &mut DbConnection,
    id: NodeId,
    others: &[NodeId],
) -> QueryResult<Option<Node>> {
    let Some(first) = find(conn, id)? else {
        return Ok(None);
    };
    let ids: Vec<NodeId> = first
        .parent_id
        .into_iter()
        .chain([id])
        .chain(others.iter().copied())
        .collect();
    lock(conn, &ids)?;
    let Some(now) = find(conn, id)? else {
        return Ok(None);
    };
    if now.parent_id != first.parent_id {
        lock(conn, &now.parent_id.into_iter().collect::<Vec<_>>())?;
    }
    Ok(Some(now))
}

/// What a new child is made of, already validated.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub kind: NodeKind,
    pub name: String,
    pub description: Option<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
}

/// Creates a child of `parent`: active, with the default settings, inside any suspension that
/// covers its parent.
pub(crate) fn insert_child(
    conn: &mut DbConnection,
    parent: &Node,
    new: NewNode,
) -> QueryResult<Node> {
    insert(conn, Some(parent), new)
}

fn insert(conn: &mut DbConnection, parent: Option<&Node>, new: NewNode) -> QueryResult<Node> {
    let id = NodeId::generate();
    let now = super::now();
    let node = Node {
        id,
        parent_id: parent.map(|p| p.id),
        path: format!("{}{id}/", parent.map_or("/", |p| p.path.as_str())),
        kind: new.kind,
        name: new.name,
        description: new.description,
        contact_phone: new.contact_phone,
        contact_email: new.contact_email,
        status: NodeStatus::Active,
        suspended_by: parent.and_then(|p| p.suspended_by),
        max_aliases_per_mailbox: DEFAULT_MAX_ALIASES,
        auto_enrol: true,
        inbound_recipients: InboundRecipients::default(),
        role_recipient: None,
        local_part_case: LocalPartCase::default(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    diesel::insert_into(nodes::table)
        .values((
            nodes::id.eq(node.id.to_string()),
            nodes::parent_id.eq(node.parent_id.map(|p| p.to_string())),
            nodes::path.eq(&node.path),
            nodes::kind.eq(node.kind.as_str()),
            nodes::name.eq(&node.name),
            nodes::description.eq(&node.description),
            nodes::contact_phone.eq(&node.contact_phone),
            nodes::contact_email.eq(&node.contact_email),
            nodes::status.eq(node.status.as_str()),
            nodes::version.eq(node.version),
            nodes::created_at.eq(now),
            nodes::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(node)
}

/// Whether a live sibling under `parent` has this name (other than `except`).
pub(crate) fn sibling_named(
    conn: &mut DbConnection,
    parent: NodeId,
    name: &str,
    except: Option<NodeId>,
) -> QueryResult<bool> {
    let same_name = nodes::table
        .filter(nodes::parent_id.eq(parent.to_string()))
        .filter(nodes::name.eq(name))
        .filter(nodes::deleted_at.is_null())
        .filter(nodes::id.ne(except.map(|e| e.to_string()).unwrap_or_default()));
    diesel::select(diesel::dsl::exists(same_name)).get_result(conn)
}

/// Filters for listing children.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildFilter {
    pub kind: Option<NodeKind>,
    pub status: Option<NodeStatus>,
    pub name_prefix: Option<String>,
    /// Only nodes the usage history counted on this day (that have a row of it).
    pub counted_on: Option<chrono::NaiveDate>,
}

diesel::define_sql_function!(fn lower(text: Text) -> Text);
diesel::define_sql_function!(fn substr(text: Text, start: Integer) -> Text);

/// `text%` for LIKE, with LIKE's own wildcards in `text` escaped.
pub(crate) fn like_prefix(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Live children of `parent` in id (creation) order, after the cursor `after`, at most `limit`.
pub(crate) fn children(
    conn: &mut DbConnection,
    parent: NodeId,
    filter: &ChildFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Node>> {
    list(conn, Scope::ChildrenOf(parent), filter, after, limit)
}

/// Live customers of the subtree whose root has `path` (the root itself if it is one), in id order
/// after the cursor `after`, at most `limit`: one range scan of the path index. With `counted_on`,
/// only those the usage history has a row of that day for.
pub(crate) fn customers_below(
    conn: &mut DbConnection,
    path: &str,
    counted_on: Option<chrono::NaiveDate>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Node>> {
    let customers = ChildFilter {
        kind: Some(NodeKind::Customer),
        counted_on,
        ..ChildFilter::default()
    };
    list(conn, Scope::Subtree(path), &customers, after, limit)
}

/// Where a list of nodes looks.
enum Scope<'a> {
    /// The children of a node.
    ChildrenOf(NodeId),
    /// The subtree whose root has this path, the root included.
    Subtree(&'a str),
}

/// Live nodes of `scope` that pass `filter`, in id (creation) order after the cursor `after`, at
/// most `limit`.
fn list(
    conn: &mut DbConnection,
    scope: Scope<'_>,
    filter: &ChildFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Node>> {
    let mut query = nodes::table
        .filter(nodes::deleted_at.is_null())
        .select(node_select())
        .order(nodes::id)
        .limit(limit)
        .into_boxed();
    query = match scope {
        Scope::ChildrenOf(parent) => query.filter(nodes::parent_id.eq(parent.to_string())),
        Scope::Subtree(path) => {
            let (low, high) = subtree_range(path);
            query
                .filter(nodes::path.ge(low))
                .filter(nodes::path.lt(high))
        }
    };
    if let Some(kind) = filter.kind {
        query = query.filter(nodes::kind.eq(kind.as_str()));
    }
    if let Some(status) = filter.status {
        query = query.filter(nodes::status.eq(status.as_str()));
    }
    if let Some(prefix) = &filter.name_prefix {
        // Case-insensitive on both backends (for ASCII on SQLite, whose lower() knows no more).
        query = query.filter(
            lower(nodes::name)
                .like(like_prefix(&prefix.to_lowercase()))
                .escape('\\'),
        );
    }
    if let Some(day) = filter.counted_on {
        query = query.filter(diesel::dsl::exists(
            super::schema::usage_history::table
                .filter(super::schema::usage_history::node_id.eq(nodes::id))
                .filter(super::schema::usage_history::day.eq(day)),
        ));
    }
    if let Some(after) = after {
        query = query.filter(nodes::id.gt(after.to_owned()));
    }
    query
        .load::<Loaded>(conn)?
        .into_iter()
        .map(Node::try_from)
        .collect()
}

/// The names of the nodes `ids` (deleted ones too), by id. One query per 500 ids.
pub(crate) fn names(
    conn: &mut DbConnection,
    ids: &[NodeId],
) -> QueryResult<std::collections::HashMap<String, String>> {
    let mut names = std::collections::HashMap::new();
    for chunk in super::id_chunks(ids) {
        let rows: Vec<(String, String)> = nodes::table
            .filter(nodes::id.eq_any(&chunk))
            .select((nodes::id, nodes::name))
            .load(conn)?;
        names.extend(rows);
    }
    Ok(names)
}

/// The fields a PATCH may change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct NodeChanges {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub contact_phone: Option<Option<String>>,
    pub contact_email: Option<Option<String>>,
    pub status: Option<NodeStatus>,
    pub max_aliases_per_mailbox: Option<i32>,
    pub auto_enrol: Option<bool>,
    pub inbound_recipients: Option<InboundRecipients>,
    pub role_recipient: Option<Option<String>>,
    pub local_part_case: Option<LocalPartCase>,
}

impl NodeChanges {
    pub fn apply(&self, node: &mut Node) {
        if let Some(name) = &self.name {
            node.name.clone_from(name);
        }
        if let Some(description) = &self.description {
            node.description.clone_from(description);
        }
        if let Some(phone) = &self.contact_phone {
            node.contact_phone.clone_from(phone);
        }
        if let Some(email) = &self.contact_email {
            node.contact_email.clone_from(email);
        }
        if let Some(status) = self.status {
            node.status = status;
        }
        if let Some(max) = self.max_aliases_per_mailbox {
            node.max_aliases_per_mailbox = max;
        }
        if let Some(auto_enrol) = self.auto_enrol {
            node.auto_enrol = auto_enrol;
        }
        if let Some(recipients) = self.inbound_recipients {
            node.inbound_recipients = recipients;
        }
        if let Some(recipient) = &self.role_recipient {
            node.role_recipient.clone_from(recipient);
        }
        if let Some(case) = self.local_part_case {
            node.local_part_case = case;
        }
    }
}

/// Writes `node`'s mutable fields, bumping its version.
pub(crate) fn save(conn: &mut DbConnection, node: &mut Node) -> QueryResult<()> {
    node.refresh_suspension();
    node.version += 1;
    node.updated_at = super::now();
    diesel::update(nodes::table.find(node.id.to_string()))
        .set((
            nodes::name.eq(&node.name),
            nodes::description.eq(&node.description),
            nodes::contact_phone.eq(&node.contact_phone),
            nodes::contact_email.eq(&node.contact_email),
            nodes::status.eq(node.status.as_str()),
            nodes::max_aliases_per_mailbox.eq(node.max_aliases_per_mailbox),
            nodes::auto_enrol.eq(node.auto_enrol),
            nodes::inbound_recipients.eq(node.inbound_recipients.as_str()),
            nodes::role_recipient.eq(&node.role_recipient),
            nodes::local_part_case.eq(node.local_part_case.as_str()),
            nodes::version.eq(node.version),
            nodes::updated_at.eq(node.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn soft_delete(conn: &mut DbConnection, id: NodeId) -> QueryResult<()> {
    let now = super::now();
    diesel::update(nodes::table.find(id.to_string()))
        .set((nodes::deleted_at.eq(now), nodes::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// How many live children a node has.
pub(crate) fn count_children(conn: &mut DbConnection, id: NodeId) -> QueryResult<i64> {
    nodes::table
        .filter(nodes::parent_id.eq(id.to_string()))
        .filter(nodes::deleted_at.is_null())
        .count()
        .get_result(conn)
}

/// Re-parents `node` under `new_parent`, rewriting the paths of its whole subtree.
pub(crate) fn reparent(
    conn: &mut DbConnection,
    node: &mut Node,
    new_parent: &Node,
) -> QueryResult<()> {
    let old_prefix = node.path.clone();
    let new_prefix = format!("{}{}/", new_parent.path, node.id);
    let (low, high) = subtree_range(&old_prefix);
    let keep_from = i32::try_from(old_prefix.len() + 1).map_err(corrupt)?;
    // Lock the whole subtree first (PostgreSQL): the rewrite below must see a child created
    // concurrently under any of its nodes, and writers on those nodes must wait for the new paths.
    if let DbConnection::Postgres(pg) = conn {
        nodes::table
            .filter(nodes::path.ge(low.clone()))
            .filter(nodes::path.lt(high.clone()))
            .order(nodes::path)
            .select(nodes::id)
            .for_update()
            .load::<String>(pg)?;
    }
    diesel::update(
        nodes::table
            .filter(nodes::path.ge(low))
            .filter(nodes::path.lt(high)),
    )
    .set(
        nodes::path.eq(new_prefix
            .clone()
            .into_sql::<Text>()
            .concat(substr(nodes::path, keep_from))),
    )
    .execute(conn)?;
    node.parent_id = Some(new_parent.id);
    node.path = new_prefix;
    // Its lineage is the new parent's now: `save` adds the node's own suspension.
    node.suspended_by = new_parent.suspended_by;
    diesel::update(nodes::table.find(node.id.to_string()))
        .set(nodes::parent_id.eq(new_parent.id.to_string()))
        .execute(conn)?;
    save(conn, node)
}

/// Every live node, for the verifier.
pub(crate) fn all(conn: &mut DbConnection) -> QueryResult<Vec<Node>> {
    nodes::table
        .filter(nodes::deleted_at.is_null())
        .select(node_select())
        .load::<Loaded>(conn)?
        .into_iter()
        .map(Node::try_from)
        .collect()
}
