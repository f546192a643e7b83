//! Allocations down the tree and the invariant that no node hands out more than it holds.

use std::collections::HashMap;

use chrono::{Days, Utc};
use serde_json::{Value, json};

use crate::helpers::{admin_app, assert_problem, item_count, owner_app, problem_detail, texts};

fn in_days(days: u64) -> String {
    (Utc::now().date_naive() + Days::new(days)).to_string()
}

#[tokio::test]
async fn a_grant_within_what_the_parent_holds_is_made_and_counted() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c2);
    let (location, created) = admin
        .post_created(
            &path,
            &json!({"resource": "users", "amount": 60, "description": "upsell"}),
        )
        .await;
    assert_eq!(created["grantor_id"], tree.b);
    assert_eq!(created["starts_on"], Utc::now().date_naive().to_string());
    assert_eq!(created["ends_on"], Value::Null);
    assert_eq!(admin.get_ok(&location).await, created);
    let b = admin.usage(&tree.b, "users").await;
    assert_eq!(
        (
            b["limit"].as_i64(),
            b["allocated"].as_i64(),
            b["free"].as_i64()
        ),
        (Some(300), Some(100), Some(200))
    );
    assert_eq!(admin.usage(&tree.c2, "users").await["limit"], 100);
    app.assert_verified();
}

#[tokio::test]
async fn a_grant_beyond_what_the_parent_has_left_is_refused_with_the_figures() {
    admin_app!(app, admin, tree);
    let body = admin
        .allocate_problem(&tree.c1, "users", 151, 409, "quota-exceeded")
        .await;
    assert_eq!(body["node_id"], tree.a1);
    assert_eq!(body["resource"], "users");
    assert_eq!(body["at"], Utc::now().date_naive().to_string());
    assert_eq!(
        (
            body["limit"].as_i64(),
            body["requested"].as_i64(),
            body["available"].as_i64()
        ),
        (Some(200), Some(151), Some(150))
    );
    admin.grant(&tree.c1, "users", 150).await;
    admin
        .allocate_problem(&tree.c1, "users", 1, 409, "quota-exceeded")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_grant_that_outlives_the_parents_own_grant_is_refused_at_the_day_it_breaks() {
    owner_app!(app, admin, owner);
    let end = in_days(30);
    admin
        .set_licence(json!([{"resource": "users", "amount": 100, "ends_on": end}]))
        .await;
    let r = admin.create_child(&owner, "reseller", "R").await;
    let body = admin
        .allocate_problem(&r, "users", 10, 409, "quota-exceeded")
        .await;
    assert_eq!(body["at"], end);
    assert_eq!(
        (body["limit"].as_i64(), body["available"].as_i64()),
        (Some(0), Some(0))
    );
    let bounded = admin
        .post(
            &format!("/v1/nodes/{r}/allocations"),
            &json!({"resource": "users", "amount": 100, "ends_on": end}),
        )
        .await;
    admin.expect(bounded, 201).await;
    let later = admin
        .post(
            &format!("/v1/nodes/{r}/allocations"),
            &json!({"resource": "users", "amount": 1, "starts_on": in_days(40)}),
        )
        .await;
    let body = assert_problem(later, 409, "quota-exceeded").await;
    assert_eq!(body["at"], in_days(40));
    app.assert_verified();
}

#[tokio::test]
async fn limits_follow_the_calendar() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c1);
    admin.post_expect(&path, &json!({"resource": "users", "amount": 20, "starts_on": in_days(10), "ends_on": in_days(20)}), 201).await;
    let at = |day: u64| format!("/v1/nodes/{}/usage?at={}", tree.c1, in_days(day));
    for (day, limit) in [(0, 50), (10, 70), (19, 70), (20, 50)] {
        let report = admin.get_ok(&at(day)).await;
        let users = report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "users")
            .unwrap();
        assert_eq!(users["limit"], limit, "day {day}");
    }
    let valid = admin
        .get_ok(&format!("{path}?valid_on={}", in_days(15)))
        .await;
    assert_eq!(
        item_count(&valid),
        4,
        "users 50 and 20, module:base 50, domains 5"
    );
    admin
        .get_problem(
            &format!("/v1/nodes/{}/usage?at=yesterday", tree.c1),
            400,
            "invalid-query",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn lowering_or_ending_a_grant_below_what_the_children_hold_is_refused() {
    admin_app!(app, admin, tree);
    let grant = admin.grant_id(&tree.a1, "users").await;
    let path = format!("/v1/allocations/{grant}");
    let body = admin
        .patch_problem(&path, &json!({"amount": 49}), 409, "quota-exceeded")
        .await;
    assert_eq!(body["node_id"], tree.a1);
    assert_eq!(
        (body["limit"].as_i64(), body["requested"].as_i64()),
        (Some(49), Some(50))
    );
    admin
        .patch_problem(&path, &json!({"active": false}), 409, "quota-exceeded")
        .await;
    admin
        .patch_problem(
            &path,
            &json!({"ends_on": in_days(5)}),
            409,
            "quota-exceeded",
        )
        .await;
    let lowered = admin.patch_ok(&path, &json!({"amount": 50})).await;
    assert_eq!(
        (lowered["amount"].as_i64(), lowered["version"].as_i64()),
        (Some(50), Some(2))
    );
    let raised = admin.patch(&path, &json!({"amount": 501})).await;
    let body = assert_problem(raised, 409, "quota-exceeded").await;
    assert_eq!(body["node_id"], tree.a);
    app.assert_verified();
}

#[tokio::test]
async fn allocation_changes_honour_if_match_and_keep_history() {
    admin_app!(app, admin, tree);
    let created = admin.grant(&tree.c2, "domains", 3).await;
    let path = format!("/v1/allocations/{}", created["id"].as_str().unwrap());
    assert_problem(
        admin
            .patch_if_match(&path, "\"7\"", &json!({"amount": 2}))
            .await,
        412,
        "precondition-failed",
    )
    .await;
    let ended = admin
        .expect(
            admin
                .patch_if_match(
                    &path,
                    "\"1\"",
                    &json!({"active": false, "description": "cancelled"}),
                )
                .await,
            200,
        )
        .await;
    assert_eq!(ended["active"], false);
    let all = admin
        .get_ok(&format!(
            "/v1/nodes/{}/allocations?resource=domains",
            tree.c2
        ))
        .await;
    assert_eq!(item_count(&all), 2, "an ended allocation is kept");
    let active = admin
        .get_ok(&format!(
            "/v1/nodes/{}/allocations?resource=domains&active=true",
            tree.c2
        ))
        .await;
    assert_eq!(item_count(&active), 1);
    app.assert_verified();
}

#[tokio::test]
async fn no_node_raises_its_own_limits() {
    owner_app!(app, admin, owner);
    admin
        .set_licence(json!([{"resource": "users", "amount": 10}]))
        .await;
    let body = admin
        .allocate_problem(&owner, "users", 5, 403, "forbidden")
        .await;
    assert!(problem_detail(&body).contains("own"));
    app.assert_verified();
}

#[tokio::test]
async fn bad_allocations_are_refused_field_by_field() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c1);
    let body = admin.post_problem(&path, &json!({"resource": "users", "amount": -1, "starts_on": in_days(5), "ends_on": in_days(5)}), 422, "validation-failed").await;
    let fields: Vec<&str> = texts(&body["errors"], "field");
    assert_eq!(fields, ["amount", "ends_on"]);
    for resource in ["mailboxes", "module:teleport", "module:"] {
        let body = admin
            .post_problem(
                &path,
                &json!({"resource": resource, "amount": 1}),
                422,
                "validation-failed",
            )
            .await;
        assert_eq!(body["errors"][0]["field"], "resource", "{resource}");
    }
    admin
        .post_invalid(
            &path,
            &json!({"resource": "users", "amount": "many"}),
            "amount",
        )
        .await;
    admin
        .post_problem(
            &path,
            &json!({"resource": "users", "amount": 1, "starts_on": "2026-02-30"}),
            422,
            "validation-failed",
        )
        .await;
    let all = admin.get_ok(&path).await;
    assert_eq!(item_count(&all), 3, "nothing was added");
    app.assert_verified();
}

#[tokio::test]
async fn module_seats_flow_down_the_tree_like_any_resource() {
    owner_app!(app, admin, owner);
    admin
        .set_licence(json!([{"resource": "module:lft", "amount": 5}]))
        .await;
    let r = admin.create_child(&owner, "reseller", "R").await;
    admin.grant(&r, "module:lft", 5).await;
    admin
        .allocate_problem(&r, "module:lft", 1, 409, "quota-exceeded")
        .await;
    assert_eq!(admin.usage(&owner, "module:lft").await["free"], 0);
    app.assert_verified();
}

#[tokio::test]
async fn the_licence_is_replaced_from_today_and_never_below_what_was_allocated() {
    admin_app!(app, admin, tree);
    let licence = admin.get_ok("/v1/licence").await;
    assert_eq!(licence["owner_id"], tree.owner);
    let amounts: HashMap<String, i64> = licence["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["resource"].as_str().unwrap().to_owned(),
                l["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        amounts,
        HashMap::from([
            ("users".to_owned(), 1000),
            ("domains".to_owned(), 100),
            ("module:base".to_owned(), 1000)
        ])
    );

    let body = admin.put_problem("/v1/licence", &json!({"resources": [{"resource": "users", "amount": 799}, {"resource": "domains", "amount": 100}, {"resource": "module:base", "amount": 1000}]}), 409, "quota-exceeded").await;
    assert_eq!(
        (
            body["resource"].as_str(),
            body["limit"].as_i64(),
            body["requested"].as_i64()
        ),
        (Some("users"), Some(799), Some(800))
    );
    let body = admin
        .put_problem(
            "/v1/licence",
            &json!({"resources": [{"resource": "users", "amount": 800}]}),
            409,
            "quota-exceeded",
        )
        .await;
    assert_eq!(
        body["resource"], "domains",
        "a resource left out ends today"
    );
    let body = admin.put_problem("/v1/licence", &json!({"resources": [{"resource": "users", "amount": 1}, {"resource": "users", "amount": 2}, {"resource": "seats", "amount": 1}]}), 422, "validation-failed").await;
    let fields: Vec<&str> = texts(&body["errors"], "field");
    assert_eq!(fields, ["resources[1].resource", "resources[2].resource"]);

    let grown = admin.set_licence(json!([{"resource": "users", "amount": 2000}, {"resource": "domains", "amount": 100}, {"resource": "module:base", "amount": 1000}, {"resource": "module:lft", "amount": 10}])).await;
    assert_eq!(grown["resources"].as_array().unwrap().len(), 4);
    assert_eq!(admin.usage(&tree.owner, "users").await["free"], 1200);
    app.assert_verified();
}

#[tokio::test]
async fn racing_clients_never_oversell_the_last_units() {
    owner_app!(app, admin, owner);
    admin
        .set_licence(json!([{"resource": "users", "amount": 10}]))
        .await;
    let reseller = admin.create_child(&owner, "reseller", "R").await;
    admin.grant(&reseller, "users", 10).await;
    let mut customers = Vec::new();
    for i in 0..32 {
        customers.push(
            admin
                .create_child(&reseller, "customer", &format!("Customer {i}"))
                .await,
        );
    }
    let attempts = customers.iter().map(|customer| {
        let admin = &admin;
        async move { admin.allocate(customer, "users", 1).await }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let mut granted = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => granted += 1,
            409 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["type"], "/problems/quota-exceeded");
                assert_eq!(body["node_id"], reseller);
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert_eq!(granted, 10, "exactly the units there were");
    assert_eq!(admin.usage(&reseller, "users").await["allocated"], 10);
    app.assert_verified();
}

#[tokio::test]
async fn dates_beyond_the_year_9999_are_refused_not_stored() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c1);
    admin
        .post_invalid(
            &path,
            &json!({"resource": "users", "amount": 1, "ends_on": "+10000-01-01"}),
            "ends_on",
        )
        .await;
    admin
        .get_problem(
            &format!("/v1/nodes/{}/usage?at=%2B10000-01-01", tree.c1),
            400,
            "invalid-query",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_start_day_out_of_range_is_reported_under_starts_on() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/allocations", tree.c1);
    let fields = |body: &Value| -> Vec<String> {
        body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    };
    let body = admin
        .post_problem(
            &path,
            &json!({"resource": "users", "amount": 1, "starts_on": "0000-01-01"}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(fields(&body), ["starts_on"], "{body}");
    // Both days out of range: each under its own name.
    let body = admin.post_problem(&path,
                &json!({"resource": "users", "amount": 1, "starts_on": "0000-01-01", "ends_on": "+10000-01-01"}), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["starts_on", "ends_on"], "{body}");
    // A change names the field it got wrong too.
    let created = admin
        .post_expect(&path, &json!({"resource": "users", "amount": 1}), 201)
        .await;
    let one = format!("/v1/allocations/{}", created["id"].as_str().unwrap());
    let body = admin
        .patch_problem(
            &one,
            &json!({"starts_on": "0000-01-01"}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(fields(&body), ["starts_on"], "{body}");
    let body = admin
        .patch_problem(
            &one,
            &json!({"ends_on": created["starts_on"]}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(fields(&body), ["ends_on"], "{body}");
    let read = admin.get_ok(&one).await;
    assert_eq!(read, created, "nothing was changed");
    app.assert_verified();
}

#[tokio::test]
async fn putting_the_licence_back_as_read_does_not_count_past_days_twice() {
    owner_app!(app, admin, owner);
    let lines = json!([{"resource": "users", "amount": 100, "starts_on": "2026-01-01"}]);
    admin.set_licence(lines.clone()).await;
    admin.set_licence(lines).await;
    let report = admin
        .get_ok(&format!("/v1/nodes/{owner}/usage?at=2026-06-01"))
        .await;
    assert_eq!(report["resources"][0]["limit"], 100);
    let licence = admin.get_ok("/v1/licence").await;
    assert_eq!(licence["resources"].as_array().unwrap().len(), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_weak_etag_never_matches_if_match() {
    admin_app!(app, admin, tree);
    let node = format!("/v1/nodes/{}", tree.c1);
    assert_problem(
        admin
            .patch_if_match(&node, "W/\"1\"", &json!({"description": "x"}))
            .await,
        412,
        "precondition-failed",
    )
    .await;
    admin
        .expect(
            admin
                .patch_if_match(&node, "\"1\"", &json!({"description": "x"}))
                .await,
            200,
        )
        .await;
    app.assert_verified();
}
