//! Usage counters: units of each resource in use now, per node. A customer's counter is what it
//! uses; a reseller's or the owner's is the sum over its subtree, kept along the lineage in the same
//! transaction as every change, so any node's usage is one indexed read however large its subtree
//! (a subtree sum at read time cost 30 ms for 10,000 customers on SQLite; see BENCHMARKS.md).
//! `allot verify` recomputes the sums.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::DbConnection;
use super::schema::usage_counters;
use crate::domain::ids::NodeId;
use crate::domain::quota::{Bundle, Standing};

/// What `node` (with its subtree) uses of `resource` now.
pub(crate) fn used(conn: &mut DbConnection, node: NodeId, resource: &str) -> QueryResult<i64> {
    Ok(usage_counters::table
        .find((node.to_string(), resource))
        .select(usage_counters::used)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// What `node` (with its subtree) uses now, per resource.
pub(crate) fn totals(conn: &mut DbConnection, node: NodeId) -> QueryResult<BTreeMap<String, i64>> {
    Ok(usage_counters::table
        .filter(usage_counters::node_id.eq(node.to_string()))
        .select((usage_counters::resource, usage_counters::used))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect())
}

/// What each of `nodes` (with its subtree) uses now: (node, resource) → used. One query per 500
/// nodes.
pub(crate) fn totals_of(
    conn: &mut DbConnection,
    nodes: &[NodeId],
) -> QueryResult<BTreeMap<(String, String), i64>> {
    let mut totals = BTreeMap::new();
    for chunk in super::id_chunks(nodes) {
        let rows: Vec<(String, String, i64)> = usage_counters::table
            .filter(usage_counters::node_id.eq_any(&chunk))
            .select((
                usage_counters::node_id,
                usage_counters::resource,
                usage_counters::used,
            ))
            .load(conn)?;
        totals.extend(
            rows.into_iter()
                .map(|(node, resource, used)| ((node, resource), used)),
        );
    }
    Ok(totals)
}

/// Adds `delta` to `resource` at every node of `lineage` on `today`, and to each node's usage
/// history of the day (opened first, from the counters as they were) and of any later day opened
/// meanwhile (see [`history::open_day`](super::history::open_day) on the midnight race). The row is created first if
/// missing (`ON CONFLICT DO NOTHING`, so two writers creating it at once do not collide), then
/// updated in place, which serialises concurrent writers on the row.
pub(crate) fn add(
    conn: &mut DbConnection,
    lineage: &[NodeId],
    resource: &str,
    delta: i64,
    today: chrono::NaiveDate,
) -> QueryResult<()> {
    super::history::open_day(conn, today)?;
    let days = super::history::days_from(conn, today)?;
    for node in lineage {
        let node = node.to_string();
        let row = (
            usage_counters::node_id.eq(&node),
            usage_counters::resource.eq(resource),
            usage_counters::used.eq(0_i64),
        );
        super::execute_ignoring_conflict!(
            conn,
            diesel::insert_into(usage_counters::table)
                .values(row)
                .on_conflict_do_nothing()
        )?;
        diesel::update(usage_counters::table.find((&node, resource)))
            .set(usage_counters::used.eq(usage_counters::used + delta))
            .execute(conn)?;
        for day in &days {
            super::history::record(conn, &node, resource, delta, *day)?;
        }
    }
    Ok(())
}

/// Moves a subtree's usage `amounts` from the ancestors it leaves to the ones it joins on `today`.
pub(crate) fn shift(
    conn: &mut DbConnection,
    leaving: &[NodeId],
    joining: &[NodeId],
    amounts: &BTreeMap<String, i64>,
    today: chrono::NaiveDate,
) -> QueryResult<()> {
    for (resource, amount) in amounts.iter().filter(|(_, a)| **a != 0) {
        add(conn, leaving, resource, -amount, today)?;
        add(conn, joining, resource, *amount, today)?;
    }
    Ok(())
}

/// Every counter, for the verifier: (node, resource, used).
pub(crate) fn all(conn: &mut DbConnection) -> QueryResult<Vec<(String, String, i64)>> {
    usage_counters::table
        .select((
            usage_counters::node_id,
            usage_counters::resource,
            usage_counters::used,
        ))
        .load(conn)
}

/// `node`'s limit of `resource` on `today` and what it uses of it now.
pub(crate) fn standing(
    conn: &mut DbConnection,
    node: NodeId,
    resource: &str,
    today: chrono::NaiveDate,
) -> QueryResult<Standing> {
    let limit = crate::domain::quota::total_at(
        &super::allocations::limit_of(conn, node, resource, None)?,
        today,
    );
    Ok(Standing {
        limit,
        used: used(conn, node, resource)?,
    })
}

/// Locks the counters of `resources` at every node of `lineage` (root first) until the transaction
/// ends, creating missing ones, so the standings read next stay true until the seats are counted:
/// two customers of one overselling reseller, each under its own node lock, are serialised here, at
/// the counters they share. PostgreSQL only; SQLite's `BEGIN IMMEDIATE` already excludes every
/// other writer.
///
/// No deadlock: every writer locks counters resource by resource in name order and each
/// resource's lineage root first, and every lineage starts at the owner, so two writers meet first
/// at the owner's counter of the first resource they share and the second waits there holding no
/// counter the first will need. (`add` then updates rows already held.) Node rows are always
/// locked before counters, never after, and the day lock of the usage history before both.
fn lock_lineage(
    conn: &mut DbConnection,
    lineage: &[NodeId],
    resources: &[impl AsRef<str>],
) -> QueryResult<()> {
    if !matches!(conn, DbConnection::Postgres(_)) {
        return Ok(());
    }
    let mut sorted: Vec<&str> = resources.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    sorted.dedup();
    for resource in sorted {
        for node in lineage {
            let node = node.to_string();
            super::execute_ignoring_conflict!(
                conn,
                diesel::insert_into(usage_counters::table)
                    .values((
                        usage_counters::node_id.eq(&node),
                        usage_counters::resource.eq(resource),
                        usage_counters::used.eq(0_i64),
                    ))
                    .on_conflict_do_nothing()
            )?;
            if let DbConnection::Postgres(pg) = conn {
                usage_counters::table
                    .find((&node, resource))
                    .select(usage_counters::used)
                    .for_update()
                    .load::<i64>(pg)?;
            }
        }
    }
    Ok(())
}

/// Where the customer at the end of `lineage` (root first, itself last) stands on `today` with
/// each of `resources`, taken together, and where each of its ancestors stands: one unit of each
/// or none, within every limit of the lineage (see [`Bundle`]). The counters are locked first (see
/// [`lock_lineage`]), so the figures hold until the caller counts what it took.
pub(crate) fn bundle(
    conn: &mut DbConnection,
    lineage: &[NodeId],
    resources: &[impl AsRef<str>],
    today: chrono::NaiveDate,
) -> QueryResult<Bundle> {
    let Some((&node, ancestors)) = lineage.split_last() else {
        return Err(diesel::result::Error::NotFound);
    };
    // The day first, as `add` does, so the day lock is always taken before any counter's (see
    // `history::open_day`): a writer holding a counter while queueing for the day lock behind an
    // opener could close a cycle with one holding the day lock shared and waiting for the counter.
    super::history::open_day(conn, today)?;
    lock_lineage(conn, lineage, resources)?;
    let mut standings = Vec::with_capacity(resources.len());
    let mut above = Vec::with_capacity(resources.len());
    for resource in resources {
        let resource = resource.as_ref();
        standings.push((resource.to_owned(), standing(conn, node, resource, today)?));
        let mut judged = Vec::with_capacity(ancestors.len());
        for &ancestor in ancestors.iter().rev() {
            judged.push((ancestor, standing(conn, ancestor, resource, today)?));
        }
        above.push(judged);
    }
    Ok(Bundle::with_ancestors(node, today, standings, above))
}

/// Whether each of `joining` (root first) has room for `amounts` more units within its own limit
/// on `today`: a subtree moving in brings its use to the ancestors it joins, which must hold it as
/// if its seats were taken anew (the use invariant). The first that has not is the refusal,
/// naming it as an exhausted ancestor. The counters are locked as [`bundle`] locks them.
pub(crate) fn room_along(
    conn: &mut DbConnection,
    joining: &[NodeId],
    amounts: &BTreeMap<String, i64>,
    today: chrono::NaiveDate,
) -> QueryResult<Result<(), crate::domain::quota::Refusal>> {
    let resources: Vec<&String> = amounts.keys().collect();
    super::history::open_day(conn, today)?;
    lock_lineage(conn, joining, &resources)?;
    for (resource, amount) in amounts.iter().filter(|(_, a)| **a > 0) {
        for node in joining {
            let refused = standing(conn, *node, resource, today)?
                .take(*amount, *node, resource, today)
                .map_err(|refusal| crate::domain::quota::Refusal {
                    ancestor: true,
                    ..refusal
                });
            if refused.is_err() {
                return Ok(refused);
            }
        }
    }
    Ok(Ok(()))
}
