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
//! | read a node's settings (own and effective) | `admin` or `manager` at the node or above |
//! | set or clear a node's settings, send a test mail | `admin` at the node or above |
//! | define plans at a node | `admin` at the node or above |
//! | read a plan | any role but `check`, at or above the node that defined it, or anywhere in its subtree |
//! | change, retire or delete a plan | `admin` at or above the node that defined it |
//! | sync a plan's customers | `admin` who reads the plan (the customers strictly below it move) |
//! | apply or remove a customer's plan | `admin` strictly above the customer, who reads the plan |
//!
//! **Suspension makes a subtree read-only.** A node is suspended when it or any ancestor has status
//! `suspended` (`Node::suspended_by`, read in the same statement as the node). Then:
//!
//! | action on a node in a suspended subtree | |
//! |---|---|
//! | every read | allowed |
//! | create children, change details, accounts, API keys; domains, mailboxes, aliases, groups, modules, imports (creating *and* disabling or deleting them) | refused, `node-suspended` ([`Principal::may_manage`], [`Principal::may_administer`] with [`Reach::SelfOrBelow`]) |
//! | change status (lift), delete, move out, grant or lower allocations | allowed to an admin standing above every suspended node of the target's lineage; refused to one inside the suspension ([`Reach::Below`]) |
//! | change one's own password or email | allowed (it is not growth; `Principal::visible` only) |
//! | disable or delete an account, revoke an API key | allowed ([`Principal::may_revoke`]): taking access away is security, never growth |
//!
//! Shrinking content (disabling or deleting a mailbox, a domain) is refused too: a suspension is a
//! freeze, also for an abuse case whose evidence must stay; the admin above may lift it, or delete
//! the node. Raising an allocation from above is allowed: it is the reseller's deliberate grant,
//! and the customer cannot use it before the suspension is lifted.
//!
//! Races: every write reads its target node inside its write transaction, so the check sees every
//! suspension committed before that read. On SQLite a write transaction excludes every other
//! writer. On PostgreSQL a write whose target is the suspended node or its child (the rows
//! `nodes::find_locked` and `nodes::lock` take) waits for the suspension and then re-reads; a write
//! deeper down that read its lineage just before a suspension committed may commit just after it:
//! it is then ordered before the suspension, exactly as if it had arrived a moment earlier.

use std::marker::PhantomData;
use std::ops::Deref;

use super::Principal;
use crate::domain::roles::Role;
use crate::error::ApiError;
use crate::store::nodes::Node;

/// A node the guard let a principal act on, at level `L` ([`Read`], [`Manage`], [`Administer`],
/// [`Revoke`]). Only this module makes one, so a write service that takes an `Authorised<L>`
/// cannot be called for a node that has not passed the guard. A node read straight from the store
/// does not compile as an argument of a write service:
///
/// ```compile_fail
/// # use allot::{error::ApiError, service::{self, Ctx}, store::{DbConnection, domains::Domain, nodes::Node}};
/// fn forgot_the_guard(conn: &mut DbConnection, ctx: &Ctx, node: Node, domain: Domain)
///     -> Result<(), ApiError> {
///     service::domains::delete(conn, ctx, &node, domain, false)
/// }
/// ```
///
/// and the same call compiles once the guard has let the node through (this twin is what makes
/// the first example fail for the right reason: the function exists and takes an authorised node):
///
/// ```no_run
/// # use allot::{auth::Principal, error::ApiError, service::{self, Ctx}, store::{DbConnection, domains::Domain, nodes::Node}};
/// fn guarded(conn: &mut DbConnection, ctx: &Ctx, principal: &Principal, node: Node, domain: Domain)
///     -> Result<(), ApiError> {
///     let node = principal.may_manage(Some(node))?;
///     service::domains::delete(conn, ctx, &node, domain, false)
/// }
/// ```
#[derive(Debug)]
pub struct Authorised<L> {
    node: Node,
    level: PhantomData<L>,
}

/// Reading a node and what it holds.
#[derive(Debug)]
pub struct Read;
/// Managing what a customer holds: domains, mailboxes, aliases, groups, modules.
#[derive(Debug)]
pub struct Manage;
/// An admin's change to the node, at the [`Reach`] the guard was asked for.
#[derive(Debug)]
pub struct Administer;
/// Taking access away: disabling or deleting an account, revoking an API key.
#[derive(Debug)]
pub struct Revoke;

impl<L> Authorised<L> {
    fn new(node: Node) -> Self {
        Self {
            node,
            level: PhantomData,
        }
    }

    /// The node, for what needs it by value (a view, a store call that keeps it).
    pub fn into_inner(self) -> Node {
        self.node
    }
}

impl<L> Deref for Authorised<L> {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

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

    /// `err` as the principal may see it. An `ancestor-exhausted` refusal names the exhausted
    /// ancestor with its limit and use; a principal standing below that ancestor (a customer under
    /// an overselling reseller, say) may not read it, so it learns only that an ancestor is
    /// exhausted. Every route that takes seats answers its refusals through this.
    pub fn shown(&self, err: ApiError) -> ApiError {
        match err {
            ApiError::QuotaExceeded(refusal)
                if refusal.ancestor
                    && refusal.node_id != self.node_id
                    && crate::domain::tree::path_of(&self.node_path, refusal.node_id).is_some() =>
            {
                ApiError::AncestorExhaustedAbove {
                    resource: refusal.resource,
                    at: refusal.at,
                }
            }
            other => other,
        }
    }

    /// `node`, if it exists and the principal sees it; 404 otherwise.
    pub fn visible(&self, node: Option<Node>) -> Result<Node, ApiError> {
        node.filter(|n| self.sees(n)).ok_or(ApiError::NotFound)
    }

    /// `node` for reading: visible, and the role reads.
    pub fn may_read(&self, node: Option<Node>) -> Result<Authorised<Read>, ApiError> {
        self.reads(node).map(Authorised::new)
    }

    fn reads(&self, node: Option<Node>) -> Result<Node, ApiError> {
        let node = self.visible(node)?;
        if self.role == Role::Check {
            return Err(forbidden("The check role may only ask the check."));
        }
        Ok(node)
    }

    /// `node`'s settings for reading: an admin or a manager at the node or above. Only they
    /// configure how mail leaves the tree, so only they read it; a viewer reads the tree, not
    /// its plumbing. Reads are allowed in a suspended subtree, like every read.
    pub fn may_read_settings(&self, node: Option<Node>) -> Result<Authorised<Read>, ApiError> {
        let node = self.reads(node)?;
        if !matches!(self.role, Role::Admin | Role::Manager) {
            return Err(forbidden("Only an admin or a manager may read settings."));
        }
        Ok(Authorised::new(node))
    }

    /// `node` for managing what a customer holds (domains, mailboxes, modules): an admin or a
    /// manager at the node or above, and the node not in a suspended subtree.
    pub fn may_manage(&self, node: Option<Node>) -> Result<Authorised<Manage>, ApiError> {
        let node = self.reads(node)?;
        if !matches!(self.role, Role::Admin | Role::Manager) {
            return Err(forbidden("Only an admin or a manager may do this."));
        }
        writable(node).map(Authorised::new)
    }

    /// `node` for an admin's action at the given reach. At [`Reach::SelfOrBelow`] the node must
    /// not lie in a suspended subtree; at [`Reach::Below`] (status, move, delete, allocations) the
    /// admin must stand above every suspended node of its lineage.
    pub fn may_administer(
        &self,
        node: Option<Node>,
        reach: Reach,
    ) -> Result<Authorised<Administer>, ApiError> {
        let node = self.may_admin(node)?;
        if reach == Reach::Below && node.id == self.node_id {
            return Err(forbidden(
                "A node's own admins cannot change its status or allocations, move it or delete it; an admin above it can.",
            ));
        }
        match reach {
            Reach::SelfOrBelow => writable(node),
            Reach::Below => self.above_suspension(node),
        }
        .map(Authorised::new)
    }

    /// A plan defined at `definer`, for reading: a plan is visible to the subtree of the node that
    /// defined it (so a customer reads the plan it is on, and a reseller the plans of its
    /// ancestors it may apply), and to every principal above that node. 404 otherwise.
    pub fn may_read_plan(&self, definer: Option<Node>) -> Result<Authorised<Read>, ApiError> {
        let definer = definer
            .filter(|d| self.sees(d) || self.node_path.starts_with(&d.path))
            .ok_or(ApiError::NotFound)?;
        if self.role == Role::Check {
            return Err(forbidden("The check role may only ask the check."));
        }
        Ok(Authorised::new(definer))
    }

    /// A plan defined at `definer`, for changing, retiring or deleting it: an admin at the defining
    /// node or above. 404 where the plan is not visible, 403 for a principal below the definer
    /// (who reads the plan but does not own it).
    pub fn may_change_plan(
        &self,
        definer: Option<Node>,
    ) -> Result<Authorised<Administer>, ApiError> {
        let definer = self.may_read_plan(definer)?.into_inner();
        if !self.sees(&definer) {
            return Err(forbidden(
                "A plan is changed by the admins of the node that defined it, or above.",
            ));
        }
        self.may_administer(Some(definer), Reach::SelfOrBelow)
    }

    /// Whether the principal is an admin: who may sync a plan it reads (the customers strictly
    /// below it move, each guarded again).
    pub fn may_sync_plan(&self, definer: Option<Node>) -> Result<Authorised<Read>, ApiError> {
        let definer = self.may_read_plan(definer)?;
        if self.role != Role::Admin {
            return Err(forbidden("Only an admin may do this."));
        }
        Ok(definer)
    }

    /// `node` for reading what only its admins see (its webhook subscriptions, its outbox): an
    /// admin at the node or above, suspended or not.
    pub fn may_inspect(&self, node: Option<Node>) -> Result<Authorised<Read>, ApiError> {
        self.may_admin(node).map(Authorised::new)
    }

    /// `node` for taking access away at it (disabling or deleting an account, revoking an API
    /// key): an admin at the node or above, suspended or not.
    pub fn may_revoke(&self, node: Option<Node>) -> Result<Authorised<Revoke>, ApiError> {
        self.may_admin(node).map(Authorised::new)
    }

    fn may_admin(&self, node: Option<Node>) -> Result<Node, ApiError> {
        let node = self.reads(node)?;
        if self.role != Role::Admin {
            return Err(forbidden("Only an admin may do this."));
        }
        Ok(node)
    }

    /// `node`, unless the principal's own node lies in the suspended subtree that covers it. The
    /// topmost suspended node is the one to test: the principal is inside some suspension of the
    /// lineage exactly when it is inside the topmost one.
    fn above_suspension(&self, node: Node) -> Result<Node, ApiError> {
        if let Some(by) = node.suspended_by {
            let inside = node
                .path_of(by)
                .is_none_or(|path| self.node_path.starts_with(path));
            if inside {
                return Err(ApiError::NodeSuspended(by));
            }
        }
        Ok(node)
    }
}

/// `node`, unless it lies in a suspended subtree.
fn writable(node: Node) -> Result<Node, ApiError> {
    match node.suspended_by {
        Some(by) => Err(ApiError::NodeSuspended(by)),
        None => Ok(node),
    }
}

fn forbidden(detail: &str) -> ApiError {
    ApiError::Forbidden(detail.to_owned())
}
