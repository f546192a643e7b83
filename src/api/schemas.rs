//! OpenAPI schemas for the domain's types. `domain` does not depend on utoipa, so its identifiers
//! and vocabularies are described here: ids as UUID strings, kinds and roles as string enums.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::catalogue::Unit;
use crate::domain::ids::{
    AccountId, AliasId, AllocationId, ApiKeyId, DomainId, GroupId, MailboxId, NodeId,
};
use crate::domain::mail::{Direction, InboundRecipients, LocalPartCase};
use crate::domain::roles::Role;
use crate::domain::status::Status;
use crate::domain::tree::{NodeKind, NodeStatus};
use crate::store::mailboxes::Origin;

macro_rules! uuid_schema {
    ($($ty:ty => $description:literal),* $(,)?) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .description(Some($description))
                    .into()
            }
        }
        impl ToSchema for $ty {}
    )*};
}

macro_rules! enum_schema {
    ($($ty:ty => [$($variant:expr),+] $description:literal),* $(,)?) => {$(
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([$($variant.as_str()),+]))
                    .description(Some($description))
                    .into()
            }
        }
        impl ToSchema for $ty {}
    )*};
}

uuid_schema!(
    NodeId => "A node (tenant) id: a UUID, never reused.",
    AccountId => "An account id.",
    AllocationId => "An allocation id.",
    ApiKeyId => "An API key id (also the middle part of the key).",
    DomainId => "A domain id.",
    MailboxId => "A mailbox id.",
    AliasId => "An alias id.",
    GroupId => "A group id.",
    crate::domain::ids::MessageId => "An outbox message id (a webhook delivery's `webhook-id`).",
    crate::domain::ids::WebhookId => "A webhook subscription id.",
    crate::domain::ids::PlanId => "A plan id.",
);

enum_schema!(
    crate::domain::settings::Group => [
        crate::domain::settings::Group::MailServer,
        crate::domain::settings::Group::Support,
        crate::domain::settings::Group::Notifications
    ]
        "A group of settings: `mail_server` (how allot sends mail), `support` (where support requests go), `notifications` (quota notices).",
    crate::domain::settings::Transport => [
        crate::domain::settings::Transport::Smtp,
        crate::domain::settings::Transport::M365Graph
    ]
        "`smtp`, or `m365_graph` (Microsoft Graph `sendMail` as an app registration).",
    crate::domain::settings::Security => [
        crate::domain::settings::Security::None,
        crate::domain::settings::Security::Starttls,
        crate::domain::settings::Security::Tls
    ]
        "`none` (plain text), `starttls` (required: refused if not offered) or `tls` (from the first byte, usually port 465).",
    crate::domain::settings::SmtpAuth => [
        crate::domain::settings::SmtpAuth::None,
        crate::domain::settings::SmtpAuth::Plain,
        crate::domain::settings::SmtpAuth::Login
    ]
        "`none`, `plain` or `login` (with `username` and `password`).",
    NodeKind => [NodeKind::Owner, NodeKind::Reseller, NodeKind::Customer]
        "`owner` (the root, once), `reseller` (may have children) or `customer` (a leaf).",
    NodeStatus => [NodeStatus::Active, NodeStatus::Suspended]
        "A suspended node and everything under it is refused by the check and read-only (`node-suspended`).",
    Role => [Role::Admin, Role::Manager, Role::Viewer, Role::Check]
        "`admin`, `manager`, `viewer` or `check` (the check endpoints only).",
    Direction => [Direction::Inbound, Direction::Outbound]
        "`inbound`: the address is a recipient (may mail be delivered to it? never enrols); `outbound`: it is a sender (may it send? an unknown sender may be enrolled).",
    InboundRecipients => [InboundRecipients::Domain, InboundRecipients::Known]
        "`domain`: any address on the customer's verified, active domains is accepted inbound (its own server decides); `known`: only mailboxes, aliases and role addresses allot knows, others are refused `unknown_mailbox`.",
    LocalPartCase => [LocalPartCase::Insensitive, LocalPartCase::Sensitive]
        "`insensitive` (the default): local parts that differ only in case are one address (`Jane@` is `jane@`); `sensitive`: local parts compare exactly, as RFC 5321 allows.",
);

enum_schema!(
    crate::domain::outbox::MessageKind => [crate::domain::outbox::MessageKind::Webhook]
        "What a message is: `webhook` (a signed POST of an event to a subscription's URL).",
    crate::domain::outbox::MessageStatus => [
        crate::domain::outbox::MessageStatus::Pending,
        crate::domain::outbox::MessageStatus::Delivering,
        crate::domain::outbox::MessageStatus::Delivered,
        crate::domain::outbox::MessageStatus::Failed
    ]
        "`pending` (waiting for its next attempt), `delivering` (being sent), `delivered` (the target answered 2xx) or `failed` (every attempt failed, or the subscription is gone; `POST /v1/outbox/{id}/retry` sends it again).",
);

impl PartialSchema for crate::domain::outbox::EventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::ALL.iter().map(|a| a.as_str())))
            .description(Some(
                "A webhook event's `type`, `<object>.<what happened>`.",
            ))
            .into()
    }
}
impl ToSchema for crate::domain::outbox::EventType {}

impl PartialSchema for crate::domain::audit::Action {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Self::ALL.iter().map(|a| a.as_str())))
            .description(Some("An audited action, `<kind>.<verb>`."))
            .into()
    }
}
impl ToSchema for crate::domain::audit::Action {}

/// Declares a named string schema for a field the server parses: the Rust type is a marker that
/// only fields' `value_type` names, so that the rule is written once and every body using the
/// field refers to it.
macro_rules! text_schema {
    ($($(#[$meta:meta])* $name:ident => $build:expr;)*) => {$(
        $(#[$meta])*
        pub(crate) struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build.into()
            }
        }

        impl ToSchema for $name {}
    )*};
}

fn text(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// One of `values`, as the only strings a field takes or shows.
fn one_of(values: &[&str], description: &str) -> ObjectBuilder {
    text(description).enum_values(Some(values.iter().copied()))
}

text_schema! {
    /// A day a request names.
    Day => text(
        "A day, `YYYY-MM-DD`, in the years 0001 to 9999 (both backends store and order those alike).",
    )
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
    .pattern(Some("^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}$"));

    /// A plan's code, unique among the plans of the node that defines it.
    PlanCode => text("1 to 32 lowercase letters, digits, `_` and `-`, starting with a letter.")
        .pattern(Some("^[a-z][a-z0-9_-]{0,31}$"))
        .examples([serde_json::json!("business-50")]);

    /// A node's or a group's name.
    NodeName => text(
        "1 to 100 characters once surrounding white space is trimmed: letters of any script, \
         digits, spaces and `. - _ & '`.",
    )
    .pattern(Some(
        r"^\s*[\p{Alphabetic}\p{N}.\-_&'](?:[\p{Alphabetic}\p{N} .\-_&']{0,98}[\p{Alphabetic}\p{N}.\-_&'])?\s*$",
    ))
    .examples([serde_json::json!("Acme Mail Services")]);

    /// Free text on nodes, domains and allocations.
    Description => text(
        "At most 1,000 characters, without control characters other than newline and tab.",
    )
    .max_length(Some(1000))
    .pattern(Some(r"^(?:[^\p{Cc}]|[\t\n])*$"));

    /// A contact phone number.
    Phone => text(
        "3 to 32 characters once trimmed: digits, spaces and dashes, at least one digit, with an \
         optional leading `+`.",
    )
    .pattern(Some(r"^\s*(?=[^0-9]*[0-9])[+0-9\-][0-9 \-]{1,30}[0-9\-]\s*$"))
    .examples([serde_json::json!("+49 30 1234-567")]);

    /// A contact e-mail address: its syntax is checked, nobody is mailed.
    ContactEmail => text("An e-mail address (its syntax is checked; nobody is mailed), at most 254 characters.")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Email)))
        .max_length(Some(254))
        .examples([serde_json::json!("ops@acme.example")]);

    /// A person's name on a mailbox.
    PersonName => text(
        "At most 200 characters once trimmed, without control characters; empty is the same as \
         absent.",
    )
    .pattern(Some(r"^\s*[^\p{Cc}]{0,200}\s*$"));

    /// A label: an API key's or a module's name.
    Label => text("1 to 100 characters once trimmed, without control characters.")
        .pattern(Some(r"^\s*[^\p{Cc}\s](?:[^\p{Cc}]{0,98}[^\p{Cc}\s])?\s*$"));

    /// A module's description.
    ModuleDescription => text("At most 1,000 characters once trimmed.")
        .pattern(Some(r"^\s*(?:\S(?:[\s\S]{0,998}\S)?)?\s*$"));

    /// A module's code.
    ModuleCode => text("1 to 32 lowercase letters, digits and `_`, starting with a letter.")
        .pattern(Some("^[a-z][a-z0-9_]{0,31}$"))
        .examples([serde_json::json!("lft")]);

    /// Module codes, each named once.
    ModuleCodes => utoipa::openapi::schema::ArrayBuilder::new()
        .items(utoipa::openapi::schema::Ref::from_schema_name("ModuleCode"))
        .unique_items(true)
        .description(Some("Module codes of the catalogue, each named once."));

    /// A resource of the licence.
    ResourceKey => text("`users`, `domains` or `module:<code>` for a module of the catalogue.")
        .pattern(Some("^(?:users|domains|module:[a-z][a-z0-9_]{0,31})$"))
        .examples([serde_json::json!("users")]);

    /// A username.
    Username => text("3 to 64 of `A-Z a-z 0-9 . - _ @`; unique in the whole installation.")
        .pattern(Some("^[A-Za-z0-9._@-]{3,64}$"))
        .examples([serde_json::json!("jane.doe")]);

    /// A password being set.
    NewPassword => text("At least 12 characters and at most 1,024 bytes in UTF-8.")
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(12))
        .max_length(Some(1024));

    /// A mail address given to allot.
    Address => text(
        "A mail address: a UTF-8 local part (RFC 6531) at a domain in any IDNA form; at most 254 \
         characters with the domain in ASCII. Local parts must not hold invisible or \
         bidirectional control characters.",
    )
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::IdnEmail)))
    .examples([serde_json::json!("jane.doe@example.com")]);

    /// A domain name given to allot.
    DomainText => text(
        "A domain name in any form IDNA accepts (`Bücher.example`, `xn--bcher-kva.example`), \
         with at least two labels of at most 63 characters, at most 253 characters in ASCII; \
         one trailing dot is dropped.",
    )
    .examples([serde_json::json!("customer.example")]);

    /// A domain's or a mailbox's status.
    ItemStatus => one_of(
        &[Status::Active.as_str(), Status::Disabled.as_str()],
        "`active`, or `disabled`: refused by the check, holding no seat.",
    );

    /// How a mailbox came to be.
    MailboxOrigin => one_of(
        &[Origin::Manual, Origin::Import, Origin::Check, Origin::Role].map(Origin::as_str),
        "`manual` (created through the API), `import`, `check` (enrolled by a mail worker) or \
         `role` (postmaster@, abuse@).",
    );

    /// Who made a change the audit trail records.
    ActorKind => one_of(
        &["system", "account", "api_key"],
        "`system` (allot itself, its command line, expiries), `account` or `api_key`.",
    );

    /// Who a caller is.
    PrincipalKind => one_of(
        &["account", "api_key"],
        "`account` (a person, logged in) or `api_key` (a machine).",
    );

    /// How an access token is sent.
    TokenType => one_of(&["Bearer"], "`Bearer`: send `Authorization: Bearer <access_token>`.");

    /// A health probe's answer.
    Ok => one_of(&["ok"], "`ok`.");

    /// What became of one row of an import.
    RowStatus => one_of(
        &["created", "failed", "skipped"],
        "`created`, `failed` (`problem` says why), or `skipped`: valid, but an atomic import with \
         failed rows keeps none.",
    );

    /// Whether a domain's ownership is proven.
    VerificationStatus => one_of(
        &["pending", "verified"],
        "`pending` until the TXT record is seen, then `verified`.",
    );

    /// Who holds one seat of a module.
    ModuleUnit => one_of(
        &Unit::ALL.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
        "`per_mailbox` (assigned to mailboxes) or `per_customer` (assigned to customers).",
    );

    /// What a new child node is.
    ChildKind => one_of(
        &[NodeKind::Reseller.as_str(), NodeKind::Customer.as_str()],
        "`reseller` (may have children) or `customer` (a leaf); the owner exists once.",
    );

    /// A problem document's `type`.
    ProblemTypeUri => one_of(
        &crate::error::ProblemType::ALL.iter().map(|t| t.uri()).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>(),
        "The kind of problem, a relative URI `/problems/<slug>` that allot answers with its \
         description. One of a stable set: switch on it.",
    );

    /// One address among those that would become one.
    CollidingAddress => ObjectBuilder::new()
        .property("kind", one_of(&["mailbox", "alias"], "What the address is."))
        .required("kind")
        .property(
            "id",
            text("The mailbox's or the alias's id.")
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
        .required("id")
        .property("address", text("The address as it is stored."))
        .required("address")
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));

    /// A group of addresses that would become one.
    Collision => ObjectBuilder::new()
        .description(Some("Addresses that differ only in the case of their local parts."))
        .property("key", text("The one address they would all be."))
        .required("key")
        .property(
            "addresses",
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(utoipa::openapi::schema::Ref::from_schema_name("CollidingAddress")),
        )
        .required("addresses")
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));

    /// The `Idempotency-Key` header.
    IdempotencyKeyText => text(
        "1 to 255 visible ASCII characters, e.g. a UUID, optionally in double quotes.",
    )
    .pattern(Some(
        r#"^(?:"[!-~]{1,255}"|"|[!#-~][!-~]{0,254}|[!-~]{0,254}[!#-~])$"#,
    ));

    /// The `If-Match` header.
    IfMatchText => text(
        "`*`, or the resource's `ETag` exactly as it was sent, double quotes included (`\"3\"`); \
         several may be listed, separated by commas. A tag without its quotes, or a weak one \
         (`W/\"3\"`), never matches.",
    )
    .pattern(Some(r#"^\s*(?:\*|"[0-9]+")(?:\s*,\s*(?:\*|"[0-9]+"))*\s*$"#))
    .examples([serde_json::json!("\"3\"")]);
}
