//! Plans (issue 16): the plans nodes define, every content version of each, the plan each customer
//! is on, and the allocations a plan granted it. Written by the plan workflows
//! (`service::plans`) only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::schema::{node_plans, nodes, plan_grants, plan_versions, plans};
use super::{DbConnection, corrupt};
use crate::domain::ids::{AllocationId, NodeId, PlanId};
use crate::domain::plans::{Content, PlanSettings};

/// A plan as stored: what is not content (its content is its versions').
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: PlanId,
    /// The node that defined it: it is visible to that node's subtree.
    pub node_id: NodeId,
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub retired: bool,
    /// The number of its current content version.
    pub current_version: i64,
    /// Raised by every change (the `ETag`).
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = plans)]
struct PlanRow {
    id: String,
    node_id: String,
    code: String,
    name: String,
    description: Option<String>,
    retired: bool,
    current_version: i64,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<PlanRow> for Plan {
    type Error = diesel::result::Error;
    fn try_from(row: PlanRow) -> Result<Self, Self::Error> {
        Ok(Plan {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            code: row.code,
            name: row.name,
            description: row.description,
            retired: row.retired,
            current_version: row.current_version,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// One content version of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVersion {
    pub plan_id: PlanId,
    pub number: i64,
    pub content: Content,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = plan_versions)]
struct VersionRow {
    plan_id: String,
    number: i64,
    resources: String,
    modules: String,
    max_aliases_per_mailbox: Option<i32>,
    auto_enrol: Option<bool>,
    inbound_recipients: Option<String>,
    term_months: Option<i32>,
    created_at: NaiveDateTime,
}

impl TryFrom<VersionRow> for PlanVersion {
    type Error = diesel::result::Error;
    fn try_from(row: VersionRow) -> Result<Self, Self::Error> {
        let resources: BTreeMap<String, i64> =
            serde_json::from_str(&row.resources).map_err(corrupt)?;
        let modules: BTreeSet<String> = serde_json::from_str(&row.modules).map_err(corrupt)?;
        Ok(PlanVersion {
            plan_id: row.plan_id.parse().map_err(corrupt)?,
            number: row.number,
            content: Content {
                resources,
                modules,
                settings: PlanSettings {
                    max_aliases_per_mailbox: row.max_aliases_per_mailbox,
                    auto_enrol: row.auto_enrol,
                    inbound_recipients: row
                        .inbound_recipients
                        .map(|r| r.parse())
                        .transpose()
                        .map_err(corrupt)?,
                },
                term_months: row.term_months,
            },
            created_at: row.created_at,
        })
    }
}

/// What a new plan is made of, already validated.
#[derive(Debug, Clone)]
pub(crate) struct NewPlan {
    pub node_id: NodeId,
    pub code: String,
    pub name: String,
    pub description: Option<String>,
}

/// Inserts a plan with its first version. A code the defining node has already is refused by the
/// unique index (the caller maps it).
pub(crate) fn insert(
    conn: &mut DbConnection,
    new: NewPlan,
    content: &Content,
) -> QueryResult<(Plan, PlanVersion)> {
    let id = PlanId::generate();
    let now = super::now();
    diesel::insert_into(plans::table)
        .values((
            plans::id.eq(id.to_string()),
            plans::node_id.eq(new.node_id.to_string()),
            plans::code.eq(&new.code),
            plans::name.eq(&new.name),
            plans::description.eq(&new.description),
            plans::retired.eq(false),
            plans::current_version.eq(1_i64),
            plans::version.eq(1_i64),
            plans::created_at.eq(now),
            plans::updated_at.eq(now),
        ))
        .execute(conn)?;
    let version = add_version(conn, id, 1, content)?;
    let plan = find(conn, id)?.ok_or(diesel::result::Error::NotFound)?;
    Ok((plan, version))
}

/// Appends version `number` of plan `id` with `content`.
pub(crate) fn add_version(
    conn: &mut DbConnection,
    id: PlanId,
    number: i64,
    content: &Content,
) -> QueryResult<PlanVersion> {
    let now = super::now();
    let json = |value: serde_json::Result<String>| value.map_err(corrupt);
    diesel::insert_into(plan_versions::table)
        .values((
            plan_versions::plan_id.eq(id.to_string()),
            plan_versions::number.eq(number),
            plan_versions::resources.eq(json(serde_json::to_string(&content.resources))?),
            plan_versions::modules.eq(json(serde_json::to_string(&content.modules))?),
            plan_versions::max_aliases_per_mailbox.eq(content.settings.max_aliases_per_mailbox),
            plan_versions::auto_enrol.eq(content.settings.auto_enrol),
            plan_versions::inbound_recipients
                .eq(content.settings.inbound_recipients.map(|r| r.as_str())),
            plan_versions::term_months.eq(content.term_months),
            plan_versions::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(PlanVersion {
        plan_id: id,
        number,
        content: content.clone(),
        created_at: now,
    })
}

pub(crate) fn find(conn: &mut DbConnection, id: PlanId) -> QueryResult<Option<Plan>> {
    plans::table
        .find(id.to_string())
        .select(PlanRow::as_select())
        .first(conn)
        .optional()?
        .map(Plan::try_from)
        .transpose()
}

/// Locks plan `id`'s row until the transaction ends: shared by an application (which relies on
/// the plan staying as read), exclusive by a change or a deletion. PostgreSQL only; on SQLite the
/// `BEGIN IMMEDIATE` write transaction already excludes every other writer.
pub(crate) fn lock(conn: &mut DbConnection, id: PlanId, exclusive: bool) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        let row = plans::table.find(id.to_string()).select(plans::id);
        if exclusive {
            row.for_update().load::<String>(pg)?;
        } else {
            row.for_share().load::<String>(pg)?;
        }
    }
    Ok(())
}

pub(crate) fn find_version(
    conn: &mut DbConnection,
    id: PlanId,
    number: i64,
) -> QueryResult<Option<PlanVersion>> {
    plan_versions::table
        .find((id.to_string(), number))
        .select(VersionRow::as_select())
        .first(conn)
        .optional()?
        .map(PlanVersion::try_from)
        .transpose()
}

/// Plan `id`'s versions in order, after number `after`, at most `limit`.
pub(crate) fn versions(
    conn: &mut DbConnection,
    id: PlanId,
    after: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<PlanVersion>> {
    let mut query = plan_versions::table
        .filter(plan_versions::plan_id.eq(id.to_string()))
        .order(plan_versions::number)
        .limit(limit)
        .select(VersionRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(plan_versions::number.gt(after));
    }
    query
        .load(conn)?
        .into_iter()
        .map(PlanVersion::try_from)
        .collect()
}

/// The plans defined by any of `definers`, in id (creation) order after the cursor `after`, at
/// most `limit`; retired ones only when asked for.
pub(crate) fn defined_by(
    conn: &mut DbConnection,
    definers: &[NodeId],
    with_retired: bool,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Plan>> {
    let definers: Vec<String> = definers.iter().map(ToString::to_string).collect();
    let mut query = plans::table
        .filter(plans::node_id.eq_any(definers))
        .order(plans::id)
        .limit(limit)
        .select(PlanRow::as_select())
        .into_boxed();
    if !with_retired {
        query = query.filter(plans::retired.eq(false));
    }
    if let Some(after) = after {
        query = query.filter(plans::id.gt(after.to_owned()));
    }
    query.load(conn)?.into_iter().map(Plan::try_from).collect()
}

/// Writes `plan`'s name, description, retirement and current version, raising its version.
pub(crate) fn save(conn: &mut DbConnection, plan: &mut Plan) -> QueryResult<()> {
    plan.version += 1;
    plan.updated_at = super::now();
    diesel::update(plans::table.find(plan.id.to_string()))
        .set((
            plans::name.eq(&plan.name),
            plans::description.eq(&plan.description),
            plans::retired.eq(plan.retired),
            plans::current_version.eq(plan.current_version),
            plans::version.eq(plan.version),
            plans::updated_at.eq(plan.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes plan `id` with its versions (the caller made sure no customer is on it).
pub(crate) fn delete(conn: &mut DbConnection, id: PlanId) -> QueryResult<()> {
    diesel::delete(plan_versions::table.filter(plan_versions::plan_id.eq(id.to_string())))
        .execute(conn)?;
    diesel::delete(plans::table.find(id.to_string())).execute(conn)?;
    Ok(())
}

/// How many live customers are on plan `id`, any version.
pub(crate) fn customers_on(conn: &mut DbConnection, id: PlanId) -> QueryResult<i64> {
    node_plans::table
        .inner_join(nodes::table.on(nodes::id.eq(node_plans::node_id)))
        .filter(node_plans::plan_id.eq(id.to_string()))
        .filter(nodes::deleted_at.is_null())
        .count()
        .get_result(conn)
}

/// The plan a customer is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlan {
    pub node_id: NodeId,
    pub plan_id: PlanId,
    pub plan_version: i64,
    pub starts_on: NaiveDate,
    pub applied_at: NaiveDateTime,
}

type NodePlanRow = (String, String, i64, NaiveDate, NaiveDateTime);

fn node_plan(row: NodePlanRow) -> QueryResult<NodePlan> {
    Ok(NodePlan {
        node_id: row.0.parse().map_err(corrupt)?,
        plan_id: row.1.parse().map_err(corrupt)?,
        plan_version: row.2,
        starts_on: row.3,
        applied_at: row.4,
    })
}

const NODE_PLAN_COLUMNS: (
    node_plans::node_id,
    node_plans::plan_id,
    node_plans::plan_version,
    node_plans::starts_on,
    node_plans::applied_at,
) = (
    node_plans::node_id,
    node_plans::plan_id,
    node_plans::plan_version,
    node_plans::starts_on,
    node_plans::applied_at,
);

/// The plan `node` is on, if any.
pub(crate) fn of_node(conn: &mut DbConnection, node: NodeId) -> QueryResult<Option<NodePlan>> {
    node_plans::table
        .find(node.to_string())
        .select(NODE_PLAN_COLUMNS)
        .first::<NodePlanRow>(conn)
        .optional()?
        .map(node_plan)
        .transpose()
}

/// What each of `nodes` is on (those on a plan): node → (plan, its code, the version).
pub(crate) fn of_nodes(
    conn: &mut DbConnection,
    ids: &[NodeId],
) -> QueryResult<HashMap<NodeId, (PlanId, String, i64)>> {
    let mut found = HashMap::new();
    for chunk in super::id_chunks(ids) {
        let rows: Vec<(String, String, String, i64)> = node_plans::table
            .inner_join(plans::table)
            .filter(node_plans::node_id.eq_any(&chunk))
            .select((
                node_plans::node_id,
                node_plans::plan_id,
                plans::code,
                node_plans::plan_version,
            ))
            .load(conn)?;
        for (node, plan, code, version) in rows {
            found.insert(
                node.parse().map_err(corrupt)?,
                (plan.parse().map_err(corrupt)?, code, version),
            );
        }
    }
    Ok(found)
}

/// Puts `node` on `plan` at `version` from `starts_on`, replacing what it was on.
pub(crate) fn put_node(
    conn: &mut DbConnection,
    node: NodeId,
    plan: PlanId,
    version: i64,
    starts_on: NaiveDate,
) -> QueryResult<NodePlan> {
    remove_node(conn, node)?;
    let now = super::now();
    diesel::insert_into(node_plans::table)
        .values((
            node_plans::node_id.eq(node.to_string()),
            node_plans::plan_id.eq(plan.to_string()),
            node_plans::plan_version.eq(version),
            node_plans::starts_on.eq(starts_on),
            node_plans::applied_at.eq(now),
        ))
        .execute(conn)?;
    Ok(NodePlan {
        node_id: node,
        plan_id: plan,
        plan_version: version,
        starts_on,
        applied_at: now,
    })
}

/// Takes `node` off its plan (and forgets the grants it made).
pub(crate) fn remove_node(conn: &mut DbConnection, node: NodeId) -> QueryResult<()> {
    diesel::delete(node_plans::table.find(node.to_string())).execute(conn)?;
    diesel::delete(plan_grants::table.filter(plan_grants::node_id.eq(node.to_string())))
        .execute(conn)?;
    Ok(())
}

/// The live customers strictly below the node with path `below`, on plan `id` at a version
/// older than `current`, in id order.
pub(crate) fn behind(
    conn: &mut DbConnection,
    id: PlanId,
    current: i64,
    below: &str,
) -> QueryResult<Vec<(NodeId, i64)>> {
    let (low, high) = super::nodes::subtree_range(below);
    let rows: Vec<(String, i64)> = node_plans::table
        .inner_join(nodes::table.on(nodes::id.eq(node_plans::node_id)))
        .filter(node_plans::plan_id.eq(id.to_string()))
        .filter(node_plans::plan_version.lt(current))
        .filter(nodes::deleted_at.is_null())
        .filter(nodes::path.ge(low))
        .filter(nodes::path.lt(high))
        .filter(nodes::path.ne(below.to_owned()))
        .order(node_plans::node_id)
        .select((node_plans::node_id, node_plans::plan_version))
        .load(conn)?;
    rows.into_iter()
        .map(|(node, version)| Ok((node.parse().map_err(corrupt)?, version)))
        .collect()
}

/// The allocations `node`'s plan granted it.
pub(crate) fn grants_of(conn: &mut DbConnection, node: NodeId) -> QueryResult<Vec<AllocationId>> {
    plan_grants::table
        .filter(plan_grants::node_id.eq(node.to_string()))
        .order(plan_grants::allocation_id)
        .select(plan_grants::allocation_id)
        .load::<String>(conn)?
        .into_iter()
        .map(|id| id.parse().map_err(corrupt))
        .collect()
}

/// Records `allocations` as granted to `node` by its plan.
pub(crate) fn add_grants(
    conn: &mut DbConnection,
    node: NodeId,
    allocations: &[AllocationId],
) -> QueryResult<()> {
    for id in allocations {
        diesel::insert_into(plan_grants::table)
            .values((
                plan_grants::allocation_id.eq(id.to_string()),
                plan_grants::node_id.eq(node.to_string()),
            ))
            .execute(conn)?;
    }
    Ok(())
}
