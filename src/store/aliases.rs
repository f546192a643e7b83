//! Aliases: more addresses for a mailbox.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{aliases, mailboxes};
use super::{DbConnection, corrupt};
use crate::domain::address::{DomainName, MailAddress};
use crate::domain::ids::{AliasId, DomainId, MailboxId, NodeId};
use crate::domain::mail::LocalPartCase;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alias {
    pub id: AliasId,
    pub mailbox_id: MailboxId,
    pub node_id: NodeId,
    pub domain_id: DomainId,
    pub address: MailAddress,
    pub created_at: NaiveDateTime,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = aliases)]
struct AliasRow {
    id: String,
    mailbox_id: String,
    node_id: String,
    domain_id: String,
    local_part: String,
    address: String,
    created_at: NaiveDateTime,
}

impl TryFrom<AliasRow> for Alias {
    type Error = diesel::result::Error;
    fn try_from(row: AliasRow) -> Result<Self, Self::Error> {
        let domain = row
            .address
            .rsplit_once('@')
            .map(|(_, domain)| DomainName::from_stored(domain.to_owned()))
            .ok_or_else(|| corrupt(std::io::Error::other("a stored address without @")))?;
        Ok(Alias {
            id: row.id.parse().map_err(corrupt)?,
            mailbox_id: row.mailbox_id.parse().map_err(corrupt)?,
            node_id: row.node_id.parse().map_err(corrupt)?,
            domain_id: row.domain_id.parse().map_err(corrupt)?,
            address: MailAddress::from_stored(row.local_part, domain),
            created_at: row.created_at,
        })
    }
}

pub(crate) fn find(conn: &mut DbConnection, id: AliasId) -> QueryResult<Option<Alias>> {
    aliases::table
        .find(id.to_string())
        .select(AliasRow::as_select())
        .first(conn)
        .optional()?
        .map(Alias::try_from)
        .transpose()
}

/// A mailbox's aliases, oldest first.
pub(crate) fn of_mailbox(conn: &mut DbConnection, mailbox: MailboxId) -> QueryResult<Vec<Alias>> {
    aliases::table
        .filter(aliases::mailbox_id.eq(mailbox.to_string()))
        .select(AliasRow::as_select())
        .order(aliases::id)
        .load(conn)?
        .into_iter()
        .map(Alias::try_from)
        .collect()
}

/// Inserts `alias`, keyed for a customer comparing local parts as `case` says.
pub(crate) fn insert(
    conn: &mut DbConnection,
    alias: &Alias,
    case: LocalPartCase,
) -> QueryResult<()> {
    diesel::insert_into(aliases::table)
        .values((
            aliases::id.eq(alias.id.to_string()),
            aliases::mailbox_id.eq(alias.mailbox_id.to_string()),
            aliases::node_id.eq(alias.node_id.to_string()),
            aliases::domain_id.eq(alias.domain_id.to_string()),
            aliases::local_part.eq(alias.address.local()),
            aliases::address.eq(alias.address.stored()),
            aliases::address_key.eq(alias.address.key(case)),
            aliases::created_at.eq(alias.created_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn delete(conn: &mut DbConnection, id: AliasId) -> QueryResult<()> {
    diesel::delete(aliases::table.find(id.to_string())).execute(conn)?;
    Ok(())
}

/// Removes every alias of a mailbox.
pub(crate) fn delete_of_mailbox(conn: &mut DbConnection, mailbox: MailboxId) -> QueryResult<usize> {
    diesel::delete(aliases::table.filter(aliases::mailbox_id.eq(mailbox.to_string()))).execute(conn)
}

/// Removes every alias on a domain, and every alias of a mailbox on it.
pub(crate) fn delete_touching_domain(
    conn: &mut DbConnection,
    domain: DomainId,
) -> QueryResult<usize> {
    let domain = domain.to_string();
    diesel::delete(
        aliases::table.filter(
            aliases::domain_id
                .eq(&domain)
                .or(aliases::mailbox_id.eq_any(
                    mailboxes::table
                        .filter(mailboxes::domain_id.eq(&domain))
                        .select(mailboxes::id),
                )),
        ),
    )
    .execute(conn)
}

/// Whether any mailbox or alias is the same address as `address` for a customer comparing local
/// parts as `case` says (the same identity key), or has exactly this spelling: addresses are
/// unique across both tables.
pub(crate) fn address_taken(
    conn: &mut DbConnection,
    address: &MailAddress,
    case: LocalPartCase,
) -> QueryResult<bool> {
    let (key, stored) = (address.key(case), address.stored());
    let as_mailbox: bool = diesel::select(diesel::dsl::exists(
        mailboxes::table.filter(
            mailboxes::address_key
                .eq(&key)
                .or(mailboxes::address.eq(&stored)),
        ),
    ))
    .get_result(conn)?;
    let as_alias: bool = diesel::select(diesel::dsl::exists(
        aliases::table.filter(
            aliases::address_key
                .eq(&key)
                .or(aliases::address.eq(&stored)),
        ),
    ))
    .get_result(conn)?;
    Ok(as_mailbox || as_alias)
}
