//! The module catalogue's rules: what a module requires and excludes, and whether a holder (a
//! mailbox for per-mailbox modules, a customer for per-customer ones) may take or drop one.
//!
//! The rules are data, checked in two places: when the catalogue changes (every code named exists,
//! requirements and exclusions stay within one unit, requirements have no cycle, no module needs
//! two modules that exclude each other), and when a module is assigned or removed (requirements
//! first, naming the missing module; then exclusions, both ways; a module others hold and need
//! cannot be removed). Exclusions are symmetric: either side naming the other is enough.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::text_enum;

text_enum! {
    /// What one seat of a module is held by.
    pub enum Unit {
        PerMailbox = "per_mailbox",
        PerCustomer = "per_customer",
    }
}

/// One module's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    pub unit: Unit,
    pub auto_assign: bool,
    pub retired: bool,
    pub requires: BTreeSet<String>,
    pub excludes: BTreeSet<String>,
}

/// A catalogue change that breaks a rule: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleBreak {
    pub field: &'static str,
    pub message: String,
}

fn broken(field: &'static str, message: String) -> Result<(), RuleBreak> {
    Err(RuleBreak { field, message })
}

/// Why a holder may not take or drop a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `module` needs `missing`, which the holder lacks.
    Requires { module: String, missing: String },
    /// `module` and `held` exclude each other, and the holder has `held`.
    Excludes { module: String, held: String },
    /// The holder's `needed_by` requires `module`, so it cannot be removed.
    NeededBy { module: String, needed_by: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requires { module, missing } => write!(
                f,
                "{module} requires {missing}, which is not assigned: assign {missing} first"
            ),
            Self::Excludes { module, held } => write!(
                f,
                "{module} and {held} exclude each other, and {held} is assigned: remove it first"
            ),
            Self::NeededBy { module, needed_by } => write!(
                f,
                "{needed_by} requires {module}, and {needed_by} is assigned: remove {needed_by} first"
            ),
        }
    }
}

impl Refusal {
    /// The other module the refusal names: the one to assign or remove first.
    pub fn names(&self) -> &str {
        match self {
            Self::Requires { missing, .. } => missing,
            Self::Excludes { held, .. } => held,
            Self::NeededBy { needed_by, .. } => needed_by,
        }
    }
}

/// The whole catalogue's rules, by code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Catalogue(pub BTreeMap<String, Rules>);

impl Catalogue {
    pub fn get(&self, code: &str) -> Option<&Rules> {
        self.0.get(code)
    }

    /// Whether `a` and `b` exclude each other (either naming the other).
    pub fn exclusive(&self, a: &str, b: &str) -> bool {
        self.get(a).is_some_and(|r| r.excludes.contains(b))
            || self.get(b).is_some_and(|r| r.excludes.contains(a))
    }

    /// Checks every rule of the catalogue as a whole; the first break found, in code order.
    pub fn validate(&self) -> Result<(), RuleBreak> {
        for (code, rules) in &self.0 {
            for (field, named) in [("requires", &rules.requires), ("excludes", &rules.excludes)] {
                for other in named {
                    if other == code {
                        return broken(field, format!("{code} cannot name itself"));
                    }
                    let Some(target) = self.get(other) else {
                        return broken(field, format!("{other} is not a module of the catalogue"));
                    };
                    if target.unit != rules.unit {
                        return broken(
                            field,
                            format!(
                                "{code} is {} and {other} is {}: requirements and exclusions stay within one unit",
                                rules.unit, target.unit
                            ),
                        );
                    }
                }
            }
            if let Some(both) = rules.requires.intersection(&rules.excludes).next() {
                return broken(
                    "excludes",
                    format!("{code} cannot both require and exclude {both}"),
                );
            }
            if rules.auto_assign && rules.unit != Unit::PerMailbox {
                return broken(
                    "auto_assign",
                    "only per_mailbox modules are assigned automatically".to_owned(),
                );
            }
        }
        for code in self.0.keys() {
            let needed = self.closure(code)?;
            for a in &needed {
                for b in &needed {
                    if a < b && self.exclusive(a, b) {
                        return broken(
                            "requires",
                            format!("{code} needs both {a} and {b}, which exclude each other"),
                        );
                    }
                }
            }
            let rules = &self.0[code];
            if rules.auto_assign && !rules.retired {
                if let Some(manual) = needed
                    .iter()
                    .find(|n| self.get(n).is_some_and(|r| !r.auto_assign || r.retired))
                {
                    return broken(
                        "requires",
                        format!(
                            "{code} is assigned to every mailbox, so what it requires must be too, and {manual} is not"
                        ),
                    );
                }
                // Every mailbox takes it as it is created or enabled, whatever else it holds: an
                // exclusion either way would be broken by the next mailbox enabled.
                if let Some(other) = self.0.keys().find(|other| self.exclusive(code, other)) {
                    return broken(
                        "excludes",
                        format!(
                            "{code} is assigned to every mailbox, so it cannot exclude {other} or be excluded by it"
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// `code` and everything it requires, directly or not; a cycle is a rule break.
    fn closure(&self, code: &str) -> Result<BTreeSet<String>, RuleBreak> {
        let mut done = BTreeSet::new();
        let mut path = Vec::new();
        self.visit(code, &mut path, &mut done)?;
        Ok(done)
    }

    fn visit(
        &self,
        code: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Result<(), RuleBreak> {
        if let Some(start) = path.iter().position(|p| p == code) {
            let mut cycle = path[start..].to_vec();
            cycle.push(code.to_owned());
            return broken(
                "requires",
                format!("requirements form a cycle: {}", cycle.join(" → ")),
            );
        }
        if done.contains(code) {
            return Ok(());
        }
        path.push(code.to_owned());
        if let Some(rules) = self.get(code) {
            for next in &rules.requires {
                self.visit(next, path, done)?;
            }
        }
        path.pop();
        done.insert(code.to_owned());
        Ok(())
    }

    /// Whether a holder of `held` may take `code`: its requirements first (the first missing one,
    /// in code order), then its exclusions both ways.
    pub fn may_assign(&self, code: &str, held: &BTreeSet<String>) -> Result<(), Refusal> {
        let Some(rules) = self.get(code) else {
            return Ok(());
        };
        if let Some(missing) = rules.requires.iter().find(|r| !held.contains(*r)) {
            return Err(Refusal::Requires {
                module: code.to_owned(),
                missing: missing.clone(),
            });
        }
        if let Some(other) = held.iter().find(|h| self.exclusive(code, h)) {
            return Err(Refusal::Excludes {
                module: code.to_owned(),
                held: other.clone(),
            });
        }
        Ok(())
    }

    /// Whether a holder of `held` may drop `code`: none of the others it holds requires it.
    pub fn may_remove(&self, code: &str, held: &BTreeSet<String>) -> Result<(), Refusal> {
        match held
            .iter()
            .find(|h| *h != code && self.get(h).is_some_and(|r| r.requires.contains(code)))
        {
            Some(dependant) => Err(Refusal::NeededBy {
                module: code.to_owned(),
                needed_by: dependant.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The per-mailbox modules every new (or re-enabled) mailbox takes: auto-assigned, not
    /// retired, requirements before the modules that need them.
    pub fn automatic(&self) -> Vec<String> {
        let mut order = Vec::new();
        for (code, rules) in &self.0 {
            if rules.auto_assign && !rules.retired {
                for needed in self.closure(code).unwrap_or_default() {
                    if !order.contains(&needed) {
                        order.push(needed);
                    }
                }
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(codes: &[&str]) -> BTreeSet<String> {
        codes.iter().map(|c| (*c).to_owned()).collect()
    }

    fn rules(unit: Unit, requires: &[&str], excludes: &[&str]) -> Rules {
        Rules {
            unit,
            auto_assign: false,
            retired: false,
            requires: set(requires),
            excludes: set(excludes),
        }
    }

    /// The seeded catalogue, as the migration writes it.
    fn seeded() -> Catalogue {
        use Unit::{PerCustomer, PerMailbox};
        let mut map = BTreeMap::new();
        map.insert(
            "base".into(),
            Rules {
                auto_assign: true,
                ..rules(PerMailbox, &[], &[])
            },
        );
        map.insert("certificate".into(), rules(PerMailbox, &[], &[]));
        map.insert(
            "sign_only".into(),
            rules(PerMailbox, &["certificate"], &["sign_encrypt"]),
        );
        map.insert(
            "sign_encrypt".into(),
            rules(PerMailbox, &["certificate"], &["sign_only"]),
        );
        map.insert("lft".into(), rules(PerMailbox, &[], &[]));
        map.insert("sandbox".into(), rules(PerMailbox, &[], &[]));
        map.insert("filter_inbound".into(), rules(PerCustomer, &[], &["m365"]));
        map.insert("filter_outbound".into(), rules(PerCustomer, &[], &["m365"]));
        map.insert(
            "m365".into(),
            rules(PerCustomer, &[], &["filter_inbound", "filter_outbound"]),
        );
        map.insert("branding".into(), rules(PerCustomer, &[], &[]));
        Catalogue(map)
    }

    #[test]
    fn the_seeded_catalogue_holds_its_rules() {
        let catalogue = seeded();
        assert_eq!(catalogue.validate(), Ok(()));
        assert_eq!(catalogue.automatic(), vec!["base".to_owned()]);
    }

    #[test]
    fn requirements_come_first_and_name_the_missing_module() {
        let catalogue = seeded();
        assert_eq!(
            catalogue.may_assign("sign_encrypt", &set(&["base", "sign_only"])),
            Err(Refusal::Requires {
                module: "sign_encrypt".into(),
                missing: "certificate".into()
            })
        );
        assert_eq!(
            catalogue.may_assign("sign_encrypt", &set(&["base", "certificate", "sign_only"])),
            Err(Refusal::Excludes {
                module: "sign_encrypt".into(),
                held: "sign_only".into()
            })
        );
        assert_eq!(
            catalogue.may_assign("sign_encrypt", &set(&["base", "certificate"])),
            Ok(())
        );
    }

    #[test]
    fn exclusions_hold_both_ways_even_when_only_one_side_names_them() {
        let mut catalogue = seeded();
        catalogue
            .0
            .get_mut("filter_inbound")
            .unwrap()
            .excludes
            .clear();
        assert!(
            catalogue
                .may_assign("filter_inbound", &set(&["m365"]))
                .is_err()
        );
        assert!(
            catalogue
                .may_assign("m365", &set(&["filter_inbound"]))
                .is_err()
        );
        assert!(catalogue.may_assign("branding", &set(&["m365"])).is_ok());
    }

    #[test]
    fn a_required_module_cannot_be_removed_while_needed() {
        let catalogue = seeded();
        let held = set(&["base", "certificate", "sign_only"]);
        assert_eq!(
            catalogue.may_remove("certificate", &held),
            Err(Refusal::NeededBy {
                module: "certificate".into(),
                needed_by: "sign_only".into()
            })
        );
        assert_eq!(catalogue.may_remove("sign_only", &held), Ok(()));
    }

    #[test]
    fn catalogue_changes_that_break_a_rule_are_named() {
        let field = |catalogue: &Catalogue| catalogue.validate().map_err(|b| b.field);
        let mut cycle = seeded();
        cycle
            .0
            .get_mut("certificate")
            .unwrap()
            .requires
            .insert("sign_only".into());
        let broken = cycle.validate().unwrap_err();
        assert_eq!(broken.field, "requires");
        assert!(broken.message.contains("cycle"), "{}", broken.message);

        let mut unknown = seeded();
        unknown
            .0
            .get_mut("lft")
            .unwrap()
            .requires
            .insert("nope".into());
        assert_eq!(field(&unknown), Err("requires"));

        let mut units = seeded();
        units
            .0
            .get_mut("lft")
            .unwrap()
            .excludes
            .insert("m365".into());
        assert_eq!(field(&units), Err("excludes"));

        let mut itself = seeded();
        itself
            .0
            .get_mut("lft")
            .unwrap()
            .excludes
            .insert("lft".into());
        assert_eq!(field(&itself), Err("excludes"));

        let mut impossible = seeded();
        impossible
            .0
            .get_mut("lft")
            .unwrap()
            .requires
            .extend(["sign_only".to_owned(), "sign_encrypt".to_owned()]);
        let broken = impossible.validate().unwrap_err();
        assert!(
            broken.message.contains("exclude each other"),
            "{}",
            broken.message
        );

        let mut auto_needs_manual = seeded();
        auto_needs_manual
            .0
            .get_mut("base")
            .unwrap()
            .requires
            .insert("certificate".into());
        assert_eq!(field(&auto_needs_manual), Err("requires"));

        let mut auto_excluding = seeded();
        auto_excluding
            .0
            .get_mut("lft")
            .unwrap()
            .excludes
            .insert("base".into());
        assert_eq!(field(&auto_excluding), Err("excludes"));
        let mut turned_automatic = seeded();
        turned_automatic.0.get_mut("sign_only").unwrap().auto_assign = true;
        assert!(
            turned_automatic.validate().is_err(),
            "it excludes sign_encrypt"
        );

        let mut auto_per_customer = seeded();
        auto_per_customer.0.get_mut("branding").unwrap().auto_assign = true;
        assert_eq!(field(&auto_per_customer), Err("auto_assign"));
    }
}
