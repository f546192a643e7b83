//! Recorded first answers to idempotent requests.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::idempotency_keys;

/// A first answer, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
pub(crate) struct Recorded {
    pub fingerprint: String,
    pub status: i32,
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub created_at: NaiveDateTime,
}

pub(crate) fn find(
    conn: &mut DbConnection,
    principal: &str,
    key: &str,
) -> QueryResult<Option<Recorded>> {
    idempotency_keys::table
        .find((principal, key))
        .select(Recorded::as_select())
        .first(conn)
        .optional()
}

/// Forgets the principal's records older than `before` (and so an expired record of `key`).
pub(crate) fn forget_before(
    conn: &mut DbConnection,
    principal: &str,
    before: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::principal.eq(principal))
            .filter(idempotency_keys::created_at.lt(before)),
    )
    .execute(conn)
}

pub(crate) fn insert(
    conn: &mut DbConnection,
    principal: &str,
    key: &str,
    record: &Recorded,
) -> QueryResult<()> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::principal.eq(principal),
            idempotency_keys::key.eq(key),
            idempotency_keys::fingerprint.eq(&record.fingerprint),
            idempotency_keys::status.eq(record.status),
            idempotency_keys::body.eq(&record.body),
            idempotency_keys::location.eq(&record.location),
            idempotency_keys::etag.eq(&record.etag),
            idempotency_keys::created_at.eq(record.created_at),
        ))
        .execute(conn)?;
    Ok(())
}
