//! Plans (issue 16): named bundles a node defines for its subtree, the rules of their content, and
//! what a change of plan does to a customer's limits. Pure: the service reads the grants and the
//! use inside its write transaction and writes what these rules allow.
//!
//! A plan's **content** (its resources with amounts, the per-customer modules it includes, the
//! customer settings it sets, its term) is versioned: a change of content is a new version, and a
//! customer stays on its version until synced. Its code, name and description are not content.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use super::mail::InboundRecipients;
use super::quota::{self, Grant, Span};
use super::resource::{Resource, module_key};

/// The longest term a plan may have, in months: ten years.
pub(crate) const MAX_TERM_MONTHS: i32 = 120;

/// A plan code: 1–32 of lowercase ASCII letters, digits, `_` and `-`, starting with a letter.
pub(crate) fn parse_code(code: &str) -> Result<String, String> {
    let mut chars = code.chars();
    let ok = code.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(code.to_owned())
    } else {
        Err("must be 1 to 32 lowercase letters, digits, `_` or `-`, starting with a letter".into())
    }
}

/// A term in months: 1 to [`MAX_TERM_MONTHS`].
pub(crate) fn check_term(months: i32) -> Result<i32, String> {
    if (1..=MAX_TERM_MONTHS).contains(&months) {
        Ok(months)
    } else {
        Err(format!("must be between 1 and {MAX_TERM_MONTHS} months"))
    }
}

/// The customer settings a plan may set; `None`: the plan leaves that setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlanSettings {
    pub max_aliases_per_mailbox: Option<i32>,
    pub auto_enrol: Option<bool>,
    pub inbound_recipients: Option<InboundRecipients>,
}

impl PlanSettings {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One version's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Content {
    /// Resource key (`users`, `domains`, `module:<code>`) → units granted to each customer on it.
    pub resources: BTreeMap<String, i64>,
    /// Per-customer modules assigned to each customer on it.
    pub modules: BTreeSet<String>,
    pub settings: PlanSettings,
    /// `None`: open-ended; else the grants end this many months after they start.
    pub term_months: Option<i32>,
}

impl Content {
    /// What is wrong with the content, each under its field: a resource key that is not one, an
    /// amount out of range, a module whose seat the plan does not grant, a term out of range.
    /// Whether modules exist (and are per-customer) is the catalogue's say, judged in the store's
    /// transaction.
    pub fn faults(&self) -> Vec<(String, String)> {
        let mut faults = Vec::new();
        for (key, amount) in &self.resources {
            if let Err(e) = key.parse::<Resource>() {
                faults.push((format!("resources.{key}"), e.to_string()));
            } else if let Err(e) = quota::check_amount(*amount) {
                faults.push((format!("resources.{key}"), e));
            }
        }
        for code in &self.modules {
            if !self.resources.contains_key(&module_key(code)) {
                faults.push((
                    format!("modules.{code}"),
                    format!(
                        "the plan must grant the module's seat: add `{}` to resources",
                        module_key(code)
                    ),
                ));
            }
        }
        if let Some(max) = self.settings.max_aliases_per_mailbox
            && !(0..=1000).contains(&max)
        {
            faults.push((
                "settings.max_aliases_per_mailbox".to_owned(),
                "must be between 0 and 1000".to_owned(),
            ));
        }
        if let Some(Err(e)) = self.term_months.map(check_term) {
            faults.push(("term_months".to_owned(), e));
        }
        faults
    }

    /// The days a grant of this content starts on `starts_on` covers.
    pub fn span(&self, starts_on: NaiveDate) -> Span {
        Span {
            start: starts_on,
            end: self.term_months.and_then(|months| {
                starts_on.checked_add_months(Months::new(months.unsigned_abs()))
            }),
        }
    }

    /// The grants of this content starting on `starts_on`, per resource (units of 0 grant
    /// nothing and make no allocation).
    pub fn grants(&self, starts_on: NaiveDate) -> BTreeMap<String, Grant> {
        let span = self.span(starts_on);
        self.resources
            .iter()
            .filter(|(_, amount)| **amount > 0)
            .map(|(resource, amount)| {
                (
                    resource.clone(),
                    Grant {
                        amount: *amount,
                        span,
                    },
                )
            })
            .collect()
    }
}

/// A resource whose use a change of plan would leave above the customer's limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortfall {
    pub resource: String,
    /// What the customer uses now.
    pub used: i64,
    /// Its limit after the change, on `at`.
    pub limit: i64,
    /// The first day the limit is below the use.
    pub at: NaiveDate,
}

/// One resource as a change of plan sees it: the customer's use now and its grants before and
/// after the change (every grant, the plan's and any other).
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub resource: String,
    pub used: i64,
    pub before: Vec<Grant>,
    pub after: Vec<Grant>,
}

/// The resources a change of plan taking effect `on` that day would lower below the customer's
/// use: a downgrade that does not fit. A limit that rises (an upgrade), or falls no lower than
/// the use, fits; one already below the use and not lowered further is no new shortfall. The rule
/// is the one a single grant's change obeys ([`quota::lowered_under_use`]), applied to the plan's
/// grants together, so ending the old plan's grant and granting the new one are judged as one
/// step. Only the day the change takes effect is judged: a term's end lowers the limit later as
/// any grant's end does, without being a downgrade.
pub(crate) fn shortfalls(changes: &[Change], on: NaiveDate) -> Vec<Shortfall> {
    let day = Span {
        start: on,
        end: on.succ_opt(),
    };
    changes
        .iter()
        .filter_map(|change| {
            quota::lowered_under_use(&change.before, &change.after, change.used, day).map(
                |(at, limit)| Shortfall {
                    resource: change.resource.clone(),
                    used: change.used,
                    limit,
                    at,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, d).unwrap()
    }

    fn grant(amount: i64, start: u32, end: Option<u32>) -> Grant {
        Grant {
            amount,
            span: Span {
                start: day(start),
                end: end.map(day),
            },
        }
    }

    fn content(resources: &[(&str, i64)], modules: &[&str], term: Option<i32>) -> Content {
        Content {
            resources: resources
                .iter()
                .map(|(r, a)| ((*r).to_owned(), *a))
                .collect(),
            modules: modules.iter().map(|m| (*m).to_owned()).collect(),
            settings: PlanSettings::default(),
            term_months: term,
        }
    }

    #[test]
    fn codes_are_short_lowercase_words() {
        for good in ["basic", "pro-2026", "a", "x_1"] {
            assert_eq!(parse_code(good), Ok(good.to_owned()));
        }
        for bad in ["", "Basic", "1st", "-a", "with space", &"a".repeat(33)] {
            assert!(parse_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_faults_name_each_field() {
        let mut c = content(
            &[("users", 10), ("seats", 1), ("domains", -1)],
            &["lft"],
            Some(0),
        );
        c.settings.max_aliases_per_mailbox = Some(1001);
        let fields: Vec<String> = c.faults().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "resources.domains",
                "resources.seats",
                "modules.lft",
                "settings.max_aliases_per_mailbox",
                "term_months"
            ]
        );
        assert!(
            content(&[("users", 10), ("module:lft", 10)], &["lft"], Some(12))
                .faults()
                .is_empty()
        );
    }

    #[test]
    fn a_term_ends_its_grants_that_many_months_later() {
        let c = content(&[("users", 10), ("domains", 0)], &[], Some(1));
        let grants = c.grants(day(31));
        assert_eq!(grants.len(), 1, "units of 0 grant nothing");
        assert_eq!(
            grants["users"].span.end,
            NaiveDate::from_ymd_opt(2026, 2, 28)
        );
        assert_eq!(content(&[], &[], None).span(day(1)).end, None);
    }

    #[test]
    fn a_downgrade_under_the_use_is_a_shortfall_and_an_upgrade_never_is() {
        let before = vec![grant(10, 1, None)];
        let change = |after: Vec<Grant>, used| Change {
            resource: "users".to_owned(),
            used,
            before: before.clone(),
            after,
        };
        // Down to 5 with 8 used: short on the day it takes effect.
        let short = shortfalls(
            &[change(vec![grant(10, 1, Some(10)), grant(5, 10, None)], 8)],
            day(10),
        );
        assert_eq!(
            short,
            [Shortfall {
                resource: "users".to_owned(),
                used: 8,
                limit: 5,
                at: day(10)
            }]
        );
        // Down to the use exactly, or up: fits.
        assert!(shortfalls(&[change(vec![grant(8, 1, None)], 8)], day(5)).is_empty());
        assert!(shortfalls(&[change(vec![grant(20, 1, None)], 30)], day(5)).is_empty());
        // A term that ends later is no downgrade on the day the plan takes effect.
        assert!(shortfalls(&[change(vec![grant(10, 1, Some(20))], 3)], day(5)).is_empty());
    }
}
