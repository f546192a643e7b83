//! Allocations: grants of a resource to a node from its parent, over a span of days.

use actix_web::http::header;
use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, patch, post, put, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::utc;
use super::common::{self, Fields, IfMatch, Page, check_date, etag, nullable};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use crate::api::schemas::{Day, Description, ResourceKey};
use crate::auth::Principal;
use crate::auth::guard::Reach;
use crate::domain::ids::{AllocationId, NodeId};
use crate::domain::quota::{self, Grant, Span};
use crate::domain::tree;
use crate::error::{ApiError, Guarded, Problem};
use crate::service::{self, Ctx};
use crate::startup::AppState;
use crate::store::allocations::{Allocation, AllocationFilter};
use crate::store::{self, allocations, nodes};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AllocationView {
    pub id: AllocationId,
    /// The node that receives the units.
    pub node_id: NodeId,
    /// The node that granted them (its parent when granted); absent for the owner's licence.
    pub grantor_id: Option<NodeId>,
    /// `users`, `domains` or `module:<code>`.
    #[schema(example = "users")]
    pub resource: String,
    pub amount: i64,
    /// First day it counts.
    pub starts_on: NaiveDate,
    /// First day it no longer counts; absent when open-ended.
    pub ends_on: Option<NaiveDate>,
    /// An inactive allocation does not count at all.
    pub active: bool,
    pub description: Option<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Allocation> for AllocationView {
    fn from(a: Allocation) -> Self {
        Self {
            id: a.id,
            node_id: a.node_id,
            grantor_id: a.grantor_id,
            resource: a.resource,
            amount: a.amount,
            starts_on: a.starts_on,
            ends_on: a.ends_on,
            active: a.active,
            description: a.description,
            version: a.version,
            created_at: utc(a.created_at),
            updated_at: utc(a.updated_at),
        }
    }
}

/// 200 with the allocation and its `ETag`.
fn respond(allocation: Allocation) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(allocation.version)))
        .json(AllocationView::from(allocation))
}

/// Records what is wrong with a span under the field at fault: a day out of range under its own
/// name, an end not after the start under `ends_on`.
fn check_span(fields: &mut Fields, starts_on: NaiveDate, ends_on: Option<NaiveDate>) {
    for (field, message) in quota::span_faults(starts_on, ends_on) {
        fields.push(field, message);
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAllocation {
    #[schema(value_type = ResourceKey)]
    pub resource: String,
    /// Units granted, 0 to 1,000,000,000,000.
    #[schema(example = 500, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// First day it counts; default today (UTC).
    #[schema(value_type = Option<Day>)]
    pub starts_on: Option<NaiveDate>,
    /// First day it no longer counts, after `starts_on`; absent for open-ended.
    #[schema(value_type = Option<Day>)]
    pub ends_on: Option<NaiveDate>,
    /// Default true.
    pub active: Option<bool>,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
}

/// Grants units of a resource to `{id}` from its parent. Only an admin strictly above `{id}` may:
/// no node raises its own limits. Refused with `quota-exceeded` if, on any day of its span, the
/// parent would hand out more than it holds.
///
/// Rules the body's schema cannot state: `ends_on` must be after `starts_on` (or after today when
/// `starts_on` is absent), and `resource` must be `users`, `domains` or a module of the catalogue
/// that is not retired.
#[utoipa::path(
    tag = "allocations",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The node receiving the units"), IdempotencyHeader),
    request_body = CreateAllocation,
    responses(
        (status = 201, description = "Granted; `Location` names it", body = AllocationView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The parent lacks room on some day of the span (`quota-exceeded`), a retired module (`conflict`), or the caller stands inside the node's suspension (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, `ends_on` not after `starts_on`, or a resource the catalogue does not know (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/allocations")]
pub(crate) async fn create_allocation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    key: IdempotencyKey,
    body: Json<CreateAllocation>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let body = body.0;
    let starts_on = body.starts_on.unwrap_or(principal.today);
    let mut fields = Fields::default();
    let amount = fields.check("amount", quota::check_amount(body.amount));
    check_span(&mut fields, starts_on, body.ends_on);
    let description = body
        .description
        .map(|d| fields.check("description", tree::parse_description(&d)));
    fields.finish()?;
    let grant = service::allocations::NewGrant {
        resource: body.resource,
        grant: Grant {
            amount: amount.unwrap_or_default(),
            span: Span {
                start: starts_on,
                end: body.ends_on,
            },
        },
        active: body.active.unwrap_or(true),
        description: description.flatten(),
    };
    let id = id.into_inner();
    let answer = common::write(&state.pool, move |conn| {
        let found = nodes::find_locked(conn, id, &[])?;
        idempotency::once(conn, &principal, &key, &raw, |conn| {
            let node = principal.may_administer(found, Reach::Below)?;
            let allocation =
                service::allocations::create(conn, &node, &Ctx::of(&principal), grant)?;
            Answer::created(
                format!("/v1/allocations/{}", allocation.id),
                etag(allocation.version),
                &AllocationView::from(allocation),
            )
        })
    })
    .await?;
    Ok(answer.into_response())
}

super::common::list_query! {
    pub struct AllocationsQuery {
        /// Only this resource.
        #[param(value_type = Option<ResourceKey>)]
        pub resource: Option<String>,
        /// Only active (or only inactive) allocations.
        pub active: Option<bool>,
        /// Only allocations whose span covers this day.
        #[param(value_type = Option<Day>)]
        pub valid_on: Option<NaiveDate>,
    }
}

/// The allocations to `{id}`, oldest first, ended and inactive ones included unless filtered.
#[utoipa::path(
    tag = "allocations",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), AllocationsQuery),
    responses(
        (status = 200, description = "A page of allocations", body = super::common::pages::AllocationPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/allocations")]
pub(crate) async fn list_allocations(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<AllocationsQuery>,
) -> Result<web::Json<Page<AllocationView>>, ApiError> {
    let query = query.into_inner();
    let page = query.page()?;
    if let Some(day) = query.valid_on {
        check_date(day).map_err(|m| {
            ApiError::InvalidQuery(vec![crate::error::FieldError::new("valid_on", m)])
        })?;
    }
    let filter = AllocationFilter {
        resource: query.resource,
        active: query.active,
        valid_on: query.valid_on,
    };
    super::common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        page,
        move |conn, node, after, limit| {
            allocations::list_for_node(conn, node.id, &filter, after, limit)
        },
        |a| a.id.to_string(),
        AllocationView::from,
    )
    .await
}

/// One allocation, to a node of the caller's subtree.
#[utoipa::path(
    tag = "allocations",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = AllocationId, Path)),
    responses(
        (status = 200, description = "The allocation", body = AllocationView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/allocations/{id}")]
pub(crate) async fn get_allocation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AllocationId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let allocation = store::run(&state.pool, move |conn| {
        let allocation = allocations::find(conn, id)?.ok_or(ApiError::NotFound)?;
        principal.may_read(nodes::find(conn, allocation.node_id)?)?;
        Ok::<_, ApiError>(allocation)
    })
    .await?;
    Ok(respond(allocation))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAllocation {
    /// Units granted, 0 to 1,000,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub amount: Option<i64>,
    #[schema(value_type = Option<Day>)]
    pub starts_on: Option<NaiveDate>,
    /// After `starts_on`; `null` makes it open-ended.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Day>)]
    pub ends_on: Option<Option<NaiveDate>>,
    pub active: Option<bool>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UpdateAllocationQuery {
    /// Allow lowering a node's limit below what it (with its subtree) uses now; a customer then
    /// reports `over_limit`, and new usage there, or anywhere below a reseller, is refused.
    pub allow_over_limit: Option<bool>,
}

/// Changes an allocation's amount, days, active flag or description; ending one is such a change.
/// Refused with `quota-exceeded` if the parent would hand out more than it holds, or the node's
/// children would hold more than it does, on any day the change touches.
///
/// A rule the body's schema cannot state: the allocation's `ends_on` must stay after its
/// `starts_on`, each as changed or as it was.
#[utoipa::path(
    tag = "allocations",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = AllocationId, Path), UpdateAllocationQuery, IfMatch),
    request_body = UpdateAllocation,
    responses(
        (status = 200, description = "The changed allocation", body = AllocationView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "It would break the tree's invariant (`quota-exceeded`), it was granted by a former parent (`conflict`), or the caller stands inside the node's suspension (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or `ends_on` not after `starts_on` (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/allocations/{id}")]
pub(crate) async fn update_allocation(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AllocationId>,
    query: web::Query<UpdateAllocationQuery>,
    if_match: IfMatch,
    body: Json<UpdateAllocation>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    if let Some(amount) = body.amount {
        fields.check("amount", quota::check_amount(amount));
    }
    let description = body
        .description
        .map(|d| d.and_then(|d| fields.check("description", tree::parse_description(&d))));
    fields.finish()?;
    let change = service::allocations::Change {
        amount: body.amount,
        starts_on: body.starts_on,
        ends_on: body.ends_on,
        active: body.active,
        description,
        allow_over_limit: query.allow_over_limit.unwrap_or(false),
    };
    let id = id.into_inner();
    let allocation = common::write(&state.pool, move |conn| {
        let (found, allocation) = service::allocations::find_for_change(conn, id)?;
        let node = principal.may_administer(found, Reach::Below)?;
        if_match.check(allocation.version)?;
        service::allocations::update(conn, &node, &Ctx::of(&principal), allocation, change)
    })
    .await?;
    Ok(respond(allocation))
}

/// A node's oversell ratios (issue 16).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OversellView {
    pub node_id: NodeId,
    /// Per resource, how many times its own limit the node may grant its children in total on any
    /// day (⌊ratio × limit⌋). Resources not listed have 1.0: no overselling. However much it
    /// grants, the seats taken within its subtree never exceed its own limit.
    #[schema(example = json!({"users": 2.5}))]
    pub ratios: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetOversell {
    /// The node's whole set of ratios: per resource (`users`, `domains`, `module:<code>`) a
    /// number from 1 to 100 with at most three decimals. A resource not listed goes back to 1.0.
    #[schema(example = json!({"users": 2.5}))]
    pub ratios: BTreeMap<String, f64>,
}

/// A node's ratios as answered: their ETag and their view.
fn oversell_answer(node_id: NodeId, set: &service::oversell::Ratios) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(set.version)))
        .json(OversellView {
            node_id,
            ratios: service::oversell::view(&set.ratios),
        })
}

/// The node's oversell ratios: how many times its own limit it may grant its children, per
/// resource. Readable wherever the node is.
#[utoipa::path(
    tag = "allocations",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    responses(
        (status = 200, description = "The ratios other than 1.0", body = OversellView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/oversell")]
pub(crate) async fn get_oversell(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (node, set) = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?;
        Ok::<_, ApiError>((node.id, service::oversell::of(conn, node.id)?))
    })
    .await?;
    Ok(oversell_answer(node, &set))
}

/// Sets the node's oversell ratios, with its allocations: as with them, only an admin strictly
/// above `{id}` may, so no node raises its own. The whole set is replaced (a resource not listed
/// goes back to 1.0) and the change audited as `node.oversell.update`; with `If-Match`, only if
/// the ratios are still the version read (their `ETag`). Refused with
/// `quota-exceeded` when the node has granted its children more, on some day, than the new ratio
/// allows.
///
/// Rules the body's schema cannot state: each key must be `users`, `domains` or a module of the
/// catalogue, each ratio has at most three decimals, and a customer (which grants nothing) keeps
/// 1.0.
#[utoipa::path(
    tag = "allocations",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), IfMatch),
    request_body = SetOversell,
    responses(
        (status = 200, description = "The ratios now set", body = OversellView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The node granted more than the new ratio allows (`quota-exceeded`), or the caller stands inside the node's suspension (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A ratio out of range or with more than three decimals, a resource the catalogue does not know, or a ratio for a customer (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/nodes/{id}/oversell")]
pub(crate) async fn set_oversell(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    if_match: IfMatch,
    body: Json<SetOversell>,
) -> Result<HttpResponse, ApiError> {
    let mut fields = Fields::default();
    let mut ratios = BTreeMap::new();
    for (resource, ratio) in body.0.ratios {
        let field = format!("ratios.{resource}");
        if let Some(ratio) = fields.check(&field, quota::Ratio::from_decimal(ratio)) {
            ratios.insert(resource, ratio);
        }
    }
    fields.finish()?;
    let id = id.into_inner();
    let (node, set) = common::write(&state.pool, move |conn| {
        // The node and its parent locked: no grant from or to it is decided meanwhile.
        let found = nodes::find_locked(conn, id, &[])?;
        let node = principal.may_administer(found, Reach::Below)?;
        if_match.check(store::oversell::version_of(conn, node.id)?)?;
        let set = service::oversell::replace(conn, &node, &Ctx::of(&principal), ratios)?;
        Ok::<_, ApiError>((node.id, set))
    })
    .await?;
    Ok(oversell_answer(node, &set))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(create_allocation)
        .service(list_allocations)
        .service(get_allocation)
        .service(update_allocation)
        .service(get_oversell)
        .service(set_oversell);
}
