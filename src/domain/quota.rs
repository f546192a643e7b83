//! The quota arithmetic: limits as step functions of days, whether a change fits, and the
//! verifier's view of the whole tree. Pure: the store feeds it rows read inside the write
//! transaction and applies what it allows in that same transaction.
//!
//! A node's **limit** for a resource on a day is the sum of its active grants covering that day.
//! What a node has **allocated** is the sum of the grants it made. The invariant, for every node,
//! resource and day: allocated ≤ limit; and for a customer, usage ≤ limit whenever usage grows.
//! Step functions change only where a grant starts or ends, so checking a span means checking its
//! first day and every start or end inside it: [`first_excess`] does exactly that.
//!
//! **Overselling** (issue 16). A node's parent may let it grant its children more than it holds:
//! per resource a [`Ratio`] (1.0, none, by default). Then two invariants hold on every node:
//! - *grants*: what it granted on any day ≤ ⌊ratio × its limit that day⌋ ([`first_excess_under`],
//!   the same walk over boundaries with the supply scaled);
//! - *use*: the seats taken within its subtree never grow past its own limit. Every seat is checked
//!   against the customer's own [`Standing`] and then every ancestor's ([`Bundle`]), so a customer
//!   with room of its own is refused when an ancestor's real seats are all taken
//!   ([`Refusal::ancestor`]).
//!
//! Why the whole lineage, not only below an overselling ancestor: without overselling the grant
//! invariant alone would bound a subtree's use only if every customer stayed within its limit, and
//! a customer may be over its limit (`allow_over_limit`, an ended grant); its siblings may then
//! still take seats their own grants allow. The walk is a few more counter rows per seat (the
//! lineage is shallow), so it is done always and the use invariant holds without exceptions.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::ids::NodeId;

/// Amounts are counts of units; this bound keeps every sum far from overflow.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// An amount a grant or a licence line may have: 0 to [`MAX_AMOUNT`].
pub(crate) fn check_amount(amount: i64) -> Result<i64, String> {
    if (0..=MAX_AMOUNT).contains(&amount) {
        Ok(amount)
    } else {
        Err(format!("must be between 0 and {MAX_AMOUNT}"))
    }
}

/// Dates a request may name: years 1 to 9999, which both backends store and order alike.
pub(crate) fn check_date(date: NaiveDate) -> Result<NaiveDate, String> {
    use chrono::Datelike;
    if (1..=9999).contains(&date.year()) {
        Ok(date)
    } else {
        Err("must be a date in the years 1 to 9999".to_owned())
    }
}

/// What is wrong with a grant's days, each under the field at fault: a day out of range under its
/// own name (`starts_on`, `ends_on`), an end not after the start under `ends_on`.
pub(crate) fn span_faults(
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
) -> Vec<(&'static str, String)> {
    let mut faults = Vec::new();
    let start = check_date(starts_on).map_err(|m| faults.push(("starts_on", m)));
    let end = ends_on.map(|end| check_date(end).map_err(|m| faults.push(("ends_on", m))));
    if let (Ok(start), Some(Ok(end))) = (start, end)
        && end <= start
    {
        faults.push(("ends_on", "must be after starts_on".to_owned()));
    }
    faults
}

/// A live grant carried to a new grantor when its node moves on `today`: the same units, from
/// today (or its own later start) to its own end.
pub(crate) fn carried(grant: Grant, today: NaiveDate) -> Grant {
    Grant {
        amount: grant.amount,
        span: Span {
            start: grant.span.start.max(today),
            end: grant.span.end,
        },
    }
}

/// How many times its own limit a node may grant to its children, per resource, kept exactly in
/// thousandths (1000 = 1.0, none): an integer both backends store alike, where a float could round
/// differently. From 1.0 to [`Ratio::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ratio(i64);

impl Ratio {
    /// No overselling: a node grants at most what it holds.
    pub const ONE: Ratio = Ratio(1000);
    /// The highest ratio: 100 times the limit, far beyond seed 002's four.
    pub const MAX: Ratio = Ratio(100_000);

    /// The ratio of `permille` thousandths, if between 1.0 and [`Ratio::MAX`].
    pub fn from_permille(permille: i64) -> Result<Ratio, String> {
        if (Self::ONE.0..=Self::MAX.0).contains(&permille) {
            Ok(Ratio(permille))
        } else {
            Err(format!(
                "must be between 1 and {} (at most three decimals)",
                Self::MAX.0 / 1000
            ))
        }
    }

    /// A ratio written as a decimal number (`2`, `2.5`, `1.125`): at most three decimals, exactly.
    pub fn from_decimal(value: f64) -> Result<Ratio, String> {
        let scaled = value * 1000.0;
        let rounded = scaled.round();
        if !value.is_finite() || (scaled - rounded).abs() > 1e-6 {
            return Err("must have at most three decimals".to_owned());
        }
        // Checked against the bounds before the cast, so it cannot truncate.
        if !(1000.0..=100_000.0).contains(&rounded) {
            return Self::from_permille(-1);
        }
        #[allow(clippy::cast_possible_truncation)]
        let permille = rounded as i64;
        Self::from_permille(permille)
    }

    pub const fn permille(self) -> i64 {
        self.0
    }

    /// The ratio as a decimal number, for views (exact: thousandths up to 100 are exact enough
    /// that printing the shortest form gives back what was set).
    #[allow(clippy::cast_precision_loss)]
    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    /// ⌊ratio × `limit`⌋: what a node with this limit may grant. Never overflows (i128 inside,
    /// saturating at `i64::MAX`).
    pub fn of(self, limit: i64) -> i64 {
        let scaled = i128::from(limit) * i128::from(self.0) / 1000;
        i64::try_from(scaled).unwrap_or(if scaled < 0 { i64::MIN } else { i64::MAX })
    }
}

impl Default for Ratio {
    fn default() -> Self {
        Self::ONE
    }
}

/// Days `[start, end)`; open-ended when `end` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

impl Span {
    /// Every day from `start` on.
    pub const fn from(start: NaiveDate) -> Self {
        Self { start, end: None }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        day >= self.start && self.end.is_none_or(|end| day < end)
    }

    /// The smallest span covering both.
    pub fn hull(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: match (self.end, other.end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            },
        }
    }

    /// The part of this span from `day` on, if any.
    pub fn since(self, day: NaiveDate) -> Option<Span> {
        let start = self.start.max(day);
        self.end.is_none_or(|end| start < end).then_some(Span {
            start,
            end: self.end,
        })
    }
}

/// One active grant as the arithmetic sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub amount: i64,
    pub span: Span,
}

/// The sum of the grants covering `day`.
pub(crate) fn total_at(grants: &[Grant], day: NaiveDate) -> i64 {
    grants
        .iter()
        .filter(|g| g.span.contains(day))
        .map(|g| g.amount)
        .sum()
}

/// The days inside `within` where a sum over these grants can change, in order: its first day
/// and every start or end of a grant inside it.
fn boundaries(sets: &[&[Grant]], within: Span) -> Vec<NaiveDate> {
    let mut days = vec![within.start];
    for grant in sets.iter().flat_map(|set| set.iter()) {
        days.push(grant.span.start);
        days.extend(grant.span.end);
    }
    days.retain(|day| within.contains(*day));
    days.sort_unstable();
    days.dedup();
    days
}

/// The first day in `within` where `demand` exceeds `supply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Excess {
    pub at: NaiveDate,
    pub supply: i64,
    pub demand: i64,
}

pub(crate) fn first_excess(supply: &[Grant], demand: &[Grant], within: Span) -> Option<Excess> {
    first_excess_under(supply, Ratio::ONE, demand, within)
}

/// [`first_excess`] with the supply scaled by `ratio` on each day (⌊ratio × supply⌋): the grant
/// invariant of an overselling node. `Excess::supply` is the scaled figure.
pub(crate) fn first_excess_under(
    supply: &[Grant],
    ratio: Ratio,
    demand: &[Grant],
    within: Span,
) -> Option<Excess> {
    boundaries(&[supply, demand], within)
        .into_iter()
        .map(|at| Excess {
            at,
            supply: ratio.of(total_at(supply, at)),
            demand: total_at(demand, at),
        })
        .find(|e| e.demand > e.supply)
}

/// A change refused because it would break the invariant: at `node`, on day `at`, `requested`
/// units had to fit where only `available` of `limit` were free.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{resource} at node {node_id} on {at}: {requested} requested, {available} available of a limit of {limit}"
)]
pub struct Refusal {
    pub node_id: NodeId,
    pub resource: String,
    pub at: NaiveDate,
    pub limit: i64,
    pub requested: i64,
    pub available: i64,
    /// The seat was refused at an ancestor of the customer taking it, whose subtree uses all of
    /// its real seats (`ancestor-exhausted`); `limit` is that ancestor's and `available` 0.
    pub ancestor: bool,
    /// For a seat: the units the node (with its subtree) used already.
    pub used: Option<i64>,
}

/// Where a node stands with one resource on one day: the sum of its grants covering the day, and
/// the units it (with its subtree) uses now. The seat rule and the over-limit rule are its methods,
/// and nowhere else: a mailbox create, an import, an enrolment, a module assignment and the check
/// all ask it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    pub limit: i64,
    pub used: i64,
}

impl Standing {
    /// Units free now, never below zero (a limit lowered under the use leaves none).
    pub fn free(&self) -> i64 {
        (self.limit - self.used).max(0)
    }

    /// Whether `n` more units may be taken: the seat rule.
    pub fn admits(&self, n: i64) -> bool {
        self.used
            .checked_add(n)
            .is_some_and(|total| total <= self.limit)
    }

    /// Whether the node already uses more than its limit allows: the over-limit rule, by which the
    /// check refuses a customer whose grants ended or were lowered under its use.
    pub fn over(&self) -> bool {
        self.used > self.limit
    }

    /// `n` more units of `resource` at `node` on `at`, or the refusal that says how many were free.
    pub fn take(
        &self,
        n: i64,
        node_id: NodeId,
        resource: &str,
        at: NaiveDate,
    ) -> Result<(), Refusal> {
        if self.admits(n) {
            Ok(())
        } else {
            Err(Refusal {
                node_id,
                resource: resource.to_owned(),
                at,
                limit: self.limit,
                requested: n,
                available: self.free(),
                ancestor: false,
                used: Some(self.used),
            })
        }
    }
}

impl Standing {
    /// Whether the use reaches `percent` % of the limit: what a quota notice is about. No use
    /// reaches nothing; any use reaches every threshold of a limit of 0.
    pub fn reaches(&self, percent: u8) -> bool {
        self.used > 0
            && self.used.saturating_mul(100) >= i64::from(percent).saturating_mul(self.limit)
    }
}

/// What a node's standing with one resource means for its quota notices: the thresholds it
/// reaches now that were not marked reached (to mark; the highest is noticed), and those marked
/// that it no longer reaches (re-armed: reaching them again is a new crossing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Crossings {
    pub reached: Vec<u8>,
    pub left: Vec<u8>,
}

impl Crossings {
    /// `standing` against the `thresholds` that apply and the ones `marked` reached.
    pub fn of(standing: Standing, thresholds: &[u8], marked: &[u8]) -> Self {
        let mut reached: Vec<u8> = thresholds
            .iter()
            .copied()
            .filter(|t| standing.reaches(*t) && !marked.contains(t))
            .collect();
        reached.sort_unstable();
        reached.dedup();
        let left = marked
            .iter()
            .copied()
            .filter(|t| !standing.reaches(*t))
            .collect();
        Self { reached, left }
    }

    /// The threshold a notice names: the highest newly reached (one notice for a change that
    /// passes several at once).
    pub fn noticed(&self) -> Option<u8> {
        self.reached.last().copied()
    }
}

/// Several resources taken together, one unit of each or none (a new mailbox takes `users` and a
/// seat of every automatic module), counted up in memory as units are taken: an import places its
/// rows against it and moves the stored counters once, at the end. Each resource is judged at the
/// customer and then at every ancestor (nearest first): the use invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bundle {
    node_id: NodeId,
    at: NaiveDate,
    standings: Vec<(String, Standing)>,
    /// Per resource of `standings` (same order), each ancestor's standing, nearest first.
    ancestors: Vec<Vec<(NodeId, Standing)>>,
}

impl Bundle {
    /// The resources `standings` name, as node `node_id` stands with them on `at`, with no
    /// ancestor judged.
    #[cfg(test)]
    pub fn new(node_id: NodeId, at: NaiveDate, standings: Vec<(String, Standing)>) -> Self {
        let ancestors = vec![Vec::new(); standings.len()];
        Self::with_ancestors(node_id, at, standings, ancestors)
    }

    /// As [`Bundle::new`], with each resource's ancestors (nearest first) to judge too.
    pub fn with_ancestors(
        node_id: NodeId,
        at: NaiveDate,
        standings: Vec<(String, Standing)>,
        ancestors: Vec<Vec<(NodeId, Standing)>>,
    ) -> Self {
        debug_assert_eq!(standings.len(), ancestors.len());
        Self {
            node_id,
            at,
            standings,
            ancestors,
        }
    }

    /// Every standing of the bundle, the customer's and each ancestor's, as (node, resource,
    /// standing), each with `n` more units used: where the lineage stands once `n` units of every
    /// resource are counted.
    pub fn after(&self, n: i64) -> Vec<(NodeId, String, Standing)> {
        let mut all = Vec::new();
        for ((resource, standing), ancestors) in self.standings.iter().zip(&self.ancestors) {
            let plus = |s: &Standing| Standing {
                used: s.used.saturating_add(n),
                ..*s
            };
            all.push((self.node_id, resource.clone(), plus(standing)));
            for (ancestor, standing) in ancestors {
                all.push((*ancestor, resource.clone(), plus(standing)));
            }
        }
        all
    }

    /// Takes one unit of every resource, or none: the first resource [`Standing::take`] refuses
    /// at the customer is the refusal; failing that, the first ancestor that has no real seat
    /// left (an `ancestor` refusal naming it).
    pub fn take_one(&mut self) -> Result<(), Refusal> {
        for (resource, standing) in &self.standings {
            standing.take(1, self.node_id, resource, self.at)?;
        }
        for ((resource, _), ancestors) in self.standings.iter().zip(&self.ancestors) {
            for (ancestor, standing) in ancestors {
                standing
                    .take(1, *ancestor, resource, self.at)
                    .map_err(|refusal| Refusal {
                        ancestor: true,
                        ..refusal
                    })?;
            }
        }
        for (_, standing) in &mut self.standings {
            standing.used += 1;
        }
        for (_, standing) in self.ancestors.iter_mut().flatten() {
            standing.used += 1;
        }
        Ok(())
    }
}

/// Everything the decision about one grant's change needs, read in the write transaction.
#[derive(Debug, Clone)]
pub(crate) struct GrantChange<'a> {
    pub resource: &'a str,
    pub grantor: Option<NodeId>,
    pub node: NodeId,
    /// The grantor's own grants (its limit); `None` for the owner's licence, which has no grantor.
    pub grantor_limit: Option<&'a [Grant]>,
    /// How many times its limit the grantor may grant.
    pub grantor_ratio: Ratio,
    /// How many times its limit the node may grant its own children.
    pub node_ratio: Ratio,
    /// The grantor's other grants (to this node and its siblings), without the one changing.
    pub grantor_other_grants: &'a [Grant],
    /// The node's other grants (from any grantor), without the one changing.
    pub node_other_limit: &'a [Grant],
    /// What the node has granted to its own children.
    pub node_grants: &'a [Grant],
    /// The node's usage now (a reseller's: its subtree's); lowering its limit below it needs
    /// `allow_over_limit`, so the use invariant holds at resellers as at customers.
    pub node_usage: Option<i64>,
    pub today: NaiveDate,
    /// Lowering a customer's limit below its usage is allowed only when asked for.
    pub allow_over_limit: bool,
    pub old: Option<Grant>,
    pub new: Option<Grant>,
}

impl GrantChange<'_> {
    /// Whether replacing `old` by `new` keeps the invariant at the grantor (what it allocated fits
    /// its limit) and at the node (its children's grants, or its usage, fit its new limit).
    pub fn decide(&self) -> Result<(), Refusal> {
        let affected = match (self.old, self.new) {
            (Some(old), Some(new)) => old.span.hull(new.span),
            (Some(only), None) | (None, Some(only)) => only.span,
            (None, None) => return Ok(()),
        };
        let refuse = |node_id, at, limit, requested, available| Refusal {
            node_id,
            resource: self.resource.to_owned(),
            at,
            limit,
            requested,
            available,
            ancestor: false,
            used: None,
        };

        if let (Some(limit), Some(grantor)) = (self.grantor_limit, self.grantor) {
            let added: Vec<Grant> = self.new.into_iter().collect();
            fits(
                grantor,
                self.resource,
                limit,
                self.grantor_ratio,
                self.grantor_other_grants,
                &added,
                affected,
            )?;
        }

        let mut new_limit = self.node_other_limit.to_vec();
        new_limit.extend(self.new);
        if let Some(excess) =
            first_excess_under(&new_limit, self.node_ratio, self.node_grants, affected)
        {
            return Err(refuse(
                self.node,
                excess.at,
                excess.supply,
                excess.demand,
                excess.supply,
            ));
        }

        if let (Some(used), false) = (self.node_usage, self.allow_over_limit) {
            let mut old_limit = self.node_other_limit.to_vec();
            old_limit.extend(self.old);
            let Some(from_today) = affected.since(self.today) else {
                return Ok(());
            };
            if let Some((at, after)) = lowered_under_use(&old_limit, &new_limit, used, from_today) {
                return Err(refuse(self.node, at, after, used, after));
            }
        }
        Ok(())
    }
}

/// The first day in `within` where a node's limit, changing from the sum of `old` to the sum of
/// `new`, falls and ends up below `used` (what the node uses now), with the new limit that day.
/// The over-limit rule of a change: a limit may always rise, and may fall as far as the use; below
/// it only with `allow_over_limit`. One grant's change and a plan's change of several ask it alike.
pub(crate) fn lowered_under_use(
    old: &[Grant],
    new: &[Grant],
    used: i64,
    within: Span,
) -> Option<(NaiveDate, i64)> {
    boundaries(&[old, new], within).into_iter().find_map(|at| {
        let (before, after) = (total_at(old, at), total_at(new, at));
        (after < before && after < used).then_some((at, after))
    })
}

/// Whether `added` grants fit beside the `existing` ones under ⌊`ratio` × `grantor`'s `limit`⌋ on
/// every day of `within`; the refusal names the added units that did not fit and what was left
/// for them.
pub(crate) fn fits(
    grantor: NodeId,
    resource: &str,
    limit: &[Grant],
    ratio: Ratio,
    existing: &[Grant],
    added: &[Grant],
    within: Span,
) -> Result<(), Refusal> {
    let demand: Vec<Grant> = existing.iter().chain(added).copied().collect();
    match first_excess_under(limit, ratio, &demand, within) {
        None => Ok(()),
        Some(excess) => {
            let others = total_at(existing, excess.at);
            Err(Refusal {
                node_id: grantor,
                resource: resource.to_owned(),
                at: excess.at,
                limit: excess.supply,
                requested: excess.demand - others,
                available: (excess.supply - others).max(0),
                ancestor: false,
                used: None,
            })
        }
    }
}

/// Whether a new set of licence lines still covers everything the owner has allocated.
pub(crate) fn decide_licence(
    owner: NodeId,
    resource: &str,
    licence: &[Grant],
    allocated: &[Grant],
    within: Span,
) -> Result<(), Refusal> {
    match first_excess(licence, allocated, within) {
        None => Ok(()),
        Some(excess) => Err(Refusal {
            node_id: owner,
            resource: resource.to_owned(),
            at: excess.at,
            limit: excess.supply,
            requested: excess.demand,
            available: excess.supply,
            ancestor: false,
            used: None,
        }),
    }
}

/// Whether `node` may have `ratio` for `resource`: everything it granted (`granted`, on any day)
/// must fit under ⌊ratio × its limit⌋ on every day. Checked over all days, as the verifier checks,
/// since a ratio has no history: lowering it judges past days as well.
pub(crate) fn decide_ratio(
    node: NodeId,
    resource: &str,
    limit: &[Grant],
    ratio: Ratio,
    granted: &[Grant],
) -> Result<(), Refusal> {
    let Some(earliest) = granted.iter().map(|g| g.span.start).min() else {
        return Ok(());
    };
    match first_excess_under(limit, ratio, granted, Span::from(earliest)) {
        None => Ok(()),
        Some(excess) => Err(Refusal {
            node_id: node,
            resource: resource.to_owned(),
            at: excess.at,
            limit: excess.supply,
            requested: excess.demand,
            available: excess.supply,
            ancestor: false,
            used: None,
        }),
    }
}

/// One stored grant, for the verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantRecord {
    pub node: NodeId,
    pub grantor: Option<NodeId>,
    pub resource: String,
    pub grant: Grant,
}

/// What the verifier can find wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A node allocated more than its limit on some day.
    Oversold {
        node: NodeId,
        resource: String,
        at: NaiveDate,
        limit: i64,
        allocated: i64,
    },
    /// A reseller's (or the owner's) subtree uses more than its own limit today.
    OverUsed {
        node: NodeId,
        resource: String,
        at: NaiveDate,
        limit: i64,
        used: i64,
    },
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Oversold {
                node,
                resource,
                at,
                limit,
                allocated,
            } => write!(
                f,
                "node {node} has allocated {allocated} {resource} on {at}, more than it may grant ({limit})"
            ),
            Self::OverUsed {
                node,
                resource,
                at,
                limit,
                used,
            } => write!(
                f,
                "node {node}'s subtree uses {used} {resource} on {at} with a limit of {limit}"
            ),
        }
    }
}

/// Recomputes the grant invariant over every day for every grantor and resource: what it granted
/// ≤ ⌊its ratio (from `ratios`, 1.0 when absent) × its limit⌋. `grants` are the active grants only.
pub(crate) fn verify(
    grants: &[GrantRecord],
    ratios: &BTreeMap<(NodeId, String), Ratio>,
) -> Vec<Violation> {
    let mut limits: BTreeMap<(NodeId, &str), Vec<Grant>> = BTreeMap::new();
    let mut allocated: BTreeMap<(NodeId, &str), Vec<Grant>> = BTreeMap::new();
    for record in grants {
        limits
            .entry((record.node, &record.resource))
            .or_default()
            .push(record.grant);
        if let Some(grantor) = record.grantor {
            allocated
                .entry((grantor, &record.resource))
                .or_default()
                .push(record.grant);
        }
    }
    let mut violations = Vec::new();
    for ((node, resource), made) in &allocated {
        let limit = limits
            .get(&(*node, *resource))
            .map_or(&[][..], Vec::as_slice);
        let Some(earliest) = made.iter().map(|g| g.span.start).min() else {
            continue;
        };
        // The first day this grantor is oversold; one line per grantor and resource is enough to
        // send an operator looking.
        let ratio = ratios
            .get(&(*node, (*resource).to_owned()))
            .copied()
            .unwrap_or_default();
        if let Some(excess) = first_excess_under(limit, ratio, made, Span::from(earliest)) {
            violations.push(Violation::Oversold {
                node: *node,
                resource: (*resource).to_owned(),
                at: excess.at,
                limit: excess.supply,
                allocated: excess.demand,
            });
        }
    }
    violations
}

/// The use invariant as the verifier sees it on `today`: each of `used` ((node, resource, units
/// its subtree uses)) within the node's limit, from the active `grants`.
pub(crate) fn verify_use(
    grants: &[GrantRecord],
    used: &[(NodeId, String, i64)],
    today: NaiveDate,
) -> Vec<Violation> {
    let mut limits: BTreeMap<(NodeId, &str), i64> = BTreeMap::new();
    for record in grants.iter().filter(|r| r.grant.span.contains(today)) {
        *limits.entry((record.node, &record.resource)).or_default() += record.grant.amount;
    }
    used.iter()
        .filter_map(|(node, resource, used)| {
            let limit = limits
                .get(&(*node, resource.as_str()))
                .copied()
                .unwrap_or(0);
            (*used > limit).then(|| Violation::OverUsed {
                node: *node,
                resource: resource.clone(),
                at: today,
                limit,
                used: *used,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_threshold_is_crossed_once_and_re_armed_below_it() {
        let at = |used, limit| Standing { used, limit };
        assert!(at(8, 10).reaches(80) && !at(7, 10).reaches(80));
        assert!(at(10, 10).reaches(100) && !at(9, 10).reaches(100));
        assert!(!at(0, 0).reaches(1) && at(1, 0).reaches(100));
        let thresholds = [80, 100];
        assert_eq!(
            Crossings::of(at(8, 10), &thresholds, &[]),
            Crossings {
                reached: vec![80],
                left: vec![]
            }
        );
        assert_eq!(
            Crossings::of(at(9, 10), &thresholds, &[80]),
            Crossings::default()
        );
        assert_eq!(
            Crossings::of(at(7, 10), &thresholds, &[80]),
            Crossings {
                reached: vec![],
                left: vec![80]
            }
        );
        let both = Crossings::of(at(10, 10), &thresholds, &[]);
        assert_eq!(both.reached, vec![80, 100]);
        assert_eq!(both.noticed(), Some(100));
        // A limit raised under the use re-arms what the use no longer reaches.
        assert_eq!(
            Crossings::of(at(10, 20), &thresholds, &[80, 100]).left,
            vec![80, 100]
        );
    }
    use super::*;
    use proptest::prelude::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::TimeDelta::days(n)
    }

    fn grant(amount: i64, start: i64, end: Option<i64>) -> Grant {
        Grant {
            amount,
            span: Span {
                start: day(start),
                end: end.map(day),
            },
        }
    }

    #[test]
    fn the_seat_rule_admits_up_to_the_limit_and_says_what_was_free() {
        let node = NodeId::generate();
        let standing = Standing { limit: 3, used: 2 };
        assert!(standing.admits(1) && !standing.admits(2));
        assert_eq!(standing.take(1, node, "users", day(0)), Ok(()));
        let refusal = standing.take(2, node, "users", day(0)).unwrap_err();
        assert_eq!(
            (refusal.limit, refusal.requested, refusal.available),
            (3, 2, 1)
        );
        let full = Standing { limit: 3, used: 3 };
        assert!(!full.admits(1) && !full.over(), "full is not over");
        let lowered = Standing { limit: 1, used: 3 };
        assert!(
            lowered.over() && lowered.free() == 0,
            "a limit lowered under the use"
        );
        assert!(
            !Standing {
                limit: i64::MAX,
                used: 1
            }
            .admits(i64::MAX),
            "no overflow"
        );
    }

    #[test]
    fn a_bundle_takes_one_of_each_or_none_and_counts_what_it_took() {
        let node = NodeId::generate();
        let mut bundle = Bundle::new(
            node,
            day(0),
            vec![
                ("users".to_owned(), Standing { limit: 3, used: 1 }),
                ("module:base".to_owned(), Standing { limit: 2, used: 1 }),
            ],
        );
        assert_eq!(bundle.take_one(), Ok(()));
        let refusal = bundle.take_one().unwrap_err();
        assert_eq!(
            (refusal.resource.as_str(), refusal.available),
            ("module:base", 0)
        );
        // The refused take counted nothing: `users` has its one unit left.
        assert_eq!(bundle.standings[0].1, Standing { limit: 3, used: 2 });
    }

    #[test]
    fn a_limit_is_the_sum_of_the_grants_covering_the_day() {
        let grants = [grant(10, 0, Some(10)), grant(5, 5, None)];
        assert_eq!(total_at(&grants, day(-1)), 0);
        assert_eq!(total_at(&grants, day(0)), 10);
        assert_eq!(total_at(&grants, day(5)), 15);
        assert_eq!(total_at(&grants, day(10)), 5, "the end day is excluded");
    }

    #[test]
    fn the_first_excess_is_found_at_a_boundary_inside_the_span() {
        let supply = [grant(10, 0, Some(30)), grant(10, 10, Some(20))];
        let demand = [grant(15, 5, Some(25))];
        let excess = first_excess(&supply, &demand, Span::from(day(0))).unwrap();
        assert_eq!((excess.at, excess.supply, excess.demand), (day(5), 10, 15));
        // From day 10 to 20 there is room; from day 20 there is not again.
        let within = Span {
            start: day(10),
            end: Some(day(20)),
        };
        assert_eq!(first_excess(&supply, &demand, within), None);
        let excess = first_excess(&supply, &demand, Span::from(day(12))).unwrap();
        assert_eq!(excess.at, day(20));
    }

    fn change<'a>(
        grantor_limit: &'a [Grant],
        grantor_other_grants: &'a [Grant],
        node_grants: &'a [Grant],
        node_usage: Option<i64>,
        old: Option<Grant>,
        new: Option<Grant>,
    ) -> GrantChange<'a> {
        GrantChange {
            resource: "users",
            grantor: Some(NodeId(uuid::Uuid::from_u128(1))),
            node: NodeId(uuid::Uuid::from_u128(2)),
            grantor_limit: Some(grantor_limit),
            grantor_ratio: Ratio::ONE,
            node_ratio: Ratio::ONE,
            grantor_other_grants,
            node_other_limit: &[],
            node_grants,
            node_usage,
            today: day(0),
            allow_over_limit: false,
            old,
            new,
        }
    }

    #[test]
    fn a_grant_beyond_what_the_grantor_has_left_is_refused_with_the_figures() {
        let limit = [grant(100, 0, None)];
        let others = [grant(70, 0, None)];
        let refusal = change(&limit, &others, &[], None, None, Some(grant(40, 3, None)))
            .decide()
            .unwrap_err();
        assert_eq!(refusal.at, day(3));
        assert_eq!(
            (refusal.limit, refusal.requested, refusal.available),
            (100, 40, 30)
        );
        assert_eq!(refusal.node_id, NodeId(uuid::Uuid::from_u128(1)));
        assert!(
            change(&limit, &others, &[], None, None, Some(grant(30, 3, None)))
                .decide()
                .is_ok()
        );
    }

    #[test]
    fn a_grant_that_fits_now_but_not_when_the_grantors_licence_ends_is_refused() {
        let limit = [grant(100, 0, Some(30))];
        let refusal = change(&limit, &[], &[], None, None, Some(grant(10, 0, None)))
            .decide()
            .unwrap_err();
        assert_eq!((refusal.at, refusal.available), (day(30), 0));
    }

    #[test]
    fn lowering_below_what_children_hold_is_refused_at_the_node() {
        let limit = [grant(100, 0, None)];
        let children = [grant(60, 0, None)];
        let refusal = change(
            &limit,
            &[],
            &children,
            None,
            Some(grant(80, 0, None)),
            Some(grant(50, 0, None)),
        )
        .decide()
        .unwrap_err();
        assert_eq!(refusal.node_id, NodeId(uuid::Uuid::from_u128(2)));
        assert_eq!((refusal.limit, refusal.requested), (50, 60));
    }

    #[test]
    fn lowering_below_usage_needs_allow_over_limit_but_raising_an_over_limit_customer_does_not() {
        let limit = [grant(100, 0, None)];
        let lower = change(
            &limit,
            &[],
            &[],
            Some(40),
            Some(grant(50, 0, None)),
            Some(grant(30, 0, None)),
        );
        let refusal = lower.decide().unwrap_err();
        assert_eq!(
            (refusal.limit, refusal.requested, refusal.available),
            (30, 40, 30)
        );
        assert!(
            GrantChange {
                allow_over_limit: true,
                ..lower
            }
            .decide()
            .is_ok()
        );
        let raise = change(
            &limit,
            &[],
            &[],
            Some(40),
            Some(grant(20, 0, None)),
            Some(grant(30, 0, None)),
        );
        assert!(
            raise.decide().is_ok(),
            "a change that only raises the limit never hurts"
        );
    }

    // The property: any sequence of grants and changes, each applied only when `decide` allows
    // it, leaves a tree that a brute-force count over every day finds sound, and that `verify`
    // agrees with.

    const DAYS: i64 = 40;

    #[derive(Debug, Clone)]
    enum Op {
        Grant {
            node: usize,
            amount: i64,
            start: i64,
            len: Option<i64>,
        },
        Change {
            pick: usize,
            amount: i64,
            start: i64,
            len: Option<i64>,
            active: bool,
        },
        Licence {
            amount: i64,
            start: i64,
            len: Option<i64>,
        },
        /// An admin above `node` sets its ratio.
        Ratio { node: usize, permille: i64 },
        /// Up to `seats` seats taken one by one at `node` (each counted up its lineage), as long as
        /// they are admitted.
        Take { node: usize, seats: usize },
        /// `node`, if it is a leaf (a customer), changes plan today: its grants from its parent end
        /// today and one of `amount` starts, open-ended, or nothing changes (a downgrade its use
        /// does not fit, or a grant its parent has no room for).
        Plan { node: usize, amount: i64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        // Half the spans start today, so that seats (taken today) meet limits that count.
        let span = (
            prop_oneof![Just(0i64), 0..DAYS],
            proptest::option::of(1..DAYS),
        );
        prop_oneof![
            (1..8usize, 0..60i64, span.clone()).prop_map(|(node, amount, (start, len))| {
                Op::Grant {
                    node,
                    amount,
                    start,
                    len,
                }
            }),
            (any::<usize>(), 0..60i64, span.clone(), any::<bool>()).prop_map(
                |(pick, amount, (start, len), active)| Op::Change {
                    pick,
                    amount,
                    start,
                    len,
                    active
                }
            ),
            (0..200i64, span).prop_map(|(amount, (start, len))| Op::Licence { amount, start, len }),
            (1..8usize, 1000..4000i64).prop_map(|(node, permille)| Op::Ratio { node, permille }),
            (0..8usize, 1..40usize).prop_map(|(node, seats)| Op::Take { node, seats }),
            (0..8usize, 1..40usize).prop_map(|(node, seats)| Op::Take { node, seats }),
            (1..8usize, 0..60i64).prop_map(|(node, amount)| Op::Plan { node, amount }),
        ]
    }

    #[derive(Debug, Clone)]
    struct Row {
        node: usize,
        grantor: Option<usize>,
        grant: Grant,
        active: bool,
    }

    fn id(index: usize) -> NodeId {
        NodeId(uuid::Uuid::from_u128(index as u128 + 1))
    }

    fn grants(rows: &[Row], keep: impl Fn(&Row) -> bool) -> Vec<Grant> {
        rows.iter()
            .filter(|r| r.active && keep(r))
            .map(|r| r.grant)
            .collect()
    }

    /// Whether `grantor` may grant `new` to `node` over `rows`, with the nodes' `ratios` and the
    /// seats `used` in each subtree: the decision every grant gets.
    fn grant_allowed(
        rows: &[Row],
        ratios: &[Ratio; 8],
        used: &[i64; 8],
        grantor: usize,
        node: usize,
        new: Grant,
    ) -> bool {
        GrantChange {
            resource: "users",
            grantor: Some(id(grantor)),
            node: id(node),
            grantor_limit: Some(&grants(rows, |r| r.node == grantor)),
            grantor_ratio: ratios[grantor],
            node_ratio: ratios[node],
            grantor_other_grants: &grants(rows, |r| r.grantor == Some(grantor)),
            node_other_limit: &grants(rows, |r| r.node == node),
            node_grants: &grants(rows, |r| r.grantor == Some(node)),
            node_usage: Some(used[node]),
            today: day(0),
            allow_over_limit: false,
            old: None,
            new: Some(new),
        }
        .decide()
        .is_ok()
    }

    fn span(start: i64, len: Option<i64>) -> Span {
        Span {
            start: day(start),
            end: len.map(|l| day(start + l)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn allowed_changes_never_oversell(parents in proptest::collection::vec(0..8usize, 7), ops in proptest::collection::vec(op(), 1..60)) {
            // Node 0 is the owner; node i > 0 hangs under a lower-numbered node.
            let parent_of: Vec<Option<usize>> = std::iter::once(None)
                .chain(parents.iter().enumerate().map(|(i, p)| Some(p % (i + 1))))
                .collect();
            let lineage_of = |node: usize| -> Vec<usize> {
                let mut lineage = vec![node];
                while let Some(parent) = parent_of[*lineage.last().unwrap()] {
                    lineage.push(parent);
                }
                lineage
            };
            let mut rows: Vec<Row> = Vec::new();
            let mut ratios = [Ratio::ONE; 8];
            // Seats taken within each node's subtree.
            let mut used = [0i64; 8];
            for op in ops {
                match op {
                    Op::Ratio { node, permille } => {
                        let ratio = Ratio::from_permille(permille).unwrap();
                        let limit = grants(&rows, |r| r.node == node);
                        let granted = grants(&rows, |r| r.grantor == Some(node));
                        if decide_ratio(id(node), "users", &limit, ratio, &granted).is_ok() {
                            ratios[node] = ratio;
                        }
                    }
                    Op::Take { node, seats } => {
                        for _ in 0..seats {
                            let standing = |n: usize| Standing { limit: total_at(&grants(&rows, |r| r.node == n), day(0)), used: used[n] };
                            let lineage = lineage_of(node);
                            let ancestors = lineage[1..].iter().map(|&a| (id(a), standing(a))).collect();
                            let mut bundle = Bundle::with_ancestors(id(node), day(0), vec![("users".to_owned(), standing(node))], vec![ancestors]);
                            if bundle.take_one().is_err() {
                                break;
                            }
                            for n in lineage {
                                used[n] += 1;
                            }
                        }
                    }
                    Op::Licence { amount, start, len } => {
                        let licence = vec![Grant { amount, span: span(start, len) }];
                        let allocated = grants(&rows, |r| r.grantor == Some(0));
                        // The licence keeps the owner's use, as a grant keeps a node's.
                        let keeps_use = total_at(&licence, day(0)) >= used[0];
                        if keeps_use && decide_licence(id(0), "users", &licence, &allocated, Span::from(day(0))).is_ok() {
                            rows.retain(|r| r.grantor.is_some());
                            rows.push(Row { node: 0, grantor: None, grant: licence[0], active: true });
                        }
                    }
                    Op::Plan { node, amount } => {
                        if parent_of.contains(&Some(node)) {
                            continue;
                        }
                        let grantor = parent_of[node].unwrap();
                        // The plan's grants end today (one not started yet never counts), as the
                        // service ends them, then the new one is decided as any grant is.
                        let mut after = rows.clone();
                        for row in after.iter_mut().filter(|r| r.node == node && r.grantor == Some(grantor) && r.active) {
                            if row.grant.span.start >= day(0) {
                                row.active = false;
                            } else if row.grant.span.end.is_none_or(|end| end > day(0)) {
                                row.grant.span.end = Some(day(0));
                            }
                        }
                        let new = Grant { amount, span: Span::from(day(0)) };
                        let mut new_limit = grants(&after, |r| r.node == node);
                        new_limit.push(new);
                        let change = crate::domain::plans::Change {
                            resource: "users".to_owned(),
                            used: used[node],
                            before: grants(&rows, |r| r.node == node),
                            after: new_limit,
                        };
                        if !crate::domain::plans::shortfalls(&[change], day(0)).is_empty() {
                            continue;
                        }
                        if grant_allowed(&after, &ratios, &used, grantor, node, new) {
                            after.push(Row { node, grantor: Some(grantor), grant: new, active: true });
                            rows = after;
                        }
                    }
                    Op::Grant { node, amount, start, len } => {
                        let grantor = parent_of[node].unwrap();
                        let new = Grant { amount, span: span(start, len) };
                        if grant_allowed(&rows, &ratios, &used, grantor, node, new) {
                            rows.push(Row { node, grantor: Some(grantor), grant: new, active: true });
                        }
                    }
                    Op::Change { pick, amount, start, len, active } => {
                        let candidates: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].grantor.is_some()).collect();
                        if candidates.is_empty() { continue; }
                        let index = candidates[pick % candidates.len()];
                        let row = rows[index].clone();
                        let grantor = row.grantor.unwrap();
                        let new = Grant { amount, span: span(start, len) };
                        let others = |keep: &dyn Fn(&Row) -> bool| -> Vec<Grant> {
                            rows.iter().enumerate().filter(|(i, r)| *i != index && r.active && keep(r)).map(|(_, r)| r.grant).collect()
                        };
                        let decision = GrantChange {
                            resource: "users",
                            grantor: Some(id(grantor)),
                            node: id(row.node),
                            grantor_limit: Some(&grants(&rows, |r| r.node == grantor)),
                            grantor_ratio: ratios[grantor],
                            node_ratio: ratios[row.node],
                            grantor_other_grants: &others(&|r| r.grantor == Some(grantor)),
                            node_other_limit: &others(&|r| r.node == row.node),
                            node_grants: &grants(&rows, |r| r.grantor == Some(row.node)),
                            node_usage: Some(used[row.node]),
                            today: day(0),
                            allow_over_limit: false,
                            old: row.active.then_some(row.grant),
                            new: active.then_some(new),
                        }.decide();
                        if decision.is_ok() {
                            rows[index].grant = new;
                            rows[index].active = active;
                        }
                    }
                }
                // The oracle: every node, every day, by brute force: the grant invariant under each
                // node's ratio, and today the use invariant.
                for node in 0..8 {
                    for d in -1..(2 * DAYS + 2) {
                        let limit = total_at(&grants(&rows, |r| r.node == node), day(d));
                        let made = total_at(&grants(&rows, |r| r.grantor == Some(node)), day(d));
                        let may = limit * ratios[node].permille() / 1000;
                        prop_assert!(made <= may, "node {node} day {d}: allocated {made} > {may}");
                    }
                    let limit = total_at(&grants(&rows, |r| r.node == node), day(0));
                    prop_assert!(used[node] <= limit, "node {node}: uses {} > limit {limit}", used[node]);
                }
            }
            let records: Vec<GrantRecord> = rows.iter().filter(|r| r.active).map(|r| GrantRecord {
                node: id(r.node), grantor: r.grantor.map(id), resource: "users".to_owned(), grant: r.grant,
            }).collect();
            let ratios: BTreeMap<(NodeId, String), Ratio> = (0..8).map(|n| ((id(n), "users".to_owned()), ratios[n])).collect();
            prop_assert_eq!(verify(&records, &ratios), vec![]);
            let counters: Vec<(NodeId, String, i64)> = (0..8).map(|n| (id(n), "users".to_owned(), used[n])).collect();
            prop_assert_eq!(verify_use(&records, &counters, day(0)), vec![]);
        }
    }

    #[test]
    fn ratios_are_exact_thousandths_between_one_and_a_hundred() {
        assert_eq!(Ratio::from_decimal(2.5).unwrap().permille(), 2500);
        assert_eq!(Ratio::from_decimal(1.125).unwrap().permille(), 1125);
        assert_eq!(Ratio::from_decimal(1.1).unwrap().as_decimal(), 1.1);
        assert!(Ratio::from_decimal(1.0001).is_err());
        assert!(Ratio::from_decimal(0.5).is_err());
        assert!(Ratio::from_decimal(100.001).is_err());
        assert!(Ratio::from_decimal(f64::NAN).is_err());
        assert_eq!(Ratio::MAX.permille(), 100_000);
        // ⌊1.5 × 3⌋ = 4; no overflow at the extremes.
        assert_eq!(Ratio::from_permille(1500).unwrap().of(3), 4);
        assert_eq!(Ratio::MAX.of(i64::MAX), i64::MAX);
    }

    #[test]
    fn an_overselling_grantor_grants_up_to_its_ratio_times_its_limit() {
        let limit = [grant(10, 0, None)];
        let others = [grant(15, 0, None)];
        let mut decision = change(&limit, &others, &[], None, None, Some(grant(5, 0, None)));
        assert!(decision.decide().is_err(), "1.0: 20 of 10");
        decision.grantor_ratio = Ratio::from_permille(2000).unwrap();
        assert!(decision.decide().is_ok(), "2.0: 20 of 20");
        decision.new = Some(grant(6, 0, None));
        let refusal = decision.decide().unwrap_err();
        assert_eq!((refusal.limit, refusal.available), (20, 5));
    }

    #[test]
    fn a_ratio_below_what_was_granted_is_refused() {
        let limit = [grant(10, 0, None)];
        let granted = [grant(15, 3, Some(8))];
        let two = Ratio::from_permille(2000).unwrap();
        assert!(decide_ratio(id(1), "users", &limit, two, &granted).is_ok());
        let refusal = decide_ratio(id(1), "users", &limit, Ratio::ONE, &granted).unwrap_err();
        assert_eq!(
            (refusal.at, refusal.limit, refusal.requested),
            (day(3), 10, 15)
        );
    }

    #[test]
    fn a_seat_is_refused_at_the_first_exhausted_ancestor() {
        let mut bundle = Bundle::with_ancestors(
            id(2),
            day(0),
            vec![("users".to_owned(), Standing { limit: 10, used: 3 })],
            vec![vec![
                (id(1), Standing { limit: 5, used: 4 }),
                (
                    id(0),
                    Standing {
                        limit: 100,
                        used: 4,
                    },
                ),
            ]],
        );
        assert_eq!(bundle.take_one(), Ok(()));
        let refusal = bundle.take_one().unwrap_err();
        assert!(refusal.ancestor);
        assert_eq!(
            (refusal.node_id, refusal.limit, refusal.available),
            (id(1), 5, 0)
        );
    }

    #[test]
    fn the_verifier_reports_a_subtree_over_its_limit() {
        let records = vec![GrantRecord {
            node: id(1),
            grantor: Some(id(0)),
            resource: "users".into(),
            grant: grant(10, 0, None),
        }];
        let used = vec![
            (id(1), "users".to_owned(), 11),
            (id(0), "users".to_owned(), 0),
        ];
        assert_eq!(
            verify_use(&records, &used, day(0)),
            vec![Violation::OverUsed {
                node: id(1),
                resource: "users".into(),
                at: day(0),
                limit: 10,
                used: 11
            }]
        );
    }

    #[test]
    fn the_verifier_reports_an_oversold_grantor() {
        let records = vec![
            GrantRecord {
                node: id(0),
                grantor: None,
                resource: "users".into(),
                grant: grant(10, 0, None),
            },
            GrantRecord {
                node: id(1),
                grantor: Some(id(0)),
                resource: "users".into(),
                grant: grant(8, 0, None),
            },
            GrantRecord {
                node: id(2),
                grantor: Some(id(0)),
                resource: "users".into(),
                grant: grant(5, 3, Some(9)),
            },
        ];
        let violations = verify(&records, &BTreeMap::new());
        assert_eq!(
            violations,
            vec![Violation::Oversold {
                node: id(0),
                resource: "users".into(),
                at: day(3),
                limit: 10,
                allocated: 13
            }]
        );
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn spans_report_each_fault_under_its_field() {
        assert!(span_faults(day(2026, 1, 1), None).is_empty());
        assert!(span_faults(day(2026, 1, 1), Some(day(2026, 1, 2))).is_empty());
        let faults = span_faults(day(2026, 1, 2), Some(day(2026, 1, 2)));
        assert_eq!(
            faults,
            vec![("ends_on", "must be after starts_on".to_owned())]
        );
        let faults = span_faults(day(10000, 1, 1), Some(day(2026, 1, 2)));
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].0, "starts_on");
        assert!(check_amount(MAX_AMOUNT).is_ok());
        assert!(check_amount(-1).is_err());
    }

    #[test]
    fn a_carried_grant_starts_today_at_the_earliest() {
        let grant = Grant {
            amount: 5,
            span: Span {
                start: day(2026, 1, 1),
                end: Some(day(2027, 1, 1)),
            },
        };
        let carried = carried(grant, day(2026, 6, 1));
        assert_eq!(carried.amount, 5);
        assert_eq!(carried.span.start, day(2026, 6, 1));
        assert_eq!(carried.span.end, Some(day(2027, 1, 1)));
        assert_eq!(super::carried(grant, day(2025, 1, 1)), grant);
    }
}
