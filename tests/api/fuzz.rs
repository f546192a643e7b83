//! Fuzzing through HTTP: arbitrary and mutated JSON bodies, CSV imports and query strings sent to
//! a real allot as its admin. Whatever comes in, the answer is never a 5xx, every refusal is a
//! problem document, and the invariants `allot verify` checks hold afterwards. The pure harnesses
//! are `tests/fuzz.rs`; this one is slower, so its cases are few unless `PROPTEST_CASES` or
//! `ALLOT_FUZZ_SECONDS` say otherwise (`bench/fuzz.sh`).

#[path = "../support/mod.rs"]
mod support;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};
use support::{QUERY_KEYS, fuzz, json, mutated, query_string, text};

use crate::helpers::{content_type, seed_tree, spawn_app};

/// Cases per harness in an ordinary `cargo test`.
const CASES: u32 = 32;

/// Asserts what any answer to any input must be.
async fn answered(what: &str, response: reqwest::Response) -> Result<u16, TestCaseError> {
    let status = response.status().as_u16();
    let content_type = content_type(&response);
    let body = response.text().await.unwrap_or_default();
    prop_assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 {
        prop_assert_eq!(
            content_type.as_str(),
            "application/problem+json",
            "{}: {} {}",
            what,
            status,
            body
        );
        let problem: Value = serde_json::from_str(&body).unwrap_or_default();
        prop_assert!(problem["type"].is_string(), "{what}: {status} {body}");
        if let Some(errors) = problem["errors"].as_array() {
            prop_assert!(
                errors
                    .iter()
                    .all(|e| e["field"].as_str().is_some_and(|f| !f.is_empty())),
                "{what}: a field error without a field: {body}"
            );
        }
    }
    Ok(status)
}

/// Percent-encodes all but the characters that shape a query, so that any text reaches allot.
fn query_text(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'=' | b'&' | b'%' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn fuzz_http_bodies_and_queries() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    let admin = runtime.block_on(app.as_admin());
    let tree = runtime.block_on(seed_tree(&admin));
    let domain = runtime.block_on(admin.register_domain(&tree.c1, "fuzz.example"));
    let mailbox = runtime.block_on(admin.create_mailbox(&tree.c1, "jane@fuzz.example"));
    let send = |method: reqwest::Method, path: &str, content_type: &str, body: Vec<u8>| {
        runtime.block_on(async {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(&admin.token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("an answer");
            answered(&format!("{method} {path}"), response).await
        })
    };

    // Each write route with a valid body to mutate.
    use reqwest::Method;
    let routes: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            format!("/v1/nodes/{}/children", tree.a),
            json!({"kind": "customer", "name": "Fuzz Customer", "contact_email": "a@example.com"}),
        ),
        (
            Method::PATCH,
            format!("/v1/nodes/{}", tree.c2),
            json!({"name": "Renamed", "description": null, "max_aliases_per_mailbox": 3}),
        ),
        (
            Method::POST,
            format!("/v1/nodes/{}/allocations", tree.c2),
            json!({"resource": "users", "amount": 1, "starts_on": "2026-01-01"}),
        ),
        (
            Method::POST,
            format!("/v1/nodes/{}/domains", tree.c1),
            json!({"name": "other.example", "route": {"host": "mx.example.net", "port": 25}}),
        ),
        (
            Method::POST,
            format!("/v1/nodes/{}/mailboxes", tree.c1),
            json!({"address": "joe@fuzz.example", "display_name": "Joe"}),
        ),
        (
            Method::POST,
            format!("/v1/mailboxes/{}/aliases", mailbox["id"].as_str().unwrap()),
            json!({"address": "sales@fuzz.example"}),
        ),
        (
            Method::PATCH,
            format!("/v1/domains/{}", domain["id"].as_str().unwrap()),
            json!({"description": "d", "route": {"host": "192.0.2.1"}}),
        ),
        (
            Method::POST,
            "/v1/check".to_owned(),
            json!({"address": "jane@fuzz.example", "direction": "inbound", "enrol": false}),
        ),
        (
            Method::POST,
            format!("/v1/nodes/{}/mailboxes/import?atomic=false", tree.c1),
            json!([{"address": "ann@fuzz.example"}, {"address": "bob@fuzz.example"}]),
        ),
        (
            Method::PUT,
            format!("/v1/nodes/{}/settings/mail_server", tree.a),
            json!({"transport": "smtp", "host": "smtp.example.net", "port": 587, "auth": "plain",
                   "username": "u", "password": "p", "sender_address": "a@fuzz.example"}),
        ),
        (
            Method::PUT,
            format!("/v1/nodes/{}/settings/support", tree.c1),
            json!({"address": "help@fuzz.example", "allow_client_specific": true}),
        ),
        (
            Method::PUT,
            format!("/v1/nodes/{}/settings/notifications", tree.a1),
            json!({"quota_thresholds": [50, 100], "recipients": ["noc@fuzz.example"]}),
        ),
    ];
    let count = routes.len();
    let valid: Vec<Value> = routes.iter().map(|r| r.2.clone()).collect();
    let input = (0..count)
        .prop_flat_map(move |i| (Just(i), prop_oneof![json(), mutated(valid[i].clone())]));
    fuzz("HTTP JSON bodies", CASES * 2, input, |(i, body)| {
        let (method, path, _) = &routes[i];
        send(
            method.clone(),
            path,
            "application/json",
            serde_json::to_vec(&body).unwrap(),
        )
        .map(drop)
    });

    let import = format!("/v1/nodes/{}/mailboxes/import?atomic=false", tree.c1);
    let csv = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(
            prop::collection::vec(prop_oneof![text(), "[a-z]{1,8}@fuzz\\.example"], 1..4),
            1..6
        )
        .prop_map(|rows| {
            let mut csv = String::from("address,display_name,first_name\n");
            for row in rows {
                csv.push_str(&row.join(","));
                csv.push('\n');
            }
            csv.into_bytes()
        }),
    ];
    fuzz("HTTP CSV imports", CASES, csv, |bytes| {
        send(Method::POST, &import, "text/csv", bytes).map(drop)
    });

    let lists = [
        format!("/v1/nodes/{}/children", tree.owner),
        format!("/v1/nodes/{}/mailboxes", tree.owner),
        format!("/v1/nodes/{}/domains", tree.c1),
        format!("/v1/nodes/{}/allocations", tree.a),
        format!("/v1/nodes/{}/usage", tree.a),
        format!("/v1/nodes/{}/accounts", tree.owner),
        "/v1/modules".to_owned(),
    ];
    // The keys the listings read (the write-only ones left out) and one that nothing reads.
    let write_only = ["cascade", "allow_over_limit", "atomic"];
    let keys: Vec<&str> = QUERY_KEYS
        .iter()
        .copied()
        .filter(|key| !write_only.contains(key))
        .chain(["x"])
        .collect();
    let pair = (
        prop::sample::select(keys),
        prop_oneof![text(), "[0-9]{0,12}", "%[0-9A-Fa-f]{0,2}"],
    );
    let queries = (0..lists.len(), query_string(pair, 0..4));
    fuzz("HTTP query strings", CASES * 2, queries, |(i, raw)| {
        let path = format!("{}?{}", lists[i], query_text(&raw));
        send(Method::GET, &path, "application/json", Vec::new()).map(drop)
    });

    runtime.block_on(async {
        // Whatever the fuzzing wrote kept every invariant.
        app.assert_verified();
    });
}
