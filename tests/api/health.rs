use std::time::Duration;

use allot::auth::jwt::Keys;
use allot::startup::Application;
use allot::store::{Manager, Pool};
use serde_json::Value;

use crate::helpers::{TestApp, TestDb, assert_problem, spawn_app, test_config};

#[tokio::test]
async fn healthz_answers_ok_with_a_fresh_request_id() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "a generated UUID, got {id}"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn a_callers_request_id_is_echoed_and_a_hostile_one_replaced() {
    let app = spawn_app().await;
    echoed(&app, "/healthz", "portal-trace-42").await;

    let long = "x".repeat(500);
    let response = app.get_with_header("/healthz", "x-request-id", &long).await;
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, long);
    assert!(uuid::Uuid::parse_str(id).is_ok());
}

#[tokio::test]
async fn error_responses_carry_the_request_id_too() {
    let app = spawn_app().await;
    let response = echoed(&app, "/no/such/route", "trace-404").await;
    assert_problem(response, 404, "not-found").await;
}

#[tokio::test]
async fn readyz_is_ok_while_the_database_answers() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_is_503_and_healthz_200_when_the_database_is_unreachable() {
    // A pool whose every connection attempt fails, as when the database server is down.
    let db = TestDb::new();
    let pool: Pool = Pool::builder()
        .connection_timeout(Duration::from_millis(300))
        .build_unchecked(Manager::new("postgres://allot@127.0.0.1:1/unreachable"));
    let sealer = allot::secret::Sealer::new(&[9; 32]);
    let app = Application::build(
        test_config(db.url()),
        pool,
        Keys::from_secret(&[9; 32]),
        sealer,
    )
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());

    let response = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_problem(response, 503, "unavailable").await;
    let response = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    // The check cannot know anything: it says so rather than answering from an empty index.
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/check"))
        .bearer_auth("allot_0196f3f0-0000-7000-8000-000000000000_secret")
        .json(&serde_json::json!({"direction": "inbound", "domain": "example.com"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 503, "unavailable").await;
    handle.stop(true).await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern_and_status() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    app.get("/problems/not-found").await;
    app.get("/problems/no-such-type").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains(
            r#"allot_http_requests_total{endpoint="/healthz",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"allot_http_requests_total{endpoint="/problems/{slug}",method="GET",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"allot_http_requests_total{endpoint="/problems/{slug}",method="GET",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("allot_http_requests_duration_seconds_bucket"),
        "{text}"
    );
}

/// GETs `path` with `id` as the caller's request id, asserts the answer echoes it, and returns the
/// answer.
async fn echoed(app: &TestApp, path: &str, id: &str) -> reqwest::Response {
    let response = app.get_with_header(path, "x-request-id", id).await;
    assert_eq!(response.headers()["x-request-id"], id);
    response
}
