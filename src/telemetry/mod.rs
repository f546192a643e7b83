//! Logs and request ids.
//!
//! Every request's log lines name its client's address (the peer's, or behind trusted proxies the
//! forwarded one: `edge::client`). Every request gets an id: the caller's `x-request-id` when it sent a sane one (so a portal's
//! trace continues through allot), a fresh UUID v7 otherwise. The id is on every log line of the
//! request (a tracing span), in the response's `x-request-id` header, and in the request's
//! extensions for the audit trail.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

mod batched;

pub use batched::Guard;

/// Installs the global subscriber. Fails only on a filter that does not parse.
///
/// Lines are formatted on the thread that logs and written in batches by a thread of their own
/// ([`batched`]): a request never waits on standard error. Colours only on a terminal.
///
/// A filter of targets and levels (`info`, `allot=debug,actix_server=warn`) is applied as a static
/// [`Targets`](tracing_subscriber::filter::Targets) filter; only one that names spans or fields
/// (`[request{path=/v1/check}]=debug`) needs an `EnvFilter`, which takes a lock each time a
/// span is entered or left, on every worker, for every request.
pub fn init(filter: &str, format: LogFormat) -> Result<Option<Guard>, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let (targets, env) = match filter.parse::<tracing_subscriber::filter::Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (
            None,
            Some(EnvFilter::try_new(filter).map_err(|e| e.to_string())?),
        ),
    };
    let (writer, guard) = batched::batched(std::io::stderr());
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(std::io::stderr().is_terminal()),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .json()
                    .flatten_event(true),
            ),
        ),
    };
    let result = tracing_subscriber::registry()
        .with(targets)
        .with(env)
        .with(text)
        .with(json)
        .try_init();
    // A second init (tests start many apps in one process) keeps the first subscriber.
    Ok(result.is_ok().then_some(guard))
}

/// The id of the request being handled.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub String);

impl RequestId {
    /// The id of `req`, once the request-id middleware has given it one.
    pub fn of(req: &actix_web::HttpRequest) -> Option<String> {
        use actix_web::HttpMessage;
        req.extensions().get::<Self>().map(|id| id.0.clone())
    }
}

/// An incoming id is kept if it is short, visible ASCII: it goes into logs and headers verbatim.
fn acceptable(value: &HeaderValue) -> Option<String> {
    let bytes = value.as_bytes();
    let sane =
        !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic());
    sane.then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// Middleware (`actix_web::middleware::from_fn`): assigns the id, opens the span, logs the outcome.
pub(crate) async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(acceptable)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    // Resolved here, once: the span names it, and throttling and the audit trail read it back.
    let client = crate::edge::client::address(req.request());
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client = client.map(tracing::field::display),
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    // The check's answers are counted in `/metrics` (`allot_checks_total`); at tens of thousands
    // a second, a line each would be the log. A check answered with an error status still is one.
    let check = req.path().starts_with("/v1/check");
    // Handlers and extractors answer errors as responses; an `Err` here comes from a middleware
    // and is rendered by actix itself (the request cannot be kept to render it here: routing
    // needs sole ownership of it).
    let mut response = next.call(req).instrument(span.clone()).await?;
    span.in_scope(|| {
        let (status, elapsed_ms) = (
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1000.0,
        );
        if check && response.status().is_success() {
            tracing::debug!(status, elapsed_ms, "handled");
        } else {
            tracing::info!(status, elapsed_ms, "handled");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    Ok(response)
}
