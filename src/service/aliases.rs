//! Aliases: further addresses of a mailbox, on any of its customer's domains, that deliver to it.
//! They take no seat; a customer allows at most `max_aliases_per_mailbox` per mailbox.

use serde_json::json;

use super::Ctx;
use crate::auth::guard::{Authorised, Manage};
use crate::domain::address::MailAddress;
use crate::domain::audit::Action;
use crate::domain::ids::AliasId;
use crate::error::ApiError;
use crate::store::aliases::Alias;
use crate::store::mailboxes::Mailbox;
use crate::store::{self, DbConnection};

/// An alias as its audit records show it.
fn audit_view(a: &Alias) -> serde_json::Value {
    json!({"address": a.address.stored(), "mailbox_id": a.mailbox_id})
}

/// Adds `address` as an alias of `mailbox` of customer `node` (read under its lock): on one of the
/// customer's domains, at an address no mailbox or alias has, within the customer's
/// `max_aliases_per_mailbox`.
pub(crate) fn create(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mailbox: &Mailbox,
    address: MailAddress,
) -> Result<Alias, ApiError> {
    let domains = store::domains::of_node(conn, node.id)?;
    let domain = super::mailboxes::free_address(conn, node, &domains, &address)?;
    let held = store::aliases::of_mailbox(conn, mailbox.id)?.len();
    if held >= usize::try_from(node.max_aliases_per_mailbox).unwrap_or(0) {
        return Err(ApiError::Conflict(format!(
            "{} has {held} aliases, the most this customer allows (max_aliases_per_mailbox).",
            mailbox.address.display()
        )));
    }
    let alias = Alias {
        id: AliasId::generate(),
        mailbox_id: mailbox.id,
        node_id: node.id,
        domain_id: domain.id,
        address,
        created_at: store::now(),
    };
    store::aliases::insert(conn, &alias, node.local_part_case)
        .map_err(|err| ApiError::unless_unique(err, || ApiError::AddressTaken))?;
    ctx.record(
        conn,
        node.id,
        Action::AliasCreate,
        ("alias", alias.id.to_string()),
        None,
        Some(audit_view(&alias)),
    )?;
    Ok(alias)
}

/// Removes `alias` of customer `node` (read under its lock), audited.
pub(crate) fn delete(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    alias: Alias,
) -> Result<(), ApiError> {
    store::aliases::delete(conn, alias.id)?;
    ctx.record(
        conn,
        node.id,
        Action::AliasDelete,
        ("alias", alias.id.to_string()),
        Some(audit_view(&alias)),
        None,
    )?;
    Ok(())
}
