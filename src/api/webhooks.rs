//! Webhooks: subscriptions of endpoints to the events of a node's subtree, and the outbox that
//! delivers them (`GET /v1/nodes/{id}/outbox`, `POST /v1/outbox/{id}/retry`).
//!
//! Admins only, at the subscription's node or above: a subscription's URL and the deliveries'
//! bodies are the node's business, and its secret signs for it. The secret is in the answer to
//! the creation and to a rotation, and in no other answer, log line or audit record; these
//! creations take no `Idempotency-Key`, since replaying them would mean keeping the secret.

use actix_web::http::header;
use actix_web::{HttpResponse, HttpResponseBuilder, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{self, Fields, IfMatch, Page, PageRequest, etag, nullable, utc};
use super::extract::Json;
use crate::auth::Principal;
use crate::auth::guard::Reach;
use crate::domain::ids::{MessageId, NodeId, WebhookId};
use crate::domain::outbox::{EventType, MessageKind, MessageStatus};
use crate::error::{ApiError, Guarded, Problem};
use crate::service::Ctx;
use crate::service::webhooks::{self as workflows, Change, Draft};
use crate::startup::AppState;
use crate::store::outbox::{self as outbox_rows, Attempt, Row};
use crate::store::webhooks::{self as subscriptions, Webhook};
use crate::store::{self, DbConnection, nodes};

/// A subscription; never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookView {
    pub id: WebhookId,
    pub node_id: NodeId,
    /// Where the events are POSTed.
    #[schema(example = "https://billing.example.com/hooks/allot")]
    pub url: String,
    /// The events it hears of, in the node's subtree.
    pub events: Vec<EventType>,
    pub description: Option<String>,
    /// After a rotation, until when the previous secret still signs beside the new one.
    pub previous_secret_signs_until: Option<DateTime<Utc>>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id,
            node_id: w.node_id,
            url: w.url.clone(),
            events: w.events.clone(),
            description: w.description.clone(),
            previous_secret_signs_until: w
                .previous_until
                .filter(|until| *until > store::now())
                .map(utc),
            version: w.version,
            created_at: utc(w.created_at),
            updated_at: utc(w.updated_at),
        }
    }
}

/// A subscription with its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret, `whsec_` and base64 (Standard Webhooks): give it to the receiver's
    /// verifier. Shown this once.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

impl WebhookWithSecret {
    fn of(webhook: &Webhook, secret: String) -> Self {
        Self {
            webhook: WebhookView::from(webhook),
            secret,
        }
    }
}

/// A subscription as answered: its ETag and its view.
fn answer(webhook: &Webhook) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(webhook.version)))
        .json(WebhookView::from(webhook))
}

/// `response` with a subscription and its `secret`, shown this once: its ETag, never cached.
fn answer_with_secret(
    mut response: HttpResponseBuilder,
    webhook: &Webhook,
    secret: String,
) -> HttpResponse {
    response
        .insert_header((header::ETAG, etag(webhook.version)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(WebhookWithSecret::of(webhook, secret))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST the events: `https` (plain `http` only where the operator allows private
    /// targets), at most 2000 characters, no user name or password, no fragment; its host must not
    /// be a loopback, private, link-local or otherwise non-public address (unless allowed).
    #[schema(example = "https://billing.example.com/hooks/allot")]
    pub url: String,
    /// The events to hear of, at least one.
    #[schema(min_items = 1, example = json!(["node.created", "allocation.updated"]))]
    pub events: Vec<EventType>,
    /// What it is for, at most 500 characters.
    #[schema(example = "Billing")]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// As at creation.
    pub url: Option<String>,
    /// As at creation, replacing the list.
    #[schema(min_items = 1)]
    pub events: Option<Vec<EventType>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

fn check_url(fields: &mut Fields, given: &str, allow_private: bool) -> String {
    if let Err(why) = crate::outbox::target::parse_url(given, allow_private) {
        fields.push("url", why);
    }
    given.to_owned()
}

fn check_events(fields: &mut Fields, mut events: Vec<EventType>) -> Vec<EventType> {
    if events.is_empty() {
        fields.push("events", "must name at least one event");
    }
    events.sort_by_key(|e| e.as_str());
    events.dedup();
    events
}

fn check_description(fields: &mut Fields, given: Option<String>) -> Option<String> {
    let text = given.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty());
    if text
        .as_ref()
        .is_some_and(|d| d.chars().count() > 500 || d.chars().any(char::is_control))
    {
        fields.push(
            "description",
            "must be at most 500 characters without control characters",
        );
    }
    text
}

/// Subscribes an endpoint to the events of `{id}`'s subtree. The answer holds the signing secret,
/// shown this once. Deliveries are signed as Standard Webhooks specifies (`webhook-id`,
/// `webhook-timestamp`, `webhook-signature`), sent at least once (de-duplicate on `webhook-id`),
/// and for one subscription the events of one node arrive in the order they happened. Admins of
/// `{id}` or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "Subscribed; the secret is returned this once", body = WebhookWithSecret, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields: a URL that is not https or names a refused address, no events (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/webhooks")]
pub(crate) async fn create_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<CreateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let url = check_url(&mut fields, &body.url, state.config.webhooks_allow_private);
    let events = check_events(&mut fields, body.events);
    let description = check_description(&mut fields, body.description);
    fields.finish()?;
    let draft = Draft {
        url,
        events,
        description,
    };
    let node_id = id.into_inner();
    let sealer = state.sealer.clone();
    let (webhook, secret) = common::write(&state.pool, move |conn| {
        let node = principal.may_administer(nodes::find(conn, node_id)?, Reach::SelfOrBelow)?;
        workflows::create(conn, &Ctx::of(&principal), &node, &sealer, draft)
    })
    .await?;
    let mut created = HttpResponse::Created();
    created.insert_header((header::LOCATION, format!("/v1/webhooks/{}", webhook.id)));
    Ok(answer_with_secret(created, &webhook, secret))
}

common::list_query! {
    /// A list of subscriptions.
    pub struct WebhookQuery {}
}

/// The subscriptions at `{id}` (not its descendants'), oldest first; never their secrets. Admins
/// of `{id}` or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), WebhookQuery),
    responses(
        (status = 200, description = "A page of subscriptions", body = super::common::pages::WebhookPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/webhooks")]
pub(crate) async fn list_webhooks(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<WebhookQuery>,
) -> Result<web::Json<Page<WebhookView>>, ApiError> {
    let page = query.page()?;
    let fetch = page.clone();
    let id = id.into_inner();
    let rows = store::run(&state.pool, move |conn| {
        let node = principal.may_inspect(nodes::find(conn, id)?)?;
        let after = fetch.after.as_deref();
        Ok::<_, ApiError>(subscriptions::list_for_node(
            conn,
            node.id,
            after,
            fetch.fetch(),
        )?)
    })
    .await?;
    Ok(web::Json(page.page(
        rows,
        |w| w.id.to_string(),
        |w| WebhookView::from(&w),
    )))
}

/// Subscription `id` if the principal sees its node, and the node.
fn visible_webhook(
    conn: &mut DbConnection,
    principal: &Principal,
    id: WebhookId,
) -> Result<(Webhook, nodes::Node), ApiError> {
    let webhook = subscriptions::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let node = principal.visible(nodes::find(conn, webhook.node_id)?)?;
    Ok((webhook, node))
}

/// A subscription; never its secret. Admins of its node or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = WebhookId, Path)),
    responses(
        (status = 200, description = "The subscription", body = WebhookView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/webhooks/{id}")]
pub(crate) async fn get_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let webhook = store::run(&state.pool, move |conn| {
        let (webhook, node) = visible_webhook(conn, &principal, id)?;
        principal.may_inspect(Some(node))?;
        Ok::<_, ApiError>(webhook)
    })
    .await?;
    Ok(answer(&webhook))
}

/// Changes a subscription's URL, events or description, from its next delivery on (deliveries
/// already queued go to the new URL). Admins of its node or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = WebhookId, Path), IfMatch),
    request_body = UpdateWebhook,
    responses(
        (status = 200, description = "The changed subscription", body = WebhookView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "Its node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/webhooks/{id}")]
pub(crate) async fn update_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<WebhookId>,
    if_match: IfMatch,
    body: Json<UpdateWebhook>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let allow_private = state.config.webhooks_allow_private;
    let change = Change {
        url: body
            .url
            .map(|url| check_url(&mut fields, &url, allow_private)),
        events: body.events.map(|events| check_events(&mut fields, events)),
        description: body
            .description
            .map(|description| check_description(&mut fields, description)),
    };
    fields.finish()?;
    let id = id.into_inner();
    let webhook = common::write(&state.pool, move |conn| {
        let (webhook, node) = visible_webhook(conn, &principal, id)?;
        let node = principal.may_administer(Some(node), Reach::SelfOrBelow)?;
        let precondition = |version| if_match.check(version);
        workflows::update(
            conn,
            &Ctx::of(&principal),
            &node,
            webhook,
            precondition,
            change,
        )
    })
    .await?;
    Ok(answer(&webhook))
}

/// Deletes a subscription: nothing more is sent to it, and its undelivered messages fail. Admins
/// of its node or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = WebhookId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        Guarded,
        (status = 409, description = "Its node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/webhooks/{id}")]
pub(crate) async fn delete_webhook(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let (webhook, node) = visible_webhook(conn, &principal, id)?;
        let node = principal.may_administer(Some(node), Reach::SelfOrBelow)?;
        workflows::delete(conn, &Ctx::of(&principal), &node, webhook)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Gives a subscription a new signing secret, returned this once. For 24 hours the previous
/// secret keeps signing beside it (`webhook-signature` carries both signatures), so the receiver
/// can switch without losing a delivery; rotating again within them drops the older one at once.
/// Admins of its node or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = WebhookId, Path)),
    responses(
        (status = 200, description = "The subscription with its new secret, returned this once", body = WebhookWithSecret, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "Its node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/webhooks/{id}/rotate-secret")]
pub(crate) async fn rotate_webhook_secret(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<WebhookId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let sealer = state.sealer.clone();
    let (webhook, secret) = common::write(&state.pool, move |conn| {
        let (webhook, node) = visible_webhook(conn, &principal, id)?;
        let node = principal.may_administer(Some(node), Reach::SelfOrBelow)?;
        workflows::rotate_secret(conn, &Ctx::of(&principal), &node, &sealer, webhook)
    })
    .await?;
    Ok(answer_with_secret(HttpResponse::Ok(), &webhook, secret))
}

/// One attempt at a message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptView {
    pub at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
    /// What the target answered: a webhook's or Graph's HTTP status, an SMTP server's reply code
    /// to the message (or to the command that refused it); absent when it did not answer.
    pub status_code: Option<i32>,
    /// Why it failed: the answer's status and the start of its body, or the connection's error.
    pub error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            at: utc(a.at),
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            error: a.error,
        }
    }
}

/// A message of the outbox with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MessageView {
    /// A webhook delivery's `webhook-id`: the same in every attempt.
    pub id: MessageId,
    pub kind: MessageKind,
    /// Whose message it is: a webhook delivery's subscription's node; a mail's node, whose mail
    /// server (as it applies when the mail is sent) sends it.
    pub node_id: NodeId,
    /// Where it goes: a webhook delivery's subscription id; a mail's recipient address.
    pub target: String,
    /// What it is: a webhook delivery's event type; a mail's purpose, `account.login_details`
    /// (a new account's login details) or `quota.notice` (a quota threshold crossed).
    pub topic: String,
    pub status: MessageStatus,
    /// When the next attempt is due, while it is pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was delivered or failed.
    pub finished_at: Option<DateTime<Utc>>,
    /// What is sent: a webhook delivery's body, byte for byte the JSON it is signed as; a mail's
    /// `to`, `subject` and plain `text`. A secret a mail carries (a new account's one-time
    /// password) is never shown: `text` holds `{{secret}}` where it goes, and `secret` is
    /// `{"set": true}`; it is stored sealed and filled in only as the mail is sent.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Every attempt, oldest first (those before a retry included).
    pub attempts: Vec<AttemptView>,
}

impl MessageView {
    fn of(row: Row, attempts: Vec<Attempt>) -> Result<Self, ApiError> {
        let status = row.status()?;
        let kind: MessageKind = row.kind.parse().map_err(|_| ApiError::from(corrupt()))?;
        let mut payload: serde_json::Value =
            serde_json::from_str(&row.payload).map_err(|_| ApiError::from(corrupt()))?;
        if let (MessageKind::Mail, Some(fields)) = (kind, payload.as_object_mut())
            && fields.contains_key("secret")
        {
            fields.insert("secret".to_owned(), serde_json::json!({"set": true}));
        }
        Ok(Self {
            id: row.message_id()?,
            kind,
            node_id: row.node()?,
            target: row.target,
            topic: row.topic,
            status,
            next_attempt_at: (status == MessageStatus::Pending).then(|| utc(row.next_attempt_at)),
            last_error: row.last_error,
            created_at: utc(row.created_at),
            finished_at: row.finished_at.map(utc),
            payload,
            attempts: attempts.into_iter().map(AttemptView::from).collect(),
        })
    }
}

fn corrupt() -> diesel::result::Error {
    diesel::result::Error::DeserializationError("an outbox row does not parse".into())
}

/// The rows with their attempts, as views.
fn with_attempts(conn: &mut DbConnection, rows: Vec<Row>) -> Result<Vec<MessageView>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut attempts = outbox_rows::attempts_of(conn, &ids)?;
    rows.into_iter()
        .map(|row| {
            let (mine, rest): (Vec<_>, Vec<_>) =
                attempts.drain(..).partition(|a| a.message_id == row.id);
            attempts = rest;
            MessageView::of(row, mine)
        })
        .collect()
}

common::list_query! {
    /// A list of outbox messages.
    pub struct OutboxQuery {
        /// Only messages in this status.
        pub status: Option<MessageStatus>,
        /// Only messages of this kind.
        pub kind: Option<MessageKind>,
    }
}

/// The outbox of `{id}`'s subtree: the deliveries to the subtree's webhook subscriptions and the
/// mail sent for its nodes (login details, quota notices), newest first, each with its attempts.
/// A mail's secret is never shown. Admins of `{id}` or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), OutboxQuery),
    responses(
        (status = 200, description = "A page of messages", body = super::common::pages::MessagePage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/outbox")]
pub(crate) async fn list_outbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<OutboxQuery>,
) -> Result<web::Json<Page<MessageView>>, ApiError> {
    let page: PageRequest = query.page()?;
    let filter = outbox_rows::Filter {
        status: query.status,
        kind: query.kind,
    };
    let fetch = page.clone();
    let id = id.into_inner();
    let views = store::run(&state.pool, move |conn| {
        let node = principal.may_inspect(nodes::find(conn, id)?)?;
        let rows = outbox_rows::list(
            conn,
            &node.path,
            &filter,
            fetch.after.as_deref(),
            fetch.fetch(),
        )?;
        with_attempts(conn, rows)
    })
    .await?;
    Ok(web::Json(page.page(views, |m| m.id.to_string(), |m| m)))
}

/// Sends a failed message again: back to `pending`, due now, with a fresh count of attempts (its
/// earlier attempts stay listed). It may then arrive after messages written later. Admins of its
/// node or above.
#[utoipa::path(
    tag = "webhooks",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MessageId, Path)),
    responses(
        (status = 200, description = "The message, pending again", body = MessageView),
        Guarded,
        (status = 409, description = "The message has not failed: it is pending, being delivered or delivered (`conflict`); or its node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/outbox/{id}/retry")]
pub(crate) async fn retry_message(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MessageId>,
) -> Result<web::Json<MessageView>, ApiError> {
    let id = id.into_inner();
    let view = common::write(&state.pool, move |conn| {
        let row = outbox_rows::find(conn, id)?.ok_or(ApiError::NotFound)?;
        let node = principal.visible(nodes::find(conn, row.node()?)?)?;
        let node = principal.may_administer(Some(node), Reach::SelfOrBelow)?;
        let row = crate::service::outbox::retry(conn, &node, &Ctx::of(&principal), row)?;
        let mut views = with_attempts(conn, vec![row])?;
        Ok(views.remove(0))
    })
    .await?;
    Ok(web::Json(view))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(create_webhook)
        .service(list_webhooks)
        .service(get_webhook)
        .service(update_webhook)
        .service(delete_webhook)
        .service(rotate_webhook_secret)
        .service(list_outbox)
        .service(retry_message);
}
