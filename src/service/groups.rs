//! A customer's groups of mailboxes: creating and deleting them, and their membership. Each
//! write runs under the customer's lock, taken by the caller with the guard's check.

use serde_json::json;

use super::Ctx;
use crate::auth::guard::{Authorised, Manage};
use crate::domain::audit::Action;
use crate::domain::ids::{GroupId, MailboxId};
use crate::domain::tree::NodeKind;
use crate::error::ApiError;
use crate::store::groups::{self, Group};
use crate::store::{self, DbConnection, mailboxes};

/// Creates the group `name` of customer `node`: refused for a reseller or the owner, and when
/// the customer has a group of that name.
pub(crate) fn create(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    name: String,
) -> Result<Group, ApiError> {
    if node.kind != NodeKind::Customer {
        return Err(ApiError::validation(
            "id",
            "groups belong to customers; this node is a reseller or the owner",
        ));
    }
    if groups::name_exists(conn, node.id, &name)? {
        return Err(ApiError::NameTaken(format!(
            "The customer has a group named \"{name}\" already."
        )));
    }
    let group = Group {
        id: GroupId::generate(),
        node_id: node.id,
        name,
        created_at: store::now(),
    };
    groups::insert(conn, &group)?;
    ctx.record(
        conn,
        node.id,
        Action::GroupCreate,
        ("group", group.id.to_string()),
        None,
        Some(json!({"name": group.name})),
    )?;
    Ok(group)
}

/// Deletes `group` of customer `node`; its mailboxes stay.
pub(crate) fn delete(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    group: Group,
) -> Result<(), ApiError> {
    groups::delete(conn, group.id)?;
    ctx.record(
        conn,
        node.id,
        Action::GroupDelete,
        ("group", group.id.to_string()),
        Some(json!({"name": group.name})),
        None,
    )?;
    Ok(())
}

/// Makes mailbox `mailbox_id` of customer `node` a member of `group` (`member`) or not: 404 for a
/// mailbox of another customer. Making it what it is already changes nothing.
pub(crate) fn set_member(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    group: &Group,
    mailbox_id: MailboxId,
    member: bool,
) -> Result<(), ApiError> {
    let mailbox = mailboxes::find(conn, mailbox_id)?
        .filter(|m| m.node_id == node.id)
        .ok_or(ApiError::NotFound)?;
    let (changed, action) = if member {
        let added = groups::add_member(conn, group.id, mailbox.id)?;
        (added, Action::GroupAddMember)
    } else {
        let removed = groups::remove_member(conn, group.id, mailbox.id)?;
        (removed, Action::GroupRemoveMember)
    };
    if changed {
        ctx.record(
            conn,
            node.id,
            action,
            ("group", group.id.to_string()),
            None,
            Some(json!({"mailbox_id": mailbox.id, "address": mailbox.address.stored()})),
        )?;
    }
    Ok(())
}
