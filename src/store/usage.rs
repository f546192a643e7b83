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

/// Where `node` stands on `today` with each of `resources`, taken together: one unit of each or
/// none (see [`Bundle`]).
pub(crate) fn bundle(
    conn: &mut DbConnection,
    node: NodeId,
    resources: &[impl AsRef<str>],
    today: chrono::NaiveDate,
) -> QueryResult<Bundle> {
    let mut standings = Vec::with_capacity(resources.len());
    for resource in resources {
        let resource = resource.as_ref();
        standings.push((resource.to_owned(), standing(conn, node, resource, today)?));
    }
    Ok(Bundle::new(node, today, standings))
}
