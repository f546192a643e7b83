//! The tree: creating, reading, changing, listing, deleting and moving nodes.

use serde_json::{Value, json};

use crate::helpers::{admin_app, assert_problem, item_count, owner_app, problem_detail, texts};

#[tokio::test]
async fn an_admin_builds_the_tree_and_reads_it_back() {
    owner_app!(app, admin, owner);
    let response = admin
        .post(
            &format!("/v1/nodes/{owner}/children"),
            &json!({"kind": "reseller", "name": "  Müller & Söhne  ", "contact_phone": "+49 30 1234-567",
                    "contact_email": "ops@mueller.example", "description": "Our biggest"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/nodes/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["name"], "Müller & Söhne", "names are trimmed");
    assert_eq!(created["parent_id"], owner);
    assert_eq!(created["status"], "active");

    let read = admin.get_ok(&location).await;
    assert_eq!(read, created);
    app.assert_verified();
}

#[tokio::test]
async fn children_are_listed_in_pages_and_filtered() {
    owner_app!(app, admin, owner);
    for name in ["Alpha", "Beta", "Gamma"] {
        admin.create_child(&owner, "reseller", name).await;
    }
    admin
        .create_child(&owner, "customer", "alpine customer")
        .await;

    let mut names = Vec::new();
    let mut path = format!("/v1/nodes/{owner}/children?limit=3");
    loop {
        let page = admin.get_ok(&path).await;
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["name"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/nodes/{owner}/children?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["Alpha", "Beta", "Gamma", "alpine customer"]);

    let resellers = admin
        .get_ok(&format!("/v1/nodes/{owner}/children?kind=reseller"))
        .await;
    assert_eq!(item_count(&resellers), 3);
    let alp = admin
        .get_ok(&format!("/v1/nodes/{owner}/children?name_prefix=ALP"))
        .await;
    let alp: Vec<&str> = texts(&alp["items"], "name");
    assert_eq!(alp, ["Alpha", "alpine customer"]);
    let wildcard = admin
        .get_ok(&format!("/v1/nodes/{owner}/children?name_prefix=%25"))
        .await;
    assert_eq!(item_count(&wildcard), 0, "a % in the prefix is literal");

    admin
        .get_problem(
            &format!("/v1/nodes/{owner}/children?limit=0"),
            400,
            "invalid-query",
        )
        .await;
    admin
        .get_problem(
            &format!("/v1/nodes/{owner}/children?cursor=garbage"),
            400,
            "invalid-query",
        )
        .await;
    admin
        .get_problem(
            &format!("/v1/nodes/{owner}/children?kidn=reseller"),
            400,
            "invalid-query",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn customers_have_no_children_and_the_owner_exists_once() {
    owner_app!(app, admin, owner);
    let customer = admin.create_child(&owner, "customer", "Leaf").await;
    admin
        .post_invalid(
            &format!("/v1/nodes/{customer}/children"),
            &json!({"kind": "customer", "name": "Sub"}),
            "kind",
        )
        .await;
    admin
        .post_invalid(
            &format!("/v1/nodes/{owner}/children"),
            &json!({"kind": "owner", "name": "Second"}),
            "kind",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn sibling_names_are_unique_but_cousins_may_share_one() {
    owner_app!(app, admin, owner);
    let a = admin.create_child(&owner, "reseller", "A").await;
    let b = admin.create_child(&owner, "reseller", "B").await;
    admin.create_child(&a, "customer", "Shop").await;
    admin
        .post_problem(
            &format!("/v1/nodes/{a}/children"),
            &json!({"kind": "customer", "name": " Shop "}),
            409,
            "name-taken",
        )
        .await;
    admin.create_child(&b, "customer", "Shop").await;
    let renamed = admin
        .patch(&format!("/v1/nodes/{b}"), &json!({"name": "A"}))
        .await;
    assert_problem(renamed, 409, "name-taken").await;
    app.assert_verified();
}

#[tokio::test]
async fn every_invalid_field_is_named_and_nothing_is_created() {
    owner_app!(app, admin, owner);
    let body = admin
        .post_problem(
            &format!("/v1/nodes/{owner}/children"),
            &json!({"kind": "customer", "name": "bad/name", "contact_phone": "call me",
                        "contact_email": "nobody", "description": "bell\u{7}"}),
            422,
            "validation-failed",
        )
        .await;
    let mut fields: Vec<&str> = texts(&body["errors"], "field");
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["contact_email", "contact_phone", "description", "name"]
    );
    admin
        .post_invalid(
            &format!("/v1/nodes/{owner}/children"),
            &json!({"kind": "customer", "name": "x".repeat(101)}),
            "name",
        )
        .await;
    let children = admin.get_ok(&format!("/v1/nodes/{owner}/children")).await;
    assert_eq!(children["items"], json!([]));
    app.assert_verified();
}

#[tokio::test]
async fn patch_changes_only_what_is_sent_and_honours_if_match() {
    owner_app!(app, admin, owner);
    let node = admin.create_child(&owner, "customer", "Shop").await;
    let path = format!("/v1/nodes/{node}");
    let changed = admin
        .patch_ok(
            &path,
            &json!({"contact_email": "a@shop.example", "description": "first"}),
        )
        .await;
    assert_eq!(
        (changed["name"].as_str(), changed["version"].as_i64()),
        (Some("Shop"), Some(2))
    );
    let cleared = admin.patch_ok(&path, &json!({"description": null})).await;
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["contact_email"], "a@shop.example");

    let stale = admin
        .patch_if_match(&path, "\"1\"", &json!({"name": "Shop 2"}))
        .await;
    assert_problem(stale, 412, "precondition-failed").await;
    let fresh = admin
        .patch_if_match(&path, "\"3\"", &json!({"name": "Shop 2"}))
        .await;
    assert_eq!(fresh.headers()["etag"], "\"4\"");
    assert_eq!(admin.expect(fresh, 200).await["name"], "Shop 2");
    admin
        .patch_problem(&path, &json!({"version": 9}), 422, "validation-failed")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn suspending_takes_an_admin_above_the_node() {
    owner_app!(app, admin, owner);
    let node = admin.create_child(&owner, "reseller", "R").await;
    let suspended = admin
        .patch_node(&node, &json!({"status": "suspended"}))
        .await;
    assert_eq!(suspended["status"], "suspended");
    let own = admin
        .patch(
            &format!("/v1/nodes/{owner}"),
            &json!({"status": "suspended"}),
        )
        .await;
    assert_problem(own, 403, "forbidden").await;
    let renamed = admin
        .patch_ok(&format!("/v1/nodes/{owner}"), &json!({"name": "Operator"}))
        .await;
    assert_eq!(renamed["name"], "Operator", "a node's admins may rename it");
    let bad = admin
        .patch(&format!("/v1/nodes/{node}"), &json!({"status": "paused"}))
        .await;
    assert_problem(bad, 422, "validation-failed").await;
    app.assert_verified();
}

#[tokio::test]
async fn unknown_or_malformed_node_ids_are_404() {
    admin_app!(app, admin);
    admin
        .get_problem(
            &format!("/v1/nodes/{}", uuid::Uuid::now_v7()),
            404,
            "not-found",
        )
        .await;
    admin
        .get_problem("/v1/nodes/not-a-uuid", 404, "not-found")
        .await;
}

#[tokio::test]
async fn a_node_that_still_holds_something_is_not_deleted() {
    admin_app!(app, admin, tree);
    let body = admin
        .delete_problem(&format!("/v1/nodes/{}", tree.a), 409, "not-empty")
        .await;
    let detail = problem_detail(&body);
    assert!(
        detail.contains("1 child node") && detail.contains("live allocations"),
        "{detail}"
    );
    admin
        .delete_problem(&format!("/v1/nodes/{}", tree.owner), 403, "forbidden")
        .await;
    admin
        .delete_problem(
            &format!("/v1/nodes/{}?cascade=true", tree.a),
            422,
            "validation-failed",
        )
        .await;
    admin.get_ok(&format!("/v1/nodes/{}", tree.a)).await;
    app.assert_verified();
}

#[tokio::test]
async fn deleting_a_customer_returns_its_seats_and_frees_its_name() {
    admin_app!(app, admin, tree);
    assert_eq!(admin.usage(&tree.a1, "users").await["free"], 150);
    admin
        .delete_expect(&format!("/v1/nodes/{}", tree.c1), 204)
        .await;
    admin
        .assert_usage(
            &tree.a1,
            "users",
            "free",
            200,
            "C1's 50 users went back to A1",
        )
        .await;
    admin
        .get_problem(&format!("/v1/nodes/{}", tree.c1), 404, "not-found")
        .await;
    let allocations = admin
        .get(&format!("/v1/nodes/{}/allocations", tree.c1))
        .await;
    assert_problem(allocations, 404, "not-found").await;
    admin
        .create_child(&tree.a1, "customer", "Customer C1")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_customer_moves_with_its_allocations_to_a_parent_with_room() {
    admin_app!(app, admin, tree);
    let moved = admin
        .expect(admin.move_under(&tree.c1, &tree.b).await, 200)
        .await;
    assert_eq!(moved["parent_id"], tree.b);
    assert_eq!(admin.usage(&tree.a1, "users").await["allocated"], 0);
    assert_eq!(admin.usage(&tree.b, "users").await["allocated"], 90);
    admin
        .assert_usage(
            &tree.c1,
            "users",
            "limit",
            50,
            "the customer's limit is unchanged",
        )
        .await;
    let grantors = admin
        .list_texts(&tree.c1, "allocations?resource=users", "grantor_id")
        .await;
    assert_eq!(
        grantors,
        [tree.a1.as_str(), tree.b.as_str()],
        "the old grant is kept, ended or deactivated"
    );
    let children = admin
        .get_ok(&format!("/v1/nodes/{}/children", tree.b))
        .await;
    assert_eq!(item_count(&children), 2);
    app.assert_verified();
}

#[tokio::test]
async fn a_move_is_refused_when_the_new_parent_lacks_room_and_changes_nothing() {
    admin_app!(app, admin, tree);
    // B has 300 users and gave C2 40; A (with A1's 200 inside) does not fit.
    let body = assert_problem(
        admin.move_under(&tree.a, &tree.b).await,
        409,
        "quota-exceeded",
    )
    .await;
    // Resources are checked in order: domains first (B has 30, gave 4; A holds 50).
    assert_eq!(body["node_id"], tree.b);
    assert_eq!(body["resource"], "domains");
    assert_eq!(
        (
            body["limit"].as_i64(),
            body["requested"].as_i64(),
            body["available"].as_i64()
        ),
        (Some(30), Some(50), Some(26))
    );
    let a = admin.get_ok(&format!("/v1/nodes/{}", tree.a)).await;
    assert_eq!(a["parent_id"], tree.owner);
    assert_eq!(admin.usage(&tree.b, "users").await["allocated"], 40);
    app.assert_verified();
}

#[tokio::test]
async fn a_node_cannot_move_under_itself_or_a_customer() {
    admin_app!(app, admin, tree);
    let body = assert_problem(
        admin.move_under(&tree.a, &tree.a1).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "parent_id");
    assert_problem(
        admin.move_under(&tree.c2, &tree.c1).await,
        422,
        "validation-failed",
    )
    .await;
    assert_problem(
        admin.move_under(&tree.owner, &tree.a).await,
        403,
        "forbidden",
    )
    .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_moved_reseller_takes_its_subtree_along() {
    admin_app!(app, admin, tree);
    admin
        .expect(admin.move_under(&tree.a1, &tree.owner).await, 200)
        .await;
    let children = admin
        .get_ok(&format!("/v1/nodes/{}/children", tree.owner))
        .await;
    assert_eq!(item_count(&children), 3);
    // C1 is still A1's child and is now outside A: its usage counts at the owner, not at A.
    let c1 = admin.get_ok(&format!("/v1/nodes/{}", tree.c1)).await;
    assert_eq!(c1["parent_id"], tree.a1);
    assert_eq!(admin.usage(&tree.a, "users").await["allocated"], 0);
    assert_eq!(admin.usage(&tree.owner, "users").await["allocated"], 1000);
    app.assert_verified();
}
