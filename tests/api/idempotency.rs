//! `Idempotency-Key`: a billing system's retry never books twice.

use serde_json::{Value, json};

use crate::helpers::{admin_app, assert_problem, item_count, owner_app};

#[tokio::test]
async fn a_retried_create_replays_the_first_answer_and_creates_once() {
    owner_app!(app, admin, owner);
    let path = format!("/v1/nodes/{owner}/children");
    let body = json!({"kind": "customer", "name": "Retry GmbH"});
    let first = admin.post_with_key(&path, "order-4711", &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();

    let again = admin.post_with_key(&path, "order-4711", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.headers()["etag"], "\"1\"");
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let children = admin.get_ok(&path).await;
    assert_eq!(item_count(&children), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    owner_app!(app, admin, owner);
    let path = format!("/v1/nodes/{owner}/children");
    admin
        .expect(
            admin
                .post_with_key(&path, "k-1", &json!({"kind": "customer", "name": "One"}))
                .await,
            201,
        )
        .await;
    let other = admin
        .post_with_key(&path, "k-1", &json!({"kind": "customer", "name": "Two"}))
        .await;
    assert_problem(other, 422, "idempotency-key-reused").await;
    let too_long = admin
        .post_with_key(
            &path,
            &"k".repeat(256),
            &json!({"kind": "customer", "name": "Three"}),
        )
        .await;
    let body = assert_problem(too_long, 422, "validation-failed").await;
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
    let children = admin.get_ok(&path).await;
    assert_eq!(item_count(&children), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_retried_grant_of_the_last_units_is_replayed_not_refused() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c1);
    let body = json!({"resource": "users", "amount": 150});
    let first = admin
        .expect(admin.post_with_key(&path, "invoice-1", &body).await, 201)
        .await;
    let again = admin
        .expect(admin.post_with_key(&path, "invoice-1", &body).await, 201)
        .await;
    assert_eq!(first, again);
    admin
        .assert_usage(&tree.a1, "users", "free", 0, "booked once")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_refused_request_is_not_recorded_and_may_be_retried() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c1);
    let body = json!({"resource": "users", "amount": 200});
    assert_problem(
        admin.post_with_key(&path, "invoice-2", &body).await,
        409,
        "quota-exceeded",
    )
    .await;
    admin.set_grant(&tree.a1, "users", 300).await;
    let retried = admin.post_with_key(&path, "invoice-2", &body).await;
    assert!(retried.headers().get("idempotent-replayed").is_none());
    admin.expect(retried, 201).await;
    app.assert_verified();
}
