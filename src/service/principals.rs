//! Principals' writes: people's accounts (create, change, disable, delete) and machines' API keys
//! (create, revoke). Who may give which role is the handler's guard (`Role::may_grant`); what is
//! written, how tokens are revoked with it and what the audit trail records live here.

use chrono::NaiveDateTime;
use serde_json::json;

use super::Ctx;
use crate::auth::api_key;
use crate::auth::guard::{Administer, Authorised, Revoke};
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::roles::Role;
use crate::error::ApiError;
use crate::secret::Sealer;
use crate::store::accounts::{self, Account, NewAccount};
use crate::store::api_keys::{self, ApiKey};
use crate::store::audit::Actor;
use crate::store::{self, DbConnection};

/// An account as the audit trail records it.
fn audit_account(a: &Account) -> serde_json::Value {
    #[derive(serde::Serialize)]
    struct Audited<'a> {
        username: &'a str,
        email: &'a str,
        role: Role,
        disabled: bool,
        node_id: NodeId,
        password_change_required: bool,
    }
    super::audit_json(Audited {
        username: &a.username,
        email: &a.email,
        role: a.role,
        disabled: a.disabled,
        node_id: a.node_id,
        password_change_required: a.password_change_required,
    })
}

/// An API key as the audit trail records it (never its secret).
fn audit_key(k: &ApiKey) -> serde_json::Value {
    json!({"name": k.name, "role": k.role, "node_id": k.node_id, "expires_at": k.expires_at, "revoked_at": k.revoked_at, "rate_limit": k.rate_limit})
}

fn username_taken() -> ApiError {
    ApiError::NameTaken("This username is taken.".to_owned())
}

/// A new person's account, its password already hashed.
pub(crate) struct AccountDraft<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    /// The password allot generated (none was given), in the clear: mailed to the account when
    /// mail can be sent for its node.
    pub generated: Option<&'a str>,
}

impl std::fmt::Debug for AccountDraft<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountDraft")
            .field("username", &self.username)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Creates an account at `node`: refused when the username is taken, installation-wide.
///
/// **Login details by mail.** When allot generated the password (none was given) and mail can be
/// sent for the node (`settings::sending_possible`: the owner's switch on, a mail server applies),
/// the password is mailed to the account's address, sealed in the outbox until it is sent
/// (`notices::login_details`), and must be changed at the first login (a login yields a token
/// good only for that, as after an admin set it); the answer then names the address
/// (`Some(email)`) and never carries the password. Otherwise nothing is mailed and the caller
/// answers the generated password once. A password the admin chose is never mailed: the admin
/// knows it and hands it over.
pub(crate) fn create_account(
    conn: &mut DbConnection,
    ctx: &Ctx,
    sealer: &Sealer,
    node: &Authorised<Administer>,
    draft: AccountDraft<'_>,
) -> Result<(Account, Option<String>), ApiError> {
    if accounts::find_by_username(conn, draft.username)?.is_some() {
        return Err(username_taken());
    }
    let mailed = match draft.generated {
        Some(password) if super::settings::sending_possible(conn, node)? => Some(password),
        _ => None,
    };
    let new = NewAccount {
        node_id: node.id,
        username: draft.username,
        email: draft.email,
        role: draft.role,
        password_hash: draft.password_hash,
        password_change_required: mailed.is_some(),
    };
    let account =
        accounts::insert(conn, new).map_err(|err| ApiError::unless_unique(err, username_taken))?;
    ctx.record(
        conn,
        node.id,
        Action::AccountCreate,
        ("account", account.id.to_string()),
        None,
        Some(audit_account(&account)),
    )?;
    let Some(password) = mailed else {
        return Ok((account, None));
    };
    super::notices::login_details(conn, sealer, node, &account, password)?;
    Ok((account.clone(), Some(account.email)))
}

/// What a change to an account sets; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub(crate) struct AccountChange {
    pub email: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// The new password's hash.
    pub password_hash: Option<String>,
    /// The hash the caller's `current_password` matched, for a change of one's own password.
    pub verified: Option<String>,
}

impl AccountChange {
    /// Whether the change only disables the account: taking access away, which works in a
    /// suspended subtree too.
    pub fn only_disables(&self) -> bool {
        self.disabled == Some(true)
            && self.role.is_none()
            && self.email.is_none()
            && self.password_hash.is_none()
    }
}

/// Changes the acting account itself (`ctx`'s actor): its e-mail and password, never its role
/// or whether it is disabled. Its password changes revoke every token of it, the caller's too.
pub(crate) fn update_own_account(
    conn: &mut DbConnection,
    ctx: &Ctx,
    account: Account,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
    change: AccountChange,
) -> Result<Account, ApiError> {
    if *ctx.actor != Actor::Account(account.id)
        || change.role.is_some()
        || change.disabled.is_some()
    {
        return Err(ApiError::Forbidden(
            "Nobody changes their own role or disables themselves.".to_owned(),
        ));
    }
    let node_id = account.node_id;
    apply(conn, ctx, node_id, account, precondition, change)
}

/// An admin's change to another `account` at `node`. A password set this way must be changed at
/// the account's next login.
pub(crate) fn update_account(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Administer>,
    account: Account,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
    change: AccountChange,
) -> Result<Account, ApiError> {
    apply(conn, ctx, node.id, account, precondition, change)
}

/// Disables another `account` at `node`; its tokens stop working at once and for good.
pub(crate) fn disable_account(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Revoke>,
    account: Account,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
) -> Result<Account, ApiError> {
    let change = AccountChange {
        disabled: Some(true),
        ..AccountChange::default()
    };
    apply(conn, ctx, node.id, account, precondition, change)
}

/// Applies `change` to `account` of node `node_id` once `precondition` accepts its version, and
/// audits it.
fn apply(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node_id: NodeId,
    mut account: Account,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
    change: AccountChange,
) -> Result<Account, ApiError> {
    precondition(account.version)?;
    // The password verified must still be the account's: one changed meanwhile is not replaced
    // by someone who does not know it.
    if change
        .verified
        .is_some_and(|hash| hash != account.password_hash)
    {
        return Err(wrong_current_password());
    }
    let own = *ctx.actor == Actor::Account(account.id);
    let before = audit_account(&account);
    if let Some(email) = change.email {
        account.email = email;
    }
    if let Some(role) = change.role {
        account.role = role;
    }
    if let Some(disabled) = change.disabled {
        if disabled && !account.disabled {
            account.revoke_tokens();
        }
        account.disabled = disabled;
    }
    let password_changed = change.password_hash.is_some();
    if let Some(hash) = change.password_hash {
        account.password_hash = hash;
        account.revoke_tokens();
        // An admin who set the password knows it: the account's next login must choose its own.
        account.password_change_required = !own;
    }
    accounts::save(conn, &mut account)?;
    let mut after = audit_account(&account);
    after["password_changed"] = json!(password_changed);
    let target = ("account", account.id.to_string());
    ctx.record(
        conn,
        node_id,
        Action::AccountUpdate,
        target,
        Some(before),
        Some(after),
    )?;
    Ok(account)
}

/// The refusal of a `current_password` that is not the account's.
pub(crate) fn wrong_current_password() -> ApiError {
    ApiError::validation("current_password", "is not the account's password")
}

/// Deletes `account` at `node`; its tokens stop working at once. Nobody deletes their own.
pub(crate) fn delete_account(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Revoke>,
    account: Account,
) -> Result<(), ApiError> {
    if *ctx.actor == Actor::Account(account.id) {
        return Err(ApiError::Forbidden(
            "Nobody deletes their own account.".to_owned(),
        ));
    }
    accounts::delete(conn, account.id)?;
    ctx.record(
        conn,
        node.id,
        Action::AccountDelete,
        ("account", account.id.to_string()),
        Some(audit_account(&account)),
        None,
    )?;
    Ok(())
}

/// A new machine's key: what it is for, its role, until when it works (if not for ever), and its
/// own request budget (if not its role's).
#[derive(Debug)]
pub(crate) struct ApiKeyDraft {
    pub name: String,
    pub role: Role,
    pub expires_at: Option<NaiveDateTime>,
    pub rate_limit: Option<i64>,
}

/// Creates the API key `draft` describes at `node`. Returns it with its text, which is never
/// stored and never shown again.
pub(crate) fn create_api_key(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Administer>,
    draft: ApiKeyDraft,
) -> Result<(ApiKey, String), ApiError> {
    let ApiKeyDraft {
        name,
        role,
        expires_at,
        rate_limit,
    } = draft;
    let minted = api_key::mint();
    let key = ApiKey {
        id: minted.id,
        node_id: node.id,
        name,
        role,
        secret_hash: minted.secret_hash,
        expires_at,
        last_used_at: None,
        revoked_at: None,
        created_at: store::now(),
        rate_limit,
        version: 1,
    };
    api_keys::insert(conn, &key)?;
    ctx.record(
        conn,
        node.id,
        Action::ApiKeyCreate,
        ("api_key", key.id.to_string()),
        None,
        Some(audit_key(&key)),
    )?;
    Ok((key, minted.text))
}

/// Revokes `key` at `node` at once; revoking a revoked key changes nothing.
pub(crate) fn revoke_api_key(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Revoke>,
    key: ApiKey,
) -> Result<(), ApiError> {
    if key.revoked_at.is_some() {
        return Ok(());
    }
    let mut revoked = key.clone();
    let now = store::now();
    revoked.revoked_at = Some(now);
    api_keys::revoke(conn, key.id, now)?;
    ctx.record(
        conn,
        node.id,
        Action::ApiKeyRevoke,
        ("api_key", key.id.to_string()),
        Some(audit_key(&key)),
        Some(audit_key(&revoked)),
    )?;
    Ok(())
}

/// A change to an API key: fields absent are kept; `rate_limit: Some(None)` gives it back its
/// role's default budget.
#[derive(Debug, Default)]
pub(crate) struct ApiKeyChange {
    pub name: Option<String>,
    pub rate_limit: Option<Option<i64>>,
}

/// Applies `change` to `key` at `node` once `precondition` accepts its version, and audits it. A
/// revoked key keeps what it had: it never works again, so nothing about it may change.
pub(crate) fn update_api_key(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Administer>,
    mut key: ApiKey,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
    change: ApiKeyChange,
) -> Result<ApiKey, ApiError> {
    precondition(key.version)?;
    if key.revoked_at.is_some() {
        return Err(ApiError::Conflict(
            "The key is revoked: it never works again, so nothing about it changes.".to_owned(),
        ));
    }
    let before = audit_key(&key);
    if let Some(name) = change.name {
        key.name = name;
    }
    if let Some(rate_limit) = change.rate_limit {
        key.rate_limit = rate_limit;
    }
    api_keys::save(conn, &mut key)?;
    ctx.record(
        conn,
        node.id,
        Action::ApiKeyUpdate,
        ("api_key", key.id.to_string()),
        Some(before),
        Some(audit_key(&key)),
    )?;
    Ok(key)
}
