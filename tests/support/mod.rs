//! What the fuzz harnesses share: a runner with a case count or a time budget from the
//! environment, and strategies for arbitrary JSON and for mutations of a valid body.
//!
//! `PROPTEST_CASES` sets the cases of one run (default: the harness's own, small enough for the
//! ordinary `cargo test`); `ALLOT_FUZZ_SECONDS` runs the harness again and again, each run with a
//! fresh random seed, until that many seconds have passed. Each harness prints its executions.
//! A failure is shrunk to a minimal input, its seed kept in `proptest-regressions/fuzz.txt` (and
//! replayed first on every later run), and reported as the test's panic.

use std::cell::Cell;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseResult, TestRunner};
use serde_json::{Map, Value};

/// Runs `test` on values of `strategy`: `default_cases` cases unless the environment says more.
pub fn fuzz<S: Strategy>(
    name: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("PROPTEST_CASES").map_or(default_cases, |c| c as u32);
    let budget = env("ALLOT_FUZZ_SECONDS").map(Duration::from_secs);
    let executions = Cell::new(0u64);
    let started = Instant::now();
    let mut runs = 0;
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
                "proptest-regressions/fuzz.txt",
            ))),
            // A panic is a finding like any failed assertion; shrink it, don't print each one.
            ..Config::default()
        });
        let outcome = runner.run(&strategy, |value| {
            executions.set(executions.get() + 1);
            test(value)
        });
        runs += 1;
        if let Err(err) = outcome {
            panic!("fuzz {name}: {err}");
        }
        if budget.is_none_or(|budget| started.elapsed() >= budget) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {} executions in {runs} run(s) of {cases} cases, {:.1} s, no finding",
        executions.get(),
        started.elapsed().as_secs_f64()
    );
}

/// Field names the request bodies use, so arbitrary objects often hit a real field.
const FIELDS: &[&str] = &[
    "kind",
    "name",
    "description",
    "contact_phone",
    "contact_email",
    "status",
    "max_aliases_per_mailbox",
    "auto_enrol",
    "inbound_recipients",
    "role_recipient",
    "parent_id",
    "resources",
    "resource",
    "amount",
    "starts_on",
    "ends_on",
    "active",
    "username",
    "password",
    "current_password",
    "email",
    "role",
    "disabled",
    "expires_at",
    "address",
    "display_name",
    "first_name",
    "last_name",
    "domain",
    "direction",
    "module",
    "enrol",
    "checks",
    "code",
    "unit",
    "requires",
    "excludes",
    "auto_assign",
    "retired",
    "route",
    "host",
    "port",
    "priority",
];

/// Every query key some endpoint reads, for the query fuzzers to pick from.
pub const QUERY_KEYS: &[&str] = &[
    "limit",
    "cursor",
    "kind",
    "status",
    "name_prefix",
    "cascade",
    "at",
    "resource",
    "active",
    "valid_on",
    "allow_over_limit",
    "origin",
    "address_prefix",
    "domain",
    "module",
    "atomic",
];

/// A raw query string: arbitrary text, or a `pairs`-sized run of `key=value` pairs joined by `&`.
pub fn query_string<K, V>(
    pair: impl Strategy<Value = (K, V)> + 'static,
    pairs: std::ops::Range<usize>,
) -> impl Strategy<Value = String>
where
    K: std::fmt::Display + std::fmt::Debug + 'static,
    V: std::fmt::Display + std::fmt::Debug + 'static,
{
    prop_oneof![
        any::<String>(),
        prop::collection::vec(pair, pairs).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
    ]
}

/// Strings that mean something to some parser, and strings that mean nothing.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9.@_:+-]{0,30}",
        prop::sample::select(vec![
            "",
            " ",
            "users",
            "domains",
            "module:base",
            "module:",
            "module:Bad",
            "owner",
            "reseller",
            "customer",
            "admin",
            "viewer",
            "check",
            "inbound",
            "outbound",
            "active",
            "disabled",
            "suspended",
            "per_mailbox",
            "2026-01-01",
            "0000-01-01",
            "+262143-12-31",
            "9999-12-31",
            "2026-02-30",
            "2026-01-01T00:00:00Z",
            "1970-01-01T00:00:00+99:00",
            "00000000-0000-0000-0000-000000000000",
            "jane@example.com",
            "Jane@Bücher.example",
            "\"a b\"@example.com",
            "example.com",
            "xn--bcher-kva.example",
            "xn--.example",
            "127.0.0.1",
            "::1",
            "\u{0}",
            "\u{202e}",
            "\u{feff}x",
        ])
        .prop_map(str::to_owned),
        // Long values, over every length cap.
        (1usize..3000, any::<char>()).prop_map(|(n, c)| c.to_string().repeat(n)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            1,
            -1,
            25,
            65535,
            65536,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Value::from),
        prop::sample::select(vec![0.5, -0.0, 1e300, 9_007_199_254_740_993.0]).prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep, objects keyed often by real field names.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// One change to a JSON document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Removes the member or element at the chosen place.
    Remove(prop::sample::Index),
    /// Replaces the value at the chosen place.
    Replace(prop::sample::Index, Value),
    /// Adds a member to the chosen object (an unknown field, or a real one of another body).
    Add(prop::sample::Index, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Remove),
        (any::<prop::sample::Index>(), json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        (any::<prop::sample::Index>(), key(), json()).prop_map(|(i, k, v)| Mutation::Add(i, k, v)),
    ]
}

/// `valid` with one to three mutations applied.
pub fn mutated(valid: Value) -> impl Strategy<Value = Value> {
    prop::collection::vec(mutation(), 1..4).prop_map(move |mutations| {
        let mut value = valid.clone();
        for mutation in mutations {
            apply(&mut value, mutation);
        }
        value
    })
}

/// The places in `value`: the JSON pointers of every member and element (the root is "").
fn places(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                places(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                places(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn apply(value: &mut Value, mutation: Mutation) {
    let mut all = Vec::new();
    places(value, String::new(), &mut all);
    let pick = |index: &prop::sample::Index| all[index.index(all.len())].clone();
    match mutation {
        Mutation::Replace(index, new) => {
            if let Some(slot) = value.pointer_mut(&pick(&index)) {
                *slot = new;
            }
        }
        Mutation::Remove(index) => {
            let place = pick(&index);
            let Some((parent, last)) = place.rsplit_once('/') else {
                return;
            };
            let last = last.replace("~1", "/").replace("~0", "~");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&last);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = last.parse::<usize>()
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
        }
        Mutation::Add(index, key, new) => {
            if let Some(Value::Object(map)) = value.pointer_mut(&pick(&index)) {
                map.insert(key, new);
            }
        }
    }
}
