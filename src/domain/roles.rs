//! What a principal may do within its node's subtree: `admin` > `manager` > `viewer` for reads and
//! writes; `check` stands beside them and may only ask the check.

use super::text_enum;

text_enum! {
    pub enum Role {
        /// Everything in its subtree except its own node's allocations and status.
        Admin = "admin",
        /// Domains, mailboxes and modules; reads the rest.
        Manager = "manager",
        /// Reads, never secrets.
        Viewer = "viewer",
        /// The check endpoints only.
        Check = "check",
    }
}

impl Role {
    /// Whether a principal with this role may give `other` to a new or changed principal: never a
    /// role above its own. `check` ranks lowest: it may only ask the check.
    pub const fn may_grant(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    const fn rank(self) -> u8 {
        match self {
            Self::Admin => 3,
            Self::Manager => 2,
            Self::Viewer => 1,
            Self::Check => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn roles_round_trip_through_text() {
        for role in [Role::Admin, Role::Manager, Role::Viewer, Role::Check] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn nobody_grants_a_role_above_their_own() {
        assert!(Role::Admin.may_grant(Role::Admin));
        assert!(Role::Manager.may_grant(Role::Check));
        assert!(!Role::Manager.may_grant(Role::Admin));
        assert!(!Role::Viewer.may_grant(Role::Manager));
        assert!(!Role::Check.may_grant(Role::Viewer));
    }
}
