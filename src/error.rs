//! Every error leaves allot as an RFC 9457 problem document (`application/problem+json`).
//!
//! [`ApiError`] is what handlers return; domain and storage errors convert into it with `From`.
//! [`ProblemType`] is the stable catalogue of problem `type`s: each is a relative URI
//! `/problems/<slug>` that allot itself answers with a description, and the OpenAPI description
//! lists them all. [`plain_errors_as_problems`] catches what no handler produced (an unknown
//! route, a method not allowed, an error from actix itself) so that no response is ever an HTML
//! page or an empty body.

use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// The `Retry-After` (seconds) of every `unavailable` answer.
pub(crate) const UNAVAILABLE_RETRY_AFTER: u64 = 2;

/// Declares the catalogue: each variant with its slug, its title and its description, written
/// once; `ALL` lists them in this order (the order of the problem types' listing).
macro_rules! problem_types {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = ($slug:literal, $title:literal, $description:literal),)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            pub const fn slug(self) -> &'static str {
                match self {
                    $(Self::$variant => $slug,)*
                }
            }

            pub const fn title(self) -> &'static str {
                match self {
                    $(Self::$variant => $title,)*
                }
            }

            pub const fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $description,)*
                }
            }
        }
    };
}

problem_types! {
    /// The catalogue of problem types. Slugs are part of the API contract: never rename one.
    pub enum ProblemType {
        MalformedBody = ("malformed-body",
            "The request body is not valid JSON",
            "The body could not be parsed as JSON (a syntax error, a truncated document or invalid UTF-8). `detail` says where. Nothing was changed."),
        UnsupportedMediaType = ("unsupported-media-type",
            "Unsupported media type",
            "The body's Content-Type is not one this endpoint accepts (usually `application/json`). Nothing was changed."),
        PayloadTooLarge = ("payload-too-large",
            "The request body is too large",
            "The body is larger than the configured limit (`ALLOT_BODY_LIMIT`). Nothing was changed."),
        RequestTimeout = ("request-timeout",
            "The request did not arrive in time",
            "The request's head and body did not arrive whole within `ALLOT_REQUEST_TIMEOUT` seconds of the connection being ready for it. Nothing was changed; the connection is closed. Send the body promptly, or retry."),
        InvalidQuery = ("invalid-query",
            "The query string is invalid",
            "A query-string parameter is missing, unknown or of the wrong type. `errors` names it."),
        RangeTooLong = ("range-too-long",
            "The date range is too long",
            "The days from `from` to `to` are more than one request answers (366). Ask for the range in parts. `errors` names the field."),
        ValidationFailed = ("validation-failed",
            "Some fields are invalid",
            "The body parsed, but fields break the rules. `errors` lists each field with its message. Nothing was changed."),
        Unauthorized = ("unauthorized",
            "Authentication required",
            "No credentials, or credentials that are malformed, expired, revoked or signed by an unknown key. Send `Authorization: Bearer <token or API key>`."),
        InvalidCredentials = ("invalid-credentials",
            "Wrong username or password",
            "The username and password do not match an active account. The answer is the same whether or not the username exists."),
        Forbidden = ("forbidden",
            "Not allowed",
            "The caller may see the target but its role does not allow this action."),
        PasswordChangeRequired = ("password-change-required",
            "The password must be changed first",
            "An admin set this account's password, so the token from logging in with it is good only for choosing a new one: `PATCH /v1/accounts/{own id}` with `password` and `current_password` (and `GET /v1/me` to learn the id). Then log in again with the new password."),
        NotFound = ("not-found",
            "Not found",
            "No such resource, or it lies outside the caller's subtree: the two are indistinguishable by design."),
        MethodNotAllowed = ("method-not-allowed",
            "Method not allowed",
            "The path exists but not with this method; `Allow` lists the ones it has."),
        CrossOriginRefused = ("cross-origin-refused",
            "Cross-origin request not allowed",
            "A browser's preflight (`OPTIONS` with `Access-Control-Request-Method`) came from an origin that is not in `ALLOT_CORS_ORIGINS`, or asked for a method or request header the API does not take. `detail` says which. The browser will not send the request."),
        Conflict = ("conflict",
            "Conflict with the current state",
            "The request conflicts with the current state of the resource."),
        QuotaExceeded = ("quota-exceeded",
            "Not enough licence left",
            "The change would hand out more than the tree allows. `node_id` is where it failed, `resource` and `at` (the first day that fails) say what and when, `limit` is the limit there that day, `requested` the units that had to fit and `available` what was free. Nothing was changed."),
        AncestorExhausted = ("ancestor-exhausted",
            "An ancestor has no seat left",
            "The customer has room of its own, but `node_id`, one of its ancestors (a reseller selling more than it holds, or the owner), already uses every real seat of `resource` within its subtree: `limit` is that ancestor's limit today and `used` what its subtree uses. Those three are shown only to a caller at or above that ancestor (who may read it); a caller below it learns that an ancestor is exhausted, with `resource` and `at`, not which one nor its figures. A seat frees when any customer below it frees one, or when that ancestor's parent raises its limit. Nothing was changed."),
        PlanDoesNotFit = ("plan-does-not-fit",
            "The customer uses more than the plan allows",
            "The plan (or taking the customer off its plan) would lower the customer's limit of some resource below what it uses now. `shortfalls` lists each such resource with `used`, the `limit` it would have and the day `at`. Free the units first, or send `allow_over_limit: true` to change the plan anyway (the customer is then over its limit, as when an allocation ends: new use is refused until it is back within). Nothing was changed."),
        NameTaken = ("name-taken",
            "The name is taken",
            "The name is in use: a sibling node's name, or a username (usernames are unique installation-wide)."),
        DomainTaken = ("domain-taken",
            "The domain is registered already",
            "A verified domain belongs to one customer in the whole installation, and this one is proven already by another customer (by whom is not said), or this customer claims it already. Unproven claims block no one: the first proof wins the name."),
        AddressTaken = ("address-taken",
            "The address exists already",
            "A mailbox (or alias) with this address exists already; addresses are unique across the installation. Two spellings are the same address when they differ only in Unicode normalisation (NFC), in the case of the domain, or in the case of the local part unless the customer's `local_part_case` is `sensitive`."),
        AddressCollision = ("address-collision",
            "Addresses would become the same",
            "The customer's mailboxes and aliases include addresses that differ only in the case of their local parts, so `local_part_case` cannot become `insensitive`: they would be one mailbox. `collisions` lists each group. Rename or delete all but one of each group first. Nothing was changed."),
        ImportFailed = ("import-failed",
            "Some rows of the import failed",
            "An all-or-nothing import (`atomic=true`) had rows that failed, so nothing was imported. `rows` lists every row with its line number: `failed` ones with their own problem, `skipped` ones that were valid."),
        VerificationFailed = ("verification-failed",
            "The domain's ownership could not be proven",
            "No TXT record `_allot.<domain>` holding the domain's verification token was found. Publish it and retry; DNS may take a while to show it."),
        RouteMissing = ("route-missing",
            "The domain has no delivery route",
            "The domain has no delivery route to test. Set one with `PATCH /v1/domains/{id}` (`route: {host, port, priority}`) first."),
        RouteTargetForbidden = ("route-target-forbidden",
            "allot does not connect to that address",
            "The route's host is, or resolves only to, addresses that are not publicly routable (loopback, private, carrier-grade NAT, link-local, unique local, documentation, reserved, allot's own host's) or never a server (unspecified, multicast, broadcast). Nothing was connected to. The operator may allow private targets with `ALLOT_ROUTE_TEST_ALLOW_PRIVATE`."),
        RouteTestBusy = ("route-test-busy",
            "Too many route tests",
            "A test of this domain's route is running, the domain has started 10 tests in the last minute, or allot runs as many route tests as it allows at once. `Retry-After` says how many seconds to wait."),
        MailDisabled = ("mail-disabled",
            "No mail is sent from here",
            "No mail server applies to the node: the owner's `mail_server.enabled` is not on (then nothing is sent anywhere), or no node from the owner down to this one configures a server. Nothing was sent."),
        MailTargetForbidden = ("mail-target-forbidden",
            "allot does not connect to that mail server",
            "The mail server's host is, or resolves only to, addresses that are not publicly routable (loopback, private, link-local, allot's own host's, …) or never a server. Nothing was connected to. The operator may allow private mail servers with `ALLOT_MAIL_ALLOW_PRIVATE`."),
        MailTestBusy = ("mail-test-busy",
            "Too many test messages",
            "A test message from this node is being sent, the node has sent 10 in the last minute, or allot sends as many as it allows at once. `Retry-After` says how many seconds to wait."),
        NotEmpty = ("not-empty",
            "Still in use",
            "The node still holds children, domains, mailboxes or live allocations to its children; `detail` lists them. Remove them first, or use `?cascade=true` where offered."),
        NodeSuspended = ("node-suspended",
            "The node is suspended",
            "The target lies in a suspended subtree: `node_id` is the suspended node (the target itself or the topmost suspended one above it). A suspended node and everything below it are read-only: reads work, writes are refused and nothing was changed. An admin strictly above the suspended node may still lift the suspension, move or delete the node and change its allocations; anyone may still change their own password and email, and an admin may still disable or delete accounts and revoke API keys there. 409 rather than 403: the caller's role does allow the action, the node's current state does not, and the same request succeeds once the suspension is lifted."),
        ModuleRequired = ("module-required",
            "Another module is required",
            "The module requires another that the mailbox (or customer) does not hold, or it is required by another that it holds and so cannot be removed. `module` names the other module: assign it first, or remove it first. Nothing was changed."),
        ModuleExcluded = ("module-excluded",
            "The modules exclude each other",
            "The module and one the mailbox (or customer) holds exclude each other. `module` names the one in the way. Nothing was changed."),
        PreconditionFailed = ("precondition-failed",
            "The resource has changed",
            "`If-Match` names a version (ETag) that is no longer current: someone else changed the resource. Read it again and retry."),
        IdempotencyKeyReused = ("idempotency-key-reused",
            "The Idempotency-Key was used for another request",
            "This `Idempotency-Key` was sent by the same caller within 24 hours with another method, path or body. Use a new key for a new request. Nothing was changed."),
        TooManyRequests = ("too-many-requests",
            "Too many failed attempts",
            "Five logins for this username or from this address failed in the last 15 minutes, or are being verified at this moment. `Retry-After` says how many seconds to wait: until the oldest failure is 15 minutes old, or 1 while attempts are still being verified."),
        RateLimited = ("rate-limited",
            "Request budget spent",
            "The caller (an API key or an account) sent more requests than its budget allows: `ALLOT_RATE_LIMIT` requests a minute, `ALLOT_CHECK_RATE_LIMIT` for `check` principals, or a key's own `rate_limit`. The request was not run. `Retry-After` says how many seconds to wait; `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) name the budget and what is left of it. Each allot instance counts on its own."),
        Unavailable = ("unavailable",
            "Temporarily unavailable",
            "A dependency (usually the database) is not reachable, or the database is busy. `Retry-After` says how many seconds to wait; nothing was changed (a write whose connection died at its commit may have committed: send writes with an `Idempotency-Key` to retry them safely)."),
        Internal = ("internal",
            "Internal error",
            "An unexpected error. It was logged with the request id (`x-request-id`); nothing was half-written."),
        /// Any other HTTP error status, for the catch-all.
        Http = ("http",
            "HTTP error",
            "An HTTP error without a more specific type; `status` and `title` say which."),
    }
}

impl ProblemType {
    pub fn uri(self) -> String {
        format!("/problems/{}", self.slug())
    }

    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.slug() == slug)
    }

    /// The type for an error status that no handler described.
    fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::MalformedBody,
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::REQUEST_TIMEOUT => Self::RequestTimeout,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::PRECONDITION_FAILED => Self::PreconditionFailed,
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            StatusCode::INTERNAL_SERVER_ERROR => Self::Internal,
            _ => Self::Http,
        }
    }
}

/// One field that failed validation. `field` is a path into the body (`route.port`,
/// `checks[3].address`), `body` when the body as a whole has the wrong type (an array where an
/// object belongs), or the name of a query parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A relative URI `/problems/<slug>` identifying the kind of problem; allot answers it.
    #[serde(rename = "type")]
    #[schema(value_type = crate::api::schemas::ProblemTypeUri)]
    pub problem_type: String,
    pub title: String,
    /// The HTTP status of the answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What happened in this occurrence, for a person to read.
    pub detail: String,
    /// The fields that failed validation; absent when none did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(required = false)]
    pub errors: Vec<FieldError>,
    /// For `quota-exceeded`: the node where the tree's invariant would break; for
    /// `node-suspended`: the suspended node.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub node_id: Option<crate::domain::ids::NodeId>,
    /// For `quota-exceeded`: the resource (`users`, `domains`, `module:<code>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// For `quota-exceeded`: the first day on which it fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::NaiveDate>,
    /// For `quota-exceeded`: the limit at that node on that day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// For `quota-exceeded`: the units that had to fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    /// For `quota-exceeded`: the units that were free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    /// For `ancestor-exhausted`: what the ancestor's subtree uses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<i64>,
    /// For `module-required` and `module-excluded`: the other module, to assign or remove first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// For `import-failed`: every row's outcome; `failed` ones carry their own problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::api::mailboxes::RowOutcome>>, nullable = false)]
    pub rows: Option<Vec<serde_json::Value>>,
    /// For `plan-does-not-fit`: each resource the customer would use beyond its new limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::api::plans::ShortfallView>>, nullable = false)]
    pub shortfalls: Option<Vec<crate::domain::plans::Shortfall>>,
    /// For `address-collision`: each group of addresses that would be one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::api::schemas::Collision>>, nullable = false)]
    pub collisions: Option<Vec<serde_json::Value>>,
}

impl Problem {
    fn new(kind: ProblemType, status: StatusCode, detail: String) -> Self {
        Self {
            problem_type: kind.uri(),
            title: kind.title().to_owned(),
            status: status.as_u16(),
            detail,
            errors: Vec::new(),
            node_id: None,
            resource: None,
            at: None,
            limit: None,
            requested: None,
            available: None,
            used: None,
            module: None,
            rows: None,
            shortfalls: None,
            collisions: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{}", summary(.0))]
    InvalidQuery(Vec<FieldError>),
    #[error("{}", summary(.0))]
    Validation(Vec<FieldError>),
    #[error("{}", summary(.0))]
    RangeTooLong(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("The username and password do not match an active account.")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "An admin set this account's password: choose a new one (PATCH /v1/accounts/{{own id}} with `password` and `current_password`), then log in again."
    )]
    PasswordChangeRequired,
    #[error("no such resource")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("Not enough licence: {0}.")]
    QuotaExceeded(crate::domain::quota::Refusal),
    /// `ancestor-exhausted` as a caller below the exhausted ancestor sees it: that one is, not
    /// which nor its figures (see `Principal::shown`).
    #[error(
        "Not enough licence: no {resource} seat is left above this node on {at}; a provider's subtree uses all of its seats."
    )]
    AncestorExhaustedAbove {
        resource: String,
        at: chrono::NaiveDate,
    },
    #[error("{}", shortfall_summary(.0))]
    PlanDoesNotFit(Vec<crate::domain::plans::Shortfall>),
    #[error("{0}")]
    NameTaken(String),
    #[error("{0}")]
    NotEmpty(String),
    #[error(
        "Node {0} is suspended: it and everything below it are read-only until an admin above it lifts the suspension."
    )]
    NodeSuspended(crate::domain::ids::NodeId),
    #[error("{0}.")]
    Module(crate::domain::catalogue::Refusal),
    #[error("This domain is verified by another customer, or claimed by this one already.")]
    DomainTaken,
    #[error("A mailbox with this address exists already.")]
    AddressTaken,
    #[error("{} row(s) failed, so nothing was imported.", .0.len())]
    ImportFailed(Vec<serde_json::Value>),
    #[error("{} group(s) of addresses differ only in the case of their local parts.", .0.len())]
    AddressCollision(Vec<serde_json::Value>),
    #[error("{0}")]
    VerificationFailed(String),
    #[error("{0}")]
    RouteMissing(String),
    #[error("{0}")]
    RouteTargetForbidden(String),
    #[error("{detail}")]
    RouteTestBusy { detail: String, retry_after: u64 },
    #[error("{0}")]
    MailDisabled(String),
    #[error("{0}")]
    MailTargetForbidden(String),
    #[error("{detail}")]
    MailTestBusy { detail: String, retry_after: u64 },
    #[error("Too many failed attempts; retry in {retry_after} seconds.")]
    TooManyRequests { retry_after: u64 },
    #[error(
        "This caller spent its budget of {} requests a minute (policy \"{}\"); retry in {} seconds.",
        .0.quota(), .0.policy(), .0.retry_after()
    )]
    RateLimited(crate::auth::rate_limit::Allowance),
    #[error("This Idempotency-Key was used for another request in the last 24 hours.")]
    IdempotencyKeyReused,
    #[error("If-Match does not match the current version ({current}); read the resource again.")]
    PreconditionFailed { current: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn shortfall_summary(shortfalls: &[crate::domain::plans::Shortfall]) -> String {
    let each: Vec<String> = shortfalls
        .iter()
        .map(|s| format!("{} (uses {}, would have {})", s.resource, s.used, s.limit))
        .collect();
    format!(
        "The customer uses more than the new limits allow: {}.",
        each.join(", ")
    )
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }

    /// A database error, where a unique index's refusal (a race that an earlier check in the same
    /// transaction lost) answers as `taken()`.
    pub fn unless_unique(err: diesel::result::Error, taken: impl FnOnce() -> Self) -> Self {
        match err {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => taken(),
            other => other.into(),
        }
    }

    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::MalformedBody(_) => ProblemType::MalformedBody,
            Self::UnsupportedMediaType(_) => ProblemType::UnsupportedMediaType,
            Self::PayloadTooLarge { .. } => ProblemType::PayloadTooLarge,
            Self::RequestTimeout(_) => ProblemType::RequestTimeout,
            Self::InvalidQuery(_) => ProblemType::InvalidQuery,
            Self::Validation(_) => ProblemType::ValidationFailed,
            Self::RangeTooLong(_) => ProblemType::RangeTooLong,
            Self::Unauthorized(_) => ProblemType::Unauthorized,
            Self::InvalidCredentials => ProblemType::InvalidCredentials,
            Self::Forbidden(_) => ProblemType::Forbidden,
            Self::PasswordChangeRequired => ProblemType::PasswordChangeRequired,
            Self::NotFound => ProblemType::NotFound,
            Self::Conflict(_) => ProblemType::Conflict,
            Self::QuotaExceeded(refusal) if refusal.ancestor => ProblemType::AncestorExhausted,
            Self::QuotaExceeded(_) => ProblemType::QuotaExceeded,
            Self::AncestorExhaustedAbove { .. } => ProblemType::AncestorExhausted,
            Self::PlanDoesNotFit(_) => ProblemType::PlanDoesNotFit,
            Self::NameTaken(_) => ProblemType::NameTaken,
            Self::NotEmpty(_) => ProblemType::NotEmpty,
            Self::NodeSuspended(_) => ProblemType::NodeSuspended,
            Self::Module(crate::domain::catalogue::Refusal::Excludes { .. }) => {
                ProblemType::ModuleExcluded
            }
            Self::Module(_) => ProblemType::ModuleRequired,
            Self::DomainTaken => ProblemType::DomainTaken,
            Self::AddressTaken => ProblemType::AddressTaken,
            Self::ImportFailed(_) => ProblemType::ImportFailed,
            Self::AddressCollision(_) => ProblemType::AddressCollision,
            Self::VerificationFailed(_) => ProblemType::VerificationFailed,
            Self::RouteMissing(_) => ProblemType::RouteMissing,
            Self::RouteTargetForbidden(_) => ProblemType::RouteTargetForbidden,
            Self::RouteTestBusy { .. } => ProblemType::RouteTestBusy,
            Self::MailDisabled(_) => ProblemType::MailDisabled,
            Self::MailTargetForbidden(_) => ProblemType::MailTargetForbidden,
            Self::MailTestBusy { .. } => ProblemType::MailTestBusy,
            Self::PreconditionFailed { .. } => ProblemType::PreconditionFailed,
            Self::IdempotencyKeyReused => ProblemType::IdempotencyKeyReused,
            Self::TooManyRequests { .. } => ProblemType::TooManyRequests,
            Self::RateLimited(_) => ProblemType::RateLimited,
            Self::Unavailable(_) => ProblemType::Unavailable,
            Self::Internal(_) => ProblemType::Internal,
        }
    }

    pub fn to_problem(&self) -> Problem {
        let kind = self.problem_type();
        let errors = match self {
            Self::InvalidQuery(errors) | Self::Validation(errors) | Self::RangeTooLong(errors) => {
                errors.clone()
            }
            _ => Vec::new(),
        };
        let detail = match self {
            // Never send internals to the client; the log has the whole chain.
            Self::Internal(_) => {
                "An unexpected error occurred; it has been logged with this request's id."
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = Problem::new(kind, self.status_code(), detail);
        problem.errors = errors;
        if let Self::Module(refusal) = self {
            problem.module = Some(refusal.names().to_owned());
        }
        if let Self::NodeSuspended(node_id) = self {
            problem.node_id = Some(*node_id);
        }
        if let Self::ImportFailed(rows) = self {
            problem.rows = Some(rows.clone());
        }
        if let Self::PlanDoesNotFit(shortfalls) = self {
            problem.shortfalls = Some(shortfalls.clone());
        }
        if let Self::AddressCollision(groups) = self {
            problem.collisions = Some(groups.clone());
        }
        if let Self::QuotaExceeded(refusal) = self {
            problem.node_id = Some(refusal.node_id);
            problem.resource = Some(refusal.resource.clone());
            problem.at = Some(refusal.at);
            problem.limit = Some(refusal.limit);
            problem.requested = Some(refusal.requested);
            problem.available = Some(refusal.available);
            if refusal.ancestor {
                problem.used = refusal.used;
            }
        }
        if let Self::AncestorExhaustedAbove { resource, at } = self {
            problem.resource = Some(resource.clone());
            problem.at = Some(*at);
        }
        problem
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedBody(_) | Self::InvalidQuery(_) | Self::RangeTooLong(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Validation(_) | Self::ImportFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::PasswordChangeRequired => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_)
            | Self::QuotaExceeded(_)
            | Self::AncestorExhaustedAbove { .. }
            | Self::NameTaken(_)
            | Self::PlanDoesNotFit(_)
            | Self::NotEmpty(_)
            | Self::NodeSuspended(_)
            | Self::Module(_)
            | Self::DomainTaken
            | Self::AddressTaken
            | Self::AddressCollision(_)
            | Self::VerificationFailed(_)
            | Self::RouteMissing(_)
            | Self::MailDisabled(_) => StatusCode::CONFLICT,
            Self::RouteTargetForbidden(_) | Self::MailTargetForbidden(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. }
            | Self::RouteTestBusy { .. }
            | Self::MailTestBusy { .. }
            | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(err) = self {
            tracing::error!(error = %error_chain(err.as_ref()), "request failed");
        }
        let mut response = problem_response(&self.to_problem());
        let retry_after = match self {
            Self::TooManyRequests { retry_after }
            | Self::RouteTestBusy { retry_after, .. }
            | Self::MailTestBusy { retry_after, .. } => Some(*retry_after),
            // Every 503 says when to come back: a database restart or a contended lock is usually
            // over within seconds.
            Self::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER),
            _ => None,
        };
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if let Self::RateLimited(allowance) = self {
            crate::auth::rate_limit::write_refusal(allowance, response.headers_mut());
        }
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"allot\""),
            );
        }
        response
    }
}

pub(crate) fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(PROBLEM_JSON)
        .json(problem)
}

/// "outer: cause: root cause", for the log.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<diesel::result::Error> for ApiError {
    /// Contention is not a failure: a PostgreSQL serialisation failure or deadlock, or SQLite's
    /// lock still held after the busy timeout, answers 503 (retry), never 500. Nor is losing the
    /// database: a connection that died mid-request (the server stopped or restarted) answers 503
    /// too; the pool drops the connection and opens a new one once the server is back.
    fn from(err: diesel::result::Error) -> Self {
        if connection_lost(&err) {
            tracing::warn!(error = %err, "database connection lost");
            return Self::Unavailable("The database is not reachable; retry later.".to_owned());
        }
        use diesel::result::{DatabaseErrorKind, Error};
        let transient = match &err {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
            Error::DatabaseError(_, info) => {
                let message = info.message();
                message.contains("deadlock detected") || message.contains("database is locked")
            }
            _ => false,
        };
        if transient {
            tracing::warn!(error = %err, "database contention");
            Self::Unavailable("The database is busy; retry the request.".to_owned())
        } else {
            Self::internal(err)
        }
    }
}

/// Whether `err` says the database connection is gone rather than that the request was wrong:
/// libpq's closed connection (diesel's `ClosedConnection`, `UnableToSendCommand`), a transaction
/// that could not be rolled back or committed because of it (`BrokenTransactionManager`,
/// `RollbackErrorOnCommit`), or the server's own goodbye (SQLSTATE class 57P: "terminating
/// connection due to administrator command", "the database system is shutting down", … which
/// diesel reports as `Unknown` with PostgreSQL's English message).
fn connection_lost(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        Error::RollbackErrorOnCommit {
            rollback_error,
            commit_error,
        } => connection_lost(rollback_error) || connection_lost(commit_error),
        Error::DatabaseError(_, info) => {
            let message = info.message();
            [
                "terminating connection",
                "server closed the connection",
                "no connection to the server",
                "the database system is shutting down",
                "the database system is starting up",
                "the database system is in recovery mode",
                "connection to server",
            ]
            .iter()
            .any(|needle| message.contains(needle))
        }
        _ => false,
    }
}

impl From<crate::domain::quota::Refusal> for ApiError {
    fn from(refusal: crate::domain::quota::Refusal) -> Self {
        Self::QuotaExceeded(refusal)
    }
}

impl From<crate::store::RunError> for ApiError {
    fn from(err: crate::store::RunError) -> Self {
        match err {
            crate::store::RunError::Pool(e) => {
                tracing::warn!(error = %e, "database unavailable");
                Self::Unavailable("The database is not reachable; retry later.".to_owned())
            }
            crate::store::RunError::Blocking => Self::internal(err),
        }
    }
}

/// The catch-all: an error response that is not a problem document yet becomes one, keeping the
/// status and the headers that matter (`Allow`, `WWW-Authenticate`, `Retry-After`, CORS's).
pub(crate) fn plain_errors_as_problems<B>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let cors = res
        .response()
        .error()
        .and_then(|e| e.as_error::<actix_cors::CorsError>())
        .map(ToString::to_string);
    let kind = match cors {
        Some(_) => ProblemType::CrossOriginRefused,
        None => ProblemType::for_status(status),
    };
    let detail = match kind {
        ProblemType::CrossOriginRefused => cors.unwrap_or_default(),
        ProblemType::NotFound => format!("No route or resource at {}.", res.request().path()),
        ProblemType::MethodNotAllowed => format!(
            "{} is not allowed on {}.",
            res.request().method(),
            res.request().path()
        ),
        _ => status.canonical_reason().unwrap_or("HTTP error").to_owned(),
    };
    let problem = Problem::new(kind, status, detail);
    let (req, old) = res.into_parts();
    let mut new = problem_response(&problem);
    for name in [header::ALLOW, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = old.headers().get(&name) {
            new.headers_mut().insert(name, value.clone());
        }
    }
    // What CORS added (`ALLOT_CORS_ORIGINS`): a browser reads the problem only with them.
    for (name, value) in old.headers() {
        if name.as_str().starts_with("access-control-") || name == header::VARY {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, new).map_into_right_body(),
    ))
}

/// A route's answers by status, as its OpenAPI description lists them.
pub(crate) type Answers =
    std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>;

/// A named set of problem answers that `#[utoipa::path(responses(…))]` lists in one word: the
/// struct and its `IntoResponses`, whose answers are `$answers`.
macro_rules! problem_answers {
    ($(#[$doc:meta])* $name:ident => $answers:expr) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> $crate::error::Answers {
                $answers
            }
        }
    };
}
pub(crate) use problem_answers;

problem_answers! {
    /// The guard's answers, for the OpenAPI description of a route that takes a [`Principal`]
    /// and asks the guard about a node: 403 when the role may not act, 404 when the target does
    /// not exist or lies outside the caller's subtree. What every secured route shares (401, 429,
    /// …) is added by `api::document`.
    ///
    /// [`Principal`]: crate::auth::Principal
    Guarded => problems(&[ROLE_REFUSED, NOT_IN_SUBTREE])
}

problem_answers! {
    /// [`Guarded`]'s 403 alone, for a route whose target is always in the caller's subtree.
    RoleGuarded => problems(&[ROLE_REFUSED])
}

/// Why a guarded route answers 403.
pub(crate) const ROLE_REFUSED: (&str, &str) = (
    "403",
    "The caller's role does not allow this (`forbidden`; a `check` key may only ask the check), or its token is good only for changing its password (`password-change-required`).",
);

/// Why a guarded route answers 404.
pub(crate) const NOT_IN_SUBTREE: (&str, &str) = (
    "404",
    "No such resource in the caller's subtree (`not-found`): one that does not exist and one outside the subtree are not told apart.",
);

/// Problem-document answers by status, with their descriptions.
pub(crate) fn problems(answers: &[(&str, &str)]) -> Answers {
    answers
        .iter()
        .map(|(status, description)| {
            let response = crate::api::document::problem_response((*description).to_owned());
            ((*status).to_owned(), response.into())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    #[test]
    fn a_lost_connection_is_unavailable_and_a_real_failure_is_internal() {
        let closed = Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        let goodbye = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("terminating connection due to administrator command".to_owned()),
        );
        for lost in [closed, goodbye, Error::BrokenTransactionManager] {
            let error = ApiError::from(lost);
            assert_eq!(error.problem_type(), ProblemType::Unavailable);
            let response = error.error_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                response.headers().get(header::RETRY_AFTER).unwrap(),
                &UNAVAILABLE_RETRY_AFTER.to_string()
            );
        }
        let syntax = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("syntax error at or near \"SELEC\"".to_owned()),
        );
        assert_eq!(ApiError::from(syntax).problem_type(), ProblemType::Internal);
        assert_eq!(
            ApiError::from(Error::NotFound).problem_type(),
            ProblemType::Internal
        );
    }
}
