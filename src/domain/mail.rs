//! How mail meets the model: which direction a mail server asks about, and which of a customer's
//! recipients it accepts.
//!
//! A mailbox is a seat because it *sends* mail to the internet (the source documents count users
//! "which have already sent emails"), so only a sender is ever enrolled; a recipient never takes a
//! seat, whoever writes to it.

use super::text_enum;

text_enum! {
    /// Which side of a message the address is on.
    pub enum Direction {
        /// A recipient: may mail be delivered to it? Never enrols.
        Inbound = "inbound",
        /// A sender: may it send? An unknown sender may be enrolled.
        Outbound = "outbound",
    }
}

text_enum! {
    /// A customer setting: which recipients on its verified, active domains are accepted.
    #[derive(Default)]
    pub enum InboundRecipients {
        /// Any address: the customer's own mail server decides which exist. The default, so that a
        /// customer whose mailboxes are not registered yet (they appear as they send) receives
        /// mail from its first day.
        #[default]
        Domain = "domain",
        /// Only addresses allot knows (mailboxes, aliases, role addresses); others are refused
        /// `unknown_mailbox`.
        Known = "known",
    }
}

text_enum! {
    /// A customer setting: whether the local parts of its addresses compare regardless of case
    /// (`Jane@` and `jane@` are one mailbox) or exactly, as RFC 5321 allows a receiver to.
    #[derive(Default)]
    pub enum LocalPartCase {
        /// One mailbox whatever the case of its local part: what people expect, and the default.
        #[default]
        Insensitive = "insensitive",
        /// Local parts compare exactly (after NFC); `Jane@` and `jane@` may be two mailboxes.
        Sensitive = "sensitive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_and_recipient_modes_round_trip_through_text() {
        for &direction in Direction::ALL {
            assert_eq!(direction.as_str().parse::<Direction>(), Ok(direction));
        }
        assert_eq!(
            serde_json::from_str::<Direction>("\"outbound\"").unwrap(),
            Direction::Outbound
        );
        assert_eq!(
            serde_json::to_string(&Direction::Inbound).unwrap(),
            "\"inbound\""
        );
        assert!(
            serde_json::from_str::<Direction>("\"both\"")
                .unwrap_err()
                .to_string()
                .contains("`both` is not one of: inbound, outbound")
        );
        for mode in [InboundRecipients::Domain, InboundRecipients::Known] {
            assert_eq!(mode.as_str().parse::<InboundRecipients>(), Ok(mode));
        }
        assert!("Inbound".parse::<Direction>().is_err());
        assert!("all".parse::<InboundRecipients>().is_err());
    }
}
