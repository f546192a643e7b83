//! The module catalogue and module seats.
//!
//! The catalogue is data: any principal reads it, the owner's admins add, change, retire and
//! remove modules. Its rules (requirements, exclusions, units) are checked as a whole on every
//! change, and a change that existing assignments would break is refused. A module in use is
//! never removed, only retired: it takes no new seats.
//!
//! Per-mailbox modules are assigned to mailboxes, per-customer ones to customers, by an admin or a
//! manager at the customer or above. Each assignment takes one seat of `module:<code>` (an inactive
//! mailbox's take none until it is enabled), checked against the customer's limit in the same
//! transaction, under the customer's lock, exactly as `users` is.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::utc;
use super::common::{self, Fields, IfMatch, ListQuery, Page, PageRequest, etag};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use super::mailboxes::{MailboxView, customer};
use crate::api::schemas::{Label, ModuleCode, ModuleCodes, ModuleDescription, ModuleUnit};
use crate::auth::Principal;
use crate::domain::catalogue::{Rules, Unit};
use crate::domain::ids::{MailboxId, NodeId};
use crate::domain::resource::is_module_code;
use crate::error::{ApiError, Guarded, Problem, RoleGuarded};
use crate::service::modules::ModuleChange;
use crate::service::{self, Ctx};
use crate::startup::AppState;
use crate::store::modules::{self, Module};
use crate::store::{self, DbConnection, nodes};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModuleView {
    /// The module's code; its seats are the resource `module:<code>`.
    #[schema(example = "sign_encrypt")]
    pub code: String,
    #[schema(example = "Sign and encrypt")]
    pub name: String,
    pub description: String,
    #[schema(value_type = ModuleUnit)]
    pub unit: Unit,
    /// What a holder must hold first.
    #[schema(example = json!(["certificate"]))]
    pub requires: Vec<String>,
    /// What a holder of this module cannot hold at once (either side naming the other suffices).
    #[schema(example = json!(["sign_only"]))]
    pub excludes: Vec<String>,
    /// Whether every mailbox is assigned it as it is created, enrolled or enabled.
    pub auto_assign: bool,
    /// A retired module takes no new seats; those held stay.
    pub retired: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

impl From<&Module> for ModuleView {
    fn from(m: &Module) -> Self {
        Self {
            code: m.code.clone(),
            name: m.name.clone(),
            description: m.description.clone(),
            unit: m.rules.unit,
            requires: m.rules.requires.iter().cloned().collect(),
            excludes: m.rules.excludes.iter().cloned().collect(),
            auto_assign: m.rules.auto_assign,
            retired: m.rules.retired,
            version: m.version,
            created_at: utc(m.created_at),
        }
    }
}

fn respond(module: &Module) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(module.version)))
        .json(ModuleView::from(module))
}

/// The module catalogue, by code. Any principal but a `check` key reads it.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of modules", body = super::common::pages::ModulePage),
        RoleGuarded,
    )
)]
#[get("/v1/modules")]
pub(crate) async fn list_modules(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<web::Json<Page<ModuleView>>, ApiError> {
    let page = PageRequest::parse_keyed(query.limit, query.cursor.as_deref(), is_module_code)?;
    let after = page.after.clone().unwrap_or_default();
    let fetch = usize::try_from(page.fetch()).unwrap_or(usize::MAX);
    let all = store::run(&state.pool, move |conn| {
        principal.may_read(nodes::find(conn, principal.node_id)?)?;
        Ok::<_, ApiError>(modules::all(conn)?)
    })
    .await?;
    let rows: Vec<Module> = all
        .into_iter()
        .filter(|m| m.code > after)
        .take(fetch)
        .collect();
    Ok(web::Json(page.page(
        rows,
        |m| m.code.clone(),
        |m| ModuleView::from(&m),
    )))
}

/// One module of the catalogue.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("code" = String, Path, description = "A module code")),
    responses(
        (status = 200, description = "The module", body = ModuleView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/modules/{code}")]
pub(crate) async fn get_module(
    state: web::Data<AppState>,
    principal: Principal,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    let module = store::run(&state.pool, move |conn| {
        principal.may_read(nodes::find(conn, principal.node_id)?)?;
        Ok::<_, ApiError>(service::modules::find(conn, &code)?.1)
    })
    .await?;
    Ok(respond(&module))
}

/// A list of module codes from a body: each well-formed, none twice.
fn codes(fields: &mut Fields, field: &str, given: Option<Vec<String>>) -> Option<BTreeSet<String>> {
    let given = given?;
    let mut set = BTreeSet::new();
    for code in given {
        if !is_module_code(&code) {
            fields.push(field, format!("`{code}` is not a module code"));
        } else if !set.insert(code.clone()) {
            fields.push(field, format!("{code} is named twice"));
        }
    }
    Some(set)
}

fn name(fields: &mut Fields, raw: Option<String>) -> Option<String> {
    let name = raw?.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        fields.push(
            "name",
            "must be 1 to 100 characters without control characters",
        );
    }
    Some(name)
}

fn description(fields: &mut Fields, raw: Option<String>) -> Option<String> {
    let text = raw?.trim().to_owned();
    if text.chars().count() > 1000 {
        fields.push("description", "must be at most 1000 characters");
    }
    Some(text)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModule {
    /// Unique in the catalogue; its seats are the resource `module:<code>`.
    #[schema(value_type = ModuleCode, example = "archive")]
    pub code: String,
    #[schema(value_type = Label, example = "Archiving")]
    pub name: String,
    #[schema(value_type = Option<ModuleDescription>)]
    pub description: Option<String>,
    #[schema(value_type = ModuleUnit)]
    pub unit: String,
    /// Modules a holder must hold first (of the same unit), each named once.
    #[schema(value_type = Option<ModuleCodes>)]
    pub requires: Option<Vec<String>>,
    /// Modules a holder cannot hold at once (of the same unit), each named once.
    #[schema(value_type = Option<ModuleCodes>)]
    pub excludes: Option<Vec<String>>,
    /// Whether every mailbox created, enrolled or enabled from now on is assigned it.
    pub auto_assign: Option<bool>,
}

/// Adds a module to the catalogue (owner admins). Its seats are the resource `module:<code>`,
/// granted like any other from the licence down.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(IdempotencyHeader),
    request_body = CreateModule,
    responses(
        (status = 201, description = "Added", body = ModuleView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The code exists (`name-taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or rules the catalogue cannot hold: an unknown module, a cycle, a module of another unit, an automatic module that excludes or needs a non-automatic one (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/modules")]
pub(crate) async fn create_module(
    state: web::Data<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    body: Json<CreateModule>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let module = body.0.parse()?;
    let answer = common::write(&state.pool, move |conn| {
        let owner = common::owner_admin(conn, &principal)?;
        idempotency::once(conn, &principal, &key, &raw, |conn| {
            let module = service::modules::create(conn, &Ctx::of(&principal), &owner, module)?;
            Answer::created(
                format!("/v1/modules/{}", module.code),
                etag(module.version),
                &ModuleView::from(&module),
            )
        })
    })
    .await?;
    Ok(answer.into_response())
}

impl CreateModule {
    /// The module this body adds, or the 422 naming every bad field.
    fn parse(self) -> Result<Module, ApiError> {
        let mut fields = Fields::default();
        if !is_module_code(&self.code) {
            fields.push(
                "code",
                "must be 1 to 32 lowercase letters, digits and _, starting with a letter",
            );
        }
        let name = name(&mut fields, Some(self.name));
        let description = description(&mut fields, self.description);
        let unit = fields.check("unit", self.unit.parse::<Unit>().map_err(|e| e.to_string()));
        let requires = codes(&mut fields, "requires", self.requires);
        let excludes = codes(&mut fields, "excludes", self.excludes);
        fields.finish()?;
        Ok(Module {
            code: self.code,
            name: name.unwrap_or_default(),
            description: description.unwrap_or_default(),
            rules: Rules {
                unit: unit.ok_or_else(|| ApiError::validation("unit", "is required"))?,
                auto_assign: self.auto_assign.unwrap_or(false),
                retired: false,
                requires: requires.unwrap_or_default(),
                excludes: excludes.unwrap_or_default(),
            },
            version: 1,
            created_at: store::now(),
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModule {
    #[schema(value_type = Option<Label>)]
    pub name: Option<String>,
    #[schema(value_type = Option<ModuleDescription>)]
    pub description: Option<String>,
    /// Replaces the requirements, each named once. Refused while holders lack a new one.
    #[schema(value_type = Option<ModuleCodes>)]
    pub requires: Option<Vec<String>>,
    /// Replaces the exclusions (on both sides), each named once. Refused while holders hold both.
    #[schema(value_type = Option<ModuleCodes>)]
    pub excludes: Option<Vec<String>>,
    /// From now on; mailboxes that exist keep what they hold.
    pub auto_assign: Option<bool>,
    /// `true`: no new seats (assignments and allocations are refused); those held stay.
    pub retired: Option<bool>,
}

/// Changes a module (owner admins); `If-Match` makes it conditional. The unit cannot change:
/// retire the module and add another.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("code" = String, Path, description = "A module code"), IfMatch),
    request_body = UpdateModule,
    responses(
        (status = 200, description = "The changed module", body = ModuleView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "Holders would break a new requirement or exclusion (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or rules the catalogue cannot hold (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/modules/{code}")]
pub(crate) async fn update_module(
    state: web::Data<AppState>,
    principal: Principal,
    code: web::Path<String>,
    if_match: IfMatch,
    body: Json<UpdateModule>,
) -> Result<HttpResponse, ApiError> {
    let change = body.0.parse()?;
    let code = code.into_inner();
    let module = common::write(&state.pool, move |conn| {
        let owner = common::owner_admin(conn, &principal)?;
        let precondition = |version| if_match.check(version);
        let ctx = Ctx::of(&principal);
        service::modules::update(conn, &ctx, &owner, &code, precondition, change)
    })
    .await?;
    Ok(respond(&module))
}

impl UpdateModule {
    /// The change this body asks for, or the 422 naming every bad field.
    fn parse(self) -> Result<ModuleChange, ApiError> {
        let mut fields = Fields::default();
        let change = ModuleChange {
            name: name(&mut fields, self.name),
            description: description(&mut fields, self.description),
            requires: codes(&mut fields, "requires", self.requires),
            excludes: codes(&mut fields, "excludes", self.excludes),
            auto_assign: self.auto_assign,
            retired: self.retired,
        };
        fields.finish()?;
        Ok(change)
    }
}

/// Removes a module nothing uses (owner admins): no allocation of its resource ever, no holder,
/// no module requiring it. A module in use is retired instead (`PATCH` with `retired: true`).
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("code" = String, Path, description = "A module code")),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "In use, or required by another module (`conflict`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/modules/{code}")]
pub(crate) async fn delete_module(
    state: web::Data<AppState>,
    principal: Principal,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    common::write(&state.pool, move |conn| {
        let owner = common::owner_admin(conn, &principal)?;
        service::modules::delete(conn, &Ctx::of(&principal), &owner, &code)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Assigns per-mailbox module `{code}` to mailbox `{id}`, taking a seat of `module:<code>` if the
/// mailbox is active. Its requirements must be held first and nothing it excludes may be.
/// Assigning a module the mailbox holds changes nothing.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path), ("code" = String, Path, description = "A per-mailbox module")),
    responses(
        (status = 200, description = "The mailbox with its modules", body = MailboxView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "A requirement is missing (`module-required`), an exclusion is held (`module-excluded`), no seat is free (`quota-exceeded`), or an ancestor has no real seat of it left (`ancestor-exhausted`), the module is retired or the mailbox is a role address (`conflict`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`{code}` is a per-customer module (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/mailboxes/{id}/modules/{code}")]
pub(crate) async fn assign_mailbox_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(MailboxId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, code) = path.into_inner();
    let (mailbox, modules_held) = common::write(&state.pool, move |conn| {
        let (mailbox, node) = super::mailboxes::locked_mailbox(conn, &principal, id)?;
        let ctx = Ctx::of(&principal);
        service::modules::assign_to_mailbox(conn, &ctx, &node, mailbox, code)
            .map_err(|e| principal.shown(e))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, etag(mailbox.version)))
        .json(MailboxView::new(&mailbox, modules_held)))
}

/// Removes per-mailbox module `{code}` from mailbox `{id}`, returning its seat. Refused while
/// another module the mailbox holds requires it, and for automatic modules (`base`), which follow
/// the mailbox: disable it to free them.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path), ("code" = String, Path, description = "A per-mailbox module")),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "Another held module requires it (`module-required`), it is automatic (`conflict`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`{code}` is a per-customer module (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/mailboxes/{id}/modules/{code}")]
pub(crate) async fn remove_mailbox_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(MailboxId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, code) = path.into_inner();
    common::write(&state.pool, move |conn| {
        let (mailbox, node) = super::mailboxes::locked_mailbox(conn, &principal, id)?;
        let ctx = Ctx::of(&principal);
        service::modules::remove_from_mailbox(conn, &ctx, &node, mailbox, code)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeModuleView {
    #[schema(example = "m365")]
    pub code: String,
    pub assigned_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeModules {
    /// The customer.
    pub node_id: NodeId,
    /// Its per-customer modules, by code.
    pub modules: Vec<NodeModuleView>,
}

fn node_modules(conn: &mut DbConnection, node: NodeId) -> Result<NodeModules, ApiError> {
    Ok(NodeModules {
        node_id: node,
        modules: modules::of_node(conn, node)?
            .into_iter()
            .map(|(code, at)| NodeModuleView {
                code,
                assigned_at: utc(at),
            })
            .collect(),
    })
}

/// The per-customer modules customer `{id}` holds.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer")),
    responses(
        (status = 200, description = "Its modules", body = NodeModules),
        Guarded,
        (status = 422, description = "The node is not a customer (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/modules")]
pub(crate) async fn list_node_modules(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
) -> Result<web::Json<NodeModules>, ApiError> {
    let id = id.into_inner();
    let held = store::run(&state.pool, move |conn| {
        let node = customer(principal.may_read(nodes::find(conn, id)?)?)?;
        node_modules(conn, node.id)
    })
    .await?;
    Ok(web::Json(held))
}

/// Assigns per-customer module `{code}` to customer `{id}`, taking a seat of `module:<code>`.
/// Requirements and exclusions are checked as for mailboxes. Assigning a module the customer holds
/// changes nothing.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer"), ("code" = String, Path, description = "A per-customer module")),
    responses(
        (status = 200, description = "The customer's modules", body = NodeModules),
        Guarded,
        (status = 409, description = "A requirement is missing (`module-required`), an exclusion is held (`module-excluded`), no seat is free (`quota-exceeded`), or an ancestor has no real seat of it left (`ancestor-exhausted`), the module is retired (`conflict`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`{code}` is a per-mailbox module, or the node is not a customer (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/nodes/{id}/modules/{code}")]
pub(crate) async fn assign_node_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
) -> Result<web::Json<NodeModules>, ApiError> {
    Ok(web::Json(
        set_node_module(&state, principal, path.into_inner(), true).await?,
    ))
}

/// Assigns (`held`) or removes per-customer module `code` of customer `id`, under its lock, and
/// answers the modules it holds then.
async fn set_node_module(
    state: &AppState,
    principal: Principal,
    (id, code): (NodeId, String),
    held: bool,
) -> Result<NodeModules, ApiError> {
    common::write(&state.pool, move |conn| {
        let node = customer(principal.may_manage(nodes::find_locked(conn, id, &[])?)?)?;
        let ctx = Ctx::of(&principal);
        service::modules::set_on_customer(conn, &ctx, &node, code, held)
            .map_err(|e| principal.shown(e))?;
        node_modules(conn, node.id)
    })
    .await
}

/// Removes per-customer module `{code}` from customer `{id}`, returning its seat; refused while
/// another module the customer holds requires it.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer"), ("code" = String, Path, description = "A per-customer module")),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "Another held module requires it (`module-required`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`{code}` is a per-mailbox module, or the node is not a customer (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/nodes/{id}/modules/{code}")]
pub(crate) async fn remove_node_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
) -> Result<HttpResponse, ApiError> {
    set_node_module(&state, principal, path.into_inner(), false).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(list_modules)
        .service(create_module)
        .service(get_module)
        .service(update_module)
        .service(delete_module)
        .service(assign_mailbox_module)
        .service(remove_mailbox_module)
        .service(list_node_modules)
        .service(assign_node_module)
        .service(remove_node_module)
        .service(super::mailboxes::list_module_mailboxes);
}
