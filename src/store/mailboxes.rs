//! Mailboxes: the users a customer's licence counts.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{mailbox_modules, mailboxes, nodes};
use super::{DbConnection, corrupt};
use crate::domain::address::{DomainName, MailAddress};
use crate::domain::ids::{DomainId, MailboxId, NodeId};
use crate::domain::mail::LocalPartCase;
use crate::domain::status::Status;

/// How a mailbox came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Origin {
    /// Created through the API.
    Manual,
    /// Created by a bulk import.
    Import,
    /// Enrolled the first time a mail worker saw it send mail.
    Check,
    /// A domain's postmaster@ or abuse@, created with it.
    Role,
}

impl Origin {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Import => "import",
            Self::Check => "check",
            Self::Role => "role",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Manual, Self::Import, Self::Check, Self::Role]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mailbox {
    pub id: MailboxId,
    pub node_id: NodeId,
    pub domain_id: DomainId,
    pub address: MailAddress,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub contact_email: Option<String>,
    pub active: bool,
    pub origin: Origin,
    pub first_seen_at: Option<NaiveDateTime>,
    pub last_seen_at: Option<NaiveDateTime>,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Mailbox {
    /// A new active mailbox of customer `node_id` at `address` on `domain_id`, created `now`,
    /// without names and never seen yet.
    pub fn new(
        node_id: NodeId,
        domain_id: DomainId,
        address: MailAddress,
        origin: Origin,
        now: NaiveDateTime,
    ) -> Self {
        Self {
            id: MailboxId::generate(),
            node_id,
            domain_id,
            address,
            display_name: None,
            first_name: None,
            last_name: None,
            contact_email: None,
            active: true,
            origin,
            first_seen_at: None,
            last_seen_at: None,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether it takes a `users` seat: active and not a role address.
    pub fn takes_seat(&self) -> bool {
        self.active && self.origin != Origin::Role
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mailboxes)]
struct MailboxRow {
    id: String,
    node_id: String,
    domain_id: String,
    local_part: String,
    address: String,
    display_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    contact_email: Option<String>,
    status: String,
    origin: String,
    first_seen_at: Option<NaiveDateTime>,
    last_seen_at: Option<NaiveDateTime>,
    version: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl TryFrom<MailboxRow> for Mailbox {
    type Error = diesel::result::Error;
    fn try_from(row: MailboxRow) -> Result<Self, Self::Error> {
        let domain = row
            .address
            .rsplit_once('@')
            .map(|(_, domain)| DomainName::from_stored(domain.to_owned()))
            .ok_or_else(|| corrupt(std::io::Error::other("a stored address without @")))?;
        Ok(Mailbox {
            id: row.id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            domain_id: row.domain_id.parse().map_err(corrupt)?,
            address: MailAddress::from_stored(row.local_part, domain),
            display_name: row.display_name,
            first_name: row.first_name,
            last_name: row.last_name,
            contact_email: row.contact_email,
            active: Status::is_active_text(&row.status),
            origin: Origin::parse(&row.origin)
                .ok_or_else(|| corrupt(std::io::Error::other("an unknown origin")))?,
            first_seen_at: row.first_seen_at,
            last_seen_at: row.last_seen_at,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(crate) fn find(conn: &mut DbConnection, id: MailboxId) -> QueryResult<Option<Mailbox>> {
    mailboxes::table
        .find(id.to_string())
        .select(MailboxRow::as_select())
        .first(conn)
        .optional()?
        .map(Mailbox::try_from)
        .transpose()
}

/// Inserts `mailbox`, keyed for a customer comparing local parts as `case` says: a unique
/// violation means the address (or a spelling of it that is the same mailbox) is taken.
pub(crate) fn insert(
    conn: &mut DbConnection,
    mailbox: &Mailbox,
    case: LocalPartCase,
) -> QueryResult<()> {
    diesel::insert_into(mailboxes::table)
        .values((
            mailboxes::id.eq(mailbox.id.to_string()),
            mailboxes::node_id.eq(mailbox.node_id.to_string()),
            mailboxes::domain_id.eq(mailbox.domain_id.to_string()),
            mailboxes::local_part.eq(mailbox.address.local()),
            mailboxes::address.eq(mailbox.address.stored()),
            mailboxes::address_key.eq(mailbox.address.key(case)),
            mailboxes::display_name.eq(&mailbox.display_name),
            mailboxes::first_name.eq(&mailbox.first_name),
            mailboxes::last_name.eq(&mailbox.last_name),
            mailboxes::contact_email.eq(&mailbox.contact_email),
            mailboxes::status.eq(Status::of(mailbox.active).as_str()),
            mailboxes::origin.eq(mailbox.origin.as_str()),
            mailboxes::first_seen_at.eq(mailbox.first_seen_at),
            mailboxes::last_seen_at.eq(mailbox.last_seen_at),
            mailboxes::version.eq(mailbox.version),
            mailboxes::created_at.eq(mailbox.created_at),
            mailboxes::updated_at.eq(mailbox.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Inserts a role address unless its address exists already (another claim on the domain's name
/// holds it): whether it was inserted. `ON CONFLICT DO NOTHING`, so that two claims registered at
/// once do not fail on each other. Role local parts are lowercase: their key is the same in either
/// case mode.
pub(crate) fn insert_role(conn: &mut DbConnection, mailbox: &Mailbox) -> QueryResult<bool> {
    let insert = diesel::insert_into(mailboxes::table)
        .values((
            mailboxes::id.eq(mailbox.id.to_string()),
            mailboxes::node_id.eq(mailbox.node_id.to_string()),
            mailboxes::domain_id.eq(mailbox.domain_id.to_string()),
            mailboxes::local_part.eq(mailbox.address.local()),
            mailboxes::address.eq(mailbox.address.stored()),
            mailboxes::address_key.eq(mailbox.address.key(LocalPartCase::Insensitive)),
            mailboxes::status.eq(Status::of(mailbox.active).as_str()),
            mailboxes::origin.eq(mailbox.origin.as_str()),
            mailboxes::version.eq(mailbox.version),
            mailboxes::created_at.eq(mailbox.created_at),
            mailboxes::updated_at.eq(mailbox.updated_at),
        ))
        .on_conflict_do_nothing();
    // The two-backend connection has no ON CONFLICT; each backend's own connection has.
    let inserted = match conn {
        DbConnection::Postgres(pg) => insert.execute(pg)?,
        DbConnection::Sqlite(sqlite) => insert.execute(sqlite)?,
    };
    Ok(inserted == 1)
}

/// Writes the mutable fields, bumping the version.
pub(crate) fn save(conn: &mut DbConnection, mailbox: &mut Mailbox) -> QueryResult<()> {
    mailbox.version += 1;
    mailbox.updated_at = super::now();
    diesel::update(mailboxes::table.find(mailbox.id.to_string()))
        .set((
            mailboxes::display_name.eq(&mailbox.display_name),
            mailboxes::first_name.eq(&mailbox.first_name),
            mailboxes::last_name.eq(&mailbox.last_name),
            mailboxes::contact_email.eq(&mailbox.contact_email),
            mailboxes::status.eq(Status::of(mailbox.active).as_str()),
            mailboxes::version.eq(mailbox.version),
            mailboxes::updated_at.eq(mailbox.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn delete(conn: &mut DbConnection, id: MailboxId) -> QueryResult<()> {
    diesel::delete(mailboxes::table.find(id.to_string())).execute(conn)?;
    Ok(())
}

/// Every mailbox on one domain.
pub(crate) fn of_domain(conn: &mut DbConnection, domain: DomainId) -> QueryResult<Vec<Mailbox>> {
    mailboxes::table
        .filter(mailboxes::domain_id.eq(domain.to_string()))
        .select(MailboxRow::as_select())
        .order(mailboxes::id)
        .load(conn)?
        .into_iter()
        .map(Mailbox::try_from)
        .collect()
}

/// Filters for listing mailboxes.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailboxFilter {
    pub active: Option<bool>,
    pub origin: Option<Origin>,
    pub address_prefix: Option<String>,
    pub domain: Option<DomainName>,
    /// Only mailboxes holding this module.
    pub module: Option<String>,
}

/// The mailboxes of the live subtree at `path`, in id order after the cursor.
pub(crate) fn list_in_subtree(
    conn: &mut DbConnection,
    path: &str,
    filter: &MailboxFilter,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Mailbox>> {
    let (low, high) = super::nodes::subtree_range(path);
    let mut query = mailboxes::table
        .inner_join(nodes::table)
        .filter(nodes::path.ge(low))
        .filter(nodes::path.lt(high))
        .filter(nodes::deleted_at.is_null())
        .select(MailboxRow::as_select())
        .order(mailboxes::id)
        .limit(limit)
        .into_boxed();
    if let Some(active) = filter.active {
        query = query.filter(mailboxes::status.eq(Status::of(active).as_str()));
    }
    if let Some(origin) = filter.origin {
        query = query.filter(mailboxes::origin.eq(origin.as_str()));
    }
    if let Some(prefix) = &filter.address_prefix {
        query = query.filter(
            mailboxes::address
                .like(super::nodes::like_prefix(prefix))
                .escape('\\'),
        );
    }
    if let Some(domain) = &filter.domain {
        query = query.filter(mailboxes::address.like(format!("%@{}", domain.as_str())));
    }
    if let Some(code) = &filter.module {
        query = query.filter(
            mailboxes::id.eq_any(
                mailbox_modules::table
                    .filter(mailbox_modules::module_code.eq(code.clone()))
                    .select(mailbox_modules::mailbox_id),
            ),
        );
    }
    if let Some(after) = after {
        query = query.filter(mailboxes::id.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(Mailbox::try_from)
        .collect()
}

/// How many seats each customer's mailboxes take (active, not role addresses), for the verifier.
pub(crate) fn seat_counts(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    mailboxes::table
        .filter(mailboxes::status.eq(Status::Active.as_str()))
        .filter(mailboxes::origin.ne("role"))
        .group_by(mailboxes::node_id)
        .select((mailboxes::node_id, diesel::dsl::count_star()))
        .load(conn)
}

/// How many mailboxes of each of `nodes` a check saw sending within `window` (their `last_seen_at`),
/// whatever their status now, role addresses not counted: node → count, absent where 0. One
/// grouped query per 500 nodes.
pub(crate) fn active_counts(
    conn: &mut DbConnection,
    nodes: &[NodeId],
    (start, end): (NaiveDateTime, NaiveDateTime),
) -> QueryResult<std::collections::HashMap<String, i64>> {
    let mut counts = std::collections::HashMap::new();
    for chunk in super::id_chunks(nodes) {
        let rows: Vec<(String, i64)> = mailboxes::table
            .filter(mailboxes::node_id.eq_any(&chunk))
            .filter(mailboxes::origin.ne(Origin::Role.as_str()))
            .filter(mailboxes::last_seen_at.ge(start))
            .filter(mailboxes::last_seen_at.lt(end))
            .group_by(mailboxes::node_id)
            .select((mailboxes::node_id, diesel::dsl::count_star()))
            .load(conn)?;
        counts.extend(rows);
    }
    Ok(counts)
}
