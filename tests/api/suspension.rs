//! Suspension makes a node and its subtree read-only: its admins' writes are refused
//! (`node-suspended`, naming the suspended node) and leave no trace, reads keep working, and an
//! admin above the suspension lifts it, moves, deletes or re-allocates.

use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, assert_problem, spawn_app};
use crate::principals::account;

/// Owner → reseller `r` → customers `c` and `d`, with seats of everything, the domain `c.example`
/// and mailboxes `m1@`, `m2@` at `c`, and an admin account at `r` and at `c`.
struct Setup<'a> {
    owner: Caller<'a>,
    r: String,
    c: String,
    d: String,
    m1: String,
    m2: String,
    r_admin: Caller<'a>,
    c_admin: Caller<'a>,
}

async fn setup(app: &TestApp) -> Setup<'_> {
    let owner = app.as_admin().await;
    let root = owner.node_id().await;
    let resources = ["users", "domains", "module:base", "module:lft"];
    owner.set_licence_of(&resources, 1000).await;
    let r = owner.create_child(&root, "reseller", "R").await;
    let c = owner.create_child(&r, "customer", "C").await;
    let d = owner.create_child(&r, "customer", "D").await;
    for (node, amount) in [(&r, 500), (&c, 100), (&d, 100)] {
        for resource in resources {
            owner.grant(node, resource, amount).await;
        }
    }
    owner.register_domain(&c, "c.example").await;
    let m1 = owner.create_mailbox(&c, "m1@c.example").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m2 = owner.create_mailbox(&c, "m2@c.example").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r_admin = account(app, &owner, &r, "r-admin", "admin").await;
    let c_admin = account(app, &owner, &c, "c-admin", "admin").await;
    Setup {
        owner,
        r,
        c,
        d,
        m1,
        m2,
        r_admin,
        c_admin,
    }
}

/// The writes a customer's admin makes: (what, method, path, body). `{n}` in a body makes it
/// unique per run of the table.
fn writes(s: &Setup<'_>, n: u32) -> Vec<(&'static str, reqwest::Method, String, Value)> {
    use reqwest::Method;
    let (c, m1, m2) = (&s.c, &s.m1, &s.m2);
    vec![
        (
            "mailbox create",
            Method::POST,
            format!("/v1/nodes/{c}/mailboxes"),
            json!({"address": format!("new{n}@c.example")}),
        ),
        (
            "account create",
            Method::POST,
            format!("/v1/nodes/{c}/accounts"),
            json!({"username": format!("new-{n}"), "email": "new@example.test", "role": "viewer", "password": "correct horse battery staple"}),
        ),
        (
            "API key create",
            Method::POST,
            format!("/v1/nodes/{c}/api-keys"),
            json!({"name": format!("key {n}"), "role": "viewer"}),
        ),
        (
            "domain register",
            Method::POST,
            format!("/v1/nodes/{c}/domains"),
            json!({"name": format!("new{n}.example")}),
        ),
        (
            "alias create",
            Method::POST,
            format!("/v1/mailboxes/{m1}/aliases"),
            json!({"address": format!("alias{n}@c.example")}),
        ),
        (
            "module assignment",
            Method::PUT,
            format!("/v1/mailboxes/{m1}/modules/lft"),
            json!({}),
        ),
        (
            "import",
            Method::POST,
            format!("/v1/nodes/{c}/mailboxes/import"),
            json!([{"address": format!("imported{n}@c.example")}]),
        ),
        (
            "group create",
            Method::POST,
            format!("/v1/nodes/{c}/groups"),
            json!({"name": format!("Group {n}")}),
        ),
        (
            "node details",
            Method::PATCH,
            format!("/v1/nodes/{c}"),
            json!({"description": format!("take {n}")}),
        ),
        (
            "mailbox change",
            Method::PATCH,
            format!("/v1/mailboxes/{m1}"),
            json!({"display_name": format!("M1 {n}")}),
        ),
        // Shrinking is refused as well: a suspension is a freeze.
        (
            "mailbox disable",
            Method::POST,
            format!("/v1/mailboxes/{m2}/disable"),
            json!({}),
        ),
    ]
}

async fn send(
    caller: &Caller<'_>,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    let request = caller
        .app
        .client
        .request(method.clone(), caller.app.url(path))
        .bearer_auth(&caller.token);
    let request = if method == reqwest::Method::GET {
        request
    } else {
        request.json(body)
    };
    request.send().await.expect("a response")
}

/// What a refused write must not change: row counts of everything a write could add, and the
/// versions of what it could change, read behind the app's back.
fn fingerprint(app: &TestApp) -> Vec<i64> {
    let mut counts: Vec<i64> = [
        "nodes",
        "accounts",
        "api_keys",
        "domains",
        "mailboxes",
        "aliases",
        "mailbox_groups",
        "mailbox_modules",
        "node_modules",
        "allocations",
        "audit_events",
        "changes",
    ]
    .iter()
    .map(|table| app.count_sql(&format!("SELECT COUNT(*) AS n FROM {table}")))
    .collect();
    for table in ["nodes", "mailboxes", "accounts"] {
        counts.push(app.count_sql(&format!(
            "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) AS n FROM {table}"
        )));
    }
    counts
}

/// Every write of the table by `caller` is refused as `node-suspended` naming `suspended`, and
/// changes nothing.
async fn assert_writes_refused(
    app: &TestApp,
    s: &Setup<'_>,
    caller: &Caller<'_>,
    suspended: &str,
    n: u32,
) {
    let before = fingerprint(app);
    for (what, method, path, body) in writes(s, n) {
        let problem = assert_problem(
            send(caller, method, &path, &body).await,
            409,
            "node-suspended",
        )
        .await;
        assert_eq!(
            problem["node_id"], suspended,
            "{what}: names the suspended node"
        );
    }
    assert_eq!(fingerprint(app), before, "refused writes leave no trace");
}

/// Every write of the table by `caller` succeeds.
async fn assert_writes_work(s: &Setup<'_>, caller: &Caller<'_>, n: u32) {
    for (what, method, path, body) in writes(s, n) {
        let response = send(caller, method, &path, &body).await;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: {status} {text}");
    }
}

/// The reads of a customer's admin all answer 200.
async fn assert_reads_work(s: &Setup<'_>, caller: &Caller<'_>) {
    let (c, m1) = (&s.c, &s.m1);
    for path in [
        "/v1/me".to_owned(),
        format!("/v1/nodes/{c}"),
        format!("/v1/nodes/{c}/mailboxes"),
        format!("/v1/nodes/{c}/domains"),
        format!("/v1/nodes/{c}/accounts"),
        format!("/v1/nodes/{c}/api-keys"),
        format!("/v1/nodes/{c}/allocations"),
        format!("/v1/nodes/{c}/usage"),
        format!("/v1/nodes/{c}/groups"),
        format!("/v1/mailboxes/{m1}"),
        format!("/v1/mailboxes/{m1}/aliases"),
    ] {
        let response = caller.get(&path).await;
        assert_eq!(response.status(), 200, "GET {path} reads while suspended");
    }
}

async fn set_status(caller: &Caller<'_>, node: &str, status: &str) -> reqwest::Response {
    caller
        .patch(&format!("/v1/nodes/{node}"), &json!({"status": status}))
        .await
}

/// `caller` sets `node`'s status, and allot accepts it (200).
async fn status_set(caller: &Caller<'_>, node: &str, status: &str) {
    caller
        .expect(set_status(caller, node, status).await, 200)
        .await;
}

#[tokio::test]
async fn a_suspended_customer_is_read_only_until_the_admin_above_lifts_it() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    // The reseller's admin, above the customer, suspends it.
    status_set(&s.r_admin, &s.c, "suspended").await;

    assert_writes_refused(&app, &s, &s.c_admin, &s.c, 1).await;
    // The owner's admin is above the suspension, but content inside it is frozen for everyone.
    assert_writes_refused(&app, &s, &s.owner, &s.c, 2).await;
    assert_reads_work(&s, &s.c_admin).await;
    // The customer's own admins cannot lift it.
    assert_problem(
        set_status(&s.c_admin, &s.c, "active").await,
        403,
        "forbidden",
    )
    .await;

    // What still works inside: one's own password, taking access away.
    let me = s.c_admin.get_ok("/v1/me").await;
    s.c_admin
        .patch_ok(
            &format!("/v1/accounts/{}", me["id"].as_str().unwrap()),
            &json!({"password": "another horse battery staple", "current_password": "correct horse battery staple"}),
        )
        .await;
    let c_admin = crate::principals::login(&app, "c-admin", "another horse battery staple").await;

    // The admin above lowers and raises the suspended customer's allocation.
    let allocations = s
        .r_admin
        .get_ok(&format!("/v1/nodes/{}/allocations", s.c))
        .await;
    let users = allocations["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["resource"] == "users")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for amount in [90, 110] {
        s.r_admin
            .patch_ok(
                &format!("/v1/allocations/{users}"),
                &json!({"amount": amount}),
            )
            .await;
    }

    // Lifted by the admin above: the same writes work again.
    status_set(&s.r_admin, &s.c, "active").await;
    assert_writes_work(&s, &c_admin, 3).await;
    app.assert_verified();
}

#[tokio::test]
async fn a_customer_under_a_suspended_reseller_is_read_only_and_so_are_the_resellers_admins() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    status_set(&s.owner, &s.r, "suspended").await;

    assert_writes_refused(&app, &s, &s.c_admin, &s.r, 1).await;
    assert_writes_refused(&app, &s, &s.r_admin, &s.r, 2).await;
    assert_reads_work(&s, &s.c_admin).await;
    assert_reads_work(&s, &s.r_admin).await;

    // The reseller's admins are inside the suspension: they cannot act as "the admin above" on
    // its customers, nor create children.
    let before = fingerprint(&app);
    let refused = [
        set_status(&s.r_admin, &s.c, "suspended").await,
        s.r_admin.allocate(&s.c, "users", 1).await,
        s.r_admin.delete(&format!("/v1/nodes/{}", s.d)).await,
        s.r_admin
            .post(
                &format!("/v1/nodes/{}/children", s.r),
                &json!({"kind": "customer", "name": "E"}),
            )
            .await,
    ];
    for response in refused {
        let problem = assert_problem(response, 409, "node-suspended").await;
        assert_eq!(problem["node_id"], s.r);
    }
    assert_eq!(fingerprint(&app), before, "refused writes leave no trace");

    // The owner's admin stands above the suspension: it re-allocates under it and deletes an empty
    // customer in it; a move into the suspended reseller is refused, one out of it works.
    s.owner.grant(&s.c, "users", 5).await;
    let root = s.owner.node_id().await;
    let other = s.owner.create_child(&root, "reseller", "Other").await;
    assert_problem(
        s.owner
            .post(
                &format!("/v1/nodes/{other}/move"),
                &json!({"parent_id": s.r}),
            )
            .await,
        409,
        "node-suspended",
    )
    .await;
    s.owner
        .delete_expect(&format!("/v1/nodes/{}?cascade=true", s.d), 204)
        .await;

    // Lifted by the owner's admin: everyone's writes work again.
    status_set(&s.owner, &s.r, "active").await;
    assert_writes_work(&s, &s.c_admin, 3).await;
    status_set(&s.r_admin, &s.c, "suspended").await;
    app.assert_verified();
}

#[tokio::test]
async fn access_can_be_taken_away_inside_a_suspension() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let viewer = account(&app, &s.owner, &s.c, "c-viewer", "viewer").await;
    let key = s.c_admin.create_api_key(&s.c, "worker", "viewer").await;
    let viewer_id = viewer.get_ok("/v1/me").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    status_set(&s.owner, &s.r, "suspended").await;

    // Enabling, a role change or an admin's password reset would give access: refused.
    for body in [
        json!({"role": "manager"}),
        json!({"password": "a new horse battery staple"}),
        json!({"disabled": false}),
    ] {
        assert_problem(
            s.c_admin
                .patch(&format!("/v1/accounts/{viewer_id}"), &body)
                .await,
            409,
            "node-suspended",
        )
        .await;
    }
    // Disabling, deleting and revoking take it away: allowed.
    s.c_admin
        .patch_ok(
            &format!("/v1/accounts/{viewer_id}"),
            &json!({"disabled": true}),
        )
        .await;
    s.c_admin
        .delete_expect(
            &format!("/v1/api-keys/{}", key["id"].as_str().unwrap()),
            204,
        )
        .await;
    s.c_admin
        .delete_expect(&format!("/v1/accounts/{viewer_id}"), 204)
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_suspended_customers_groups_aliases_domains_and_modules_stay_as_they_are() {
    let app = spawn_app().await;
    let s = setup(&app).await;
    let (c, m1, m2) = (&s.c, &s.m1, &s.m2);
    let group = s
        .c_admin
        .post_expect(
            &format!("/v1/nodes/{c}/groups"),
            &json!({"name": "Sales"}),
            201,
        )
        .await;
    let group = group["id"].as_str().unwrap().to_owned();
    let member = format!("/v1/groups/{group}/members/{m1}");
    s.c_admin
        .expect(s.c_admin.put(&member, &json!({})).await, 200)
        .await;
    let alias = s
        .c_admin
        .post_expect(
            &format!("/v1/mailboxes/{m1}/aliases"),
            &json!({"address": "sales@c.example"}),
            201,
        )
        .await;
    let alias = alias["id"].as_str().unwrap().to_owned();
    let domain = s.c_admin.get_ok(&format!("/v1/nodes/{c}/domains")).await;
    let domain = domain["items"][0]["id"].as_str().unwrap().to_owned();
    status_set(&s.r_admin, c, "suspended").await;

    let before = fingerprint(&app);
    let refused = [
        s.c_admin.delete(&format!("/v1/aliases/{alias}")).await,
        s.c_admin.delete(&format!("/v1/groups/{group}")).await,
        s.c_admin.delete(&member).await,
        s.c_admin
            .put(&format!("/v1/groups/{group}/members/{m2}"), &json!({}))
            .await,
        s.c_admin
            .patch(
                &format!("/v1/domains/{domain}"),
                &json!({"description": "frozen"}),
            )
            .await,
        s.c_admin
            .delete(&format!("/v1/nodes/{c}/modules/branding"))
            .await,
    ];
    for response in refused {
        let problem = assert_problem(response, 409, "node-suspended").await;
        assert_eq!(problem["node_id"], *c);
    }
    assert_eq!(fingerprint(&app), before, "refused writes leave no trace");
}
