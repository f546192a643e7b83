//! Seats: units of a customer's resources (`users`, `domains`, `module:<code>`) taken as
//! something starts to use them and freed as it stops. The seat rule is [`Standing::take`](crate::domain::quota::Standing::take)'s; this module reads each
//! standing from the store, asks it, and counts the units up the customer's lineage only when
//! every one is admitted, in the caller's write transaction, under the customer's lock.
//!
//! Every seat-taking path comes here (a mailbox create, an enrolment by the check, enabling a
//! mailbox, assigning a module, an import through [`bundle`] and [`count`]), and here each unit is
//! judged at the customer and at every ancestor under the lineage's counter locks
//! ([`usage::bundle`]): the use invariant of issue 16. Every seat-freeing path comes here too
//! ([`release`]: disabling or deleting a mailbox, removing a module, deleting a domain), and
//! every change of a limit ([`limit_changed`]), and, once a day, the limits that move by date
//! ([`limits_moved`]).
//!
//! **Quota notices.** Being the one place where use and limits change, this is where crossings
//! of `notifications.quota_thresholds` are judged ([`settle`]), at the customer and at each
//! ancestor whose own use (its subtree's) against its own limit crosses — overselling makes
//! those differ. A take reuses the standings it read to admit the seats (one more read, of the
//! lineage's notification settings, and one of its marks only once a threshold is reached); a
//! release reads the lineage's marks and nothing else unless one may re-arm.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use diesel::QueryResult;

use super::Ctx;
use crate::domain::ids::NodeId;
use crate::domain::quota::{Bundle, Crossings, Refusal, Standing};
use crate::error::ApiError;
use crate::store::nodes::Node;
use crate::store::{self, DbConnection, allocations, history, nodes, quota_crossings, usage};

/// Takes one unit of `resource` for customer `node`, if its limit leaves one free.
pub(crate) fn take(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    resource: &str,
) -> Result<Result<(), Refusal>, ApiError> {
    take_all(conn, ctx, node, &[resource])
}

/// Takes one unit of each of `resources` for customer `node`, or none: every limit is
/// checked (by [`Bundle::take_one`](crate::domain::quota::Bundle::take_one), the seat rule) before anything is counted, and the first that
/// has no unit free is the refusal.
pub(crate) fn take_all(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    resources: &[impl AsRef<str>],
) -> Result<Result<(), Refusal>, ApiError> {
    let mut seats = bundle(conn, ctx, node, resources)?;
    let before = seats.clone();
    if let Err(refusal) = seats.take_one() {
        return Ok(Err(refusal));
    }
    count(conn, ctx, node, &before, 1)?;
    Ok(Ok(()))
}

/// Where customer `node` and its ancestors stand with `resources`, their counters locked until
/// the transaction ends: what an import places its rows against before [`count`]ing them.
pub(crate) fn bundle(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    resources: &[impl AsRef<str>],
) -> QueryResult<Bundle> {
    usage::bundle(conn, &node.lineage(), resources, ctx.today)
}

/// Counts `n` units of every resource of `before` (as [`bundle`] read it, before any was taken)
/// up `node`'s lineage, and notices the thresholds that crosses.
pub(crate) fn count(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    before: &Bundle,
    n: i64,
) -> Result<(), ApiError> {
    if n == 0 {
        return Ok(());
    }
    let lineage = node.lineage();
    let after = before.after(n);
    let mut resources: Vec<&str> = after.iter().map(|(_, r, _)| r.as_str()).collect();
    resources.dedup();
    for resource in resources {
        usage::add(conn, &lineage, resource, n, ctx.today)?;
    }
    settle(conn, ctx, &lineage, after, true)
}

/// Frees one unit of each of `resources` of customer `node` up its lineage, and re-arms the
/// thresholds its lineage falls back below.
pub(crate) fn release(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    resources: &[impl AsRef<str>],
) -> Result<(), ApiError> {
    if resources.is_empty() {
        return Ok(());
    }
    let lineage = node.lineage();
    for resource in resources {
        usage::add(conn, &lineage, resource.as_ref(), -1, ctx.today)?;
    }
    let wanted: Vec<&str> = resources.iter().map(AsRef::as_ref).collect();
    recheck_marked(conn, ctx, &lineage, |_, resource| {
        wanted.contains(&resource)
    })
}

/// A subtree's use left the ancestors `leaving` (a deletion, or a move away): re-arms what they
/// fall back below.
pub(crate) fn released_along(
    conn: &mut DbConnection,
    ctx: &Ctx,
    leaving: &[NodeId],
) -> Result<(), ApiError> {
    recheck_marked(conn, ctx, leaving, |_, _| true)
}

/// A subtree using `amounts` joined the ancestors `joining` (nodes of `lineage`, its new one, owner
/// first), which take its use on as seats (a move): notices the thresholds they reach.
pub(crate) fn joined_along(
    conn: &mut DbConnection,
    ctx: &Ctx,
    lineage: &[NodeId],
    joining: &[NodeId],
    amounts: &BTreeMap<String, i64>,
) -> Result<(), ApiError> {
    let mut now = Vec::new();
    for (resource, _) in amounts.iter().filter(|(_, a)| **a > 0) {
        for node in joining {
            let standing = usage::standing(conn, *node, resource, ctx.today)?;
            now.push((*node, resource.clone(), standing));
        }
    }
    if now.is_empty() {
        return Ok(());
    }
    settle(conn, ctx, lineage, now, true)
}

/// Judges again the marked thresholds of the nodes of `lineage` that `which` picks, from their
/// standings now: one read of the marks, and the standings and settings only if there are any.
fn recheck_marked(
    conn: &mut DbConnection,
    ctx: &Ctx,
    lineage: &[NodeId],
    which: impl Fn(NodeId, &str) -> bool,
) -> Result<(), ApiError> {
    let mut pairs: Vec<(NodeId, String)> = quota_crossings::of_nodes(conn, lineage)?
        .into_iter()
        .filter(|(node, resource, _)| which(*node, resource))
        .map(|(node, resource, _)| (node, resource))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    if pairs.is_empty() {
        return Ok(());
    }
    let mut now = Vec::with_capacity(pairs.len());
    for (node, resource) in pairs {
        let standing = usage::standing(conn, node, &resource, ctx.today)?;
        now.push((node, resource, standing));
    }
    settle(conn, ctx, lineage, now, false)
}

/// `node`'s limit of `resource` changed (an allocation made, changed or ended, a licence line):
/// judges its thresholds again against its use, both ways.
pub(crate) fn limit_changed(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    resource: &str,
) -> Result<(), ApiError> {
    let standing = usage::standing(conn, node.id, resource, ctx.today)?;
    settle(
        conn,
        ctx,
        &node.lineage(),
        vec![(node.id, resource.to_owned(), standing)],
        false,
    )
}

/// The longest a day's judgement of moving limits looks back, for days no instance ran on.
const MOVED_LOOK_BACK: chrono::TimeDelta = chrono::TimeDelta::days(31);

/// Limits that move by date, an allocation starting or ending on a day that has begun since the
/// last judgement (no write changes them, so no other path sees them), judged once a day by
/// whoever asks first ([`super::history::day_begun`]): each such node's thresholds are judged
/// again, both ways, as [`limit_changed`] does for a write. `today` must be open in the history.
pub(crate) fn limits_moved(conn: &mut DbConnection, today: NaiveDate) -> Result<(), ApiError> {
    if history::limits_judged(conn, today)? {
        return Ok(());
    }
    store::write_tx(conn, |conn| {
        let Some(last) = history::claim_limits(conn, today)? else {
            return Ok(());
        };
        let after = last
            .unwrap_or(today - chrono::TimeDelta::days(1))
            .max(today - MOVED_LOOK_BACK);
        let moving = allocations::limits_moving(conn, after, today)?;
        let ids: Vec<NodeId> = moving.iter().map(|(node, _)| *node).collect();
        // All at once, in path order, as every writer takes them.
        nodes::lock(conn, &ids)?;
        let ctx = Ctx::system(today);
        for (node, resource) in moving {
            if let Some(node) = nodes::find(conn, node)? {
                limit_changed(conn, &ctx, &node, &resource)?;
            }
        }
        Ok(())
    })
}

/// The one judgement of quota crossings: for each (node, resource, standing now) of `standings`
/// (nodes of `lineage`, owner first), marks the thresholds newly reached and notices the highest
/// of them once ([`super::notices::threshold_crossed`]), and re-arms those it fell back below.
/// `rising`: the use only grew, so nothing can re-arm and the marks need reading only where a
/// threshold is reached.
fn settle(
    conn: &mut DbConnection,
    ctx: &Ctx,
    lineage: &[NodeId],
    standings: Vec<(NodeId, String, Standing)>,
    rising: bool,
) -> Result<(), ApiError> {
    let settings = super::settings::notifications_along(conn, lineage)?;
    let position: BTreeMap<NodeId, usize> =
        lineage.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let thresholds = |node: &NodeId| {
        position
            .get(node)
            .map_or(&[][..], |i| &settings[*i].quota_thresholds.value[..])
    };
    if rising
        && !standings
            .iter()
            .any(|(node, _, s)| thresholds(node).iter().any(|t| s.reaches(*t)))
    {
        return Ok(());
    }
    let nodes: Vec<NodeId> = standings.iter().map(|(n, _, _)| *n).collect();
    let mut marked: BTreeMap<(NodeId, String), Vec<u8>> = BTreeMap::new();
    for (node, resource, threshold) in quota_crossings::of_nodes(conn, &nodes)? {
        marked.entry((node, resource)).or_default().push(threshold);
    }
    for (node, resource, standing) in standings {
        let key = (node, resource);
        let mine = marked.get(&key).map_or(&[][..], Vec::as_slice);
        let crossings = Crossings::of(standing, thresholds(&node), mine);
        let (node, resource) = key;
        for threshold in &crossings.left {
            quota_crossings::unmark(conn, node, &resource, *threshold)?;
        }
        let mut fresh = false;
        for threshold in &crossings.reached {
            fresh |= quota_crossings::mark(conn, node, &resource, *threshold)?;
        }
        if let (true, Some(threshold)) = (fresh, crossings.noticed()) {
            let recipients = position
                .get(&node)
                .map_or(&[][..], |i| &settings[*i].recipients.value[..]);
            super::notices::threshold_crossed(
                conn, ctx, node, &resource, threshold, standing, recipients,
            )?;
        }
    }
    Ok(())
}
