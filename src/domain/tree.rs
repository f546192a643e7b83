//! The tree's vocabulary: what kind a node is, who may be whose parent, and its status.

use std::fmt;
use std::str::FromStr;

use super::UnknownVariant;

/// What a node is. The owner is the root and exists once; resellers may have children of either
/// kind; customers are leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Owner,
    Reseller,
    Customer,
}

impl NodeKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Reseller => "reseller",
            Self::Customer => "customer",
        }
    }

    /// Whether a node of this kind may have a child of kind `child`.
    pub const fn may_parent(self, child: NodeKind) -> bool {
        matches!(
            (self, child),
            (
                Self::Owner | Self::Reseller,
                Self::Reseller | Self::Customer
            )
        )
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeKind {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "reseller" => Ok(Self::Reseller),
            "customer" => Ok(Self::Customer),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "owner, reseller, customer",
            }),
        }
    }
}

/// A suspended node, and everything under it, is refused by the check; nothing below it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Active,
    Suspended,
}

impl NodeStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

impl FromStr for NodeStatus {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(UnknownVariant {
                value: s.to_owned(),
                expected: "active, suspended",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NodeKind::*;

    #[test]
    fn customers_are_leaves_and_the_owner_is_nobodys_child() {
        assert!(Owner.may_parent(Reseller));
        assert!(Owner.may_parent(Customer));
        assert!(Reseller.may_parent(Reseller));
        assert!(Reseller.may_parent(Customer));
        assert!(!Customer.may_parent(Customer));
        assert!(!Customer.may_parent(Reseller));
        assert!(!Reseller.may_parent(Owner));
        assert!(!Owner.may_parent(Owner));
    }

    #[test]
    fn kinds_round_trip_through_text() {
        for kind in [Owner, Reseller, Customer] {
            assert_eq!(kind.as_str().parse::<super::NodeKind>().unwrap(), kind);
        }
        assert!("Owner".parse::<super::NodeKind>().is_err());
    }
}
