//! Address identity keys (`address_key` on mailboxes and aliases; see `MailAddress::key`): filled
//! for rows that have none (the rows that existed before keys did), recomputed when a customer
//! changes how its local parts compare, and checked by `allot verify`.
//!
//! Keys are unique per table and, through the write paths, across both. Where rows that existed
//! before keys did are the same address, the oldest keeps the key and each other one gets a key
//! of its own, `<row id>:<address>` (never a real key: a key is `local@domain` and a local part
//! holds no `:` outside quotes), so nothing is deleted and `allot verify` names them.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde_json::json;

use super::DbConnection;
use super::schema::{aliases, mailboxes, nodes};
use crate::domain::address::stored_key;
use crate::domain::ids::NodeId;
use crate::domain::mail::LocalPartCase;

/// Which table a keyed row is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Mailbox,
    Alias,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Mailbox => "mailbox",
            Self::Alias => "alias",
        }
    }
}

/// A mailbox or alias as keys concern it.
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub kind: Kind,
    pub id: String,
    pub node_id: String,
    pub address: String,
    pub key: Option<String>,
    pub created_at: NaiveDateTime,
}

impl Keyed {
    /// The key it should have for a customer comparing local parts as `case` says.
    pub fn canonical(&self, case: LocalPartCase) -> String {
        stored_key(&self.address, case).unwrap_or_else(|| self.address.clone())
    }

    /// The key it gets when another row holds its canonical one.
    fn own_key(&self) -> String {
        format!("{}:{}", self.id, self.address)
    }
}

type Row = (String, String, String, Option<String>, NaiveDateTime);

fn keyed(kind: Kind) -> impl Fn(Row) -> Keyed {
    move |(id, node_id, address, key, created_at)| Keyed {
        kind,
        id,
        node_id,
        address,
        key,
        created_at,
    }
}

/// Every mailbox and alias of `node`, oldest first.
fn of_node(conn: &mut DbConnection, node: &str) -> QueryResult<Vec<Keyed>> {
    let mut rows: Vec<Keyed> = mailboxes::table
        .filter(mailboxes::node_id.eq(node))
        .select((
            mailboxes::id,
            mailboxes::node_id,
            mailboxes::address,
            mailboxes::address_key,
            mailboxes::created_at,
        ))
        .load::<Row>(conn)?
        .into_iter()
        .map(keyed(Kind::Mailbox))
        .collect();
    rows.extend(
        aliases::table
            .filter(aliases::node_id.eq(node))
            .select((
                aliases::id,
                aliases::node_id,
                aliases::address,
                aliases::address_key,
                aliases::created_at,
            ))
            .load::<Row>(conn)?
            .into_iter()
            .map(keyed(Kind::Alias)),
    );
    rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(rows)
}

fn set_key(conn: &mut DbConnection, row: &Keyed, key: &str) -> QueryResult<()> {
    match row.kind {
        Kind::Mailbox => diesel::update(mailboxes::table.find(&row.id))
            .set(mailboxes::address_key.eq(key))
            .execute(conn)?,
        Kind::Alias => diesel::update(aliases::table.find(&row.id))
            .set(aliases::address_key.eq(key))
            .execute(conn)?,
    };
    Ok(())
}

/// The groups of `rows` that share a key under `case`, as the `address-collision` problem lists
/// them.
fn collisions(rows: &[Keyed], case: LocalPartCase) -> Vec<serde_json::Value> {
    let mut groups: HashMap<String, Vec<&Keyed>> = HashMap::new();
    for row in rows {
        groups.entry(row.canonical(case)).or_default().push(row);
    }
    let mut found: Vec<_> = groups.into_iter().filter(|(_, g)| g.len() > 1).collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
        .into_iter()
        .map(|(key, group)| {
            let addresses: Vec<_> = group
                .iter()
                .map(|r| json!({"kind": r.kind.as_str(), "id": r.id, "address": r.address}))
                .collect();
            json!({"key": key, "addresses": addresses})
        })
        .collect()
}

/// Gives every mailbox and alias of customer `node` the key `case` makes (the caller holds the
/// customer's lock): the number of rows changed, or, when two of them would be the same address,
/// each such group and nothing changed. (The mailboxes' keys are counted.)
pub(crate) fn rekey_customer(
    conn: &mut DbConnection,
    node: NodeId,
    case: LocalPartCase,
) -> QueryResult<Result<usize, Vec<serde_json::Value>>> {
    let rows = of_node(conn, &node.to_string())?;
    let groups = collisions(&rows, case);
    if !groups.is_empty() {
        return Ok(Err(groups));
    }
    let mut changed = 0;
    for row in rows.iter().filter(|r| r.kind == Kind::Mailbox) {
        let key = row.canonical(case);
        if row.key.as_deref() != Some(key.as_str()) {
            set_key(conn, row, &key)?;
            changed += 1;
        }
    }
    // Every alias is written when a mailbox's key changed, even one whose own key stays: the
    // check's index holds each alias with its mailbox's key, and only a write of the alias row
    // puts it in the change feed to be read again.
    for row in rows.iter().filter(|r| r.kind == Kind::Alias) {
        let key = row.canonical(case);
        if changed > 0 || row.key.as_deref() != Some(key.as_str()) {
            set_key(conn, row, &key)?;
        }
    }
    Ok(Ok(changed))
}

/// Whether some mailbox or alias has no key yet.
fn any_unkeyed(conn: &mut DbConnection) -> QueryResult<bool> {
    let mailbox: bool = diesel::select(diesel::dsl::exists(
        mailboxes::table.filter(mailboxes::address_key.is_null()),
    ))
    .get_result(conn)?;
    if mailbox {
        return Ok(true);
    }
    diesel::select(diesel::dsl::exists(
        aliases::table.filter(aliases::address_key.is_null()),
    ))
    .get_result(conn)
}

/// Rows written without a key (before the migration `*_address_identity`), each with its
/// customer's mode.
fn unkeyed(conn: &mut DbConnection) -> QueryResult<Vec<(Keyed, LocalPartCase)>> {
    type Joined = (Row, String);
    let mut rows: Vec<(Keyed, String)> = mailboxes::table
        .inner_join(nodes::table)
        .filter(mailboxes::address_key.is_null())
        .select((
            (
                mailboxes::id,
                mailboxes::node_id,
                mailboxes::address,
                mailboxes::address_key,
                mailboxes::created_at,
            ),
            nodes::local_part_case,
        ))
        .load::<Joined>(conn)?
        .into_iter()
        .map(|(row, case)| (keyed(Kind::Mailbox)(row), case))
        .collect();
    rows.extend(
        aliases::table
            .inner_join(nodes::table.on(nodes::id.eq(aliases::node_id)))
            .filter(aliases::address_key.is_null())
            .select((
                (
                    aliases::id,
                    aliases::node_id,
                    aliases::address,
                    aliases::address_key,
                    aliases::created_at,
                ),
                nodes::local_part_case,
            ))
            .load::<Joined>(conn)?
            .into_iter()
            .map(|(row, case)| (keyed(Kind::Alias)(row), case)),
    );
    // Mailboxes before aliases of the same moment: a mailbox and its own alias that collide keep
    // the mailbox found.
    rows.sort_by(|(a, _), (b, _)| {
        (a.created_at, a.kind == Kind::Alias, &a.id).cmp(&(
            b.created_at,
            b.kind == Kind::Alias,
            &b.id,
        ))
    });
    Ok(rows
        .into_iter()
        .map(|(row, case)| (row, case.parse().unwrap_or_default()))
        .collect())
}

/// Gives every mailbox and alias without a key its key, oldest first; one that is the same address
/// as a row keyed before it gets a key of its own (see the module comment). Returns how many rows
/// were keyed and how many of them collided. Runs with the migrations, in one write transaction;
/// a database with every row keyed costs two index look-ups.
pub(crate) fn fill_missing_keys(conn: &mut DbConnection) -> QueryResult<(usize, usize)> {
    if !any_unkeyed(conn)? {
        return Ok((0, 0));
    }
    super::write_tx(conn, |conn| {
        let rows = unkeyed(conn)?;
        let mut taken: HashSet<String> = mailboxes::table
            .filter(mailboxes::address_key.is_not_null())
            .select(mailboxes::address_key.assume_not_null())
            .load::<String>(conn)?
            .into_iter()
            .collect();
        taken.extend(
            aliases::table
                .filter(aliases::address_key.is_not_null())
                .select(aliases::address_key.assume_not_null())
                .load::<String>(conn)?,
        );
        let mut collided = 0;
        for (row, case) in &rows {
            let mut key = row.canonical(*case);
            if !taken.insert(key.clone()) {
                collided += 1;
                key = row.own_key();
                taken.insert(key.clone());
            }
            set_key(conn, row, &key)?;
        }
        if collided > 0 {
            tracing::warn!(
                collided,
                "addresses that are the same mailbox were found; `allot verify` lists them"
            );
        }
        Ok((rows.len(), collided))
    })
}

/// For `allot verify`: every mailbox or alias whose key is not the one its customer's mode makes,
/// naming the row that holds that key when there is one (the same address twice).
pub(crate) fn verify(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    let modes: HashMap<String, LocalPartCase> = nodes::table
        .select((nodes::id, nodes::local_part_case))
        .load::<(String, String)>(conn)?
        .into_iter()
        .map(|(id, case)| (id, case.parse().unwrap_or_default()))
        .collect();
    let mut off = Vec::new();
    let mut check = |row: Keyed| {
        let case = modes.get(&row.node_id).copied().unwrap_or_default();
        let canonical = row.canonical(case);
        if row.key.as_deref() != Some(canonical.as_str()) {
            off.push((row, canonical));
        }
    };
    let select = |kind| keyed(kind);
    for row in mailboxes::table
        .select((
            mailboxes::id,
            mailboxes::node_id,
            mailboxes::address,
            mailboxes::address_key,
            mailboxes::created_at,
        ))
        .load_iter::<Row, diesel::connection::DefaultLoadingMode>(conn)?
    {
        check(select(Kind::Mailbox)(row?));
    }
    for row in aliases::table
        .select((
            aliases::id,
            aliases::node_id,
            aliases::address,
            aliases::address_key,
            aliases::created_at,
        ))
        .load_iter::<Row, diesel::connection::DefaultLoadingMode>(conn)?
    {
        check(select(Kind::Alias)(row?));
    }
    let mut findings = Vec::new();
    for (row, canonical) in off {
        let holder = holder_of(conn, &canonical)?;
        let what = format!("{} {} ({})", row.kind.as_str(), row.id, row.address);
        findings.push(match holder {
            Some((kind, id, address)) if id != row.id => format!(
                "{what} of customer {} is the same address as {} {id} ({address}): only the latter is found by the check; delete or rename one of them (disable and delete the mailbox, or delete the alias), or set the customer's local_part_case to sensitive",
                row.node_id,
                kind.as_str()
            ),
            _ => format!(
                "{what} has the identity key {:?} instead of {canonical:?}; restarting allot fills missing keys",
                row.key.as_deref().unwrap_or("(none)")
            ),
        });
    }
    Ok(findings)
}

/// The mailbox or alias holding `key`: (kind, id, address).
fn holder_of(conn: &mut DbConnection, key: &str) -> QueryResult<Option<(Kind, String, String)>> {
    if let Some((id, address)) = mailboxes::table
        .filter(mailboxes::address_key.eq(key))
        .select((mailboxes::id, mailboxes::address))
        .first::<(String, String)>(conn)
        .optional()?
    {
        return Ok(Some((Kind::Mailbox, id, address)));
    }
    Ok(aliases::table
        .filter(aliases::address_key.eq(key))
        .select((aliases::id, aliases::address))
        .first::<(String, String)>(conn)
        .optional()?
        .map(|(id, address)| (Kind::Alias, id, address)))
}
