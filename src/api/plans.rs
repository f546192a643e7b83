//! Plans (issue 16): named bundles a node sells to the customers of its subtree, their versions,
//! and the plan a customer is on.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::allocations::AllocationView;
use super::common::{self, Fields, IfMatch, Page, PageRequest, etag, nullable, utc};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use crate::api::schemas::{Day, Description, ModuleCode, NodeName, PlanCode, ResourceKey};
use crate::auth::Principal;
use crate::auth::guard::Reach;
use crate::domain::audit::Action;
use crate::domain::ids::{NodeId, PlanId};
use crate::domain::mail::InboundRecipients;
use crate::domain::plans::{self, Content, PlanSettings, Shortfall};
use crate::domain::tree;
use crate::error::{ApiError, Guarded, Problem};
use crate::service::plans::{Customer, PlanChange};
use crate::service::{self, Ctx};
use crate::startup::AppState;
use crate::store::plans::{NewPlan, Plan, PlanVersion};
use crate::store::{self, DbConnection, nodes};

/// The customer settings a plan sets; a setting absent is left as the customer has it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// How many aliases one mailbox may have, 0–1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1000)]
    pub max_aliases_per_mailbox: Option<i32>,
    /// Whether an outbound check enrols senders it has not seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_enrol: Option<bool>,
    /// Which recipients on its domains inbound mail is accepted for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_recipients: Option<InboundRecipients>,
}

impl From<SettingsBody> for PlanSettings {
    fn from(s: SettingsBody) -> Self {
        Self {
            max_aliases_per_mailbox: s.max_aliases_per_mailbox,
            auto_enrol: s.auto_enrol,
            inbound_recipients: s.inbound_recipients,
        }
    }
}

impl From<PlanSettings> for SettingsBody {
    fn from(s: PlanSettings) -> Self {
        Self {
            max_aliases_per_mailbox: s.max_aliases_per_mailbox,
            auto_enrol: s.auto_enrol,
            inbound_recipients: s.inbound_recipients,
        }
    }
}

/// One version's content.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanVersionView {
    /// 1 for the plan as created, one more for each change of content.
    pub number: i64,
    /// Units each customer on it is granted, per resource.
    #[schema(example = json!({"users": 50, "domains": 5, "module:branding": 1}))]
    pub resources: BTreeMap<String, i64>,
    /// Per-customer modules assigned to each customer on it.
    #[schema(value_type = Vec<ModuleCode>)]
    pub modules: BTreeSet<String>,
    pub settings: SettingsBody,
    /// The grants end this many months after they start; absent: open-ended.
    pub term_months: Option<i32>,
    pub created_at: DateTime<Utc>,
}

impl From<PlanVersion> for PlanVersionView {
    fn from(v: PlanVersion) -> Self {
        Self {
            number: v.number,
            resources: v.content.resources,
            modules: v.content.modules,
            settings: v.content.settings.into(),
            term_months: v.content.term_months,
            created_at: utc(v.created_at),
        }
    }
}

/// A plan, with its current content.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanView {
    pub id: PlanId,
    /// The node that defined it: the plan is visible to its subtree.
    pub node_id: NodeId,
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    /// A retired plan is applied anew nowhere; its customers keep it.
    pub retired: bool,
    /// The current content (`current.number` is what a sync moves customers to).
    pub current: PlanVersionView,
    /// Increases with every change; the `ETag` is this number in quotes.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn view(plan: Plan, current: PlanVersion) -> PlanView {
    PlanView {
        id: plan.id,
        node_id: plan.node_id,
        code: plan.code,
        name: plan.name,
        description: plan.description,
        retired: plan.retired,
        current: current.into(),
        version: plan.version,
        created_at: utc(plan.created_at),
        updated_at: utc(plan.updated_at),
    }
}

/// 200 with the plan and its `ETag`.
fn respond(plan: Plan, current: PlanVersion) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(plan.version)))
        .json(view(plan, current))
}

/// A resource a customer uses beyond what a plan change leaves it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ShortfallView {
    #[schema(value_type = ResourceKey)]
    pub resource: String,
    /// What the customer uses now.
    pub used: i64,
    /// Its limit after the change.
    pub limit: i64,
    /// The day the change takes effect.
    pub at: NaiveDate,
}

/// The content fields of a body, checked: the content, or the faults under their fields.
fn content(
    fields: &mut Fields,
    resources: BTreeMap<String, i64>,
    modules: BTreeSet<String>,
    settings: SettingsBody,
    term_months: Option<i32>,
) -> Content {
    let content = Content {
        resources,
        modules,
        settings: settings.into(),
        term_months,
    };
    for (field, message) in content.faults() {
        fields.push(&field, message);
    }
    content
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    /// Unique among the plans of the node defining it.
    #[schema(value_type = PlanCode)]
    pub code: String,
    #[schema(value_type = NodeName)]
    pub name: String,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    /// Units granted to each customer on the plan, per resource (`users`, `domains`,
    /// `module:<code>`), each 0 to 1,000,000,000,000. A resource of 0 is granted nothing.
    #[schema(example = json!({"users": 50, "domains": 5, "module:branding": 1}))]
    pub resources: BTreeMap<String, i64>,
    /// Per-customer modules assigned to each customer on it; the plan must grant each one's
    /// `module:<code>`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ModuleCode>>)]
    pub modules: BTreeSet<String>,
    /// Customer settings it sets.
    #[serde(default)]
    pub settings: Option<SettingsBody>,
    /// Months (1–120) the grants last from the day the plan is applied; absent: open-ended.
    #[schema(minimum = 1, maximum = 120)]
    pub term_months: Option<i32>,
}

/// Defines a plan at `{id}` (the owner or a reseller) for the customers of its subtree: resellers
/// below may apply it to their own customers. Only the node's admins (or an admin above) may.
///
/// Rules the body's schema cannot state: every resource must be in the module catalogue, every
/// module a per-customer module of it whose `module:<code>` the plan grants.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The node defining the plan"), IdempotencyHeader),
    request_body = CreatePlan,
    responses(
        (status = 201, description = "Defined; `Location` names it", body = PlanView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The node has a plan with this code (`name-taken`), or lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, a resource or module the catalogue does not have, or a customer as the node (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/plans")]
pub(crate) async fn create_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    key: IdempotencyKey,
    body: Json<CreatePlan>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let body = body.0;
    let mut fields = Fields::default();
    let code = fields.check("code", plans::parse_code(&body.code));
    let name = fields.check("name", tree::parse_name(&body.name));
    let description = body
        .description
        .map(|d| fields.check("description", tree::parse_description(&d)));
    let content = content(
        &mut fields,
        body.resources,
        body.modules,
        body.settings.unwrap_or_default(),
        body.term_months,
    );
    fields.finish()?;
    let id = id.into_inner();
    let new = NewPlan {
        node_id: id,
        code: code.unwrap_or_default(),
        name: name.unwrap_or_default(),
        description: description.flatten(),
    };
    let answer = common::write(&state.pool, move |conn| {
        nodes::lock(conn, &[id])?;
        idempotency::once(conn, &principal, &key, &raw, |conn| {
            let node = principal.may_administer(nodes::find(conn, id)?, Reach::SelfOrBelow)?;
            let (plan, version) =
                service::plans::create(conn, &node, &Ctx::of(&principal), new, content)?;
            Answer::created(
                format!("/v1/plans/{}", plan.id),
                etag(plan.version),
                &view(plan, version),
            )
        })
    })
    .await?;
    Ok(answer.into_response())
}

common::list_query! {
    pub struct PlansQuery {
        /// `true`: only the plans `{id}` defined itself; default: also those of its ancestors,
        /// which `{id}` (or, for a customer, its parent) may apply too.
        pub own: Option<bool>,
    }
}

/// The plans available at `{id}`, oldest first: those it defined and those of its ancestors (a
/// plan is visible to the subtree of the node that defined it), retired ones included.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), PlansQuery),
    responses(
        (status = 200, description = "A page of plans", body = super::common::pages::PlanPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/plans")]
pub(crate) async fn list_plans(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<PlansQuery>,
) -> Result<web::Json<Page<PlanView>>, ApiError> {
    let page = query.page()?;
    let own = query.own.unwrap_or(false);
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        page,
        move |conn, node, after, limit| {
            let definers = if own { vec![node.id] } else { node.lineage() };
            let plans = store::plans::defined_by(conn, &definers, true, after, limit)?;
            plans
                .into_iter()
                .map(|plan| {
                    let current = store::plans::find_version(conn, plan.id, plan.current_version)?
                        .ok_or(diesel::result::Error::NotFound)?;
                    Ok((plan, current))
                })
                .collect()
        },
        |(plan, _)| plan.id.to_string(),
        |(plan, current)| view(plan, current),
    )
    .await
}

/// The plan `id` and its current version, if the principal may read it.
fn readable(
    conn: &mut DbConnection,
    principal: &Principal,
    id: PlanId,
) -> Result<(Plan, PlanVersion), ApiError> {
    let (plan, current) = service::plans::find(conn, id, false)?;
    principal.may_read_plan(nodes::find(conn, plan.node_id)?)?;
    Ok((plan, current))
}

/// One plan, with its current content: readable at and above the node that defined it, and
/// anywhere in its subtree (a customer reads the plan it is on).
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = PlanId, Path)),
    responses(
        (status = 200, description = "The plan", body = PlanView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/plans/{id}")]
pub(crate) async fn get_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<PlanId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let (plan, current) =
        store::run(&state.pool, move |conn| readable(conn, &principal, id)).await?;
    Ok(respond(plan, current))
}

/// Every version of a plan, oldest first.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = PlanId, Path), common::ListQuery),
    responses(
        (status = 200, description = "A page of versions", body = super::common::pages::PlanVersionPage),
        Guarded,
    )
)]
#[get("/v1/plans/{id}/versions")]
pub(crate) async fn list_versions(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<PlanId>,
    query: web::Query<common::ListQuery>,
) -> Result<web::Json<Page<PlanVersionView>>, ApiError> {
    let page = PageRequest::parse_keyed(query.limit, query.cursor.as_deref(), |key| {
        key.parse::<i64>().is_ok()
    })?;
    let id = id.into_inner();
    let fetch = page.clone();
    let rows = store::run(&state.pool, move |conn| {
        readable(conn, &principal, id)?;
        let after = fetch.after.as_deref().and_then(|a| a.parse().ok());
        Ok::<_, ApiError>(store::plans::versions(conn, id, after, fetch.fetch())?)
    })
    .await?;
    Ok(web::Json(page.page(
        rows,
        |v| v.number.to_string(),
        PlanVersionView::from,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    #[schema(value_type = Option<NodeName>)]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
    /// The whole set of resources of the new version.
    pub resources: Option<BTreeMap<String, i64>>,
    /// The whole set of modules of the new version.
    #[schema(value_type = Option<Vec<ModuleCode>>)]
    pub modules: Option<BTreeSet<String>>,
    /// The whole set of settings of the new version.
    pub settings: Option<SettingsBody>,
    /// `null` makes the new version open-ended.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(minimum = 1, maximum = 120)]
    pub term_months: Option<Option<i32>>,
    /// `true` retires the plan: it is applied anew nowhere, and its customers keep it.
    pub retired: Option<bool>,
}

/// Changes a plan. Its name, description and retirement change in place; a change of content
/// (`resources`, `modules`, `settings`, `term_months`: each given replaces that part whole) makes
/// a new version, and the customers on the plan stay on theirs until `POST /v1/plans/{id}/sync`.
/// Retiring is audited as `plan.retire`. Only an admin at or above the node that defined it may.
///
/// Rules the body's schema cannot state: as when it was defined, every resource must be in the
/// catalogue and every module a per-customer one whose `module:<code>` the plan grants.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = PlanId, Path), IfMatch),
    request_body = UpdatePlan,
    responses(
        (status = 200, description = "The changed plan", body = PlanView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The defining node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/plans/{id}")]
pub(crate) async fn update_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<PlanId>,
    if_match: IfMatch,
    body: Json<UpdatePlan>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let name = body
        .name
        .map(|n| fields.check("name", tree::parse_name(&n)));
    let description = body
        .description
        .map(|d| d.and_then(|d| fields.check("description", tree::parse_description(&d))));
    fields.finish()?;
    let id = id.into_inner();
    let (plan, current) = common::write(&state.pool, move |conn| {
        let found = service::plans::find(conn, id, true)?;
        let definer = principal.may_change_plan(nodes::find(conn, found.0.node_id)?)?;
        let changes_content = body.resources.is_some()
            || body.modules.is_some()
            || body.settings.is_some()
            || body.term_months.is_some();
        let mut fields = Fields::default();
        let new_content = changes_content.then(|| {
            let was = &found.1.content;
            content(
                &mut fields,
                body.resources.unwrap_or_else(|| was.resources.clone()),
                body.modules.unwrap_or_else(|| was.modules.clone()),
                body.settings.unwrap_or_else(|| was.settings.into()),
                body.term_months.unwrap_or(was.term_months),
            )
        });
        fields.finish()?;
        let change = PlanChange {
            name: name.flatten(),
            description,
            content: new_content,
            retired: body.retired,
        };
        service::plans::update(conn, &definer, &Ctx::of(&principal), found, change, |v| {
            if_match.check(v)
        })
    })
    .await?;
    Ok(respond(plan, current))
}

/// Deletes a plan with its versions. Refused while any customer is on it: retire it instead
/// (`PATCH` with `retired: true`).
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = PlanId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        Guarded,
        (status = 409, description = "Customers are on the plan (`conflict`), or the defining node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/plans/{id}")]
pub(crate) async fn delete_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<PlanId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let found = service::plans::find(conn, id, true)?;
        let definer = principal.may_change_plan(nodes::find(conn, found.0.node_id)?)?;
        service::plans::delete(conn, &definer, &Ctx::of(&principal), found)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A customer a sync moved.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncMoved {
    pub node_id: NodeId,
    /// The version it was on.
    pub from_version: i64,
}

/// A customer a sync could not move: it stays on its version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncFailed {
    pub node_id: NodeId,
    /// The version it stays on.
    pub version: i64,
    /// Why: `plan-does-not-fit` (with `shortfalls`, each resource it uses beyond the new version),
    /// `quota-exceeded` (its parent lacks room), `node-suspended`, …
    pub problem: Problem,
}

/// What a sync did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncReport {
    pub plan_id: PlanId,
    /// The version customers were moved to.
    pub version: i64,
    pub moved: Vec<SyncMoved>,
    pub failed: Vec<SyncFailed>,
}

/// Moves every customer on an older version of the plan, strictly below the caller, to its
/// current version, each in its own transaction (as `PUT /v1/nodes/{id}/plan` would, from today,
/// without `allow_over_limit`; audited as `plan.sync`), and answers who moved and who could not,
/// with the problem that kept each (a customer using more than the new version allows is
/// `plan-does-not-fit`, naming each resource). Any admin who reads the plan may: its customers
/// below it move.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = PlanId, Path)),
    responses(
        (status = 200, description = "Who moved and who did not", body = SyncReport),
        Guarded,
    )
)]
#[post("/v1/plans/{id}/sync")]
pub(crate) async fn sync_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<PlanId>,
) -> Result<web::Json<SyncReport>, ApiError> {
    let id = id.into_inner();
    let asker = principal.clone();
    let (plan, behind) = store::run(&state.pool, move |conn| {
        let (plan, _) = service::plans::find(conn, id, false)?;
        asker.may_sync_plan(nodes::find(conn, plan.node_id)?)?;
        let behind = store::plans::behind(conn, plan.id, plan.current_version, &asker.node_path)?;
        Ok::<_, ApiError>((plan, behind))
    })
    .await?;
    let mut report = SyncReport {
        plan_id: plan.id,
        version: plan.current_version,
        moved: Vec::new(),
        failed: Vec::new(),
    };
    for (node_id, from_version) in behind {
        let principal = principal.clone();
        let moved = common::write(&state.pool, move |conn| {
            let found = nodes::find_locked(conn, node_id, &[])?;
            let node = principal.may_administer(found, Reach::Below)?;
            let managed = principal.may_manage(nodes::find(conn, node_id)?)?;
            let (plan, current) = service::plans::find(conn, id, false)?;
            // Read again under the lock: an application meanwhile may have moved it already.
            let on = store::plans::of_node(conn, node_id)?;
            if on.is_none_or(|on| on.plan_id != plan.id || on.plan_version >= current.number) {
                return Ok(false);
            }
            let customer = Customer {
                node: &node,
                managed: &managed,
            };
            let ctx = Ctx::of(&principal);
            let today = ctx.today;
            service::plans::apply(
                conn,
                customer,
                &ctx,
                (&plan, &current),
                today,
                false,
                Action::PlanSync,
            )
            .map_err(|e| principal.shown(e))?;
            Ok(true)
        })
        .await;
        match moved {
            Ok(true) => report.moved.push(SyncMoved {
                node_id,
                from_version,
            }),
            Ok(false) => {}
            Err(err @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(err),
            Err(err) => report.failed.push(SyncFailed {
                node_id,
                version: from_version,
                problem: err.to_problem(),
            }),
        }
    }
    Ok(web::Json(report))
}

/// The plan a customer is on.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct PlanRef {
    pub id: PlanId,
    pub code: String,
    /// The version of the plan it is on (a sync moves it to the current one).
    pub version: i64,
}

/// What putting a customer on a plan did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppliedView {
    pub node_id: NodeId,
    pub plan: PlanRef,
    /// The day its grants start.
    pub starts_on: NaiveDate,
    /// The allocations the plan granted it, from its parent.
    pub allocations: Vec<AllocationView>,
    /// With `allow_over_limit`: each resource it now uses beyond its limit (empty otherwise).
    pub over_limit: Vec<ShortfallView>,
}

fn shortfall_view(s: Shortfall) -> ShortfallView {
    ShortfallView {
        resource: s.resource,
        used: s.used,
        limit: s.limit,
        at: s.at,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyPlan {
    /// A plan defined by the customer's parent or one of its ancestors, not retired (unless the
    /// customer is on it already).
    pub plan: PlanId,
    /// When the change takes effect: today (the default) or later. The previous plan's grants
    /// end that day and the new ones start it.
    #[schema(value_type = Option<Day>)]
    pub starts_on: Option<NaiveDate>,
    /// Apply a downgrade even though the customer uses more than it allows (it is then over its
    /// limit, as when an allocation ends). Default false.
    pub allow_over_limit: Option<bool>,
}

/// Everything the route applying a plan (and creating a child with one) does under the locks it
/// took: the customer guarded twice (its parent side administers its grants and manages its
/// modules), the plan read, then [`service::plans::apply`].
pub(crate) fn apply_locked(
    conn: &mut DbConnection,
    principal: &Principal,
    node_id: NodeId,
    request: &ApplyPlan,
) -> Result<AppliedView, ApiError> {
    let found = nodes::find(conn, node_id)?;
    let node = principal.may_administer(found, Reach::Below)?;
    let managed = principal.may_manage(nodes::find(conn, node_id)?)?;
    let (plan, version) = readable(conn, principal, request.plan)?;
    let ctx = Ctx::of(principal);
    let starts_on = request.starts_on.unwrap_or(ctx.today);
    let applied = service::plans::apply(
        conn,
        Customer {
            node: &node,
            managed: &managed,
        },
        &ctx,
        (&plan, &version),
        starts_on,
        request.allow_over_limit.unwrap_or(false),
        Action::PlanApply,
    )
    // An exhausted ancestor above the caller is named to it only if it may read it.
    .map_err(|e| principal.shown(e))?;
    Ok(AppliedView {
        node_id,
        plan: PlanRef {
            id: plan.id,
            code: plan.code,
            version: version.number,
        },
        starts_on,
        allocations: applied
            .allocations
            .into_iter()
            .map(AllocationView::from)
            .collect(),
        over_limit: applied.over_limit.into_iter().map(shortfall_view).collect(),
    })
}

/// Puts a customer on a plan, in one transaction: the grants of the plan it was on end on
/// `starts_on`, the new plan's are granted from its parent under exactly the rules of any
/// allocation (the parent's room on every day, its oversell ratio), the plan's modules are
/// assigned (the previous plan's that this one lacks removed) and its settings set. An upgrade
/// takes effect at once; a downgrade the customer's use does not fit is refused with
/// `plan-does-not-fit`, naming each resource, unless `allow_over_limit`. Only an admin strictly
/// above the customer may (as with allocations), with a plan defined at the customer's parent or
/// above; a plan the caller cannot read is not found. Audited as `plan.apply`, with every
/// allocation, module and setting it changes.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer")),
    request_body = ApplyPlan,
    responses(
        (status = 200, description = "The customer is on the plan", body = AppliedView),
        Guarded,
        (status = 409, description = "The customer uses more than the plan allows (`plan-does-not-fit`), its parent lacks room (`quota-exceeded`, `ancestor-exhausted`), the plan is retired (`conflict`), a module rule refuses (`module-required`, `module-excluded`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a customer, `starts_on` before today, or a plan defined outside the customer's parent's lineage (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/nodes/{id}/plan")]
pub(crate) async fn apply_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<ApplyPlan>,
) -> Result<web::Json<AppliedView>, ApiError> {
    let request = body.0;
    if let Some(day) = request.starts_on {
        common::check_date(day).map_err(|m| ApiError::validation("starts_on", m))?;
    }
    let id = id.into_inner();
    let applied = common::write(&state.pool, move |conn| {
        nodes::find_locked(conn, id, &[])?;
        apply_locked(conn, &principal, id, &request)
    })
    .await?;
    Ok(web::Json(applied))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemovePlanQuery {
    /// The day the plan's grants end: today (the default) or later.
    #[param(value_type = Option<Day>)]
    pub ends_on: Option<NaiveDate>,
    /// Take it off even though it uses more than what remains (it is then over its limit).
    pub allow_over_limit: Option<bool>,
}

/// Takes a customer off its plan: the plan's grants end on `ends_on`, and the modules it included
/// are removed; its settings stay as they are. Refused with `plan-does-not-fit` when the customer
/// uses more than what remains, unless `allow_over_limit`. Audited as `plan.remove`.
#[utoipa::path(
    tag = "plans",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer"), RemovePlanQuery),
    responses(
        (status = 204, description = "The customer is on no plan"),
        Guarded,
        (status = 400, description = "`ends_on` before today (`invalid-query`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The customer uses more than what remains (`plan-does-not-fit`), a module rule refuses (`module-required`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/nodes/{id}/plan")]
pub(crate) async fn remove_plan(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<RemovePlanQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let query = query.into_inner();
    common::write(&state.pool, move |conn| {
        let node = principal.may_administer(nodes::find_locked(conn, id, &[])?, Reach::Below)?;
        let managed = principal.may_manage(nodes::find(conn, id)?)?;
        let ctx = Ctx::of(&principal);
        service::plans::remove(
            conn,
            Customer {
                node: &node,
                managed: &managed,
            },
            &ctx,
            query.ends_on.unwrap_or(ctx.today),
            query.allow_over_limit.unwrap_or(false),
        )
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The plan each of `nodes` is on, for views.
pub(crate) fn refs_of(
    conn: &mut DbConnection,
    ids: &[NodeId],
) -> diesel::QueryResult<std::collections::HashMap<NodeId, PlanRef>> {
    Ok(store::plans::of_nodes(conn, ids)?
        .into_iter()
        .map(|(node, (id, code, version))| (node, PlanRef { id, code, version }))
        .collect())
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(create_plan)
        .service(list_plans)
        .service(get_plan)
        .service(list_versions)
        .service(update_plan)
        .service(delete_plan)
        .service(sync_plan)
        .service(apply_plan)
        .service(remove_plan);
}
