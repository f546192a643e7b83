//! The outbox's rows and their attempts (the rules are in `domain::outbox`, the worker in
//! `crate::outbox`).
//!
//! Claiming is the one statement that differs by backend ([`claim`]): PostgreSQL locks the rows it
//! picks with `FOR UPDATE … SKIP LOCKED`, so instances claiming at once each get other rows and
//! none waits for another; on SQLite the claim runs in a write transaction (`BEGIN IMMEDIATE`),
//! which already holds the database's only write lock.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamp};

use super::DbConnection;
use super::schema::{nodes, outbox, outbox_attempts};
use crate::domain::ids::{MessageId, NodeId};
use crate::domain::outbox::{MessageKind, MessageStatus};

/// A message to write.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub kind: MessageKind,
    pub node_id: NodeId,
    pub target: String,
    pub ordering_key: Option<String>,
    pub topic: String,
    pub payload: String,
}

/// A message as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub(crate) struct Row {
    pub id: String,
    pub kind: String,
    pub node_id: String,
    pub target: String,
    pub topic: String,
    pub payload: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub claim: Option<String>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

impl Row {
    pub fn message_id(&self) -> QueryResult<MessageId> {
        self.id.parse().map_err(super::corrupt)
    }

    pub fn node(&self) -> QueryResult<NodeId> {
        self.node_id.parse().map_err(super::corrupt)
    }

    pub fn status(&self) -> QueryResult<MessageStatus> {
        self.status.parse().map_err(super::corrupt)
    }
}

/// One attempt as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox_attempts)]
pub(crate) struct Attempt {
    pub message_id: String,
    pub at: NaiveDateTime,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Writes `new`, due now; its id.
pub(crate) fn insert(conn: &mut DbConnection, new: NewMessage) -> QueryResult<MessageId> {
    let id = MessageId::generate();
    let now = super::now();
    diesel::insert_into(outbox::table)
        .values((
            outbox::id.eq(id.to_string()),
            outbox::kind.eq(new.kind.as_str()),
            outbox::node_id.eq(new.node_id.to_string()),
            outbox::target.eq(new.target),
            outbox::ordering_key.eq(new.ordering_key),
            outbox::topic.eq(new.topic),
            outbox::payload.eq(new.payload),
            outbox::status.eq(MessageStatus::Pending.as_str()),
            outbox::attempts.eq(0),
            outbox::next_attempt_at.eq(now),
            outbox::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(id)
}

#[derive(QueryableByName)]
struct Due {
    #[diesel(sql_type = Text)]
    id: String,
}

/// The rows a worker may take: pending and due, or claimed by an instance whose lease ran out —
/// and not behind an earlier undelivered message of the same target and ordering key.
const DUE: &str = "SELECT o.id FROM outbox o \
    WHERE ((o.status = 'pending' AND o.next_attempt_at <= {now}) \
        OR (o.status = 'delivering' AND o.lease_until <= {now2})) \
      AND NOT EXISTS (SELECT 1 FROM outbox e \
        WHERE e.target = o.target AND e.ordering_key = o.ordering_key AND e.id < o.id \
          AND e.status IN ('pending', 'delivering')) \
    ORDER BY o.id LIMIT {limit}";

/// Claims up to `limit` due messages until `lease_until` under the fresh token `claim`, counting
/// the attempt; answers them. Runs in the caller's write transaction.
pub(crate) fn claim(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
    claim: &str,
    limit: i64,
) -> QueryResult<Vec<Row>> {
    let due: Vec<Due> = match conn {
        DbConnection::Postgres(pg) => diesel::sql_query(format!(
            "{} FOR UPDATE OF o SKIP LOCKED",
            DUE.replace("{now}", "$1")
                .replace("{now2}", "$2")
                .replace("{limit}", "$3")
        ))
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(pg)?,
        DbConnection::Sqlite(sqlite) => diesel::sql_query(
            DUE.replace("{now}", "?")
                .replace("{now2}", "?")
                .replace("{limit}", "?"),
        )
        .bind::<Timestamp, _>(now)
        .bind::<Timestamp, _>(now)
        .bind::<BigInt, _>(limit)
        .load(sqlite)?,
    };
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = due.into_iter().map(|d| d.id).collect();
    diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
        .set((
            outbox::status.eq(MessageStatus::Delivering.as_str()),
            outbox::lease_until.eq(Some(lease_until)),
            outbox::claim.eq(Some(claim)),
            outbox::attempts.eq(outbox::attempts + 1),
        ))
        .execute(conn)?;
    outbox::table
        .filter(outbox::claim.eq(claim))
        .order(outbox::id)
        .select(Row::as_select())
        .load(conn)
}

/// Whether any message is due (pending and due, or its claim's lease ran out), whether or not it
/// waits behind an earlier one.
pub(crate) fn any_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<bool> {
    let pending = outbox::status
        .eq(MessageStatus::Pending.as_str())
        .and(outbox::next_attempt_at.le(now));
    let abandoned = outbox::status
        .eq(MessageStatus::Delivering.as_str())
        .and(outbox::lease_until.le(now));
    Ok(outbox::table
        .filter(pending.or(abandoned))
        .select(outbox::id)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

/// How an attempt ended, and what becomes of the message.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub at: NaiveDateTime,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub next: Next,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Next {
    Delivered,
    Retry(NaiveDateTime),
    Failed,
}

/// Records the attempt on message `id` and, if the claim `claim` still holds it (no other
/// instance took it over after the lease ran out), moves it on as `outcome` says.
pub(crate) fn finish(
    conn: &mut DbConnection,
    id: MessageId,
    claim: &str,
    outcome: Outcome,
) -> QueryResult<()> {
    let id = id.to_string();
    diesel::insert_into(outbox_attempts::table)
        .values((
            outbox_attempts::id.eq(uuid::Uuid::now_v7().to_string()),
            outbox_attempts::message_id.eq(&id),
            outbox_attempts::at.eq(outcome.at),
            outbox_attempts::duration_ms.eq(outcome.duration_ms),
            outbox_attempts::status_code.eq(outcome.status_code),
            outbox_attempts::error.eq(&outcome.error),
        ))
        .execute(conn)?;
    let mine = outbox::table
        .filter(outbox::id.eq(&id))
        .filter(outbox::claim.eq(claim));
    let now = super::now();
    let (status, next_at, finished) = match outcome.next {
        Next::Delivered => (MessageStatus::Delivered, None, Some(now)),
        Next::Retry(at) => (MessageStatus::Pending, Some(at), None),
        Next::Failed => (MessageStatus::Failed, None, Some(now)),
    };
    diesel::update(mine)
        .set((
            outbox::status.eq(status.as_str()),
            outbox::next_attempt_at.eq(next_at.unwrap_or(now)),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::claim.eq(None::<String>),
            outbox::last_error.eq(outcome.error),
            outbox::finished_at.eq(finished),
        ))
        .execute(conn)?;
    Ok(())
}

/// Message `id`.
pub(crate) fn find(conn: &mut DbConnection, id: MessageId) -> QueryResult<Option<Row>> {
    outbox::table
        .find(id.to_string())
        .select(Row::as_select())
        .first(conn)
        .optional()
}

/// A failed message back to pending, due now, with a fresh count of attempts (its recorded
/// attempts stay).
pub(crate) fn requeue(conn: &mut DbConnection, id: MessageId) -> QueryResult<usize> {
    diesel::update(
        outbox::table
            .find(id.to_string())
            .filter(outbox::status.eq(MessageStatus::Failed.as_str())),
    )
    .set((
        outbox::status.eq(MessageStatus::Pending.as_str()),
        outbox::attempts.eq(0),
        outbox::next_attempt_at.eq(super::now()),
        outbox::finished_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
}

/// What a reader narrows a list to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub status: Option<MessageStatus>,
    pub kind: Option<MessageKind>,
}

/// The messages of the subtree whose root has `path`, newest first, after `after`, at most
/// `limit`.
pub(crate) fn list(
    conn: &mut DbConnection,
    path: &str,
    filter: &Filter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Row>> {
    let (low, high) = super::nodes::subtree_range(path);
    let in_subtree = nodes::table
        .filter(nodes::path.ge(low))
        .filter(nodes::path.lt(high))
        .select(nodes::id);
    let mut query = outbox::table
        .filter(outbox::node_id.eq_any(in_subtree))
        .select(Row::as_select())
        .order(outbox::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(outbox::status.eq(status.as_str()));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(outbox::kind.eq(kind.as_str()));
    }
    if let Some(after) = after {
        query = query.filter(outbox::id.lt(after.to_owned()));
    }
    query.load(conn)
}

/// The attempts of the messages `ids`, oldest first.
pub(crate) fn attempts_of(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<Attempt>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    outbox_attempts::table
        .filter(outbox_attempts::message_id.eq_any(ids))
        .order(outbox_attempts::id)
        .select(Attempt::as_select())
        .load(conn)
}

/// Deletes up to `limit` of the messages delivered before `cutoff` (their attempts go with them);
/// how many it deleted.
pub(crate) fn prune_delivered_before(
    conn: &mut DbConnection,
    cutoff: NaiveDateTime,
    limit: i64,
) -> QueryResult<usize> {
    let ids: Vec<String> = outbox::table
        .filter(outbox::status.eq(MessageStatus::Delivered.as_str()))
        .filter(outbox::finished_at.lt(cutoff))
        .order(outbox::finished_at)
        .select(outbox::id)
        .limit(limit)
        .load(conn)?;
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(outbox_attempts::table.filter(outbox_attempts::message_id.eq_any(&ids)))
        .execute(conn)?;
    diesel::delete(outbox::table.filter(outbox::id.eq_any(ids))).execute(conn)
}

/// When, after `now`, the next pending message falls due or the next claim's lease runs out, if
/// ever. Messages due already but not claimed wait behind an earlier one of their order: they are
/// claimable when that one is delivered or fails, which the worker sees then.
pub(crate) fn next_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
) -> QueryResult<Option<NaiveDateTime>> {
    let retry: Option<NaiveDateTime> = outbox::table
        .filter(outbox::status.eq(MessageStatus::Pending.as_str()))
        .filter(outbox::next_attempt_at.gt(now))
        .select(diesel::dsl::min(outbox::next_attempt_at))
        .first(conn)?;
    let lease: Option<NaiveDateTime> = outbox::table
        .filter(outbox::status.eq(MessageStatus::Delivering.as_str()))
        .filter(outbox::lease_until.gt(now))
        .select(diesel::dsl::min(outbox::lease_until))
        .first(conn)?;
    Ok(match (retry, lease) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}
