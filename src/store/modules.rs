//! The module catalogue and who holds which module.
//!
//! A module is the resource `module:<code>`. Per-mailbox modules are held by mailboxes
//! (`mailbox_modules`), per-customer ones by customers (`node_modules`). An assignment held by an
//! active mailbox that is not a role address, or by a customer, takes one seat of its resource,
//! counted in `usage_counters` in the same transaction; a disabled mailbox keeps its assignments
//! and holds no seat until it is enabled again. The rules between modules live in
//! `domain::catalogue`; this module reads and writes the rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::mailboxes::Mailbox;
use super::nodes::Node;
use super::schema::{
    allocations, mailbox_modules, mailboxes, module_excludes, module_requires, modules,
    node_modules,
};
use crate::domain::catalogue::{Catalogue, Rules, Unit};
use crate::domain::ids::{MailboxId, NodeId};
use crate::domain::resource::{Resource, module_key};
use crate::domain::status::Status;

/// Every resource the catalogue knows: `users`, `domains`, then `module:<code>` by code.
pub(crate) fn resources(conn: &mut DbConnection) -> QueryResult<Vec<Resource>> {
    let codes: Vec<String> = modules::table
        .select(modules::code)
        .order(modules::code)
        .load(conn)?;
    Ok([Resource::Users, Resource::Domains]
        .into_iter()
        .chain(codes.into_iter().map(Resource::Module))
        .collect())
}

/// Whether `resource` exists: `users` and `domains` always, a module when the catalogue has it.
pub(crate) fn exists(conn: &mut DbConnection, resource: &Resource) -> QueryResult<bool> {
    match resource.module_code() {
        None => Ok(true),
        Some(code) => {
            diesel::select(diesel::dsl::exists(modules::table.find(code))).get_result(conn)
        }
    }
}

/// One module of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Module {
    pub code: String,
    pub name: String,
    pub description: String,
    pub rules: Rules,
    pub version: i64,
    pub created_at: NaiveDateTime,
}

type ModuleRow = (
    String,
    String,
    String,
    String,
    bool,
    bool,
    i64,
    NaiveDateTime,
);

/// The whole catalogue, by code, with each module's requirements and exclusions (exclusions as
/// stored: both ways).
pub(crate) fn all(conn: &mut DbConnection) -> QueryResult<Vec<Module>> {
    let rows: Vec<ModuleRow> = modules::table
        .select((
            modules::code,
            modules::name,
            modules::description,
            modules::unit,
            modules::auto_assign,
            modules::retired,
            modules::version,
            modules::created_at,
        ))
        .order(modules::code)
        .load(conn)?;
    let mut requires: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (module, required) in module_requires::table
        .select((module_requires::module_code, module_requires::required_code))
        .load::<(String, String)>(conn)?
    {
        requires.entry(module).or_default().insert(required);
    }
    let mut excludes: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (module, excluded) in module_excludes::table
        .select((module_excludes::module_code, module_excludes::excluded_code))
        .load::<(String, String)>(conn)?
    {
        excludes.entry(module).or_default().insert(excluded);
    }
    rows.into_iter()
        .map(
            |(code, name, description, unit, auto_assign, retired, version, created_at)| {
                Ok(Module {
                    rules: Rules {
                        unit: unit.parse().map_err(super::corrupt)?,
                        auto_assign,
                        retired,
                        requires: requires.remove(&code).unwrap_or_default(),
                        excludes: excludes.remove(&code).unwrap_or_default(),
                    },
                    code,
                    name,
                    description,
                    version,
                    created_at,
                })
            },
        )
        .collect()
}

/// The rules of every module, for checking a change or an assignment.
pub(crate) fn catalogue(modules: &[Module]) -> Catalogue {
    Catalogue(
        modules
            .iter()
            .map(|m| (m.code.clone(), m.rules.clone()))
            .collect(),
    )
}

/// Writes `module`'s row (inserted when `new`, updated otherwise; its unit never changes) and
/// replaces its requirements and its exclusions, which are stored both ways.
pub(crate) fn save(conn: &mut DbConnection, module: &Module, new: bool) -> QueryResult<()> {
    let values = (
        modules::name.eq(&module.name),
        modules::description.eq(&module.description),
        modules::auto_assign.eq(module.rules.auto_assign),
        modules::retired.eq(module.rules.retired),
        modules::version.eq(module.version),
    );
    if new {
        diesel::insert_into(modules::table)
            .values((
                modules::code.eq(&module.code),
                modules::unit.eq(module.rules.unit.as_str()),
                modules::created_at.eq(module.created_at),
                values,
            ))
            .execute(conn)?;
    } else {
        diesel::update(modules::table.find(&module.code))
            .set(values)
            .execute(conn)?;
    }
    forget_rules(conn, &module.code)?;
    for required in &module.rules.requires {
        diesel::insert_into(module_requires::table)
            .values((
                module_requires::module_code.eq(&module.code),
                module_requires::required_code.eq(required),
            ))
            .execute(conn)?;
    }
    for excluded in &module.rules.excludes {
        for (a, b) in [(&module.code, excluded), (excluded, &module.code)] {
            diesel::insert_into(module_excludes::table)
                .values((
                    module_excludes::module_code.eq(a),
                    module_excludes::excluded_code.eq(b),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Deletes `code`'s requirements and every exclusion naming it (either way).
fn forget_rules(conn: &mut DbConnection, code: &str) -> QueryResult<()> {
    diesel::delete(module_requires::table.filter(module_requires::module_code.eq(code)))
        .execute(conn)?;
    diesel::delete(
        module_excludes::table.filter(
            module_excludes::module_code
                .eq(code)
                .or(module_excludes::excluded_code.eq(code)),
        ),
    )
    .execute(conn)?;
    Ok(())
}

/// Removes module `code` from the catalogue (the caller made sure nothing uses it).
pub(crate) fn delete(conn: &mut DbConnection, code: &str) -> QueryResult<()> {
    forget_rules(conn, code)?;
    diesel::delete(modules::table.find(code)).execute(conn)?;
    Ok(())
}

/// What still uses module `code`: allocations of its resource (live or past: they are the
/// licence's history) and assignments.
pub(crate) fn uses(conn: &mut DbConnection, code: &str) -> QueryResult<Vec<String>> {
    let mut found = Vec::new();
    let grants: i64 = allocations::table
        .filter(allocations::resource.eq(module_key(code)))
        .count()
        .get_result(conn)?;
    if grants > 0 {
        found.push(format!("{grants} allocation(s)"));
    }
    let mailboxes: i64 = mailbox_modules::table
        .filter(mailbox_modules::module_code.eq(code))
        .count()
        .get_result(conn)?;
    if mailboxes > 0 {
        found.push(format!("{mailboxes} mailbox(es)"));
    }
    let customers: i64 = node_modules::table
        .filter(node_modules::module_code.eq(code))
        .count()
        .get_result(conn)?;
    if customers > 0 {
        found.push(format!("{customers} customer(s)"));
    }
    Ok(found)
}

diesel::alias!(mailbox_modules as other_mailbox_module: OtherMailboxModule);
diesel::alias!(node_modules as other_node_module: OtherNodeModule);

/// `EXISTS` a row of `$alias` (another name for `$table`) giving the outer row's holder (`$holder`)
/// the module `$code` too.
macro_rules! also_holds {
    ($table:ident, $alias:ident, $holder:ident, $code:expr) => {
        diesel::dsl::exists(
            $alias
                .filter($alias.field($table::$holder).eq($table::$holder))
                .filter($alias.field($table::module_code).eq($code)),
        )
    };
}

/// How many holders of `unit` hold `module` without `required`: the assignments a new
/// requirement would leave broken.
pub(crate) fn holding_without(
    conn: &mut DbConnection,
    unit: Unit,
    module: &str,
    required: &str,
) -> QueryResult<i64> {
    use diesel::dsl::not;
    match unit {
        Unit::PerMailbox => mailbox_modules::table
            .filter(mailbox_modules::module_code.eq(module))
            .filter(not(also_holds!(
                mailbox_modules,
                other_mailbox_module,
                mailbox_id,
                required
            )))
            .count()
            .get_result(conn),
        Unit::PerCustomer => node_modules::table
            .filter(node_modules::module_code.eq(module))
            .filter(not(also_holds!(
                node_modules,
                other_node_module,
                node_id,
                required
            )))
            .count()
            .get_result(conn),
    }
}

/// How many holders of `unit` hold both `a` and `b`: the assignments a new exclusion would break.
pub(crate) fn holding_both(
    conn: &mut DbConnection,
    unit: Unit,
    a: &str,
    b: &str,
) -> QueryResult<i64> {
    match unit {
        Unit::PerMailbox => mailbox_modules::table
            .filter(mailbox_modules::module_code.eq(a))
            .filter(also_holds!(
                mailbox_modules,
                other_mailbox_module,
                mailbox_id,
                b
            ))
            .count()
            .get_result(conn),
        Unit::PerCustomer => node_modules::table
            .filter(node_modules::module_code.eq(a))
            .filter(also_holds!(node_modules, other_node_module, node_id, b))
            .count()
            .get_result(conn),
    }
}

/// The modules mailbox `id` holds.
pub(crate) fn of_mailbox(conn: &mut DbConnection, id: MailboxId) -> QueryResult<BTreeSet<String>> {
    Ok(mailbox_modules::table
        .filter(mailbox_modules::mailbox_id.eq(id.to_string()))
        .select(mailbox_modules::module_code)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// The modules each of `ids` holds, for a page of mailboxes.
pub(crate) fn of_mailboxes(
    conn: &mut DbConnection,
    ids: &[MailboxId],
) -> QueryResult<HashMap<MailboxId, Vec<String>>> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut held: HashMap<MailboxId, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        for (mailbox, code) in mailbox_modules::table
            .filter(mailbox_modules::mailbox_id.eq_any(chunk))
            .select((mailbox_modules::mailbox_id, mailbox_modules::module_code))
            .order((mailbox_modules::mailbox_id, mailbox_modules::module_code))
            .load::<(String, String)>(conn)?
        {
            held.entry(mailbox.parse().map_err(super::corrupt)?)
                .or_default()
                .push(code);
        }
    }
    Ok(held)
}

/// The per-customer modules customer `node` holds, with when each was assigned.
pub(crate) fn of_node(
    conn: &mut DbConnection,
    node: NodeId,
) -> QueryResult<BTreeMap<String, NaiveDateTime>> {
    Ok(node_modules::table
        .filter(node_modules::node_id.eq(node.to_string()))
        .select((node_modules::module_code, node_modules::created_at))
        .load::<(String, NaiveDateTime)>(conn)?
        .into_iter()
        .collect())
}

/// Records that mailbox `id` holds `codes` (no seat is counted here).
pub(crate) fn assign_mailbox(
    conn: &mut DbConnection,
    id: MailboxId,
    codes: &[String],
) -> QueryResult<()> {
    let now = super::now();
    for code in codes {
        diesel::insert_into(mailbox_modules::table)
            .values((
                mailbox_modules::mailbox_id.eq(id.to_string()),
                mailbox_modules::module_code.eq(code),
                mailbox_modules::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Forgets that mailbox `id` holds `code` (no seat is counted here).
pub(crate) fn unassign_mailbox(
    conn: &mut DbConnection,
    id: MailboxId,
    code: &str,
) -> QueryResult<()> {
    diesel::delete(mailbox_modules::table.find((id.to_string(), code))).execute(conn)?;
    Ok(())
}

/// Forgets every module of mailbox `id`, which is being deleted.
pub(crate) fn forget_mailbox(conn: &mut DbConnection, id: MailboxId) -> QueryResult<()> {
    diesel::delete(mailbox_modules::table.filter(mailbox_modules::mailbox_id.eq(id.to_string())))
        .execute(conn)?;
    Ok(())
}

/// Records that customer `node` holds `code` (its seat is taken by the caller, first).
pub(crate) fn assign_node(conn: &mut DbConnection, node: NodeId, code: &str) -> QueryResult<()> {
    diesel::insert_into(node_modules::table)
        .values((
            node_modules::node_id.eq(node.to_string()),
            node_modules::module_code.eq(code),
            node_modules::created_at.eq(super::now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Forgets that customer `node` holds `code` (the caller returns its seat, through
/// `service::seats::release`).
pub(crate) fn unassign_node(conn: &mut DbConnection, node: &Node, code: &str) -> QueryResult<()> {
    diesel::delete(node_modules::table.find((node.id.to_string(), code))).execute(conn)?;
    Ok(())
}

/// Forgets every per-customer module of `node`, which is being deleted (its counters go with it).
pub(crate) fn forget_node(conn: &mut DbConnection, node: NodeId) -> QueryResult<()> {
    diesel::delete(node_modules::table.filter(node_modules::node_id.eq(node.to_string())))
        .execute(conn)?;
    Ok(())
}

/// The resources an active mailbox holding `codes` takes a seat of: `users`, then each module.
pub(crate) fn mailbox_seats<'a>(codes: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    std::iter::once(Resource::Users.key())
        .chain(codes.into_iter().map(|code| module_key(code)))
        .collect()
}

/// The seats an active `mailbox` holds (`users` and its modules; none for a disabled one or a
/// role address): what it frees as it is disabled or removed (through
/// `service::seats::release`). Its assignments stay.
pub(crate) fn seats_held(conn: &mut DbConnection, mailbox: &Mailbox) -> QueryResult<Vec<String>> {
    if !mailbox.takes_seat() {
        return Ok(Vec::new());
    }
    Ok(mailbox_seats(&of_mailbox(conn, mailbox.id)?))
}

/// The module seats each customer's rows take, for the verifier: (node, resource, count) for
/// assignments held by active mailboxes that are not role addresses, and by customers.
pub(crate) fn seat_counts(conn: &mut DbConnection) -> QueryResult<BTreeMap<(String, String), i64>> {
    let mut counts = BTreeMap::new();
    for (node, code, count) in mailbox_modules::table
        .inner_join(mailboxes::table)
        .filter(mailboxes::status.eq(Status::Active.as_str()))
        .filter(mailboxes::origin.ne("role"))
        .group_by((mailboxes::node_id, mailbox_modules::module_code))
        .select((
            mailboxes::node_id,
            mailbox_modules::module_code,
            diesel::dsl::count_star(),
        ))
        .load::<(String, String, i64)>(conn)?
    {
        counts.insert((node, module_key(&code)), count);
    }
    for (node, code) in node_modules::table
        .select((node_modules::node_id, node_modules::module_code))
        .load::<(String, String)>(conn)?
    {
        *counts.entry((node, module_key(&code))).or_default() += 1;
    }
    Ok(counts)
}

/// The modules every new (or re-enabled) mailbox is assigned (see `Catalogue::automatic`). The
/// automatic modules' rows are locked (shared) first, so that no change to them commits before
/// the assignment does; what they require is automatic too (the catalogue's rule), so locked too.
pub(crate) fn automatic(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    if let DbConnection::Postgres(pg) = conn {
        modules::table
            .filter(modules::auto_assign.eq(true))
            .order(modules::code)
            .select(modules::code)
            .for_share()
            .load::<String>(pg)?;
    }
    Ok(catalogue(&all(conn)?).automatic())
}

/// Locks the catalogue rows of `codes` until the transaction ends: shared by an assignment (which
/// relies on the rules of the modules it names), exclusive by a catalogue change, so neither
/// decides on rules the other is changing. PostgreSQL only; on SQLite the `BEGIN IMMEDIATE` write
/// transaction already excludes every other writer.
pub(crate) fn lock(conn: &mut DbConnection, codes: &[&str], exclusive: bool) -> QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        let mut codes = codes.to_vec();
        codes.sort_unstable();
        let rows = modules::table
            .filter(modules::code.eq_any(codes))
            .order(modules::code)
            .select(modules::code);
        if exclusive {
            rows.for_update().load::<String>(pg)?;
        } else {
            rows.for_share().load::<String>(pg)?;
        }
    }
    Ok(())
}

/// Whether module `code` is retired.
pub(crate) fn is_retired(conn: &mut DbConnection, code: &str) -> QueryResult<bool> {
    Ok(modules::table
        .find(code)
        .select(modules::retired)
        .first::<bool>(conn)
        .optional()?
        .unwrap_or(false))
}
