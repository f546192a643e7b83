//! Logging in and asking who one is.

use actix_web::http::header;

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use crate::auth::{Authenticated, jwt};
use crate::domain::ids::NodeId;
use crate::domain::roles::Role;
use crate::domain::tree::NodeKind;
use crate::error::{ApiError, Problem};
use crate::startup::AppState;
use crate::store;
use crate::store::audit::Actor;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "admin")]
    pub username: String,
    #[schema(example = "correct horse battery staple", format = Password)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(value_type = crate::api::schemas::TokenType)]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
    /// An admin set this password: the token is good only for choosing a new one (`PATCH
    /// /v1/accounts/{own id}` with `password` and `current_password`; `GET /v1/me` names the id).
    /// Every other request answers 403 `password-change-required`.
    pub password_change_required: bool,
}

/// Exchanges a username and password for an access token valid 15 minutes. A wrong password, an
/// unknown username, a disabled account and an account at a deleted node get the same answer,
/// after the same work. After an admin set the account's password, the token is good only for
/// choosing a new one (`password_change_required: true`).
#[utoipa::path(
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password, or the account is disabled or its node deleted (one answer for all)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or of the wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Five logins for this username or from this address failed in the last 15 minutes or are being verified now; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/v1/auth/token")]
pub(crate) async fn token(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let TokenRequest { username, password } = body.0;
    let keys = throttle_keys(&username, &request);
    let account = crate::service::sessions::log_in(
        &state.pool,
        &state.hasher,
        &state.throttle,
        keys,
        username,
        password,
    )
    .await?;
    let now = chrono::Utc::now().timestamp();
    let password_change_required = account.password_change_required;
    let access_token = state
        .keys
        .issue(
            jwt::Subject {
                account: account.id,
                node: account.node_id,
                role: account.role,
                credential_version: account.credential_version,
                password_change_only: password_change_required,
            },
            now,
        )
        .map_err(ApiError::internal)?;
    tracing::info!(account = %account.id, password_change_required, "token issued");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: jwt::LIFETIME_SECS,
            password_change_required,
        }))
}

/// The throttle's keys for a guess at `username`'s password from `request`'s client: the username
/// (in any case), which a success forgives, and the client's address (behind trusted proxies the
/// forwarded one, so that one client's guesses do not lock out everyone behind the proxy).
pub(crate) fn throttle_keys(username: &str, request: &HttpRequest) -> Vec<String> {
    let address = crate::edge::client::address(request)
        .map(|a| a.to_string())
        .unwrap_or_default();
    vec![
        format!("user:{}", username.to_lowercase()),
        format!("ip:{address}"),
    ]
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Me {
    #[schema(value_type = crate::api::schemas::PrincipalKind)]
    pub kind: &'static str,
    /// The account's or the key's id.
    pub id: uuid::Uuid,
    /// The account's username or the key's name.
    pub name: String,
    pub role: Role,
    pub node_id: NodeId,
    pub node_name: String,
    pub node_kind: NodeKind,
    /// The caller's token is good only for choosing a new password (an admin set the one it
    /// logged in with).
    pub password_change_required: bool,
}

/// Who the caller is: its account or API key, role and node. The caller sees and touches that
/// node's subtree and nothing else. Answers also to a token good only for changing the password,
/// so that its holder learns its account id.
#[utoipa::path(
    tag = "auth",
    security(("accessToken" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/me")]
pub(crate) async fn me(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<web::Json<Me>, ApiError> {
    let Authenticated {
        principal,
        password_change_only,
    } = caller;
    let node_id = principal.node_id;
    let node = store::run(&state.pool, move |conn| {
        store::nodes::find(conn, node_id).map_err(ApiError::from)
    })
    .await?
    .ok_or(ApiError::NotFound)?;
    let (kind, id) = match principal.actor {
        Actor::Account(id) => ("account", id.0),
        Actor::ApiKey(id) => ("api_key", id.0),
        Actor::System => ("system", uuid::Uuid::nil()),
    };
    Ok(web::Json(Me {
        kind,
        id,
        name: principal.name,
        role: principal.role,
        node_id: node.id,
        node_name: node.name,
        node_kind: node.kind,
        password_change_required: password_change_only,
    }))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(token).service(me);
}
