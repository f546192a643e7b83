//! Usage reports: per resource, a node's limit, what it allocated, what its subtree uses, what is
//! free, and whether it is over its limit.

use actix_web::{get, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::domain::ids::NodeId;
use crate::domain::tree::NodeKind;
use crate::error::{ApiError, FieldError, Guarded, Problem};
use crate::service;
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
    /// How many times its limit the node may grant its children (1.0: no overselling).
    #[schema(example = 1.0)]
    pub ratio: f64,
    /// What the node's subtree uses now.
    pub used: i64,
    /// For a customer `limit − used`, for a reseller or the owner what it may still grant,
    /// ⌊ratio × limit⌋ − allocated; never below 0.
    pub free: i64,
    /// The seats the subtree can really still take: the least `limit − used` over the node and
    /// every ancestor, never below 0. Below `free` when an ancestor sold more than it holds and
    /// its real seats are running out.
    pub headroom: i64,
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
    #[param(value_type = Option<crate::api::schemas::Day>)]
    pub at: Option<NaiveDate>,
}

/// Limit, allocated, used and free per resource for `{id}` (sums over the subtree for resellers
/// and the owner).
#[utoipa::path(
    tag = "usage",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), UsageQuery),
    responses(
        (status = 200, description = "The report", body = UsageReport),
        Guarded,
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
    let at = query.at.unwrap_or(principal.today);
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

/// The most days one history request answers.
pub(crate) const MAX_HISTORY_DAYS: i64 = 366;

/// One resource of a node on one day of its history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResourceDayView {
    #[schema(example = "users")]
    pub resource: String,
    /// The node's limit that day (for today: now).
    pub limit: i64,
    /// The most the node's subtree used at any moment of the day.
    pub peak: i64,
    /// What the subtree used at the end of the day (for today: now).
    pub used: i64,
}

/// A node's figures on one day.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HistoryDayView {
    pub day: NaiveDate,
    /// Mailboxes of the subtree that an outbound check saw in the 30 days up to and including the
    /// day (for today: up to now).
    pub active_users: i64,
    /// Each resource the node counted that day, in name order.
    pub resources: Vec<ResourceDayView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UsageHistory {
    pub node_id: NodeId,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The days from `from` to `to` that allot counted for the node, oldest first. A day before
    /// the node's first counted day (before allot ran, or before it used anything or had a limit
    /// when a day began) is absent, never zero; a day without a change carries the day before's
    /// figures.
    pub days: Vec<HistoryDayView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The first day (`YYYY-MM-DD`), not after `to`; default 29 days before `to`.
    #[param(value_type = Option<crate::api::schemas::Day>)]
    pub from: Option<NaiveDate>,
    /// The last day (`YYYY-MM-DD`); default today (UTC). At most 366 days from `from`.
    #[param(value_type = Option<crate::api::schemas::Day>)]
    pub to: Option<NaiveDate>,
    /// Only this resource; default every one.
    #[param(value_type = Option<crate::api::schemas::ResourceKey>)]
    pub resource: Option<String>,
}

/// Per day from `from` to `to`: `{id}`'s limit, peak and end-of-day usage of each resource, and
/// its active users (sums over the subtree for resellers and the owner).
#[utoipa::path(
    tag = "usage",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), HistoryQuery),
    responses(
        (status = 200, description = "The history", body = UsageHistory),
        (status = 400, description = "More than 366 days asked for (`range-too-long`)", body = Problem, content_type = "application/problem+json"),
        Guarded,
        (status = 422, description = "`from` is after `to` (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/usage/history")]
pub(crate) async fn get_usage_history(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<UsageHistory>, ApiError> {
    let id = id.into_inner();
    let (from, to) = history_range(&query, principal.today)?;
    let wanted = query.into_inner().resource;
    let today = principal.today;
    let history = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?;
        if let Some(wanted) = &wanted
            && !modules::resources(conn)?.iter().any(|r| r.key() == *wanted)
        {
            return Err(ApiError::InvalidQuery(vec![FieldError::new(
                "resource",
                format!("{wanted} is not a resource of the catalogue"),
            )]));
        }
        service::history::day_begun(conn, today)?;
        let days = service::history::of_node(conn, &node, from, to, wanted.as_deref(), today)?;
        Ok(UsageHistory {
            node_id: node.id,
            from,
            to,
            days: days.into_iter().map(day_view).collect(),
        })
    })
    .await?;
    Ok(web::Json(history))
}

/// The days a history query asks for: a refusal when `from` is after `to` or they span more
/// than [`MAX_HISTORY_DAYS`].
fn history_range(
    query: &HistoryQuery,
    today: NaiveDate,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let check = |field: &str, day| {
        super::common::check_date(day)
            .map_err(|m| ApiError::InvalidQuery(vec![FieldError::new(field, m)]))
    };
    let to = check("to", query.to.unwrap_or(today))?;
    let from = query
        .from
        .unwrap_or_else(|| to.checked_sub_days(chrono::Days::new(29)).unwrap_or(to));
    let from = check("from", from)?;
    if from > to {
        return Err(ApiError::validation("from", "must not be after `to`"));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_HISTORY_DAYS {
        return Err(ApiError::RangeTooLong(vec![FieldError::new(
            "from",
            format!("asks for {days} days; at most {MAX_HISTORY_DAYS} per request"),
        )]));
    }
    Ok((from, to))
}

fn day_view(day: service::history::Day) -> HistoryDayView {
    HistoryDayView {
        day: day.day,
        active_users: day.active_users,
        resources: day
            .resources
            .into_iter()
            .map(|r| ResourceDayView {
                resource: r.resource,
                limit: r.limit,
                peak: r.peak,
                used: r.used,
            })
            .collect(),
    }
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
    // Each node's whole lineage: the headroom is the least room along it.
    let mut ids: Vec<NodeId> = nodes.iter().flat_map(Node::lineage).collect();
    ids.sort_unstable();
    ids.dedup();
    let totals = allocations::totals_on(conn, &ids, at)?;
    let used = usage::totals_of(conn, &ids)?;
    let ratios = store::oversell::of_nodes(conn, &ids)?;
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
                    let figures = |id: NodeId| {
                        let at_node = (id.to_string(), key.clone());
                        let (limit, allocated) = totals.get(&at_node).copied().unwrap_or_default();
                        let used = used.get(&at_node).copied().unwrap_or_default();
                        let ratio = ratios.get(&at_node).copied().unwrap_or_default();
                        (limit, allocated, used, ratio)
                    };
                    let (limit, allocated, used, ratio) = figures(node.id);
                    let free = if node.kind == NodeKind::Customer {
                        limit - used
                    } else {
                        ratio.of(limit) - allocated
                    };
                    let headroom = node
                        .lineage()
                        .into_iter()
                        .map(|id| {
                            let (limit, _, used, _) = figures(id);
                            limit - used
                        })
                        .min()
                        .unwrap_or(0);
                    ResourceUsage {
                        resource: key.clone(),
                        limit,
                        allocated,
                        ratio: ratio.as_decimal(),
                        used,
                        free: free.max(0),
                        headroom: headroom.max(0),
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
    cfg.service(get_usage).service(get_usage_history);
}
