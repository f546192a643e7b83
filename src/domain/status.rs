//! Every status a stored row has, spelt once: a node's ([`NodeStatus`]) and a domain's or a
//! mailbox's ([`Status`]). The database, the API and the check all go through these; no other file
//! spells a status.

use super::text_enum;

text_enum! {
    /// A suspended node, and everything under it, is refused by the check and read-only (see
    /// `auth::guard`); nothing below it changes.
    pub enum NodeStatus {
        Active = "active",
        Suspended = "suspended",
    }
}

text_enum! {
    /// A domain or a mailbox: an active one takes its seats and is answered by the check; a
    /// disabled one keeps its place (its name, its address) and takes none.
    pub enum Status {
        Active = "active",
        Disabled = "disabled",
    }
}

impl Status {
    /// `Active` for `true`.
    pub const fn of(active: bool) -> Self {
        if active { Self::Active } else { Self::Disabled }
    }

    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active)
    }

    /// Whether stored text says active; anything else (disabled, or a value no release wrote)
    /// reads as not active, so an unexpected row is never answered as live.
    pub fn is_active_text(text: &str) -> bool {
        text.parse::<Self>().is_ok_and(Self::is_active)
    }
}

impl NodeStatus {
    /// Whether stored text says active; anything else reads as suspended.
    pub fn is_active_text(text: &str) -> bool {
        text.parse::<Self>().is_ok_and(|s| s == Self::Active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_text_is_never_active() {
        for status in Status::ALL {
            assert_eq!(Status::of(status.is_active()), *status);
            assert_eq!(status.as_str().parse::<Status>().unwrap(), *status);
        }
        assert!(Status::is_active_text(Status::Active.as_str()));
        assert!(!Status::is_active_text(Status::Disabled.as_str()));
        assert!(!Status::is_active_text("Active"));
        assert!(NodeStatus::is_active_text(NodeStatus::Active.as_str()));
        assert!(!NodeStatus::is_active_text(NodeStatus::Suspended.as_str()));
    }
}
