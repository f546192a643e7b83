//! The outbox's workflows: writing the webhook deliveries an audited change causes, in its
//! transaction ([`emit`], called by [`Ctx::record`](super::Ctx::record) for every change), and
//! sending a failed message again ([`retry`]). Delivery itself is `crate::outbox`'s, off the
//! request path.
//!
//! Fan-out happens here, at write time: one row per matching subscription of the event's node and
//! its ancestors, as they are when the change commits. Each delivery then has its own status,
//! attempts and retry, and a subscription made or changed later neither receives nor loses
//! events already written. The cost is one indexed read of the lineage's subscriptions per
//! audited write.

use serde_json::{Value, json};

use super::Ctx;
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::{MessageId, NodeId};
use crate::domain::outbox::{EventType, MessageKind};
use crate::error::ApiError;
use crate::store::outbox::{self as rows, NewMessage, Row};
use crate::store::{DbConnection, webhooks};

/// What an event is about, as the audit record names it, and the object as it is (as it was, for
/// a deletion).
pub(crate) struct Subject<'a> {
    pub node_id: NodeId,
    pub kind: &'a str,
    pub id: &'a str,
    pub view: Option<&'a Value>,
}

/// Writes one delivery of the event `action` is (if it is one) to each subscription of the
/// subject's node and its ancestors that asked for it. The body is made once, here, and sent
/// byte for byte as written: what is signed is what was stored.
///
/// The body follows Standard Webhooks' payload shape: `type`, `timestamp` (of the change), `data`
/// (the object as the API shows it, with `object` naming its kind and `node_id` its node), plus
/// `id`, the event's own id, the same in every subscription's delivery. The `webhook-id` header
/// is the delivery's (the message's) id, the same in every retry: what receivers de-duplicate on.
pub(crate) fn emit(
    conn: &mut DbConnection,
    action: Action,
    subject: Subject<'_>,
) -> diesel::QueryResult<()> {
    let Some(event) = EventType::of(action) else {
        return Ok(());
    };
    let Some(path) = crate::store::nodes::path_of(conn, subject.node_id)? else {
        return Ok(());
    };
    let lineage = crate::domain::tree::lineage(&path);
    let subscribers: Vec<_> = webhooks::at_nodes(conn, &lineage)?
        .into_iter()
        .filter(|w| w.events.contains(&event))
        .collect();
    if subscribers.is_empty() {
        return Ok(());
    }
    let mut data = match subject.view {
        Some(Value::Object(fields)) => fields.clone(),
        Some(other) => serde_json::Map::from_iter([("value".to_owned(), other.clone())]),
        None => serde_json::Map::new(),
    };
    data.insert("object".to_owned(), json!(subject.kind));
    data.insert("id".to_owned(), json!(subject.id));
    data.insert("node_id".to_owned(), json!(subject.node_id));
    let payload = json!({
        "id": uuid::Uuid::now_v7(),
        "type": event,
        "timestamp": crate::store::now().and_utc(),
        "data": data,
    })
    .to_string();
    for webhook in subscribers {
        rows::insert(
            conn,
            NewMessage {
                kind: MessageKind::Webhook,
                node_id: webhook.node_id,
                target: webhook.id.to_string(),
                // Deliveries to one subscription keep the order of the events of one node.
                ordering_key: Some(subject.node_id.to_string()),
                topic: event.as_str().to_owned(),
                payload: payload.clone(),
            },
        )?;
    }
    Ok(())
}

/// Sends the failed message `message` (at `node`, which the guard let the caller administer)
/// again: back to pending, due now, with a fresh count of attempts. Refused (409) unless it
/// failed: a pending or delivering one is on its way, a delivered one arrived.
pub(crate) fn retry(
    conn: &mut DbConnection,
    node: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    message: Row,
) -> Result<Row, ApiError> {
    let id: MessageId = message.message_id()?;
    if rows::requeue(conn, id)? == 0 {
        return Err(ApiError::Conflict(format!(
            "The message is {}: only a failed message is sent again.",
            message.status
        )));
    }
    ctx.record(
        conn,
        node.id,
        Action::OutboxRetry,
        ("outbox", id.to_string()),
        Some(json!({"status": message.status, "attempts": message.attempts})),
        Some(json!({"status": "pending", "attempts": 0})),
    )?;
    rows::find(conn, id)?.ok_or(ApiError::NotFound)
}
