//! Statistics: one row per customer of a subtree, as of now, with its figures (what a billing
//! system or a reseller portal's customer list reads), as JSON pages or as one CSV download.
//!
//! Two paths, one media type each, rather than one path negotiating on `Accept`: each operation
//! then has exactly one response schema in the OpenAPI document (generated clients get typed
//! JSON), a CSV link works from a browser or `curl -O`, which cannot set `Accept`, and no cache
//! needs `Vary`. The JSON form is a cursor-paginated list like every other; the CSV streams the
//! whole subtree in batches of [`BATCH`] customers, each batch read in a fixed number of queries.

use std::collections::HashMap;

use actix_web::{HttpResponse, get, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{self, Page};
use super::spreadsheet::{self, safe_cell, slug};
use crate::auth::Principal;
use crate::domain::ids::NodeId;
use crate::domain::tree::NodeStatus;
use crate::error::{ApiError, FieldError, Guarded, Problem};
use crate::startup::AppState;
use crate::store::nodes::Node;
use crate::store::{self, DbConnection, mailboxes, nodes};

/// Customers per batch of the CSV stream.
const BATCH: i64 = 500;

/// A node above a customer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ParentRef {
    pub id: NodeId,
    pub name: String,
}

/// One resource's figures for a customer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Figure {
    #[schema(example = "users")]
    pub resource: String,
    /// Units in use now.
    pub used: i64,
    /// The customer's limit today: the sum of its grants covering today.
    pub limit: i64,
}

/// A customer and its figures now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CustomerStatistics {
    /// The customer's (tenant's) id.
    pub id: NodeId,
    pub name: String,
    pub description: Option<String>,
    pub status: NodeStatus,
    /// The reseller (or the owner) the customer sits under.
    pub parent: ParentRef,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
    /// Mailboxes (role addresses not counted, whatever their status now) that a check saw sending
    /// in the last 30 days.
    pub active_users: i64,
    /// Every resource of the catalogue, in its order (`users`, `domains`, then each
    /// `module:<code>`), as `GET /v1/nodes/{id}/usage` lists them.
    pub resources: Vec<Figure>,
    /// The plan the customer is on now (whatever day the figures are of), and its version;
    /// absent when it is on none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub plan: Option<super::plans::PlanRef>,
}

/// The day the statistics are as of: today (figures now), or a day before it (figures from the
/// usage history).
#[derive(Debug, Clone, Copy)]
enum AsOf {
    Today(NaiveDate),
    Past { day: NaiveDate, today: NaiveDate },
}

impl AsOf {
    /// The day `?at=` asks for (today without it): a refusal for a day after today, whose figures
    /// nobody knows yet.
    fn parse(at: Option<NaiveDate>, today: NaiveDate) -> Result<Self, ApiError> {
        let Some(day) = at else {
            return Ok(Self::Today(today));
        };
        let day = common::check_date(day)
            .map_err(|m| ApiError::InvalidQuery(vec![FieldError::new("at", m)]))?;
        match day.cmp(&today) {
            std::cmp::Ordering::Greater => Err(ApiError::validation(
                "at",
                format!("is after today ({today}): a day to come has no statistics"),
            )),
            std::cmp::Ordering::Equal => Ok(Self::Today(today)),
            std::cmp::Ordering::Less => Ok(Self::Past { day, today }),
        }
    }

    fn day(self) -> NaiveDate {
        match self {
            Self::Today(day) | Self::Past { day, .. } => day,
        }
    }
}

/// Up to `limit` customers of `root`'s subtree after the cursor `after`, with their figures as of
/// `as_of`, in a fixed number of queries however many customers: for today eight (the customers,
/// their parents' names, their plans, active users, the catalogue, limits, allocations, usage);
/// for a past day six, and one to see that today is open (the customers the history counted that
/// day, their parents' names, their plans now, the catalogue, the day's rows, its active users).
fn batch(
    conn: &mut DbConnection,
    root: &Node,
    as_of: AsOf,
    after: Option<&str>,
    limit: i64,
) -> diesel::QueryResult<Vec<CustomerStatistics>> {
    let counted_on = matches!(as_of, AsOf::Past { .. }).then(|| as_of.day());
    let customers = nodes::customers_below(conn, &root.path, counted_on, after, limit)?;
    let ids: Vec<NodeId> = customers.iter().map(|c| c.id).collect();
    let parent_ids: Vec<NodeId> = customers.iter().filter_map(|c| c.parent_id).collect();
    let parents = nodes::names(conn, &parent_ids)?;
    let mut plans = super::plans::refs_of(conn, &ids)?;
    let figures: Vec<(i64, Vec<Figure>)> = match as_of {
        AsOf::Today(day) => {
            let active = mailboxes::active_counts(conn, &ids, crate::domain::active::window(day))?;
            super::usage::reports(conn, customers.clone(), day)?
                .into_iter()
                .map(|report| {
                    let figures = report.resources.into_iter().map(|r| Figure {
                        resource: r.resource,
                        used: r.used,
                        limit: r.limit,
                    });
                    let active = active.get(&report.node_id.to_string()).copied();
                    (active.unwrap_or(0), figures.collect())
                })
                .collect()
        }
        AsOf::Past { day, today } => past_figures(conn, &ids, day, today)?,
    };
    Ok(customers
        .into_iter()
        .zip(figures)
        .map(|(customer, (active, figures))| {
            let plan = plans.remove(&customer.id);
            CustomerStatistics {
                plan,
                ..row(customer, figures, &parents, active)
            }
        })
        .collect())
}

/// The active users and the figures of each of `ids` at the end of `day`, from the usage history,
/// every resource of the catalogue in its order (0 and 0 for one the customer had no row of).
fn past_figures(
    conn: &mut DbConnection,
    ids: &[NodeId],
    day: NaiveDate,
    today: NaiveDate,
) -> diesel::QueryResult<Vec<(i64, Vec<Figure>)>> {
    let catalogue = store::modules::resources(conn)?;
    let mut days = crate::service::history::of_nodes_on(conn, ids, day, today)?;
    Ok(ids
        .iter()
        .map(|id| {
            let counted = days.remove(&id.to_string());
            let figure = |resource: String| {
                let found = counted
                    .as_ref()
                    .and_then(|d| d.resources.iter().find(|r| r.resource == resource));
                let (used, limit) = found.map_or((0, 0), |r| (r.used, r.limit));
                Figure {
                    resource,
                    used,
                    limit,
                }
            };
            let figures = catalogue.iter().map(|r| figure(r.key())).collect();
            (counted.as_ref().map_or(0, |d| d.active_users), figures)
        })
        .collect())
}

fn row(
    customer: Node,
    resources: Vec<Figure>,
    parents: &HashMap<String, String>,
    active_users: i64,
) -> CustomerStatistics {
    // A customer always has a parent: the owner is never one.
    let parent_id = customer.parent_id.unwrap_or(customer.id);
    CustomerStatistics {
        parent: ParentRef {
            id: parent_id,
            name: parents
                .get(&parent_id.to_string())
                .cloned()
                .unwrap_or_default(),
        },
        active_users,
        resources,
        id: customer.id,
        name: customer.name,
        description: customer.description,
        status: customer.status,
        contact_email: customer.contact_email,
        contact_phone: customer.contact_phone,
        plan: None,
    }
}

super::common::list_query! {
    /// A page of statistics as of a day.
    pub struct StatisticsQuery {
        /// The day the figures are as of (`YYYY-MM-DD`, UTC), as for `statistics.csv`: default
        /// today (the figures now); a day before today is read from the usage history, without
        /// the customers it did not count that day; a day after today is refused.
        #[param(value_type = Option<crate::api::schemas::Day>)]
        pub at: Option<NaiveDate>,
    }
}

/// The day statistics are as of.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatisticsDay {
    /// The day the figures are as of (`YYYY-MM-DD`, UTC); default today, whose figures are those
    /// now. For a day before today, each customer's limits and end-of-day usage and its active
    /// users as the usage history counted them that day; a customer the history did not count
    /// that day (created later, or with neither a limit nor usage when it began) is absent, so a
    /// day before the history began answers no rows. Customers are those of the subtree now (not
    /// deleted). A day after today is refused (`validation-failed`).
    #[param(value_type = Option<crate::api::schemas::Day>)]
    pub at: Option<NaiveDate>,
}

/// The customers of `{id}`'s subtree (`{id}` itself if it is a customer) in id order, each with
/// its figures now or at the end of the day `at`. The same rows as `statistics.csv`, a page at a
/// time.
#[utoipa::path(
    tag = "usage",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), StatisticsQuery),
    responses(
        (status = 200, description = "A page of customers with their figures", body = super::common::pages::StatisticsPage),
        Guarded,
        (status = 422, description = "`at` is after today (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/statistics")]
pub(crate) async fn get_statistics(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<StatisticsQuery>,
) -> Result<web::Json<Page<CustomerStatistics>>, ApiError> {
    let page = query.page()?;
    let as_of = AsOf::parse(query.at, principal.today)?;
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        page,
        move |conn, root, after, limit| batch(conn, root, as_of, after, limit),
        |row| row.id.to_string(),
        |row| row,
    )
    .await
}

/// The customers of `{id}`'s subtree as one CSV download (RFC 4180, UTF-8, a header line): the
/// rows of `GET /v1/nodes/{id}/statistics`, streamed in batches. Columns: `tenant_id`, `name`,
/// `description`, `status`, `parent_id`, `parent_name`, `contact_email`, `contact_phone`,
/// `domains_used`, `domains_limit`, `users_used`, `users_limit`, `active_users`, then
/// `module:<code>_used` and `module:<code>_limit` for each module of the catalogue. A text cell
/// starting with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'`, so that a
/// spreadsheet does not run it as a formula. With `at`, the figures at the end of that day.
#[utoipa::path(
    tag = "usage",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), StatisticsDay),
    responses(
        (status = 200, description = "The CSV, as an attachment named `statistics-<node name>-<day>.csv` (the day `at`, or today)",
            content_type = "text/csv", body = String,
            headers(("Content-Disposition" = String))),
        Guarded,
        (status = 422, description = "`at` is after today (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/statistics.csv")]
pub(crate) async fn get_statistics_csv(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<StatisticsDay>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let as_of = AsOf::parse(query.at, principal.today)?;
    let (root, first) = store::run(&state.pool, move |conn| {
        let root = principal.may_read(nodes::find(conn, id)?)?.into_inner();
        let first = batch(conn, &root, as_of, None, BATCH)?;
        Ok::<_, ApiError>((root, first))
    })
    .await?;
    let columns = match first.first() {
        Some(row) => row.resources.iter().map(|f| f.resource.clone()).collect(),
        None => store::run(&state.pool, |conn| {
            store::modules::resources(conn).map_err(ApiError::from)
        })
        .await?
        .into_iter()
        .map(|r| r.key())
        .collect(),
    };
    let file = format!("statistics-{}-{}.csv", slug(&root.name), as_of.day());
    let body = csv_stream(state.into_inner(), (root, as_of), columns, first);
    Ok(HttpResponse::Ok()
        .content_type(spreadsheet::CSV)
        .insert_header(spreadsheet::attachment(&file))
        .streaming(body))
}

/// The CSV: the header and the first batch, then each further batch as it is read. A batch that
/// fails after the answer began ends the body early (the client sees a truncated download).
fn csv_stream(
    state: std::sync::Arc<AppState>,
    (root, as_of): (Node, AsOf),
    columns: Vec<String>,
    first: Vec<CustomerStatistics>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, ApiError>> {
    let next = next_cursor(&first);
    let head = csv_chunk(&columns, Some(&header_line(&columns)), &first);
    let columns = std::sync::Arc::new(columns);
    let root = std::sync::Arc::new(root);
    let rest = futures_util::stream::unfold(next, move |after| {
        let (state, root, columns) = (state.clone(), root.clone(), columns.clone());
        async move {
            let after = after?;
            let read = store::run(&state.pool, move |conn| {
                batch(conn, &root, as_of, Some(&after), BATCH).map_err(ApiError::from)
            })
            .await;
            Some(match read {
                Ok(rows) => (csv_chunk(&columns, None, &rows), next_cursor(&rows)),
                Err(err) => (Err(err), None),
            })
        }
    });
    futures_util::StreamExt::chain(futures_util::stream::once(async move { head }), rest)
}

/// Where the next batch starts: after the last row of a full batch; `None` after a short one.
fn next_cursor(rows: &[CustomerStatistics]) -> Option<String> {
    (rows.len() as i64 == BATCH)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten()
}

/// The header line's cells.
fn header_line(columns: &[String]) -> Vec<String> {
    let mut cells: Vec<String> = [
        "tenant_id",
        "name",
        "description",
        "status",
        "parent_id",
        "parent_name",
        "contact_email",
        "contact_phone",
        "domains_used",
        "domains_limit",
        "users_used",
        "users_limit",
        "active_users",
    ]
    .map(str::to_owned)
    .to_vec();
    for resource in columns.iter().filter(|r| r.starts_with("module:")) {
        cells.push(format!("{resource}_used"));
        cells.push(format!("{resource}_limit"));
    }
    cells
}

/// `rows` as CSV lines (after `header`, if given), their figures in the order of `columns`.
fn csv_chunk(
    columns: &[String],
    header: Option<&[String]>,
    rows: &[CustomerStatistics],
) -> Result<web::Bytes, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if let Some(header) = header {
        writer.write_record(header).map_err(ApiError::internal)?;
    }
    for row in rows {
        writer
            .write_record(record(columns, row))
            .map_err(ApiError::internal)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| ApiError::internal(e.into_error()))?;
    Ok(web::Bytes::from(bytes))
}

/// One customer's cells: text guarded against formulas, figures as plain numbers.
fn record(columns: &[String], row: &CustomerStatistics) -> Vec<String> {
    let figures: HashMap<&str, &Figure> = row
        .resources
        .iter()
        .map(|f| (f.resource.as_str(), f))
        .collect();
    let figure = |resource: &str| figures.get(resource).map_or((0, 0), |f| (f.used, f.limit));
    let text = |value: &str| safe_cell(value).into_owned();
    let optional = |value: &Option<String>| value.as_deref().map(text).unwrap_or_default();
    let (domains_used, domains_limit) = figure("domains");
    let (users_used, users_limit) = figure("users");
    let mut cells = vec![
        row.id.to_string(),
        text(&row.name),
        optional(&row.description),
        row.status.as_str().to_owned(),
        row.parent.id.to_string(),
        text(&row.parent.name),
        optional(&row.contact_email),
        optional(&row.contact_phone),
        domains_used.to_string(),
        domains_limit.to_string(),
        users_used.to_string(),
        users_limit.to_string(),
        row.active_users.to_string(),
    ];
    for resource in columns.iter().filter(|r| r.starts_with("module:")) {
        let (used, limit) = figure(resource);
        cells.push(used.to_string());
        cells.push(limit.to_string());
    }
    cells
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(get_statistics_csv).service(get_statistics);
}
