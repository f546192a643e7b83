//! Principals: people's accounts and machines' API keys, each bound to one node with one role.
//! Only admins create or change them, never with a role above their own, and only within their
//! subtree. Secrets are shown once, at creation, and never stored in a readable form; these
//! creations take no `Idempotency-Key`, since replaying them would mean keeping the secret.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::utc;
use super::common::{self, Fields, IfMatch, ListQuery, Page, etag, nullable};
use super::extract::Json;
use crate::api::schemas::{ContactEmail, Label, NewPassword, Username};
use crate::auth::guard::{Administer, Authorised, Reach, Revoke};
use crate::auth::{Authenticated, Principal, password, rate_limit};
use crate::domain::ids::{AccountId, ApiKeyId, NodeId};
use crate::domain::roles::Role;
use crate::domain::tree;
use crate::error::{ApiError, Guarded, Problem};
use crate::service::Ctx;
use crate::service::principals::{self, AccountChange, AccountDraft, ApiKeyChange, ApiKeyDraft};
use crate::startup::AppState;
use crate::store::accounts::Account;
use crate::store::api_keys::ApiKey;
use crate::store::audit::Actor;
use crate::store::{self, accounts, api_keys, nodes};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountView {
    pub id: AccountId,
    pub node_id: NodeId,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub disabled: bool,
    /// An admin set the password: the next login must choose a new one.
    pub password_change_required: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Account> for AccountView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id,
            node_id: a.node_id,
            username: a.username.clone(),
            email: a.email.clone(),
            role: a.role,
            disabled: a.disabled,
            password_change_required: a.password_change_required,
            version: a.version,
            created_at: utc(a.created_at),
            updated_at: utc(a.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedAccount {
    #[serde(flatten)]
    pub account: AccountView,
    /// The generated password, shown this once, when none was given and it was not mailed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub one_time_password: Option<String>,
    /// Where the generated password was mailed instead (the account's `email`), when none was
    /// given and mail can be sent for the node: the answer does not carry it, and the first
    /// login must change it (`password_change_required`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_sent_to: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    #[schema(value_type = Username)]
    pub username: String,
    #[schema(value_type = ContactEmail, example = "jane@reseller.example")]
    pub email: String,
    /// Not above the caller's own.
    pub role: Role,
    /// Without it a password is generated: mailed to `email` (the answer says so in
    /// `password_sent_to`, and the first login must change it) when mail can be sent for the node
    /// (the owner's `mail_server.enabled` on and a mail server applies), else returned once
    /// (`one_time_password`).
    #[schema(value_type = Option<NewPassword>)]
    pub password: Option<String>,
}

/// The caller may give `role` to a principal at `node`: an admin there or above, never a role
/// above its own.
fn may_give(principal: &Principal, role: Role) -> Result<(), ApiError> {
    if principal.role.may_grant(role) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "A {} cannot give the role {role}.",
            principal.role
        )))
    }
}

/// Node `node_id` for an admin's action there, giving `role`: an admin at the node or above, not
/// in a suspended subtree, whose own role is no lower.
fn administer_giving(
    conn: &mut store::DbConnection,
    principal: &Principal,
    node_id: NodeId,
    role: Role,
) -> Result<Authorised<Administer>, ApiError> {
    let node = principal.may_administer(nodes::find(conn, node_id)?, Reach::SelfOrBelow)?;
    may_give(principal, role)?;
    Ok(node)
}

/// `node` for taking access away from a principal with `role` there: allowed in a suspended
/// subtree too, to a caller whose own role is no lower.
fn revoking(
    principal: &Principal,
    node: nodes::Node,
    role: Role,
) -> Result<Authorised<Revoke>, ApiError> {
    let node = principal.may_revoke(Some(node))?;
    may_give(principal, role)?;
    Ok(node)
}

/// Creates a person's account at `{id}`. Admins only, with a role no higher than their own.
///
/// Without a `password`, allot generates one. When mail can be sent for the node (the owner's
/// `mail_server.enabled` is on and a mail server applies to it), the login details go to the
/// account's `email` through the outbox (kind `mail`, listed by `GET /v1/nodes/{id}/outbox`
/// without the password), the answer names the address in `password_sent_to` and does not carry
/// the password, and the first login yields a token good only for choosing a new one. Otherwise
/// the password is answered once in `one_time_password`.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    request_body = CreateAccount,
    responses(
        (status = 201, description = "Created; a generated password is mailed (`password_sent_to`) or returned this once (`one_time_password`)", body = CreatedAccount, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The username is taken (`name-taken`), or the node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/accounts")]
pub(crate) async fn create_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<CreateAccount>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    fields.check("username", crate::init::check_username(&body.username));
    let email = fields.check("email", tree::parse_email(&body.email));
    if let Some(given) = &body.password {
        fields.check("password", password::check_strength(given));
    }
    fields.finish()?;
    let generated = body.password.is_none().then(password::generate);
    let chosen = body
        .password
        .clone()
        .or(generated.clone())
        .unwrap_or_default();
    // Hashed before the transaction: tens of milliseconds that need not hold the write lock.
    let hash = state.hasher.hash(chosen).await?;
    let node_id = id.into_inner();
    let sealer = state.sealer.clone();
    let generated_now = generated.clone();
    let (account, password_sent_to) = common::write(&state.pool, move |conn| {
        let node = administer_giving(conn, &principal, node_id, body.role)?;
        let draft = AccountDraft {
            username: &body.username,
            email: email.as_deref().unwrap_or_default(),
            role: body.role,
            password_hash: &hash,
            generated: generated_now.as_deref(),
        };
        principals::create_account(conn, &Ctx::of(&principal), &sealer, &node, draft)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/accounts/{}", account.id)))
        .insert_header((header::ETAG, etag(account.version)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedAccount {
            account: AccountView::from(&account),
            one_time_password: generated.filter(|_| password_sent_to.is_none()),
            password_sent_to,
        }))
}

/// The accounts at `{id}` (not below it), oldest first.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ListQuery),
    responses(
        (status = 200, description = "A page of accounts", body = super::common::pages::AccountPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/accounts")]
pub(crate) async fn list_accounts(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<AccountView>>, ApiError> {
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        query.page()?,
        |conn, node, after, limit| accounts::list_for_node(conn, node.id, after, limit),
        |a| a.id.to_string(),
        |a| AccountView::from(&a),
    )
    .await
}

/// An account, if the caller sees its node.
fn visible_account(
    conn: &mut store::DbConnection,
    principal: &Principal,
    id: AccountId,
) -> Result<(Account, nodes::Node), ApiError> {
    let account = accounts::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let node = principal.visible(nodes::find(conn, account.node_id)?)?;
    Ok((account, node))
}

/// One account of the caller's subtree.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = AccountId, Path)),
    responses(
        (status = 200, description = "The account", body = AccountView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/accounts/{id}")]
pub(crate) async fn get_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let account = store::run(&state.pool, move |conn| {
        let (account, node) = visible_account(conn, &principal, id)?;
        principal.may_read(Some(node))?;
        Ok::<_, ApiError>(account)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(account.version)))
        .json(AccountView::from(&account)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    #[schema(value_type = Option<ContactEmail>)]
    pub email: Option<String>,
    /// Not one's own, and never above the caller's.
    pub role: Option<Role>,
    /// Changing one's own needs `current_password` and ends every session of the account, this
    /// one included: log in again. An admin setting someone else's ends that account's sessions,
    /// and its next login must choose a new one.
    #[schema(value_type = Option<NewPassword>)]
    pub password: Option<String>,
    /// The account's password now: required with `password` to change one's own, refused
    /// otherwise. A wrong one counts as a failed login.
    #[schema(format = Password)]
    pub current_password: Option<String>,
    /// A disabled account cannot log in, and its tokens stop working at once and for good
    /// (enabling it again brings none back). Not one's own.
    pub disabled: Option<bool>,
}

impl UpdateAccount {
    /// The new e-mail address, if any, once every field is valid for this caller: 422 naming
    /// each bad one; a token good only for changing its own password sends nothing else.
    fn check(&self, own: bool, password_change_only: bool) -> Result<Option<String>, ApiError> {
        let only_password = self.password.is_some()
            && self.email.is_none()
            && self.role.is_none()
            && self.disabled.is_none();
        if password_change_only && !(own && only_password) {
            return Err(ApiError::PasswordChangeRequired);
        }
        let mut fields = Fields::default();
        let email = self
            .email
            .as_deref()
            .and_then(|e| fields.check("email", tree::parse_email(e)));
        if let Some(given) = &self.password {
            fields.check("password", password::check_strength(given));
        }
        match (
            own && self.password.is_some(),
            self.current_password.is_some(),
        ) {
            (true, false) => fields.push(
                "current_password",
                "is required to change one's own password",
            ),
            (false, true) => fields.push(
                "current_password",
                "is only for changing one's own password, with `password`",
            ),
            _ => {}
        }
        fields.finish()?;
        Ok(email)
    }

    /// The change this body asks for of account `id`: the current password verified (as a login
    /// would be) and the new one hashed, both before any transaction.
    async fn change(
        self,
        state: &AppState,
        request: &HttpRequest,
        id: AccountId,
        email: Option<String>,
    ) -> Result<AccountChange, ApiError> {
        let verified = match self.current_password {
            Some(current) => Some(verify_current_password(state, request, id, current).await?),
            None => None,
        };
        let password_hash = match self.password {
            Some(given) => Some(state.hasher.hash(given).await?),
            None => None,
        };
        Ok(AccountChange {
            email,
            role: self.role,
            disabled: self.disabled,
            password_hash,
            verified,
        })
    }
}

/// Verifies `current` against account `id`'s password, as a login would: counted by the login
/// throttle (else a stolen token would be a guessing oracle with no limit), on the password
/// threads, with no database connection held. The hash it matched.
async fn verify_current_password(
    state: &AppState,
    request: &HttpRequest,
    id: AccountId,
    current: String,
) -> Result<String, ApiError> {
    let account = store::run(&state.pool, move |conn| {
        accounts::find(conn, id).map_err(ApiError::from)
    })
    .await?
    .ok_or(ApiError::Unauthorized(crate::auth::INVALID))?;
    let keys = super::auth::throttle_keys(&account.username, request);
    let user_key = keys[0].clone();
    let reservation = state.throttle.reserve(keys).await?;
    let hash = account.password_hash;
    match state.hasher.verify(current, Some(hash.clone())).await {
        Ok(true) => {
            reservation.succeed(&user_key).await;
            Ok(hash)
        }
        Ok(false) => {
            reservation.fail().await;
            Err(principals::wrong_current_password())
        }
        Err(err) => {
            reservation.release().await;
            Err(err)
        }
    }
}

/// Changes an account. Admins change the accounts of their subtree; anyone may change their own
/// e-mail and password, but not their own role or whether they are disabled. One's own password
/// changes only with `current_password` (missing or wrong: 422 naming it), and the change revokes
/// every token of the account, the caller's included. An admin setting someone else's password,
/// or disabling an account, revokes that account's tokens too; after such a reset its next login
/// yields a token good only for this change. The token from such a login may send `password`
/// and `current_password` here for its own account and nothing else.
///
/// Rules the body's schema cannot state: `current_password` goes with `password` when the caller
/// changes its own, and is refused otherwise; `role` and `disabled` cannot be changed on one's own
/// account (403); a `role` above the caller's own is refused (403).
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = AccountId, Path), IfMatch),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "The changed account", body = AccountView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The account's node lies in a suspended subtree and the change is not one that stays allowed there (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields; for one's own password a missing or wrong `current_password`, or one given where it has no place (`validation-failed`; `errors` names it)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Five logins or `current_password`s for this username or from this address failed in the last 15 minutes or are being verified; `Retry-After` says when to retry", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[patch("/v1/accounts/{id}")]
pub(crate) async fn update_account(
    state: web::Data<AppState>,
    caller: Authenticated,
    request: HttpRequest,
    id: web::Path<AccountId>,
    if_match: IfMatch,
    body: Json<UpdateAccount>,
) -> Result<HttpResponse, ApiError> {
    let Authenticated {
        principal,
        password_change_only,
    } = caller;
    let body = body.0;
    let id = id.into_inner();
    let own = principal.actor == Actor::Account(id);
    let email = body.check(own, password_change_only)?;
    let change = body.change(&state, &request, id, email).await?;
    let account = common::write(&state.pool, move |conn| {
        let (account, node) = visible_account(conn, &principal, id)?;
        let ctx = Ctx::of(&principal);
        let precondition = |version| if_match.check(version);
        if own {
            return principals::update_own_account(conn, &ctx, account, precondition, change);
        }
        // Only disabling takes access away, and works in a suspended subtree too.
        if change.only_disables() {
            let node = revoking(&principal, node, account.role)?;
            return principals::disable_account(conn, &ctx, &node, account, precondition);
        }
        let node = principal.may_administer(Some(node), Reach::SelfOrBelow)?;
        may_give(&principal, account.role)?;
        if let Some(role) = change.role {
            may_give(&principal, role)?;
        }
        principals::update_account(conn, &ctx, &node, account, precondition, change)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(account.version)))
        .json(AccountView::from(&account)))
}

/// Deletes an account; its tokens stop working at once. Not one's own.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = AccountId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        Guarded,
    )
)]
#[delete("/v1/accounts/{id}")]
pub(crate) async fn delete_account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let (account, node) = visible_account(conn, &principal, id)?;
        // Taking access away works in a suspended subtree too.
        let node = revoking(&principal, node, account.role)?;
        principals::delete_account(conn, &Ctx::of(&principal), &node, account)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    pub id: ApiKeyId,
    pub node_id: NodeId,
    pub name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The key's own request budget, requests a minute in each allot instance; `null`: its role's
    /// default (`ALLOT_RATE_LIMIT`, or `ALLOT_CHECK_RATE_LIMIT` for a `check` key).
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub rate_limit: Option<i64>,
    pub version: i64,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id,
            node_id: k.node_id,
            name: k.name.clone(),
            role: k.role,
            expires_at: k.expires_at.map(utc),
            last_used_at: k.last_used_at.map(utc),
            revoked_at: k.revoked_at.map(utc),
            created_at: utc(k.created_at),
            rate_limit: k.rate_limit,
            version: k.version,
        }
    }
}

/// A key's name as given: trimmed, 1–100 characters without control characters.
fn key_name(fields: &mut Fields, given: &str) -> String {
    let name = given.trim().to_owned();
    if !(1..=100).contains(&name.chars().count()) || name.chars().any(char::is_control) {
        fields.push(
            "name",
            "must be 1 to 100 characters without control characters",
        );
    }
    name
}

/// A key's own budget as given: 1 to [`rate_limit::MAX_PER_MINUTE`] requests a minute.
fn key_budget(fields: &mut Fields, given: Option<u32>) -> Option<i64> {
    let max = rate_limit::MAX_PER_MINUTE;
    if given.is_some_and(|n| !(1..=max).contains(&n)) {
        fields.push(
            "rate_limit",
            format!("must be 1 to {max} requests a minute, or null for the role's default"),
        );
    }
    given.map(i64::from)
}

/// Whether the caller may give a key of `role` the budget `rate_limit`: one above the role's
/// default only an admin of the owner node gives (the capacity is the operator's: a customer's
/// admin must not lift its own keys' limit); one at or below it, or none, anyone who administers
/// the key.
fn may_budget(
    conn: &mut store::DbConnection,
    principal: &Principal,
    config: &crate::config::Config,
    role: Role,
    rate_limit: Option<i64>,
) -> Result<(), ApiError> {
    let default = match role {
        Role::Check => config.check_rate_limit,
        _ => config.rate_limit,
    };
    if rate_limit.is_none_or(|n| n <= i64::from(default.get())) {
        return Ok(());
    }
    let at_owner = nodes::owner(conn)?.is_some_and(|owner| owner.id == principal.node_id);
    if at_owner {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "Only an admin of the owner node gives a {role} key more than the default of {default} requests a minute."
        )))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The key, shown this once: send it as `Authorization: Bearer <key>`.
    #[schema(example = "allot_01a2…_…")]
    pub key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for.
    #[schema(value_type = Label, example = "mail worker eu-1")]
    pub name: String,
    /// Not above the caller's own.
    pub role: Role,
    /// When it stops working; absent for never. Must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own request budget, requests a minute in each allot instance (1–100,000,000); absent
    /// or `null`: its role's default (`ALLOT_RATE_LIMIT`, or `ALLOT_CHECK_RATE_LIMIT` for a
    /// `check` key). Above that default only an admin of the owner node may set it.
    #[schema(minimum = 1, maximum = 100_000_000, example = 6000)]
    pub rate_limit: Option<u32>,
}

/// Creates an API key at `{id}` and returns it once. Admins only, with a role no higher than their
/// own; a `check` key is what mail workers use. `expires_at`, if given, must be in the future. A
/// budget above the role's default (`rate_limit`) is given by an admin of the owner node only (403
/// otherwise).
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the key is returned this once", body = CreatedApiKey, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or `expires_at` not in the future (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/api-keys")]
pub(crate) async fn create_api_key(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let name = key_name(&mut fields, &body.name);
    let rate_limit = key_budget(&mut fields, body.rate_limit);
    let now = store::now();
    let expires_at = body.expires_at.map(|at| at.naive_utc());
    if expires_at.is_some_and(|at| at <= now) {
        fields.push("expires_at", "must be in the future");
    }
    fields.finish()?;
    let node_id = id.into_inner();
    let draft = ApiKeyDraft {
        name,
        role: body.role,
        expires_at,
        rate_limit,
    };
    let state_ = state.clone();
    let (key, text) = common::write(&state.pool, move |conn| {
        let node = administer_giving(conn, &principal, node_id, draft.role)?;
        may_budget(
            conn,
            &principal,
            &state_.config,
            draft.role,
            draft.rate_limit,
        )?;
        principals::create_api_key(conn, &Ctx::of(&principal), &node, draft)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/api-keys/{}", key.id)))
        .insert_header((header::ETAG, etag(key.version)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(CreatedApiKey {
            api_key: ApiKeyView::from(&key),
            key: text,
        }))
}

/// The API keys at `{id}`, oldest first, revoked ones included; never their secrets.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ListQuery),
    responses(
        (status = 200, description = "A page of keys", body = super::common::pages::ApiKeyPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/api-keys")]
pub(crate) async fn list_api_keys(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<ApiKeyView>>, ApiError> {
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        query.page()?,
        |conn, node, after, limit| api_keys::list_for_node(conn, node.id, after, limit),
        |k| k.id.to_string(),
        |k| ApiKeyView::from(&k),
    )
    .await
}

/// The key `id` and its node, if the principal sees it.
fn visible_key(
    conn: &mut store::DbConnection,
    principal: &Principal,
    id: ApiKeyId,
) -> Result<(ApiKey, nodes::Node), ApiError> {
    let key = api_keys::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let node = principal.visible(nodes::find(conn, key.node_id)?)?;
    Ok((key, node))
}

/// An API key, revoked or not; never its secret.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = ApiKeyId, Path)),
    responses(
        (status = 200, description = "The key", body = ApiKeyView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/api-keys/{id}")]
pub(crate) async fn get_api_key(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ApiKeyId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let key = store::run(&state.pool, move |conn| {
        let (key, node) = visible_key(conn, &principal, id)?;
        principal.may_read(Some(node))?;
        Ok::<_, ApiError>(key)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(key.version)))
        .json(ApiKeyView::from(&key)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKey {
    /// What the key is for, 1–100 characters.
    #[schema(example = "mail worker eu-2")]
    pub name: Option<String>,
    /// Its own request budget, requests a minute in each allot instance (1–100,000,000); `null`:
    /// back to its role's default. Above that default only an admin of the owner node may set it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100_000_000, example = 600)]
    pub rate_limit: Option<Option<u32>>,
}

/// Changes an API key's name or request budget (`rate_limit`), taking effect at its next
/// request, at every instance. Admins of the key's node or above, with a role no lower than the
/// key's; a budget above the role's default is given by an admin of the owner node only (403
/// otherwise). A revoked key does not change (409).
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = ApiKeyId, Path), IfMatch),
    request_body = UpdateApiKey,
    responses(
        (status = 200, description = "The changed key", body = ApiKeyView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The key is revoked (`conflict`), or its node is suspended (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/api-keys/{id}")]
pub(crate) async fn update_api_key(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ApiKeyId>,
    if_match: IfMatch,
    body: Json<UpdateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let name = body.name.map(|name| key_name(&mut fields, &name));
    let rate_limit = body
        .rate_limit
        .map(|rate_limit| key_budget(&mut fields, rate_limit));
    fields.finish()?;
    let change = ApiKeyChange { name, rate_limit };
    let id = id.into_inner();
    let state_ = state.clone();
    let key = common::write(&state.pool, move |conn| {
        let (key, node) = visible_key(conn, &principal, id)?;
        let node = principal.may_administer(Some(node), Reach::SelfOrBelow)?;
        may_give(&principal, key.role)?;
        if let Some(rate_limit) = change.rate_limit {
            may_budget(conn, &principal, &state_.config, key.role, rate_limit)?;
        }
        let precondition = |version| if_match.check(version);
        principals::update_api_key(conn, &Ctx::of(&principal), &node, key, precondition, change)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(key.version)))
        .json(ApiKeyView::from(&key)))
}

/// Revokes an API key at once. Revoking a revoked key changes nothing.
#[utoipa::path(
    tag = "principals",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = ApiKeyId, Path)),
    responses(
        (status = 204, description = "Revoked"),
        Guarded,
    )
)]
#[delete("/v1/api-keys/{id}")]
pub(crate) async fn revoke_api_key(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<ApiKeyId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let key = api_keys::find(conn, id)?.ok_or(ApiError::NotFound)?;
        let node = principal.visible(nodes::find(conn, key.node_id)?)?;
        // Taking access away works in a suspended subtree too.
        let node = revoking(&principal, node, key.role)?;
        principals::revoke_api_key(conn, &Ctx::of(&principal), &node, key)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(create_account)
        .service(list_accounts)
        .service(get_account)
        .service(update_account)
        .service(delete_account)
        .service(create_api_key)
        .service(list_api_keys)
        .service(get_api_key)
        .service(update_api_key)
        .service(revoke_api_key);
}
