//! Domains: registering a claim on a name, proving it (which takes the name over from other
//! claims), changing a domain, and removing it with what it holds (deleted, expired or taken over).
//! Each domain consumes one `domains` unit of its customer.
//!
//! A registration is a claim on a name until its TXT record proves it. Any number of customers may
//! claim one name (one claim each), so an unproven claim blocks no one; the first claim proven wins
//! the name, and the others' claims are removed in the same transaction (`domain.taken_over`, on
//! the loser's node). A verified domain holds its name against everyone and is never taken over:
//! the database keeps verified names unique, and a proof locks every claimant's customer first, so
//! two proofs racing are decided one after the other. An unproven claim expires after
//! `ALLOT_DOMAIN_CLAIM_DAYS` (`domain.expire`, by the system): when someone else claims the name,
//! and by a sweep (`api::domains::spawn_sweep`, through [`expire_claims`]), so the unit comes back
//! even if nobody does. With `ALLOT_REQUIRE_DOMAIN_VERIFICATION=false` an unproven domain already
//! takes mail, so nothing expires then.
//!
//! Every removal (a deletion, an expiry, a takeover, a node's deletion) goes through [`remove`],
//! which says who removed it and why in the audit trail.

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

use super::Ctx;
use crate::auth::guard::{Authorised, Manage};
use crate::domain::address::{DomainName, MailAddress, ROLE_LOCAL_PARTS};
use crate::domain::audit::Action;
use crate::domain::ids::{DomainId, NodeId};
use crate::domain::status::Status;
use crate::domain::tree::NodeKind;
use crate::error::ApiError;
use crate::store::audit::Actor;
use crate::store::domains::{Domain, Route};
use crate::store::nodes::{self, Node};
use crate::store::{self, DbConnection, domains, write_tx};

const RESOURCE: &str = "domains";
/// How many expired claims one sweep step removes (each in its own transaction).
pub(crate) const SWEEP_BATCH: i64 = 100;

/// `active` or `disabled`, as a domain's status is spelt.
pub(crate) fn status(d: &Domain) -> &'static str {
    Status::of(d.active).as_str()
}

/// `verified` once the TXT record was seen, `pending` until then.
pub(crate) fn verification(d: &Domain) -> &'static str {
    if d.verified_at.is_some() {
        "verified"
    } else {
        "pending"
    }
}

/// A domain as its audit records show it.
fn audit_view(d: &Domain) -> serde_json::Value {
    let route = d
        .route
        .as_ref()
        .map(|r| json!({"host": r.host, "port": r.port, "priority": r.priority}));
    json!({"name": d.name.as_str(), "node_id": d.node_id, "description": d.description,
           "route": route, "status": status(d), "verification": verification(d)})
}

/// When an unproven claim registered before now has expired, under `config`; `None` when claims do
/// not expire (ownership is not required, so an unproven domain is in use).
pub(crate) fn claim_cutoff(config: &crate::config::Config) -> Option<chrono::NaiveDateTime> {
    config
        .require_domain_verification
        .then(|| store::now() - chrono::TimeDelta::days(i64::from(config.domain_claim_days)))
}

/// The claims on a name, with their customers locked by [`lock_claimants`].
pub(crate) struct Claims {
    /// Every claim on the name, as it stands once locked.
    claims: Vec<Domain>,
    /// The customers locked: a claim registered between the first read and the lock belongs to a
    /// customer that is not, and is left alone.
    locked: Vec<NodeId>,
}

/// Reads the claims on `name`, then locks customer `node_id` together with every other claimant
/// (one lock, in path order, so that two proofs of one name cannot deadlock), then reads the
/// claims again: the customer that asked (for the guard) and the claims.
pub(crate) fn lock_claimants(
    conn: &mut DbConnection,
    node_id: NodeId,
    name: &DomainName,
) -> Result<(Option<Node>, Claims), ApiError> {
    let mut locked: Vec<NodeId> = domains::claims(conn, name)?
        .iter()
        .map(|d| d.node_id)
        .filter(|n| *n != node_id)
        .collect();
    let node = nodes::find_locked(conn, node_id, &locked)?;
    locked.push(node_id);
    let claims = domains::claims(conn, name)?;
    Ok((node, Claims { claims, locked }))
}

/// Removes `claim`, locked with its customer by the caller, for `why` (`domain.expire` or
/// `domain.taken_over`), as the system (its customer did not ask), with `ctx`'s request id.
fn drop_claim(
    conn: &mut DbConnection,
    ctx: &Ctx,
    claim: Domain,
    why: Action,
) -> Result<(), ApiError> {
    let node = nodes::find(conn, claim.node_id)?.ok_or(ApiError::NotFound)?;
    let system = Ctx {
        actor: &Actor::System,
        ..*ctx
    };
    remove(conn, &system, why, true, &node, claim)
}

/// Gives `domain` the role addresses it lacks and no other claim holds: they take no seat.
fn add_role_mailboxes(
    conn: &mut DbConnection,
    domain: &Domain,
    now: chrono::NaiveDateTime,
) -> Result<(), ApiError> {
    for local in ROLE_LOCAL_PARTS {
        let role = store::mailboxes::Mailbox::new(
            domain.node_id,
            domain.id,
            MailAddress::role(local, &domain.name),
            store::mailboxes::Origin::Role,
            now,
        );
        store::mailboxes::insert_role(conn, &role)?;
    }
    Ok(())
}

/// A new domain's fields, parsed.
pub(crate) struct NewDomain {
    pub(crate) name: DomainName,
    pub(crate) description: Option<String>,
    pub(crate) route: Option<Route>,
}

/// Registers `new` for customer `node` as a claim on its name, taking one `domains` unit; refused
/// with `domain-taken` when another customer has proven the name or this one claims it already.
/// Other customers' claims older than `cutoff` expire now.
pub(crate) fn register(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    claims: Claims,
    new: NewDomain,
    cutoff: Option<chrono::NaiveDateTime>,
) -> Result<Domain, ApiError> {
    if node.kind != NodeKind::Customer {
        return Err(ApiError::validation(
            "id",
            "domains belong to customers; this node is a reseller or the owner",
        ));
    }
    for claim in claims.claims {
        if claim.verified_at.is_some() || claim.node_id == node.id {
            return Err(ApiError::DomainTaken);
        }
        if cutoff.is_some_and(|at| claim.created_at < at) && claims.locked.contains(&claim.node_id)
        {
            drop_claim(conn, ctx, claim, Action::DomainExpire)?;
        }
    }
    super::seats::take(conn, ctx, node, RESOURCE)??;
    let now = store::now();
    let domain = Domain {
        id: DomainId::generate(),
        node_id: node.id,
        name: new.name,
        description: new.description,
        route: new.route,
        active: true,
        verification_token: rand::rng()
            .sample_iter(&Alphanumeric)
            .take(32)
            .map(char::from)
            .collect(),
        verified_at: None,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    domains::insert(conn, &domain)
        .map_err(|err| ApiError::unless_unique(err, || ApiError::DomainTaken))?;
    // Another customer's claim may hold the role addresses; this one gets them when it wins the
    // name.
    add_role_mailboxes(conn, &domain, now)?;
    ctx.record(
        conn,
        node.id,
        Action::DomainCreate,
        ("domain", domain.id.to_string()),
        None,
        Some(audit_view(&domain)),
    )?;
    Ok(domain)
}

/// Marks claim `id` of customer `node` verified, its TXT record having been seen: the proof wins
/// the name, so the other `claims` are removed (`domain.taken_over`) and the domain gets the role
/// addresses it lacked. Refused with `domain-taken` when another customer proved the name first.
/// A domain verified already is returned as it is.
pub(crate) fn verify(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    id: DomainId,
    claims: Claims,
) -> Result<Domain, ApiError> {
    let Claims { claims, locked } = claims;
    let taken = claims.iter().any(|c| c.verified_at.is_some() && c.id != id);
    let Some(mut domain) = claims
        .iter()
        .find(|c| c.id == id && c.node_id == node.id)
        .cloned()
    else {
        // Taken over while the record was looked up.
        return Err(if taken {
            ApiError::DomainTaken
        } else {
            ApiError::NotFound
        });
    };
    if domain.verified_at.is_some() {
        return Ok(domain);
    }
    if taken {
        return Err(ApiError::DomainTaken);
    }
    for rival in claims
        .into_iter()
        .filter(|c| c.id != id && locked.contains(&c.node_id))
    {
        drop_claim(conn, ctx, rival, Action::DomainTakenOver)?;
    }
    let before = audit_view(&domain);
    let now = store::now();
    domain.verified_at = Some(now);
    domains::save(conn, &mut domain)
        .map_err(|err| ApiError::unless_unique(err, || ApiError::DomainTaken))?;
    add_role_mailboxes(conn, &domain, now)?;
    ctx.record(
        conn,
        node.id,
        Action::DomainVerify,
        ("domain", domain.id.to_string()),
        Some(before),
        Some(audit_view(&domain)),
    )?;
    Ok(domain)
}

/// A change to a domain: each field `Some` is set (`Some(None)` clears the description or removes
/// the route), each `None` left as it is. A disabled domain is refused by the check.
pub(crate) struct DomainChange {
    pub(crate) description: Option<Option<String>>,
    pub(crate) route: Option<Option<Route>>,
    pub(crate) active: Option<bool>,
}

/// Applies `change` to `domain` of customer `node` (read under its lock), audited.
pub(crate) fn update(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mut domain: Domain,
    change: DomainChange,
) -> Result<Domain, ApiError> {
    let before = audit_view(&domain);
    if let Some(description) = change.description {
        domain.description = description;
    }
    if let Some(route) = change.route {
        domain.route = route;
    }
    if let Some(active) = change.active {
        domain.active = active;
    }
    domains::save(conn, &mut domain)?;
    ctx.record(
        conn,
        node.id,
        Action::DomainUpdate,
        ("domain", domain.id.to_string()),
        Some(before),
        Some(audit_view(&domain)),
    )?;
    Ok(domain)
}

/// Records that the route of domain `id` of customer `node` is being tested, with what the test
/// found before connecting (`found`): recorded before anything is connected to, so that no probe
/// leaves without its trace.
pub(crate) fn record_route_test(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    id: DomainId,
    found: serde_json::Value,
) -> Result<(), ApiError> {
    ctx.record(
        conn,
        node.id,
        Action::DomainRouteTest,
        ("domain", id.to_string()),
        None,
        Some(found),
    )?;
    Ok(())
}

/// Deletes `domain` of customer `node` (read under its lock) and returns its `domains` unit; the
/// name may then be registered again. Refused (`not-empty`) while it has mailboxes besides its
/// role addresses, unless `cascade`, which removes them too and returns their seats.
///
/// ```no_run
/// use allot::auth::guard::{Authorised, Manage};
/// use allot::error::ApiError;
/// use allot::service::{Ctx, domains};
/// use allot::store::DbConnection;
/// use allot::store::domains::Domain;
///
/// fn delete_with_mailboxes(
///     conn: &mut DbConnection,
///     ctx: &Ctx,
///     node: &Authorised<Manage>,
///     domain: Domain,
/// ) -> Result<(), ApiError> {
///     domains::delete(conn, ctx, node, domain, true)
/// }
/// ```
pub fn delete(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    domain: Domain,
    cascade: bool,
) -> Result<(), ApiError> {
    if domain.node_id != node.id {
        return Err(ApiError::NotFound);
    }
    remove(conn, ctx, Action::DomainDelete, cascade, node, domain)
}

/// Removes `domain` of customer `node` with its role addresses, returning its `domains` unit,
/// audited as `action` (`domain.delete`, `domain.expire`, `domain.taken_over`); refused while it
/// has other mailboxes unless `cascade`, which removes them too (each as a mailbox deletion) and
/// returns their seats. Runs in the caller's write transaction, under the customer's lock.
/// Deletions, expiries, takeovers and node deletions all come this way.
pub(crate) fn remove(
    conn: &mut DbConnection,
    ctx: &Ctx,
    action: Action,
    cascade: bool,
    node: &Node,
    domain: Domain,
) -> Result<(), ApiError> {
    let held = store::mailboxes::of_domain(conn, domain.id)?;
    let users = held
        .iter()
        .filter(|m| m.origin != store::mailboxes::Origin::Role)
        .count();
    if users > 0 && !cascade {
        return Err(ApiError::NotEmpty(format!(
            "{} still has {users} mailbox(es); remove them first, or use ?cascade=true.",
            domain.name
        )));
    }
    store::aliases::delete_touching_domain(conn, domain.id)?;
    for mailbox in held {
        super::mailboxes::remove(conn, ctx, node, mailbox)?;
    }
    domains::delete(conn, domain.id)?;
    super::seats::release(conn, ctx, node, &[RESOURCE])?;
    ctx.record(
        conn,
        node.id,
        action,
        ("domain", domain.id.to_string()),
        Some(audit_view(&domain)),
        None,
    )?;
    Ok(())
}

/// Removes up to one batch of unproven claims registered before `cutoff`, each in its own
/// transaction under its customer's lock, audited `domain.expire` by the system: how many it
/// removed, judged on `today`. The sweep calls it until a batch comes back short.
pub(crate) fn expire_claims(
    conn: &mut DbConnection,
    cutoff: chrono::NaiveDateTime,
    today: chrono::NaiveDate,
) -> Result<usize, ApiError> {
    let ctx = Ctx::system(today);
    let mut removed = 0;
    for stale in domains::expired(conn, cutoff, SWEEP_BATCH)? {
        removed += write_tx(conn, |conn| {
            if nodes::find_locked(conn, stale.node_id, &[])?.is_none() {
                return Ok::<_, ApiError>(0);
            }
            // Proven or removed meanwhile: not ours to expire.
            let Some(claim) = domains::find(conn, stale.id)?.filter(|d| d.verified_at.is_none())
            else {
                return Ok(0);
            };
            drop_claim(conn, &ctx, claim, Action::DomainExpire)?;
            Ok(1)
        })?;
    }
    Ok(removed)
}
