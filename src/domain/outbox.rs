//! The outbox's rules, pure: the kinds and statuses of a message, the events a webhook may
//! subscribe to and which audited action each comes from, and when a failed attempt is tried
//! again.
//!
//! Events come from the audit trail's actions ([`EventType::of`]): every workflow already records
//! each change once, in its transaction, through `service::Ctx::record`, so deriving the event
//! there gives one place per event and no workflow can change something without its event.

use std::time::Duration;

use super::audit::Action;
use super::text_enum;

text_enum! {
    /// What a message is.
    pub enum MessageKind {
        /// A signed POST of an event to a webhook subscription's URL.
        Webhook = "webhook",
        /// A plain-text mail to one address ([`Mail`]), sent through the mail server that applies
        /// to the message's node when it is delivered.
        Mail = "mail",
    }
}

text_enum! {
    /// Where a message stands.
    pub enum MessageStatus {
        /// Waiting for its next attempt (`next_attempt_at`).
        Pending = "pending",
        /// Claimed by an instance, until its lease expires.
        Delivering = "delivering",
        /// The target accepted it.
        Delivered = "delivered",
        /// Every attempt failed, or the target is gone; `POST /v1/outbox/{id}/retry` tries again.
        Failed = "failed",
    }
}

text_enum! {
    /// An event a webhook subscription may hear of; its `type`, stable.
    pub enum EventType {
        NodeCreated = "node.created",
        NodeUpdated = "node.updated",
        NodeMoved = "node.moved",
        NodeDeleted = "node.deleted",
        AllocationCreated = "allocation.created",
        AllocationUpdated = "allocation.updated",
        AllocationEnded = "allocation.ended",
        LicenceChanged = "licence.changed",
        DomainCreated = "domain.created",
        DomainVerified = "domain.verified",
        DomainDeleted = "domain.deleted",
        MailboxCreated = "mailbox.created",
        MailboxEnrolled = "mailbox.enrolled",
        MailboxDisabled = "mailbox.disabled",
        MailboxEnabled = "mailbox.enabled",
        MailboxDeleted = "mailbox.deleted",
        ModuleAssigned = "module.assigned",
        ModuleRemoved = "module.removed",
        /// A node's use of a resource reached one of its `notifications.quota_thresholds`.
        QuotaThresholdCrossed = "quota.threshold_crossed",
        /// A customer put on a plan, or moved to its current version by a sync.
        PlanApplied = "plan.applied",
        /// A customer taken off its plan.
        PlanRemoved = "plan.removed",
    }
}

impl EventType {
    /// The event an audited action is, if any. A licence line created or ended is one
    /// `licence.changed` each; a domain that expired unverified or was taken over by a verified
    /// claim is gone from its customer, `domain.deleted`; a module assigned to or removed from a
    /// mailbox or a customer is `module.assigned` / `module.removed` (`data.object` says which).
    pub fn of(action: Action) -> Option<Self> {
        use Action as A;
        Some(match action {
            A::NodeCreate => Self::NodeCreated,
            A::NodeUpdate => Self::NodeUpdated,
            A::NodeMove => Self::NodeMoved,
            A::NodeDelete => Self::NodeDeleted,
            A::AllocationCreate => Self::AllocationCreated,
            A::AllocationUpdate => Self::AllocationUpdated,
            A::AllocationEnd => Self::AllocationEnded,
            A::LicenceCreate | A::LicenceEnd => Self::LicenceChanged,
            A::DomainCreate => Self::DomainCreated,
            A::DomainVerify => Self::DomainVerified,
            A::DomainDelete | A::DomainExpire | A::DomainTakenOver => Self::DomainDeleted,
            A::MailboxCreate => Self::MailboxCreated,
            A::MailboxEnrol => Self::MailboxEnrolled,
            A::MailboxDisable => Self::MailboxDisabled,
            A::MailboxEnable => Self::MailboxEnabled,
            A::MailboxDelete => Self::MailboxDeleted,
            A::MailboxModuleAssign | A::NodeModuleAssign => Self::ModuleAssigned,
            A::MailboxModuleRemove | A::NodeModuleRemove => Self::ModuleRemoved,
            A::QuotaThresholdCross => Self::QuotaThresholdCrossed,
            A::PlanApply | A::PlanSync => Self::PlanApplied,
            A::PlanRemove => Self::PlanRemoved,
            _ => return None,
        })
    }
}

/// When a message that failed is tried again: exponential from `base`, doubling per attempt, at
/// most `cap`, with "equal jitter" (half the delay fixed, half random) so that many messages that
/// failed together (an endpoint down) do not all come back at the same instant, while no retry
/// comes sooner than half its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The wait after the `attempts`-th attempt failed (1 for the first), `random` in `[0, 1)`.
    pub fn delay(&self, attempts: u32, random: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(30))
            .min(self.cap);
        let half = step / 2;
        half + half.mul_f64(random.clamp(0.0, 1.0))
    }
}

/// A mail as the outbox stores it (its `payload`): to one address, plain text. A secret the mail
/// is meant to carry (a new account's one-time password) is not in `text`: `text` holds
/// [`Mail::SECRET_SLOT`] where it goes, and `secret` the secret sealed (`secret::Sealer`, for
/// [`Mail::seal_context`]); the worker opens it and fills the slot as it sends. So the stored
/// row, the outbox listing (which shows `secret` as `{"set": true}`), logs and the audit trail
/// never hold it in the clear.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mail {
    /// In the stored form (`local@ascii-domain`).
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The sealed secret, base64 (standard alphabet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Mail {
    /// Where the sealed secret goes in `text`.
    pub const SECRET_SLOT: &'static str = "{{secret}}";

    /// What the sealed secret of a mail to `to` for `node` is sealed for: it opens nowhere else.
    pub fn seal_context(node: super::ids::NodeId, to: &str) -> String {
        format!("outbox-mail:{node}:{to}")
    }

    /// The text as sent: the slot filled with the opened secret (once), or as written.
    pub fn text_with(&self, secret: Option<&str>) -> String {
        match secret {
            Some(secret) => self.text.replacen(Self::SECRET_SLOT, secret, 1),
            None => self.text.clone(),
        }
    }
}

/// Whether an HTTP status means the target took the message: any 2xx, as Standard Webhooks says.
pub fn accepted(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_never_falls_below_half_a_step() {
        let backoff = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
        };
        assert_eq!(backoff.delay(1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff.delay(1, 0.999_999).as_secs(), 9);
        assert_eq!(backoff.delay(3, 0.0), Duration::from_secs(20));
        assert_eq!(backoff.delay(40, 0.0), Duration::from_secs(1800));
        assert!(backoff.delay(40, 0.99) <= Duration::from_secs(3600));
    }

    #[test]
    fn every_event_comes_from_an_action_and_unrelated_actions_are_none() {
        for event in EventType::ALL {
            assert!(
                Action::ALL
                    .iter()
                    .any(|a| EventType::of(*a) == Some(*event)),
                "{event} has no action"
            );
        }
        assert_eq!(EventType::of(Action::ApiKeyCreate), None);
        assert_eq!(EventType::of(Action::GroupCreate), None);
    }

    #[test]
    fn only_2xx_is_accepted() {
        assert!(accepted(200) && accepted(204) && accepted(299));
        assert!(!accepted(301) && !accepted(500) && !accepted(199));
    }
}
