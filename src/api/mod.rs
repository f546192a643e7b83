//! The HTTP API: one file per resource, each handler documented with `#[utoipa::path]` and
//! registered through utoipa-actix-web, so a route and its OpenAPI description are added in one
//! call and the document cannot miss a route.

pub mod allocations;
pub mod audit;
pub mod auth;
pub mod check;
pub mod common;
pub(crate) mod document;
pub mod domains;
pub mod extract;
pub mod groups;
pub mod health;
pub mod idempotency;
pub mod licence;
pub mod mailboxes;
pub mod meta;
pub mod modules;
pub mod nodes;
pub mod plans;
pub mod principals;
pub mod schemas;
pub mod settings;
pub(crate) mod spreadsheet;
pub mod statistics;
mod strict;
pub mod usage;
pub mod webhooks;

use actix_web::App;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{FieldError, Problem};

/// Registers every documented route.
///
/// actix matches a request against the routes in this order, running a regular expression for
/// each pattern with a parameter, so the hot routes come first: the check and the health probes
/// (the check registered last spent a quarter of its CPU time in route matching; see
/// BENCHMARKS.md). No pattern overlaps another, so the order changes nothing else.
pub(crate) fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.configure(check::routes)
        .configure(health::routes)
        .configure(meta::routes)
        .configure(auth::routes)
        .configure(licence::routes)
        .configure(nodes::routes)
        .configure(allocations::routes)
        .configure(plans::routes)
        .configure(usage::routes)
        .configure(statistics::routes)
        .configure(audit::routes)
        .configure(principals::routes)
        .configure(domains::routes)
        .configure(mailboxes::routes)
        .configure(groups::routes)
        .configure(modules::routes)
        .configure(settings::routes)
        .configure(webhooks::routes);
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "allot",
        description = "Licence allocation down a tree of resellers to customers, and the check mail workers ask.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(
        Problem,
        FieldError,
        // Named by parameters (which do not carry their schemas into the document) or built by
        // hand (whose references the derive cannot follow).
        schemas::Day,
        schemas::ResourceKey,
        schemas::ModuleCode,
        schemas::DomainText,
        schemas::ItemStatus,
        schemas::MailboxOrigin,
        schemas::IdempotencyKeyText,
        schemas::IfMatchText,
        schemas::Collision,
        schemas::CollidingAddress,
        crate::domain::tree::NodeKind,
        crate::domain::tree::NodeStatus,
        crate::domain::audit::Action,
        crate::domain::outbox::EventType,
        crate::domain::outbox::MessageKind,
        crate::domain::outbox::MessageStatus,
        crate::domain::settings::Group,
        crate::domain::settings::Transport,
        crate::domain::settings::Security,
        crate::domain::settings::SmtpAuth,
        nodes::ChildInclude,
    )),
    tags(
        (name = "auth", description = "Logging in and asking who one is"),
        (name = "licence", description = "The owner's bulk licence"),
        (name = "nodes", description = "The tree: owner, resellers, customers"),
        (name = "allocations", description = "Grants of resources down the tree, over time"),
        (name = "plans", description = "Named bundles of grants, modules and settings a node sells to its subtree's customers, versioned"),
        (name = "usage", description = "Limits, allocations and usage per node"),
        (name = "audit", description = "The audit trail: every change, who made it, when"),
        (name = "principals", description = "Accounts and API keys"),
        (name = "domains", description = "Customers' domains"),
        (name = "mailboxes", description = "Customers' mailboxes (users) and their aliases"),
        (name = "groups", description = "Customers' groups of mailboxes"),
        (name = "modules", description = "The module catalogue, and the modules mailboxes and customers hold"),
        (name = "settings", description = "Settings inherited down the tree: the mail server, support, notifications"),
        (name = "webhooks", description = "Webhook subscriptions to a subtree's events, and the outbox that delivers them"),
        (name = "check", description = "What mail workers ask before accepting a domain or a mailbox"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "meta", description = "This document, the docs, the problem types"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of every registered route. What `/openapi.json` serves, `allot openapi`
/// prints and `openapi/openapi.json` holds.
pub fn openapi() -> OpenApiDoc {
    let mut doc = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(configure)
        .split_for_parts()
        .1;
    // After the routes: the conventions are applied to every operation.
    utoipa::Modify::modify(&document::Conventions, &mut doc);
    doc
}

/// The document as the pretty JSON that is committed.
pub fn openapi_json(doc: &OpenApiDoc) -> String {
    let mut text = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
