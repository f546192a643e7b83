//! The one place that says who may do what. A principal acts within its node's subtree: a node
//! outside it answers 404 exactly as a missing one would (so ids cannot be probed), and a node
//! inside it whose action the role does not allow answers 403.
//!
//! | action | who |
//! |---|---|
//! | read a node, its children, allocations, usage | any role but `check`, at the node or above |
//! | create children, change a node's details | `admin` at the node or above |
//! | change a node's status, delete or move it | `admin` strictly above it |
//! | grant or change a node's allocations | `admin` strictly above it (no node raises its own limits) |
//! | manage domains, mailboxes and their modules | `admin` or `manager` at the node or above |
//! | read the licence | any role but `check` at the owner |
//! | set the licence, change the module catalogue | `admin` at the owner |
//! | read the module catalogue | any role but `check`, anywhere |

use super::Principal;
use crate::domain::roles::Role;
use crate::error::ApiError;
use crate::store::nodes::Node;

/// How far above the target the principal must stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The target itself or anything below the principal's node.
    SelfOrBelow,
    /// Strictly below the principal's node.
    Below,
}

impl Principal {
    /// Whether `node` is the principal's node or lies below it.
    pub fn sees(&self, node: &Node) -> bool {
        node.path.starts_with(&self.node_path)
    }

    /// `node`, if it exists and the principal sees it; 404 otherwise.
    pub fn visible(&self, node: Option<Node>) -> Result<Node, ApiError> {
        node.filter(|n| self.sees(n)).ok_or(ApiError::NotFound)
    }

    /// `node` for reading: visible, and the role reads.
    pub fn may_read(&self, node: Option<Node>) -> Result<Node, ApiError> {
        let node = self.visible(node)?;
        if self.role == Role::Check {
            return Err(forbidden("The check role may only ask the check."));
        }
        Ok(node)
    }

    /// `node` for managing what a customer holds (domains, mailboxes, modules): an admin or a
    /// manager at the node or above.
    pub fn may_manage(&self, node: Option<Node>) -> Result<Node, ApiError> {
        let node = self.may_read(node)?;
        if !matches!(self.role, Role::Admin | Role::Manager) {
            return Err(forbidden("Only an admin or a manager may do this."));
        }
        Ok(node)
    }

    /// `node` for an admin's action at the given reach.
    pub fn may_administer(&self, node: Option<Node>, reach: Reach) -> Result<Node, ApiError> {
        let node = self.may_read(node)?;
        if self.role != Role::Admin {
            return Err(forbidden("Only an admin may do this."));
        }
        if reach == Reach::Below && node.id == self.node_id {
            return Err(forbidden(
                "A node's own admins cannot change its status or allocations, move it or delete it; an admin above it can.",
            ));
        }
        Ok(node)
    }
}

fn forbidden(detail: &str) -> ApiError {
    ApiError::Forbidden(detail.to_owned())
}
