//! Whether the OpenAPI document and the server agree on statuses: every status the suite sees a
//! route answer is among that route's documented responses, and every documented error status is
//! seen at least once in the suite, or is on [`UNOBSERVED`] with the reason why not.
//!
//! Tests run in parallel and in no fixed order, so nothing inside one run of the suite can know
//! when the others are done. The suite therefore only records: with `ALLOT_TEST_STATUSES` set to
//! a directory, every test app, as it is dropped, writes the statuses its routes answered (read
//! from its own `allot_http_requests_total`, labelled by route pattern, method and status) to a
//! file of its own there. The comparison is [`every_documented_status_is_answered`], ignored in
//! an ordinary run and run by `.ci/run` after the whole suite, over that directory:
//!
//! ```sh
//! ALLOT_TEST_STATUSES=/tmp/statuses cargo test
//! ALLOT_TEST_STATUSES=/tmp/statuses cargo test --test api -- --ignored --exact coverage::every_documented_status_is_answered
//! ```
//!
//! It fails on a status answered but not documented, on a documented one never answered and not
//! excused, and on an excuse that excuses nothing (the status was answered after all, or is not
//! documented): the list cannot go stale.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// The environment variable naming the directory the suite records statuses in.
const DIRECTORY: &str = "ALLOT_TEST_STATUSES";

/// The documented statuses the suite does not provoke, with why: `(method, path, status, why)`;
/// `*` for the method or the path stands for every documented operation that lists the status.
const UNOBSERVED: &[(&str, &str, u16, &str)] = &[(
    "*",
    "*",
    500,
    "an unexpected failure (a bug, a storage fault): no request provokes one on purpose, and \
         a route that could be made to answer 500 would be fixed instead",
)];

/// Writes what `registry`'s routes answered to a new file in [`DIRECTORY`], if it is set.
pub fn record(registry: &prometheus::Registry) {
    let Some(directory) = std::env::var_os(DIRECTORY) else {
        return;
    };
    let mut lines = String::new();
    for family in registry.gather() {
        if family.name() != "allot_http_requests_total" {
            continue;
        }
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|pair| pair.name() == name)
                    .map(|pair| pair.value().to_owned())
                    .unwrap_or_default()
            };
            lines.push_str(&format!(
                "{}\t{}\t{}\n",
                label("method"),
                label("endpoint"),
                label("status")
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    let directory = std::path::PathBuf::from(directory);
    let _ = std::fs::create_dir_all(&directory);
    let path = directory.join(format!("{}.tsv", uuid::Uuid::new_v4()));
    let written =
        std::fs::File::create(&path).and_then(|mut file| file.write_all(lines.as_bytes()));
    if let Err(err) = written {
        panic!("{DIRECTORY}: cannot write {}: {err}", path.display());
    }
}

/// An operation: method (upper case) and path template.
type Operation = (String, String);

/// Every documented operation with the statuses it lists.
fn documented() -> BTreeMap<Operation, BTreeSet<u16>> {
    let doc = serde_json::to_value(allot::api::openapi()).expect("the document serialises");
    let mut operations = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let Some(responses) = operation.get("responses").and_then(|r| r.as_object()) else {
                continue;
            };
            let statuses = responses
                .keys()
                .map(|status| status.parse().expect("a numeric status"))
                .collect();
            operations.insert((method.to_uppercase(), path.clone()), statuses);
        }
    }
    operations
}

/// The statuses recorded in `directory`, by operation.
fn observed(directory: &std::path::Path) -> BTreeMap<Operation, BTreeSet<u16>> {
    let mut seen: BTreeMap<Operation, BTreeSet<u16>> = BTreeMap::new();
    let entries = std::fs::read_dir(directory)
        .unwrap_or_else(|err| panic!("{DIRECTORY}={}: {err}", directory.display()));
    for entry in entries {
        let text = std::fs::read_to_string(entry.expect("an entry").path()).expect("a record");
        for line in text.lines() {
            let mut fields = line.split('\t');
            let (Some(method), Some(path), Some(status)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("a malformed record line: {line:?}");
            };
            seen.entry((method.to_owned(), path.to_owned()))
                .or_default()
                .insert(status.parse().expect("a numeric status"));
        }
    }
    seen
}

/// The excuse for `status` of `operation`, if [`UNOBSERVED`] has one.
fn excuse(operation: &Operation, status: u16) -> Option<usize> {
    UNOBSERVED.iter().position(|(method, path, excused, _)| {
        *excused == status
            && (*method == "*" || *method == operation.0)
            && (*path == "*" || *path == operation.1)
    })
}

#[test]
fn every_excuse_names_a_documented_status() {
    let documented = documented();
    for (method, path, status, why) in UNOBSERVED {
        assert!(
            !why.trim().is_empty(),
            "{method} {path} {status}: no reason"
        );
        let named = documented.iter().any(|((m, p), statuses)| {
            (*method == "*" || m == method)
                && (*path == "*" || p == path)
                && statuses.contains(status)
        });
        assert!(
            named,
            "{method} {path} {status} is excused, but no such documented response exists"
        );
    }
}

#[test]
#[ignore = "compares what a whole run of the suite recorded; .ci/run runs it after the suite"]
fn every_documented_status_is_answered() {
    let directory = std::env::var_os(DIRECTORY)
        .unwrap_or_else(|| panic!("set {DIRECTORY} to the directory a run of the suite wrote"));
    let documented = documented();
    let observed = observed(std::path::Path::new(&directory));
    let mut faults = Vec::new();
    let mut used = vec![false; UNOBSERVED.len()];
    for (operation, statuses) in &documented {
        let seen = observed.get(operation).cloned().unwrap_or_default();
        for status in seen.difference(statuses) {
            faults.push(format!(
                "{} {} answered {status}, which its documented responses do not list",
                operation.0, operation.1
            ));
        }
        for status in statuses.iter().filter(|s| **s >= 400) {
            match (seen.contains(status), excuse(operation, *status)) {
                (true, Some(i)) if UNOBSERVED[i].0 != "*" && UNOBSERVED[i].1 != "*" => {
                    faults.push(format!(
                        "{} {} answered {status}, so UNOBSERVED[{i}] need not excuse it",
                        operation.0, operation.1
                    ))
                }
                (true, _) => {}
                (false, Some(i)) => used[i] = true,
                (false, None) => faults.push(format!(
                    "{} {} never answered its documented {status} in the suite",
                    operation.0, operation.1
                )),
            }
        }
    }
    for (i, used) in used.into_iter().enumerate() {
        if !used {
            let (method, path, status, _) = UNOBSERVED[i];
            faults.push(format!(
                "UNOBSERVED[{i}] ({method} {path} {status}) excuses nothing"
            ));
        }
    }
    let operations = documented.len();
    let pairs: usize = documented.values().map(BTreeSet::len).sum();
    eprintln!("{operations} operations, {pairs} documented (operation, status) pairs");
    assert!(
        faults.is_empty(),
        "{} disagreement(s) between the document and the suite:\n{}",
        faults.len(),
        faults.join("\n")
    );
}
