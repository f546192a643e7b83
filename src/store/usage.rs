//! Usage counters: units of each resource a customer uses now. Written in the same transaction as
//! the rows they count (mailboxes, domains, module seats); read by the invariant's checks and the
//! usage report, and recomputed from the rows by `allot verify`.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::DbConnection;
use super::schema::{nodes, usage_counters};
use crate::domain::ids::NodeId;

/// What `node` uses of `resource` now.
pub fn used(conn: &mut DbConnection, node: NodeId, resource: &str) -> QueryResult<i64> {
    Ok(usage_counters::table
        .find((node.to_string(), resource))
        .select(usage_counters::used)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// What the live subtree at `path` uses, per resource.
pub fn used_in_subtree(conn: &mut DbConnection, path: &str) -> QueryResult<BTreeMap<String, i64>> {
    let (low, high) = super::nodes::subtree_range(path);
    let rows: Vec<(String, Option<i64>)> = usage_counters::table
        .inner_join(nodes::table)
        .filter(nodes::path.ge(low))
        .filter(nodes::path.lt(high))
        .filter(nodes::deleted_at.is_null())
        .group_by(usage_counters::resource)
        // PostgreSQL sums bigints into numeric, which the two-backend connection cannot read.
        .select((
            usage_counters::resource,
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(
                "CAST(SUM(usage_counters.used) AS BIGINT)",
            ),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(resource, sum)| (resource, sum.unwrap_or(0)))
        .collect())
}
