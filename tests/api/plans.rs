//! Plans (issue 16): named bundles a node sells, versioned, applied to customers through the
//! allocation, module and settings workflows, in one transaction each.

use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, item_count, owner_app};
use crate::principals::api_key;

/// A licence of 1,000 of everything a customer on the test plans takes.
async fn licensed(admin: &Caller<'_>) {
    admin
        .set_licence_of(
            &["users", "domains", "module:base", "module:branding"],
            1000,
        )
        .await;
}

/// Counts the audit events of `action` behind the app's back.
fn events(app: &TestApp, action: &str) -> i64 {
    app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}'"
    ))
}

/// A reseller under the owner holding `users` users (and room for the rest).
async fn reseller(admin: &Caller<'_>, owner: &str, name: &str, users: i64) -> String {
    let reseller = admin.create_child(owner, "reseller", name).await;
    admin.grant(&reseller, "users", users).await;
    for resource in ["domains", "module:base", "module:branding"] {
        admin.grant(&reseller, resource, 100).await;
    }
    reseller
}

/// A plan body: `users` users (and as many `module:base` seats), 2 domains, branding.
fn plan_body(code: &str, users: i64) -> Value {
    json!({
        "code": code,
        "name": format!("Plan {code}"),
        "resources": {"users": users, "module:base": users, "domains": 2, "module:branding": 1},
        "modules": ["branding"],
        "settings": {"max_aliases_per_mailbox": 3, "inbound_recipients": "known"},
    })
}

/// Defines a plan at `node`; returns it.
async fn define(admin: &Caller<'_>, node: &str, body: &Value) -> Value {
    admin
        .post_expect(&format!("/v1/nodes/{node}/plans"), body, 201)
        .await
}

/// Puts `customer` on `plan`; returns the answer.
async fn apply(admin: &Caller<'_>, customer: &str, plan: &Value) -> Value {
    admin
        .put_expect(
            &format!("/v1/nodes/{customer}/plan"),
            &json!({"plan": plan["id"]}),
            200,
        )
        .await
}

/// The live allocations to `node`, as (resource, amount), sorted.
async fn live(admin: &Caller<'_>, node: &str) -> Vec<(String, i64)> {
    let today = chrono::Utc::now().date_naive();
    let listed = admin
        .get_ok(&format!(
            "/v1/nodes/{node}/allocations?valid_on={today}&active=true"
        ))
        .await;
    let mut rows: Vec<(String, i64)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["resource"].as_str().unwrap().to_owned(),
                a["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// The per-customer modules `customer` holds.
async fn modules_of(admin: &Caller<'_>, customer: &str) -> Vec<String> {
    let held = admin.get_ok(&format!("/v1/nodes/{customer}/modules")).await;
    held["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_plan_is_defined_changed_in_versions_read_and_listed() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let seller = reseller(&admin, &owner, "Seller", 100).await;
    let path = format!("/v1/nodes/{seller}/plans");

    // Defined once per key: a replay answers the same plan.
    let body = plan_body("basic", 10);
    let first = admin.post_with_key(&path, "plan-basic", &body).await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let plan: Value = first.json().await.unwrap();
    let again: Value = admin
        .post_with_key(&path, "plan-basic", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], plan["id"]);
    assert_eq!(
        location,
        format!("/v1/plans/{}", plan["id"].as_str().unwrap())
    );
    assert_eq!(plan["node_id"], seller);
    assert_eq!(plan["current"]["number"], 1);
    assert_eq!(plan["current"]["resources"]["users"], 10);
    assert_eq!(plan["current"]["modules"], json!(["branding"]));
    assert_eq!(plan["current"]["settings"]["inbound_recipients"], "known");
    assert_eq!(plan["current"]["term_months"], Value::Null);
    assert_eq!(events(&app, "plan.create"), 1);

    // The code is the node's own: taken there, free elsewhere.
    admin
        .post_problem(&path, &plan_body("basic", 5), 409, "name-taken")
        .await;
    define(&admin, &owner, &plan_body("basic", 5)).await;

    // Bad content is refused field by field, and changes nothing.
    for (body, field) in [
        (
            json!({"code": "Bad Code", "name": "X", "resources": {}}),
            "code",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {"seats": 1}}),
            "resources.seats",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {"users": -1}}),
            "resources.users",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {"module:nope": 1}}),
            "resources.module:nope",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {}, "modules": ["branding"]}),
            "modules.branding",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {"module:lft": 1}, "modules": ["lft"]}),
            "modules.lft",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {}, "term_months": 0}),
            "term_months",
        ),
        (
            json!({"code": "x", "name": "X", "resources": {}, "settings": {"max_aliases_per_mailbox": 5000}}),
            "settings.max_aliases_per_mailbox",
        ),
    ] {
        let problem = admin
            .post_problem(&path, &body, 422, "validation-failed")
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    assert_eq!(events(&app, "plan.create"), 2);

    // A change of name is no new version; a change of content is, and the old one is kept.
    let plan_path = format!("/v1/plans/{}", plan["id"].as_str().unwrap());
    let renamed = admin
        .patch_ok(&plan_path, &json!({"name": "Basic mail"}))
        .await;
    assert_eq!(
        (
            renamed["current"]["number"].as_i64(),
            renamed["version"].as_i64()
        ),
        (Some(1), Some(2))
    );
    let stale = admin
        .patch_if_match(&plan_path, "\"1\"", &json!({"description": "stale"}))
        .await;
    assert_eq!(stale.status(), 412);
    let changed = admin
        .patch_if_match(
            &plan_path,
            "\"2\"",
            &json!({"resources": {"users": 20, "module:base": 20, "domains": 2, "module:branding": 1}, "term_months": 12}),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(changed.headers()["etag"], "\"3\"");
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(changed["current"]["number"], 2);
    assert_eq!(changed["current"]["term_months"], 12);
    assert_eq!(
        changed["current"]["modules"],
        json!(["branding"]),
        "what was not sent stays"
    );
    let versions = admin.get_ok(&format!("{plan_path}/versions")).await;
    assert_eq!(item_count(&versions), 2);
    assert_eq!(versions["items"][0]["resources"]["users"], 10);
    assert_eq!(versions["items"][1]["resources"]["users"], 20);
    let paged = admin.get_ok(&format!("{plan_path}/versions?limit=1")).await;
    let cursor = paged["next_cursor"].as_str().unwrap().to_owned();
    let second = admin
        .get_ok(&format!("{plan_path}/versions?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(second["items"][0]["number"], 2);
    assert_eq!(admin.get_ok(&plan_path).await, changed);
    assert_eq!(events(&app, "plan.update"), 2);

    // Listing: the node's own, or with its ancestors'.
    let own = admin.get_ok(&format!("{path}?own=true")).await;
    assert_eq!(item_count(&own), 1);
    let available = admin.get_ok(&path).await;
    assert_eq!(item_count(&available), 2);
    let page = admin.get_ok(&format!("{path}?limit=1")).await;
    assert_eq!(item_count(&page), 1);
    assert!(page["next_cursor"].is_string());

    // An unused plan is deleted; retiring is audited as such.
    let spare = define(&admin, &seller, &plan_body("spare", 1)).await;
    let spare_path = format!("/v1/plans/{}", spare["id"].as_str().unwrap());
    let retired = admin.patch_ok(&spare_path, &json!({"retired": true})).await;
    assert_eq!(retired["retired"], true);
    assert_eq!(events(&app, "plan.retire"), 1);
    admin.delete_expect(&spare_path, 204).await;
    admin.get_problem(&spare_path, 404, "not-found").await;
    assert_eq!(events(&app, "plan.delete"), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_plan_is_visible_to_its_subtree_and_applied_only_within_its_lineage() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let a = reseller(&admin, &owner, "A", 100).await;
    let b = reseller(&admin, &owner, "B", 100).await;
    let a1 = admin.create_child(&a, "reseller", "A1").await;
    for resource in ["users", "domains", "module:base", "module:branding"] {
        admin.grant(&a1, resource, 50).await;
    }
    let c1 = admin.create_child(&a1, "customer", "C1").await;
    let c2 = admin.create_child(&b, "customer", "C2").await;
    let plan = define(&admin, &a, &plan_body("a-basic", 10)).await;
    let plan_path = format!("/v1/plans/{}", plan["id"].as_str().unwrap());

    // Read below (A1, C1) and above; not beside (B, C2).
    let (at_a1, _) = api_key(&app, &admin, &a1, "admin").await;
    let (at_c1, _) = api_key(&app, &admin, &c1, "viewer").await;
    let (at_b, _) = api_key(&app, &admin, &b, "admin").await;
    at_a1.get_expect(&plan_path, 200).await;
    at_c1.get_expect(&plan_path, 200).await;
    at_b.get_problem(&plan_path, 404, "not-found").await;
    at_b.get_problem(&format!("{plan_path}/versions"), 404, "not-found")
        .await;
    // Below the definer it is read, not changed.
    at_a1
        .patch_problem(&plan_path, &json!({"name": "Mine"}), 403, "forbidden")
        .await;
    at_a1.delete_problem(&plan_path, 403, "forbidden").await;
    // The plans available at A1 include A's.
    let listed = at_a1.get_ok(&format!("/v1/nodes/{a1}/plans")).await;
    assert_eq!(listed["items"][0]["id"], plan["id"]);

    // A1 applies its ancestor's plan to its own customer; B cannot apply it (404), and the owner
    // cannot apply it outside A's lineage (422).
    let applied = at_a1
        .put_expect(
            &format!("/v1/nodes/{c1}/plan"),
            &json!({"plan": plan["id"]}),
            200,
        )
        .await;
    assert_eq!(applied["plan"]["code"], "a-basic");
    at_b.put_problem(
        &format!("/v1/nodes/{c2}/plan"),
        &json!({"plan": plan["id"]}),
        404,
        "not-found",
    )
    .await;
    let problem = admin
        .put_problem(
            &format!("/v1/nodes/{c2}/plan"),
            &json!({"plan": plan["id"]}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(problem["errors"][0]["field"], "plan");
    // The customer's own admins cannot put it on a plan: that is its parent side's.
    let (c1_admin, _) = api_key(&app, &admin, &c1, "admin").await;
    c1_admin
        .put_problem(
            &format!("/v1/nodes/{c1}/plan"),
            &json!({"plan": plan["id"]}),
            403,
            "forbidden",
        )
        .await;
    assert!(live(&admin, &c2).await.is_empty());
    app.assert_verified();
}

#[tokio::test]
async fn applying_grants_assigns_and_sets_and_a_downgrade_must_fit() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let seller = reseller(&admin, &owner, "Seller", 100).await;
    let customer = admin.create_child(&seller, "customer", "Customer").await;
    let small = define(&admin, &seller, &plan_body("small", 2)).await;
    let large = define(&admin, &seller, &plan_body("large", 10)).await;

    let applied = apply(&admin, &customer, &small).await;
    assert_eq!(applied["plan"]["version"], 1);
    assert_eq!(applied["allocations"].as_array().unwrap().len(), 4);
    assert_eq!(
        live(&admin, &customer).await,
        [
            ("domains".to_owned(), 2),
            ("module:base".to_owned(), 2),
            ("module:branding".to_owned(), 1),
            ("users".to_owned(), 2)
        ]
    );
    assert_eq!(modules_of(&admin, &customer).await, ["branding"]);
    let node = admin.get_ok(&format!("/v1/nodes/{customer}")).await;
    assert_eq!(
        (
            node["max_aliases_per_mailbox"].as_i64(),
            node["inbound_recipients"].as_str()
        ),
        (Some(3), Some("known"))
    );
    assert_eq!(
        node["plan"],
        json!({"id": small["id"], "code": "small", "version": 1})
    );
    let stats = admin
        .get_ok(&format!("/v1/nodes/{seller}/statistics"))
        .await;
    assert_eq!(stats["items"][0]["plan"]["code"], "small");
    assert_eq!(events(&app, "plan.apply"), 1);

    // Upgrade: at once, the small plan's grants ended, the large one's granted.
    admin.register_domain(&customer, "c.example").await;
    for user in ["a", "b"] {
        admin
            .create_mailbox(&customer, &format!("{user}@c.example"))
            .await;
    }
    admin
        .create_mailbox_problem(&customer, "c@c.example", 409, "quota-exceeded")
        .await;
    apply(&admin, &customer, &large).await;
    admin.create_mailbox(&customer, "c@c.example").await;
    assert_eq!(admin.usage(&customer, "users").await["limit"], 10);
    assert_eq!(modules_of(&admin, &customer).await, ["branding"]);

    // Downgrade with 3 users on a plan of 2: refused, naming each resource, and nothing changes.
    let audit_before = app.count_sql("SELECT COUNT(*) AS n FROM audit_events");
    let refusal = admin
        .put_problem(
            &format!("/v1/nodes/{customer}/plan"),
            &json!({"plan": small["id"]}),
            409,
            "plan-does-not-fit",
        )
        .await;
    let mut short: Vec<(String, i64, i64)> = refusal["shortfalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["resource"].as_str().unwrap().to_owned(),
                s["used"].as_i64().unwrap(),
                s["limit"].as_i64().unwrap(),
            )
        })
        .collect();
    short.sort();
    assert_eq!(
        short,
        [("module:base".to_owned(), 3, 2), ("users".to_owned(), 3, 2)]
    );
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM audit_events"),
        audit_before
    );
    assert_eq!(admin.usage(&customer, "users").await["limit"], 10);

    // With allow_over_limit it is applied, and the customer is over its limit.
    let over = admin
        .put_expect(
            &format!("/v1/nodes/{customer}/plan"),
            &json!({"plan": small["id"], "allow_over_limit": true}),
            200,
        )
        .await;
    assert_eq!(over["over_limit"].as_array().unwrap().len(), 2);
    let users = admin.usage(&customer, "users").await;
    assert_eq!(
        (users["limit"].as_i64(), users["used"].as_i64()),
        (Some(2), Some(3))
    );

    // Taken off its plan (allowed over limit): the grants end, the module leaves.
    admin
        .delete_problem(
            &format!("/v1/nodes/{customer}/plan"),
            409,
            "plan-does-not-fit",
        )
        .await;
    admin
        .delete_expect(
            &format!("/v1/nodes/{customer}/plan?allow_over_limit=true"),
            204,
        )
        .await;
    assert!(live(&admin, &customer).await.is_empty());
    assert!(modules_of(&admin, &customer).await.is_empty());
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{customer}")).await["plan"],
        Value::Null
    );
    admin
        .delete_problem(&format!("/v1/nodes/{customer}/plan"), 404, "not-found")
        .await;
    assert_eq!(events(&app, "plan.remove"), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_sync_moves_who_fits_and_names_who_does_not() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let seller = reseller(&admin, &owner, "Seller", 100).await;
    let plan = define(&admin, &seller, &plan_body("std", 5)).await;
    let plan_path = format!("/v1/plans/{}", plan["id"].as_str().unwrap());
    let light = admin.create_child(&seller, "customer", "Light").await;
    let heavy = admin.create_child(&seller, "customer", "Heavy").await;
    apply(&admin, &light, &plan).await;
    apply(&admin, &heavy, &plan).await;
    admin.register_domain(&heavy, "heavy.example").await;
    for user in ["a", "b", "c", "d"] {
        admin
            .create_mailbox(&heavy, &format!("{user}@heavy.example"))
            .await;
    }

    // Version 2 grants 3 users: Light fits, Heavy (4 users) does not.
    admin
        .patch_ok(&plan_path, &json!({"resources": {"users": 3, "module:base": 3, "domains": 2, "module:branding": 1}}))
        .await;
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{light}")).await["plan"]["version"],
        1,
        "customers stay on their version"
    );
    let report = admin
        .post_expect(&format!("{plan_path}/sync"), &json!({}), 200)
        .await;
    assert_eq!(report["version"], 2);
    assert_eq!(
        report["moved"],
        json!([{"node_id": light, "from_version": 1}])
    );
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["node_id"], heavy);
    assert_eq!(failed[0]["version"], 1);
    assert_eq!(failed[0]["problem"]["type"], "/problems/plan-does-not-fit");
    let named: Vec<&str> = failed[0]["problem"]["shortfalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["resource"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["module:base", "users"]);
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{light}")).await["plan"]["version"],
        2
    );
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{heavy}")).await["plan"]["version"],
        1
    );
    assert_eq!(admin.usage(&light, "users").await["limit"], 3);
    assert_eq!(admin.usage(&heavy, "users").await["limit"], 5);
    assert_eq!(events(&app, "plan.sync"), 1);

    // In use: not deleted, only retired; retired, it is applied anew nowhere but kept.
    admin.delete_problem(&plan_path, 409, "conflict").await;
    admin.patch_ok(&plan_path, &json!({"retired": true})).await;
    let newcomer = admin.create_child(&seller, "customer", "Newcomer").await;
    admin
        .put_problem(
            &format!("/v1/nodes/{newcomer}/plan"),
            &json!({"plan": plan["id"]}),
            409,
            "conflict",
        )
        .await;
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{heavy}")).await["plan"]["code"],
        "std"
    );
    // A second sync has nothing new to move; Heavy still does not fit.
    let again = admin
        .post_expect(&format!("{plan_path}/sync"), &json!({}), 200)
        .await;
    assert_eq!(again["moved"], json!([]));
    assert_eq!(again["failed"].as_array().unwrap().len(), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_child_is_created_on_a_plan_or_not_at_all() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let seller = reseller(&admin, &owner, "Seller", 12).await;
    let plan = define(&admin, &seller, &plan_body("std", 5)).await;
    let children = format!("/v1/nodes/{seller}/children");

    let created = admin
        .post_expect(
            &children,
            &json!({"kind": "customer", "name": "On plan", "plan": plan["id"]}),
            201,
        )
        .await;
    let customer = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["plan"]["code"], "std");
    assert_eq!(created["max_aliases_per_mailbox"], 3);
    assert_eq!(admin.usage(&customer, "users").await["limit"], 5);
    assert_eq!(modules_of(&admin, &customer).await, ["branding"]);

    // The seller has 7 users left: a second fits, a third does not, and is not created.
    admin
        .post_expect(
            &children,
            &json!({"kind": "customer", "name": "Second", "plan": plan["id"]}),
            201,
        )
        .await;
    let nodes_before = app.count_sql("SELECT COUNT(*) AS n FROM nodes");
    let audit_before = app.count_sql("SELECT COUNT(*) AS n FROM audit_events");
    let refusal = admin
        .post_problem(
            &children,
            &json!({"kind": "customer", "name": "Third", "plan": plan["id"]}),
            409,
            "quota-exceeded",
        )
        .await;
    assert_eq!(
        (refusal["resource"].as_str(), refusal["node_id"].as_str()),
        (Some("users"), Some(seller.as_str()))
    );
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM nodes"),
        nodes_before
    );
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM audit_events"),
        audit_before
    );
    let listed = admin.get_ok(&format!("{children}?name_prefix=Third")).await;
    assert_eq!(item_count(&listed), 0);
    // A reseller is not put on a plan.
    admin
        .post_problem(
            &children,
            &json!({"kind": "reseller", "name": "Sub", "plan": plan["id"]}),
            422,
            "validation-failed",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_plan_that_cannot_be_granted_whole_leaves_no_allocation_and_no_module() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    // The seller has room for the plan's domains and branding but not its users (granted last).
    let seller = reseller(&admin, &owner, "Seller", 3).await;
    let customer = admin.create_child(&seller, "customer", "Customer").await;
    let plan = define(&admin, &seller, &plan_body("big", 5)).await;
    let refusal = admin
        .put_problem(
            &format!("/v1/nodes/{customer}/plan"),
            &json!({"plan": plan["id"]}),
            409,
            "quota-exceeded",
        )
        .await;
    assert_eq!(refusal["resource"], "users");
    let all = admin
        .get_ok(&format!("/v1/nodes/{customer}/allocations"))
        .await;
    assert_eq!(item_count(&all), 0, "{all}");
    assert!(modules_of(&admin, &customer).await.is_empty());
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{customer}")).await["plan"],
        Value::Null
    );

    // A failure after the grants (the branding seat, when the seller's real seats are all taken
    // although it oversells) undoes them too.
    let tight = admin.create_child(&owner, "reseller", "Tight").await;
    for (resource, amount) in [
        ("users", 100),
        ("module:base", 100),
        ("domains", 100),
        ("module:branding", 1),
    ] {
        admin.grant(&tight, resource, amount).await;
    }
    admin
        .put_expect(
            &format!("/v1/nodes/{tight}/oversell"),
            &json!({"ratios": {"module:branding": 2}}),
            200,
        )
        .await;
    let tight_plan = define(&admin, &tight, &plan_body("tight", 5)).await;
    let first = admin.create_child(&tight, "customer", "First").await;
    let second = admin.create_child(&tight, "customer", "Second").await;
    apply(&admin, &first, &tight_plan).await;
    let refusal = admin
        .put_problem(
            &format!("/v1/nodes/{second}/plan"),
            &json!({"plan": tight_plan["id"]}),
            409,
            "ancestor-exhausted",
        )
        .await;
    assert_eq!(refusal["node_id"], tight);
    let all = admin
        .get_ok(&format!("/v1/nodes/{second}/allocations"))
        .await;
    assert_eq!(item_count(&all), 0, "{all}");
    assert!(modules_of(&admin, &second).await.is_empty());

    // A seller below the exhausted one, putting its own customer on the same plan, learns that an
    // ancestor is exhausted, not which one nor its figures.
    let under = admin.create_child(&tight, "reseller", "Under").await;
    for (resource, amount) in [
        ("users", 10),
        ("module:base", 10),
        ("domains", 10),
        ("module:branding", 1),
    ] {
        admin.grant(&under, resource, amount).await;
    }
    let theirs = admin.create_child(&under, "customer", "Theirs").await;
    let seller = crate::principals::account(&app, &admin, &under, "under-admin", "admin").await;
    let refusal = seller
        .put_problem(
            &format!("/v1/nodes/{theirs}/plan"),
            &json!({"plan": tight_plan["id"]}),
            409,
            "ancestor-exhausted",
        )
        .await;
    assert_eq!(refusal["resource"], "module:branding", "{refusal}");
    for hidden in ["node_id", "limit", "used", "available", "requested"] {
        assert!(refusal.get(hidden).is_none(), "{hidden} shown: {refusal}");
    }
    assert!(!refusal.to_string().contains(&tight), "{refusal}");
    app.assert_verified();
}

#[tokio::test]
async fn bad_changes_and_days_are_refused_and_a_suspended_seller_changes_no_plan() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let seller = reseller(&admin, &owner, "Seller", 100).await;
    let customer = admin.create_child(&seller, "customer", "Customer").await;
    let plan = define(&admin, &seller, &plan_body("std", 5)).await;
    let plan_path = format!("/v1/plans/{}", plan["id"].as_str().unwrap());

    // A change of content is checked as a new plan is, and changes nothing when refused.
    let problem = admin
        .patch_problem(
            &plan_path,
            &json!({"modules": ["m365"]}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(problem["errors"][0]["field"], "modules.m365");
    assert_eq!(admin.get_ok(&plan_path).await["current"]["number"], 1);

    // Days before today are refused: a plan does not change the past.
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let problem = admin
        .put_problem(
            &format!("/v1/nodes/{customer}/plan"),
            &json!({"plan": plan["id"], "starts_on": yesterday}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(problem["errors"][0]["field"], "starts_on");
    apply(&admin, &customer, &plan).await;
    let problem = admin
        .delete_problem(
            &format!("/v1/nodes/{customer}/plan?ends_on={yesterday}"),
            400,
            "invalid-query",
        )
        .await;
    assert_eq!(problem["errors"][0]["field"], "ends_on");

    // A suspended seller defines and changes no plan.
    admin
        .patch_ok(
            &format!("/v1/nodes/{seller}"),
            &json!({"status": "suspended"}),
        )
        .await;
    admin
        .post_problem(
            &format!("/v1/nodes/{seller}/plans"),
            &plan_body("other", 1),
            409,
            "node-suspended",
        )
        .await;
    admin
        .patch_problem(
            &plan_path,
            &json!({"name": "Renamed"}),
            409,
            "node-suspended",
        )
        .await;
    admin
        .delete_problem(&plan_path, 409, "node-suspended")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_moved_customer_keeps_its_plan_grants_and_a_deleted_one_leaves_its_plan() {
    owner_app!(app, admin, owner);
    licensed(&admin).await;
    let first = reseller(&admin, &owner, "First", 100).await;
    let second = reseller(&admin, &owner, "Second", 100).await;
    let plan = define(&admin, &owner, &plan_body("std", 5)).await;
    let small = define(&admin, &owner, &plan_body("small", 2)).await;
    let customer = admin.create_child(&first, "customer", "Customer").await;
    apply(&admin, &customer, &plan).await;

    // Moved, its grants come from the new parent and are still the plan's: the next plan ends them.
    admin
        .post_expect(
            &format!("/v1/nodes/{customer}/move"),
            &json!({"parent_id": second}),
            200,
        )
        .await;
    apply(&admin, &customer, &small).await;
    assert_eq!(admin.usage(&customer, "users").await["limit"], 2);
    assert_eq!(admin.usage(&first, "users").await["allocated"], 0);

    // Deleted, it is on the plan no more, and the plan can go.
    admin
        .delete_expect(&format!("/v1/nodes/{customer}?cascade=true"), 204)
        .await;
    admin
        .delete_expect(&format!("/v1/plans/{}", small["id"].as_str().unwrap()), 204)
        .await;
    app.assert_verified();
}
