//! What the check's in-memory index reads: the change feed that triggers fill (see the migration
//! `*_check`), and the rows the index holds, loaded whole at start or by id as changes name them.
//! Rows come back as they are stored; `check::index` turns them into its own compact entries.

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{
    accounts, aliases, allocations, api_keys, changes, domains, mailbox_modules, mailboxes,
    modules, node_modules, nodes, usage_counters,
};

/// One row of the change feed.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct Change {
    pub seq: i64,
    pub kind: String,
    pub id: String,
    pub key: Option<String>,
}

/// Rows of `$query` whose `$column` is one of `$ids`, or every row when `$ids` is `None`. Ids go in
/// chunks that a single `IN (…)` takes on both backends.
macro_rules! by_ids {
    ($conn:expr, $ids:expr, $query:expr, $column:expr) => {
        match $ids {
            None => $query.load($conn),
            Some(ids) => {
                let mut rows = Vec::new();
                for chunk in ids.chunks(500) {
                    rows.extend($query.filter($column.eq_any(chunk)).load($conn)?);
                }
                Ok(rows)
            }
        }
    };
}

/// The highest sequence number committed so far (0 on an empty feed).
pub(crate) fn last_seq(conn: &mut DbConnection) -> QueryResult<i64> {
    Ok(changes::table
        .select(diesel::dsl::max(changes::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// Changes with `low <= seq <= high` (`high` open when `None`), oldest first, at most `limit`.
pub(crate) fn changes_in(
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

/// The changes with these sequence numbers (the gaps a reader is still looking for).
pub(crate) fn changes_at(conn: &mut DbConnection, seqs: &[i64]) -> QueryResult<Vec<Change>> {
    by_ids!(
        conn,
        Some(seqs),
        changes::table.select((changes::seq, changes::kind, changes::id, changes::key)),
        changes::seq
    )
}

/// Forgets changes recorded before `before`; every process has long applied them.
pub(crate) fn prune(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(changes::table.filter(changes::at.lt(before))).execute(conn)
}

/// A node as the check sees it; deleted nodes included (a deleted customer's rows may linger).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = nodes)]
pub(crate) struct NodeRow {
    pub id: String,
    pub parent_id: Option<String>,
    pub status: String,
    pub deleted_at: Option<NaiveDateTime>,
    pub auto_enrol: bool,
    pub inbound_recipients: String,
    pub role_recipient: Option<String>,
    pub local_part_case: String,
}

/// Nodes by id, or every node when `ids` is `None`.
pub(crate) fn nodes(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<NodeRow>> {
    by_ids!(
        conn,
        ids,
        nodes::table.select(NodeRow::as_select()),
        nodes::id
    )
}

/// An active allocation.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct GrantRow {
    pub node_id: String,
    pub resource: String,
    pub amount: i64,
    pub starts_on: NaiveDate,
    pub ends_on: Option<NaiveDate>,
}

/// The active allocations to the given nodes, or to every node when `ids` is `None`.
pub(crate) fn grants(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
) -> QueryResult<Vec<GrantRow>> {
    let select = (
        allocations::node_id,
        allocations::resource,
        allocations::amount,
        allocations::starts_on,
        allocations::ends_on,
    );
    let active = allocations::table.filter(allocations::active.eq(true));
    by_ids!(conn, ids, active.select(select), allocations::node_id)
}

/// A usage counter.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct UsageRow {
    pub node_id: String,
    pub resource: String,
    pub used: i64,
}

pub(crate) fn usage(conn: &mut DbConnection, ids: Option<&[String]>) -> QueryResult<Vec<UsageRow>> {
    let select = (
        usage_counters::node_id,
        usage_counters::resource,
        usage_counters::used,
    );
    by_ids!(
        conn,
        ids,
        usage_counters::table.select(select),
        usage_counters::node_id
    )
}

/// A domain as the check sees it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = domains)]
pub(crate) struct DomainRow {
    pub id: String,
    pub node_id: String,
    pub name: String,
    pub status: String,
    pub verified_at: Option<NaiveDateTime>,
    pub route_host: Option<String>,
    pub route_port: Option<i32>,
}

/// Every claim on each of `names` (a change to one claim may change which of them the check
/// answers for).
pub(crate) fn domains_named(
    conn: &mut DbConnection,
    names: &[String],
) -> QueryResult<Vec<DomainRow>> {
    by_ids!(
        conn,
        Some(names),
        domains::table.select(DomainRow::as_select()),
        domains::name
    )
}

pub(crate) fn domains(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
) -> QueryResult<Vec<DomainRow>> {
    by_ids!(
        conn,
        ids,
        domains::table.select(DomainRow::as_select()),
        domains::id
    )
}

/// A mailbox as the check sees it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct MailboxRow {
    pub id: String,
    pub node_id: String,
    pub address: String,
    /// Its identity key (see `MailAddress::key`); `None`: not computed yet, read as the address.
    pub address_key: Option<String>,
    pub status: String,
}

const MAILBOX: (
    mailboxes::id,
    mailboxes::node_id,
    mailboxes::address,
    mailboxes::address_key,
    mailboxes::status,
) = (
    mailboxes::id,
    mailboxes::node_id,
    mailboxes::address,
    mailboxes::address_key,
    mailboxes::status,
);

/// Mailboxes by id.
pub(crate) fn mailboxes(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<MailboxRow>> {
    by_ids!(
        conn,
        Some(ids),
        mailboxes::table.select(MAILBOX),
        mailboxes::id
    )
}

/// Every mailbox, streamed: `each` gets them in batches of `batch`, so a million rows never sit
/// in memory as Rust strings at once beside the index they become (SQLite hands rows over as it
/// steps; PostgreSQL's default mode holds the result in libpq's compact form first). One query,
/// not pages: paging by id went through the id index row by row and took twice as long.
pub(crate) fn each_mailbox(
    conn: &mut DbConnection,
    batch: usize,
    each: impl FnMut(Vec<MailboxRow>),
) -> QueryResult<()> {
    stream(
        mailboxes::table
            .select(MAILBOX)
            .load_iter::<MailboxRow, diesel::connection::DefaultLoadingMode>(conn)?,
        batch,
        each,
    )
}

/// Hands `rows` to `each` in batches of `batch`.
fn stream<T>(
    rows: impl Iterator<Item = QueryResult<T>>,
    batch: usize,
    mut each: impl FnMut(Vec<T>),
) -> QueryResult<()> {
    let mut pending = Vec::with_capacity(batch);
    for row in rows {
        pending.push(row?);
        if pending.len() == batch {
            each(std::mem::replace(&mut pending, Vec::with_capacity(batch)));
        }
    }
    each(pending);
    Ok(())
}

/// An alias with its mailbox's address; a key not computed yet is `None`, read as the address.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct AliasRow {
    pub id: String,
    pub address: String,
    pub address_key: Option<String>,
    pub mailbox_address: String,
    pub mailbox_key: Option<String>,
}

const ALIAS: (
    aliases::id,
    aliases::address,
    aliases::address_key,
    mailboxes::address,
    mailboxes::address_key,
) = (
    aliases::id,
    aliases::address,
    aliases::address_key,
    mailboxes::address,
    mailboxes::address_key,
);

/// Aliases by id.
pub(crate) fn aliases(conn: &mut DbConnection, ids: &[String]) -> QueryResult<Vec<AliasRow>> {
    by_ids!(
        conn,
        Some(ids),
        aliases::table.inner_join(mailboxes::table).select(ALIAS),
        aliases::id
    )
}

/// Every alias, streamed as [`each_mailbox`] does.
pub(crate) fn each_alias(
    conn: &mut DbConnection,
    batch: usize,
    each: impl FnMut(Vec<AliasRow>),
) -> QueryResult<()> {
    stream(
        aliases::table
            .inner_join(mailboxes::table)
            .select(ALIAS)
            .load_iter::<AliasRow, diesel::connection::DefaultLoadingMode>(conn)?,
        batch,
        each,
    )
}

/// An API key as the check authenticates it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub node_id: String,
    pub secret_hash: String,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    /// With `rate_limit`, which budget its checks count against.
    pub role: String,
    pub rate_limit: Option<i64>,
}

pub(crate) fn api_keys(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
) -> QueryResult<Vec<ApiKeyRow>> {
    let select = (
        api_keys::id,
        api_keys::node_id,
        api_keys::secret_hash,
        api_keys::expires_at,
        api_keys::revoked_at,
        api_keys::last_used_at,
        api_keys::role,
        api_keys::rate_limit,
    );
    by_ids!(conn, ids, api_keys::table.select(select), api_keys::id)
}

/// An account as the check authenticates its tokens.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct AccountRow {
    pub id: String,
    pub node_id: String,
    pub disabled: bool,
    pub credential_version: i64,
    /// Which budget its checks count against.
    pub role: String,
}

pub(crate) fn accounts(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
) -> QueryResult<Vec<AccountRow>> {
    let select = (
        accounts::id,
        accounts::node_id,
        accounts::disabled,
        accounts::credential_version,
        accounts::role,
    );
    by_ids!(conn, ids, accounts::table.select(select), accounts::id)
}

/// A module of the catalogue.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct ModuleRow {
    pub code: String,
    pub unit: String,
    pub auto_assign: bool,
    pub retired: bool,
}

/// The whole catalogue, retired modules included (their seats still count).
pub(crate) fn modules(conn: &mut DbConnection) -> QueryResult<Vec<ModuleRow>> {
    modules::table
        .select((
            modules::code,
            modules::unit,
            modules::auto_assign,
            modules::retired,
        ))
        .order(modules::code)
        .load(conn)
}

/// A per-mailbox module held.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct MailboxModuleRow {
    pub mailbox_id: String,
    pub code: String,
}

/// The modules the mailboxes `ids` hold.
pub(crate) fn mailbox_modules(
    conn: &mut DbConnection,
    ids: &[String],
) -> QueryResult<Vec<MailboxModuleRow>> {
    by_ids!(
        conn,
        Some(ids),
        mailbox_modules::table.select((mailbox_modules::mailbox_id, mailbox_modules::module_code)),
        mailbox_modules::mailbox_id
    )
}

/// The ids of the mailboxes holding module `code`, streamed as [`each_mailbox`] does: one covering
/// index scan per module. Not joined to the addresses: for a million rows the join's random
/// look-ups took 3.5 s on SQLite where this scan takes 0.2 s; the index matches ids itself.
pub(crate) fn each_holder(
    conn: &mut DbConnection,
    code: &str,
    batch: usize,
    each: impl FnMut(Vec<String>),
) -> QueryResult<()> {
    stream(
        mailbox_modules::table
            .filter(mailbox_modules::module_code.eq(code))
            .select(mailbox_modules::mailbox_id)
            .load_iter::<String, diesel::connection::DefaultLoadingMode>(conn)?,
        batch,
        each,
    )
}

/// A per-customer module held.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct NodeModuleRow {
    pub node_id: String,
    pub code: String,
}

/// The modules the given customers hold, or every customer when `ids` is `None`.
pub(crate) fn node_modules(
    conn: &mut DbConnection,
    ids: Option<&[String]>,
) -> QueryResult<Vec<NodeModuleRow>> {
    let select = (node_modules::node_id, node_modules::module_code);
    by_ids!(
        conn,
        ids,
        node_modules::table.select(select),
        node_modules::node_id
    )
}

/// Records that the mailboxes `ids` were last seen by a check `at` (and first seen, if never
/// before): two statements per 500 mailboxes, since a flush holds only a few distinct seconds. Not
/// a change of the mailboxes: their versions stay, and no change-feed trigger fires.
pub(crate) fn mark_seen(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    ids: &[String],
) -> QueryResult<()> {
    for chunk in ids.chunks(500) {
        diesel::update(mailboxes::table.filter(mailboxes::id.eq_any(chunk)))
            .set(mailboxes::last_seen_at.eq(at))
            .execute(conn)?;
        diesel::update(
            mailboxes::table
                .filter(mailboxes::id.eq_any(chunk))
                .filter(mailboxes::first_seen_at.is_null()),
        )
        .set(mailboxes::first_seen_at.eq(at))
        .execute(conn)?;
    }
    Ok(())
}

/// The mailbox an address belongs to, directly or as an alias, by its identity key (see
/// `MailAddress::key`): (id, status).
pub fn mailbox_at(conn: &mut DbConnection, key: &str) -> QueryResult<Option<(String, String)>> {
    let direct = mailboxes::table
        .filter(mailboxes::address_key.eq(key))
        .select((mailboxes::id, mailboxes::status))
        .first(conn)
        .optional()?;
    if direct.is_some() {
        return Ok(direct);
    }
    aliases::table
        .inner_join(mailboxes::table)
        .filter(aliases::address_key.eq(key))
        .select((mailboxes::id, mailboxes::status))
        .first(conn)
        .optional()
}
