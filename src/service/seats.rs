//! Seats: units of a customer's resources (`users`, `domains`, `module:<code>`) taken as
//! something starts to use them. The seat rule is [`Standing::take`](crate::domain::quota::Standing::take)'s; this module reads each
//! standing from the store, asks it, and counts the units up the customer's lineage only when
//! every one is admitted, in the caller's write transaction, under the customer's lock.
//!
//! Every seat-taking path comes here (a mailbox create, an enrolment by the check, enabling a
//! mailbox, assigning a module; an import holds the same [`Bundle`](crate::domain::quota::Bundle)
//! in memory for its rows), and here each unit is judged at the customer and at every ancestor
//! under the lineage's counter locks ([`usage::bundle`]): the use invariant of issue 16.

use chrono::NaiveDate;
use diesel::QueryResult;

use crate::domain::quota::Refusal;
use crate::store::nodes::Node;
use crate::store::{DbConnection, usage};

/// Takes one unit of `resource` for customer `node` on `today`, if its limit leaves one free.
pub(crate) fn take(
    conn: &mut DbConnection,
    node: &Node,
    resource: &str,
    today: NaiveDate,
) -> QueryResult<Result<(), Refusal>> {
    take_all(conn, node, &[resource], today)
}

/// Takes one unit of each of `resources` for customer `node` on `today`, or none: every limit is
/// checked (by [`Bundle::take_one`](crate::domain::quota::Bundle::take_one), the seat rule) before anything is counted, and the first that
/// has no unit free is the refusal.
pub(crate) fn take_all(
    conn: &mut DbConnection,
    node: &Node,
    resources: &[impl AsRef<str>],
    today: NaiveDate,
) -> QueryResult<Result<(), Refusal>> {
    let lineage = node.lineage();
    if let Err(refusal) = usage::bundle(conn, &lineage, resources, today)?.take_one() {
        return Ok(Err(refusal));
    }
    for resource in resources {
        usage::add(conn, &lineage, resource.as_ref(), 1, today)?;
    }
    Ok(Ok(()))
}
