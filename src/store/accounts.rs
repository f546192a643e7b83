//! People's accounts: who may log in, at which node, with which role.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::accounts;
use super::{DbConnection, corrupt};
use crate::domain::ids::{AccountId, NodeId};
use crate::domain::roles::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub node_id: NodeId,
    pub username: String,
    pub email: String,
    pub role: Role,
    /// argon2id PHC string. Never serialised into any response or log.
    pub password_hash: String,
    pub disabled: bool,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Carried in every token issued to the account; raised to revoke them all.
    pub credential_version: i64,
    /// An admin set the password: a login yields a token good only for changing it.
    pub password_change_required: bool,
}

impl Account {
    /// Revokes every token issued so far.
    pub fn revoke_tokens(&mut self) {
        self.credential_version += 1;
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = accounts)]
struct AccountRow {
    id: String,
    node_id: String,
    username: String,
    email: String,
    role: String,
    password_hash: String,
    disabled: bool,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    credential_version: i64,
    password_change_required: bool,
}

impl TryFrom<AccountRow> for Account {
    type Error = diesel::result::Error;
    fn try_from(row: AccountRow) -> Result<Self, Self::Error> {
        Ok(Account {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            username: row.username,
            email: row.email,
            role: row.role.parse().map_err(corrupt)?,
            password_hash: row.password_hash,
            disabled: row.disabled,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            credential_version: row.credential_version,
            password_change_required: row.password_change_required,
        })
    }
}

pub(crate) fn find(conn: &mut DbConnection, id: AccountId) -> QueryResult<Option<Account>> {
    accounts::table
        .find(id.to_string())
        .select(AccountRow::as_select())
        .first(conn)
        .optional()?
        .map(Account::try_from)
        .transpose()
}

pub(crate) fn find_by_username(
    conn: &mut DbConnection,
    username: &str,
) -> QueryResult<Option<Account>> {
    accounts::table
        .filter(accounts::username.eq(username))
        .select(AccountRow::as_select())
        .first(conn)
        .optional()?
        .map(Account::try_from)
        .transpose()
}

/// What a new account is made of; the password arrives already hashed.
#[derive(Debug, Clone)]
pub(crate) struct NewAccount<'a> {
    pub node_id: NodeId,
    pub username: &'a str,
    pub email: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    /// The password is one someone else knows (mailed): the first login must choose a new one.
    pub password_change_required: bool,
}

pub(crate) fn insert(conn: &mut DbConnection, new: NewAccount<'_>) -> QueryResult<Account> {
    let id = AccountId::generate();
    let now = super::now();
    diesel::insert_into(accounts::table)
        .values((
            accounts::id.eq(id.to_string()),
            accounts::node_id.eq(new.node_id.to_string()),
            accounts::username.eq(new.username),
            accounts::email.eq(new.email),
            accounts::role.eq(new.role.as_str()),
            accounts::password_hash.eq(new.password_hash),
            accounts::disabled.eq(false),
            accounts::version.eq(1_i64),
            accounts::created_at.eq(now),
            accounts::updated_at.eq(now),
            accounts::credential_version.eq(1_i64),
            accounts::password_change_required.eq(new.password_change_required),
        ))
        .execute(conn)?;
    Ok(Account {
        id,
        node_id: new.node_id,
        username: new.username.to_owned(),
        email: new.email.to_owned(),
        role: new.role,
        password_hash: new.password_hash.to_owned(),
        disabled: false,
        version: 1,
        created_at: now,
        updated_at: now,
        credential_version: 1,
        password_change_required: new.password_change_required,
    })
}

/// A node's accounts in creation order after the cursor.
pub(crate) fn list_for_node(
    conn: &mut DbConnection,
    node: NodeId,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Account>> {
    let mut query = accounts::table
        .filter(accounts::node_id.eq(node.to_string()))
        .select(AccountRow::as_select())
        .order(accounts::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(accounts::id.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(Account::try_from)
        .collect()
}

/// Writes `account`'s mutable fields, bumping its version.
pub(crate) fn save(conn: &mut DbConnection, account: &mut Account) -> QueryResult<()> {
    account.version += 1;
    account.updated_at = super::now();
    diesel::update(accounts::table.find(account.id.to_string()))
        .set((
            accounts::email.eq(&account.email),
            accounts::role.eq(account.role.as_str()),
            accounts::password_hash.eq(&account.password_hash),
            accounts::disabled.eq(account.disabled),
            accounts::version.eq(account.version),
            accounts::updated_at.eq(account.updated_at),
            accounts::credential_version.eq(account.credential_version),
            accounts::password_change_required.eq(account.password_change_required),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn delete(conn: &mut DbConnection, id: AccountId) -> QueryResult<()> {
    diesel::delete(accounts::table.find(id.to_string())).execute(conn)?;
    Ok(())
}
