//! Overselling (issue 16): a node's ratios, per resource, set by an admin strictly above it.
//! Changing them is one workflow so that plans (which grant from a parent through
//! `allocations::create`) and this route share the rules: a ratio may fall only as far as what the
//! node granted already allows (`quota::decide_ratio`), and every change is audited.

use std::collections::{BTreeMap, BTreeSet};

use super::Ctx;
use super::allocations::known_resource;
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::quota::{self, Ratio};
use crate::domain::tree::NodeKind;
use crate::error::ApiError;
use crate::store::{DbConnection, allocations, oversell};

/// A node's ratios other than 1.0, as views and audit records show them: resource → ratio.
pub(crate) fn view(ratios: &BTreeMap<String, Ratio>) -> BTreeMap<String, f64> {
    ratios
        .iter()
        .map(|(resource, ratio)| (resource.clone(), ratio.as_decimal()))
        .collect()
}

/// A node's ratios other than 1.0 and their version (the ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ratios {
    pub ratios: BTreeMap<String, Ratio>,
    pub version: i64,
}

/// `node`'s ratios and their version.
pub(crate) fn of(conn: &mut DbConnection, node: NodeId) -> Result<Ratios, ApiError> {
    Ok(Ratios {
        ratios: oversell::all_of(conn, node)?,
        version: oversell::version_of(conn, node)?,
    })
}

/// Replaces `node`'s ratios (locked by the caller with its parent, so no grant from it is decided
/// meanwhile) by `ratios`: a resource not listed goes back to 1.0. Refused for a customer (it grants nothing), for a resource the
/// catalogue does not know, and with `quota-exceeded` when the node granted its children more, on
/// some day, than ⌊new ratio × its limit⌋. Returns the ratios now set, and their version, raised
/// when they changed.
pub(crate) fn replace(
    conn: &mut DbConnection,
    node: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    ratios: BTreeMap<String, Ratio>,
) -> Result<Ratios, ApiError> {
    if node.kind == NodeKind::Customer && ratios.values().any(|r| *r != Ratio::ONE) {
        return Err(ApiError::validation(
            "ratios",
            "a customer grants nothing, so it cannot oversell",
        ));
    }
    let mut wanted = BTreeMap::new();
    for (key, ratio) in ratios {
        let resource = match known_resource(conn, &key) {
            Err(ApiError::Validation(errors)) => {
                let message = errors.into_iter().next().map(|e| e.message);
                return Err(ApiError::validation(
                    format!("ratios.{key}"),
                    message.unwrap_or_default(),
                ));
            }
            found => found?,
        };
        wanted.insert(resource.key(), ratio);
    }
    let before = oversell::all_of(conn, node.id)?;
    let resources: BTreeSet<String> = before.keys().chain(wanted.keys()).cloned().collect();
    for resource in &resources {
        let ratio = wanted.get(resource).copied().unwrap_or_default();
        if before.get(resource).copied().unwrap_or_default() == ratio {
            continue;
        }
        quota::decide_ratio(
            node.id,
            resource,
            &allocations::limit_of(conn, node.id, resource, None)?,
            ratio,
            &allocations::granted_by(conn, node.id, resource, None)?,
        )?;
        oversell::set(conn, node.id, resource, ratio)?;
    }
    let after = oversell::all_of(conn, node.id)?;
    if after == before {
        return of(conn, node.id);
    }
    let version = oversell::bump_version(conn, node.id)?;
    {
        ctx.record(
            conn,
            node.id,
            Action::NodeOversellUpdate,
            ("node", node.id.to_string()),
            Some(super::audit_json(view(&before))),
            Some(super::audit_json(view(&after))),
        )?;
    }
    Ok(Ratios {
        ratios: after,
        version,
    })
}
