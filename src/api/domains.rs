//! Customers' domains, each consuming one `domains` unit of its customer, with an optional
//! delivery route (which [`test_route`] tests over SMTP, through [`crate::probe`]) and a DNS proof
//! of ownership.
//!
//! A registration is a claim on a name until its TXT record proves it. Any number of customers may
//! claim one name (one claim each), so an unproven claim blocks no one; the first claim proven wins
//! the name, and the others' claims are removed in the same transaction (`domain.taken_over`, on
//! the loser's node). A verified domain holds its name against everyone and is never taken over:
//! the database keeps verified names unique, and a proof locks every claimant's customer first, so
//! two proofs racing are decided one after the other. An unproven claim expires after
//! `ALLOT_DOMAIN_CLAIM_DAYS` (`domain.expire`, by the system): when someone else claims the name,
//! and by a sweep every [`SWEEP_EVERY`], so the unit comes back even if nobody does. With
//! `ALLOT_REQUIRE_DOMAIN_VERIFICATION=false` an unproven domain already takes mail, so nothing
//! expires then.
//!
//! Every removal (a deletion, an expiry, a takeover) goes through [`remove`], which says who
//! removed it and why in the audit trail.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::common::utc;
use super::common::{self, Fields, IfMatch, Page, PageRequest, etag, nullable, today};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use crate::auth::Principal;
use crate::dns::Proof;
use crate::domain::address::{DomainName, MailAddress, ROLE_LOCAL_PARTS};
use crate::domain::audit::Action;
use crate::domain::ids::{DomainId, NodeId};
use crate::domain::tree::{self, NodeKind};
use crate::error::{ApiError, Guarded, Problem};
use crate::probe::gate::{self, Busy};
use crate::probe::{self, Next, Report, RouteTest};
use crate::startup::AppState;
use crate::store::audit::{self, Actor};
use crate::store::domains::{Domain, DomainFilter, Route};
use crate::store::{self, DbConnection, Pool, domains, nodes, usage, write_tx};

const RESOURCE: &str = "domains";
/// How often the sweep looks for expired claims.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);
/// How many expired claims one sweep step removes (each in its own transaction).
const SWEEP_BATCH: i64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    /// A host name or an IPv4/IPv6 address.
    #[schema(example = "mx.customer.example")]
    pub host: String,
    /// 1–65535, default 25.
    pub port: Option<u16>,
    /// 1–100, higher preferred; default 50.
    pub priority: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    pub host: String,
    pub port: u16,
    pub priority: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Verification {
    /// `pending` until the TXT record is seen, then `verified`.
    #[schema(example = "pending")]
    pub status: &'static str,
    /// The name of the TXT record to publish.
    #[schema(example = "_allot.example.com")]
    pub record: String,
    /// The text the record must hold.
    pub token: String,
    pub verified_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    pub id: DomainId,
    /// The customer it belongs to.
    pub node_id: NodeId,
    /// ASCII (punycode), lowercase: how mail and DNS see it.
    #[schema(example = "xn--bcher-kva.example")]
    pub name: String,
    /// The Unicode form, for people.
    #[schema(example = "bücher.example")]
    pub display_name: String,
    pub description: Option<String>,
    pub route: Option<RouteView>,
    /// `active` or `disabled`.
    #[schema(example = "active")]
    pub status: &'static str,
    pub verification: Verification,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Domain> for DomainView {
    fn from(d: &Domain) -> Self {
        Self {
            id: d.id,
            node_id: d.node_id,
            name: d.name.as_str().to_owned(),
            display_name: d.name.unicode(),
            description: d.description.clone(),
            route: d.route.as_ref().map(|r| RouteView {
                host: r.host.clone(),
                port: r.port,
                priority: r.priority,
            }),
            status: if d.active { "active" } else { "disabled" },
            verification: Verification {
                status: if d.verified_at.is_some() {
                    "verified"
                } else {
                    "pending"
                },
                record: format!("_allot.{}", d.name.as_str()),
                token: d.verification_token.clone(),
                verified_at: d.verified_at.map(utc),
            },
            version: d.version,
            created_at: utc(d.created_at),
            updated_at: utc(d.updated_at),
        }
    }
}

fn audit_view(d: &Domain) -> serde_json::Value {
    let view = DomainView::from(d);
    json!({"name": view.name, "node_id": view.node_id, "description": view.description,
           "route": view.route, "status": view.status, "verification": view.verification.status})
}

/// A route as given: host an IP address or a host name, port 1–65535, priority 1–100.
fn parse_route(body: RouteBody, fields: &mut Fields) -> Option<Route> {
    let host = match body.host.trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip.to_string()),
        Err(_) => fields.check(
            "route.host",
            DomainName::parse(&body.host)
                .map(|n| n.as_str().to_owned())
                .map_err(|m| format!("must be an IP address or a host name: {m}")),
        ),
    };
    let port = body.port.unwrap_or(25);
    if port == 0 {
        fields.push("route.port", "must be between 1 and 65535");
    }
    let priority = body.priority.unwrap_or(50);
    if !(1..=100).contains(&priority) {
        fields.push("route.priority", "must be between 1 and 100");
    }
    host.map(|host| Route {
        host,
        port,
        priority,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDomain {
    /// Any form IDNA accepts (`Bücher.example`, `xn--bcher-kva.example`); one trailing dot is dropped.
    #[schema(example = "customer.example")]
    pub name: String,
    pub description: Option<String>,
    pub route: Option<RouteBody>,
}

/// A domain's postmaster@ or abuse@: created with it, consuming no seat.
fn role_mailbox(
    domain: &Domain,
    local: &str,
    now: chrono::NaiveDateTime,
) -> store::mailboxes::Mailbox {
    store::mailboxes::Mailbox::new(
        domain.node_id,
        domain.id,
        MailAddress::role(local, &domain.name),
        store::mailboxes::Origin::Role,
        now,
    )
}

/// A domain the caller may see, with its customer.
fn visible_domain(
    conn: &mut DbConnection,
    principal: &Principal,
    id: DomainId,
) -> Result<(Domain, nodes::Node), ApiError> {
    let domain = domains::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let node = principal.visible(nodes::find(conn, domain.node_id)?)?;
    Ok((domain, node))
}

/// When an unproven claim registered before now has expired, under `config`; `None` when claims do
/// not expire (ownership is not required, so an unproven domain is in use).
pub fn claim_cutoff(config: &crate::config::Config) -> Option<chrono::NaiveDateTime> {
    config
        .require_domain_verification
        .then(|| store::now() - chrono::TimeDelta::days(i64::from(config.domain_claim_days)))
}

/// The claims on a name with their customers locked, as [`lock_claimants`] found them.
struct Claimants {
    /// The customer that asked.
    node: Option<nodes::Node>,
    /// Every claim on the name, as it stands once locked.
    claims: Vec<Domain>,
    /// The customers locked: a claim registered between the first read and the lock belongs to a
    /// customer that is not, and is left alone.
    locked: Vec<NodeId>,
}

/// Reads the claims on `name`, then locks customer `node_id` together with every other claimant
/// (one lock, in path order, so that two proofs of one name cannot deadlock), then reads the
/// claims again.
fn lock_claimants(
    conn: &mut DbConnection,
    node_id: NodeId,
    name: &DomainName,
) -> Result<Claimants, ApiError> {
    let mut locked: Vec<NodeId> = domains::claims(conn, name)?
        .iter()
        .map(|d| d.node_id)
        .filter(|n| *n != node_id)
        .collect();
    let node = nodes::find_locked(conn, node_id, &locked)?;
    locked.push(node_id);
    Ok(Claimants {
        node,
        claims: domains::claims(conn, name)?,
        locked,
    })
}

/// Removes `claim`, locked with its customer by the caller, for `why` (`domain.expire` or
/// `domain.taken_over`), as the system: its customer did not ask.
fn drop_claim(
    conn: &mut DbConnection,
    claim: Domain,
    why: Action,
    request_id: Option<&str>,
) -> Result<(), ApiError> {
    let node = nodes::find(conn, claim.node_id)?.ok_or(ApiError::NotFound)?;
    remove(
        conn,
        &Removal {
            actor: &Actor::System,
            request_id,
            action: why,
            cascade: true,
        },
        &node,
        claim,
    )
}

/// Gives `domain` the role addresses it lacks and no other claim holds.
fn add_role_mailboxes(
    conn: &mut DbConnection,
    domain: &Domain,
    now: chrono::NaiveDateTime,
) -> Result<(), ApiError> {
    for local in ROLE_LOCAL_PARTS {
        store::mailboxes::insert_role(conn, &role_mailbox(domain, local, now))?;
    }
    Ok(())
}

fn respond(status: actix_web::http::StatusCode, domain: &Domain) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(domain.version)))
        .json(DomainView::from(domain))
}

/// Registers a domain for customer `{id}`: a claim on the name, taking one `domains` unit of its
/// licence, refused with `quota-exceeded` when none is free and with `domain-taken` when another
/// customer has proven the name already or this customer claims it already.
///
/// Other customers' unproven claims do not stand in the way: whoever proves the name first
/// (`POST /v1/domains/{id}/verify`) wins it, and the other claims are removed, returning their
/// units. An unproven claim expires after `ALLOT_DOMAIN_CLAIM_DAYS` days (default 7).
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = NodeId, Path, description = "The customer"), IdempotencyHeader),
    request_body = CreateDomain,
    responses(
        (status = 201, description = "Registered, pending verification", body = DomainView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "Verified by another customer, or claimed by this one already (`domain-taken`), or no `domains` unit free (`quota-exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (a name with a label mixing scripts beyond UTS #39's Highly Restrictive level among them), or the node is not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/domains")]
pub async fn create_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    key: IdempotencyKey,
    body: Json<CreateDomain>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let body = body.0;
    let mut fields = Fields::default();
    // A new name must not mix scripts into a look-alike of another (UTS #39).
    let name = fields.check(
        "name",
        DomainName::parse(&body.name).and_then(|name| name.check_scripts().map(|()| name)),
    );
    let description = body
        .description
        .map(|d| fields.check("description", tree::parse_description(&d)));
    let route = body.route.map(|r| parse_route(r, &mut fields));
    fields.finish()?;
    let (name, description, route) = (
        name.ok_or(ApiError::NotFound)?,
        description.flatten(),
        route.flatten(),
    );
    let node_id = id.into_inner();
    let cutoff = claim_cutoff(&state.config);
    let answer = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let Claimants {
                node: found,
                claims,
                locked,
            } = lock_claimants(conn, node_id, &name)?;
            idempotency::once(conn, &principal, &key, &raw, |conn| {
                let node = principal.may_manage(found)?;
                if node.kind != NodeKind::Customer {
                    return Err(ApiError::validation(
                        "id",
                        "domains belong to customers; this node is a reseller or the owner",
                    ));
                }
                for claim in claims {
                    if claim.verified_at.is_some() || claim.node_id == node.id {
                        return Err(ApiError::DomainTaken);
                    }
                    if cutoff.is_some_and(|at| claim.created_at < at)
                        && locked.contains(&claim.node_id)
                    {
                        drop_claim(
                            conn,
                            claim,
                            Action::DomainExpire,
                            principal.request_id.as_deref(),
                        )?;
                    }
                }
                crate::service::seats::take(conn, &node, RESOURCE, today())??;
                let now = store::now();
                let domain = Domain {
                    id: DomainId::generate(),
                    node_id: node.id,
                    name,
                    description,
                    route,
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
                // Another customer's claim may hold the role addresses; this one gets them when it
                // wins the name.
                add_role_mailboxes(conn, &domain, now)?;
                common::record(
                    conn,
                    &principal,
                    node.id,
                    Action::DomainCreate,
                    ("domain", domain.id.to_string()),
                    None,
                    Some(audit_view(&domain)),
                )?;
                Answer::created(
                    format!("/v1/domains/{}", domain.id),
                    etag(domain.version),
                    &DomainView::from(&domain),
                )
            })
        })
    })
    .await?;
    Ok(answer.into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DomainsQuery {
    /// `active` or `disabled`.
    pub status: Option<String>,
    /// Only names (ASCII form) starting with this.
    pub name_prefix: Option<String>,
    /// Items per page, 1–500 (default 50).
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The domains of `{id}`'s subtree (a reseller sees all its customers'), oldest first.
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = NodeId, Path), DomainsQuery),
    responses(
        (status = 200, description = "A page of domains", body = Page<DomainView>),
        (status = 400, description = "A bad query parameter", body = Problem, content_type = "application/problem+json"),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/domains")]
pub async fn list_domains(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<DomainsQuery>,
) -> Result<web::Json<Page<DomainView>>, ApiError> {
    let query = query.into_inner();
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let active = query
        .status
        .as_deref()
        .map(common::parse_active)
        .transpose()
        .map_err(|m| ApiError::InvalidQuery(vec![crate::error::FieldError::new("status", m)]))?;
    let filter = DomainFilter {
        active,
        name_prefix: query.name_prefix.map(|p| p.to_lowercase()),
    };
    let id = id.into_inner();
    let fetch = page.clone();
    let rows = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?;
        Ok::<_, ApiError>(domains::list_in_subtree(
            conn,
            &node.path,
            &filter,
            fetch.after.as_deref(),
            fetch.fetch(),
        )?)
    })
    .await?;
    Ok(web::Json(page.page(
        rows,
        |d| d.id.to_string(),
        |d| DomainView::from(&d),
    )))
}

/// One domain of the caller's subtree.
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = DomainId, Path)),
    responses(
        (status = 200, description = "The domain", body = DomainView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/domains/{id}")]
pub async fn get_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let domain = store::run(&state.pool, move |conn| {
        let (domain, node) = visible_domain(conn, &principal, id)?;
        principal.may_read(Some(node))?;
        Ok::<_, ApiError>(domain)
    })
    .await?;
    Ok(respond(actix_web::http::StatusCode::OK, &domain))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDomain {
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// `null` removes the route.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RouteBody>)]
    pub route: Option<Option<RouteBody>>,
    /// `active` or `disabled`; a disabled domain is refused by the check.
    pub status: Option<String>,
}

/// Changes a domain's description, route or status; `If-Match` makes it conditional.
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = DomainId, Path), ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    request_body = UpdateDomain,
    responses(
        (status = 200, description = "The changed domain", body = DomainView, headers(("ETag" = String))),
        Guarded,
        (status = 412, description = "`If-Match` does not match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/domains/{id}")]
pub async fn update_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
    if_match: IfMatch,
    body: Json<UpdateDomain>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let description = body
        .description
        .map(|d| d.and_then(|d| fields.check("description", tree::parse_description(&d))));
    let route = body
        .route
        .map(|r| r.and_then(|r| parse_route(r, &mut fields)));
    let active = body
        .status
        .as_deref()
        .and_then(|status| fields.check("status", common::parse_active(status)));
    fields.finish()?;
    let id = id.into_inner();
    let domain = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let (first, _) = visible_domain(conn, &principal, id)?;
            let node = principal.may_manage(nodes::find_locked(conn, first.node_id, &[])?)?;
            let mut domain = domains::find(conn, id)?
                .filter(|d| d.node_id == node.id)
                .ok_or(ApiError::NotFound)?;
            if_match.check(domain.version)?;
            let before = audit_view(&domain);
            if let Some(description) = description {
                domain.description = description;
            }
            if let Some(route) = route {
                domain.route = route;
            }
            if let Some(active) = active {
                domain.active = active;
            }
            domains::save(conn, &mut domain)?;
            common::record(
                conn,
                &principal,
                node.id,
                Action::DomainUpdate,
                ("domain", domain.id.to_string()),
                Some(before),
                Some(audit_view(&domain)),
            )?;
            Ok::<_, ApiError>(domain)
        })
    })
    .await?;
    Ok(respond(actix_web::http::StatusCode::OK, &domain))
}

/// Who removes a domain and why, as the audit trail is to say.
#[derive(Debug, Clone, Copy)]
pub struct Removal<'a> {
    pub actor: &'a Actor,
    pub request_id: Option<&'a str>,
    /// `domain.delete`, `domain.expire` or `domain.taken_over`.
    pub action: Action,
    /// Whether mailboxes besides the role addresses go too; without it they refuse the removal.
    pub cascade: bool,
}

impl<'a> Removal<'a> {
    /// A deletion `principal` asked for.
    pub fn deletion(principal: &'a Principal, cascade: bool) -> Self {
        Self {
            actor: &principal.actor,
            request_id: principal.request_id.as_deref(),
            action: Action::DomainDelete,
            cascade,
        }
    }

    fn record(
        &self,
        conn: &mut DbConnection,
        node_id: NodeId,
        action: Action,
        target: (&str, String),
        before: Option<serde_json::Value>,
    ) -> diesel::QueryResult<()> {
        audit::record(
            conn,
            audit::Event {
                actor: self.actor,
                node_id,
                action,
                target_kind: target.0,
                target_id: target.1,
                before,
                after: None,
                request_id: self.request_id,
            },
        )
    }
}

/// Removes `domain` of customer `node` with its role addresses, returning its `domains` unit;
/// refused while it has other mailboxes unless `by.cascade`, which removes them too and returns
/// their seats. Runs in the caller's write transaction, under the customer's lock. Deletions,
/// expiries and takeovers all come this way.
pub fn remove(
    conn: &mut DbConnection,
    by: &Removal<'_>,
    node: &nodes::Node,
    domain: Domain,
) -> Result<(), ApiError> {
    let held = store::mailboxes::of_domain(conn, domain.id)?;
    let users = held
        .iter()
        .filter(|m| m.origin != store::mailboxes::Origin::Role)
        .count();
    if users > 0 && !by.cascade {
        return Err(ApiError::NotEmpty(format!(
            "{} still has {users} mailbox(es); remove them first, or use ?cascade=true.",
            domain.name
        )));
    }
    store::aliases::delete_touching_domain(conn, domain.id)?;
    for mailbox in held {
        store::groups::forget_mailbox(conn, mailbox.id)?;
        store::modules::deactivate_mailbox(conn, node, &mailbox)?;
        store::modules::forget_mailbox(conn, mailbox.id)?;
        store::mailboxes::delete(conn, mailbox.id)?;
        if mailbox.origin != store::mailboxes::Origin::Role {
            by.record(
                conn,
                node.id,
                Action::MailboxDelete,
                ("mailbox", mailbox.id.to_string()),
                Some(json!({"address": mailbox.address.stored()})),
            )?;
        }
    }
    domains::delete(conn, domain.id)?;
    usage::add(conn, &node.lineage(), RESOURCE, -1)?;
    by.record(
        conn,
        node.id,
        by.action,
        ("domain", domain.id.to_string()),
        Some(audit_view(&domain)),
    )?;
    Ok(())
}

/// Removes a domain and returns its `domains` unit to the customer's licence; the name may then be
/// registered again. Refused while it has mailboxes besides its role addresses, unless `cascade`.
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = DomainId, Path), super::nodes::DeleteQuery),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "It still has mailboxes (`not-empty`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/domains/{id}")]
pub async fn delete_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
    query: web::Query<super::nodes::DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let cascade = query.cascade.unwrap_or(false);
    store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let (first, _) = visible_domain(conn, &principal, id)?;
            let node = principal.may_manage(nodes::find_locked(conn, first.node_id, &[])?)?;
            let domain = domains::find(conn, id)?
                .filter(|d| d.node_id == node.id)
                .ok_or(ApiError::NotFound)?;
            remove(conn, &Removal::deletion(&principal, cascade), &node, domain)?;
            Ok::<_, ApiError>(())
        })
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Looks up the TXT record `_allot.<name>` and marks the domain verified when it holds the token.
///
/// The proof wins the name: other customers' unproven claims on it are removed then (their units
/// return; their customers' audit trails say `domain.taken_over`), and this domain gets the role
/// addresses postmaster@ and abuse@ if it lacked them. Refused with `domain-taken` when another
/// customer proved the name first, including when both proofs arrive at once.
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = DomainId, Path)),
    responses(
        (status = 200, description = "Verified", body = DomainView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The record is not there (`verification-failed`), or another customer proved the name first (`domain-taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "DNS did not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/domains/{id}/verify")]
pub async fn verify_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let checker = principal.clone();
    let domain = store::run(&state.pool, move |conn| {
        let (domain, node) = visible_domain(conn, &checker, id)?;
        checker.may_manage(Some(node))?;
        Ok::<_, ApiError>(domain)
    })
    .await?;
    if domain.verified_at.is_some() {
        return Ok(respond(actix_web::http::StatusCode::OK, &domain));
    }
    let proof = state
        .dns
        .check(&domain.name, &domain.verification_token)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, domain = %domain.name, "verification lookup failed");
            ApiError::Unavailable(format!(
                "DNS did not answer for _allot.{}; retry later.",
                domain.name
            ))
        })?;
    if proof == Proof::Missing {
        return Err(ApiError::VerificationFailed(format!(
            "No TXT record _allot.{} holding the token {} was found.",
            domain.name, domain.verification_token
        )));
    }
    let domain = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            let Claimants {
                node: found,
                claims,
                locked,
            } = lock_claimants(conn, domain.node_id, &domain.name)?;
            let node = principal.may_manage(found)?;
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
            if domain.verified_at.is_none() {
                if taken {
                    return Err(ApiError::DomainTaken);
                }
                for rival in claims
                    .into_iter()
                    .filter(|c| c.id != id && locked.contains(&c.node_id))
                {
                    drop_claim(
                        conn,
                        rival,
                        Action::DomainTakenOver,
                        principal.request_id.as_deref(),
                    )?;
                }
                let before = audit_view(&domain);
                let now = store::now();
                domain.verified_at = Some(now);
                domains::save(conn, &mut domain)
                    .map_err(|err| ApiError::unless_unique(err, || ApiError::DomainTaken))?;
                add_role_mailboxes(conn, &domain, now)?;
                common::record(
                    conn,
                    &principal,
                    node.id,
                    Action::DomainVerify,
                    ("domain", domain.id.to_string()),
                    Some(before),
                    Some(audit_view(&domain)),
                )?;
            }
            Ok::<_, ApiError>(domain)
        })
    })
    .await?;
    Ok(respond(actix_web::http::StatusCode::OK, &domain))
}

/// Tests the domain's delivery route over SMTP and reports what the server answered.
///
/// Connects to the route's host and port as a sending server would, and reports the greeting,
/// the EHLO extensions (STARTTLS, SIZE), whether `RCPT TO:<postmaster@domain>` after
/// `MAIL FROM:<>` is accepted, and how long each stage took. It never sends a message (no DATA)
/// and ends with QUIT. Each stage may take 10 s, the whole
/// test 30 s. The host is resolved once and only a publicly routable address is connected to
/// (unless the operator sets `ALLOT_ROUTE_TEST_ALLOW_PRIVATE`). One test per domain runs at a
/// time, at most 10 start per domain and minute, and every test is recorded in the audit trail.
/// Takes no body (one sent is ignored). A server that cannot be reached or refuses is a 200 report
/// with `ok: false` and a `failure`; a problem document means nothing was connected to.
#[utoipa::path(
    tag = "domains",
    security(("bearer" = [])),
    params(("id" = DomainId, Path)),
    responses(
        (status = 200, description = "What the route's server answered, stage by stage", body = crate::probe::Report),
        Guarded,
        (status = 409, description = "The domain has no route (`route-missing`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The host is, or resolves only to, addresses allot does not connect to (`route-target-forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A test of the domain is running, or too many started (`route-test-busy`)", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database is not reachable: no test runs without its audit record", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/domains/{id}/route/test")]
pub async fn test_route(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
) -> Result<web::Json<Report>, ApiError> {
    let id = id.into_inner();
    let checker = principal.clone();
    let domain = store::run(&state.pool, move |conn| {
        let (domain, node) = visible_domain(conn, &checker, id)?;
        checker.may_manage(Some(node))?;
        Ok::<_, ApiError>(domain)
    })
    .await?;
    let route = domain.route.clone().ok_or_else(|| {
        ApiError::RouteMissing(format!(
            "{} has no delivery route; set one with PATCH /v1/domains/{id} first.",
            domain.name
        ))
    })?;
    let _running = state
        .route_tests
        .admit(domain.id, std::time::Instant::now())
        .map_err(busy)?;
    let mut test = RouteTest::new(&route.host, route.port);
    let next = test
        .resolve(&state.dns, state.config.route_test_allow_private)
        .await;
    // Recorded before anything is connected to: no probe leaves without its trace.
    let after = next.audit(test.report());
    let node_id = domain.node_id;
    store::run(&state.pool, move |conn| {
        common::record(
            conn,
            &principal,
            node_id,
            Action::DomainRouteTest,
            ("domain", id.to_string()),
            None,
            Some(after),
        )
        .map_err(ApiError::from)
    })
    .await?;
    match next {
        Next::Connect(addr) => Ok(web::Json(test.converse(addr, &domain.name).await)),
        Next::Done => Ok(web::Json(test.finish())),
        Next::Refused(refused) => Err(ApiError::RouteTargetForbidden(refused.detail)),
    }
}

fn busy(busy: Busy) -> ApiError {
    let (detail, retry_after) = match busy {
        Busy::Running => (
            "A test of this domain's route is running; its report comes first.".to_owned(),
            probe::TOTAL_TIMEOUT.as_secs(),
        ),
        Busy::Spent(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            (
                format!(
                    "This domain has started {} route tests in the last minute; retry in {seconds} s.",
                    gate::PER_DOMAIN_PER_MINUTE
                ),
                seconds.max(1),
            )
        }
        Busy::Full => (
            "allot is running as many route tests as it allows at once; retry shortly.".to_owned(),
            5,
        ),
    };
    ApiError::RouteTestBusy {
        detail,
        retry_after,
    }
}

/// Removes up to one batch of unproven claims registered before `cutoff`, each in its own
/// transaction under its customer's lock, audited `domain.expire` by the system: how many it
/// removed. The sweep calls it until a batch comes back short.
pub fn expire_claims(
    conn: &mut DbConnection,
    cutoff: chrono::NaiveDateTime,
) -> Result<usize, ApiError> {
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
            drop_claim(conn, claim, Action::DomainExpire, None)?;
            Ok(1)
        })?;
    }
    Ok(removed)
}

/// Sweeps expired claims now and every [`SWEEP_EVERY`], on the runtime it is spawned on (so it
/// stops with the server), in batches, on a blocking thread. Nothing expires while ownership is
/// not required (see [`claim_cutoff`]).
pub fn spawn_sweep(pool: Pool, config: crate::config::Config) {
    if claim_cutoff(&config).is_none() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let pool = pool.clone();
            let config = config.clone();
            let swept = tokio::task::spawn_blocking(move || {
                let mut conn = pool.get().map_err(|e| e.to_string())?;
                let mut total = 0;
                loop {
                    let Some(cutoff) = claim_cutoff(&config) else {
                        return Ok(total);
                    };
                    let removed = expire_claims(&mut conn, cutoff).map_err(|e| e.to_string())?;
                    total += removed;
                    if removed < SWEEP_BATCH as usize {
                        return Ok::<_, String>(total);
                    }
                }
            })
            .await;
            match swept {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => tracing::info!(removed, "expired domain claims removed"),
                Ok(Err(err)) => tracing::warn!(error = %err, "the domain claim sweep failed"),
                Err(err) => tracing::warn!(error = %err, "the domain claim sweep stopped"),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}
