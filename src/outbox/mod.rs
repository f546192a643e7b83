//! The outbox's worker: delivers what the workflows wrote to the outbox (webhook deliveries by
//! `service::outbox`, mail by `service::notices`), off the request path, in every instance: a
//! webhook as a signed POST, a mail through the mail server that applies to its node when it is
//! sent ([`Worker::send_mail`], `crate::mail`).
//!
//! - **Claiming.** A worker claims a batch of due messages in one write transaction
//!   (`store::outbox::claim`: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite),
//!   marking them `delivering` with a lease and a claim token, then delivers them concurrently,
//!   and records each attempt and its outcome in a transaction of its own. So several instances
//!   on one database deliver each message once; an instance that dies mid-delivery leaves its
//!   claims to expire, and another (or itself, restarted) claims them again: nothing written is
//!   lost, and a message may arrive twice (at-least-once: receivers de-duplicate on
//!   `webhook-id`).
//! - **Waking.** Every successful write request wakes the worker at once (`wake_after_writes`);
//!   otherwise it sleeps until the earliest retry or lease falls due, at most [`POLL`], which
//!   also picks up what other instances and the check's enrolments wrote.
//! - **Retries.** A failed attempt is tried again after `domain::outbox::Backoff` (exponential,
//!   jittered, capped); after `ALLOT_OUTBOX_MAX_ATTEMPTS` the message is `failed`, listed, and
//!   sent again only by `POST /v1/outbox/{id}/retry`.
//! - **Order.** For one subscription, the messages about one node are sent in the order they were
//!   written: a message is not claimed while an earlier one with the same target and ordering key
//!   is pending or delivering, so while the first waits for its retries the later ones wait too.
//!   A failed message stops holding the later ones back (they go on), and one sent again by the
//!   retry route may then arrive after later ones. Messages about different nodes, or to
//!   different subscriptions, are independent. "Earlier" is creation order of the writes that
//!   committed: two transactions about one node are serialised by the node's lock.
//! - **Retention.** Delivered messages and their attempts are deleted after
//!   `ALLOT_OUTBOX_RETENTION_DAYS`; failed ones stay until retried or their subscription's node
//!   goes.

pub(crate) mod signature;
pub(crate) mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::Notify;

use crate::domain::outbox::{Backoff, Mail, MessageKind, accepted};
use crate::error::ApiError;
use crate::secret::Sealer;
use crate::store::outbox::{self as rows, Next, Outcome, Row};
use crate::store::{self, Pool};

/// The longest the worker sleeps without looking for due messages.
pub(crate) const POLL: Duration = Duration::from_secs(5);
/// Messages claimed at once.
const BATCH: i64 = 32;
/// The most of a receiver's answer kept (for the attempt's error) or read at all.
const ANSWER_EXCERPT: usize = 512;
/// Messages pruned per transaction.
const PRUNE_BATCH: i64 = 1_000;
/// How often delivered messages past retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How the worker delivers, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub allow_private: bool,
    /// One attempt's deadline: connecting, sending, and reading the answer's head.
    pub timeout: Duration,
    pub retention_days: u32,
    /// Where mail may go (`crate::mail`'s own deadline bounds a mail's attempt).
    pub mail: crate::mail::Settings,
}

impl Settings {
    /// How long a claim holds: an attempt's deadline and a margin to record its outcome. A claim
    /// older than this belongs to an instance that died.
    fn lease(&self) -> Duration {
        self.timeout + Duration::from_secs(20)
    }
}

/// Wakes the worker of this instance.
#[derive(Debug, Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Starts the worker and the pruner on the current runtime; the waker that wakes the worker.
pub(crate) fn spawn(
    pool: Pool,
    sealer: Sealer,
    dns: crate::dns::Verifier,
    settings: Settings,
) -> Waker {
    let waker = Waker::default();
    let dns = Arc::new(dns);
    let client = reqwest::Client::builder()
        // A redirect would be a second target, not judged: the answer is the 3xx (a failure).
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would connect for us, to addresses this process never judged.
        .no_proxy()
        .dns_resolver(Arc::new(target::GuardedResolver {
            dns: dns.clone(),
            allow_private: settings.allow_private,
        }))
        .connect_timeout(settings.timeout)
        .timeout(settings.timeout)
        .user_agent(concat!("allot-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the webhook client's settings are valid");
    let worker = Worker {
        pool: pool.clone(),
        sealer,
        settings: settings.clone(),
        client,
        dns,
    };
    let wake = waker.0.clone();
    tokio::spawn(async move { worker.run(wake).await });
    tokio::spawn(prune_forever(pool, settings.retention_days));
    waker
}

struct Worker {
    pool: Pool,
    sealer: Sealer,
    settings: Settings,
    client: reqwest::Client,
    /// What a mail server's host name is looked up with.
    dns: Arc<crate::dns::Verifier>,
}

impl Worker {
    async fn run(self, wake: Arc<Notify>) {
        let me = Arc::new(self);
        loop {
            let sleep = match me.claim().await {
                Ok((batch, _)) if !batch.is_empty() => {
                    let mut deliveries = tokio::task::JoinSet::new();
                    for row in batch {
                        let me = me.clone();
                        deliveries.spawn(async move { me.deliver(row).await });
                    }
                    while deliveries.join_next().await.is_some() {}
                    continue;
                }
                Ok((_, next_due)) => next_due.map_or(POLL, |at| {
                    (at - store::now()).to_std().unwrap_or_default().min(POLL)
                }),
                Err(err) => {
                    tracing::warn!(error = ?err, "the outbox could not be read");
                    POLL
                }
            };
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Claims a batch; when there is none, also when the next retry or lease falls due.
    async fn claim(&self) -> Result<(Vec<Row>, Option<NaiveDateTime>), ApiError> {
        let lease = TimeDelta::from_std(self.settings.lease()).unwrap_or(TimeDelta::MAX);
        store::run(&self.pool, move |conn| {
            let now = store::now();
            // A read first: most wakes (every write request) find nothing due, and on SQLite a
            // claim takes the database's write lock.
            if !rows::any_due(conn, now)? {
                return Ok((Vec::new(), rows::next_due(conn, now)?));
            }
            let token = uuid::Uuid::new_v4().to_string();
            let batch = store::write_tx(conn, |conn| {
                rows::claim(conn, now, now + lease, &token, BATCH)
            })?;
            let next = if batch.is_empty() {
                rows::next_due(conn, now)?
            } else {
                None
            };
            Ok((batch, next))
        })
        .await
    }

    /// Makes one attempt at `row` and records it.
    async fn deliver(&self, row: Row) {
        let started = Instant::now();
        let at = store::now();
        let attempt = match row.kind.parse() {
            Ok(MessageKind::Webhook) => self.post_webhook(&row).await,
            Ok(MessageKind::Mail) => self.send_mail(&row).await,
            Err(_) => Attempt::gone(format!("unknown message kind {}", row.kind)),
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        let next = if attempt.delivered {
            Next::Delivered
        } else if attempt.permanent || attempts >= self.settings.max_attempts {
            Next::Failed
        } else {
            let wait = self.settings.backoff.delay(attempts, rand::random::<f64>());
            Next::Retry(store::now() + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX))
        };
        let outcome = Outcome {
            at,
            duration_ms,
            status_code: attempt.status.map(i32::from),
            error: attempt.error,
            next,
        };
        let (id, claim) = (row.message_id(), row.claim.clone().unwrap_or_default());
        let recorded = store::run(&self.pool, move |conn| {
            store::write_tx(conn, |conn| {
                rows::finish(conn, id?, &claim, outcome)?;
                Ok::<_, ApiError>(())
            })
        })
        .await;
        if let Err(err) = recorded {
            // The lease runs out and the message is tried again: at least once.
            tracing::warn!(error = ?err, message = %row.id, "an outbox attempt could not be recorded");
        }
    }

    /// POSTs the event to the subscription `row.target` names, signed with its secrets.
    async fn post_webhook(&self, row: &Row) -> Attempt {
        let Ok(id) = row.target.parse::<crate::domain::ids::WebhookId>() else {
            return Attempt::gone("the subscription id is malformed".to_owned());
        };
        let found = store::run(&self.pool, move |conn| {
            Ok::<_, ApiError>(store::webhooks::find(conn, id)?)
        })
        .await;
        let webhook = match found {
            Ok(Some(webhook)) => webhook,
            Ok(None) => return Attempt::gone("the subscription was deleted".to_owned()),
            Err(err) => {
                return Attempt::failed(format!("the subscription could not be read: {err}"));
            }
        };
        let context = crate::service::webhooks::seal_context(webhook.id);
        let mut secrets = Vec::new();
        let previous = webhook.previous_secret.as_ref().filter(|_| {
            webhook
                .previous_until
                .is_some_and(|until| until > store::now())
        });
        for sealed in std::iter::once(&webhook.secret).chain(previous) {
            match self.sealer.open(sealed, &context) {
                Ok(secret) => secrets.push(secret),
                Err(_) => {
                    return Attempt::gone("the subscription's secret does not open".to_owned());
                }
            }
        }
        let url = match target::parse_url(&webhook.url, self.settings.allow_private) {
            Ok(url) => url,
            Err(why) => return Attempt::failed(format!("the URL is refused: it {why}")),
        };
        let timestamp = chrono::Utc::now().timestamp();
        let body = row.payload.as_bytes();
        let Ok(signature) = signature::header(&secrets, &row.id, timestamp, body) else {
            return Attempt::gone("the subscription's secret does not decode".to_owned());
        };
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(row.payload.clone())
            .send()
            .await;
        match sent {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let excerpt = excerpt(&mut response).await;
                if accepted(status) {
                    Attempt::delivered(status)
                } else {
                    Attempt::answered(status, excerpt)
                }
            }
            Err(err) => Attempt::failed(error_chain(&err)),
        }
    }
}

impl Worker {
    /// Sends the mail `row` holds through the mail server that applies to its node now
    /// (`service::settings::sending`, its secret opened here and nowhere stored), filling in the
    /// mail's own sealed secret, if it carries one. While sending is switched off or no server
    /// applies, the attempt fails and is tried again (the owner may switch it back on); a node
    /// gone, a mail that does not parse or a secret that does not open cannot get better, and a
    /// permanent SMTP refusal (5xx) will not either: those fail the message at once.
    async fn send_mail(&self, row: &Row) -> Attempt {
        use crate::service::settings::NotSending;
        let Ok(mail) = serde_json::from_str::<Mail>(&row.payload) else {
            return Attempt::gone("the mail does not parse".to_owned());
        };
        let Ok(node_id) = row.node() else {
            return Attempt::gone("the node id is malformed".to_owned());
        };
        let sealer = self.sealer.clone();
        let found = store::run(&self.pool, move |conn| {
            let Some(node) = store::nodes::find(conn, node_id)? else {
                return Ok(None);
            };
            Ok::<_, ApiError>(Some(crate::service::settings::sending(
                conn, &sealer, &node,
            )?))
        })
        .await;
        let sending = match found {
            Ok(Some(Ok(sending))) => sending,
            Ok(Some(Err(NotSending::SwitchedOff))) => {
                return Attempt::failed(
                    "sending mail is switched off (the owner's `mail_server.enabled`): not sent"
                        .to_owned(),
                );
            }
            Ok(Some(Err(NotSending::NoServer))) => {
                return Attempt::failed("no mail server applies to the node: not sent".to_owned());
            }
            Ok(None) => return Attempt::gone("the node is gone".to_owned()),
            Err(err) => {
                return Attempt::failed(format!("the mail server could not be read: {err}"));
            }
        };
        let secret = match &mail.secret {
            None => None,
            Some(sealed) => {
                use base64::Engine;
                let opened = base64::engine::general_purpose::STANDARD
                    .decode(sealed)
                    .ok()
                    .and_then(|bytes| {
                        self.sealer
                            .open(&bytes, &Mail::seal_context(node_id, &mail.to))
                            .ok()
                    });
                match opened {
                    Some(secret) => Some(secret),
                    None => return Attempt::gone("the mail's secret does not open".to_owned()),
                }
            }
        };
        let outgoing = crate::mail::Outgoing {
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            text: mail.text_with(secret.as_deref()),
        };
        let sent = crate::mail::send(&sending, &outgoing, &self.dns, &self.settings.mail).await;
        let code = |answer: &crate::mail::Answer| match answer {
            crate::mail::Answer::Smtp { code, .. } => *code,
            crate::mail::Answer::Graph { status } => *status,
        };
        match sent {
            Ok(answer) => Attempt::delivered(code(&answer)),
            Err(crate::mail::Failure::Forbidden(detail)) => {
                Attempt::failed(format!("the mail server's address is refused: {detail}"))
            }
            Err(crate::mail::Failure::Failed { answer, message }) => {
                let status = answer.as_ref().map(code);
                let permanent = matches!(
                    answer,
                    Some(crate::mail::Answer::Smtp { code, .. }) if (500..600).contains(&code)
                );
                Attempt {
                    delivered: false,
                    permanent,
                    status,
                    error: Some(message),
                }
            }
        }
    }
}

/// What one attempt came to.
struct Attempt {
    delivered: bool,
    /// Trying again cannot help (the subscription is gone): failed at once.
    permanent: bool,
    status: Option<u16>,
    error: Option<String>,
}

impl Attempt {
    fn delivered(status: u16) -> Self {
        Self {
            delivered: true,
            permanent: false,
            status: Some(status),
            error: None,
        }
    }

    fn answered(status: u16, excerpt: String) -> Self {
        let error = if excerpt.is_empty() {
            format!("answered {status}")
        } else {
            format!("answered {status}: {excerpt}")
        };
        Self {
            delivered: false,
            permanent: false,
            status: Some(status),
            error: Some(error),
        }
    }

    fn failed(error: String) -> Self {
        Self {
            delivered: false,
            permanent: false,
            status: None,
            error: Some(error),
        }
    }

    fn gone(error: String) -> Self {
        Self {
            permanent: true,
            ..Self::failed(error)
        }
    }
}

/// The start of the answer's body, at most [`ANSWER_EXCERPT`] bytes read, as text on one line.
async fn excerpt(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_EXCERPT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(ANSWER_EXCERPT);
    String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error and its causes, as one line: reqwest's own message alone says only "error sending
/// request".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Deletes delivered messages older than `days`, now and every [`PRUNE_EVERY`].
async fn prune_forever(pool: Pool, days: u32) {
    loop {
        let cutoff = store::now() - TimeDelta::days(i64::from(days));
        match prune(&pool, cutoff).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(
                pruned,
                retention_days = days,
                "delivered outbox messages deleted"
            ),
            Err(err) => tracing::warn!(error = ?err, "the outbox retention pruning failed"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// Deletes every message delivered before `cutoff`, a batch per transaction; how many.
pub(crate) async fn prune(pool: &Pool, cutoff: NaiveDateTime) -> Result<usize, ApiError> {
    let mut total = 0;
    loop {
        let deleted = store::run(pool, move |conn| {
            store::write_tx(conn, |conn| {
                rows::prune_delivered_before(conn, cutoff, PRUNE_BATCH).map_err(ApiError::from)
            })
        })
        .await?;
        total += deleted;
        if deleted < PRUNE_BATCH as usize {
            return Ok(total);
        }
    }
}

/// Wakes this instance's worker after every write request that succeeded, once its response is
/// ready (its transaction committed), so a message it wrote leaves at once. The check's requests
/// are left out: thousands a second, of which only an enrolment writes (found by the poll).
pub(crate) async fn wake_after_writes(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let waker = (!req.method().is_safe() && !req.path().starts_with("/v1/check"))
        .then(|| {
            req.app_data::<actix_web::web::Data<crate::startup::AppState>>()
                .map(|state| state.outbox.clone())
        })
        .flatten();
    let response = next.call(req).await?;
    if let Some(waker) = waker.filter(|_| response.status().is_success()) {
        waker.wake();
    }
    Ok(response)
}
