//! `POST /v1/check` and `POST /v1/check/batch`: the questions mail workers ask, answered from the
//! in-memory index (see `crate::check`). The caller is resolved from memory too (API keys and
//! accounts are in the index), so a check that enrols nobody touches no database.
//!
//! Also [`sync_after_writes`]: the middleware that brings the index up to date after every write
//! this process serves, before the write's response leaves, so a client that has been told "done"
//! is never answered from older state by the same process.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::Json;
use crate::api::schemas::{Address, DomainText, ModuleCode};
use crate::auth::{self, api_key};
use crate::check::{Answer, Caller, Checker, Direction, Listener, Question, Scope, Target};
use crate::domain::address::{DomainName, MailAddress};
use crate::error::{ApiError, FieldError, Problem};
use crate::startup::AppState;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{OneOfBuilder, Ref, Schema};

/// The most checks one batch may hold.
pub(crate) const MAX_BATCH: usize = 1000;

/// A caller of the check, resolved from memory. The request is kept for its id, which only an
/// enrolment (audited) needs.
pub(crate) struct CheckCaller {
    caller: Caller,
    request: HttpRequest,
}

impl FromRequest for CheckCaller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(resolve(req))
    }
}

fn resolve(req: &HttpRequest) -> Result<CheckCaller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(std::io::Error::other("no application state")))?;
    let token = auth::bearer_token(req)?;
    if !state.checker.is_ready() {
        return Err(ApiError::Unavailable(
            "The check index is not built yet (the database was unreachable at start); retry shortly."
                .to_owned(),
        ));
    }
    let caller = if token.starts_with(api_key::PREFIX) {
        state.checker.caller_by_key(&token)
    } else {
        let claims = state
            .keys
            .verify(&token)
            .map_err(|_| ApiError::Unauthorized(auth::INVALID))?;
        let caller = state
            .checker
            .caller_by_account(claims.sub, claims.credential_version)
            .ok_or(ApiError::Unauthorized(auth::INVALID))?;
        // As for every other endpoint (see `crate::auth`): such a token only changes a password.
        if claims.password_change_only {
            return Err(ApiError::PasswordChangeRequired);
        }
        Some(caller)
    };
    let caller = caller.ok_or(ApiError::Unauthorized(auth::INVALID))?;
    // The check's answers carry the `RateLimit` fields only when the budget runs low (see
    // `auth::rate_limit`): the hot path formats no header while there is room.
    let allowance = state.rate_limits.admit(&caller.actor, caller.policy)?;
    auth::rate_limit::note(req, allowance.filter(|a| a.running_low()));
    Ok(CheckCaller {
        caller,
        request: req.clone(),
    })
}

/// One check as a body holds it. Its schema is [`CheckQuestion`]'s: this derived one is only the
/// source of the fields they share.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// A domain to check. Give this or `address`.
    #[schema(value_type = Option<DomainText>)]
    pub domain: Option<String>,
    /// An address to check. Give this or `domain`.
    #[schema(value_type = Option<Address>)]
    pub address: Option<String>,
    /// `inbound`: the address is a recipient (may mail be delivered to it?); `outbound`: it is a
    /// sender (may it send?). Only an outbound check ever enrols a mailbox.
    pub direction: Direction,
    /// A module code: the customer must hold seats of it (`module_not_licensed` otherwise) and
    /// the mailbox, or for a per-customer module the customer, must be assigned it
    /// (`module_not_assigned` otherwise).
    #[schema(value_type = Option<ModuleCode>)]
    pub module: Option<String>,
    /// Outbound only: whether an unknown sender on the customer's domain is registered as a
    /// mailbox (origin `check`) when a `users` and a `module:base` seat are free. Default: the
    /// customer's `auto_enrol` (default true). `true` on an inbound check is refused: a recipient
    /// never takes a seat.
    pub enrol: Option<bool>,
}

/// Parses one check; `at` prefixes field names (`checks[3].`) in a batch.
fn parse(checker: &Checker, body: CheckRequest, at: &str) -> Result<Question, Vec<FieldError>> {
    let mut errors = Vec::new();
    let field = |name: &str| format!("{at}{name}");
    let target = match (body.domain, body.address) {
        (Some(domain), None) => DomainName::parse(&domain)
            .map(Target::Domain)
            .map_err(|message| errors.push(FieldError::new(field("domain"), message)))
            .ok(),
        (None, Some(address)) => MailAddress::parse(&address)
            .map(Target::Address)
            .map_err(|message| errors.push(FieldError::new(field("address"), message)))
            .ok(),
        _ => {
            errors.push(FieldError::new(
                field("address"),
                "give exactly one of domain and address",
            ));
            None
        }
    };
    if body.direction == Direction::Inbound && body.enrol == Some(true) {
        errors.push(FieldError::new(
            field("enrol"),
            "only an outbound check (a sender) enrols; a recipient never takes a seat",
        ));
    }
    if let Some(module) = &body.module
        && !checker.knows_module(module)
    {
        errors.push(FieldError::new(
            field("module"),
            "is not a module of the catalogue (GET /v1/modules)",
        ));
    }
    match target {
        Some(target) if errors.is_empty() => Ok(Question {
            target,
            direction: body.direction,
            module: body.module,
            enrol: body.enrol,
        }),
        _ => Err(errors),
    }
}

async fn answer(checker: &Arc<Checker>, caller: &CheckCaller, question: Question) -> Answer {
    checker
        .check(
            Scope::Subtree(caller.caller.node),
            question,
            Listener::Http,
            &caller.caller.actor,
            || {
                (
                    crate::telemetry::RequestId::of(&caller.request),
                    crate::edge::client::address(&caller.request),
                )
            },
        )
        .await
}

crate::error::problem_answers! {
    /// The answers both check routes share, besides those of every secured route: 403 for a token
    /// good only for a password change, 503 before the index is built.
    Checked => crate::error::problems(&[
        (
            "403",
            "The token is good only for changing its account's password (`password-change-required`)",
        ),
        (
            "503",
            "The index is not built yet: the database has been unreachable since start (`unavailable`)",
        ),
    ])
}

/// Whether a mail server may accept mail for a recipient (`inbound`) or from a sender
/// (`outbound`), or for a whole domain. Any principal may ask about its own subtree; mail workers
/// use an API key with the `check` role. `verdict` is `accept`, `reject` (permanent: bounce) or
/// `defer` (temporary: keep the mail queued and try again; never treat it as accept), and
/// `smtp_code` with `smtp_status` is the SMTP reply to give. `reason` is one of a stable set:
/// `ok`, `unknown_domain`, `domain_unverified`, `domain_disabled`, `node_suspended`,
/// `unknown_mailbox`, `mailbox_disabled`, `users_exhausted`, `ancestor_exhausted`, `over_limit`,
/// `module_not_licensed`, `module_not_assigned`, `not_in_scope`, `unavailable`. What the customer
/// can fix by buying or paying defers unless the operator made it permanent
/// (`ALLOT_LICENCE_REFUSALS`). An unknown recipient is accepted when the customer's
/// `inbound_recipients` is `domain` and refused `unknown_mailbox` when it is `known`; it never
/// takes a seat. An unknown sender on an active customer's verified domain is enrolled as a
/// mailbox (`enrolled: true`) when enrolment is on and a `users` and a `module:base` seat are
/// free; it holds the automatic modules only. Limits are judged at the instant of the check.
///
/// Rules the body's schema cannot state: `enrol: true` is refused on an `inbound` check (a
/// recipient never takes a seat), and `module` must name a module of the catalogue
/// (`GET /v1/modules`); either is 422 naming the field.
#[utoipa::path(
    tag = "check",
    security(("accessToken" = []), ("apiKey" = [])),
    request_body = CheckQuestion,
    responses(
        (status = 200, description = "The answer", body = Answer),
        Checked,
        (status = 422, description = "Neither or both of `domain` and `address`, a malformed one, or an unknown module", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/check")]
pub(crate) async fn check(
    state: web::Data<AppState>,
    caller: CheckCaller,
    body: Json<CheckRequest>,
) -> Result<web::Json<Answer>, ApiError> {
    let question = parse(&state.checker, body.0, "").map_err(ApiError::Validation)?;
    Ok(web::Json(answer(&state.checker, &caller, question).await))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBatch {
    /// 1 to 1,000 checks.
    #[schema(value_type = Vec<CheckQuestion>, min_items = 1, max_items = 1000)]
    pub checks: Vec<CheckRequest>,
}

/// The schema of one check: a check of a domain or a check of an address, exactly one of the two
/// (`oneOf`), each a closed object. Built from [`CheckRequest`]'s derived schema, so that the
/// fields they share are described once.
pub(crate) struct CheckQuestion;

/// The two kinds of check: the schema's name, the member it asks about, and that member's schema.
const CHECK_KINDS: [(&str, &str, &str); 2] = [
    ("DomainCheck", "domain", "DomainText"),
    ("AddressCheck", "address", "Address"),
];

impl utoipa::PartialSchema for CheckQuestion {
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOfBuilder::new().description(Some(
            "A check of a domain (`domain`) or of an address (`address`): exactly one of the two.",
        ));
        for (name, _, _) in CHECK_KINDS {
            one_of = one_of.item(Ref::from_schema_name(name));
        }
        one_of.into()
    }
}

impl ToSchema for CheckQuestion {
    fn name() -> std::borrow::Cow<'static, str> {
        "CheckRequest".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let RefOr::T(Schema::Object(fields)) = <CheckRequest as utoipa::PartialSchema>::schema()
        else {
            unreachable!("a derived struct's schema is an object")
        };
        for (name, member, schema) in CHECK_KINDS {
            let mut kind = fields.clone();
            // The other kind's member is left out, and the object is closed: a body naming both
            // matches neither kind. (The server also takes the other member as `null`; leaving it
            // out keeps generated clients' types simple, and a client that never sends it loses
            // nothing.)
            for (_, other, _) in CHECK_KINDS {
                if other == member {
                    kind.properties
                        .insert(other.to_owned(), Ref::from_schema_name(schema).into());
                } else {
                    kind.properties.remove(other);
                }
            }
            kind.required.push(member.to_owned());
            kind.description = Some(format!("A check of one {member}."));
            schemas.push((name.to_owned(), RefOr::T(Schema::Object(kind))));
        }
        <CheckRequest as ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CheckResults {
    /// One answer per check, in the order asked.
    pub results: Vec<Answer>,
}

/// Up to 1,000 checks in one request, answered in the same order. Every check is parsed first: one
/// malformed check refuses the batch (422, naming `checks[i].field`) and nothing is enrolled.
///
/// Each check follows `POST /v1/check`'s rules, those its schema cannot state included: `enrol:
/// true` is refused on an `inbound` check, and `module` must name a module of the catalogue.
#[utoipa::path(
    tag = "check",
    security(("accessToken" = []), ("apiKey" = [])),
    request_body = CheckBatch,
    responses(
        (status = 200, description = "The answers, in order", body = CheckResults),
        Checked,
        (status = 422, description = "No checks, more than 1,000, or a malformed one", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/check/batch")]
pub(crate) async fn check_batch(
    state: web::Data<AppState>,
    caller: CheckCaller,
    body: Json<CheckBatch>,
) -> Result<web::Json<CheckResults>, ApiError> {
    let checks = body.0.checks;
    if checks.is_empty() || checks.len() > MAX_BATCH {
        return Err(ApiError::validation(
            "checks",
            format!("must hold 1 to {MAX_BATCH} checks"),
        ));
    }
    let mut questions = Vec::with_capacity(checks.len());
    let mut errors = Vec::new();
    for (i, one) in checks.into_iter().enumerate() {
        match parse(&state.checker, one, &format!("checks[{i}].")) {
            Ok(question) => questions.push(question),
            Err(found) => errors.extend(found),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut results = Vec::with_capacity(questions.len());
    for question in questions {
        results.push(answer(&state.checker, &caller, question).await);
    }
    Ok(web::Json(CheckResults { results }))
}

/// Brings the check index up to date after a write, before its response is sent. Reads (safe
/// methods) and refused writes (an error status: a refused write leaves no trace) change nothing,
/// and the check endpoints catch up themselves when they enrol.
pub(crate) async fn sync_after_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let checker = (!req.method().is_safe() && !req.path().starts_with("/v1/check"))
        .then(|| {
            req.app_data::<web::Data<AppState>>()
                .map(|state| Arc::clone(&state.checker))
        })
        .flatten();
    let response = next.call(req).await?;
    if let Some(checker) = checker
        .filter(|_| !response.status().is_client_error() && !response.status().is_server_error())
    {
        let synced = web::block(move || checker.catch_up()).await;
        if let Err(err) = synced
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            tracing::warn!(error = %err, "the check index could not catch up after a write");
        }
    }
    Ok(response)
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(check).service(check_batch);
}
