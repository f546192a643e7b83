//! Typed identifiers. Each is a UUID (v7 for new rows, so ids sort by creation time) wrapped in its
//! own type, so a mailbox id can never be passed where a node id is expected. No `Default`: an id
//! is either read from somewhere or freshly made with `generate()`.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A tenant of the tree: the owner, a reseller or a customer.
    NodeId
);
id_type!(
    /// A person's account.
    AccountId
);
id_type!(
    /// A customer's domain.
    DomainId
);
id_type!(
    /// A mailbox (a user).
    MailboxId
);
id_type!(
    /// Another address of a mailbox.
    AliasId
);
id_type!(
    /// A customer's group of mailboxes.
    GroupId
);
id_type!(
    /// A machine's credential.
    ApiKeyId
);
id_type!(
    /// A grant of a resource to a node.
    AllocationId
);
id_type!(
    /// One appended audit record.
    AuditEventId
);

id_type!(
    /// A message of the outbox: one delivery to one target (also its `webhook-id`).
    MessageId
);
id_type!(
    /// A webhook subscription.
    WebhookId
);
id_type!(
    /// A plan: a named bundle of grants, modules and settings a node sells (issue 16).
    PlanId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_text() {
        let id = NodeId::generate();
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let a = AccountId::generate();
        let b = AccountId::generate();
        assert!(a < b);
    }
}
