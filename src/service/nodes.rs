//! Nodes of the tree: creating a reseller or a customer, changing a node's details and settings
//! (its status, and the local-part case that keys its addresses), deleting a node, and moving one
//! with its subtree under another parent.

use chrono::NaiveDate;
use serde_json::json;

use super::Ctx;
use super::allocations::{end_recorded, insert_recorded};
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::quota::{self, Grant, Span};
use crate::domain::tree::{self, NodeKind};
use crate::error::{ApiError, FieldError};
use crate::store::allocations::{self, Allocation, NewAllocation};
use crate::store::nodes::{self, NewNode, Node, NodeChanges};
use crate::store::{self, DbConnection};

/// A node as its audit records show it.
fn audit_view(node: &Node) -> serde_json::Value {
    json!({
        "kind": node.kind, "name": node.name, "description": node.description,
        "contact_phone": node.contact_phone, "contact_email": node.contact_email,
        "status": node.status, "parent_id": node.parent_id,
        "max_aliases_per_mailbox": node.max_aliases_per_mailbox, "auto_enrol": node.auto_enrol,
        "inbound_recipients": node.inbound_recipients, "role_recipient": node.role_recipient,
        "local_part_case": node.local_part_case,
    })
}

/// Maps the database's refusal of a duplicate sibling name (a race the earlier check lost).
fn name_taken(err: diesel::result::Error) -> ApiError {
    ApiError::unless_unique(err, || {
        ApiError::NameTaken("Another node under this parent already has this name.".to_owned())
    })
}

/// The refusal of a child named like one `parent` has already.
fn child_named(parent: &Node, name: &str) -> ApiError {
    ApiError::NameTaken(format!(
        "\"{}\" already has a child named \"{name}\".",
        parent.name
    ))
}

/// Creates a reseller or a customer under `parent` (locked by the caller): refused if `parent`
/// cannot have a child of that kind, or has one of that name.
pub(crate) fn create_child(
    conn: &mut DbConnection,
    parent: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    new: NewNode,
) -> Result<Node, ApiError> {
    if !parent.kind.may_parent(new.kind) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "kind",
            format!("a {} cannot have a {} as a child", parent.kind, new.kind),
        )]));
    }
    if nodes::sibling_named(conn, parent.id, &new.name, None)? {
        return Err(child_named(parent, &new.name));
    }
    let node = nodes::insert_child(conn, parent, new).map_err(name_taken)?;
    ctx.record(
        conn,
        node.id,
        Action::NodeCreate,
        ("node", node.id.to_string()),
        None,
        Some(audit_view(&node)),
    )?;
    Ok(node)
}

/// Changes `node` (locked by the caller) as `changes` say: refused for customer settings on
/// another kind, if `precondition` refuses the node as read (the API's `If-Match`), or if a sibling
/// has the new name. A new local-part case keys every address of the customer again, refused
/// (`address-collision`) when addresses differing only in case would become one.
pub(crate) fn update(
    conn: &mut DbConnection,
    node: Authorised<Administer>,
    ctx: &Ctx<'_>,
    changes: NodeChanges,
    precondition: impl FnOnce(&Node) -> Result<(), ApiError>,
) -> Result<Node, ApiError> {
    let mut node = node.into_inner();
    if node.kind != NodeKind::Customer {
        for (field, set) in [
            (
                "max_aliases_per_mailbox",
                changes.max_aliases_per_mailbox.is_some(),
            ),
            ("auto_enrol", changes.auto_enrol.is_some()),
            ("inbound_recipients", changes.inbound_recipients.is_some()),
            ("role_recipient", changes.role_recipient.is_some()),
            ("local_part_case", changes.local_part_case.is_some()),
        ] {
            if set {
                return Err(ApiError::validation(field, "is a customer setting"));
            }
        }
    }
    precondition(&node)?;
    if let (Some(name), Some(parent)) = (&changes.name, node.parent_id)
        && nodes::sibling_named(conn, parent, name, Some(node.id))?
    {
        return Err(ApiError::NameTaken(format!(
            "A sibling is already named \"{name}\"."
        )));
    }
    let before = audit_view(&node);
    if let Some(case) = changes
        .local_part_case
        .filter(|c| *c != node.local_part_case)
    {
        // Every address is keyed again as the customer now compares local parts (under its lock,
        // taken by the caller): the check finds them by the new keys.
        store::identity::rekey_customer(conn, node.id, case)?
            .map_err(ApiError::AddressCollision)?;
    }
    changes.apply(&mut node);
    nodes::save(conn, &mut node).map_err(name_taken)?;
    ctx.record(
        conn,
        node.id,
        Action::NodeUpdate,
        ("node", node.id.to_string()),
        Some(before),
        Some(audit_view(&node)),
    )?;
    Ok(node)
}

/// Sets the customer settings a plan includes on customer `node` (locked by the caller): written
/// and audited as `node.update`, as a PATCH of them would be, when they change something.
pub(super) fn set_plan_settings(
    conn: &mut DbConnection,
    ctx: &Ctx<'_>,
    node: &Node,
    settings: crate::domain::plans::PlanSettings,
) -> Result<(), ApiError> {
    let changes = NodeChanges {
        max_aliases_per_mailbox: settings.max_aliases_per_mailbox,
        auto_enrol: settings.auto_enrol,
        inbound_recipients: settings.inbound_recipients,
        ..NodeChanges::default()
    };
    let mut changed = node.clone();
    changes.apply(&mut changed);
    if changed == *node {
        return Ok(());
    }
    nodes::save(conn, &mut changed)?;
    ctx.record(
        conn,
        node.id,
        Action::NodeUpdate,
        ("node", node.id.to_string()),
        Some(audit_view(node)),
        Some(audit_view(&changed)),
    )?;
    Ok(())
}

/// Deletes `node` (locked by the caller). Refused while it has children, live allocations to
/// children, or (without `cascade`) anything it holds; its own allocations end today, returning
/// the seats to its parent. With `cascade` (a customer only) what it holds goes with it: each
/// domain through [`super::domains::remove`], the domain workflow's removal.
pub(crate) fn delete(
    conn: &mut DbConnection,
    node: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    cascade: bool,
) -> Result<(), ApiError> {
    if cascade && !tree::may_cascade(node.kind) {
        return Err(ApiError::validation(
            "cascade",
            "only a customer can be deleted with everything it holds",
        ));
    }
    let today = ctx.today;
    let in_use = if cascade {
        Default::default()
    } else {
        store::usage::totals(conn, node.id)?
    };
    let still = tree::delete_blockers(
        nodes::count_children(conn, node.id)?,
        allocations::has_live_grants_by(conn, node.id, today)?,
        &in_use,
    );
    if !still.is_empty() {
        return Err(ApiError::NotEmpty(format!(
            "\"{}\" still has {}.",
            node.name,
            still.join(", ")
        )));
    }
    for mut allocation in allocations::live_to(conn, node.id, today)? {
        end_recorded(
            conn,
            ctx,
            node.id,
            Action::AllocationEnd,
            &mut allocation,
            today,
        )?;
    }
    // With `cascade`, what the customer holds goes with it (the audit trail keeps it), and what
    // it used leaves its counters and its ancestors' sums.
    for domain in store::domains::of_node(conn, node.id)? {
        super::domains::remove(conn, ctx, Action::DomainDelete, true, node, domain)?;
    }
    for group in store::groups::of_node(conn, node.id)? {
        store::groups::delete(conn, group.id)?;
    }
    store::modules::forget_node(conn, node.id)?;
    // Off its plan: the plan's customers are live nodes, and the plan may then be deleted.
    store::plans::remove_node(conn, node.id)?;
    let used = store::usage::totals(conn, node.id)?;
    store::usage::shift(conn, &node.lineage(), &[], &used, ctx.today)?;
    super::seats::released_along(conn, ctx, &node.lineage())?;
    nodes::soft_delete(conn, node.id)?;
    ctx.record(
        conn,
        node.id,
        Action::NodeDelete,
        ("node", node.id.to_string()),
        Some(audit_view(node)),
        None,
    )
    .map_err(ApiError::from)
}

/// Moves `node` (locked by the caller, with `new_parent`), with its subtree, under `new_parent` in
/// one step: its live allocations from the old parent end today and equal ones from the new
/// parent begin today (or when they were due to), refused if the new parent lacks room, cannot
/// hold it, or has a child of its name. Moving under its own parent changes nothing.
pub(crate) fn move_under(
    conn: &mut DbConnection,
    node: Authorised<Administer>,
    new_parent: &Authorised<Administer>,
    ctx: &Ctx<'_>,
) -> Result<Node, ApiError> {
    let mut node = node.into_inner();
    if node.contains(new_parent) {
        return Err(ApiError::validation(
            "parent_id",
            "a node cannot move under itself or its own subtree",
        ));
    }
    if !new_parent.kind.may_parent(node.kind) {
        return Err(ApiError::validation(
            "parent_id",
            format!(
                "a {} cannot have a {} as a child",
                new_parent.kind, node.kind
            ),
        ));
    }
    if node.parent_id == Some(new_parent.id) {
        return Ok(node);
    }
    if nodes::sibling_named(conn, new_parent.id, &node.name, None)? {
        return Err(child_named(new_parent, &node.name));
    }
    carry_allocations(conn, &node, new_parent, ctx)?;
    // The subtree's usage leaves the old ancestors (the node's lineage without itself) and joins
    // the new ones.
    let mut leaving = node.lineage();
    leaving.pop();
    let before = audit_view(&node);
    nodes::reparent(conn, &mut node, new_parent).map_err(name_taken)?;
    let moved_usage = store::usage::totals(conn, node.id)?;
    // The ancestors it joins (not those it keeps) take its use on as seats: none may go past its
    // own limit (issue 16), or the move is refused naming the first that would.
    let joining: Vec<NodeId> = new_parent
        .lineage()
        .into_iter()
        .filter(|id| !leaving.contains(id))
        .collect();
    store::usage::room_along(conn, &joining, &moved_usage, ctx.today)??;
    store::usage::shift(
        conn,
        &leaving,
        &new_parent.lineage(),
        &moved_usage,
        ctx.today,
    )?;
    super::seats::released_along(conn, ctx, &leaving)?;
    super::seats::joined_along(conn, ctx, &new_parent.lineage(), &joining, &moved_usage)?;
    ctx.record(
        conn,
        node.id,
        Action::NodeMove,
        ("node", node.id.to_string()),
        Some(before),
        Some(audit_view(&node)),
    )?;
    Ok(node)
}

/// Ends the live allocations to `node` today and grants them again from `new_parent`, once every
/// resource's carried grants fit under what `new_parent` holds.
fn carry_allocations(
    conn: &mut DbConnection,
    node: &Node,
    new_parent: &Node,
    ctx: &Ctx<'_>,
) -> Result<(), ApiError> {
    let today = ctx.today;
    let live = allocations::live_to(conn, node.id, today)?;
    fits_under(conn, new_parent, &live, today)?;
    // A plan's grants carried are still its grants: the next plan change ends them.
    let of_plan = store::plans::grants_of(conn, node.id)?;
    for mut old in live {
        let planned = of_plan.contains(&old.id);
        let before = end_recorded(conn, ctx, node.id, Action::AllocationEnd, &mut old, today)?;
        let carried = quota::carried(before.grant(), today);
        let new = NewAllocation {
            node_id: node.id,
            grantor_id: Some(new_parent.id),
            resource: before.resource,
            amount: carried.amount,
            starts_on: carried.span.start,
            ends_on: carried.span.end,
            active: true,
            description: before.description,
        };
        let carried = insert_recorded(conn, ctx, node.id, Action::AllocationCreate, new)?;
        if planned {
            store::plans::add_grants(conn, node.id, &[carried.id])?;
        }
    }
    Ok(())
}

/// Whether the `live` allocations, carried to `new_parent` on `today`, fit beside what it has
/// granted already, resource by resource.
fn fits_under(
    conn: &mut DbConnection,
    new_parent: &Node,
    live: &[Allocation],
    today: NaiveDate,
) -> Result<(), ApiError> {
    let mut resources: Vec<&str> = live.iter().map(|a| a.resource.as_str()).collect();
    resources.sort_unstable();
    resources.dedup();
    for resource in resources {
        let moved: Vec<Grant> = live
            .iter()
            .filter(|a| a.resource == resource)
            .map(|a| quota::carried(a.grant(), today))
            .collect();
        quota::fits(
            new_parent.id,
            resource,
            &allocations::limit_of(conn, new_parent.id, resource, None)?,
            crate::store::oversell::of(conn, new_parent.id, resource)?,
            &allocations::granted_by(conn, new_parent.id, resource, None)?,
            &moved,
            Span::from(today),
        )?;
    }
    Ok(())
}
