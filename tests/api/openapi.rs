//! The committed OpenAPI document is what the code serves.

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = allot::api::openapi_json(&allot::api::openapi());
    assert!(
        generated == COMMITTED,
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_openapi_3_1() {
    let app = spawn_app().await;
    let response = served(&app, "/openapi.json", 200).await;
    let served: Value = response.json().await.unwrap();
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(served, committed);
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[test]
fn every_error_response_in_the_document_is_a_problem() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object();
                    assert!(
                        content.is_some_and(|c| c.contains_key("application/problem+json")),
                        "{method} {path} {status} is not documented as a problem"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_interactive_docs_are_served_without_the_internet() {
    let app = spawn_app().await;
    let response = served(&app, "/docs", 308).await;
    assert_eq!(response.headers()["location"], "/docs/");
    let response = served(&app, "/docs/", 200).await;
    let page = response.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    // The page's script is served by allot itself, not from a CDN.
    served(&app, "/docs/swagger-ui-bundle.js", 200).await;
    let config = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
}

/// GETs `path`, asserts the answer has `status`, and returns it.
async fn served(app: &TestApp, path: &str, status: u16) -> reqwest::Response {
    let response = app.get(path).await;
    assert_eq!(response.status(), status);
    response
}
