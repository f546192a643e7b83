//! What a sending mail server should do with each reason: the one map from a check's reason to a
//! verdict and an SMTP reply, shared by the HTTP check, the policy listener and the socketmap.
//!
//! Three classes. What will not become right by waiting (no such domain or mailbox, a disabled
//! one) is **permanent**, with the RFC 3463 code that names it, so the sender bounces at once.
//! What the customer can put right by buying or paying (seats exhausted, over its limit, a module
//! not licensed, suspended for non-payment) is **temporary** by default — the mail stays in the
//! sender's queue and arrives once the licence is bought — and permanent when the operator says
//! so ([`LicenceRefusals::Permanent`]). What allot cannot decide now (`unavailable`) and a domain
//! whose ownership proof is pending (`domain_unverified`) are always temporary.
//!
//! Temporary replies are `450` (what Postfix answers for a policy's `DEFER_IF_PERMIT`), permanent
//! ones `550`, both with the enhanced status code in the text.

use super::verdict::{Reason, Verdict};
use crate::domain::mail::Direction;
use crate::domain::text_enum;

text_enum! {
    /// How refusals the customer can fix by buying or paying are answered.
    #[derive(Default)]
    pub enum LicenceRefusals {
        /// `4.7.1`: the mail waits in the sender's queue (days) for the licence to be bought.
        #[default]
        Temporary = "temporary",
        /// `5.7.1`: the mail bounces at once.
        Permanent = "permanent",
    }
}

/// The SMTP reply a mail server should give for one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub verdict: Verdict,
    /// The basic reply code: 250, 450 or 550.
    pub code: u16,
    /// The RFC 3463 enhanced status code, e.g. `5.1.1`.
    pub status: &'static str,
}

/// Which class a reason falls in, before the operator's choice for licence refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Accept,
    /// Always temporary.
    Temporary,
    /// Temporary or permanent as the operator chose.
    Licence,
    Permanent,
}

const fn class(reason: Reason) -> Class {
    match reason {
        Reason::Ok => Class::Accept,
        Reason::Unavailable | Reason::DomainUnverified => Class::Temporary,
        Reason::UsersExhausted
        | Reason::AncestorExhausted
        | Reason::OverLimit
        | Reason::ModuleNotLicensed
        | Reason::NodeSuspended => Class::Licence,
        Reason::UnknownDomain
        | Reason::UnknownMailbox
        | Reason::MailboxDisabled
        | Reason::DomainDisabled
        | Reason::ModuleNotAssigned
        | Reason::NotInScope => Class::Permanent,
    }
}

/// The reply for `reason` about an address in `direction`.
pub(crate) const fn reply(reason: Reason, direction: Direction, licence: LicenceRefusals) -> Reply {
    let permanent = match class(reason) {
        Class::Accept => {
            return Reply {
                verdict: Verdict::Accept,
                code: 250,
                // RFC 3463: X.1.5 "destination address valid", X.1.0 for a sender.
                status: match direction {
                    Direction::Inbound => "2.1.5",
                    Direction::Outbound => "2.1.0",
                },
            };
        }
        Class::Temporary => false,
        Class::Licence => matches!(licence, LicenceRefusals::Permanent),
        Class::Permanent => true,
    };
    let status = match (reason, direction) {
        (Reason::Unavailable, _) => "4.3.0",
        // X.1.1 "bad destination mailbox address", X.1.2 "bad destination system address",
        // X.2.1 "mailbox disabled, not accepting messages".
        (Reason::UnknownMailbox, Direction::Inbound) => "5.1.1",
        (Reason::UnknownDomain, Direction::Inbound) => "5.1.2",
        (Reason::MailboxDisabled, Direction::Inbound) => "5.2.1",
        // X.1.8 "bad sender's system address".
        (Reason::UnknownDomain, Direction::Outbound) => "5.1.8",
        // Everything else is a matter of authorisation: X.7.1 "delivery not authorized".
        _ if permanent => "5.7.1",
        _ => "4.7.1",
    };
    Reply {
        verdict: if permanent {
            Verdict::Reject
        } else {
            Verdict::Defer
        },
        code: if permanent { 550 } else { 450 },
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Inbound, Outbound};
    use LicenceRefusals::{Permanent, Temporary};

    #[test]
    fn every_reason_has_one_reply_per_direction() {
        let table = [
            (Reason::Ok, Inbound, Temporary, "250 2.1.5"),
            (Reason::Ok, Outbound, Temporary, "250 2.1.0"),
            (Reason::UnknownDomain, Inbound, Temporary, "550 5.1.2"),
            (Reason::UnknownDomain, Outbound, Temporary, "550 5.1.8"),
            (Reason::UnknownMailbox, Inbound, Temporary, "550 5.1.1"),
            (Reason::UnknownMailbox, Outbound, Temporary, "550 5.7.1"),
            (Reason::MailboxDisabled, Inbound, Temporary, "550 5.2.1"),
            (Reason::MailboxDisabled, Outbound, Temporary, "550 5.7.1"),
            (Reason::DomainDisabled, Inbound, Temporary, "550 5.7.1"),
            (Reason::DomainUnverified, Inbound, Permanent, "450 4.7.1"),
            (Reason::NodeSuspended, Inbound, Temporary, "450 4.7.1"),
            (Reason::NodeSuspended, Outbound, Permanent, "550 5.7.1"),
            (Reason::UsersExhausted, Outbound, Temporary, "450 4.7.1"),
            (Reason::UsersExhausted, Outbound, Permanent, "550 5.7.1"),
            (Reason::OverLimit, Inbound, Temporary, "450 4.7.1"),
            (Reason::OverLimit, Inbound, Permanent, "550 5.7.1"),
            (Reason::ModuleNotLicensed, Inbound, Temporary, "450 4.7.1"),
            (Reason::ModuleNotAssigned, Inbound, Temporary, "550 5.7.1"),
            (Reason::NotInScope, Outbound, Temporary, "550 5.7.1"),
            (Reason::Unavailable, Inbound, Permanent, "450 4.3.0"),
            (Reason::Unavailable, Outbound, Temporary, "450 4.3.0"),
        ];
        for (reason, direction, licence, expected) in table {
            let reply = reply(reason, direction, licence);
            assert_eq!(
                format!("{} {}", reply.code, reply.status),
                expected,
                "{reason:?} {direction:?} {licence:?}"
            );
            let verdict = match reply.code {
                250 => Verdict::Accept,
                450 => Verdict::Defer,
                _ => Verdict::Reject,
            };
            assert_eq!(reply.verdict, verdict);
            assert!(reply.status.starts_with(&reply.code.to_string()[..1]));
        }
        for reason in Reason::ALL {
            for &direction in Direction::ALL {
                let reply = reply(reason, direction, Temporary);
                assert_eq!(reply.verdict == Verdict::Accept, reason == Reason::Ok);
            }
        }
    }

    #[test]
    fn licence_refusal_names_round_trip() {
        for choice in [Temporary, Permanent] {
            assert_eq!(choice.to_string().parse(), Ok(choice));
        }
        assert!("soft".parse::<LicenceRefusals>().is_err());
    }
}
