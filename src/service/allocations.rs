//! Allocations: a parent's grants of a resource to a child over a span of days. Granting one,
//! changing one (ending is such a change), and the steps the licence and the tree's moves and
//! deletions share with them: the resource check, ending or inserting a grant with its audit
//! record, and the audit view itself.

use chrono::NaiveDate;

use super::Ctx;
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::{AllocationId, NodeId};
use crate::domain::quota::{self, Grant, GrantChange};
use crate::domain::resource::Resource;
use crate::error::{ApiError, FieldError};
use crate::store::allocations::{self, Allocation, NewAllocation};
use crate::store::nodes::{self, Node};
use crate::store::{DbConnection, modules, oversell, usage};

/// An allocation as its audit records show it.
pub(super) fn audit_view(a: &Allocation) -> serde_json::Value {
    #[derive(serde::Serialize)]
    struct Audited<'a> {
        node_id: NodeId,
        grantor_id: Option<NodeId>,
        resource: &'a str,
        amount: i64,
        starts_on: NaiveDate,
        ends_on: Option<NaiveDate>,
        active: bool,
        description: &'a Option<String>,
    }
    super::audit_json(Audited {
        node_id: a.node_id,
        grantor_id: a.grantor_id,
        resource: &a.resource,
        amount: a.amount,
        starts_on: a.starts_on,
        ends_on: a.ends_on,
        active: a.active,
        description: &a.description,
    })
}

/// The resource, if well-formed and known to the catalogue.
pub(super) fn known_resource(conn: &mut DbConnection, key: &str) -> Result<Resource, ApiError> {
    let resource: Resource = key
        .parse()
        .map_err(|e: crate::domain::resource::BadResource| {
            ApiError::validation("resource", e.to_string())
        })?;
    if let Some(code) = resource.module_code() {
        // Shared, so that the module cannot be removed before the grant commits.
        modules::lock(conn, &[code], false)?;
    }
    if !modules::exists(conn, &resource)? {
        return Err(ApiError::validation(
            "resource",
            format!("`{resource}` is not in the module catalogue"),
        ));
    }
    Ok(resource)
}

/// Ends `allocation` on `day` and records `action` for it at node `at`; returns it as it was.
pub(super) fn end_recorded(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    at: NodeId,
    action: Action,
    allocation: &mut Allocation,
    day: NaiveDate,
) -> Result<Allocation, ApiError> {
    let before = allocations::end(conn, allocation, day)?;
    ctx.record(
        conn,
        at,
        action,
        ("allocation", allocation.id.to_string()),
        Some(audit_view(&before)),
        Some(audit_view(allocation)),
    )?;
    Ok(before)
}

/// Inserts `new` and records `action` for it at node `at`.
pub(super) fn insert_recorded(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    at: NodeId,
    action: Action,
    new: NewAllocation,
) -> Result<Allocation, ApiError> {
    let allocation = allocations::insert(conn, new)?;
    ctx.record(
        conn,
        at,
        action,
        ("allocation", allocation.id.to_string()),
        None,
        Some(audit_view(&allocation)),
    )?;
    Ok(allocation)
}

/// One grant's change: the allocation changing (none for a new one) and its grant before and after
/// (none while inactive).
struct Proposal {
    existing: Option<AllocationId>,
    old: Option<Grant>,
    new: Option<Grant>,
    allow_over_limit: bool,
}

/// Decides a change of one grant to `node` by its parent and, if it keeps the invariant, leaves the
/// caller to write it. Reads everything inside the caller's write transaction.
fn decide(
    conn: &mut DbConnection,
    node: &Node,
    grantor: NodeId,
    resource: &str,
    proposal: Proposal,
    today: NaiveDate,
) -> Result<(), ApiError> {
    let Proposal {
        existing: except,
        old,
        new,
        allow_over_limit,
    } = proposal;
    // Every node's use (a reseller's: its subtree's) is kept within its limit: lowering under it
    // needs `allow_over_limit`, at a customer as at a reseller (the use invariant, issue 16).
    let node_usage = Some(usage::used(conn, node.id, resource)?);
    GrantChange {
        resource,
        grantor: Some(grantor),
        node: node.id,
        grantor_limit: Some(&allocations::limit_of(conn, grantor, resource, None)?),
        grantor_ratio: oversell::of(conn, grantor, resource)?,
        node_ratio: oversell::of(conn, node.id, resource)?,
        grantor_other_grants: &allocations::granted_by(conn, grantor, resource, except)?,
        node_other_limit: &allocations::limit_of(conn, node.id, resource, except)?,
        node_grants: &allocations::granted_by(conn, node.id, resource, None)?,
        node_usage,
        today,
        allow_over_limit,
        old,
        new,
    }
    .decide()?;
    Ok(())
}

/// A grant asked for, its fields checked already.
#[derive(Debug)]
pub(crate) struct NewGrant {
    /// `users`, `domains` or `module:<code>`, not checked yet against the catalogue.
    pub resource: String,
    /// The units and the days they count.
    pub grant: Grant,
    pub active: bool,
    pub description: Option<String>,
}

/// Grants units of a resource to `node` from its parent: refused for the owner (its limits are
/// its licence), for a retired module, and with `quota-exceeded` if the parent would hand out more
/// than it holds on any day of the span.
pub(crate) fn create(
    conn: &mut DbConnection,
    node: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    grant: NewGrant,
) -> Result<Allocation, ApiError> {
    let grantor = node.parent_id.ok_or_else(|| {
        ApiError::validation(
            "id",
            "the owner's limits are its licence: use PUT /v1/licence",
        )
    })?;
    let resource = known_resource(conn, &grant.resource)?;
    if let Some(code) = resource.module_code()
        && modules::is_retired(conn, code)?
    {
        return Err(ApiError::Conflict(format!(
            "{code} is retired: it is granted no further (allocations that exist can still change)."
        )));
    }
    let resource = resource.key();
    let new = NewAllocation {
        node_id: node.id,
        grantor_id: Some(grantor),
        resource: resource.clone(),
        amount: grant.grant.amount,
        starts_on: grant.grant.span.start,
        ends_on: grant.grant.span.end,
        active: grant.active,
        description: grant.description,
    };
    let proposal = Proposal {
        existing: None,
        old: None,
        new: new.active.then_some(grant.grant),
        allow_over_limit: false,
    };
    decide(conn, node, grantor, &resource, proposal, ctx.today)?;
    let allocation = insert_recorded(conn, ctx, node.id, Action::AllocationCreate, new)?;
    super::seats::limit_changed(conn, ctx, node, &resource)?;
    Ok(allocation)
}

/// A change to an allocation: only the fields given change (`Some(None)` clears an optional one).
#[derive(Debug)]
pub(crate) struct Change {
    pub amount: Option<i64>,
    pub starts_on: Option<NaiveDate>,
    pub ends_on: Option<Option<NaiveDate>>,
    pub active: Option<bool>,
    pub description: Option<Option<String>>,
    /// Allow lowering a customer's limit below what it uses now.
    pub allow_over_limit: bool,
}

/// Allocation `id` for a change, with its node (for the guard): the node and the grantor are
/// locked, and the allocation is read again under the lock, since a move may have ended it
/// meanwhile. 404 when there is no such allocation.
pub(crate) fn find_for_change(
    conn: &mut DbConnection,
    id: AllocationId,
) -> Result<(Option<Node>, Allocation), ApiError> {
    let Some(first) = allocations::find(conn, id)? else {
        return Err(ApiError::NotFound);
    };
    let grantor: Vec<NodeId> = first.grantor_id.into_iter().collect();
    let found = nodes::find_locked(conn, first.node_id, &grantor)?;
    let allocation = allocations::find(conn, id)?.ok_or(ApiError::NotFound)?;
    Ok((found, allocation))
}

/// Changes `allocation` (one to `node`, read by [`find_for_change`]): refused if a former parent
/// granted it (or it is a licence line), for days out of order, and with `quota-exceeded` if the
/// parent would hand out more than it holds, or the node's children would hold more than it does,
/// on any day the change touches.
pub(crate) fn update(
    conn: &mut DbConnection,
    node: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    mut allocation: Allocation,
    change: Change,
) -> Result<Allocation, ApiError> {
    let Some(grantor) = allocation.grantor_id.filter(|g| Some(*g) == node.parent_id) else {
        return Err(ApiError::Conflict(
            "This allocation was granted by a former parent (or is a licence line) and can no longer be changed here.".to_owned(),
        ));
    };
    let before = allocation.clone();
    if let Some(amount) = change.amount {
        allocation.amount = amount;
    }
    if let Some(starts_on) = change.starts_on {
        allocation.starts_on = starts_on;
    }
    if let Some(ends_on) = change.ends_on {
        allocation.ends_on = ends_on;
    }
    if let Some(active) = change.active {
        allocation.active = active;
    }
    if let Some(description) = change.description {
        allocation.description = description;
    }
    let faults = quota::span_faults(allocation.starts_on, allocation.ends_on);
    if !faults.is_empty() {
        return Err(ApiError::Validation(
            faults
                .into_iter()
                .map(|(field, message)| FieldError::new(field, message))
                .collect(),
        ));
    }
    let resource = allocation.resource.clone();
    let proposal = Proposal {
        existing: Some(allocation.id),
        old: before.counted(),
        new: allocation.counted(),
        allow_over_limit: change.allow_over_limit,
    };
    decide(conn, node, grantor, &resource, proposal, ctx.today)?;
    allocations::save(conn, &mut allocation)?;
    ctx.record(
        conn,
        node.id,
        Action::AllocationUpdate,
        ("allocation", allocation.id.to_string()),
        Some(audit_view(&before)),
        Some(audit_view(&allocation)),
    )?;
    super::seats::limit_changed(conn, ctx, node, &resource)?;
    Ok(allocation)
}
