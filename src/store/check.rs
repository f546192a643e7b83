//! What the check's in-memory index reads: the change feed that triggers fill (see the migration
//! `*_check`), and the rows the index holds, loaded whole at start or by id as changes name them.
//! Rows come back as they are stored; `check::index` turns them into its own compact entries.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{
    accounts, aliases, allocations, api_keys, changes, domains, mailboxes, modules, nodes,
    usage_counters,
};

/// One row of the change feed.
#[derive(Debug, Clone, Queryable)]
pub struct Change {
    pub seq: i64,
    pub kind: String,
    pub id: String,
    pub key: Option<String>,
}

/// The highest sequence number committed so far (0 on an empty feed).
pub fn last_seq(conn: &mut DbConnection) -> QueryResult<i64> {
    Ok(changes::table
        .select(diesel::dsl::max(changes::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// The lowest sequence number still kept, if any.
pub fn first_seq(conn: &mut DbConnection) -> QueryResult<Option<i64>> {
    changes::table
        .select(diesel::dsl::min(changes::seq))
        .first::<Option<i64>>(conn)
}

/// Changes with `low <= seq <= high` (`high` open when `None`), oldest first, at most `limit`.
pub fn changes_in(
    conn: &mut DbConnection,
    low: i64,
    high: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Change>> {
    let mut query = changes::table
        .filter(changes::seq.ge(low))
        .select((changes::seq, changes::kind, changes::id, changes::key))
        .order(changes::seq)
        .limit(limit)
        .into_boxed();
    if let Some(high) = high {
        query = query.filter(changes::seq.le(high));
    }
    query.load(conn)
}

/// Forgets changes recorded before `before`; every process has long applied them.
pub fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(changes::table.filter(changes::at.lt(before))).execute(conn)
}

/// Splits a list of ids into chunks a single `IN (…)` handles on both backends.
fn chunks(ids: &[String]) -> impl Iterator<Item = Vec<String>> + '_ {
    ids.chunks(500).map(<[String]>::to_vec)
}

/// A node as the check sees it; deleted nodes included (a deleted customer's rows may linger).
pub type NodeRow = (
    String,
    Option<String>,
    String,
    String,
    Option<NaiveDateTime>,
    bool,
);

/// Nodes by id, or every node when `ids` is `None`.
pub fn nodes(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<NodeRow>> {
    let select = (
        nodes::id,
        nodes::parent_id,
        nodes::kind,
        nodes::status,
        nodes::deleted_at,
        nodes::auto_enrol,
    );
    match ids {
        None => nodes::table.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    nodes::table
                        .filter(nodes::id.eq_any(chunk))
                        .select(select)
                        .load::<NodeRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// An active allocation: (node, resource, amount, starts_on, ends_on).
pub type GrantRow = (String, String, i64, NaiveDate, Option<NaiveDate>);

/// The active allocations to the given nodes, or to every node when `ids` is `None`.
pub fn grants(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<GrantRow>> {
    let select = (
        allocations::node_id,
        allocations::resource,
        allocations::amount,
        allocations::starts_on,
        allocations::ends_on,
    );
    let active = allocations::table.filter(allocations::active.eq(true));
    match ids {
        None => active.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    active
                        .filter(allocations::node_id.eq_any(chunk))
                        .select(select)
                        .load::<GrantRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// Usage counters: (node, resource, used).
pub type UsageRow = (String, String, i64);

pub fn usage(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<UsageRow>> {
    let select = (
        usage_counters::node_id,
        usage_counters::resource,
        usage_counters::used,
    );
    match ids {
        None => usage_counters::table.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    usage_counters::table
                        .filter(usage_counters::node_id.eq_any(chunk))
                        .select(select)
                        .load::<UsageRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// A domain: (id, node, name, status, verified_at).
pub type DomainRow = (String, String, String, String, Option<NaiveDateTime>);

pub fn domains(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<DomainRow>> {
    let select = (
        domains::id,
        domains::node_id,
        domains::name,
        domains::status,
        domains::verified_at,
    );
    match ids {
        None => domains::table.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    domains::table
                        .filter(domains::id.eq_any(chunk))
                        .select(select)
                        .load::<DomainRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// A mailbox: (id, node, address, status, origin).
pub type MailboxRow = (String, String, String, String, String);

pub fn mailboxes(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<MailboxRow>> {
    let select = (
        mailboxes::id,
        mailboxes::node_id,
        mailboxes::address,
        mailboxes::status,
        mailboxes::origin,
    );
    match ids {
        None => mailboxes::table.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    mailboxes::table
                        .filter(mailboxes::id.eq_any(chunk))
                        .select(select)
                        .load::<MailboxRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// An alias with its mailbox's address: (id, address, mailbox address).
pub type AliasRow = (String, String, String);

pub fn aliases(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<AliasRow>> {
    let select = (aliases::id, aliases::address, mailboxes::address);
    let joined = aliases::table.inner_join(mailboxes::table);
    match ids {
        None => joined.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    joined
                        .filter(aliases::id.eq_any(chunk))
                        .select(select)
                        .load::<AliasRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// An API key: (id, node, name, role, secret hash, expires_at, revoked_at, last_used_at).
pub type ApiKeyRow = (
    String,
    String,
    String,
    String,
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

pub fn api_keys(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<ApiKeyRow>> {
    let select = (
        api_keys::id,
        api_keys::node_id,
        api_keys::name,
        api_keys::role,
        api_keys::secret_hash,
        api_keys::expires_at,
        api_keys::revoked_at,
        api_keys::last_used_at,
    );
    match ids {
        None => api_keys::table.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    api_keys::table
                        .filter(api_keys::id.eq_any(chunk))
                        .select(select)
                        .load::<ApiKeyRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// An account: (id, node, username, role, disabled).
pub type AccountRow = (String, String, String, String, bool);

pub fn accounts(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<AccountRow>> {
    let select = (
        accounts::id,
        accounts::node_id,
        accounts::username,
        accounts::role,
        accounts::disabled,
    );
    match ids {
        None => accounts::table.select(select).load(conn),
        Some(ids) => {
            let mut rows = Vec::new();
            for chunk in chunks(ids) {
                rows.extend(
                    accounts::table
                        .filter(accounts::id.eq_any(chunk))
                        .select(select)
                        .load::<AccountRow>(conn)?,
                );
            }
            Ok(rows)
        }
    }
}

/// The codes of the modules in the catalogue that are not retired.
pub fn module_codes(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    modules::table
        .filter(modules::retired.eq(false))
        .select(modules::code)
        .load(conn)
}

/// Records when mailboxes were last seen by a check (and first seen, if never before). Not a
/// change of the mailbox: the version stays, and no change-feed trigger fires.
pub fn mark_seen(conn: &mut DbConnection, seen: &[(String, NaiveDateTime)]) -> QueryResult<()> {
    for (id, at) in seen {
        diesel::update(mailboxes::table.find(id))
            .set(mailboxes::last_seen_at.eq(at))
            .execute(conn)?;
        diesel::update(
            mailboxes::table
                .find(id)
                .filter(mailboxes::first_seen_at.is_null()),
        )
        .set(mailboxes::first_seen_at.eq(at))
        .execute(conn)?;
    }
    Ok(())
}

/// The mailbox an address belongs to, directly or as an alias: (id, status).
pub fn mailbox_at(conn: &mut DbConnection, address: &str) -> QueryResult<Option<(String, String)>> {
    let direct = mailboxes::table
        .filter(mailboxes::address.eq(address))
        .select((mailboxes::id, mailboxes::status))
        .first(conn)
        .optional()?;
    if direct.is_some() {
        return Ok(direct);
    }
    aliases::table
        .inner_join(mailboxes::table)
        .filter(aliases::address.eq(address))
        .select((mailboxes::id, mailboxes::status))
        .first(conn)
        .optional()
}
