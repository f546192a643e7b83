//! How mail meets the model: which direction a mail server asks about, and which of a customer's
//! recipients it accepts.
//!
//! A mailbox is a seat because it *sends* mail to the internet (the source documents count users
//! "which have already sent emails"), so only a sender is ever enrolled; a recipient never takes a
//! seat, whoever writes to it.

use std::fmt;
use std::str::FromStr;

use super::UnknownVariant;

/// Which side of a message the address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A recipient: may mail be delivered to it? Never enrols.
    Inbound,
    /// A sender: may it send? An unknown sender may be enrolled.
    Outbound,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Self::Inbound, Self::Outbound];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "inbound" => Ok(Self::Inbound),
            "outbound" => Ok(Self::Outbound),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "inbound, outbound",
            }),
        }
    }
}

/// A customer setting: which recipients on its verified, active domains are accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundRecipients {
    /// Any address: the customer's own mail server decides which exist. The default, so that a
    /// customer whose mailboxes are not registered yet (they appear as they send) receives mail
    /// from its first day.
    #[default]
    Domain,
    /// Only addresses allot knows (mailboxes, aliases, role addresses); others are refused
    /// `unknown_mailbox`.
    Known,
}

impl InboundRecipients {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Domain => "domain",
            Self::Known => "known",
        }
    }
}

impl FromStr for InboundRecipients {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "domain" => Ok(Self::Domain),
            "known" => Ok(Self::Known),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "domain, known",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_and_recipient_modes_round_trip_through_text() {
        for direction in Direction::ALL {
            assert_eq!(direction.as_str().parse::<Direction>(), Ok(direction));
        }
        for mode in [InboundRecipients::Domain, InboundRecipients::Known] {
            assert_eq!(mode.as_str().parse::<InboundRecipients>(), Ok(mode));
        }
        assert!("Inbound".parse::<Direction>().is_err());
        assert!("all".parse::<InboundRecipients>().is_err());
    }
}
