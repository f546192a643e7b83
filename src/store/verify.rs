//! `allot verify`: recomputes every invariant from the raw tables and reports each violation.
//! The write paths keep the invariant; this is the independent check that they did.

use diesel::QueryResult;

use super::{DbConnection, allocations, nodes, usage};
use crate::domain::quota;
use crate::domain::tree::NodeKind;

/// Every violation found, as a sentence for an operator.
pub fn run(conn: &mut DbConnection, today: chrono::NaiveDate) -> QueryResult<Vec<String>> {
    let grants = allocations::all_active(conn)?;
    let ratios = super::oversell::all(conn)?;
    let mut findings: Vec<String> = quota::verify(&grants, &ratios)
        .iter()
        .map(ToString::to_string)
        .collect();
    findings.extend(
        quota::verify_use(&grants, &subtree_use(conn)?, today)
            .iter()
            .map(ToString::to_string),
    );

    // A live grant must come from the node's current parent (none for the owner's licence): a move
    // ends the old parent's grants, and nothing else changes who grants.
    let live: std::collections::HashMap<_, _> = nodes::all(conn)?
        .into_iter()
        .map(|n| (n.id, n.parent_id))
        .collect();
    for record in &grants {
        let still_counts = record.grant.span.end.is_none_or(|end| end > today);
        if let Some(parent) = live.get(&record.node)
            && still_counts
            && record.grantor != *parent
        {
            findings.push(format!(
                "node {} holds a live grant of {} from {}, which is not its parent",
                record.node,
                record.resource,
                record
                    .grantor
                    .map_or("nobody".to_owned(), |g| g.to_string()),
            ));
        }
    }
    findings.extend(rollups(conn)?);
    findings.extend(paths(conn)?);
    findings.extend(counted_rows(conn)?);
    findings.extend(super::identity::verify(conn)?);
    findings.extend(history(conn, today)?);
    Ok(findings)
}

/// What each reseller's and the owner's subtree uses, for the use invariant: (node, resource,
/// used). Customers are left out: one may stand over its limit when it was lowered under its use
/// on purpose (`allow_over_limit`) or a grant ended, and the check refuses its mail until it is
/// back within; a reseller's limit can be lowered under its subtree's use the same way only, so a
/// reseller found over its limit is worth an operator's look (an ended grant, or a broken write
/// path).
fn subtree_use(
    conn: &mut DbConnection,
) -> QueryResult<Vec<(crate::domain::ids::NodeId, String, i64)>> {
    let parents: std::collections::HashSet<String> = nodes::all(conn)?
        .into_iter()
        .filter(|n| n.kind != NodeKind::Customer)
        .map(|n| n.id.to_string())
        .collect();
    Ok(usage::all(conn)?
        .into_iter()
        .filter(|(node, _, _)| parents.contains(node))
        .filter_map(|(node, resource, used)| Some((node.parse().ok()?, resource, used)))
        .collect())
}

/// Once `today` is open in the usage history, each counter must have today's row, ending where
/// the counter stands and peaking no lower.
fn history(conn: &mut DbConnection, today: chrono::NaiveDate) -> QueryResult<Vec<String>> {
    if !super::history::is_open(conn, today)? {
        return Ok(Vec::new());
    }
    let rows: std::collections::HashMap<(String, String), super::history::Row> =
        super::history::on_day(conn, today)?
            .into_iter()
            .map(|row| ((row.node_id.clone(), row.resource.clone()), row))
            .collect();
    let mut findings = Vec::new();
    for (node, resource, used) in usage::all(conn)? {
        match rows.get(&(node.clone(), resource.clone())) {
            None => findings.push(format!(
                "node {node} uses {used} {resource} but its usage history has no row for {today}"
            )),
            Some(row) if row.used != used || row.peak < used => findings.push(format!(
                "node {node}'s usage history of {today} says {} {resource} in use (peak {}), but it uses {used}",
                row.used, row.peak
            )),
            Some(_) => {}
        }
    }
    Ok(findings)
}

/// A customer's counters must equal the rows they count: its domains, its active mailboxes other
/// than role addresses, and the module seats those mailboxes and the customer itself hold.
fn counted_rows(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    let mut findings = Vec::new();
    let domains: std::collections::BTreeMap<String, i64> =
        super::domains::counts(conn)?.into_iter().collect();
    let seats: std::collections::BTreeMap<String, i64> =
        super::mailboxes::seat_counts(conn)?.into_iter().collect();
    let modules = super::modules::seat_counts(conn)?;
    for node in nodes::all(conn)?
        .into_iter()
        .filter(|n| n.kind == NodeKind::Customer)
    {
        let id = node.id.to_string();
        let totals = usage::totals(conn, node.id)?;
        // Every counter kept, and every resource the rows hold, is compared.
        let mut expected: std::collections::BTreeMap<String, i64> = totals
            .keys()
            .map(|resource| (resource.clone(), 0))
            .collect();
        for (resource, counted) in [("domains", &domains), ("users", &seats)] {
            expected.insert(resource.to_owned(), counted.get(&id).copied().unwrap_or(0));
        }
        for ((_, resource), count) in modules
            .range((id.clone(), String::new())..)
            .take_while(|((owner, _), _)| *owner == id)
        {
            expected.insert(resource.clone(), *count);
        }
        for (resource, rows) in expected {
            let kept = totals.get(&resource).copied().unwrap_or(0);
            if rows != kept {
                findings.push(format!(
                    "customer {id} counts {kept} {resource} in use but holds {rows}"
                ));
            }
        }
    }
    Ok(findings)
}

/// Every node's path must be its parent's path and its own id: the subtree checks rest on it.
fn paths(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    let nodes = nodes::all(conn)?;
    let by_id: std::collections::HashMap<_, _> = nodes.iter().map(|n| (n.id, n)).collect();
    Ok(nodes
        .iter()
        .filter_map(|node| {
            let expected = match node.parent_id {
                None => format!("/{}/", node.id),
                Some(parent) => match by_id.get(&parent) {
                    Some(parent) => format!("{}{}/", parent.path, node.id),
                    None => {
                        return Some(format!(
                            "node {} hangs under {parent}, which is not a live node",
                            node.id
                        ));
                    }
                },
            };
            (node.path != expected).then(|| {
                format!(
                    "node {} has the path {} instead of {expected}",
                    node.id, node.path
                )
            })
        })
        .collect())
}

/// A reseller's or the owner's usage counter must equal the sum of its children's.
fn rollups(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    use std::collections::BTreeMap;
    let nodes = nodes::all(conn)?;
    let mut stored: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (node, resource, used) in usage::all(conn)? {
        stored.insert((node, resource), used);
    }
    let mut children_sum: BTreeMap<(String, String), i64> = BTreeMap::new();
    for node in &nodes {
        let Some(parent) = node.parent_id else {
            continue;
        };
        for ((owner, resource), used) in stored.range((node.id.to_string(), String::new())..) {
            if *owner != node.id.to_string() {
                break;
            }
            *children_sum
                .entry((parent.to_string(), resource.clone()))
                .or_default() += used;
        }
    }
    let mut findings = Vec::new();
    for node in nodes.iter().filter(|n| n.kind != NodeKind::Customer) {
        let id = node.id.to_string();
        let resources: std::collections::BTreeSet<&String> = stored
            .keys()
            .chain(children_sum.keys())
            .filter(|(owner, _)| *owner == id)
            .map(|(_, resource)| resource)
            .collect();
        for resource in resources {
            let key = (id.clone(), resource.clone());
            let (kept, summed) = (
                stored.get(&key).copied().unwrap_or(0),
                children_sum.get(&key).copied().unwrap_or(0),
            );
            if kept != summed {
                findings.push(format!(
                    "node {id} counts {kept} {resource} in use, but its children count {summed}"
                ));
            }
        }
    }
    for ((node, resource), used) in stored.iter().filter(|(_, used)| **used < 0) {
        findings.push(format!("node {node} counts {used} {resource} in use"));
    }
    Ok(findings)
}
