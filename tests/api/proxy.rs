//! Behind reverse proxies (`ALLOT_TRUSTED_PROXIES`): the client's address comes from the
//! forwarding header only when the connection's peer is a trusted proxy, and it is that address
//! that login throttling counts, the audit trail records and the logs name. The test client
//! connects from loopback, so trusting 127.0.0.0/8 makes it a proxy, and trusting anything else
//! makes it a client whose headers are its own invention.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, TestDb, assert_problem, spawn_app_with};

fn trusting(networks: &[&str]) -> impl FnOnce(&mut allot::config::Config) + use<> {
    let networks: Vec<ipnet::IpNet> = networks.iter().map(|n| n.parse().unwrap()).collect();
    move |config| config.trusted_proxies = networks
}

/// A login with a wrong password for `username`, sent with `header`.
async fn guess(app: &TestApp, username: &str, header: (&str, &str)) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/token"))
        .header(header.0, header.1)
        .json(&json!({"username": username, "password": "not the password at all"}))
        .send()
        .await
        .unwrap()
}

/// Five wrong guesses for five usernames (so that no username's own limit is reached), each
/// forwarded for `client`.
async fn five_failures_forwarded_for(app: &TestApp, client: &str) {
    for i in 0..5 {
        let refused = guess(app, &format!("nobody-{i}"), ("x-forwarded-for", client)).await;
        assert_problem(refused, 401, "invalid-credentials").await;
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_login_throttling_counts_the_forwarded_client() {
    let app = spawn_app_with(trusting(&["127.0.0.0/8"])).await;
    five_failures_forwarded_for(&app, "203.0.113.7").await;
    let limited = guess(&app, "someone-else", ("x-forwarded-for", "203.0.113.7")).await;
    assert_problem(limited, 429, "too-many-requests").await;
    // Another client behind the same proxies (the client wrote a claim of its own first; the
    // second proxy, 127.0.0.9, is a trusted hop) is not held to the first one's failures.
    let other = guess(
        &app,
        "someone-else",
        ("x-forwarded-for", "203.0.113.7, 198.51.100.2, 127.0.0.9"),
    )
    .await;
    assert_problem(other, 401, "invalid-credentials").await;
    // Nor is the proxy's own address.
    assert!(!app.admin_token().await.is_empty());
}

#[tokio::test]
async fn from_a_peer_that_is_not_a_trusted_proxy_a_forwarded_header_changes_nothing() {
    let app = spawn_app_with(trusting(&["10.0.0.0/8"])).await;
    five_failures_forwarded_for(&app, "203.0.113.7").await;
    // Whatever address it claims, it is 127.0.0.1, which has failed five times.
    for claim in [
        ("x-forwarded-for", "198.51.100.2"),
        ("forwarded", "for=198.51.100.2"),
    ] {
        let limited = guess(&app, "someone-else", claim).await;
        assert_problem(limited, 429, "too-many-requests").await;
    }
}

/// Creates a child of `parent` as `token`, sending `headers`; the new node's id.
async fn create_child(
    app: &TestApp,
    token: &str,
    parent: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut request = app
        .client
        .request(
            Method::POST,
            app.url(&format!("/v1/nodes/{parent}/children")),
        )
        .bearer_auth(token)
        .json(&json!({"kind": "customer", "name": format!("Customer {}", uuid::Uuid::new_v4())}));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// The address the audit trail recorded for the creation of `node`.
async fn recorded_client(app: &TestApp, token: &str, node: &str) -> Value {
    let response = app
        .client
        .get(app.url(&format!("/v1/nodes/{node}/audit?action=node.create")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    page["items"][0]["client_address"].clone()
}

#[tokio::test]
async fn the_audit_trail_records_the_forwarded_client_only_from_a_trusted_proxy() {
    let app = spawn_app_with(trusting(&["127.0.0.0/8"])).await;
    let token = app.admin_token().await;
    let owner = app.me(&token).await["node_id"].as_str().unwrap().to_owned();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (
            &[("x-forwarded-for", "192.0.2.1, 203.0.113.7, 127.0.0.2")],
            "203.0.113.7",
        ),
        (&[("x-forwarded-for", "[2001:db8::7]:4711")], "2001:db8::7"),
        // Not an address where the walk reaches it: the proxies did not say; the peer it is.
        (&[("x-forwarded-for", "203.0.113.7, garbage")], "127.0.0.1"),
        // The header allot was not told the proxies write is the client's own.
        (&[("forwarded", "for=203.0.113.7")], "127.0.0.1"),
        (&[], "127.0.0.1"),
    ];
    for (headers, expected) in cases {
        let node = create_child(&app, &token, &owner, headers).await;
        assert_eq!(
            recorded_client(&app, &token, &node).await,
            expected,
            "{headers:?}"
        );
    }
    app.assert_verified();

    let forwarded = spawn_app_with(|config| {
        trusting(&["127.0.0.0/8"])(config);
        config.proxy_header = allot::config::ProxyHeader::Forwarded;
    })
    .await;
    let token = forwarded.admin_token().await;
    let owner = forwarded.me(&token).await["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let node = create_child(
        &forwarded,
        &token,
        &owner,
        &[
            (
                "forwarded",
                "for=192.0.2.1, for=\"[2001:db8::7]:4711\";proto=https",
            ),
            ("x-forwarded-for", "203.0.113.7"),
        ],
    )
    .await;
    assert_eq!(
        recorded_client(&forwarded, &token, &node).await,
        "2001:db8::7"
    );

    let untrusted = spawn_app_with(trusting(&["10.0.0.0/8"])).await;
    let token = untrusted.admin_token().await;
    let owner = untrusted.me(&token).await["node_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let node = create_child(
        &untrusted,
        &token,
        &owner,
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    assert_eq!(
        recorded_client(&untrusted, &token, &node).await,
        "127.0.0.1"
    );
}

/// The log lines of a request name its client: the forwarded one behind a trusted proxy.
#[test]
fn the_logs_name_the_forwarded_client() {
    let db = TestDb::new();
    let server = crate::cli::serve_logged(&db, &[("ALLOT_TRUSTED_PROXIES", "127.0.0.0/8, ::1")]);
    let base = format!("http://127.0.0.1:{}", server.port);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let http = reqwest::Client::new();
            for forwarded in ["203.0.113.7", ""] {
                let mut request = http.get(format!("{base}/healthz"));
                if !forwarded.is_empty() {
                    request = request.header("x-forwarded-for", forwarded);
                }
                assert_eq!(request.send().await.unwrap().status(), 200);
            }
            let token = crate::helpers::token_at(&http, &base, "admin", ADMIN_PASSWORD).await;
            assert!(!token.is_empty());
        });
    let clients: Vec<(String, String)> = server
        .stop()
        .into_iter()
        .filter(|event| event["message"] == "handled")
        .map(|event| {
            let span = &event["span"];
            (
                span["path"].as_str().unwrap_or_default().to_owned(),
                span["client"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        clients,
        [
            ("/healthz".to_owned(), "203.0.113.7".to_owned()),
            ("/healthz".to_owned(), "127.0.0.1".to_owned()),
            ("/v1/auth/token".to_owned(), "127.0.0.1".to_owned()),
        ]
    );
}
