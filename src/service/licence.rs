//! The owner's bulk licence, the root of every limit in the tree: its current lines, and replacing
//! it, whether an owner admin asks (`PUT /v1/licence`, [`replace`]) or the operator does on the
//! command line (`allot licence set`, [`replace_as_system`]).

use chrono::NaiveDate;

use super::Ctx;
use super::allocations::{end_recorded, insert_recorded, known_resource};
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::quota::{self, Span};
use crate::error::{ApiError, FieldError};
use crate::store::DbConnection;
use crate::store::allocations::{self, Allocation, NewAllocation};
use crate::store::nodes::{self, Node};

/// One line of a licence as asked for.
#[derive(Debug, Clone)]
pub struct LicenceLine {
    /// `users`, `domains` or `module:<code>`.
    pub resource: String,
    pub amount: i64,
    /// Default today (UTC).
    pub starts_on: Option<NaiveDate>,
    /// Absent for open-ended.
    pub ends_on: Option<NaiveDate>,
}

/// A line checked: its resource's key, amount, first day and end.
struct Line {
    resource: String,
    amount: i64,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
}

/// The licence lines that count `today` or later, for the command line: 404 (`NotFound`) while
/// the database has no owner.
pub fn current_lines(
    conn: &mut DbConnection,
    today: NaiveDate,
) -> Result<Vec<Allocation>, ApiError> {
    let owner = nodes::owner(conn)?.ok_or(ApiError::NotFound)?;
    current(conn, owner.id, today)
}

/// The licence lines of `owner` that count `today` or later.
pub(crate) fn current(
    conn: &mut DbConnection,
    owner: NodeId,
    today: NaiveDate,
) -> Result<Vec<Allocation>, ApiError> {
    Ok(allocations::live_to(conn, owner, today)?
        .into_iter()
        .filter(|a| a.grantor_id.is_none())
        .collect())
}

/// Replaces the licence of `owner` (the owner node, locked, as `api::common::owner_admin` lets an
/// owner admin through) from `ctx.today` on; returns the lines that count from then. See
/// [`replace_at`].
pub(crate) fn replace(
    conn: &mut DbConnection,
    owner: &Authorised<Administer>,
    ctx: &Ctx<'_>,
    lines: &[LicenceLine],
) -> Result<Vec<Allocation>, ApiError> {
    replace_at(conn, owner, ctx, lines)
}

/// [`replace`] as the system, for the command line: no principal acts, so no guard stands before
/// it; the operator's access to the database is the authority. 404 (`NotFound`) while the database
/// has no owner.
pub fn replace_as_system(
    conn: &mut DbConnection,
    today: NaiveDate,
    lines: &[LicenceLine],
) -> Result<Vec<Allocation>, ApiError> {
    let owner = nodes::owner(conn)?.ok_or(ApiError::NotFound)?;
    nodes::lock(conn, &[owner.id])?;
    replace_at(conn, &owner, &Ctx::system(today), lines)
}

/// Replaces the owner's licence from `ctx.today` on: current lines end today (or, not begun yet,
/// are deactivated), the given ones begin. Refused if the owner has allocated more than the new
/// licence grants on any day. Runs in the caller's write transaction, the owner locked.
fn replace_at(
    conn: &mut DbConnection,
    owner: &Node,
    ctx: &Ctx<'_>,
    lines: &[LicenceLine],
) -> Result<Vec<Allocation>, ApiError> {
    let today = ctx.today;
    let parsed = parse(conn, lines, today)?;
    // Each resource's new lines replace its old ones from the earliest new start (today at the
    // latest): the old lines end there, so no day is counted twice. A resource left out ends today.
    let first_day = NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(today);
    for mut line in current(conn, owner.id, first_day)? {
        let cut = parsed
            .iter()
            .filter(|new| new.resource == line.resource)
            .map(|new| new.starts_on)
            .min()
            .map_or(today, |earliest| earliest.min(today));
        if line.ends_on.is_some_and(|end| end <= cut) {
            continue;
        }
        end_recorded(conn, ctx, owner.id, Action::LicenceEnd, &mut line, cut)?;
    }
    for line in parsed {
        let new = NewAllocation {
            node_id: owner.id,
            grantor_id: None,
            resource: line.resource,
            amount: line.amount,
            starts_on: line.starts_on,
            ends_on: line.ends_on,
            active: true,
            description: Some("licence".to_owned()),
        };
        insert_recorded(conn, ctx, owner.id, Action::LicenceCreate, new)?;
    }
    let mut resources = allocations::granted_resources(conn, owner.id)?;
    resources.sort();
    for resource in resources {
        quota::decide_licence(
            owner.id,
            &resource,
            &allocations::limit_of(conn, owner.id, &resource, None)?,
            &allocations::granted_by(conn, owner.id, &resource, None)?,
            Span::from(NaiveDate::MIN),
        )?;
        super::seats::limit_changed(conn, ctx, owner, &resource)?;
    }
    current(conn, owner.id, today)
}

/// The lines checked, every fault listed under `resources[i].<field>`.
fn parse(
    conn: &mut DbConnection,
    lines: &[LicenceLine],
    today: NaiveDate,
) -> Result<Vec<Line>, ApiError> {
    let mut errors = Vec::new();
    let mut parsed: Vec<Line> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let starts_on = line.starts_on.unwrap_or(today);
        let field = |name: &str| format!("resources[{i}].{name}");
        match known_resource(conn, &line.resource) {
            Ok(resource) => {
                if parsed.iter().any(|p| p.resource == resource.key()) {
                    errors.push(FieldError::new(field("resource"), "is listed twice"));
                }
                parsed.push(Line {
                    resource: resource.key(),
                    amount: line.amount,
                    starts_on,
                    ends_on: line.ends_on,
                });
            }
            Err(ApiError::Validation(mut e)) => {
                e.iter_mut().for_each(|e| e.field = field("resource"));
                errors.append(&mut e);
            }
            Err(other) => return Err(other),
        }
        if let Err(message) = quota::check_amount(line.amount) {
            errors.push(FieldError::new(field("amount"), message));
        }
        for (name, message) in quota::span_faults(starts_on, line.ends_on) {
            errors.push(FieldError::new(field(name), message));
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(ApiError::Validation(errors))
    }
}
