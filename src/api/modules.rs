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
use serde_json::json;
use utoipa::ToSchema;

use super::common::utc;
use super::common::{self, Fields, IfMatch, ListQuery, Page, PageRequest, etag, today};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use super::mailboxes::{MailboxView, customer};
use crate::auth::Principal;
use crate::domain::audit::Action;
use crate::domain::catalogue::{Catalogue, Rules, Unit};
use crate::domain::ids::{MailboxId, NodeId};
use crate::domain::resource::{is_module_code, module_key};
use crate::error::{ApiError, Guarded, Listed, Problem};
use crate::startup::AppState;
use crate::store::mailboxes::Origin;
use crate::store::modules::{self, Module};
use crate::store::{self, DbConnection, mailboxes, nodes, usage, write_tx};

#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleView {
    /// The module's code; its seats are the resource `module:<code>`.
    #[schema(example = "sign_encrypt")]
    pub code: String,
    #[schema(example = "Sign and encrypt")]
    pub name: String,
    pub description: String,
    /// `per_mailbox` (assigned to mailboxes) or `per_customer` (assigned to customers).
    #[schema(value_type = String, example = "per_mailbox")]
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

fn audit_view(m: &Module) -> serde_json::Value {
    serde_json::to_value(ModuleView::from(m)).unwrap_or_default()
}

fn respond(module: &Module) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(module.version)))
        .json(ModuleView::from(module))
}

/// The catalogue and the module `code` in it; 404 when there is no such module.
fn find(conn: &mut DbConnection, code: &str) -> Result<(Vec<Module>, Module), ApiError> {
    let all = modules::all(conn)?;
    let module = all
        .iter()
        .find(|m| m.code == code)
        .cloned()
        .ok_or(ApiError::NotFound)?;
    Ok((all, module))
}

/// The module catalogue, by code. Any principal but a `check` key reads it.
#[utoipa::path(
    tag = "modules",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of modules", body = Page<ModuleView>),
        Listed,
    )
)]
#[get("/v1/modules")]
pub async fn list_modules(
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
    security(("bearer" = [])),
    params(("code" = String, Path, description = "A module code")),
    responses(
        (status = 200, description = "The module", body = ModuleView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/modules/{code}")]
pub async fn get_module(
    state: web::Data<AppState>,
    principal: Principal,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    let module = store::run(&state.pool, move |conn| {
        principal.may_read(nodes::find(conn, principal.node_id)?)?;
        Ok::<_, ApiError>(find(conn, &code)?.1)
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

/// Writes `module` (new, or replacing `before`) into the catalogue `all` if the catalogue still
/// holds its rules and no existing assignment breaks a requirement or exclusion it adds.
fn change(
    conn: &mut DbConnection,
    all: Vec<Module>,
    before: Option<&Module>,
    module: &Module,
) -> Result<(), ApiError> {
    let named: Vec<&str> = std::iter::once(module.code.as_str())
        .chain(module.rules.requires.iter().map(String::as_str))
        .chain(module.rules.excludes.iter().map(String::as_str))
        .chain(before.into_iter().flat_map(|b| {
            b.rules
                .requires
                .iter()
                .chain(&b.rules.excludes)
                .map(String::as_str)
        }))
        .collect();
    modules::lock(conn, &named, true)?;
    let mut catalogue: Catalogue = modules::catalogue(&all);
    // Exclusions are stored both ways: the module's old ones are dropped from the others too.
    if let Some(before) = before {
        for other in &before.rules.excludes {
            if let Some(rules) = catalogue.0.get_mut(other) {
                rules.excludes.remove(&module.code);
            }
        }
    }
    for other in &module.rules.excludes {
        if let Some(rules) = catalogue.0.get_mut(other) {
            rules.excludes.insert(module.code.clone());
        }
    }
    catalogue
        .0
        .insert(module.code.clone(), module.rules.clone());
    catalogue
        .validate()
        .map_err(|broken| ApiError::validation(broken.field, broken.message))?;
    let empty = BTreeSet::new();
    let (old_requires, old_excludes) =
        before.map_or((&empty, &empty), |b| (&b.rules.requires, &b.rules.excludes));
    let holders = match module.rules.unit {
        Unit::PerMailbox => "mailbox(es)",
        Unit::PerCustomer => "customer(s)",
    };
    for required in module.rules.requires.difference(old_requires) {
        let count = modules::holding_without(conn, module.rules.unit, &module.code, required)?;
        if count > 0 {
            return Err(ApiError::Conflict(format!(
                "{count} {holders} hold {} without {required}: assign {required} to them first.",
                module.code
            )));
        }
    }
    for excluded in module.rules.excludes.difference(old_excludes) {
        let count = modules::holding_both(conn, module.rules.unit, &module.code, excluded)?;
        if count > 0 {
            return Err(ApiError::Conflict(format!(
                "{count} {holders} hold both {} and {excluded}: remove one from them first.",
                module.code
            )));
        }
    }
    modules::save(conn, module, before.is_none())?;
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModule {
    /// 1–32 lowercase letters, digits and `_`, starting with a letter.
    #[schema(example = "archive")]
    pub code: String,
    #[schema(example = "Archiving")]
    pub name: String,
    pub description: Option<String>,
    /// `per_mailbox` or `per_customer`.
    #[schema(example = "per_mailbox")]
    pub unit: String,
    /// Modules a holder must hold first (of the same unit).
    pub requires: Option<Vec<String>>,
    /// Modules a holder cannot hold at once (of the same unit).
    pub excludes: Option<Vec<String>>,
    /// Whether every mailbox created, enrolled or enabled from now on is assigned it.
    pub auto_assign: Option<bool>,
}

/// Adds a module to the catalogue (owner admins). Its seats are the resource `module:<code>`,
/// granted like any other from the licence down.
#[utoipa::path(
    tag = "modules",
    security(("bearer" = [])),
    params(IdempotencyHeader),
    request_body = CreateModule,
    responses(
        (status = 201, description = "Added", body = ModuleView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The code exists (`name-taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or rules the catalogue cannot hold (an unknown module, a cycle, modules of another unit)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/modules")]
pub async fn create_module(
    state: web::Data<AppState>,
    principal: Principal,
    key: IdempotencyKey,
    body: Json<CreateModule>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let body = body.0;
    let mut fields = Fields::default();
    if !is_module_code(&body.code) {
        fields.push(
            "code",
            "must be 1 to 32 lowercase letters, digits and _, starting with a letter",
        );
    }
    let name = name(&mut fields, Some(body.name));
    let description = description(&mut fields, body.description);
    let unit = fields.check("unit", body.unit.parse::<Unit>().map_err(|e| e.to_string()));
    let requires = codes(&mut fields, "requires", body.requires);
    let excludes = codes(&mut fields, "excludes", body.excludes);
    fields.finish()?;
    let module = Module {
        code: body.code,
        name: name.unwrap_or_default(),
        description: description.unwrap_or_default(),
        rules: Rules {
            unit: unit.ok_or_else(|| ApiError::validation("unit", "is required"))?,
            auto_assign: body.auto_assign.unwrap_or(false),
            retired: false,
            requires: requires.unwrap_or_default(),
            excludes: excludes.unwrap_or_default(),
        },
        version: 1,
        created_at: store::now(),
    };
    let answer = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let owner = common::owner_admin(conn, &principal)?;
            idempotency::once(conn, &principal, &key, &raw, |conn| {
                let all = modules::all(conn)?;
                if all.iter().any(|m| m.code == module.code) {
                    return Err(ApiError::NameTaken(format!(
                        "A module with the code {} exists already.",
                        module.code
                    )));
                }
                change(conn, all, None, &module)?;
                common::record(
                    conn,
                    &principal,
                    owner.id,
                    Action::ModuleCreate,
                    ("module", module.code.clone()),
                    None,
                    Some(audit_view(&module)),
                )?;
                Answer::created(
                    format!("/v1/modules/{}", module.code),
                    etag(module.version),
                    &ModuleView::from(&module),
                )
            })
        })
    })
    .await?;
    Ok(answer.into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateModule {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Replaces the requirements. Refused while holders lack a new one.
    pub requires: Option<Vec<String>>,
    /// Replaces the exclusions (on both sides). Refused while holders hold both.
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
    security(("bearer" = [])),
    params(("code" = String, Path, description = "A module code"), ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    request_body = UpdateModule,
    responses(
        (status = 200, description = "The changed module", body = ModuleView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "Holders would break a new requirement or exclusion (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` does not match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or rules the catalogue cannot hold", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/modules/{code}")]
pub async fn update_module(
    state: web::Data<AppState>,
    principal: Principal,
    code: web::Path<String>,
    if_match: IfMatch,
    body: Json<UpdateModule>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let name = name(&mut fields, body.name);
    let description = description(&mut fields, body.description);
    let requires = codes(&mut fields, "requires", body.requires);
    let excludes = codes(&mut fields, "excludes", body.excludes);
    fields.finish()?;
    let code = code.into_inner();
    let module = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let owner = common::owner_admin(conn, &principal)?;
            let (all, before) = find(conn, &code)?;
            if_match.check(before.version)?;
            let mut module = before.clone();
            if let Some(name) = name {
                module.name = name;
            }
            if let Some(description) = description {
                module.description = description;
            }
            if let Some(requires) = requires {
                module.rules.requires = requires;
            }
            if let Some(excludes) = excludes {
                module.rules.excludes = excludes;
            }
            if let Some(auto_assign) = body.auto_assign {
                module.rules.auto_assign = auto_assign;
            }
            if let Some(retired) = body.retired {
                module.rules.retired = retired;
            }
            if module == before {
                return Ok(module);
            }
            module.version += 1;
            change(conn, all, Some(&before), &module)?;
            common::record(
                conn,
                &principal,
                owner.id,
                Action::ModuleUpdate,
                ("module", module.code.clone()),
                Some(audit_view(&before)),
                Some(audit_view(&module)),
            )?;
            Ok::<_, ApiError>(module)
        })
    })
    .await?;
    Ok(respond(&module))
}

/// Removes a module nothing uses (owner admins): no allocation of its resource ever, no holder,
/// no module requiring it. A module in use is retired instead (`PATCH` with `retired: true`).
#[utoipa::path(
    tag = "modules",
    security(("bearer" = [])),
    params(("code" = String, Path, description = "A module code")),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "In use, or required by another module (`conflict`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/modules/{code}")]
pub async fn delete_module(
    state: web::Data<AppState>,
    principal: Principal,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let code = code.into_inner();
    store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let owner = common::owner_admin(conn, &principal)?;
            modules::lock(conn, &[&code], true)?;
            let (all, module) = find(conn, &code)?;
            let uses = modules::uses(conn, &code)?;
            if !uses.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "{code} is in use ({}): retire it instead (PATCH with \"retired\": true).",
                    uses.join(", ")
                )));
            }
            if let Some(dependant) = all.iter().find(|m| m.rules.requires.contains(&code)) {
                return Err(ApiError::Conflict(format!(
                    "{} requires {code}: change {} first.",
                    dependant.code, dependant.code
                )));
            }
            modules::delete(conn, &code)?;
            common::record(
                conn,
                &principal,
                owner.id,
                Action::ModuleDelete,
                ("module", code.clone()),
                Some(audit_view(&module)),
                None,
            )?;
            Ok::<_, ApiError>(())
        })
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One holder's modules (a mailbox's or a customer's) as module `code` joins or leaves them, with
/// the catalogue's rules to judge it by.
struct Holding {
    catalogue: Catalogue,
    rules: Rules,
    code: String,
    before: BTreeSet<String>,
}

impl Holding {
    /// The rules for changing `code` on a holder of `unit` that holds `before`: 404 for an unknown
    /// module, 422 for one of the other unit. The module's row is locked (shared) so that its
    /// rules cannot change before the assignment commits.
    fn read(
        conn: &mut DbConnection,
        code: String,
        unit: Unit,
        before: impl FnOnce(&mut DbConnection) -> diesel::QueryResult<BTreeSet<String>>,
    ) -> Result<Self, ApiError> {
        modules::lock(conn, &[&code], false)?;
        let catalogue = modules::catalogue(&modules::all(conn)?);
        let rules = catalogue.get(&code).cloned().ok_or(ApiError::NotFound)?;
        if rules.unit != unit {
            let hint = match rules.unit {
                Unit::PerCustomer => "assign it to the customer: PUT /v1/nodes/{id}/modules/{code}",
                Unit::PerMailbox => "assign it to mailboxes: PUT /v1/mailboxes/{id}/modules/{code}",
            };
            return Err(ApiError::validation(
                "code",
                format!("{code} is a {} module; {hint}", rules.unit),
            ));
        }
        Ok(Self {
            catalogue,
            rules,
            before: before(conn)?,
            code,
        })
    }

    /// What the holder holds once the module joins; `None` when it holds it already. Refused
    /// for a retired module and by the catalogue's rules.
    fn joining(&self) -> Result<Option<BTreeSet<String>>, ApiError> {
        if self.before.contains(&self.code) {
            return Ok(None);
        }
        if self.rules.retired {
            return Err(ApiError::Conflict(format!(
                "{} is retired: it takes no new seats.",
                self.code
            )));
        }
        self.catalogue
            .may_assign(&self.code, &self.before)
            .map_err(ApiError::Module)?;
        let mut after = self.before.clone();
        after.insert(self.code.clone());
        Ok(Some(after))
    }

    /// What the holder holds once the module leaves: 404 when it does not hold it, refused while
    /// another module it holds requires it.
    fn leaving(&self) -> Result<BTreeSet<String>, ApiError> {
        if !self.before.contains(&self.code) {
            return Err(ApiError::NotFound);
        }
        self.catalogue
            .may_remove(&self.code, &self.before)
            .map_err(ApiError::Module)?;
        let mut after = self.before.clone();
        after.remove(&self.code);
        Ok(after)
    }

    /// Audits the change of customer `node`'s `target` to `after`.
    fn record(
        &self,
        conn: &mut DbConnection,
        principal: &Principal,
        node: NodeId,
        action: Action,
        target: (&str, String),
        after: &BTreeSet<String>,
    ) -> diesel::QueryResult<()> {
        common::record(
            conn,
            principal,
            node,
            action,
            target,
            Some(json!({"modules": self.before})),
            Some(json!({"modules": after})),
        )
    }
}

/// Assigns per-mailbox module `{code}` to mailbox `{id}`, taking a seat of `module:<code>` if the
/// mailbox is active. Its requirements must be held first and nothing it excludes may be.
/// Assigning a module the mailbox holds changes nothing.
#[utoipa::path(
    tag = "modules",
    security(("bearer" = [])),
    params(("id" = MailboxId, Path), ("code" = String, Path, description = "A per-mailbox module")),
    responses(
        (status = 200, description = "The mailbox with its modules", body = MailboxView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "A requirement is missing (`module-required`), an exclusion is held (`module-excluded`), no seat is free (`quota-exceeded`), the module is retired or the mailbox is a role address (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A per-customer module", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/mailboxes/{id}/modules/{code}")]
pub async fn assign_mailbox_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(MailboxId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, code) = path.into_inner();
    let (mailbox, modules_held) = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let (mut mailbox, node) = super::mailboxes::locked_mailbox(conn, &principal, id)?;
            let holding = Holding::read(conn, code, Unit::PerMailbox, |conn| {
                modules::of_mailbox(conn, mailbox.id)
            })?;
            if mailbox.origin == Origin::Role {
                return Err(ApiError::Conflict(
                    "postmaster@ and abuse@ take no seats and hold no modules.".to_owned(),
                ));
            }
            let Some(after) = holding.joining()? else {
                return Ok((mailbox, holding.before));
            };
            if mailbox.takes_seat() {
                usage::take(conn, &node, &module_key(&holding.code), today())??;
            }
            modules::assign_mailbox(conn, mailbox.id, std::slice::from_ref(&holding.code))?;
            mailboxes::save(conn, &mut mailbox)?;
            holding.record(
                conn,
                &principal,
                node.id,
                Action::MailboxModuleAssign,
                ("mailbox", mailbox.id.to_string()),
                &after,
            )?;
            Ok::<_, ApiError>((mailbox, after))
        })
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
    security(("bearer" = [])),
    params(("id" = MailboxId, Path), ("code" = String, Path, description = "A per-mailbox module")),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "Another held module requires it (`module-required`), or it is automatic (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A per-customer module", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/mailboxes/{id}/modules/{code}")]
pub async fn remove_mailbox_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(MailboxId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, code) = path.into_inner();
    store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let (mut mailbox, node) = super::mailboxes::locked_mailbox(conn, &principal, id)?;
            let holding = Holding::read(conn, code, Unit::PerMailbox, |conn| {
                modules::of_mailbox(conn, mailbox.id)
            })?;
            let after = holding.leaving()?;
            if holding.rules.auto_assign && !holding.rules.retired {
                return Err(ApiError::Conflict(format!(
                    "{} follows every mailbox; disable the mailbox to free its seat.",
                    holding.code
                )));
            }
            modules::unassign_mailbox(conn, mailbox.id, &holding.code)?;
            if mailbox.takes_seat() {
                usage::add(conn, &node.lineage(), &module_key(&holding.code), -1)?;
            }
            mailboxes::save(conn, &mut mailbox)?;
            holding.record(
                conn,
                &principal,
                node.id,
                Action::MailboxModuleRemove,
                ("mailbox", mailbox.id.to_string()),
                &after,
            )?;
            Ok::<_, ApiError>(())
        })
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeModuleView {
    #[schema(example = "m365")]
    pub code: String,
    pub assigned_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeModules {
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
    security(("bearer" = [])),
    params(("id" = NodeId, Path, description = "The customer")),
    responses(
        (status = 200, description = "Its modules", body = NodeModules),
        Guarded,
        (status = 422, description = "Not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/modules")]
pub async fn list_node_modules(
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
    security(("bearer" = [])),
    params(("id" = NodeId, Path, description = "The customer"), ("code" = String, Path, description = "A per-customer module")),
    responses(
        (status = 200, description = "The customer's modules", body = NodeModules),
        Guarded,
        (status = 409, description = "A requirement is missing (`module-required`), an exclusion is held (`module-excluded`), no seat is free (`quota-exceeded`), or the module is retired (`conflict`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A per-mailbox module, or not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/nodes/{id}/modules/{code}")]
pub async fn assign_node_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
) -> Result<web::Json<NodeModules>, ApiError> {
    let (id, code) = path.into_inner();
    let held = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let node = customer(principal.may_manage(nodes::find_locked(conn, id, &[])?)?)?;
            let holding = Holding::read(conn, code, Unit::PerCustomer, |conn| {
                Ok(modules::of_node(conn, node.id)?.into_keys().collect())
            })?;
            if let Some(after) = holding.joining()? {
                modules::assign_node(conn, &node, &holding.code, today())??;
                holding.record(
                    conn,
                    &principal,
                    node.id,
                    Action::NodeModuleAssign,
                    ("node", node.id.to_string()),
                    &after,
                )?;
            }
            node_modules(conn, node.id)
        })
    })
    .await?;
    Ok(web::Json(held))
}

/// Removes per-customer module `{code}` from customer `{id}`, returning its seat; refused while
/// another module the customer holds requires it.
#[utoipa::path(
    tag = "modules",
    security(("bearer" = [])),
    params(("id" = NodeId, Path, description = "The customer"), ("code" = String, Path, description = "A per-customer module")),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "Another held module requires it (`module-required`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A per-mailbox module, or not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/nodes/{id}/modules/{code}")]
pub async fn remove_node_module(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, code) = path.into_inner();
    store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let node = customer(principal.may_manage(nodes::find_locked(conn, id, &[])?)?)?;
            let holding = Holding::read(conn, code, Unit::PerCustomer, |conn| {
                Ok(modules::of_node(conn, node.id)?.into_keys().collect())
            })?;
            let after = holding.leaving()?;
            modules::unassign_node(conn, &node, &holding.code)?;
            holding.record(
                conn,
                &principal,
                node.id,
                Action::NodeModuleRemove,
                ("node", node.id.to_string()),
                &after,
            )?;
            Ok::<_, ApiError>(())
        })
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
