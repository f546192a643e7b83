//! Every way a request can be wrong gets a problem document, never HTML or an empty body.

use serde_json::{Value, json};

use crate::helpers::{assert_problem, first_error, problem_detail, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let body = assert_problem(app.get("/v1/nothing-here").await, 404, "not-found").await;
    assert!(problem_detail(&body).contains("/v1/nothing-here"));
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    let response = app
        .client
        .delete(app.url("/v1/auth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_problem(response, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let response = app
        .post_raw(
            "/v1/auth/token",
            "application/json",
            r#"{"username": "admin", "password": "#,
        )
        .await;
    assert_problem(response, 400, "malformed-body").await;
}

#[tokio::test]
async fn invalid_utf8_in_json_is_a_400_problem() {
    let app = spawn_app().await;
    let response = app
        .post_raw(
            "/v1/auth/token",
            "application/json",
            b"{\"username\": \"adm\xffin\", \"password\": \"x\"}".to_vec(),
        )
        .await;
    assert_problem(response, 400, "malformed-body").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_by_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let response = app
        .post_raw(
            "/v1/auth/token",
            "text/plain",
            r#"{"username": "admin", "password": "x"}"#,
        )
        .await;
    assert_problem(response, 415, "unsupported-media-type").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app_with(|config| config.body_limit = 256).await;
    let padding = "p".repeat(1000);
    let response = app
        .post_json(
            "/v1/auth/token",
            &json!({"username": "admin", "password": padding}),
        )
        .await;
    let body = assert_problem(response, 413, "payload-too-large").await;
    assert!(problem_detail(&body).contains("256"));
}

#[tokio::test]
async fn a_missing_field_is_a_422_problem_naming_it() {
    let app = spawn_app().await;
    let response = app
        .post_json("/v1/auth/token", &json!({"username": "admin"}))
        .await;
    let body = assert_problem(response, 422, "validation-failed").await;
    assert_eq!(body["errors"][0]["field"], "password");
}

#[tokio::test]
async fn an_unknown_field_is_refused_not_ignored() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/auth/token",
            &json!({"username": "admin", "password": "x", "role": "admin"}),
        )
        .await;
    let body = assert_problem(response, 422, "validation-failed").await;
    assert!(first_error(&body).contains("role"), "{body}");
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_named() {
    let app = spawn_app().await;
    let response = app
        .post_json("/v1/auth/token", &json!({"username": 42, "password": "x"}))
        .await;
    let body = assert_problem(response, 422, "validation-failed").await;
    assert_eq!(body["errors"][0]["field"], "username");
}

#[tokio::test]
async fn every_problem_type_sent_resolves_to_its_description() {
    let app = spawn_app().await;
    let problem = assert_problem(app.get("/nowhere").await, 404, "not-found").await;
    let response = app.get(problem["type"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["type"], "/problems/not-found");
    assert!(doc["description"].as_str().unwrap().len() > 20);

    for slug in [
        "validation-failed",
        "unauthorized",
        "unavailable",
        "internal",
        "payload-too-large",
    ] {
        assert_eq!(
            app.get(&format!("/problems/{slug}")).await.status(),
            200,
            "{slug}"
        );
    }
    assert_problem(app.get("/problems/no-such-slug").await, 404, "not-found").await;
}
