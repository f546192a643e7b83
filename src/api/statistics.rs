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
use serde::Serialize;
use utoipa::ToSchema;

use super::common::{self, ListQuery, Page};
use super::spreadsheet::{self, safe_cell, slug};
use super::usage::UsageReport;
use crate::auth::Principal;
use crate::domain::ids::NodeId;
use crate::domain::tree::NodeStatus;
use crate::error::{ApiError, Guarded, Listed};
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
}

/// Up to `limit` customers of `root`'s subtree after the cursor `after`, with their figures now
/// (limits of `day`, active users of the 30 days up to it): seven queries, however many customers
/// (the customers, their parents' names, active users, the catalogue, limits, allocations, usage).
fn batch(
    conn: &mut DbConnection,
    root: &Node,
    day: NaiveDate,
    after: Option<&str>,
    limit: i64,
) -> diesel::QueryResult<Vec<CustomerStatistics>> {
    let customers = nodes::customers_below(conn, &root.path, after, limit)?;
    let ids: Vec<NodeId> = customers.iter().map(|c| c.id).collect();
    let parent_ids: Vec<NodeId> = customers.iter().filter_map(|c| c.parent_id).collect();
    let parents = nodes::names(conn, &parent_ids)?;
    let active = mailboxes::active_counts(conn, &ids, crate::domain::active::window(day))?;
    let reports = super::usage::reports(conn, customers.clone(), day)?;
    Ok(customers
        .into_iter()
        .zip(reports)
        .map(|(customer, report)| row(customer, report, &parents, &active))
        .collect())
}

fn row(
    customer: Node,
    report: UsageReport,
    parents: &HashMap<String, String>,
    active: &HashMap<String, i64>,
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
        active_users: active.get(&customer.id.to_string()).copied().unwrap_or(0),
        resources: report
            .resources
            .into_iter()
            .map(|r| Figure {
                resource: r.resource,
                used: r.used,
                limit: r.limit,
            })
            .collect(),
        id: customer.id,
        name: customer.name,
        description: customer.description,
        status: customer.status,
        contact_email: customer.contact_email,
        contact_phone: customer.contact_phone,
    }
}

/// The customers of `{id}`'s subtree (`{id}` itself if it is a customer) in id order, each with
/// its figures now. The same rows as `statistics.csv`, a page at a time.
#[utoipa::path(
    tag = "usage",
    security(("bearer" = [])),
    params(("id" = NodeId, Path), ListQuery),
    responses(
        (status = 200, description = "A page of customers with their figures", body = Page<CustomerStatistics>),
        Listed,
    )
)]
#[get("/v1/nodes/{id}/statistics")]
pub(crate) async fn get_statistics(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<CustomerStatistics>>, ApiError> {
    let page = query.page()?;
    let day = principal.today;
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        page,
        move |conn, root, after, limit| batch(conn, root, day, after, limit),
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
/// spreadsheet does not run it as a formula.
#[utoipa::path(
    tag = "usage",
    security(("bearer" = [])),
    params(("id" = NodeId, Path)),
    responses(
        (status = 200, description = "The CSV, as an attachment named `statistics-<node name>-<date>.csv`",
            content_type = "text/csv", body = String,
            headers(("Content-Disposition" = String))),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/statistics.csv")]
pub(crate) async fn get_statistics_csv(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let day = principal.today;
    let (root, first) = store::run(&state.pool, move |conn| {
        let root = principal.may_read(nodes::find(conn, id)?)?.into_inner();
        let first = batch(conn, &root, day, None, BATCH)?;
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
    let file = format!("statistics-{}-{day}.csv", slug(&root.name));
    let body = csv_stream(state.into_inner(), (root, day), columns, first);
    Ok(HttpResponse::Ok()
        .content_type(spreadsheet::CSV)
        .insert_header(spreadsheet::attachment(&file))
        .streaming(body))
}

/// The CSV: the header and the first batch, then each further batch as it is read. A batch that
/// fails after the answer began ends the body early (the client sees a truncated download).
fn csv_stream(
    state: std::sync::Arc<AppState>,
    (root, day): (Node, NaiveDate),
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
                batch(conn, &root, day, Some(&after), BATCH).map_err(ApiError::from)
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
