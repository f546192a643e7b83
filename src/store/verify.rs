//! `allot verify`: recomputes every invariant from the raw tables and reports each violation.
//! The write paths keep the invariant; this is the independent check that they did.

use diesel::QueryResult;

use super::{DbConnection, allocations, nodes};
use crate::domain::quota;

/// Every violation found, as a sentence for an operator.
pub fn run(conn: &mut DbConnection, today: chrono::NaiveDate) -> QueryResult<Vec<String>> {
    let grants = allocations::all_active(conn)?;
    let mut findings: Vec<String> = quota::verify(&grants)
        .iter()
        .map(ToString::to_string)
        .collect();

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
    Ok(findings)
}
