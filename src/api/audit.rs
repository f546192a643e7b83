//! The audit trail, read: the events of a node's subtree, newest first, as pages of JSON or, for
//! an archive, as one stream of NDJSON or CSV read in batches. Nothing in the API changes or
//! deletes an event (retention is `service::audit`'s).

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::common::{self, PageRequest, utc};
use super::spreadsheet;
use crate::auth::Principal;
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::tree::NodeKind;
use crate::error::{ApiError, FieldError, Guarded};
use crate::startup::AppState;
use crate::store::audit::{Filter, Position, Row, Scope};
use crate::store::nodes::Node;
use crate::store::{self, Pool, nodes};

/// Events a stream reads per query.
const EXPORT_BATCH: i64 = 1_000;

pub(crate) const NDJSON: &str = "application/x-ndjson";
pub(crate) const CSV: &str = "text/csv";

/// Who made a change, as it was when it was made.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditActor {
    /// `system` (allot itself, its command line, expiries), `account` or `api_key`.
    #[schema(value_type = crate::api::schemas::ActorKind)]
    pub kind: String,
    /// The account's or the API key's id; absent for `system`.
    pub id: Option<String>,
    /// The account's username or the key's name when the change was made (`system` for allot);
    /// absent only for events written before names were recorded whose actor was gone by then.
    pub name: Option<String>,
}

/// The node a change happened at, named as it was then.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditNode {
    pub id: String,
    pub name: Option<String>,
}

/// What changed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditTarget {
    /// `node`, `account`, `api_key`, `allocation`, `licence`, `domain`, `mailbox`, `alias`,
    /// `group`, `module`, …
    #[schema(example = "mailbox")]
    pub kind: String,
    pub id: String,
}

/// One change, as the audit trail recorded it in the change's own transaction.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEvent {
    pub id: String,
    pub at: DateTime<Utc>,
    pub actor: AuditActor,
    pub node: AuditNode,
    /// `<kind>.<verb>`, one of the `action` filter's values.
    #[schema(example = "mailbox.create")]
    pub action: String,
    pub target: AuditTarget,
    /// The target before the change (absent for a creation); never a password, a key or a token.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The target after the change (absent for a deletion); never a secret either.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// The `X-Request-Id` of the request that made the change.
    pub request_id: Option<String>,
    /// The address of the client that made the change: the connection's peer, or behind a
    /// trusted proxy (`ALLOT_TRUSTED_PROXIES`) the address it forwarded. Absent for changes the
    /// service made itself and for events written before addresses were recorded.
    #[schema(example = "203.0.113.7")]
    pub client_address: Option<String>,
}

/// Members that would hold a secret. No workflow records one (each audits a view without its
/// credentials); the trail drops these anyway, at any depth, so that a slip cannot publish one.
/// Settings record their secrets as `{"set": true}` or `{"set": false}`, which holds nothing to
/// publish, so a member of exactly that shape stays.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "secret",
    "secret_hash",
    "client_secret",
    "api_key",
    "access_token",
    "refresh_token",
    "jwt_secret",
];

/// Whether `value` is a secret's `{"set": bool}` and nothing else.
fn only_whether_set(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.len() == 1 && map.get("set").is_some_and(Value::is_boolean))
}

/// A stored `before` or `after`, without any member named in [`SECRET_KEYS`].
fn document(text: Option<String>) -> Option<Value> {
    fn scrub(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|key, value| {
                    !SECRET_KEYS.contains(&key.as_str()) || only_whether_set(value)
                });
                map.values_mut().for_each(scrub);
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    let mut value = serde_json::from_str(&text?).ok()?;
    scrub(&mut value);
    Some(value)
}

impl From<Row> for AuditEvent {
    fn from(row: Row) -> Self {
        let (kind, id) = match row.actor.split_once(':') {
            Some((kind, id)) => (kind.to_owned(), Some(id.to_owned())),
            None => (row.actor, None),
        };
        Self {
            id: row.id,
            at: utc(row.at),
            actor: AuditActor {
                kind,
                id,
                name: row.actor_name,
            },
            node: AuditNode {
                id: row.node_id,
                name: row.node_name,
            },
            action: row.action,
            target: AuditTarget {
                kind: row.target_kind,
                id: row.target_id,
            },
            before: document(row.before),
            after: document(row.after),
            request_id: row.request_id,
            client_address: row.client_address,
        }
    }
}

common::list_query! {
    pub struct AuditQuery {
        /// Only events at or after this time (RFC 3339).
        pub from: Option<DateTime<Utc>>,
        /// Only events before this time (RFC 3339).
        pub to: Option<DateTime<Utc>>,
        /// Only events by this actor: `system`, `account:<id>`, `api_key:<id>`, or an account's or
        /// API key's bare id.
        #[param(pattern = r"^(?:system|(?:account:|api_key:)?(?:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{32}|\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}|urn:uuid:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}))$")]
        pub actor: Option<String>,
        /// Only events of this action.
        pub action: Option<Action>,
        /// Only events about targets of this kind (`mailbox`, `domain`, `node`, …).
        pub target_kind: Option<String>,
        /// Only events about this target (with or without `target_kind`).
        pub target_id: Option<String>,
    }
}

/// The cursor key of an event: where a newest-first read continues after it.
fn position_key(at: NaiveDateTime, id: &str) -> String {
    format!("{}|{id}", at.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

fn parse_position(key: &str) -> Option<Position> {
    let (at, id) = key.split_once('|')?;
    let at = NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S%.6f").ok()?;
    uuid::Uuid::parse_str(id).ok()?;
    Some((at, id.to_owned()))
}

impl AuditQuery {
    /// The filter and the page asked for, validated.
    fn parse(self) -> Result<(Filter, PageRequest), ApiError> {
        let page = PageRequest::parse_keyed(self.limit, self.cursor.as_deref(), |key| {
            parse_position(key).is_some()
        })?;
        let actors = match self.actor.as_deref() {
            None => Vec::new(),
            Some("system") => vec!["system".to_owned()],
            Some(text) => match text.split_once(':') {
                Some(("account" | "api_key", id)) if uuid::Uuid::parse_str(id).is_ok() => {
                    vec![text.to_owned()]
                }
                None if uuid::Uuid::parse_str(text).is_ok() => {
                    vec![format!("account:{text}"), format!("api_key:{text}")]
                }
                _ => {
                    return Err(ApiError::InvalidQuery(vec![FieldError::new(
                        "actor",
                        "must be system, account:<id>, api_key:<id> or an id",
                    )]));
                }
            },
        };
        let filter = Filter {
            from: self.from.map(|at| at.naive_utc()),
            to: self.to.map(|at| at.naive_utc()),
            actors,
            action: self.action.map(Action::as_str),
            target_kind: self.target_kind,
            target_id: self.target_id,
        };
        Ok((filter, page))
    }
}

/// How the caller asked to read the trail, by `Accept`: the first of the media types it lists
/// that this route answers; pages of JSON when it lists none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Page,
    Ndjson,
    Csv,
}

impl Format {
    fn of(request: &HttpRequest) -> Self {
        let accept = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        accept
            .split(',')
            .map(|part| part.split(';').next().unwrap_or_default().trim())
            .find_map(|media| match media.to_ascii_lowercase().as_str() {
                NDJSON => Some(Self::Ndjson),
                CSV => Some(Self::Csv),
                "application/json" | "*/*" => Some(Self::Page),
                _ => None,
            })
            .unwrap_or(Self::Page)
    }
}

/// The events of `{id}`'s subtree (deleted nodes' included), newest first, filtered. A page of
/// JSON by default; with `Accept: application/x-ndjson` (one event per line) or `text/csv` (a
/// header row, then one event per row; `before` and `after` as JSON text; a cell starting with
/// `=`, `+`, `-` or `@` prefixed with `'`, so that no spreadsheet runs it) every filtered event,
/// streamed as it is read, from `cursor` if given (`limit` applies to pages only).
#[utoipa::path(
    tag = "audit",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), AuditQuery),
    responses(
        (status = 200, description = "A page of events, or every event as a stream",
            headers(("Content-Disposition" = String,
                description = "With `text/csv` only: `attachment; filename=\"audit-<node id>-<date>.csv\"`")),
            content(
                (super::common::pages::AuditPage = "application/json"),
                (AuditEvent = "application/x-ndjson"),
                (String = "text/csv"),
            )),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/audit")]
pub(crate) async fn list_audit(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<AuditQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (filter, page) = query.into_inner().parse()?;
    let format = Format::of(&request);
    if format == Format::Page {
        let page = common::node_page(
            &state.pool,
            principal,
            id,
            page,
            move |conn, node, after, limit| {
                let after = after.and_then(parse_position);
                store::audit::read(conn, &scope(node), &filter, after.as_ref(), limit)
            },
            |row| position_key(row.at, &row.id),
            AuditEvent::from,
        )
        .await?;
        return Ok(HttpResponse::Ok().json(page.0));
    }
    let today = principal.today;
    let scope = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?;
        Ok::<_, ApiError>(scope(&node))
    })
    .await?;
    let after = page.after.as_deref().and_then(parse_position);
    let body = export(state.pool.clone(), scope, filter, after, format);
    let mut response = HttpResponse::Ok();
    if format == Format::Csv {
        // Named by the node's id, which an archive keeps meaning after a rename.
        let file = format!("audit-{id}-{today}.csv");
        response
            .content_type(spreadsheet::CSV)
            .insert_header(spreadsheet::attachment(&file));
    } else {
        response.content_type(NDJSON);
    }
    Ok(response.streaming(body))
}

/// Whose events the trail of `node` holds: a customer's own, or the subtree's.
fn scope(node: &Node) -> Scope {
    if node.kind == NodeKind::Customer {
        Scope::Node(node.id.to_string())
    } else {
        Scope::Subtree(node.path.clone())
    }
}

/// A stream's chunks, each one batch of events, handed over by the reading thread.
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Every event of `scope` matching `filter`, newest first after `after`, encoded as
/// `format`: read [`EXPORT_BATCH`] at a time on a blocking thread, each batch on a connection
/// taken from the pool and given back before the batch is sent, and sent only when the client
/// has taken the one before (a channel of one), so that memory holds about two batches whatever
/// the trail's length. A client that goes away stops the reading.
fn export(
    pool: Pool,
    scope: Scope,
    filter: Filter,
    after: Option<Position>,
    format: Format,
) -> Chunks {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let mut after = after;
        let mut first = true;
        loop {
            let rows = pool
                .get()
                .map_err(std::io::Error::other)
                .and_then(|mut conn| {
                    store::audit::read(&mut conn, &scope, &filter, after.as_ref(), EXPORT_BATCH)
                        .map_err(std::io::Error::other)
                });
            let rows = match rows {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "an audit export stopped");
                    let _ = sender.blocking_send(Err(err));
                    return;
                }
            };
            let last = (rows.len() as i64) < EXPORT_BATCH;
            after = rows.last().map(|row| (row.at, row.id.clone()));
            let chunk = encode(format, first, rows);
            first = false;
            let failed = chunk.is_err();
            if sender.blocking_send(chunk).is_err() || last || failed {
                return;
            }
        }
    });
    Chunks(receiver)
}

/// One batch as NDJSON lines, or as CSV rows (after the header row when `first`).
fn encode(format: Format, first: bool, rows: Vec<Row>) -> Result<Bytes, std::io::Error> {
    let events = rows.into_iter().map(AuditEvent::from);
    if format == Format::Ndjson {
        let mut out = Vec::new();
        for event in events {
            serde_json::to_writer(&mut out, &event)?;
            out.push(b'\n');
        }
        return Ok(Bytes::from(out));
    }
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    if first {
        writer.write_record(CSV_COLUMNS)?;
    }
    for event in events {
        let json = |value: Option<Value>| value.map(|v| v.to_string()).unwrap_or_default();
        let record = [
            event.id,
            event
                .at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            event.actor.kind,
            event.actor.id.unwrap_or_default(),
            event.actor.name.unwrap_or_default(),
            event.node.id,
            event.node.name.unwrap_or_default(),
            event.action,
            event.target.kind,
            event.target.id,
            json(event.before),
            json(event.after),
            event.request_id.unwrap_or_default(),
            event.client_address.unwrap_or_default(),
        ];
        writer.write_record(
            record
                .iter()
                .map(|cell| spreadsheet::safe_cell(cell).into_owned()),
        )?;
    }
    writer
        .into_inner()
        .map(Bytes::from)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The CSV export's header row.
const CSV_COLUMNS: [&str; 14] = [
    "id",
    "at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "node_id",
    "node_name",
    "action",
    "target_kind",
    "target_id",
    "before",
    "after",
    "request_id",
    "client_address",
];

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(list_audit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_dropped_at_any_depth() {
        let text = r#"{"name": "k", "secret": "s", "nested": {"password": "p", "kept": 1},
                       "list": [{"access_token": "t", "role": "admin"}]}"#;
        assert_eq!(
            document(Some(text.to_owned())),
            Some(
                serde_json::json!({"name": "k", "nested": {"kept": 1}, "list": [{"role": "admin"}]})
            )
        );
    }

    #[test]
    fn a_cursor_gives_back_its_position() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
            .unwrap()
            .and_hms_micro_opt(6, 5, 4, 300)
            .unwrap();
        let id = "0193a8f0-0000-7000-8000-000000000001";
        assert_eq!(
            parse_position(&position_key(at, id)),
            Some((at, id.to_owned()))
        );
        assert_eq!(parse_position("not a cursor"), None);
    }
}
