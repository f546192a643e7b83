//! Logging in and asking who one is.

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use crate::auth::{Principal, jwt, password};
use crate::domain::ids::{AccountId, NodeId};
use crate::domain::roles::Role;
use crate::domain::tree::NodeKind;
use crate::error::{ApiError, Problem};
use crate::startup::AppState;
use crate::store;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "admin")]
    pub username: String,
    #[schema(example = "correct horse battery staple", format = Password)]
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the token expires.
    #[schema(example = 900)]
    pub expires_in: i64,
}

/// Exchanges a username and password for an access token valid 15 minutes. A wrong password and
/// an unknown username get the same answer, after the same work.
#[utoipa::path(
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Wrong username or password", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or of the wrong type", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/auth/token")]
pub async fn token(
    state: web::Data<AppState>,
    body: Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let TokenRequest { username, password } = body.0;
    let pool = state.pool.clone();
    let account = store::run(&pool, move |conn| {
        let account = store::accounts::find_by_username(conn, &username)?;
        // The hash is checked even for a disabled account, and a dummy one for a missing
        // account, so that the time taken does not tell the three cases apart.
        let matches = match &account {
            Some(account) => password::verify(&password, &account.password_hash),
            None => {
                password::verify_nobody(&password);
                false
            }
        };
        Ok::<_, ApiError>(account.filter(|a| matches && !a.disabled))
    })
    .await?
    .ok_or(ApiError::InvalidCredentials)?;
    let now = chrono::Utc::now().timestamp();
    let access_token = state
        .keys
        .issue(account.id, account.node_id, account.role, now)
        .map_err(ApiError::internal)?;
    tracing::info!(account = %account.id, "token issued");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: jwt::LIFETIME_SECS,
        }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// What kind of principal is calling.
    #[schema(example = "account")]
    pub kind: &'static str,
    pub id: AccountId,
    pub username: String,
    pub role: Role,
    pub node_id: NodeId,
    pub node_name: String,
    pub node_kind: NodeKind,
}

/// Who the caller is: its account, role and node. The caller sees and touches that node's subtree
/// and nothing else.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No valid credentials", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/me")]
pub async fn me(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<web::Json<Me>, ApiError> {
    let node_id = principal.node_id;
    let node = store::run(&state.pool, move |conn| {
        store::nodes::find(conn, node_id).map_err(ApiError::from)
    })
    .await?
    .ok_or(ApiError::NotFound)?;
    Ok(web::Json(Me {
        kind: "account",
        id: principal.account_id,
        username: principal.username,
        role: principal.role,
        node_id: node.id,
        node_name: node.name,
        node_kind: node.kind,
    }))
}
