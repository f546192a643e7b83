//! Customers' domains. A row is a customer's claim on a name: any number of customers may claim
//! one name while none has proven it; a verified row holds the name alone (a partial unique index,
//! `*_domain_claims`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{domains, nodes};
use super::{DbConnection, corrupt};
use crate::domain::address::DomainName;
use crate::domain::ids::{DomainId, NodeId};
use crate::domain::status::Status;

/// Where a domain's mail is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub port: u16,
    pub priority: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub id: DomainId,
    pub node_id: NodeId,
    pub name: DomainName,
    pub description: Option<String>,
    pub route: Option<Route>,
    pub active: bool,
    pub verification_token: String,
    pub verified_at: Option<NaiveDateTime>,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = domains)]
struct DomainRow {
    id: String,
    node_id: String,
    name: String,
    description: Option<String>,
    route_host: Option<String>,
    route_port: Option<i32>,
    route_priority: Option<i32>,
    status: String,
    verification_token: String,
    verified_at: Option<NaiveDateTime>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<DomainRow> for Domain {
    type Error = diesel::result::Error;
    fn try_from(row: DomainRow) -> Result<Self, Self::Error> {
        let route = match (row.route_host, row.route_port, row.route_priority) {
            (Some(host), Some(port), Some(priority)) => Some(Route {
                host,
                port: u16::try_from(port).map_err(corrupt)?,
                priority: u8::try_from(priority).map_err(corrupt)?,
            }),
            _ => None,
        };
        Ok(Domain {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            name: DomainName::from_stored(row.name),
            description: row.description,
            route,
            active: Status::is_active_text(&row.status),
            verification_token: row.verification_token,
            verified_at: row.verified_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(crate) fn find(conn: &mut DbConnection, id: DomainId) -> QueryResult<Option<Domain>> {
    domains::table
        .find(id.to_string())
        .select(DomainRow::as_select())
        .first(conn)
        .optional()?
        .map(Domain::try_from)
        .transpose()
}

pub(crate) fn insert(conn: &mut DbConnection, domain: &Domain) -> QueryResult<()> {
    let route = domain.route.as_ref();
    diesel::insert_into(domains::table)
        .values((
            domains::id.eq(domain.id.to_string()),
            domains::node_id.eq(domain.node_id.to_string()),
            domains::name.eq(domain.name.as_str()),
            domains::description.eq(&domain.description),
            domains::route_host.eq(route.map(|r| r.host.clone())),
            domains::route_port.eq(route.map(|r| i32::from(r.port))),
            domains::route_priority.eq(route.map(|r| i32::from(r.priority))),
            domains::status.eq(Status::of(domain.active).as_str()),
            domains::verification_token.eq(&domain.verification_token),
            domains::verified_at.eq(domain.verified_at),
            domains::version.eq(domain.version),
            domains::created_at.eq(domain.created_at),
            domains::updated_at.eq(domain.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Writes the mutable fields, bumping the version.
pub(crate) fn save(conn: &mut DbConnection, domain: &mut Domain) -> QueryResult<()> {
    domain.version += 1;
    domain.updated_at = super::now();
    let route = domain.route.as_ref();
    diesel::update(domains::table.find(domain.id.to_string()))
        .set((
            domains::description.eq(&domain.description),
            domains::route_host.eq(route.map(|r| r.host.clone())),
            domains::route_port.eq(route.map(|r| i32::from(r.port))),
            domains::route_priority.eq(route.map(|r| i32::from(r.priority))),
            domains::status.eq(Status::of(domain.active).as_str()),
            domains::verified_at.eq(domain.verified_at),
            domains::version.eq(domain.version),
            domains::updated_at.eq(domain.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn delete(conn: &mut DbConnection, id: DomainId) -> QueryResult<()> {
    diesel::delete(domains::table.find(id.to_string())).execute(conn)?;
    Ok(())
}

/// Every domain of one customer.
pub(crate) fn of_node(conn: &mut DbConnection, node: NodeId) -> QueryResult<Vec<Domain>> {
    oldest_first(
        conn,
        domains::table
            .filter(domains::node_id.eq(node.to_string()))
            .into_boxed(),
    )
}

/// The domains `query` selects, oldest first.
fn oldest_first(
    conn: &mut DbConnection,
    query: domains::BoxedQuery<'_, super::DbBackend>,
) -> QueryResult<Vec<Domain>> {
    query
        .select(DomainRow::as_select())
        .order(domains::id)
        .load(conn)?
        .into_iter()
        .map(Domain::try_from)
        .collect()
}

/// How many domains each customer holds, for the verifier.
pub(crate) fn counts(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    domains::table
        .group_by(domains::node_id)
        .select((domains::node_id, diesel::dsl::count_star()))
        .load(conn)
}

/// Every claim on `name` (the verified domain, if any, and the pending ones), oldest first.
pub(crate) fn claims(conn: &mut DbConnection, name: &DomainName) -> QueryResult<Vec<Domain>> {
    oldest_first(
        conn,
        domains::table
            .filter(domains::name.eq(name.as_str()))
            .into_boxed(),
    )
}

/// Up to `limit` unproven claims registered before `before`, oldest first: what has expired.
pub(crate) fn expired(
    conn: &mut DbConnection,
    before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Domain>> {
    domains::table
        .filter(domains::verified_at.is_null())
        .filter(domains::created_at.lt(before))
        .select(DomainRow::as_select())
        .order(domains::created_at)
        .limit(limit)
        .load(conn)?
        .into_iter()
        .map(Domain::try_from)
        .collect()
}

/// Filters for listing domains.
#[derive(Debug, Clone, Default)]
pub(crate) struct DomainFilter {
    pub active: Option<bool>,
    pub name_prefix: Option<String>,
}

/// The domains of the live subtree at `path`, in id order after the cursor.
pub(crate) fn list_in_subtree(
    conn: &mut DbConnection,
    path: &str,
    filter: &DomainFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Domain>> {
    let (low, high) = super::nodes::subtree_range(path);
    let mut query = domains::table
        .inner_join(nodes::table)
        .filter(nodes::path.ge(low))
        .filter(nodes::path.lt(high))
        .filter(nodes::deleted_at.is_null())
        .select(DomainRow::as_select())
        .order(domains::id)
        .limit(limit)
        .into_boxed();
    if let Some(active) = filter.active {
        query = query.filter(domains::status.eq(Status::of(active).as_str()));
    }
    if let Some(prefix) = &filter.name_prefix {
        query = query.filter(
            domains::name
                .like(super::nodes::like_prefix(prefix))
                .escape('\\'),
        );
    }
    if let Some(after) = after {
        query = query.filter(domains::id.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(Domain::try_from)
        .collect()
}
