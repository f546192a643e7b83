//! Oversell ratios: per node and resource, how many times its own limit it may grant its
//! children, in thousandths. No row is 1.0. Read inside the write transactions that decide grants;
//! written by the ratio workflow (`service::oversell`) only.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::DbConnection;
use super::schema::{nodes, oversell_ratios};
use crate::domain::ids::NodeId;
use crate::domain::quota::Ratio;

/// A stored ratio out of bounds (the column's CHECK keeps them in) is read as the nearest bound's
/// refusal: corrupt data, an error.
fn ratio(permille: i64) -> QueryResult<Ratio> {
    Ratio::from_permille(permille).map_err(|e| {
        diesel::result::Error::DeserializationError(format!("oversell ratio: {e}").into())
    })
}

/// `node`'s ratio for `resource`: 1.0 unless set.
pub(crate) fn of(conn: &mut DbConnection, node: NodeId, resource: &str) -> QueryResult<Ratio> {
    oversell_ratios::table
        .find((node.to_string(), resource))
        .select(oversell_ratios::permille)
        .first::<i64>(conn)
        .optional()?
        .map_or(Ok(Ratio::ONE), ratio)
}

/// Every ratio `node` has other than 1.0, by resource.
pub(crate) fn all_of(
    conn: &mut DbConnection,
    node: NodeId,
) -> QueryResult<BTreeMap<String, Ratio>> {
    oversell_ratios::table
        .filter(oversell_ratios::node_id.eq(node.to_string()))
        .select((oversell_ratios::resource, oversell_ratios::permille))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .map(|(resource, permille)| Ok((resource, ratio(permille)?)))
        .collect()
}

/// The ratios each of `nodes` has other than 1.0: (node, resource) → ratio. One query per 500.
pub(crate) fn of_nodes(
    conn: &mut DbConnection,
    nodes: &[NodeId],
) -> QueryResult<BTreeMap<(String, String), Ratio>> {
    let mut ratios = BTreeMap::new();
    for chunk in super::id_chunks(nodes) {
        let rows: Vec<(String, String, i64)> = oversell_ratios::table
            .filter(oversell_ratios::node_id.eq_any(&chunk))
            .select((
                oversell_ratios::node_id,
                oversell_ratios::resource,
                oversell_ratios::permille,
            ))
            .load(conn)?;
        for (node, resource, permille) in rows {
            ratios.insert((node, resource), ratio(permille)?);
        }
    }
    Ok(ratios)
}

/// Every ratio set anywhere, for the verifier: (node, resource) → ratio.
pub(crate) fn all(conn: &mut DbConnection) -> QueryResult<BTreeMap<(NodeId, String), Ratio>> {
    let rows: Vec<(String, String, i64)> = oversell_ratios::table
        .select((
            oversell_ratios::node_id,
            oversell_ratios::resource,
            oversell_ratios::permille,
        ))
        .load(conn)?;
    let mut ratios = BTreeMap::new();
    for (node, resource, permille) in rows {
        // A row naming no node id cannot be one of the tree's; the verifier finds nothing of it.
        if let Ok(node) = node.parse() {
            ratios.insert((node, resource), ratio(permille)?);
        }
    }
    Ok(ratios)
}

/// The version of `node`'s ratios as a set: their ETag.
pub(crate) fn version_of(conn: &mut DbConnection, node: NodeId) -> QueryResult<i64> {
    nodes::table
        .find(node.to_string())
        .select(nodes::oversell_version)
        .first(conn)
}

/// Raises the version of `node`'s ratios by one (they changed); returns the new one.
pub(crate) fn bump_version(conn: &mut DbConnection, node: NodeId) -> QueryResult<i64> {
    diesel::update(nodes::table.find(node.to_string()))
        .set(nodes::oversell_version.eq(nodes::oversell_version + 1))
        .execute(conn)?;
    version_of(conn, node)
}

/// Sets `node`'s ratio for `resource`; 1.0 removes the row (the default needs none).
pub(crate) fn set(
    conn: &mut DbConnection,
    node: NodeId,
    resource: &str,
    ratio: Ratio,
) -> QueryResult<()> {
    let node = node.to_string();
    diesel::delete(oversell_ratios::table.find((&node, resource))).execute(conn)?;
    if ratio != Ratio::ONE {
        diesel::insert_into(oversell_ratios::table)
            .values((
                oversell_ratios::node_id.eq(&node),
                oversell_ratios::resource.eq(resource),
                oversell_ratios::permille.eq(ratio.permille()),
            ))
            .execute(conn)?;
    }
    Ok(())
}
