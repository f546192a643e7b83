//! What a check asks and what it answers: the vocabulary the HTTP endpoint, the Postfix policy
//! listener and the socketmap listener share. The reasons are a stable, documented set: mail
//! workers branch on them, so one is never renamed or reused for something else.

use super::reply::{LicenceRefusals, reply};
use crate::domain::address::{DomainName, MailAddress};
use crate::domain::ids::{MailboxId, NodeId};
pub(crate) use crate::domain::mail::Direction;

/// What is asked about: a whole domain, or one address on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Domain(DomainName),
    Address(MailAddress),
}

impl Target {
    pub fn domain(&self) -> &DomainName {
        match self {
            Self::Domain(domain) => domain,
            Self::Address(address) => address.domain(),
        }
    }
}

/// One check, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    pub target: Target,
    /// A recipient (`Inbound`) or a sender (`Outbound`): only a sender is ever enrolled.
    pub direction: Direction,
    /// A module code the mailbox (or customer) must hold.
    pub module: Option<String>,
    /// Whether an unknown sender may be enrolled; `None` takes the customer's `auto_enrol`. A
    /// recipient never is.
    pub enrol: Option<bool>,
}

/// Whom the caller may ask about: the whole tree (the Postfix listeners, bound to loopback) or
/// the subtree of a principal's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Everything,
    Subtree(NodeId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    Accept,
    Reject,
    Defer,
}

/// Why a check answered as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reason {
    /// Accepted.
    Ok,
    /// No customer has this domain.
    UnknownDomain,
    /// The domain's ownership is not proven yet.
    DomainUnverified,
    /// The domain is disabled.
    DomainDisabled,
    /// The customer or one of its ancestors is suspended.
    NodeSuspended,
    /// No mailbox or alias has this address: a recipient of a customer whose inbound recipients
    /// are `known`, or a sender that was not enrolled (enrolment is off).
    UnknownMailbox,
    /// The mailbox is disabled.
    MailboxDisabled,
    /// The sender would be enrolled, but the customer has no seat free for a new mailbox: `users`
    /// or an automatic module's (`module:base`).
    UsersExhausted,
    /// The sender would be enrolled and the customer has a seat of its own, but an ancestor (a
    /// reseller selling more than it holds) has none left within its subtree (issue 16).
    AncestorExhausted,
    /// The customer uses more than its limit allows now (an allocation ended).
    OverLimit,
    /// The customer holds no seat of the module now.
    ModuleNotLicensed,
    /// The mailbox (or customer) is not assigned the module.
    ModuleNotAssigned,
    /// The domain belongs to a customer outside the caller's subtree.
    NotInScope,
    /// allot cannot be sure now (the database is unreachable while an enrolment needs it).
    Unavailable,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Self::Ok,
        Self::UnknownDomain,
        Self::DomainUnverified,
        Self::DomainDisabled,
        Self::NodeSuspended,
        Self::UnknownMailbox,
        Self::MailboxDisabled,
        Self::UsersExhausted,
        Self::AncestorExhausted,
        Self::OverLimit,
        Self::ModuleNotLicensed,
        Self::ModuleNotAssigned,
        Self::NotInScope,
        Self::Unavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::UnknownDomain => "unknown_domain",
            Self::DomainUnverified => "domain_unverified",
            Self::DomainDisabled => "domain_disabled",
            Self::NodeSuspended => "node_suspended",
            Self::UnknownMailbox => "unknown_mailbox",
            Self::MailboxDisabled => "mailbox_disabled",
            Self::UsersExhausted => "users_exhausted",
            Self::AncestorExhausted => "ancestor_exhausted",
            Self::OverLimit => "over_limit",
            Self::ModuleNotLicensed => "module_not_licensed",
            Self::ModuleNotAssigned => "module_not_assigned",
            Self::NotInScope => "not_in_scope",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What a check found, before it becomes a reply (see [`Answer::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub reason: Reason,
    pub node_id: Option<NodeId>,
    pub mailbox_id: Option<MailboxId>,
    pub enrolled: bool,
}

impl Outcome {
    /// An outcome for `reason` with nothing else known.
    pub const fn bare(reason: Reason) -> Self {
        Self {
            reason,
            node_id: None,
            mailbox_id: None,
            enrolled: false,
        }
    }

    pub const fn for_node(reason: Reason, node_id: NodeId) -> Self {
        Self {
            node_id: Some(node_id),
            ..Self::bare(reason)
        }
    }
}

/// A check's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Answer {
    /// `accept`; `reject` (permanent: the sender should bounce); `defer` (temporary: the sender
    /// should keep the mail queued and try again; never treat it as accept).
    pub verdict: Verdict,
    pub reason: Reason,
    /// The SMTP reply code a mail server should answer with: 250, 450 or 550.
    #[schema(example = 550)]
    pub smtp_code: u16,
    /// The RFC 3463 enhanced status code to go with it.
    #[schema(example = "5.1.1")]
    pub smtp_status: &'static str,
    /// The customer that holds the domain, when the caller may know it.
    pub node_id: Option<NodeId>,
    /// The mailbox the address belongs to (directly or as an alias), when there is one.
    pub mailbox_id: Option<MailboxId>,
    /// Whether this check registered the address as a new mailbox.
    pub enrolled: bool,
}

impl Answer {
    /// The answer for `outcome` about an address in `direction`, with the reply
    /// [`super::reply::reply`] maps its reason to.
    pub const fn new(outcome: Outcome, direction: Direction, licence: LicenceRefusals) -> Self {
        let reply = reply(outcome.reason, direction, licence);
        Self {
            verdict: reply.verdict,
            reason: outcome.reason,
            smtp_code: reply.code,
            smtp_status: reply.status,
            node_id: outcome.node_id,
            mailbox_id: outcome.mailbox_id,
            enrolled: outcome.enrolled,
        }
    }
}
