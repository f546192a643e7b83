//! Plans (issue 16): defining, changing, retiring and deleting a node's plans, and putting a
//! customer on one (or taking it off). A plan's grants are ordinary allocations from the customer's
//! parent: they are made by [`allocations::create`](super::allocations::create), under exactly the
//! rules of any grant (the parent's room, its oversell ratio, the retired modules), and ended as a
//! move ends them; its modules are assigned by [`modules::set_on_customer`] (the catalogue's rules,
//! a seat each); its settings are set as a PATCH of the customer sets them. All in the caller's one
//! transaction: a refusal anywhere leaves nothing behind.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde_json::json;

use super::Ctx;
use super::allocations::{NewGrant, end_recorded, known_resource};
use super::modules;
use crate::auth::guard::{Administer, Authorised, Manage};
use crate::domain::audit::Action;
use crate::domain::catalogue::Unit;
use crate::domain::ids::NodeId;
use crate::domain::plans::{self, Content, Shortfall};
use crate::domain::quota::Grant;
use crate::domain::tree::NodeKind;
use crate::error::{ApiError, FieldError};
use crate::store::allocations::{self, Allocation};
use crate::store::nodes::Node;
use crate::store::plans::{NewPlan, NodePlan, Plan, PlanVersion};
use crate::store::{self, DbConnection, usage};

/// A plan as its audit records show it: what is not content, and the current content.
fn audit_view(plan: &Plan, version: &PlanVersion) -> serde_json::Value {
    let c = &version.content;
    json!({
        "node_id": plan.node_id, "code": plan.code, "name": plan.name,
        "description": plan.description, "retired": plan.retired,
        "current_version": plan.current_version, "resources": c.resources,
        "modules": c.modules, "settings": c.settings, "term_months": c.term_months,
    })
}

/// What a customer's plan is, for its audit records.
fn on_view(on: Option<&NodePlan>, code: Option<&str>) -> serde_json::Value {
    match on {
        None => serde_json::Value::Null,
        Some(on) => json!({
            "plan_id": on.plan_id, "code": code, "version": on.plan_version,
            "starts_on": on.starts_on,
        }),
    }
}

/// Refused unless every resource of `content` is known to the catalogue and every module is a
/// per-customer module of it; each fault under its field (`resources.<key>`, `modules.<code>`).
fn check_catalogue(conn: &mut DbConnection, content: &Content) -> Result<(), ApiError> {
    let mut faults = Vec::new();
    for key in content.resources.keys() {
        match known_resource(conn, key) {
            Ok(_) => {}
            Err(ApiError::Validation(errors)) => faults.extend(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(format!("resources.{key}"), e.message)),
            ),
            Err(other) => return Err(other),
        }
    }
    let catalogue = store::modules::catalogue(&store::modules::all(conn)?);
    for code in &content.modules {
        match catalogue.get(code) {
            None => faults.push(FieldError::new(
                format!("modules.{code}"),
                format!("{code} is not in the module catalogue"),
            )),
            Some(rules) if rules.unit != Unit::PerCustomer => faults.push(FieldError::new(
                format!("modules.{code}"),
                format!("{code} is a per-mailbox module: a plan includes per-customer modules"),
            )),
            Some(_) => {}
        }
    }
    if faults.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(faults))
    }
}

/// The refusal of a code the defining node has already.
fn code_taken(code: &str) -> ApiError {
    ApiError::NameTaken(format!(
        "This node already has a plan with the code {code}."
    ))
}

/// Defines a plan at `definer` (the owner or a reseller) with `content` as its version 1.
pub(crate) fn create(
    conn: &mut DbConnection,
    definer: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    new: NewPlan,
    content: Content,
) -> Result<(Plan, PlanVersion), ApiError> {
    if definer.kind == NodeKind::Customer {
        return Err(ApiError::validation(
            "id",
            "a customer sells nothing: plans are defined by the owner or a reseller",
        ));
    }
    check_catalogue(conn, &content)?;
    let code = new.code.clone();
    let (plan, version) = store::plans::insert(conn, new, &content)
        .map_err(|e| ApiError::unless_unique(e, || code_taken(&code)))?;
    ctx.record(
        conn,
        definer.id,
        Action::PlanCreate,
        ("plan", plan.id.to_string()),
        None,
        Some(audit_view(&plan, &version)),
    )?;
    Ok((plan, version))
}

/// A plan and its current version, 404 when there is none; locked (exclusive: for a change).
pub(crate) fn find(
    conn: &mut DbConnection,
    id: crate::domain::ids::PlanId,
    exclusive: bool,
) -> Result<(Plan, PlanVersion), ApiError> {
    store::plans::lock(conn, id, exclusive)?;
    let plan = store::plans::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let version =
        store::plans::find_version(conn, id, plan.current_version)?.ok_or(ApiError::NotFound)?;
    Ok((plan, version))
}

/// A change to a plan: only what is given changes. A different content makes a new version.
#[derive(Debug, Default)]
pub(crate) struct PlanChange {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub content: Option<Content>,
    pub retired: Option<bool>,
}

/// Changes `plan` (read with [`find`], exclusive) as `change` says, once `precondition` accepts
/// its version (the request's `If-Match`). New content is a new version (the old ones are kept;
/// customers stay on theirs until synced); retiring is audited as `plan.retire`, anything else as
/// `plan.update`. A change that changes nothing is not written.
pub(crate) fn update(
    conn: &mut DbConnection,
    definer: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    (mut plan, version): (Plan, PlanVersion),
    change: PlanChange,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
) -> Result<(Plan, PlanVersion), ApiError> {
    precondition(plan.version)?;
    let (before, before_version) = (plan.clone(), version.clone());
    if let Some(name) = change.name {
        plan.name = name;
    }
    if let Some(description) = change.description {
        plan.description = description;
    }
    let retiring = change.retired == Some(true) && !plan.retired;
    if let Some(retired) = change.retired {
        plan.retired = retired;
    }
    let mut version = version;
    if let Some(content) = change.content.filter(|c| *c != version.content) {
        check_catalogue(conn, &content)?;
        plan.current_version += 1;
        version = store::plans::add_version(conn, plan.id, plan.current_version, &content)?;
    }
    if plan == before {
        return Ok((plan, version));
    }
    store::plans::save(conn, &mut plan)?;
    ctx.record(
        conn,
        definer.id,
        if retiring {
            Action::PlanRetire
        } else {
            Action::PlanUpdate
        },
        ("plan", plan.id.to_string()),
        Some(audit_view(&before, &before_version)),
        Some(audit_view(&plan, &version)),
    )?;
    Ok((plan, version))
}

/// Deletes `plan` (read with [`find`], exclusive) with its versions: refused while any customer is
/// on it (retire it instead).
pub(crate) fn delete(
    conn: &mut DbConnection,
    definer: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    (plan, version): (Plan, PlanVersion),
) -> Result<(), ApiError> {
    let on = store::plans::customers_on(conn, plan.id)?;
    if on > 0 {
        return Err(ApiError::Conflict(format!(
            "{on} customer(s) are on plan {}: retire it instead (PATCH with \"retired\": true); they keep it, and it is applied anew nowhere.",
            plan.code
        )));
    }
    store::plans::delete(conn, plan.id)?;
    ctx.record(
        conn,
        definer.id,
        Action::PlanDelete,
        ("plan", plan.id.to_string()),
        Some(audit_view(&plan, &version)),
        None,
    )?;
    Ok(())
}

/// Whether `plan` may be applied under `parent`: defined by it or one of its ancestors.
fn available_under(plan: &Plan, parent: &Node) -> bool {
    parent.lineage().contains(&plan.node_id)
}

/// The customer as a plan change sees it: its node (guarded twice: the parent side administers
/// its grants, and manages its modules).
pub(crate) struct Customer<'a> {
    pub node: &'a Authorised<Administer>,
    pub managed: &'a Authorised<Manage>,
}

/// What putting a customer on a plan (or taking it off) did.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The allocations the plan granted.
    pub allocations: Vec<Allocation>,
    /// With `allow_over_limit`: the resources the customer now uses beyond its limit.
    pub over_limit: Vec<Shortfall>,
}

/// The allocations the customer's current plan granted that still count on or after `day`.
fn live_plan_grants(
    conn: &mut DbConnection,
    node: NodeId,
    day: NaiveDate,
) -> Result<Vec<Allocation>, ApiError> {
    let mut live = Vec::new();
    for id in store::plans::grants_of(conn, node)? {
        if let Some(a) = allocations::find(conn, id)?
            && a.active
            && a.ends_on.is_none_or(|end| end > day)
        {
            live.push(a);
        }
    }
    Ok(live)
}

/// The resources whose use the change from `ending` (the old plan's grants, ended on `day`) to
/// `granting` would leave above the customer's limit on `day`.
fn shortfalls(
    conn: &mut DbConnection,
    node: NodeId,
    ending: &[Allocation],
    granting: &std::collections::BTreeMap<String, Grant>,
    day: NaiveDate,
) -> Result<Vec<Shortfall>, ApiError> {
    let resources: BTreeSet<&str> = ending
        .iter()
        .map(|a| a.resource.as_str())
        .chain(granting.keys().map(String::as_str))
        .collect();
    let mut changes = Vec::new();
    for resource in resources {
        let before = allocations::limit_of(conn, node, resource, None)?;
        let mut after = before.clone();
        for old in ending.iter().filter(|a| a.resource == resource) {
            let grant = old.grant();
            if let Some(i) = after.iter().position(|g| *g == grant) {
                after.remove(i);
            }
            if grant.span.start < day {
                after.push(Grant {
                    amount: grant.amount,
                    span: crate::domain::quota::Span {
                        start: grant.span.start,
                        end: Some(day),
                    },
                });
            }
        }
        after.extend(granting.get(resource).copied());
        changes.push(plans::Change {
            resource: resource.to_owned(),
            used: usage::used(conn, node, resource)?,
            before,
            after,
        });
    }
    Ok(plans::shortfalls(&changes, day))
}

/// Puts `customer` (locked by the caller with its parent) on version `version` of `plan` from
/// `starts_on` (today or later), in the caller's one transaction: the grants of the plan it was on
/// end on `starts_on`, the modules that plan included and this one does not are removed, the new
/// grants are made from the parent as any allocation is, the plan's modules assigned and its
/// settings set. Refused when the plan is retired or not available under the customer's parent
/// (defined by the parent or above), and, unless `allow_over_limit`, with `plan-does-not-fit`
/// when the customer's use would exceed a lowered limit. `action` is `plan.apply` or `plan.sync`.
pub(crate) fn apply(
    conn: &mut DbConnection,
    customer: Customer<'_>,
    ctx: &Ctx<'_>,
    (plan, version): (&Plan, &PlanVersion),
    starts_on: NaiveDate,
    allow_over_limit: bool,
    action: Action,
) -> Result<Applied, ApiError> {
    let node = customer.node;
    if node.kind != NodeKind::Customer {
        return Err(ApiError::validation(
            "id",
            "plans are applied to customers; a reseller's limits are its allocations",
        ));
    }
    if starts_on < ctx.today {
        return Err(ApiError::validation(
            "starts_on",
            "must be today or later: a plan does not change the past",
        ));
    }
    if let Some(fault) = crate::domain::quota::check_date(starts_on).err() {
        return Err(ApiError::validation("starts_on", fault));
    }
    let parent = match node.parent_id {
        Some(parent) => store::nodes::find(conn, parent)?.ok_or(ApiError::NotFound)?,
        None => return Err(ApiError::NotFound),
    };
    if !available_under(plan, &parent) {
        return Err(ApiError::validation(
            "plan",
            "is not available to this customer: it was defined outside its parent's lineage",
        ));
    }
    let previous = store::plans::of_node(conn, node.id)?;
    let same_plan = previous.as_ref().is_some_and(|p| p.plan_id == plan.id);
    if plan.retired && !same_plan {
        return Err(ApiError::Conflict(format!(
            "Plan {} is retired: it is applied anew nowhere (its customers keep it).",
            plan.code
        )));
    }
    let old_content = match &previous {
        Some(p) => store::plans::find_version(conn, p.plan_id, p.plan_version)?.map(|v| v.content),
        None => None,
    };
    let old_code = match &previous {
        Some(p) => store::plans::find(conn, p.plan_id)?.map(|p| p.code),
        None => None,
    };
    let ending = live_plan_grants(conn, node.id, starts_on)?;
    let granting = version.content.grants(starts_on);
    let short = shortfalls(conn, node.id, &ending, &granting, starts_on)?;
    if !short.is_empty() && !allow_over_limit {
        return Err(ApiError::PlanDoesNotFit(short));
    }

    // The old plan's modules the new one lacks leave (their seats come back) before its grants end.
    let held: BTreeSet<String> = store::modules::of_node(conn, node.id)?
        .into_keys()
        .collect();
    if let Some(old) = &old_content {
        for code in old.modules.difference(&version.content.modules) {
            if held.contains(code) {
                modules::set_on_customer(conn, ctx, customer.managed, code.clone(), false)?;
            }
        }
    }
    for mut old in ending {
        end_recorded(
            conn,
            ctx,
            node.id,
            Action::AllocationEnd,
            &mut old,
            starts_on,
        )?;
    }
    let mut granted = Vec::new();
    for (resource, grant) in granting {
        let new = NewGrant {
            resource,
            grant,
            active: true,
            description: Some(format!("Plan {}, version {}", plan.code, version.number)),
        };
        granted.push(super::allocations::create(conn, node, ctx, new)?);
    }
    for code in &version.content.modules {
        modules::set_on_customer(conn, ctx, customer.managed, code.clone(), true)?;
    }
    if !version.content.settings.is_empty() {
        let current = store::nodes::find(conn, node.id)?.ok_or(ApiError::NotFound)?;
        super::nodes::set_plan_settings(conn, ctx, &current, version.content.settings)?;
    }
    let on = store::plans::put_node(conn, node.id, plan.id, version.number, starts_on)?;
    let ids: Vec<_> = granted.iter().map(|a| a.id).collect();
    store::plans::add_grants(conn, node.id, &ids)?;
    ctx.record(
        conn,
        node.id,
        action,
        ("node", node.id.to_string()),
        Some(on_view(previous.as_ref(), old_code.as_deref())),
        Some(on_view(Some(&on), Some(&plan.code))),
    )?;
    Ok(Applied {
        allocations: granted,
        over_limit: short,
    })
}

/// Takes `customer` (locked by the caller with its parent) off its plan on `ends_on` (today or
/// later): the plan's grants end that day and the modules it included leave; its settings stay.
/// 404 when it is on no plan; unless `allow_over_limit`, refused with `plan-does-not-fit` when its
/// use would exceed what remains.
pub(crate) fn remove(
    conn: &mut DbConnection,
    customer: Customer<'_>,
    ctx: &Ctx<'_>,
    ends_on: NaiveDate,
    allow_over_limit: bool,
) -> Result<Applied, ApiError> {
    let node = customer.node;
    if ends_on < ctx.today {
        return Err(ApiError::InvalidQuery(vec![FieldError::new(
            "ends_on",
            "must be today or later: a plan does not change the past",
        )]));
    }
    let Some(previous) = store::plans::of_node(conn, node.id)? else {
        return Err(ApiError::NotFound);
    };
    let plan = store::plans::find(conn, previous.plan_id)?;
    let old = store::plans::find_version(conn, previous.plan_id, previous.plan_version)?;
    let ending = live_plan_grants(conn, node.id, ends_on)?;
    let short = shortfalls(conn, node.id, &ending, &Default::default(), ends_on)?;
    if !short.is_empty() && !allow_over_limit {
        return Err(ApiError::PlanDoesNotFit(short));
    }
    let held: BTreeSet<String> = store::modules::of_node(conn, node.id)?
        .into_keys()
        .collect();
    if let Some(old) = &old {
        for code in old.content.modules.intersection(&held) {
            modules::set_on_customer(conn, ctx, customer.managed, code.clone(), false)?;
        }
    }
    for mut old in ending {
        end_recorded(conn, ctx, node.id, Action::AllocationEnd, &mut old, ends_on)?;
    }
    store::plans::remove_node(conn, node.id)?;
    ctx.record(
        conn,
        node.id,
        Action::PlanRemove,
        ("node", node.id.to_string()),
        Some(on_view(
            Some(&previous),
            plan.as_ref().map(|p| p.code.as_str()),
        )),
        None,
    )?;
    Ok(Applied {
        allocations: Vec::new(),
        over_limit: short,
    })
}
