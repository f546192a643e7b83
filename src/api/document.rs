//! What the derive cannot say about the OpenAPI document, said once for every operation: the
//! version and the problem catalogue, the two ways to authenticate, the answers many routes
//! share, summaries short enough to be titles, and the links from each creation to what can be
//! done with what it created.
//!
//! **The answers many routes share** come from what the operation *is*, not from a list kept by
//! hand beside it: an operation with a JSON body can be sent malformed JSON (400), a body too
//! large (413), the wrong `Content-Type` (415), a body of the wrong shape (422) or a body that never
//! arrives (408); one with query parameters an unknown or bad one (400); one with path parameters
//! a path that names nothing (404); one with `If-Match` a stale version (412); one with
//! `Idempotency-Key` a reused key (422) or one still in flight (409); a secured one no or bad
//! credentials (401) or more requests than its budget (429); and any of them can meet an
//! unreachable database or a client over its connection bound (503) or an unexpected failure
//! (500). [`COMMON`] is that table. Each handler lists only what is its own (a name taken, a quota
//! exceeded, a role refused); where it lists a status the table also gives, the table's reasons
//! are added to the handler's description unless it already names their problem type. A new
//! shared answer (a rate limit, say) is one row of [`COMMON`], and every operation it applies to
//! documents it.
//!
//! Whether the document and the server agree is a test, not a hope: `tests/api/coverage.rs`
//! fails on a status the suite saw a route answer that its responses do not list, and on a listed
//! one the suite never saw (unless excused there, with the reason).

use std::collections::BTreeMap;

use utoipa::Modify;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, Server};

use crate::error::{PROBLEM_JSON, ProblemType};

/// The security scheme of an account's access token.
pub(crate) const ACCESS_TOKEN: &str = "accessToken";
/// The security scheme of an API key.
pub(crate) const API_KEY: &str = "apiKey";

/// What an operation is, as far as the answers it shares with others go.
#[derive(Debug, Default, Clone)]
pub(crate) struct Shape {
    /// The media types of its request body (none: it takes no body).
    pub body: Vec<String>,
    pub query: bool,
    pub path: bool,
    pub if_match: bool,
    pub idempotency_key: bool,
    pub secured: bool,
    /// It cannot fail unexpectedly: it touches no database and nothing it does can go wrong.
    pub infallible: bool,
}

impl Shape {
    fn json_body(&self) -> bool {
        self.body.iter().any(|media| media == "application/json")
    }
}

/// One reason an operation of some [`Shape`] gives a status.
pub(crate) struct Common {
    pub status: &'static str,
    /// The problem type, by which a handler's own description is seen to cover the reason.
    pub problem: ProblemType,
    pub applies: fn(&Shape) -> bool,
    pub reason: fn(&Shape) -> String,
    /// Headers the answer carries: name and description.
    pub headers: &'static [(&'static str, &'static str)],
}

const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before retrying.");

/// The answers operations share, by what they are. See the module's description.
pub(crate) const COMMON: &[Common] = &[
    Common {
        status: "400",
        problem: ProblemType::MalformedBody,
        applies: |s| !s.body.is_empty(),
        reason: |s| {
            let form = if s.body.iter().any(|m| m == "text/csv") {
                "JSON or CSV"
            } else {
                "JSON"
            };
            format!("The body is not well-formed {form}, or not UTF-8 (`malformed-body`).")
        },
        headers: &[],
    },
    Common {
        status: "400",
        problem: ProblemType::InvalidQuery,
        applies: |s| s.query,
        reason: |_| {
            "A query parameter is unknown, malformed or out of range (`invalid-query`; `errors` \
             names it)."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "401",
        problem: ProblemType::Unauthorized,
        applies: |s| s.secured,
        reason: |_| {
            "No credentials, or a token or key that is malformed, expired, revoked or of a \
             disabled account (`unauthorized`)."
                .to_owned()
        },
        headers: &[(
            "WWW-Authenticate",
            "`Bearer realm=\"allot\"`: send `Authorization: Bearer <access token or API key>`.",
        )],
    },
    Common {
        status: "404",
        problem: ProblemType::NotFound,
        applies: |s| s.path,
        reason: |_| {
            "Nothing is at this path: no such resource, or a path parameter of the wrong form \
             (`not-found`)."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "408",
        problem: ProblemType::RequestTimeout,
        applies: |s| !s.body.is_empty(),
        reason: |_| {
            "The body did not arrive whole within `ALLOT_REQUEST_TIMEOUT` seconds \
             (`request-timeout`); nothing was changed and the connection is closed."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "409",
        problem: ProblemType::Conflict,
        applies: |s| s.idempotency_key,
        reason: |_| {
            "A request with the same `Idempotency-Key` is still being processed (`conflict`): \
             retry it."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "412",
        problem: ProblemType::PreconditionFailed,
        applies: |s| s.if_match,
        reason: |_| {
            "`If-Match` names another version than the current one (`precondition-failed`): read \
             the resource again."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "413",
        problem: ProblemType::PayloadTooLarge,
        applies: |s| !s.body.is_empty(),
        reason: |_| {
            "The body is larger than `ALLOT_BODY_LIMIT` bytes (`payload-too-large`).".to_owned()
        },
        headers: &[],
    },
    Common {
        status: "415",
        problem: ProblemType::UnsupportedMediaType,
        applies: |s| !s.body.is_empty(),
        reason: |s| {
            let types: Vec<String> = s.body.iter().map(|m| format!("`{m}`")).collect();
            format!(
                "The body's `Content-Type` is not {} (`unsupported-media-type`).",
                types.join(" or ")
            )
        },
        headers: &[],
    },
    Common {
        status: "422",
        problem: ProblemType::ValidationFailed,
        applies: Shape::json_body,
        reason: |_| {
            "The body is not of the documented shape: a field missing, unknown, of the wrong type \
             or out of range (`validation-failed`; `errors` names each by its path)."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "422",
        problem: ProblemType::IdempotencyKeyReused,
        applies: |s| s.idempotency_key,
        reason: |_| {
            "The `Idempotency-Key` was sent in the last 24 hours with another request \
             (`idempotency-key-reused`), or is not 1 to 255 visible ASCII characters \
             (`validation-failed`)."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "429",
        problem: ProblemType::RateLimited,
        applies: |s| s.secured,
        reason: |_| {
            "The caller's request budget is spent (`rate-limited`): `ALLOT_RATE_LIMIT` requests \
             a minute, `ALLOT_CHECK_RATE_LIMIT` for `check` principals, or the key's own \
             `rate_limit`; `Retry-After` says how many seconds to wait."
                .to_owned()
        },
        headers: &crate::auth::rate_limit::HEADER_DOCS,
    },
    Common {
        status: "500",
        problem: ProblemType::Internal,
        applies: |s| !s.infallible,
        reason: |_| {
            "An unexpected failure (`internal`), logged with the request id; nothing was \
             half-written."
                .to_owned()
        },
        headers: &[],
    },
    Common {
        status: "503",
        problem: ProblemType::Unavailable,
        applies: |_| true,
        reason: |s| {
            let database = if s.infallible {
                ""
            } else {
                "the database is unreachable or busy, or "
            };
            format!(
                "allot cannot answer now (`unavailable`): {database}this client address holds \
                 more connections than `ALLOT_MAX_CONNECTIONS_PER_PEER`. Nothing was changed."
            )
        },
        headers: &[RETRY_AFTER],
    },
];

/// Operations that touch no database and cannot fail: method and path.
const INFALLIBLE: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("get", "/problems/{slug}"),
];

/// Where a created resource lives, for the links from its creation: the creating operation (by
/// method and path), the path of the created resource, and for each of that path's parameters
/// the member of the creation's answer that holds its value.
type Created = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The creations and where what they create lives; see [`Created`].
const CREATED: &[Created] = &[
    (
        "post",
        "/v1/nodes/{id}/children",
        "/v1/nodes/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/nodes/{id}/allocations",
        "/v1/allocations/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/nodes/{id}/domains",
        "/v1/domains/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/nodes/{id}/mailboxes",
        "/v1/mailboxes/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/mailboxes/{id}/aliases",
        "/v1/aliases/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/nodes/{id}/groups",
        "/v1/groups/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/nodes/{id}/accounts",
        "/v1/accounts/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/nodes/{id}/api-keys",
        "/v1/api-keys/{id}",
        &[("id", "/id")],
    ),
    (
        "post",
        "/v1/modules",
        "/v1/modules/{code}",
        &[("code", "/code")],
    ),
];

/// The document's conventions, applied after every route has added its operation.
pub(crate) struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
        openapi.servers = Some(vec![Server::new("/")]);
        describe_problems(openapi);
        add_security_schemes(openapi);
        for (path, method, operation) in operations(openapi) {
            let shape = shape(&path, &method, operation);
            if !shape.secured {
                // Public: stated, not left to a default.
                operation.security = Some(Vec::new());
            }
            add_common_answers(operation, &shape);
            split_summary(operation);
        }
        add_links(openapi);
    }
}

/// Every operation with its path and method (lower case).
fn operations(openapi: &mut OpenApi) -> Vec<(String, String, &mut Operation)> {
    let mut found = Vec::new();
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ] {
            if let Some(operation) = operation.as_mut() {
                found.push((path.clone(), method.to_owned(), operation));
            }
        }
    }
    found
}

/// What `operation` is, read from what its handler's attributes declared.
pub(crate) fn shape(path: &str, method: &str, operation: &Operation) -> Shape {
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn, name: Option<&str>| {
        parameters.iter().any(|p| {
            std::mem::discriminant(&p.parameter_in) == std::mem::discriminant(&place)
                && name.is_none_or(|n| p.name.eq_ignore_ascii_case(n))
        })
    };
    Shape {
        body: operation
            .request_body
            .as_ref()
            .map(|body| body.content.keys().cloned().collect())
            .unwrap_or_default(),
        query: has(ParameterIn::Query, None),
        path: has(ParameterIn::Path, None),
        if_match: has(ParameterIn::Header, Some("If-Match")),
        idempotency_key: has(ParameterIn::Header, Some("Idempotency-Key")),
        secured: operation.security.as_ref().is_some_and(|s| !s.is_empty()),
        infallible: INFALLIBLE.contains(&(method, path)),
    }
}

/// Adds each answer of [`COMMON`] that applies to `shape`: a new response, or its reason added to
/// the handler's own (unless that names the problem type already), with its headers.
fn add_common_answers(operation: &mut Operation, shape: &Shape) {
    for common in COMMON.iter().filter(|c| (c.applies)(shape)) {
        let reason = (common.reason)(shape);
        let slug = format!("`{}`", common.problem.slug());
        let entry = operation
            .responses
            .responses
            .entry(common.status.to_owned())
            .or_insert_with(|| RefOr::T(problem_response(String::new())));
        let RefOr::T(response) = entry else {
            continue;
        };
        if !response.description.contains(&slug) {
            response.description = if response.description.is_empty() {
                reason
            } else {
                format!("{} {reason}", sentence(&response.description))
            };
        }
        for (name, description) in common.headers {
            response
                .headers
                .entry((*name).to_owned())
                .or_insert_with(|| string_header(description));
        }
    }
}

/// `text` ending as a sentence does.
fn sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.ends_with(['.', '!', '?']) || text.ends_with(".)") {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// A problem-document answer.
pub(crate) fn problem_response(description: String) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn string_header(description: &str) -> utoipa::openapi::header::Header {
    let schema = if description.starts_with("Seconds") {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    } else {
        ObjectBuilder::new().schema_type(Type::String)
    };
    HeaderBuilder::new()
        .schema(schema)
        .description(Some(description))
        .build()
}

/// A handler's doc comment becomes the operation's description whole, and its first sentence
/// the summary: a title for the operation, where utoipa would make its whole first paragraph one.
fn split_summary(operation: &mut Operation) {
    let first = operation.summary.take().unwrap_or_default();
    let rest = operation.description.take().unwrap_or_default();
    let unwrap = |text: &str| {
        text.split("\n\n")
            .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let full = [unwrap(&first), unwrap(&rest)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if full.is_empty() {
        return;
    }
    operation.summary = Some(first_sentence(&full));
    operation.description = Some(full);
}

/// The text up to the end of its first sentence: a full stop outside backticks followed by white
/// space or the end, not one of `e.g.` or `i.e.`.
fn first_sentence(text: &str) -> String {
    let mut in_code = false;
    let chars: Vec<char> = text.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        match c {
            '`' => in_code = !in_code,
            '.' if !in_code => {
                let ends = chars.get(i + 1).is_none_or(|next| next.is_whitespace());
                let before: String = chars[..i].iter().collect();
                if ends && !before.ends_with("e.g") && !before.ends_with("i.e") {
                    return chars[..=i].iter().collect();
                }
            }
            '\n' => return chars[..i].iter().collect(),
            _ => {}
        }
    }
    text.to_owned()
}

/// Lists the problem types in the document's description.
fn describe_problems(openapi: &mut OpenApi) {
    let mut description = openapi.info.description.clone().unwrap_or_default();
    description.push_str(
        "\n\nEvery error is an RFC 9457 problem document (`application/problem+json`) whose \
         `type` is one of these; `GET` on a type answers its description:\n",
    );
    for kind in ProblemType::ALL {
        description.push_str(&format!("\n- `{}`: {}", kind.uri(), kind.description()));
    }
    openapi.info.description = Some(description);
}

/// The two ways to authenticate, both sent as `Authorization: Bearer …`.
fn add_security_schemes(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        ACCESS_TOKEN,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A person's access token from `POST /v1/auth/token`, as `Authorization: \
                     Bearer <access_token>`. It lives 15 minutes, and stops working at once when \
                     its account is disabled or deleted or its password changes.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("allot_<key id>_<secret>")
                .description(Some(
                    "A machine's API key from `POST /v1/nodes/{id}/api-keys` (shown once), sent \
                     the same way: `Authorization: Bearer allot_<key id>_<secret>`. It works \
                     until it expires or is revoked; a `check` key may only ask the check.",
                ))
                .build(),
        ),
    );
}

/// Links each creation's answer to every operation on what it created.
fn add_links(openapi: &mut OpenApi) {
    let mut targets: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (_, _, resource, _) in CREATED {
        let Some(item) = openapi.paths.paths.get(*resource) else {
            panic!("{resource}: a created resource's path is not in the document");
        };
        let ids = [
            ("read", &item.get),
            ("replace", &item.put),
            ("update", &item.patch),
            ("delete", &item.delete),
            ("act on", &item.post),
        ]
        .into_iter()
        .filter_map(|(verb, operation)| {
            let id = operation.as_ref()?.operation_id.clone()?;
            Some((verb.to_owned(), id))
        })
        .collect();
        targets.insert(resource, ids);
    }
    for (method, path, resource, parameters) in CREATED {
        let Some(operation) = openapi
            .paths
            .paths
            .get_mut(*path)
            .and_then(|item| match *method {
                "post" => item.post.as_mut(),
                "put" => item.put.as_mut(),
                _ => None,
            })
        else {
            panic!("{method} {path}: a creation is not in the document");
        };
        let Some(RefOr::T(created)) = operation.responses.responses.get_mut("201") else {
            panic!("{method} {path}: a creation without a 201 answer");
        };
        for (verb, id) in &targets[resource] {
            // utoipa 5.5 writes `Link`'s own `operation_id` as is (not `operationId`), which no
            // tool reads; the member is set through the extensions, which are written verbatim.
            let spelled = Extensions::from_iter([("operationId", id.clone())]);
            let mut link = LinkBuilder::new()
                .extensions(Some(spelled))
                .description(format!("To {verb} what was created."));
            for (name, pointer) in *parameters {
                link = link.parameter(*name, format!("$response.body#{pointer}"));
            }
            created.links.insert(id.clone(), RefOr::T(link.build()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_first_sentence_outside_code() {
        assert_eq!(
            first_sentence("Creates `a.b` here. And more."),
            "Creates `a.b` here."
        );
        assert_eq!(
            first_sentence("Takes a key (e.g. a UUID). More."),
            "Takes a key (e.g. a UUID)."
        );
        assert_eq!(first_sentence("No stop at all"), "No stop at all");
    }
}
