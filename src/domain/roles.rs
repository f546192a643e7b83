//! What a principal may do within its node's subtree: `admin` > `manager` > `viewer` for reads and
//! writes; `check` stands beside them and may only ask the check.

use std::fmt;
use std::str::FromStr;

use super::UnknownVariant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in its subtree except its own node's allocations and status.
    Admin,
    /// Domains, mailboxes and modules; reads the rest.
    Manager,
    /// Reads, never secrets.
    Viewer,
    /// The check endpoints only.
    Check,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Viewer => "viewer",
            Self::Check => "check",
        }
    }

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

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "manager" => Ok(Self::Manager),
            "viewer" => Ok(Self::Viewer),
            "check" => Ok(Self::Check),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "admin, manager, viewer, check",
            }),
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
