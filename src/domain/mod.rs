//! The pure model: identifiers, the tree's kinds and statuses, roles, the module catalogue's
//! rules. No I/O, no diesel, no actix, so everything here is unit-testable and every other layer
//! can depend on it.

pub mod address;
pub mod catalogue;
pub mod ids;
pub mod mail;
pub mod quota;
pub mod resource;
pub mod roles;
pub mod tree;

/// A value that arrived as text and is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of: {expected}")]
pub struct UnknownVariant {
    pub value: String,
    pub expected: &'static str,
}
