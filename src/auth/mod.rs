//! Who is calling. [`Principal`] is an extractor: a handler that takes one is authenticated, and
//! one that does not is public. A principal is a person's account presenting an access token
//! (`Authorization: Bearer <JWT>`) or a machine presenting an API key (`Authorization: Bearer
//! allot_…`). Either is read again on every request, so a disabled or deleted account, or a revoked
//! or expired key, stops working at once, and a role change takes effect without a new login. A
//! token must carry its account's current credential version, which a password change, an
//! admin's reset or a disable raises: each revokes every token issued before it, and enabling the
//! account again brings none back.
//!
//! A token from a login with a password an admin set is good only for choosing a new one: such a
//! caller is an [`Authenticated`] but not a `Principal`, so every handler that takes a `Principal`
//! refuses it (`password-change-required`) without a line of its own. Only `GET /v1/me` and
//! `PATCH /v1/accounts/{id}` take an `Authenticated`.

pub mod api_key;
pub mod guard;
pub mod jwt;
pub(crate) mod password;
pub mod rate_limit;
pub(crate) mod throttle;

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use crate::domain::ids::NodeId;
use crate::domain::roles::Role;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::audit::Actor;
use crate::store::{self, DbConnection};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account or API key, as the audit trail names it.
    pub actor: Actor,
    /// The account's username or the key's name.
    pub name: String,
    pub node_id: NodeId,
    /// The materialised path of the principal's node: its subtree is every path with this prefix.
    pub node_path: String,
    pub role: Role,
    /// The request's id, for the audit trail.
    pub request_id: Option<String>,
    /// The client's address (`edge::client`), for the audit trail.
    pub client_address: Option<std::net::IpAddr>,
    /// The day the request is judged on: today, by the application's clock.
    pub today: chrono::NaiveDate,
}

pub(crate) const MISSING: &str =
    "Credentials are required: send `Authorization: Bearer <access token or API key>`.";
pub(crate) const INVALID: &str = "The credentials are invalid, expired or revoked.";

/// A last-used time is written at most this often per key, not on every request.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
pub(crate) fn bearer_token(req: &HttpRequest) -> Result<String, ApiError> {
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

/// What a credential resolved to, before its node is read.
struct Resolved {
    actor: Actor,
    name: String,
    node_id: NodeId,
    role: Role,
    /// The budget its requests count against.
    policy: rate_limit::Policy,
}

fn resolve_key(conn: &mut DbConnection, token: &str) -> Result<Option<Resolved>, ApiError> {
    let Some((id, secret)) = api_key::parse(token) else {
        return Ok(None);
    };
    let Some(key) = store::api_keys::find(conn, id)? else {
        return Ok(None);
    };
    let now = store::now();
    let usable = api_key::matches(secret, &key.secret_hash)
        && key.revoked_at.is_none()
        && key.expires_at.is_none_or(|at| at > now);
    if !usable {
        return Ok(None);
    }
    if key.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
        store::api_keys::touch(conn, key.id, now)?;
    }
    Ok(Some(Resolved {
        actor: Actor::ApiKey(key.id),
        name: key.name,
        node_id: key.node_id,
        role: key.role,
        policy: rate_limit::Policy::of(key.role, key.rate_limit),
    }))
}

fn resolve_account(
    conn: &mut DbConnection,
    claims: &jwt::Claims,
) -> Result<Option<Resolved>, ApiError> {
    Ok(store::accounts::find(conn, claims.sub)?
        .filter(|account| {
            !account.disabled && account.credential_version == claims.credential_version
        })
        .map(|account| Resolved {
            actor: Actor::Account(account.id),
            name: account.username,
            node_id: account.node_id,
            role: account.role,
            policy: rate_limit::Policy::of(account.role, None),
        }))
}

/// A caller whose credentials are valid, including one whose token is good only for changing its
/// own password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authenticated {
    pub principal: Principal,
    /// The token was issued for a password an admin set: good only for choosing a new one.
    pub password_change_only: bool,
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let authenticated = Authenticated::from_request(req, payload);
        Box::pin(async move {
            let authenticated = authenticated.await?;
            if authenticated.password_change_only {
                return Err(ApiError::PasswordChangeRequired);
            }
            Ok(authenticated.principal)
        })
    }
}

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        let request_id = crate::telemetry::RequestId::of(req);
        let client_address = crate::edge::client::address(req);
        let req = req.clone();
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::internal(std::io::Error::other("application state is not registered"))
            })?;
            let token = token?;
            let claims = if token.starts_with(api_key::PREFIX) {
                None
            } else {
                Some(state.keys.verify(&token).map_err(|err| {
                    tracing::debug!(error = %err, "token refused");
                    ApiError::Unauthorized(INVALID)
                })?)
            };
            let password_change_only = claims.as_ref().is_some_and(|c| c.password_change_only);
            let (resolved, node) = store::run(&state.pool, move |conn| {
                let resolved = match &claims {
                    Some(claims) => resolve_account(conn, claims)?,
                    None => resolve_key(conn, &token)?,
                };
                let Some(resolved) = resolved else {
                    return Ok(None);
                };
                let node = store::nodes::find(conn, resolved.node_id)?;
                Ok::<_, ApiError>(node.map(|node| (resolved, node)))
            })
            .await?
            .ok_or(ApiError::Unauthorized(INVALID))?;
            // Counted once the credential is known good: nobody spends another's budget.
            let allowance = state.rate_limits.admit(&resolved.actor, resolved.policy)?;
            rate_limit::note(&req, allowance);
            Ok(Authenticated {
                principal: Principal {
                    actor: resolved.actor,
                    name: resolved.name,
                    node_id: node.id,
                    node_path: node.path,
                    role: resolved.role,
                    request_id,
                    client_address,
                    today: state.config.clock.today(),
                },
                password_change_only,
            })
        })
    }
}
