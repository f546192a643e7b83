//! The module catalogue's writes (owner admins add, change and remove modules) and module
//! assignments (a per-mailbox module to a mailbox, a per-customer one to a customer), each taking
//! or returning its seat of `module:<code>` in the caller's transaction. The rules between modules
//! are `domain::catalogue`'s; the seat rule is `domain::quota::Standing`'s (through
//! [`seats`](super::seats)).

use std::collections::BTreeSet;

use diesel::QueryResult;
use serde_json::json;

use super::{Ctx, seats};
use crate::auth::guard::{Administer, Authorised, Manage};
use crate::domain::audit::Action;
use crate::domain::catalogue::{Catalogue, Rules, Unit};
use crate::domain::quota::Refusal;
use crate::domain::resource::module_key;
use crate::error::ApiError;
use crate::store::DbConnection;
use crate::store::mailboxes::{self, Mailbox, Origin};
use crate::store::modules::{self, Module};
use crate::store::nodes::Node;

/// A module as the audit trail records it: the same JSON as the API's view of it.
fn audit_view(m: &Module) -> serde_json::Value {
    json!({
        "code": m.code,
        "name": m.name,
        "description": m.description,
        "unit": m.rules.unit,
        "requires": m.rules.requires,
        "excludes": m.rules.excludes,
        "auto_assign": m.rules.auto_assign,
        "retired": m.rules.retired,
        "version": m.version,
        "created_at": m.created_at.and_utc(),
    })
}

/// The catalogue and the module `code` in it; 404 when there is no such module.
pub(crate) fn find(conn: &mut DbConnection, code: &str) -> Result<(Vec<Module>, Module), ApiError> {
    let all = modules::all(conn)?;
    let module = all
        .iter()
        .find(|m| m.code == code)
        .cloned()
        .ok_or(ApiError::NotFound)?;
    Ok((all, module))
}

/// Adds `module` to the catalogue of the `owner`: refused when its code exists, or when the
/// catalogue cannot hold its rules.
pub(crate) fn create(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &Authorised<Administer>,
    module: Module,
) -> Result<Module, ApiError> {
    let all = modules::all(conn)?;
    if all.iter().any(|m| m.code == module.code) {
        return Err(ApiError::NameTaken(format!(
            "A module with the code {} exists already.",
            module.code
        )));
    }
    change(conn, all, None, &module)?;
    ctx.record(
        conn,
        owner.id,
        Action::ModuleCreate,
        ("module", module.code.clone()),
        None,
        Some(audit_view(&module)),
    )?;
    Ok(module)
}

/// What a change to a module sets; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub(crate) struct ModuleChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub requires: Option<BTreeSet<String>>,
    pub excludes: Option<BTreeSet<String>>,
    pub auto_assign: Option<bool>,
    pub retired: Option<bool>,
}

impl ModuleChange {
    /// `module` with this change applied.
    fn applied(self, mut module: Module) -> Module {
        if let Some(name) = self.name {
            module.name = name;
        }
        if let Some(description) = self.description {
            module.description = description;
        }
        if let Some(requires) = self.requires {
            module.rules.requires = requires;
        }
        if let Some(excludes) = self.excludes {
            module.rules.excludes = excludes;
        }
        if let Some(auto_assign) = self.auto_assign {
            module.rules.auto_assign = auto_assign;
        }
        if let Some(retired) = self.retired {
            module.rules.retired = retired;
        }
        module
    }
}

/// Changes module `code` of the `owner`'s catalogue, once `precondition` accepts its version (the
/// request's `If-Match`). A change that changes nothing is not written (nor its version raised).
pub(crate) fn update(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &Authorised<Administer>,
    code: &str,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
    change_to: ModuleChange,
) -> Result<Module, ApiError> {
    let (all, before) = find(conn, code)?;
    precondition(before.version)?;
    let mut module = change_to.applied(before.clone());
    if module == before {
        return Ok(module);
    }
    module.version += 1;
    change(conn, all, Some(&before), &module)?;
    ctx.record(
        conn,
        owner.id,
        Action::ModuleUpdate,
        ("module", module.code.clone()),
        Some(audit_view(&before)),
        Some(audit_view(&module)),
    )?;
    Ok(module)
}

/// Removes module `code` from the `owner`'s catalogue: refused while anything uses it (it is
/// retired instead) or another module requires it.
pub(crate) fn delete(
    conn: &mut DbConnection,
    ctx: &Ctx,
    owner: &Authorised<Administer>,
    code: &str,
) -> Result<(), ApiError> {
    modules::lock(conn, &[code], true)?;
    let (all, module) = find(conn, code)?;
    let uses = modules::uses(conn, code)?;
    if !uses.is_empty() {
        return Err(ApiError::Conflict(format!(
            "{code} is in use ({}): retire it instead (PATCH with \"retired\": true).",
            uses.join(", ")
        )));
    }
    if let Some(dependant) = all.iter().find(|m| m.rules.requires.contains(code)) {
        return Err(ApiError::Conflict(format!(
            "{} requires {code}: change {} first.",
            dependant.code, dependant.code
        )));
    }
    modules::delete(conn, code)?;
    ctx.record(
        conn,
        owner.id,
        Action::ModuleDelete,
        ("module", code.to_owned()),
        Some(audit_view(&module)),
        None,
    )?;
    Ok(())
}

/// Writes `module` (new, or replacing `before`) into the catalogue `all` if the catalogue still
/// holds its rules and no existing assignment breaks a requirement or exclusion it adds.
fn change(
    conn: &mut DbConnection,
    all: Vec<Module>,
    before: Option<&Module>,
    module: &Module,
) -> Result<(), ApiError> {
    let named: Vec<&str> = std::iter::once(module.code.as_str())
        .chain(module.rules.requires.iter().map(String::as_str))
        .chain(module.rules.excludes.iter().map(String::as_str))
        .chain(before.into_iter().flat_map(|b| {
            b.rules
                .requires
                .iter()
                .chain(&b.rules.excludes)
                .map(String::as_str)
        }))
        .collect();
    modules::lock(conn, &named, true)?;
    with_module(modules::catalogue(&all), before, module)
        .validate()
        .map_err(|broken| ApiError::validation(broken.field, broken.message))?;
    holders_keep_rules(conn, before, module)?;
    modules::save(conn, module, before.is_none())?;
    Ok(())
}

/// `catalogue` with `module` in it (replacing `before`).
fn with_module(mut catalogue: Catalogue, before: Option<&Module>, module: &Module) -> Catalogue {
    // Exclusions are stored both ways: the module's old ones are dropped from the others too.
    if let Some(before) = before {
        for other in &before.rules.excludes {
            if let Some(rules) = catalogue.0.get_mut(other) {
                rules.excludes.remove(&module.code);
            }
        }
    }
    for other in &module.rules.excludes {
        if let Some(rules) = catalogue.0.get_mut(other) {
            rules.excludes.insert(module.code.clone());
        }
    }
    catalogue
        .0
        .insert(module.code.clone(), module.rules.clone());
    catalogue
}

/// Refused when holders of `module` lack a requirement it adds or hold a module it now excludes.
fn holders_keep_rules(
    conn: &mut DbConnection,
    before: Option<&Module>,
    module: &Module,
) -> Result<(), ApiError> {
    let empty = BTreeSet::new();
    let (old_requires, old_excludes) =
        before.map_or((&empty, &empty), |b| (&b.rules.requires, &b.rules.excludes));
    let holders = match module.rules.unit {
        Unit::PerMailbox => "mailbox(es)",
        Unit::PerCustomer => "customer(s)",
    };
    let refuse_held = |count: i64, what: String| match count {
        0 => Ok(()),
        _ => Err(ApiError::Conflict(format!("{count} {holders} hold {what}"))),
    };
    let code = &module.code;
    for required in module.rules.requires.difference(old_requires) {
        let count = modules::holding_without(conn, module.rules.unit, code, required)?;
        refuse_held(
            count,
            format!("{code} without {required}: assign {required} to them first."),
        )?;
    }
    for excluded in module.rules.excludes.difference(old_excludes) {
        let count = modules::holding_both(conn, module.rules.unit, code, excluded)?;
        refuse_held(
            count,
            format!("both {code} and {excluded}: remove one from them first."),
        )?;
    }
    Ok(())
}

/// One holder's modules (a mailbox's or a customer's) as module `code` joins or leaves them, with
/// the catalogue's rules to judge it by.
struct Holding {
    catalogue: Catalogue,
    rules: Rules,
    code: String,
    before: BTreeSet<String>,
}

impl Holding {
    /// The rules for changing `code` on a holder of `unit` that holds `before`: 404 for an unknown
    /// module, 422 for one of the other unit. The module's row is locked (shared) so that its
    /// rules cannot change before the assignment commits.
    fn read(
        conn: &mut DbConnection,
        code: String,
        unit: Unit,
        before: impl FnOnce(&mut DbConnection) -> QueryResult<BTreeSet<String>>,
    ) -> Result<Self, ApiError> {
        modules::lock(conn, &[&code], false)?;
        let catalogue = modules::catalogue(&modules::all(conn)?);
        let rules = catalogue.get(&code).cloned().ok_or(ApiError::NotFound)?;
        if rules.unit != unit {
            let hint = match rules.unit {
                Unit::PerCustomer => "assign it to the customer: PUT /v1/nodes/{id}/modules/{code}",
                Unit::PerMailbox => "assign it to mailboxes: PUT /v1/mailboxes/{id}/modules/{code}",
            };
            return Err(ApiError::validation(
                "code",
                format!("{code} is a {} module; {hint}", rules.unit),
            ));
        }
        Ok(Self {
            catalogue,
            rules,
            before: before(conn)?,
            code,
        })
    }

    /// A mailbox's holding of `code`.
    fn of_mailbox(
        conn: &mut DbConnection,
        mailbox: &Mailbox,
        code: String,
    ) -> Result<Self, ApiError> {
        Self::read(conn, code, Unit::PerMailbox, |conn| {
            modules::of_mailbox(conn, mailbox.id)
        })
    }

    /// A customer's holding of `code`.
    fn of_customer(conn: &mut DbConnection, node: &Node, code: String) -> Result<Self, ApiError> {
        Self::read(conn, code, Unit::PerCustomer, |conn| {
            Ok(modules::of_node(conn, node.id)?.into_keys().collect())
        })
    }

    /// What the holder holds once the module joins; `None` when it holds it already. Refused
    /// for a retired module and by the catalogue's rules.
    fn joining(&self) -> Result<Option<BTreeSet<String>>, ApiError> {
        if self.before.contains(&self.code) {
            return Ok(None);
        }
        if self.rules.retired {
            return Err(ApiError::Conflict(format!(
                "{} is retired: it takes no new seats.",
                self.code
            )));
        }
        self.catalogue
            .may_assign(&self.code, &self.before)
            .map_err(ApiError::Module)?;
        let mut after = self.before.clone();
        after.insert(self.code.clone());
        Ok(Some(after))
    }

    /// What the holder holds once the module leaves: 404 when it does not hold it, refused while
    /// another module it holds requires it.
    fn leaving(&self) -> Result<BTreeSet<String>, ApiError> {
        if !self.before.contains(&self.code) {
            return Err(ApiError::NotFound);
        }
        self.catalogue
            .may_remove(&self.code, &self.before)
            .map_err(ApiError::Module)?;
        let mut after = self.before.clone();
        after.remove(&self.code);
        Ok(after)
    }

    /// Audits the change of customer `node`'s `target` to `after`.
    fn record(
        &self,
        conn: &mut DbConnection,
        ctx: &Ctx,
        node: &Node,
        action: Action,
        target: (&str, String),
        after: &BTreeSet<String>,
    ) -> QueryResult<()> {
        ctx.record(
            conn,
            node.id,
            action,
            target,
            Some(json!({"modules": self.before})),
            Some(json!({"modules": after})),
        )
    }
}

/// Assigns per-mailbox module `code` to `mailbox` of customer `node` (both locked by the caller),
/// taking a seat of it if the mailbox is active. Returns the mailbox and the modules it holds;
/// assigning one it holds changes nothing.
pub(crate) fn assign_to_mailbox(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mut mailbox: Mailbox,
    code: String,
) -> Result<(Mailbox, BTreeSet<String>), ApiError> {
    let holding = Holding::of_mailbox(conn, &mailbox, code)?;
    if mailbox.origin == Origin::Role {
        return Err(ApiError::Conflict(
            "postmaster@ and abuse@ take no seats and hold no modules.".to_owned(),
        ));
    }
    let Some(after) = holding.joining()? else {
        return Ok((mailbox, holding.before));
    };
    if mailbox.takes_seat() {
        seats::take(conn, ctx, node, &module_key(&holding.code))??;
    }
    modules::assign_mailbox(conn, mailbox.id, std::slice::from_ref(&holding.code))?;
    mailboxes::save(conn, &mut mailbox)?;
    let target = ("mailbox", mailbox.id.to_string());
    holding.record(conn, ctx, node, Action::MailboxModuleAssign, target, &after)?;
    Ok((mailbox, after))
}

/// Removes per-mailbox module `code` from `mailbox` of customer `node` (both locked by the
/// caller), returning its seat if the mailbox is active. Automatic modules follow the mailbox:
/// they are not removed.
pub(crate) fn remove_from_mailbox(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    mut mailbox: Mailbox,
    code: String,
) -> Result<(), ApiError> {
    let holding = Holding::of_mailbox(conn, &mailbox, code)?;
    let after = holding.leaving()?;
    if holding.rules.auto_assign && !holding.rules.retired {
        return Err(ApiError::Conflict(format!(
            "{} follows every mailbox; disable the mailbox to free its seat.",
            holding.code
        )));
    }
    modules::unassign_mailbox(conn, mailbox.id, &holding.code)?;
    if mailbox.takes_seat() {
        seats::release(conn, ctx, node, &[module_key(&holding.code)])?;
    }
    mailboxes::save(conn, &mut mailbox)?;
    let target = ("mailbox", mailbox.id.to_string());
    holding.record(conn, ctx, node, Action::MailboxModuleRemove, target, &after)?;
    Ok(())
}

/// Assigns per-customer module `code` to customer `node` (locked by the caller), taking its
/// seat, when `held`; else removes it, returning its seat. Assigning one it holds changes nothing.
pub(crate) fn set_on_customer(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Manage>,
    code: String,
    held: bool,
) -> Result<(), ApiError> {
    let holding = Holding::of_customer(conn, node, code)?;
    let target = ("node", node.id.to_string());
    if held {
        let Some(after) = holding.joining()? else {
            return Ok(());
        };
        seats::take(conn, ctx, node, &module_key(&holding.code))??;
        modules::assign_node(conn, node.id, &holding.code)?;
        holding.record(conn, ctx, node, Action::NodeModuleAssign, target, &after)?;
    } else {
        let after = holding.leaving()?;
        modules::unassign_node(conn, node, &holding.code)?;
        seats::release(conn, ctx, node, &[module_key(&holding.code)])?;
        holding.record(conn, ctx, node, Action::NodeModuleRemove, target, &after)?;
    }
    Ok(())
}

/// Takes the seats for `mailbox` of customer `node` becoming active again (enabled; a new one takes its seats in `mailboxes::place`):
/// `users`, a seat of every module it holds, and of every automatic module it lacks, which it is
/// assigned now. All or nothing; the refusal names the first resource without a free seat.
/// Role addresses take none.
pub(crate) fn activate_mailbox(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Node,
    mailbox: &Mailbox,
    automatic: &[String],
) -> Result<Result<(), Refusal>, ApiError> {
    if mailbox.origin == Origin::Role {
        return Ok(Ok(()));
    }
    let held = modules::of_mailbox(conn, mailbox.id)?;
    let missing: Vec<String> = automatic
        .iter()
        .filter(|code| !held.contains(*code))
        .cloned()
        .collect();
    let resources = modules::mailbox_seats(held.iter().chain(&missing));
    if let Err(refusal) = seats::take_all(conn, ctx, node, &resources)? {
        return Ok(Err(refusal));
    }
    modules::assign_mailbox(conn, mailbox.id, &missing)?;
    Ok(Ok(()))
}
