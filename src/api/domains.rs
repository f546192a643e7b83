//! Customers' domains over HTTP, each consuming one `domains` unit of its customer, with an
//! optional delivery route (which [`test_route`] tests over SMTP, through [`crate::probe`]) and a
//! DNS proof of ownership. The workflows (registering a claim, proving it and taking the name over,
//! changing, removing, expiring) live in [`crate::service::domains`], which explains the claims;
//! here are the views, the parsing, the DNS lookup of a proof and the sweep that expires claims.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::utc;
use super::common::{self, Fields, IfMatch, Page, etag, nullable};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use crate::api::schemas::{Description, DomainText, ItemStatus, VerificationStatus};
use crate::auth::Principal;
use crate::auth::guard::{Authorised, Manage};
use crate::dns::Proof;
use crate::domain::address::DomainName;
use crate::domain::ids::{DomainId, NodeId};
use crate::domain::tree;
use crate::error::{ApiError, Guarded, Problem};
use crate::probe::gate::{self, Busy};
use crate::probe::{self, Next, Report, RouteTest};
use crate::service::Ctx;
use crate::service::domains::{
    self as service, DomainChange, NewDomain, SWEEP_BATCH, claim_cutoff,
};
use crate::startup::AppState;
use crate::store::domains::{Domain, DomainFilter, Route};
use crate::store::{self, DbConnection, Pool, domains, nodes};

/// How often the sweep looks for expired claims.
pub(crate) const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    /// A host name (any IDNA form, as a domain name) or an IPv4 or IPv6 address.
    #[schema(example = "mx.customer.example")]
    pub host: String,
    /// 1–65535, default 25.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// 1–100, higher preferred; default 50.
    #[schema(minimum = 1, maximum = 100)]
    pub priority: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RouteView {
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    /// Higher is preferred.
    #[schema(minimum = 1, maximum = 100)]
    pub priority: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Verification {
    #[schema(value_type = VerificationStatus)]
    pub status: &'static str,
    /// The name of the TXT record to publish.
    #[schema(example = "_allot.example.com")]
    pub record: String,
    /// The text the record must hold.
    pub token: String,
    pub verified_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DomainView {
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
    #[schema(value_type = ItemStatus)]
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
            status: service::status(d),
            verification: Verification {
                status: service::verification(d),
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
    /// Unique across the installation once verified. A new name must not mix scripts in one label
    /// beyond UTS #39's Highly Restrictive level (`pаypal.example` with a Cyrillic `а` is refused).
    #[schema(value_type = DomainText)]
    pub name: String,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    pub route: Option<RouteBody>,
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

/// The domain for a change: visible, managed by the caller, read again under its customer's lock.
fn locked_domain(
    conn: &mut DbConnection,
    principal: &Principal,
    id: DomainId,
) -> Result<(Domain, Authorised<Manage>), ApiError> {
    let (first, _) = visible_domain(conn, principal, id)?;
    let node = principal.may_manage(nodes::find_locked(conn, first.node_id, &[])?)?;
    let domain = domains::find(conn, id)?
        .filter(|d| d.node_id == node.id)
        .ok_or(ApiError::NotFound)?;
    Ok((domain, node))
}

/// A domain the caller may manage, read without a lock (before a slow step outside the
/// transaction: a DNS lookup, a route test).
fn managed_domain(
    conn: &mut DbConnection,
    principal: &Principal,
    id: DomainId,
) -> Result<(Domain, Authorised<Manage>), ApiError> {
    let (domain, node) = visible_domain(conn, principal, id)?;
    let node = principal.may_manage(Some(node))?;
    Ok((domain, node))
}

/// A new domain's fields as given, parsed: every invalid field is reported at once. A new name
/// must not mix scripts into a look-alike of another (UTS #39).
fn parse_new(body: CreateDomain) -> Result<NewDomain, ApiError> {
    let mut fields = Fields::default();
    let name = fields.check(
        "name",
        DomainName::parse(&body.name).and_then(|name| name.check_scripts().map(|()| name)),
    );
    let description = body
        .description
        .map(|d| fields.check("description", tree::parse_description(&d)));
    let route = body.route.map(|r| parse_route(r, &mut fields));
    fields.finish()?;
    Ok(NewDomain {
        name: name.ok_or(ApiError::NotFound)?,
        description: description.flatten(),
        route: route.flatten(),
    })
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
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer"), IdempotencyHeader),
    request_body = CreateDomain,
    responses(
        (status = 201, description = "Registered, pending verification", body = DomainView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "Verified by another customer, or claimed by this one already (`domain-taken`), no `domains` unit free (`quota-exceeded`), or an ancestor has no real seat of it left (`ancestor-exhausted`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (a name with a label mixing scripts beyond UTS #39's Highly Restrictive level among them), or the node is not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/domains")]
pub(crate) async fn create_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    key: IdempotencyKey,
    body: Json<CreateDomain>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let new = parse_new(body.0)?;
    let node_id = id.into_inner();
    let cutoff = claim_cutoff(&state.config);
    let answer = common::write(&state.pool, move |conn| {
        let (found, claims) = service::lock_claimants(conn, node_id, &new.name)?;
        idempotency::once(conn, &principal, &key, &raw, |conn| {
            let node = principal.may_manage(found)?;
            let ctx = Ctx::of(&principal);
            let domain = service::register(conn, &ctx, &node, claims, new, cutoff)
                .map_err(|e| principal.shown(e))?;
            Answer::created(
                format!("/v1/domains/{}", domain.id),
                etag(domain.version),
                &DomainView::from(&domain),
            )
        })
    })
    .await?;
    Ok(answer.into_response())
}

common::list_query! {
    pub struct DomainsQuery {
        /// Only domains of this status.
        #[param(value_type = Option<ItemStatus>)]
        pub status: Option<String>,
        /// Only names (ASCII form) starting with this.
        pub name_prefix: Option<String>,
    }
}

/// The domains of `{id}`'s subtree (a reseller sees all its customers'), oldest first.
#[utoipa::path(
    tag = "domains",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), DomainsQuery),
    responses(
        (status = 200, description = "A page of domains", body = super::common::pages::DomainPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/domains")]
pub(crate) async fn list_domains(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<DomainsQuery>,
) -> Result<web::Json<Page<DomainView>>, ApiError> {
    let query = query.into_inner();
    let page = query.page()?;
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
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        page,
        move |conn, node, after, limit| {
            domains::list_in_subtree(conn, &node.path, &filter, after, limit)
        },
        |d| d.id.to_string(),
        |d| DomainView::from(&d),
    )
    .await
}

/// One domain of the caller's subtree.
#[utoipa::path(
    tag = "domains",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = DomainId, Path)),
    responses(
        (status = 200, description = "The domain", body = DomainView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/domains/{id}")]
pub(crate) async fn get_domain(
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
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
    /// `null` removes the route.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RouteBody>)]
    pub route: Option<Option<RouteBody>>,
    /// A disabled domain is refused by the check.
    #[schema(value_type = Option<ItemStatus>)]
    pub status: Option<String>,
}

/// Changes a domain's description, route or status; `If-Match` makes it conditional.
#[utoipa::path(
    tag = "domains",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = DomainId, Path), IfMatch),
    request_body = UpdateDomain,
    responses(
        (status = 200, description = "The changed domain", body = DomainView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/domains/{id}")]
pub(crate) async fn update_domain(
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
    let change = DomainChange {
        description,
        route,
        active,
    };
    let id = id.into_inner();
    let domain = common::write(&state.pool, move |conn| {
        let (domain, node) = locked_domain(conn, &principal, id)?;
        if_match.check(domain.version)?;
        service::update(conn, &Ctx::of(&principal), &node, domain, change)
    })
    .await?;
    Ok(respond(actix_web::http::StatusCode::OK, &domain))
}

/// Removes a domain and returns its `domains` unit to the customer's licence; the name may then be
/// registered again. Refused while it has mailboxes besides its role addresses, unless `cascade`.
#[utoipa::path(
    tag = "domains",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = DomainId, Path), super::nodes::DeleteQuery),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "It still has mailboxes (`not-empty`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/domains/{id}")]
pub(crate) async fn delete_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
    query: web::Query<super::nodes::DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let cascade = query.cascade.unwrap_or(false);
    common::write(&state.pool, move |conn| {
        let (domain, node) = locked_domain(conn, &principal, id)?;
        service::delete(conn, &Ctx::of(&principal), &node, domain, cascade)
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
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = DomainId, Path)),
    responses(
        (status = 200, description = "Verified", body = DomainView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The record is not there (`verification-failed`), another customer proved the name first (`domain-taken`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "DNS did not answer (`unavailable`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/domains/{id}/verify")]
pub(crate) async fn verify_domain(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let checker = principal.clone();
    let (domain, _) =
        store::run(&state.pool, move |conn| managed_domain(conn, &checker, id)).await?;
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
    let domain = common::write(&state.pool, move |conn| {
        let (found, claims) = service::lock_claimants(conn, domain.node_id, &domain.name)?;
        let node = principal.may_manage(found)?;
        service::verify(conn, &Ctx::of(&principal), &node, id, claims)
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
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = DomainId, Path)),
    responses(
        (status = 200, description = "What the route's server answered, stage by stage", body = crate::probe::Report),
        Guarded,
        (status = 409, description = "The domain has no route (`route-missing`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The host is, or resolves only to, addresses allot does not connect to (`route-target-forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A test of the domain is running, or too many started (`route-test-busy`)", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "The database is not reachable (`unavailable`): no test runs without its audit record", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/domains/{id}/route/test")]
pub(crate) async fn test_route(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<DomainId>,
) -> Result<web::Json<Report>, ApiError> {
    let id = id.into_inner();
    let checker = principal.clone();
    let (domain, node) =
        store::run(&state.pool, move |conn| managed_domain(conn, &checker, id)).await?;
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
    let found = next.audit(test.report());
    store::run(&state.pool, move |conn| {
        service::record_route_test(conn, &Ctx::of(&principal), &node, id, found)
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

/// Sweeps expired claims now and every [`SWEEP_EVERY`], on the runtime it is spawned on (so it
/// stops with the server), in batches, on a blocking thread. Nothing expires while ownership is
/// not required (see [`claim_cutoff`]).
pub(crate) fn spawn_sweep(pool: Pool, config: crate::config::Config) {
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
                    let removed = service::expire_claims(&mut conn, cutoff, config.clock.today())
                        .map_err(|e| e.to_string())?;
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

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(create_domain)
        .service(list_domains)
        .service(get_domain)
        .service(update_domain)
        .service(delete_domain)
        .service(verify_domain)
        .service(test_route);
}
