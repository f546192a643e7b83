//! The login throttle's attempts (see `crate::auth::throttle` for the rules): one row per attempt
//! and key, keys given as their hashes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Integer;

use super::DbConnection;
use super::schema::login_attempts;

/// The advisory lock class of the throttle's keys (PostgreSQL's two-integer lock space; any other
/// user of advisory locks takes another class).
const LOCK_CLASS: i32 = 0x616c_6c74; // "allt"

/// One stored attempt under one key.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub(crate) struct Attempt {
    pub key_hash: String,
    pub at: NaiveDateTime,
    pub pending: bool,
}

/// Serialises attempts on `key_hashes` across every instance until the transaction ends. On
/// PostgreSQL a transaction-scoped advisory lock per key, taken in one order so that two attempts
/// sharing two keys cannot deadlock (a collision of the 32-bit lock ids only serialises two
/// unrelated keys). On SQLite nothing: the write transaction (`BEGIN IMMEDIATE`) holds the
/// database's one write lock already.
pub(crate) fn lock(conn: &mut DbConnection, key_hashes: &[String]) -> QueryResult<()> {
    let DbConnection::Postgres(pg) = conn else {
        return Ok(());
    };
    let mut ids: Vec<i32> = key_hashes.iter().map(|hash| lock_id(hash)).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind::<Integer, _>(LOCK_CLASS)
            .bind::<Integer, _>(id)
            .execute(pg)?;
    }
    Ok(())
}

/// The lock id of a key: the first 32 bits of its hash.
fn lock_id(key_hash: &str) -> i32 {
    let prefix = key_hash.get(..8).unwrap_or_default();
    u32::from_str_radix(prefix, 16).map_or(0, |bits| bits as i32)
}

/// The attempts under `key_hashes` made after `since`, oldest first.
pub(crate) fn since(
    conn: &mut DbConnection,
    key_hashes: &[String],
    since: NaiveDateTime,
) -> QueryResult<Vec<Attempt>> {
    login_attempts::table
        .filter(login_attempts::key_hash.eq_any(key_hashes))
        .filter(login_attempts::at.gt(since))
        .select((
            login_attempts::key_hash,
            login_attempts::at,
            login_attempts::pending,
        ))
        .order(login_attempts::at)
        .load(conn)
}

/// Takes a place for `attempt` under each of `key_hashes`, pending.
pub(crate) fn insert(
    conn: &mut DbConnection,
    attempt: &str,
    key_hashes: &[String],
    at: NaiveDateTime,
) -> QueryResult<()> {
    for key_hash in key_hashes {
        diesel::insert_into(login_attempts::table)
            .values((
                login_attempts::attempt.eq(attempt),
                login_attempts::key_hash.eq(key_hash),
                login_attempts::at.eq(at),
                login_attempts::pending.eq(true),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// `attempt` failed at `at`: its places stay taken, as failures.
pub(crate) fn fail(conn: &mut DbConnection, attempt: &str, at: NaiveDateTime) -> QueryResult<()> {
    diesel::update(login_attempts::table.filter(login_attempts::attempt.eq(attempt)))
        .set((login_attempts::pending.eq(false), login_attempts::at.eq(at)))
        .execute(conn)?;
    Ok(())
}

/// Gives `attempt`'s places back.
pub(crate) fn delete(conn: &mut DbConnection, attempt: &str) -> QueryResult<()> {
    diesel::delete(login_attempts::table.filter(login_attempts::attempt.eq(attempt)))
        .execute(conn)?;
    Ok(())
}

/// Forgets the failures under `key_hash`: failed attempts, and pending ones begun before
/// `abandoned_before` (which count as failures). Attempts being verified now keep their places.
pub(crate) fn forgive(
    conn: &mut DbConnection,
    key_hash: &str,
    abandoned_before: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(
        login_attempts::table
            .filter(login_attempts::key_hash.eq(key_hash))
            .filter(
                login_attempts::pending
                    .eq(false)
                    .or(login_attempts::at.le(abandoned_before)),
            ),
    )
    .execute(conn)?;
    Ok(())
}

/// Deletes the attempts made at or before `cutoff` under `key_hashes`, or under every key when
/// `None`; how many.
pub(crate) fn expire(
    conn: &mut DbConnection,
    key_hashes: Option<&[String]>,
    cutoff: NaiveDateTime,
) -> QueryResult<usize> {
    let expired = login_attempts::table.filter(login_attempts::at.le(cutoff));
    match key_hashes {
        Some(keys) => {
            diesel::delete(expired.filter(login_attempts::key_hash.eq_any(keys))).execute(conn)
        }
        None => diesel::delete(expired).execute(conn),
    }
}

#[cfg(test)]
mod tests {
    use super::lock_id;

    #[test]
    fn a_lock_id_is_the_first_32_bits_of_the_hash() {
        assert_eq!(lock_id("00000001ffff"), 1);
        assert_eq!(lock_id("ffffffff0000"), -1);
        assert_eq!(lock_id("short"), 0);
    }
}
