//! Browsers: with `ALLOT_CORS_ORIGINS`, pages of those origins (a reseller portal's front end)
//! may call the API. Preflights from them are answered with the methods and request headers the
//! API uses; answers to them name the origin and expose the headers a client reads. Any other
//! origin gets no CORS header, so its page cannot read the answer (the request itself is served
//! as for any client without a browser: a same-origin page such as `/docs` keeps working).
//! Unset, nothing changes: no CORS header anywhere.
//!
//! Credentials are never allowed (no `Access-Control-Allow-Credentials`). The API's credentials
//! are bearer tokens and API keys that a page sends in `Authorization` itself, which needs only
//! the header to be allowed; browser credentials (cookies, HTTP authentication, client
//! certificates) are none of allot's, and allowing them would only give other pages a way to send
//! what the browser holds. With credentials out, the remaining hazard of `*` is a page on any
//! site driving a logged-in portal user's token, which it can only do with the token; still,
//! `*` is refused at start (`config::parse_origin`): origins are named, one by one.

use actix_cors::Cors;
use actix_web::http::{Method, header};
use actix_web::middleware::Condition;

/// Headers a page sends: credentials, bodies, preconditions, retries' keys, tracing ids.
const REQUEST_HEADERS: [header::HeaderName; 6] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::IF_MATCH,
    header::HeaderName::from_static("idempotency-key"),
    header::HeaderName::from_static("x-request-id"),
];

/// Answer headers a page reads (beyond the CORS-safelisted ones): versions, where a created
/// resource is, when to retry and how much is left (the IETF `RateLimit` headers), a download's
/// name, whether an answer was replayed, the request id to quote, why credentials failed.
const EXPOSED_HEADERS: [&str; 10] = [
    "etag",
    "location",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "content-disposition",
    "idempotent-replayed",
    "x-request-id",
    "www-authenticate",
    "allow",
];

/// Seconds a browser may keep a preflight's answer.
const MAX_AGE: usize = 3600;

/// The middleware for `origins`; with none, it passes every request through untouched.
pub(crate) fn middleware(origins: &[String]) -> Condition<Cors> {
    let cors = origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers(REQUEST_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .max_age(MAX_AGE);
    Condition::new(!origins.is_empty(), cors)
}
