//! Mailboxes: creating one (a person's request, a row of an import, or the check's enrolment of an
//! address it saw first: one creation path for all three), changing its names, disabling and
//! enabling it (which frees and takes its seats), and deleting it (alone, or with its domain).
//!
//! Each active mailbox takes a `users` seat of its customer and a seat of every module it holds
//! (the automatic `base` at least). A domain's role addresses (postmaster@, abuse@) take no seat
//! and go only with their domain.

use std::collections::HashSet;

use super::Ctx;
use crate::auth::guard::{Authorised, Manage};
use crate::check::index::Enrolment;
use crate::check::{Outcome, Reason};
use crate::domain::address::MailAddress;
use crate::domain::audit::Action;
use crate::domain::ids::MailboxId;
use crate::domain::status::{NodeStatus, Status};
use crate::error::ApiError;
use crate::store::domains::Domain;
use crate::store::mailboxes::{Mailbox, Origin};
use crate::store::nodes::Node;
use crate::store::{self, DbConnection, mailboxes};

/// A new mailbox's fields, parsed (the API parses them from its body; an enrolment has only the
/// address).
pub struct NewMailbox {
    pub(crate) address: MailAddress,
    pub(crate) display_name: Option<String>,
    pub(crate) first_name: Option<String>,
    pub(crate) last_name: Option<String>,
    pub(crate) contact_email: Option<String>,
}

impl NewMailbox {
    /// A mailbox at `address` with no names.
    fn bare(address: MailAddress) -> Self {
        Self {
            address,
            display_name: None,
            first_name: None,
            last_name: None,
            contact_email: None,
        }
    }
}

/// A mailbox as its audit records show it.
fn audit_view(m: &Mailbox) -> serde_json::Value {
    #[derive(serde::Serialize)]
    struct Audited<'a> {
        address: String,
        display_name: &'a Option<String>,
        first_name: &'a Option<String>,
        last_name: &'a Option<String>,
        contact_email: &'a Option<String>,
        active: bool,
        origin: Origin,
    }
    super::audit_json(Audited {
        address: m.address.stored(),
        display_name: &m.display_name,
        first_name: &m.first_name,
        last_name: &m.last_name,
        contact_email: &m.contact_email,
        active: m.active,
        origin: m.origin,
    })
}

/// What the new mailboxes of one request share: their customer (locked by the caller), the
/// modules they are given, where they come from and how their audit records name the creation.
struct Placing<'a> {
    node: &'a Node,
    automatic: &'a [String],
    origin: Origin,
    action: Action,
}

/// The one creation of a mailbox: takes its seats (`users` and one per automatic module, through
/// `take_seats`), writes `new` on `domain` holding the automatic modules (an enrolled one seen
/// now), and appends the audit record. The caller has checked that the address is free.
fn place(
    conn: &mut DbConnection,
    ctx: &Ctx,
    at: &Placing,
    domain: &Domain,
    new: NewMailbox,
    take_seats: impl FnOnce(&mut DbConnection) -> Result<(), ApiError>,
) -> Result<Mailbox, ApiError> {
    take_seats(conn)?;
    let now = store::now();
    let seen = (at.origin == Origin::Check).then_some(now);
    let mailbox = Mailbox {
        display_name: new.display_name,
        first_name: new.first_name,
        last_name: new.last_name,
        contact_email: new.contact_email,
        first_seen_at: seen,
        last_seen_at: seen,
        ..Mailbox::new(at.node.id, domain.id, new.address, at.origin, now)
    };
    mailboxes::insert(conn, &mailbox, at.node.local_part_case)
        .map_err(|err| ApiError::unless_unique(err, || ApiError::AddressTaken))?;
    store::modules::assign_mailbox(conn, mailbox.id, at.automatic)?;
    ctx.record(
        conn,
        at.node.id,
        at.action,
        ("mailbox", mailbox.id.to_string()),
        None,
        Some(audit_view(&mailbox)),
    )?;
    Ok(mailbox)
}

/// The one of customer `node`'s `domains` that `address` is on, if no mailbox or alias has the
/// address yet (as the customer compares local parts): what a new mailbox or alias must pass.
pub(crate) fn free_address<'a>(
    conn: &mut DbConnection,
    node: &Node,
    domains: &'a [Domain],
    address: &MailAddress,
) -> Result<&'a Domain, ApiError> {
    let domain = domains
        .iter()
        .find(|d| d.name == *address.domain())
        .ok_or_else(|| {
            ApiError::validation(
                "address",
                format!(
                    "{} is not one of this customer's domains",
                    address.domain().unicode()
                ),
            )
        })?;
    if store::aliases::address_taken(conn, address, node.local_part_case)? {
        return Err(ApiError::AddressTaken);
    }
    Ok(domain)
}

/// Places `new` for a person's request or an import: on one of the customer's `domains`, at an
/// address no mailbox or alias has.
fn admit(
    conn: &mut DbConnection,
    ctx: &Ctx,
    at: &Placing,
    domains: &[Domain],
    new: NewMailbox,
    take_seats: impl FnOnce(&mut DbConnection) -> Result<(), ApiError>,
) -> Result<Mailbox, ApiError> {
    let domain = free_address(conn, at.node, domains, &new.address)?;
    place(conn, ctx, at, domain, new, take_seats)
}

/// Creates `new` for customer `node`, taking one `users` seat and one seat of each automatically
/// assigned module, all or none: the mailbox and the modules it holds.
pub(crate) fn create(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    new: NewMailbox,
) -> Result<(Mailbox, Vec<String>), ApiError> {
    let domains = store::domains::of_node(conn, node.id)?;
    let automatic = store::modules::automatic(conn)?;
    let seats = store::modules::mailbox_seats(&automatic);
    let at = Placing {
        node,
        automatic: &automatic,
        origin: Origin::Manual,
        action: Action::MailboxCreate,
    };
    let mailbox = admit(conn, ctx, &at, &domains, new, |conn| {
        Ok(super::seats::take_all(conn, ctx, node, &seats)??)
    })?;
    Ok((mailbox, automatic))
}

/// One row of an import: its line, and the mailbox it made or why it failed.
pub(crate) struct Row {
    pub(crate) line: usize,
    pub(crate) placed: Result<MailboxId, ApiError>,
}

/// Imports `rows` (each with its line, parsed or refused) for customer `node` as mailboxes of
/// origin `import`. Each row takes its seats as a mailbox create does, or fails alone; rows that
/// are the same address (as the customer compares them) pass once. `Ok(rows)`: the rows' outcomes,
/// the seats counted. With `atomic`, a failed row keeps everything out: `Err(rows)`, and the caller
/// must end its transaction with an error, which drops what the other rows wrote.
pub(crate) fn import(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    rows: Vec<(usize, Result<NewMailbox, ApiError>)>,
    atomic: bool,
) -> Result<Result<Vec<Row>, Vec<Row>>, ApiError> {
    let domains = store::domains::of_node(conn, node.id)?;
    let automatic = store::modules::automatic(conn)?;
    // Where each seat's resource stands now, counted up in memory as rows are placed: the stored
    // counters move once, at the end.
    let resources = store::modules::mailbox_seats(&automatic);
    let mut seats = super::seats::bundle(conn, ctx, node, &resources)?;
    let before = seats.clone();
    let at = Placing {
        node,
        automatic: &automatic,
        origin: Origin::Import,
        action: Action::MailboxCreate,
    };
    let mut seen = HashSet::new();
    let mut outcomes = Vec::with_capacity(rows.len());
    for (line, new) in rows {
        let placed = new.and_then(|new| {
            if !seen.insert(new.address.key(node.local_part_case)) {
                return Err(ApiError::AddressTaken);
            }
            admit(conn, ctx, &at, &domains, new, |_| Ok(seats.take_one()?))
        });
        if let Err(err @ (ApiError::Internal(_) | ApiError::Unavailable(_))) = placed {
            return Err(err);
        }
        outcomes.push(Row {
            line,
            placed: placed.map(|m| m.id),
        });
    }
    let created = outcomes.iter().filter(|o| o.placed.is_ok()).count();
    if atomic && created < outcomes.len() {
        return Ok(Err(outcomes));
    }
    let created = i64::try_from(created).unwrap_or(i64::MAX);
    super::seats::count(conn, ctx, node, &before, created)?;
    Ok(Ok(outcomes))
}

/// Registers the address of `enrolment` as a mailbox of its customer, audited as `ctx`'s actor,
/// deciding again inside the caller's write transaction from what the database says (the check's
/// index may be a moment behind). The check's index decided that the address may be enrolled:
/// that is the authority here, so there is no guard. No seat free is `users-exhausted`.
pub(crate) fn enrol(
    conn: &mut DbConnection,
    ctx: &Ctx,
    enrolment: &Enrolment,
    require_verification: bool,
) -> Result<Outcome, ApiError> {
    let (node, domain) = match enrolling(conn, enrolment, require_verification)? {
        Ok(found) => found,
        Err(outcome) => return Ok(outcome),
    };
    let Enrolment {
        address, module, ..
    } = enrolment;
    if let Some((id, status)) = store::check::mailbox_at(conn, &address.key(node.local_part_case))?
    {
        // Another check (or a person) registered it first: answer for that mailbox.
        let mailbox_id: Option<MailboxId> = id.parse().ok();
        let reason = if !Status::is_active_text(&status) {
            Reason::MailboxDisabled
        } else if let (Some(code), Some(id)) = (module, mailbox_id)
            && !store::modules::of_mailbox(conn, id)?.contains(code)
        {
            Reason::ModuleNotAssigned
        } else {
            Reason::Ok
        };
        return Ok(Outcome {
            mailbox_id,
            ..Outcome::for_node(reason, node.id)
        });
    }
    let automatic = store::modules::automatic(conn)?;
    let seats = store::modules::mailbox_seats(&automatic);
    let at = Placing {
        node: &node,
        automatic: &automatic,
        origin: Origin::Check,
        action: Action::MailboxEnrol,
    };
    let new = NewMailbox::bare(address.clone());
    let placed = place(conn, ctx, &at, &domain, new, |conn| {
        Ok(super::seats::take_all(conn, ctx, &node, &seats)??)
    });
    let mailbox = match placed {
        Err(ApiError::QuotaExceeded(refusal)) => {
            let reason = if refusal.ancestor {
                Reason::AncestorExhausted
            } else {
                Reason::UsersExhausted
            };
            return Ok(Outcome::for_node(reason, node.id));
        }
        placed => placed?,
    };
    // A new mailbox holds the automatic modules only.
    let reason = if module
        .as_ref()
        .is_some_and(|code| !automatic.contains(code))
    {
        Reason::ModuleNotAssigned
    } else {
        Reason::Ok
    };
    Ok(Outcome {
        mailbox_id: Some(mailbox.id),
        enrolled: true,
        ..Outcome::for_node(reason, node.id)
    })
}

/// The customer (locked) and domain of `enrolment` as the database has them, or the check's answer
/// when they no longer admit an enrolment: gone, suspended, disabled, unproven.
fn enrolling(
    conn: &mut DbConnection,
    enrolment: &Enrolment,
    require_verification: bool,
) -> Result<Result<(Node, Domain), Outcome>, ApiError> {
    let unknown = Ok(Err(Outcome::bare(Reason::UnknownDomain)));
    let Some(node) = store::nodes::find_locked(conn, enrolment.node, &[])? else {
        return unknown;
    };
    let lineage: Vec<String> = node.lineage().iter().map(ToString::to_string).collect();
    let ancestors = store::check::nodes(conn, Some(&lineage))?;
    if ancestors.len() != lineage.len() || ancestors.iter().any(|a| a.deleted_at.is_some()) {
        return unknown;
    }
    let refuse = |reason| Ok(Err(Outcome::for_node(reason, node.id)));
    if !ancestors
        .iter()
        .all(|a| NodeStatus::is_active_text(&a.status))
    {
        return refuse(Reason::NodeSuspended);
    }
    let Some(domain) = store::domains::find(conn, enrolment.domain)?
        .filter(|d| d.node_id == node.id && d.name == *enrolment.address.domain())
    else {
        return unknown;
    };
    if !domain.active {
        return refuse(Reason::DomainDisabled);
    }
    if domain.verified_at.is_none() && require_verification {
        return refuse(Reason::DomainUnverified);
    }
    Ok(Ok((node, domain)))
}

/// A change to a mailbox's names or contact address: each field `Some` is set (`Some(None)`
/// clears it), each `None` left as it is.
pub(crate) struct MailboxChange {
    pub(crate) display_name: Option<Option<String>>,
    pub(crate) first_name: Option<Option<String>>,
    pub(crate) last_name: Option<Option<String>>,
    pub(crate) contact_email: Option<Option<String>>,
}

/// Applies `change` to `mailbox` of customer `node` (read under its lock), audited.
pub(crate) fn update(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mut mailbox: Mailbox,
    change: MailboxChange,
) -> Result<Mailbox, ApiError> {
    let before = audit_view(&mailbox);
    let fields = [
        (&mut mailbox.display_name, change.display_name),
        (&mut mailbox.first_name, change.first_name),
        (&mut mailbox.last_name, change.last_name),
        (&mut mailbox.contact_email, change.contact_email),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            *field = value;
        }
    }
    mailboxes::save(conn, &mut mailbox)?;
    ctx.record(
        conn,
        node.id,
        Action::MailboxUpdate,
        ("mailbox", mailbox.id.to_string()),
        Some(before),
        Some(audit_view(&mailbox)),
    )?;
    Ok(mailbox)
}

/// Sets `mailbox` of customer `node` active or disabled, taking or freeing its seats: `users` and
/// one per module it holds (enabling assigns the automatic modules it lacks). Setting the status
/// it has changes nothing.
pub(crate) fn set_active(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mut mailbox: Mailbox,
    active: bool,
) -> Result<Mailbox, ApiError> {
    if mailbox.active == active {
        return Ok(mailbox);
    }
    if active {
        let automatic = store::modules::automatic(conn)?;
        super::modules::activate_mailbox(conn, ctx, node, &mailbox, &automatic)??;
    } else {
        let freed = store::modules::seats_held(conn, &mailbox)?;
        super::seats::release(conn, ctx, node, &freed)?;
    }
    let before = audit_view(&mailbox);
    mailbox.active = active;
    mailboxes::save(conn, &mut mailbox)?;
    let action = if active {
        Action::MailboxEnable
    } else {
        Action::MailboxDisable
    };
    ctx.record(
        conn,
        node.id,
        action,
        ("mailbox", mailbox.id.to_string()),
        Some(before),
        Some(audit_view(&mailbox)),
    )?;
    Ok(mailbox)
}

/// Deletes a disabled `mailbox` of customer `node`. An active one must be disabled first; role
/// addresses go only with their domain.
pub(crate) fn delete(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mailbox: Mailbox,
) -> Result<(), ApiError> {
    if mailbox.origin == Origin::Role {
        return Err(ApiError::Conflict(
            "postmaster@ and abuse@ go only with their domain.".to_owned(),
        ));
    }
    if mailbox.active {
        return Err(ApiError::Conflict(
            "Disable the mailbox first (POST /v1/mailboxes/{id}/disable).".to_owned(),
        ));
    }
    store::aliases::delete_of_mailbox(conn, mailbox.id)?;
    remove(conn, ctx, node, mailbox)
}

/// Removes `mailbox` of customer `node` with its group memberships and modules (its aliases are
/// the caller's: [`delete`] removes them, a domain's cascade removes every alias touching the
/// domain at once), returning
/// its seats if it is active (a domain's cascade removes active ones): the one deletion of a
/// mailbox, audited `mailbox.delete` with the whole mailbox (role addresses, which go with their
/// domain, unaudited).
pub(crate) fn remove(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    mailbox: Mailbox,
) -> Result<(), ApiError> {
    let freed = store::modules::seats_held(conn, &mailbox)?;
    super::seats::release(conn, ctx, node, &freed)?;
    store::groups::forget_mailbox(conn, mailbox.id)?;
    store::modules::forget_mailbox(conn, mailbox.id)?;
    mailboxes::delete(conn, mailbox.id)?;
    if mailbox.origin != Origin::Role {
        ctx.record(
            conn,
            node.id,
            Action::MailboxDelete,
            ("mailbox", mailbox.id.to_string()),
            Some(audit_view(&mailbox)),
            None,
        )?;
    }
    Ok(())
}
