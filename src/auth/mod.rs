//! Who is calling. [`Principal`] is an extractor: a handler that takes one is authenticated, and
//! one that does not is public. Today a principal is a person's account presenting an access token;
//! the account is read again on every request, so a disabled or deleted account's tokens stop
//! working at once and a role change takes effect without a new login.

pub mod guard;
pub mod jwt;
pub mod password;

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use crate::domain::ids::{AccountId, NodeId};
use crate::domain::roles::Role;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: AccountId,
    pub username: String,
    pub node_id: NodeId,
    /// The materialised path of the principal's node: its subtree is every path with this prefix.
    pub node_path: String,
    pub role: Role,
    /// The request's id, for the audit trail.
    pub request_id: Option<String>,
}

const MISSING: &str = "Credentials are required: send `Authorization: Bearer <access token>`.";
const INVALID: &str = "The credentials are invalid, expired or revoked.";

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(MISSING))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized(INVALID))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim().to_owned())
        }
        _ => Err(ApiError::Unauthorized(INVALID)),
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        let request_id = req
            .extensions()
            .get::<crate::telemetry::RequestId>()
            .map(|id| id.0.clone());
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::internal(std::io::Error::other("application state is not registered"))
            })?;
            let claims = state.keys.verify(&token?).map_err(|err| {
                tracing::debug!(error = %err, "token refused");
                ApiError::Unauthorized(INVALID)
            })?;
            let (account, node) = store::run(&state.pool, move |conn| {
                let Some(account) = store::accounts::find(conn, claims.sub)? else {
                    return Ok(None);
                };
                let node = store::nodes::find(conn, account.node_id)?;
                Ok::<_, ApiError>(node.map(|node| (account, node)))
            })
            .await?
            .filter(|(account, _)| !account.disabled)
            .ok_or(ApiError::Unauthorized(INVALID))?;
            Ok(Principal {
                account_id: account.id,
                username: account.username,
                node_id: node.id,
                node_path: node.path,
                role: account.role,
                request_id,
            })
        })
    }
}
