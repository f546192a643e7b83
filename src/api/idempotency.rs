//! `Idempotency-Key` on requests that create (the IETF httpapi draft's semantics): the same key and
//! request from the same principal within 24 hours replays the first answer, marked
//! `Idempotent-Replayed: true`; the same key with another request answers 422. The record is
//! written in the same transaction as its effect, so an effect and its record exist together or not
//! at all, and a billing system's retry never books twice.
//!
//! Writers that touch the same nodes queue on their locks, so a retry sent while the first request
//! is still running waits for it and then replays its answer. One that races it on other nodes
//! meets the key's unique index and answers 409: retry it.

use std::future::{Ready, ready};

use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::store::idempotency::{self, Recorded};
use crate::store::{self, DbConnection};

/// How long a first answer is kept for replay.
const RETENTION_HOURS: i64 = 24;

/// The request's `Idempotency-Key`, if it sent one, with what identifies the request itself.
#[derive(Debug, Clone)]
pub(crate) struct IdempotencyKey {
    key: Option<String>,
    method_and_path: String,
}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let method_and_path = format!("{} {}", req.method(), req.path());
        let key = match req.headers().get("idempotency-key") {
            None => Ok(None),
            Some(value) => {
                let bytes = value.as_bytes();
                // The draft's key is an opaque string; allot takes up to 255 visible characters,
                // enough for a UUID or a billing system's order reference.
                let quoted = bytes
                    .strip_prefix(b"\"")
                    .and_then(|b| b.strip_suffix(b"\""))
                    .unwrap_or(bytes);
                if (1..=255).contains(&quoted.len()) && quoted.iter().all(|b| b.is_ascii_graphic())
                {
                    Ok(Some(String::from_utf8_lossy(quoted).into_owned()))
                } else {
                    Err(ApiError::validation(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    ))
                }
            }
        };
        ready(key.map(|key| Self {
            key,
            method_and_path,
        }))
    }
}

/// The header, for the OpenAPI description of the routes that take it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct IdempotencyHeader {
    /// Makes a retry of this request within 24 hours replay the first answer instead of acting
    /// twice: the same key with the same request from the same caller answers as the first did,
    /// with `Idempotent-Replayed: true`.
    #[param(rename = "Idempotency-Key", value_type = Option<crate::api::schemas::IdempotencyKeyText>)]
    #[expect(
        dead_code,
        reason = "describes a header; read by the IdempotencyKey extractor"
    )]
    idempotency_key: Option<String>,
}

/// An answer that can be recorded and replayed.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub replayed: bool,
}

impl Answer {
    /// 201 with `Location` and `ETag`.
    pub fn created(
        location: String,
        etag: String,
        body: &impl Serialize,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            status: StatusCode::CREATED,
            body: serde_json::to_string(body).map_err(ApiError::internal)?,
            location: Some(location),
            etag: Some(etag),
            replayed: false,
        })
    }

    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.content_type("application/json");
        if let Some(location) = self.location {
            response.insert_header((header::LOCATION, location));
        }
        if let Some(etag) = self.etag {
            response.insert_header((header::ETAG, etag));
        }
        if self.replayed {
            response.insert_header(("idempotent-replayed", "true"));
        }
        response.body(self.body)
    }
}

/// Runs `effect` once per key: inside the caller's write transaction, replays a recorded answer
/// for the same request, refuses the key for another one, or runs the effect and records it.
pub(crate) fn once(
    conn: &mut DbConnection,
    principal: &Principal,
    key: &IdempotencyKey,
    body: &[u8],
    effect: impl FnOnce(&mut DbConnection) -> Result<Answer, ApiError>,
) -> Result<Answer, ApiError> {
    let Some(key_text) = &key.key else {
        return effect(conn);
    };
    let who = principal.actor.as_text();
    let mut hasher = Sha256::new();
    hasher.update(key.method_and_path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    let fingerprint = format!("{:x}", hasher.finalize());
    let now = store::now();
    idempotency::forget_before(conn, &who, now - chrono::TimeDelta::hours(RETENTION_HOURS))?;
    if let Some(recorded) = idempotency::find(conn, &who, key_text)? {
        if recorded.fingerprint != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        return Ok(Answer {
            status: StatusCode::from_u16(u16::try_from(recorded.status).unwrap_or(500))
                .unwrap_or(StatusCode::OK),
            body: recorded.body,
            location: recorded.location,
            etag: recorded.etag,
            replayed: true,
        });
    }
    let answer = effect(conn)?;
    let record = Recorded {
        fingerprint,
        status: i32::from(answer.status.as_u16()),
        body: answer.body.clone(),
        location: answer.location.clone(),
        etag: answer.etag.clone(),
        created_at: now,
    };
    idempotency::insert(conn, &who, key_text, &record).map_err(|err| {
        ApiError::unless_unique(err, || {
            ApiError::Conflict(
                "Another request with this Idempotency-Key is being processed; retry it."
                    .to_owned(),
            )
        })
    })?;
    Ok(answer)
}
