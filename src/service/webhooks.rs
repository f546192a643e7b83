//! Webhook subscriptions: subscribing an endpoint to a node's subtree's events, changing or
//! deleting the subscription, and rotating its signing secret.
//!
//! The secret is made here, sealed (`crate::secret::Sealer`, bound to the subscription's id, so a
//! sealed secret copied to another row does not open) and stored; its text is returned to the
//! caller to show once and is never written anywhere else: not in the audit trail (whose views
//! here have no secret field), not in a log line.
//!
//! A rotation keeps the previous secret signing beside the new one for [`ROTATION_GRACE_HOURS`]
//! hours: Standard Webhooks lets `webhook-signature` carry several signatures, and a receiver that
//! has not switched to the new secret yet still finds one it verifies.

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::json;

use super::Ctx;
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::WebhookId;
use crate::domain::outbox::EventType;
use crate::error::ApiError;
use crate::secret::Sealer;
use crate::store::webhooks::{self, Webhook};
use crate::store::{self, DbConnection};

/// How long, in hours, the previous secret signs beside the new one after a rotation.
pub(crate) const ROTATION_GRACE_HOURS: i64 = 24;

/// What the sealer binds a subscription's secret to.
pub(crate) fn seal_context(id: WebhookId) -> String {
    format!("webhook:{id}")
}

/// A subscription as its audit records show it: never its secret.
fn audit_view(webhook: &Webhook) -> serde_json::Value {
    json!({
        "node_id": webhook.node_id, "url": webhook.url, "events": webhook.events,
        "description": webhook.description,
    })
}

/// A new subscription: where to, which events, what for. Parsed by the caller (the URL already
/// judged by `outbox::target`).
#[derive(Debug)]
pub(crate) struct Draft {
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
}

/// Subscribes `draft.url` to the events of `node`'s subtree. Returns the subscription and its
/// secret's text, which is never shown again.
pub(crate) fn create(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    node: &Authorised<Administer>,
    sealer: &Sealer,
    draft: Draft,
) -> Result<(Webhook, String), ApiError> {
    let id = WebhookId::generate();
    let secret = crate::outbox::signature::new_secret();
    let now = store::now();
    let webhook = Webhook {
        id,
        node_id: node.id,
        url: draft.url,
        events: draft.events,
        description: draft.description,
        secret: sealer.seal(&secret, &seal_context(id)),
        previous_secret: None,
        previous_until: None,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    webhooks::insert(conn, &webhook)?;
    ctx.record(
        conn,
        node.id,
        Action::WebhookCreate,
        ("webhook", id.to_string()),
        None,
        Some(audit_view(&webhook)),
    )?;
    Ok((webhook, secret))
}

/// What a PATCH changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub(crate) struct Change {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    pub description: Option<Option<String>>,
}

/// Changes `webhook` at `node` as `change` says, if `precondition` accepts its version (the API's
/// `If-Match`). A delivery names its subscription, not a URL: one still pending goes to the URL
/// the subscription has when it is sent.
pub(crate) fn update(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    node: &Authorised<Administer>,
    mut webhook: Webhook,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
    change: Change,
) -> Result<Webhook, ApiError> {
    precondition(webhook.version)?;
    let before = audit_view(&webhook);
    if let Some(url) = change.url {
        webhook.url = url;
    }
    if let Some(events) = change.events {
        webhook.events = events;
    }
    if let Some(description) = change.description {
        webhook.description = description;
    }
    webhooks::save(conn, &mut webhook)?;
    ctx.record(
        conn,
        node.id,
        Action::WebhookUpdate,
        ("webhook", webhook.id.to_string()),
        Some(before),
        Some(audit_view(&webhook)),
    )?;
    Ok(webhook)
}

/// Deletes `webhook` at `node`. Its undelivered messages fail when their turn comes ("the
/// subscription was deleted"); delivered ones stay listed until retention removes them.
pub(crate) fn delete(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    node: &Authorised<Administer>,
    webhook: Webhook,
) -> Result<(), ApiError> {
    webhooks::delete(conn, webhook.id)?;
    ctx.record(
        conn,
        node.id,
        Action::WebhookDelete,
        ("webhook", webhook.id.to_string()),
        Some(audit_view(&webhook)),
        None,
    )?;
    Ok(())
}

/// Gives `webhook` a new secret; the current one keeps signing beside it until
/// [`ROTATION_GRACE_HOURS`] has passed (a secret rotated again within that time is dropped at once:
/// only the latest previous secret is kept). Returns the subscription and the new secret's text,
/// shown this once.
pub(crate) fn rotate_secret(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    node: &Authorised<Administer>,
    sealer: &Sealer,
    mut webhook: Webhook,
) -> Result<(Webhook, String), ApiError> {
    let secret = crate::outbox::signature::new_secret();
    let until: NaiveDateTime = store::now() + TimeDelta::hours(ROTATION_GRACE_HOURS);
    let sealed = sealer.seal(&secret, &seal_context(webhook.id));
    webhook.previous_secret = Some(std::mem::replace(&mut webhook.secret, sealed));
    webhook.previous_until = Some(until);
    webhooks::save(conn, &mut webhook)?;
    ctx.record(
        conn,
        node.id,
        Action::WebhookRotateSecret,
        ("webhook", webhook.id.to_string()),
        None,
        Some(json!({"previous_secret_signs_until": until.and_utc()})),
    )?;
    Ok((webhook, secret))
}
