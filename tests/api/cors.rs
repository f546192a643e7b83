//! Browsers (`ALLOT_CORS_ORIGINS`): preflights answered for the named origins only, answers that
//! let those pages read what they need, never credentials; unset, no CORS header at all.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

const PORTAL: &str = "https://portal.example.com";

async fn portal_app() -> TestApp {
    spawn_app_with(|config| {
        config.cors_origins = vec![PORTAL.to_owned(), "http://localhost:3000".to_owned()]
    })
    .await
}

/// A browser's preflight from `origin` for `method` on `path` with `headers`.
async fn preflight(
    app: &TestApp,
    origin: &str,
    method: &str,
    path: &str,
    headers: &str,
) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

/// A header's value as a lowercase list.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn no_cors_headers(headers: &HeaderMap) -> bool {
    !headers
        .keys()
        .any(|name| name.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn a_named_origins_preflight_is_answered_with_what_the_api_uses() {
    let app = portal_app().await;
    let answer = preflight(
        &app,
        PORTAL,
        "PATCH",
        "/v1/mailboxes/0193a8f0-0000-7000-8000-000000000001",
        "authorization, content-type, if-match, idempotency-key",
    )
    .await;
    assert_eq!(answer.status(), 200);
    let headers = answer.headers();
    assert_eq!(headers["access-control-allow-origin"], PORTAL);
    let methods = list(headers, "access-control-allow-methods");
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(methods.contains(&method.to_owned()), "{methods:?}");
    }
    let allowed = list(headers, "access-control-allow-headers");
    for header in [
        "authorization",
        "content-type",
        "if-match",
        "idempotency-key",
        "x-request-id",
    ] {
        assert!(allowed.contains(&header.to_owned()), "{allowed:?}");
    }
    assert!(headers.get("access-control-max-age").is_some());
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert!(list(headers, "vary").contains(&"origin".to_owned()));
}

#[tokio::test]
async fn a_preflight_from_another_origin_or_for_a_header_the_api_does_not_take_is_refused() {
    let app = portal_app().await;
    for origin in [
        "https://evil.example",
        "https://portal.example.com.evil.example",
        "http://portal.example.com",
        "null",
    ] {
        let answer = preflight(&app, origin, "POST", "/v1/auth/token", "content-type").await;
        assert!(
            no_cors_headers(answer.headers()),
            "{origin}: {:?}",
            answer.headers()
        );
        assert_problem(answer, 400, "cross-origin-refused").await;
    }
    let answer = preflight(&app, PORTAL, "POST", "/v1/auth/token", "x-unheard-of").await;
    assert!(
        answer
            .headers()
            .get("access-control-allow-headers")
            .is_none()
    );
    assert_problem(answer, 400, "cross-origin-refused").await;
}

#[tokio::test]
async fn an_answer_to_a_named_origin_names_it_and_exposes_what_a_client_reads() {
    let app = portal_app().await;
    let token = app.admin_token().await;
    let owner = app.me(&token).await["node_id"].as_str().unwrap().to_owned();
    let created = app
        .client
        .post(app.url(&format!("/v1/nodes/{owner}/children")))
        .header("origin", PORTAL)
        .header("idempotency-key", "portal-create-1")
        .bearer_auth(&token)
        .json(&json!({"kind": "reseller", "name": "Through a portal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let headers = created.headers();
    assert_eq!(headers["access-control-allow-origin"], PORTAL);
    assert!(headers.get("access-control-allow-credentials").is_none());
    assert!(list(headers, "vary").contains(&"origin".to_owned()));
    let exposed = list(headers, "access-control-expose-headers");
    for header in [
        "etag",
        "location",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
        "content-disposition",
        "x-request-id",
    ] {
        assert!(exposed.contains(&header.to_owned()), "{exposed:?}");
    }
    // The headers exposed are there to be read.
    assert!(headers.get("etag").is_some() && headers.get("location").is_some());

    // An error, too, can be read by the page: a problem document with the CORS headers.
    let refused = app
        .client
        .get(app.url("/v1/me"))
        .header("origin", PORTAL)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.headers()["access-control-allow-origin"], PORTAL);
    assert!(
        list(refused.headers(), "access-control-expose-headers")
            .contains(&"www-authenticate".to_owned())
    );
    assert_problem(refused, 401, "unauthorized").await;

    // An error that is not a problem document when it leaves its handler (the docs' own 404)
    // becomes one, and keeps its CORS headers on the way.
    let missing = app
        .client
        .get(app.url("/docs/no-such-file.js"))
        .header("origin", PORTAL)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.headers()["access-control-allow-origin"], PORTAL);
    assert_problem(missing, 404, "not-found").await;

    // Another origin's page is served, but not named: a browser will not let it read the answer.
    let elsewhere = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 200);
    assert!(
        elsewhere
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.assert_verified();
}

#[tokio::test]
async fn without_cors_origins_no_cors_header_is_sent() {
    let app = spawn_app().await;
    let answer = preflight(&app, PORTAL, "POST", "/v1/auth/token", "content-type").await;
    assert!(no_cors_headers(answer.headers()), "{:?}", answer.headers());
    assert_ne!(answer.status(), 200);
    let plain = app
        .client
        .get(app.url("/healthz"))
        .header("origin", PORTAL)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(no_cors_headers(plain.headers()));
}
