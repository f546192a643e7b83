//! Webhook subscriptions: an endpoint hearing of a node's subtree's events. The signing secrets
//! are stored sealed (`crate::secret`); this module only moves their bytes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::webhooks;
use super::{DbConnection, corrupt};
use crate::domain::ids::{NodeId, WebhookId};
use crate::domain::outbox::EventType;

#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub id: WebhookId,
    pub node_id: NodeId,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    /// The sealed signing secret. Never in a response (but the creating or rotating one), a log
    /// line or the audit trail.
    pub secret: Vec<u8>,
    /// The sealed secret a rotation replaced, still signing beside the new one until
    /// `previous_until`.
    pub previous_secret: Option<Vec<u8>>,
    pub previous_until: Option<NaiveDateTime>,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhooks)]
struct WebhookRow {
    id: String,
    node_id: String,
    url: String,
    events: String,
    description: Option<String>,
    secret: Vec<u8>,
    previous_secret: Option<Vec<u8>>,
    previous_until: Option<NaiveDateTime>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<WebhookRow> for Webhook {
    type Error = diesel::result::Error;
    fn try_from(row: WebhookRow) -> Result<Self, Self::Error> {
        Ok(Webhook {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            url: row.url,
            events: serde_json::from_str(&row.events).map_err(corrupt)?,
            description: row.description,
            secret: row.secret,
            previous_secret: row.previous_secret,
            previous_until: row.previous_until,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn events_text(events: &[EventType]) -> String {
    serde_json::to_string(events).expect("event types serialise")
}

/// Writes `webhook` as it is.
pub(crate) fn insert(conn: &mut DbConnection, webhook: &Webhook) -> QueryResult<()> {
    diesel::insert_into(webhooks::table)
        .values((
            webhooks::id.eq(webhook.id.to_string()),
            webhooks::node_id.eq(webhook.node_id.to_string()),
            webhooks::url.eq(&webhook.url),
            webhooks::events.eq(events_text(&webhook.events)),
            webhooks::description.eq(&webhook.description),
            webhooks::secret.eq(&webhook.secret),
            webhooks::previous_secret.eq(&webhook.previous_secret),
            webhooks::previous_until.eq(webhook.previous_until),
            webhooks::version.eq(webhook.version),
            webhooks::created_at.eq(webhook.created_at),
            webhooks::updated_at.eq(webhook.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn find(conn: &mut DbConnection, id: WebhookId) -> QueryResult<Option<Webhook>> {
    webhooks::table
        .find(id.to_string())
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()?
        .map(Webhook::try_from)
        .transpose()
}

/// A node's subscriptions in creation order after the cursor.
pub(crate) fn list_for_node(
    conn: &mut DbConnection,
    node: NodeId,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Webhook>> {
    let mut query = webhooks::table
        .filter(webhooks::node_id.eq(node.to_string()))
        .select(WebhookRow::as_select())
        .order(webhooks::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(webhooks::id.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(Webhook::try_from)
        .collect()
}

/// The subscriptions at any of `nodes` (a lineage: the node of an event and its ancestors).
pub(crate) fn at_nodes(conn: &mut DbConnection, nodes: &[NodeId]) -> QueryResult<Vec<Webhook>> {
    let ids: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    webhooks::table
        .filter(webhooks::node_id.eq_any(ids))
        .order(webhooks::id)
        .select(WebhookRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Webhook::try_from)
        .collect()
}

/// Writes `webhook`'s changeable fields and secrets with the next version.
pub(crate) fn save(conn: &mut DbConnection, webhook: &mut Webhook) -> QueryResult<()> {
    webhook.version += 1;
    webhook.updated_at = super::now();
    diesel::update(webhooks::table.find(webhook.id.to_string()))
        .set((
            webhooks::url.eq(&webhook.url),
            webhooks::events.eq(events_text(&webhook.events)),
            webhooks::description.eq(&webhook.description),
            webhooks::secret.eq(&webhook.secret),
            webhooks::previous_secret.eq(&webhook.previous_secret),
            webhooks::previous_until.eq(webhook.previous_until),
            webhooks::version.eq(webhook.version),
            webhooks::updated_at.eq(webhook.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn delete(conn: &mut DbConnection, id: WebhookId) -> QueryResult<()> {
    diesel::delete(webhooks::table.find(id.to_string())).execute(conn)?;
    Ok(())
}
