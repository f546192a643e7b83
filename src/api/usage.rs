//! Usage reports: per resource, a node's limit, what it allocated, what its subtree uses, what is
//! free, and whether it is over its limit.

use actix_web::{get, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::today;
use crate::auth::Principal;
use crate::domain::ids::NodeId;
use crate::domain::tree::NodeKind;
use crate::error::{ApiError, Listed};
use crate::startup::AppState;
use crate::store::nodes::Node;
use crate::store::{self, DbConnection, allocations, modules, nodes, usage};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResourceUsage {
    #[schema(example = "users")]
    pub resource: String,
    /// The node's limit on the day: the sum of its grants covering it.
    pub limit: i64,
    /// What the node granted to its children, covering the day.
    pub allocated: i64,
    /// What the node's subtree uses now.
    pub used: i64,
    /// For a customer `limit − used`, for a reseller or the owner `limit − allocated`; never below 0.
    pub free: i64,
    /// The subtree uses more than the limit (an allocation ended or was lowered below usage): new
    /// usage is refused until it is back within.
    pub over_limit: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageReport {
    pub node_id: NodeId,
    /// The day limits and allocations are counted on.
    pub at: NaiveDate,
    /// Every resource of the catalogue: `users`, `domains`, then each `module:<code>`.
    pub resources: Vec<ResourceUsage>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// The day to count limits and allocations on (`YYYY-MM-DD`); default today (UTC).
    pub at: Option<NaiveDate>,
}

/// Limit, allocated, used and free per resource for `{id}` (sums over the subtree for resellers
/// and the owner).
#[utoipa::path(
    tag = "usage",
    security(("bearer" = [])),
    params(("id" = NodeId, Path), UsageQuery),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        Listed,
    )
)]
#[get("/v1/nodes/{id}/usage")]
pub(crate) async fn get_usage(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<UsageQuery>,
) -> Result<web::Json<UsageReport>, ApiError> {
    let id = id.into_inner();
    let at = query.at.unwrap_or_else(today);
    super::common::check_date(at)
        .map_err(|m| ApiError::InvalidQuery(vec![crate::error::FieldError::new("at", m)]))?;
    let report = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?.into_inner();
        let report = reports(conn, vec![node], at)?.pop();
        Ok::<_, ApiError>(report.expect("one report per node"))
    })
    .await?;
    Ok(web::Json(report))
}

/// The usage report of each of `nodes` on `at`, in their order, read for all of them at once: the
/// catalogue, then two grouped queries for limits and allocations and one for usage, whatever
/// the number of nodes (what `GET /v1/nodes/{id}/usage` answers for one, and the children list
/// with `include=usage` for a page).
pub(crate) fn reports(
    conn: &mut DbConnection,
    nodes: Vec<Node>,
    at: NaiveDate,
) -> diesel::QueryResult<Vec<UsageReport>> {
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    let totals = allocations::totals_on(conn, &ids, at)?;
    let used = usage::totals_of(conn, &ids)?;
    let resources: Vec<String> = modules::resources(conn)?
        .into_iter()
        .map(|resource| resource.key())
        .collect();
    Ok(nodes
        .into_iter()
        .map(|node| {
            let resources = resources
                .iter()
                .map(|key| {
                    let at_node = (node.id.to_string(), key.clone());
                    let (limit, allocated) = totals.get(&at_node).copied().unwrap_or_default();
                    let used = used.get(&at_node).copied().unwrap_or_default();
                    let taken = if node.kind == NodeKind::Customer {
                        used
                    } else {
                        allocated
                    };
                    ResourceUsage {
                        resource: key.clone(),
                        limit,
                        allocated,
                        used,
                        free: (limit - taken).max(0),
                        over_limit: used > limit,
                    }
                })
                .collect();
            UsageReport {
                node_id: node.id,
                at,
                resources,
            }
        })
        .collect())
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(get_usage);
}
