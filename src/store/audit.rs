//! The audit trail: one appended row per write, in the same transaction as the write, so the trail
//! and the data never disagree.

use diesel::prelude::*;
use serde_json::Value;

use super::DbConnection;
use super::schema::audit_events;
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
}

pub(crate) fn record(conn: &mut DbConnection, event: Event<'_>) -> QueryResult<()> {
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
        ))
        .execute(conn)?;
    Ok(())
}
