//! Nodes of the tenant tree.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::nodes;
use super::{DbConnection, corrupt};
use crate::domain::ids::NodeId;
use crate::domain::tree::{NodeKind, NodeStatus};

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
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

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
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<NodeRow> for Node {
    type Error = diesel::result::Error;
    fn try_from(row: NodeRow) -> Result<Self, Self::Error> {
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
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub fn find(conn: &mut DbConnection, id: NodeId) -> QueryResult<Option<Node>> {
    nodes::table
        .find(id.to_string())
        .select(NodeRow::as_select())
        .first(conn)
        .optional()?
        .map(Node::try_from)
        .transpose()
}

pub fn owner(conn: &mut DbConnection) -> QueryResult<Option<Node>> {
    nodes::table
        .filter(nodes::kind.eq(NodeKind::Owner.as_str()))
        .select(NodeRow::as_select())
        .first(conn)
        .optional()?
        .map(Node::try_from)
        .transpose()
}

/// Creates the root of the tree. The database refuses a second owner (a unique partial index).
pub fn insert_owner(conn: &mut DbConnection, name: &str) -> QueryResult<Node> {
    let id = NodeId::generate();
    let now = super::now();
    let node = Node {
        id,
        parent_id: None,
        path: format!("/{id}/"),
        kind: NodeKind::Owner,
        name: name.to_owned(),
        description: None,
        contact_phone: None,
        contact_email: None,
        status: NodeStatus::Active,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    diesel::insert_into(nodes::table)
        .values((
            nodes::id.eq(node.id.to_string()),
            nodes::parent_id.eq(None::<String>),
            nodes::path.eq(&node.path),
            nodes::kind.eq(node.kind.as_str()),
            nodes::name.eq(&node.name),
            nodes::status.eq(node.status.as_str()),
            nodes::version.eq(node.version),
            nodes::created_at.eq(now),
            nodes::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(node)
}
