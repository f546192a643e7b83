//! Domains: registered once, counted against the customer's licence, proven by DNS.

use serde_json::{Value, json};

use crate::dns::DnsServer;
use crate::helpers::{assert_problem, seed_tree, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_customer_registers_a_domain_in_any_form_idna_accepts() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let response = admin
        .post(
            &format!("/v1/nodes/{}/domains", tree.c1),
            &json!({"name": "Bücher.Example.", "route": {"host": "mx.bücher.example"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let domain: Value = response.json().await.unwrap();
    assert_eq!(domain["name"], "xn--bcher-kva.example");
    assert_eq!(domain["display_name"], "bücher.example");
    assert_eq!(
        domain["route"],
        json!({"host": "mx.xn--bcher-kva.example", "port": 25, "priority": 50})
    );
    assert_eq!(domain["verification"]["status"], "pending");
    assert_eq!(
        domain["verification"]["record"],
        "_allot.xn--bcher-kva.example"
    );
    assert_eq!(admin.expect(admin.get(&location).await, 200).await, domain);
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    assert_eq!(
        admin.usage(&tree.a, "domains").await["used"],
        1,
        "counted up the tree"
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_domain_belongs_to_one_customer_in_the_whole_installation() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    admin
        .expect(
            admin
                .post(
                    &format!("/v1/nodes/{}/domains", tree.c1),
                    &json!({"name": "shared.example"}),
                )
                .await,
            201,
        )
        .await;
    let body = assert_problem(
        admin
            .post(
                &format!("/v1/nodes/{}/domains", tree.c2),
                &json!({"name": "SHARED.example"}),
            )
            .await,
        409,
        "domain-taken",
    )
    .await;
    assert!(
        !body.to_string().contains(&tree.c1),
        "the holder is not revealed"
    );
    assert_eq!(admin.usage(&tree.c2, "domains").await["used"], 0);
    app.assert_verified();
}

#[tokio::test]
async fn two_customers_racing_for_one_domain_get_it_once() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let body = json!({"name": "contested.example"});
    let (c1, c2) = (
        format!("/v1/nodes/{}/domains", tree.c1),
        format!("/v1/nodes/{}/domains", tree.c2),
    );
    let (first, second) = tokio::join!(admin.post(&c1, &body), admin.post(&c2, &body));
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    app.assert_verified();
}

#[tokio::test]
async fn the_last_domain_unit_goes_to_exactly_one_of_32_racers() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    for i in 0..4 {
        admin
            .expect(
                admin
                    .post(
                        &format!("/v1/nodes/{}/domains", tree.c1),
                        &json!({"name": format!("d{i}.example")}),
                    )
                    .await,
                201,
            )
            .await;
    }
    let attempts = (0..32).map(|i| {
        let admin = &admin;
        let path = format!("/v1/nodes/{}/domains", tree.c1);
        async move {
            admin
                .post(&path, &json!({"name": format!("race{i}.example")}))
                .await
        }
    });
    let responses = futures_util::future::join_all(attempts).await;
    let created = responses.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created, 1);
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 201 || r.status() == 409)
    );
    let usage = admin.usage(&tree.c1, "domains").await;
    assert_eq!(
        (usage["used"].as_i64(), usage["free"].as_i64()),
        (Some(5), Some(0))
    );
    app.assert_verified();
}

#[tokio::test]
async fn names_that_break_the_rules_are_refused_with_the_rule() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let path = format!("/v1/nodes/{}/domains", tree.c1);
    for (name, rule) in [
        ("localhost", "two labels"),
        (&format!("{}.com", "a".repeat(64)), "63"),
        ("bad_name.com", "valid domain"),
    ] {
        let body = assert_problem(
            admin.post(&path, &json!({"name": name})).await,
            422,
            "validation-failed",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "name");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(rule),
            "{name}: {body}"
        );
    }
    let body = assert_problem(admin.post(&path, &json!({"name": "ok.example", "route": {"host": "not a host", "port": 0, "priority": 101}})).await, 422, "validation-failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["route.host", "route.port", "route.priority"]);
    assert_problem(
        admin
            .post(
                &format!("/v1/nodes/{}/domains", tree.a),
                &json!({"name": "ok.example"}),
            )
            .await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 0);
    app.assert_verified();
}

#[tokio::test]
async fn a_deleted_domain_returns_its_unit_and_its_name() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let domain = admin
        .expect(
            admin
                .post(
                    &format!("/v1/nodes/{}/domains", tree.c1),
                    &json!({"name": "gone.example"}),
                )
                .await,
            201,
        )
        .await;
    let path = format!("/v1/domains/{}", domain["id"].as_str().unwrap());
    let changed = admin.expect(admin.patch(&path, &json!({"status": "disabled", "route": {"host": "192.0.2.1", "port": 2525, "priority": 90}})).await, 200).await;
    assert_eq!(
        (
            changed["status"].as_str(),
            changed["route"]["port"].as_i64()
        ),
        (Some("disabled"), Some(2525))
    );
    let cleared = admin
        .expect(admin.patch(&path, &json!({"route": null})).await, 200)
        .await;
    assert_eq!(cleared["route"], Value::Null);
    admin.expect(admin.delete(&path).await, 204).await;
    assert_problem(admin.get(&path).await, 404, "not-found").await;
    assert_eq!(admin.usage(&tree.a, "domains").await["used"], 0);
    admin
        .expect(
            admin
                .post(
                    &format!("/v1/nodes/{}/domains", tree.c2),
                    &json!({"name": "gone.example"}),
                )
                .await,
            201,
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_domain_is_verified_by_its_txt_record_over_real_dns() {
    let dns = DnsServer::start().await;
    let app = spawn_app_with(|config| config.dns_resolver = dns.addr).await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let domain = admin
        .expect(
            admin
                .post(
                    &format!("/v1/nodes/{}/domains", tree.c1),
                    &json!({"name": "proven.example"}),
                )
                .await,
            201,
        )
        .await;
    let verify = format!("/v1/domains/{}/verify", domain["id"].as_str().unwrap());
    let token = domain["verification"]["token"].as_str().unwrap();

    assert_problem(
        admin.post(&verify, &json!({})).await,
        409,
        "verification-failed",
    )
    .await;
    dns.publish_txt("_allot.proven.example", "someone else's token");
    assert_problem(
        admin.post(&verify, &json!({})).await,
        409,
        "verification-failed",
    )
    .await;
    dns.publish_txt("_allot.proven.example", token);
    let verified = admin
        .expect(admin.post(&verify, &json!({})).await, 200)
        .await;
    assert_eq!(verified["verification"]["status"], "verified");
    assert!(verified["verification"]["verified_at"].is_string());
    app.assert_verified();
}

#[tokio::test]
async fn a_reseller_lists_its_customers_domains_and_no_one_elses() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    for (node, name) in [
        (&tree.c1, "one.example"),
        (&tree.c1, "two.example"),
        (&tree.c2, "three.example"),
    ] {
        admin
            .expect(
                admin
                    .post(&format!("/v1/nodes/{node}/domains"), &json!({"name": name}))
                    .await,
                201,
            )
            .await;
    }
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let a = admin
        .expect(
            admin.get(&format!("/v1/nodes/{}/domains", tree.a)).await,
            200,
        )
        .await;
    assert_eq!(names(&a), ["one.example", "two.example"]);
    let owner = admin
        .expect(
            admin
                .get(&format!("/v1/nodes/{}/domains?name_prefix=T", tree.owner))
                .await,
            200,
        )
        .await;
    assert_eq!(names(&owner), ["two.example", "three.example"]);
    let disabled = admin
        .expect(
            admin
                .get(&format!("/v1/nodes/{}/domains?status=disabled", tree.owner))
                .await,
            200,
        )
        .await;
    assert!(names(&disabled).is_empty());
    app.assert_verified();
}

#[tokio::test]
async fn a_customer_with_domains_is_deleted_only_with_cascade_and_frees_them() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    admin
        .expect(
            admin
                .post(
                    &format!("/v1/nodes/{}/domains", tree.c1),
                    &json!({"name": "held.example"}),
                )
                .await,
            201,
        )
        .await;
    let body = assert_problem(
        admin.delete(&format!("/v1/nodes/{}", tree.c1)).await,
        409,
        "not-empty",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("1 domains in use"),
        "{body}"
    );
    admin
        .expect(
            admin
                .delete(&format!("/v1/nodes/{}?cascade=true", tree.c1))
                .await,
            204,
        )
        .await;
    assert_eq!(admin.usage(&tree.a, "domains").await["used"], 0);
    admin
        .expect(
            admin
                .post(
                    &format!("/v1/nodes/{}/domains", tree.c2),
                    &json!({"name": "held.example"}),
                )
                .await,
            201,
        )
        .await;
    app.assert_verified();
}
