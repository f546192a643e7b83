//! OpenAPI schemas for the domain's types. `domain` does not depend on utoipa, so its identifiers
//! and vocabularies are described here: ids as UUID strings, kinds and roles as string enums.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::ids::{
    AccountId, AliasId, AllocationId, ApiKeyId, DomainId, GroupId, MailboxId, NodeId,
};
use crate::domain::mail::{Direction, InboundRecipients, LocalPartCase};
use crate::domain::roles::Role;
use crate::domain::tree::{NodeKind, NodeStatus};

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
);

enum_schema!(
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
