//! Allocations: grants of a resource to a node from its parent (or, for the owner's bulk licence,
//! from nobody), over a span of days. Never deleted; ending one is an update.

use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::schema::allocations;
use super::{DbConnection, corrupt};
use crate::domain::ids::{AllocationId, NodeId};
use crate::domain::quota::{Grant, GrantRecord, Span};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub id: AllocationId,
    pub node_id: NodeId,
    pub grantor_id: Option<NodeId>,
    pub resource: String,
    pub amount: i64,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub active: bool,
    pub description: Option<String>,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Allocation {
    pub fn grant(&self) -> Grant {
        Grant {
            amount: self.amount,
            span: Span {
                start: self.starts_on,
                end: self.ends_on,
            },
        }
    }

    /// The grant as the arithmetic counts it: only while active.
    pub fn counted(&self) -> Option<Grant> {
        self.active.then(|| self.grant())
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = allocations)]
struct AllocationRow {
    id: String,
    node_id: String,
    grantor_id: Option<String>,
    resource: String,
    amount: i64,
    starts_on: NaiveDate,
    ends_on: Option<NaiveDate>,
    active: bool,
    description: Option<String>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<AllocationRow> for Allocation {
    type Error = diesel::result::Error;
    fn try_from(row: AllocationRow) -> Result<Self, Self::Error> {
        Ok(Allocation {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            grantor_id: row
                .grantor_id
                .map(|g| g.parse())
                .transpose()
                .map_err(corrupt)?,
            resource: row.resource,
            amount: row.amount,
            starts_on: row.starts_on,
            ends_on: row.ends_on,
            active: row.active,
            description: row.description,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn load(
    query: allocations::BoxedQuery<'_, super::DbBackend>,
    conn: &mut DbConnection,
) -> QueryResult<Vec<Allocation>> {
    query
        .select(AllocationRow::as_select())
        .load(conn)?
        .into_iter()
        .map(Allocation::try_from)
        .collect()
}

pub(crate) fn find(conn: &mut DbConnection, id: AllocationId) -> QueryResult<Option<Allocation>> {
    Ok(load(
        allocations::table
            .filter(allocations::id.eq(id.to_string()))
            .into_boxed(),
        conn,
    )?
    .pop())
}

/// What a new allocation is made of, already validated.
#[derive(Debug, Clone)]
pub(crate) struct NewAllocation {
    pub node_id: NodeId,
    pub grantor_id: Option<NodeId>,
    pub resource: String,
    pub amount: i64,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
    pub active: bool,
    pub description: Option<String>,
}

pub(crate) fn insert(conn: &mut DbConnection, new: NewAllocation) -> QueryResult<Allocation> {
    let id = AllocationId::generate();
    let now = super::now();
    diesel::insert_into(allocations::table)
        .values((
            allocations::id.eq(id.to_string()),
            allocations::node_id.eq(new.node_id.to_string()),
            allocations::grantor_id.eq(new.grantor_id.map(|g| g.to_string())),
            allocations::resource.eq(&new.resource),
            allocations::amount.eq(new.amount),
            allocations::starts_on.eq(new.starts_on),
            allocations::ends_on.eq(new.ends_on),
            allocations::active.eq(new.active),
            allocations::description.eq(&new.description),
            allocations::version.eq(1_i64),
            allocations::created_at.eq(now),
            allocations::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(Allocation {
        id,
        node_id: new.node_id,
        grantor_id: new.grantor_id,
        resource: new.resource,
        amount: new.amount,
        starts_on: new.starts_on,
        ends_on: new.ends_on,
        active: new.active,
        description: new.description,
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

/// Writes `allocation`'s mutable fields, bumping its version.
pub(crate) fn save(conn: &mut DbConnection, allocation: &mut Allocation) -> QueryResult<()> {
    allocation.version += 1;
    allocation.updated_at = super::now();
    diesel::update(allocations::table.find(allocation.id.to_string()))
        .set((
            allocations::amount.eq(allocation.amount),
            allocations::starts_on.eq(allocation.starts_on),
            allocations::ends_on.eq(allocation.ends_on),
            allocations::active.eq(allocation.active),
            allocations::description.eq(&allocation.description),
            allocations::version.eq(allocation.version),
            allocations::updated_at.eq(allocation.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Whose grants: the ones a node received (its limit) or the ones it made (what it allocated).
enum Side {
    To(NodeId),
    By(NodeId),
}

fn active_grants(
    conn: &mut DbConnection,
    side: Side,
    resource: &str,
    except: Option<AllocationId>,
) -> QueryResult<Vec<Grant>> {
    let mut query = allocations::table
        .filter(allocations::resource.eq(resource))
        .filter(allocations::active.eq(true))
        .into_boxed();
    query = match side {
        Side::To(node) => query.filter(allocations::node_id.eq(node.to_string())),
        Side::By(grantor) => query.filter(allocations::grantor_id.eq(grantor.to_string())),
    };
    if let Some(except) = except {
        query = query.filter(allocations::id.ne(except.to_string()));
    }
    Ok(load(query, conn)?.iter().map(Allocation::grant).collect())
}

/// The active grants to `node` of `resource` (its limit), except `except`.
pub(crate) fn limit_of(
    conn: &mut DbConnection,
    node: NodeId,
    resource: &str,
    except: Option<AllocationId>,
) -> QueryResult<Vec<Grant>> {
    active_grants(conn, Side::To(node), resource, except)
}

/// The active grants `grantor` made of `resource`, except `except`.
pub(crate) fn granted_by(
    conn: &mut DbConnection,
    grantor: NodeId,
    resource: &str,
    except: Option<AllocationId>,
) -> QueryResult<Vec<Grant>> {
    active_grants(conn, Side::By(grantor), resource, except)
}

/// Filters for listing a node's allocations.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllocationFilter {
    pub resource: Option<String>,
    pub active: Option<bool>,
    pub valid_on: Option<NaiveDate>,
}

/// The allocations to `node` in id (creation) order after the cursor, at most `limit`.
pub(crate) fn list_for_node(
    conn: &mut DbConnection,
    node: NodeId,
    filter: &AllocationFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Allocation>> {
    let mut query = allocations::table
        .filter(allocations::node_id.eq(node.to_string()))
        .order(allocations::id)
        .limit(limit)
        .into_boxed();
    if let Some(resource) = &filter.resource {
        query = query.filter(allocations::resource.eq(resource.clone()));
    }
    if let Some(active) = filter.active {
        query = query.filter(allocations::active.eq(active));
    }
    if let Some(day) = filter.valid_on {
        query = query.filter(allocations::starts_on.le(day)).filter(
            allocations::ends_on
                .is_null()
                .or(allocations::ends_on.gt(day)),
        );
    }
    if let Some(after) = after {
        query = query.filter(allocations::id.gt(after.to_owned()));
    }
    load(query, conn)
}

/// The allocations to `node` that are active and not over before `day` (live on or after it).
pub(crate) fn live_to(
    conn: &mut DbConnection,
    node: NodeId,
    day: NaiveDate,
) -> QueryResult<Vec<Allocation>> {
    load(
        allocations::table
            .filter(allocations::node_id.eq(node.to_string()))
            .filter(allocations::active.eq(true))
            .filter(
                allocations::ends_on
                    .is_null()
                    .or(allocations::ends_on.gt(day)),
            )
            .into_boxed(),
        conn,
    )
}

/// Whether `grantor` has any grant to a child that is active and not over before `day`.
pub(crate) fn has_live_grants_by(
    conn: &mut DbConnection,
    grantor: NodeId,
    day: NaiveDate,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        allocations::table
            .filter(allocations::grantor_id.eq(grantor.to_string()))
            .filter(allocations::active.eq(true))
            .filter(
                allocations::ends_on
                    .is_null()
                    .or(allocations::ends_on.gt(day)),
            ),
    ))
    .get_result(conn)
}

/// Limits and allocated totals on `day` of each of `nodes`, per resource: (node, resource) →
/// (limit, allocated), absent where both are 0. Two grouped queries per 500 nodes, however many
/// nodes and resources.
pub(crate) fn totals_on(
    conn: &mut DbConnection,
    nodes: &[NodeId],
    day: NaiveDate,
) -> QueryResult<BTreeMap<(String, String), (i64, i64)>> {
    let covering = allocations::active
        .eq(true)
        .and(allocations::starts_on.le(day))
        .and(
            allocations::ends_on
                .is_null()
                .or(allocations::ends_on.gt(day)),
        );
    let mut totals: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for chunk in super::id_chunks(nodes) {
        let limits: Vec<(String, String, Option<i64>)> = allocations::table
            .filter(allocations::node_id.eq_any(&chunk))
            .filter(covering)
            .group_by((allocations::node_id, allocations::resource))
            .select((allocations::node_id, allocations::resource, sum_amount()))
            .load(conn)?;
        let allocated: Vec<(Option<String>, String, Option<i64>)> = allocations::table
            .filter(allocations::grantor_id.eq_any(&chunk))
            .filter(covering)
            .group_by((allocations::grantor_id, allocations::resource))
            .select((allocations::grantor_id, allocations::resource, sum_amount()))
            .load(conn)?;
        for (node, resource, sum) in limits {
            totals.entry((node, resource)).or_default().0 = sum.unwrap_or(0);
        }
        for (grantor, resource, sum) in allocated {
            if let Some(grantor) = grantor {
                totals.entry((grantor, resource)).or_default().1 = sum.unwrap_or(0);
            }
        }
    }
    Ok(totals)
}

/// Every node's limit of each resource on `day`: (node, resource) → the sum of its grants
/// covering the day, for the usage history.
pub(crate) fn limits_on(
    conn: &mut DbConnection,
    day: NaiveDate,
) -> QueryResult<std::collections::HashMap<(String, String), i64>> {
    let rows: Vec<(String, String, Option<i64>)> = allocations::table
        .filter(allocations::active.eq(true))
        .filter(allocations::starts_on.le(day))
        .filter(
            allocations::ends_on
                .is_null()
                .or(allocations::ends_on.gt(day)),
        )
        .group_by((allocations::node_id, allocations::resource))
        .select((allocations::node_id, allocations::resource, sum_amount()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(node, resource, sum)| ((node, resource), sum.unwrap_or(0)))
        .collect())
}

/// The (node, resource) pairs whose limit moves on a day after `after` up to `through`: an active
/// allocation starting or ending then. One ended early ends on the day of that change, which
/// judged it already; judging it again finds nothing new.
pub(crate) fn limits_moving(
    conn: &mut DbConnection,
    after: NaiveDate,
    through: NaiveDate,
) -> QueryResult<Vec<(NodeId, String)>> {
    let rows: Vec<(String, String)> = allocations::table
        .filter(allocations::active.eq(true))
        .filter(
            allocations::starts_on
                .gt(after)
                .and(allocations::starts_on.le(through))
                .or(allocations::ends_on
                    .assume_not_null()
                    .gt(after)
                    .and(allocations::ends_on.assume_not_null().le(through))),
        )
        .select((allocations::node_id, allocations::resource))
        .distinct()
        .load(conn)?;
    rows.into_iter()
        .map(|(node, resource)| Ok((node.parse().map_err(corrupt)?, resource)))
        .collect()
}

/// `SUM(amount)` as a BIGINT: PostgreSQL sums bigints into numeric, which the two-backend
/// connection cannot read, and SQLite's sum is an integer already.
fn sum_amount()
-> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::BigInt>> {
    diesel::dsl::sql("CAST(SUM(allocations.amount) AS BIGINT)")
}

/// Every active grant, for the verifier. Grants to deleted nodes count too: they were ended at
/// the deletion, and until then they were part of what their grantor had allocated.
pub(crate) fn all_active(conn: &mut DbConnection) -> QueryResult<Vec<GrantRecord>> {
    let rows = load(
        allocations::table
            .filter(allocations::active.eq(true))
            .into_boxed(),
        conn,
    )?;
    Ok(rows
        .into_iter()
        .map(|a| GrantRecord {
            node: a.node_id,
            grantor: a.grantor_id,
            grant: a.grant(),
            resource: a.resource,
        })
        .collect())
}

/// Ends a live allocation as of `today`: one that has begun stops counting from today on, one that
/// has not begun yet is deactivated. Returns the allocation as it was before.
pub(crate) fn end(
    conn: &mut DbConnection,
    allocation: &mut Allocation,
    today: NaiveDate,
) -> QueryResult<Allocation> {
    let before = allocation.clone();
    if allocation.starts_on >= today {
        allocation.active = false;
    } else {
        allocation.ends_on = Some(today);
    }
    save(conn, allocation)?;
    Ok(before)
}

/// The resources `grantor` has ever granted while active.
pub(crate) fn granted_resources(
    conn: &mut DbConnection,
    grantor: NodeId,
) -> QueryResult<Vec<String>> {
    allocations::table
        .filter(allocations::grantor_id.eq(grantor.to_string()))
        .filter(allocations::active.eq(true))
        .select(allocations::resource)
        .distinct()
        .load(conn)
}
