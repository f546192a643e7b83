//! Which quota thresholds each node's use of each resource has reached (`quota_crossings`): the
//! state that makes a quota notice go out once per crossing. What counts as reaching a threshold
//! is `domain::quota`; when the rows change is `service::seats`.

use diesel::prelude::*;

use super::DbConnection;
use super::schema::quota_crossings;
use crate::domain::ids::NodeId;

/// The thresholds marked reached at each of `nodes`: (node, resource, threshold).
pub(crate) fn of_nodes(
    conn: &mut DbConnection,
    nodes: &[NodeId],
) -> QueryResult<Vec<(NodeId, String, u8)>> {
    let ids: Vec<String> = nodes.iter().map(ToString::to_string).collect();
    let rows: Vec<(String, String, i32)> = quota_crossings::table
        .filter(quota_crossings::node_id.eq_any(ids))
        .select((
            quota_crossings::node_id,
            quota_crossings::resource,
            quota_crossings::threshold,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(node, resource, threshold)| {
            Ok((
                node.parse().map_err(super::corrupt)?,
                resource,
                u8::try_from(threshold).map_err(super::corrupt)?,
            ))
        })
        .collect()
}

/// Marks `threshold` of `resource` reached at `node`; whether it was not marked already.
pub(crate) fn mark(
    conn: &mut DbConnection,
    node: NodeId,
    resource: &str,
    threshold: u8,
) -> QueryResult<bool> {
    let inserted = super::execute_ignoring_conflict!(
        conn,
        diesel::insert_into(quota_crossings::table)
            .values((
                quota_crossings::node_id.eq(node.to_string()),
                quota_crossings::resource.eq(resource),
                quota_crossings::threshold.eq(i32::from(threshold)),
                quota_crossings::crossed_at.eq(super::now()),
            ))
            .on_conflict_do_nothing()
    )?;
    Ok(inserted > 0)
}

/// Re-arms `threshold` of `resource` at `node`: the use fell back below it.
pub(crate) fn unmark(
    conn: &mut DbConnection,
    node: NodeId,
    resource: &str,
    threshold: u8,
) -> QueryResult<()> {
    diesel::delete(quota_crossings::table.find((node.to_string(), resource, i32::from(threshold))))
        .execute(conn)?;
    Ok(())
}
