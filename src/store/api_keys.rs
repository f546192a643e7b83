//! API keys: machines' credentials, bound to one node with one role.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::api_keys;
use super::{DbConnection, corrupt};
use crate::domain::ids::{ApiKeyId, NodeId};
use crate::domain::roles::Role;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiKey {
    pub id: ApiKeyId,
    pub node_id: NodeId,
    pub name: String,
    pub role: Role,
    /// SHA-256 of the secret, hex. Never serialised into any response or log.
    pub secret_hash: String,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    /// Its own budget, requests a minute; `None`: its role's default.
    pub rate_limit: Option<i64>,
    pub version: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = api_keys)]
struct ApiKeyRow {
    id: String,
    node_id: String,
    name: String,
    role: String,
    secret_hash: String,
    expires_at: Option<NaiveDateTime>,
    last_used_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    rate_limit: Option<i64>,
    version: i64,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = diesel::result::Error;
    fn try_from(row: ApiKeyRow) -> Result<Self, Self::Error> {
        Ok(ApiKey {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            name: row.name,
            role: row.role.parse().map_err(corrupt)?,
            secret_hash: row.secret_hash,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
            rate_limit: row.rate_limit,
            version: row.version,
        })
    }
}

pub(crate) fn find(conn: &mut DbConnection, id: ApiKeyId) -> QueryResult<Option<ApiKey>> {
    api_keys::table
        .find(id.to_string())
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()?
        .map(ApiKey::try_from)
        .transpose()
}

/// A node's keys, revoked ones included, in creation order after the cursor.
pub(crate) fn list_for_node(
    conn: &mut DbConnection,
    node: NodeId,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<ApiKey>> {
    let mut query = api_keys::table
        .filter(api_keys::node_id.eq(node.to_string()))
        .select(ApiKeyRow::as_select())
        .order(api_keys::id)
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(api_keys::id.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(ApiKey::try_from)
        .collect()
}

pub(crate) fn insert(conn: &mut DbConnection, key: &ApiKey) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(key.id.to_string()),
            api_keys::node_id.eq(key.node_id.to_string()),
            api_keys::name.eq(&key.name),
            api_keys::role.eq(key.role.as_str()),
            api_keys::secret_hash.eq(&key.secret_hash),
            api_keys::expires_at.eq(key.expires_at),
            api_keys::created_at.eq(key.created_at),
            api_keys::rate_limit.eq(key.rate_limit),
            api_keys::version.eq(key.version),
        ))
        .execute(conn)?;
    Ok(())
}

/// Writes `key`'s name and budget, bumping its version.
pub(crate) fn save(conn: &mut DbConnection, key: &mut ApiKey) -> QueryResult<()> {
    key.version += 1;
    diesel::update(api_keys::table.find(key.id.to_string()))
        .set((
            api_keys::name.eq(&key.name),
            api_keys::rate_limit.eq(key.rate_limit),
            api_keys::version.eq(key.version),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn revoke(conn: &mut DbConnection, id: ApiKeyId, at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(api_keys::table.find(id.to_string()))
        .set(api_keys::revoked_at.eq(at))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn touch(conn: &mut DbConnection, id: ApiKeyId, at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(api_keys::table.find(id.to_string()))
        .set(api_keys::last_used_at.eq(at))
        .execute(conn)?;
    Ok(())
}
