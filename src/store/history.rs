//! Usage history: per node, resource and day, the limit in force, the peak and the end-of-day
//! usage; per node and closed day, the active users.
//!
//! Kept without scanning mailboxes or counters on every write:
//! - every change of a usage counter ([`usage::add`](super::usage::add)) updates today's row of
//!   each node of the lineage in the same transaction ([`record`]), raising the peak (and the row
//!   of any later day opened meanwhile: see [`open_day`] on the midnight race);
//! - the first write, read or background tick of a day opens it ([`open_day`]): the previous day
//!   is closed (its limits settled, its active users counted once from `last_seen_at` and rolled
//!   up the tree), days on which allot ran nothing are carried forward from it, and today's rows
//!   start from the counters, and at zero for each limit of a node that has no counter of that
//!   resource. So there is a row for every day from a node's first counted day (the day it first
//!   used something, or the day after it got a limit), and none before it.
//!
//! Active users of a day are the mailboxes an outbound check last saw in the 30 days up to and
//! including it. Only the last sighting is kept, so a day is counted when it closes: a day closed
//! late (allot was not running at midnight) counts the sightings known then.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, TimeDelta};
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::mailboxes::Origin;
use super::schema::{
    active_user_history, mailboxes, nodes, usage_counters, usage_history, usage_history_days,
};
use super::{DbConnection, execute_ignoring_conflict};
use crate::domain::active::window;
use crate::domain::ids::NodeId;
use crate::domain::tree;

/// Past this many days, a gap in the history (allot did not run) is not carried over whole.
const MAX_CARRIED_DAYS: i64 = 400;

/// One node's figures for one resource on one day.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub(crate) struct Row {
    pub node_id: String,
    pub resource: String,
    pub day: NaiveDate,
    /// The limit in force that day (settled when the day closes).
    pub day_limit: i64,
    pub peak: i64,
    /// At the end of the day (now, for today).
    pub used: i64,
}

/// Whether `day` has been opened.
pub(crate) fn is_open(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(usage_history_days::table.find(day))).get_result(conn)
}

/// The key of the PostgreSQL advisory lock that orders changes of usage around the opening of a
/// day (any constant no other lock of allot uses).
const DAY_LOCK: i64 = 0x616c_6c6f_7444;

/// Opens `today` if no one has yet (a cheap no-op otherwise): closes the last day opened before
/// it, carries its figures over the days between, and starts today's rows from the counters.
/// Runs in the caller's write transaction, before any counter of the transaction changes.
///
/// # The midnight race
/// A change of usage is judged on the day its request began (`today`), and may commit after the
/// next day was opened: judged on D at 23:59:59, it waits for a lock, and meanwhile day D+1 opens
/// and starts its rows from the counters as committed then. Two things keep D+1 right:
/// - *Ordering* (PostgreSQL): every change of usage holds [`DAY_LOCK`] shared until it commits,
///   and the opener of a day holds it exclusive until it commits. So the opener waits for the
///   changes in flight and reads their counters committed, and a change that starts later waits
///   for the opening and then sees the new day. SQLite needs no lock: `BEGIN IMMEDIATE` already
///   runs one writer at a time. (A writer holding a row lock that a change holding the shared lock
///   waits for can deadlock with it while it waits to open the day; PostgreSQL then aborts one,
///   which answers 503, retry. Only the transaction that opens a day can be in that position.)
/// - *Every open day*: [`record`] writes a change into its own day and into each later day
///   already open ([`days_from`]), so a late change of D also reaches D+1's row (on both
///   backends: on SQLite too a request can be judged on D and get the write lock after D+1
///   opened).
///
/// The lock alone would not do (the late change would still only reach D), nor would writing
/// into later days alone on PostgreSQL (a change in flight does not see the new day, and the
/// opener does not see its counter).
pub(crate) fn open_day(conn: &mut DbConnection, today: NaiveDate) -> QueryResult<()> {
    let open = is_open(conn, today)?;
    lock_days(conn, !open)?;
    // Whoever inserts the marker opens the day; a concurrent opener waits on it, then does nothing.
    if open || mark(conn, today)? == 0 {
        return Ok(());
    }
    let last: Option<NaiveDate> = usage_history_days::table
        .filter(usage_history_days::day.lt(today))
        .select(diesel::dsl::max(usage_history_days::day))
        .first(conn)?;
    if let Some(last) = last {
        close(conn, last)?;
        let carried = on_day(conn, last)?;
        let mut day = (last + TimeDelta::days(1)).max(today - TimeDelta::days(MAX_CARRIED_DAYS));
        while day < today {
            let rows: Vec<Row> = carried
                .iter()
                .map(|row| Row {
                    day,
                    peak: row.used,
                    ..row.clone()
                })
                .collect();
            insert_rows(conn, &rows)?;
            mark(conn, day)?;
            close(conn, day)?;
            day += TimeDelta::days(1);
        }
    }
    // Today's rows: one per counter, and one (nothing used) per limit of a node that never used
    // that resource, so that a customer with a limit is counted from the day after its grant.
    let mut limits = super::allocations::limits_on(conn, today)?;
    let mut rows: Vec<Row> = usage_counters::table
        .select((
            usage_counters::node_id,
            usage_counters::resource,
            usage_counters::used,
        ))
        .load::<(String, String, i64)>(conn)?
        .into_iter()
        .map(|(node_id, resource, used)| Row {
            day_limit: limits
                .remove(&(node_id.clone(), resource.clone()))
                .unwrap_or(0),
            node_id,
            resource,
            day: today,
            peak: used,
            used,
        })
        .collect();
    rows.extend(limits.into_iter().map(|((node_id, resource), limit)| Row {
        node_id,
        resource,
        day: today,
        day_limit: limit,
        peak: 0,
        used: 0,
    }));
    insert_rows(conn, &rows)
}

/// On PostgreSQL, takes [`DAY_LOCK`] until the transaction ends: exclusive to open a day, shared
/// to change usage. Nothing on SQLite, whose writers already run one at a time.
fn lock_days(conn: &mut DbConnection, exclusive: bool) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        let lock = if exclusive {
            "pg_advisory_xact_lock"
        } else {
            "pg_advisory_xact_lock_shared"
        };
        diesel::sql_query(format!("SELECT {lock}($1)"))
            .bind::<BigInt, _>(DAY_LOCK)
            .execute(pg)?;
    }
    Ok(())
}

/// The open days from `today` on: `today`, and any later one a change judged on `today` reaches
/// because it runs after that day opened (see [`open_day`]).
pub(crate) fn days_from(conn: &mut DbConnection, today: NaiveDate) -> QueryResult<Vec<NaiveDate>> {
    usage_history_days::table
        .filter(usage_history_days::day.ge(today))
        .select(usage_history_days::day)
        .order(usage_history_days::day)
        .load(conn)
}

/// Marks `day` open, unless it is: the rows inserted (0 or 1).
/// Whether the limits moving on `day` have been judged for quota crossings
/// (`service::seats::limits_moved`).
pub(crate) fn limits_judged(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<bool> {
    Ok(usage_history_days::table
        .find(day)
        .select(usage_history_days::limits_judged)
        .first::<bool>(conn)
        .optional()?
        .unwrap_or(false))
}

/// Claims the judgement of the limits moving on `day`, an open day, for the caller's transaction:
/// `Some(last)` (the last day judged before it, if any) to the one caller that claims it, `None`
/// to every later one. On PostgreSQL a concurrent claimer waits on the row, then finds it taken.
pub(crate) fn claim_limits(
    conn: &mut DbConnection,
    day: NaiveDate,
) -> QueryResult<Option<Option<NaiveDate>>> {
    let last: Option<NaiveDate> = usage_history_days::table
        .filter(usage_history_days::limits_judged.eq(true))
        .filter(usage_history_days::day.lt(day))
        .select(diesel::dsl::max(usage_history_days::day))
        .first(conn)?;
    let claimed = diesel::update(
        usage_history_days::table
            .find(day)
            .filter(usage_history_days::limits_judged.eq(false)),
    )
    .set(usage_history_days::limits_judged.eq(true))
    .execute(conn)?;
    Ok((claimed == 1).then_some(last))
}

fn mark(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<usize> {
    execute_ignoring_conflict!(
        conn,
        diesel::insert_into(usage_history_days::table)
            .values((
                usage_history_days::day.eq(day),
                usage_history_days::closed.eq(false),
            ))
            .on_conflict_do_nothing()
    )
}

/// Closes `day` unless it is closed: settles its limits as allocations say now and counts its
/// active users per node (rolled up the tree).
fn close(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<()> {
    let closed: Option<bool> = usage_history_days::table
        .find(day)
        .select(usage_history_days::closed)
        .first(conn)
        .optional()?;
    if closed != Some(false) {
        return Ok(());
    }
    let limits = super::allocations::limits_on(conn, day)?;
    for row in on_day(conn, day)? {
        let limit = limits
            .get(&(row.node_id.clone(), row.resource.clone()))
            .copied()
            .unwrap_or(0);
        if limit != row.day_limit {
            diesel::update(usage_history::table.find((&row.node_id, day, &row.resource)))
                .set(usage_history::day_limit.eq(limit))
                .execute(conn)?;
        }
    }
    let active: Vec<_> = active_by_node(conn, day)?
        .into_iter()
        .map(|(node, count)| {
            (
                active_user_history::node_id.eq(node),
                active_user_history::day.eq(day),
                active_user_history::active_users.eq(count),
            )
        })
        .collect();
    for chunk in active.chunks(500) {
        execute_ignoring_conflict!(
            conn,
            diesel::insert_into(active_user_history::table)
                .values(chunk)
                .on_conflict_do_nothing()
        )?;
    }
    diesel::update(usage_history_days::table.find(day))
        .set(usage_history_days::closed.eq(true))
        .execute(conn)?;
    Ok(())
}

/// Adds `delta` to the row of `day` (today, or a later open day) of `resource` at `node`, raising
/// its peak; the counter has just changed by `delta` (and is read for a row that does not exist
/// yet: a counter new that day).
pub(crate) fn record(
    conn: &mut DbConnection,
    node: &str,
    resource: &str,
    delta: i64,
    day: NaiveDate,
) -> QueryResult<()> {
    let after = format!("used + ({delta})");
    let updated = diesel::update(usage_history::table.find((node, day, resource)))
        .set((
            usage_history::used.eq(usage_history::used + delta),
            usage_history::peak.eq(diesel::dsl::sql::<BigInt>(&format!(
                "CASE WHEN {after} > peak THEN {after} ELSE peak END"
            ))),
        ))
        .execute(conn)?;
    if updated > 0 {
        return Ok(());
    }
    let used: i64 = usage_counters::table
        .find((node, resource))
        .select(usage_counters::used)
        .first(conn)?;
    let id: NodeId = node.parse().map_err(super::corrupt)?;
    let limit = crate::domain::quota::total_at(
        &super::allocations::limit_of(conn, id, resource, None)?,
        day,
    );
    insert_rows(
        conn,
        &[Row {
            node_id: node.to_owned(),
            resource: resource.to_owned(),
            day,
            day_limit: limit,
            peak: used.max(used - delta),
            used,
        }],
    )
}

fn insert_rows(conn: &mut DbConnection, rows: &[Row]) -> QueryResult<()> {
    for chunk in rows.chunks(500) {
        let values: Vec<_> = chunk
            .iter()
            .map(|row| {
                (
                    usage_history::node_id.eq(&row.node_id),
                    usage_history::resource.eq(&row.resource),
                    usage_history::day.eq(row.day),
                    usage_history::day_limit.eq(row.day_limit),
                    usage_history::peak.eq(row.peak),
                    usage_history::used.eq(row.used),
                )
            })
            .collect();
        execute_ignoring_conflict!(
            conn,
            diesel::insert_into(usage_history::table)
                .values(values)
                .on_conflict_do_nothing()
        )?;
    }
    Ok(())
}

/// Every row of `day`.
pub(crate) fn on_day(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<Vec<Row>> {
    usage_history::table
        .filter(usage_history::day.eq(day))
        .order((usage_history::node_id, usage_history::resource))
        .load(conn)
}

/// `node`'s rows from `from` to `to`, by day then resource.
pub(crate) fn of_node(
    conn: &mut DbConnection,
    node: NodeId,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<Vec<Row>> {
    usage_history::table
        .filter(usage_history::node_id.eq(node.to_string()))
        .filter(usage_history::day.between(from, to))
        .order((usage_history::day, usage_history::resource))
        .load(conn)
}

/// The rows of `nodes` on `day`, by node then resource: one query per 500 nodes.
pub(crate) fn of_nodes_on(
    conn: &mut DbConnection,
    nodes: &[NodeId],
    day: NaiveDate,
) -> QueryResult<Vec<Row>> {
    let mut rows = Vec::new();
    for chunk in super::id_chunks(nodes) {
        rows.extend(
            usage_history::table
                .filter(usage_history::node_id.eq_any(&chunk))
                .filter(usage_history::day.eq(day))
                .order((usage_history::node_id, usage_history::resource))
                .load::<Row>(conn)?,
        );
    }
    Ok(rows)
}

/// The active users of each of `nodes` that had any on the closed `day`, by node id: one query
/// per 500 nodes.
pub(crate) fn active_of_nodes_on(
    conn: &mut DbConnection,
    nodes: &[NodeId],
    day: NaiveDate,
) -> QueryResult<HashMap<String, i64>> {
    let mut active = HashMap::new();
    for chunk in super::id_chunks(nodes) {
        active.extend(
            active_user_history::table
                .filter(active_user_history::node_id.eq_any(&chunk))
                .filter(active_user_history::day.eq(day))
                .select((
                    active_user_history::node_id,
                    active_user_history::active_users,
                ))
                .load::<(String, i64)>(conn)?,
        );
    }
    Ok(active)
}

/// `node`'s active users on each closed day from `from` to `to` that had any.
pub(crate) fn active_of_node(
    conn: &mut DbConnection,
    node: NodeId,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<BTreeMap<NaiveDate, i64>> {
    Ok(active_user_history::table
        .filter(active_user_history::node_id.eq(node.to_string()))
        .filter(active_user_history::day.between(from, to))
        .select((active_user_history::day, active_user_history::active_users))
        .load::<(NaiveDate, i64)>(conn)?
        .into_iter()
        .collect())
}

/// The mailboxes of the subtree at `path` seen within the window of `day`: the active users of a
/// day not closed yet (today).
pub(crate) fn active_in_subtree(
    conn: &mut DbConnection,
    path: &str,
    day: NaiveDate,
) -> QueryResult<i64> {
    let (low, high) = tree::subtree_range(path);
    let (start, end) = window(day);
    mailboxes::table
        .inner_join(nodes::table)
        .filter(nodes::path.ge(low))
        .filter(nodes::path.lt(high))
        .filter(mailboxes::origin.ne(Origin::Role.as_str()))
        .filter(mailboxes::last_seen_at.ge(start))
        .filter(mailboxes::last_seen_at.lt(end))
        .count()
        .get_result(conn)
}

/// Active users on `day` per node, each customer's mailboxes counted once and added to every
/// node of its lineage.
fn active_by_node(conn: &mut DbConnection, day: NaiveDate) -> QueryResult<HashMap<String, i64>> {
    let (start, end) = window(day);
    let per_path: Vec<(String, i64)> = mailboxes::table
        .inner_join(nodes::table)
        .filter(mailboxes::origin.ne(Origin::Role.as_str()))
        .filter(mailboxes::last_seen_at.ge(start))
        .filter(mailboxes::last_seen_at.lt(end))
        .group_by(nodes::path)
        .select((nodes::path, diesel::dsl::count_star()))
        .load(conn)?;
    let mut totals: HashMap<String, i64> = HashMap::new();
    for (path, count) in per_path {
        for node in tree::lineage(&path) {
            *totals.entry(node.to_string()).or_default() += count;
        }
    }
    Ok(totals)
}
