//! The audit trail: one appended row per write, in the same transaction as the write, so the trail
//! and the data never disagree.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::Value;

use super::DbConnection;
use super::schema::{accounts, api_keys, audit_events, nodes};
use crate::domain::ids::{AuditEventId, NodeId};

/// Who made a change, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The service itself or its command line (first start, `allot init`).
    System,
    Account(crate::domain::ids::AccountId),
    ApiKey(crate::domain::ids::ApiKeyId),
}

impl Actor {
    /// `system`, `account:<id>` or `api_key:<id>`: how the trail and idempotency records name it.
    pub fn as_text(&self) -> String {
        match self {
            Self::System => "system".to_owned(),
            Self::Account(id) => format!("account:{id}"),
            Self::ApiKey(id) => format!("api_key:{id}"),
        }
    }
}

/// One change. `before` and `after` must never hold a secret.
#[derive(Debug, Clone)]
pub(crate) struct Event<'a> {
    pub actor: &'a Actor,
    pub node_id: NodeId,
    pub action: crate::domain::audit::Action,
    pub target_kind: &'a str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub request_id: Option<&'a str>,
    pub client_address: Option<std::net::IpAddr>,
}

/// Appends `event`, with its actor's and its node's names as they are now (in the write's
/// transaction: as the write left them), so that the trail reads the same after a rename or a
/// deletion. One statement: the names are read by subqueries of the insert.
pub(crate) fn record(conn: &mut DbConnection, event: Event<'_>) -> QueryResult<()> {
    let node_name = nodes::table
        .find(event.node_id.to_string())
        .select(nodes::name)
        .single_value();
    // The actor's name comes from a different table for each kind, so each kind is its own
    // statement type.
    macro_rules! insert {
        ($actor_name:expr) => {
            diesel::insert_into(audit_events::table)
                .values((
                    audit_events::id.eq(AuditEventId::generate().to_string()),
                    audit_events::at.eq(super::now()),
                    audit_events::actor.eq(event.actor.as_text()),
                    audit_events::node_id.eq(event.node_id.to_string()),
                    audit_events::action.eq(event.action.as_str()),
                    audit_events::target_kind.eq(event.target_kind),
                    audit_events::target_id.eq(event.target_id),
                    audit_events::before.eq(event.before.map(|v| v.to_string())),
                    audit_events::after.eq(event.after.map(|v| v.to_string())),
                    audit_events::request_id.eq(event.request_id),
                    audit_events::client_address.eq(event.client_address.map(|a| a.to_string())),
                    audit_events::actor_name.eq($actor_name),
                    audit_events::node_name.eq(node_name),
                ))
                .execute(conn)
        };
    }
    match event.actor {
        Actor::System => insert!(Some("system")),
        Actor::Account(id) => insert!(
            accounts::table
                .find(id.to_string())
                .select(accounts::username)
                .single_value()
        ),
        Actor::ApiKey(id) => insert!(
            api_keys::table
                .find(id.to_string())
                .select(api_keys::name)
                .single_value()
        ),
    }?;
    Ok(())
}

/// What a reader narrows the trail to; every field given must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// At or after.
    pub from: Option<NaiveDateTime>,
    /// Strictly before.
    pub to: Option<NaiveDateTime>,
    /// Any of these actors, as [`Actor::as_text`] spells them; empty: anyone.
    pub actors: Vec<String>,
    pub action: Option<&'static str>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
}

/// An event as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub(crate) struct Row {
    pub id: String,
    pub at: NaiveDateTime,
    pub actor: String,
    pub actor_name: Option<String>,
    pub node_id: String,
    pub node_name: Option<String>,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub before: Option<String>,
    pub after: Option<String>,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
}

/// Where a newest-first read stands: the `(at, id)` of the last event it gave.
pub(crate) type Position = (NaiveDateTime, String);

/// Whose events a read covers.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// One node that has no children (a customer), by id.
    Node(String),
    /// The nodes whose path lies under this one, deleted ones included: the trail outlives what
    /// it describes.
    Subtree(String),
}

/// The events of `scope` matching `filter`, newest first — by `(at, id)` descending, so that
/// events of the same instant keep one order — after `after`, at most `limit`.
///
/// Each read walks an index in that order and stops at `limit`: a node's own by
/// `(node_id, at, id)`; a subtree's by `(at, id)`, testing each event's node against the
/// subtree's (PostgreSQL chooses so by itself; SQLite, knowing no statistics, would rather gather
/// the subtree's every event and sort them, for every batch of a stream, so it is told).
pub(crate) fn read(
    conn: &mut DbConnection,
    scope: &Scope,
    filter: &Filter,
    after: Option<&Position>,
    limit: i64,
) -> QueryResult<Vec<Row>> {
    let sqlite = matches!(conn, DbConnection::Sqlite(_));
    let mut query = audit_events::table
        .select(Row::as_select())
        .order((audit_events::at.desc(), audit_events::id.desc()))
        .limit(limit)
        .into_boxed();
    match scope {
        Scope::Node(id) => query = query.filter(audit_events::node_id.eq(id.clone())),
        Scope::Subtree(path) => {
            let (low, high) = super::nodes::subtree_range(path);
            if sqlite {
                // The unary `+` keeps SQLite off the node_id index.
                query = query.filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>(
                        "+audit_events.node_id IN (SELECT id FROM nodes WHERE path >= ",
                    )
                    .bind::<diesel::sql_types::Text, _>(low)
                    .sql(" AND path < ")
                    .bind::<diesel::sql_types::Text, _>(high)
                    .sql(")"),
                );
            } else {
                let nodes = nodes::table
                    .filter(nodes::path.ge(low))
                    .filter(nodes::path.lt(high))
                    .select(nodes::id);
                query = query.filter(audit_events::node_id.eq_any(nodes));
            }
        }
    }
    if let Some(from) = filter.from {
        query = query.filter(audit_events::at.ge(from));
    }
    if let Some(to) = filter.to {
        query = query.filter(audit_events::at.lt(to));
    }
    if !filter.actors.is_empty() {
        query = query.filter(audit_events::actor.eq_any(filter.actors.clone()));
    }
    if let Some(action) = filter.action {
        query = query.filter(audit_events::action.eq(action));
    }
    if let Some(kind) = &filter.target_kind {
        query = query.filter(audit_events::target_kind.eq(kind.clone()));
    }
    if let Some(id) = &filter.target_id {
        query = query.filter(audit_events::target_id.eq(id.clone()));
    }
    if let Some((at, id)) = after {
        // `at <= after` first: a range the index starts at, so that each batch of a long read
        // costs its own rows, not a scan from the newest event down to the cursor.
        query = query
            .filter(audit_events::at.le(*at))
            .filter(audit_events::at.lt(*at).or(audit_events::id.lt(id.clone())));
    }
    query.load(conn)
}

/// Deletes up to `limit` of the oldest events written before `cutoff`; how many it deleted.
pub(crate) fn prune_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = audit_events::table
        .filter(audit_events::at.lt(cutoff))
        .order((audit_events::at, audit_events::id))
        .select(audit_events::id)
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(audit_events::table.filter(audit_events::id.eq_any(ids))).execute(conn)
}
