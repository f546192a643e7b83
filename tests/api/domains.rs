//! Domains: claimed, counted against the customer's licence, won by the first DNS proof, expired
//! when never proven.

use serde_json::{Value, json};

use crate::helpers::{
    Caller, TestApp, admin_app, assert_problem, dns_app, first_error, problem_detail,
    spawn_another, texts,
};
use crate::scenario::verify_path;

#[tokio::test]
async fn a_customer_registers_a_domain_in_any_form_idna_accepts() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/domains", tree.c1);
    let (location, domain) = admin
        .post_created(
            &path,
            &json!({"name": "Bücher.Example.", "route": {"host": "mx.bücher.example"}}),
        )
        .await;
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
    assert_eq!(admin.get_ok(&location).await, domain);
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    admin
        .assert_usage(&tree.a, "domains", "used", 1, "counted up the tree")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_customer_claims_a_name_once_and_an_unproven_claim_blocks_no_one() {
    admin_app!(app, admin, tree);
    admin.register_domain(&tree.c1, "shared.example").await;
    admin
        .register_domain_problem(&tree.c1, "SHARED.example", 409, "domain-taken")
        .await;
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    let (status, body) = claim(&admin, &tree.c2, "SHARED.example").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["verification"]["status"], "pending");
    assert!(
        !body.to_string().contains(&tree.c1),
        "the other claimant is not revealed"
    );
    assert_eq!(admin.usage(&tree.c2, "domains").await["used"], 1);
    app.assert_verified();
}

#[tokio::test]
async fn one_customer_racing_itself_for_a_name_claims_it_once() {
    admin_app!(app, admin, tree);
    let body = json!({"name": "contested.example"});
    let path = format!("/v1/nodes/{}/domains", tree.c1);
    let (first, second) = tokio::join!(admin.post(&path, &body), admin.post(&path, &body));
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    app.assert_verified();
}

#[tokio::test]
async fn the_last_domain_unit_goes_to_exactly_one_of_32_racers() {
    admin_app!(app, admin, tree);
    for i in 0..4 {
        admin
            .register_domain(&tree.c1, &format!("d{i}.example"))
            .await;
    }
    let path = format!("/v1/nodes/{}/domains", tree.c1);
    let names = (0..32).map(|i| json!({"name": format!("race{i}.example")}));
    let responses = admin.post_racing(&path, names).await;
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
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/domains", tree.c1);
    for (name, rule) in [
        ("localhost", "two labels"),
        (&format!("{}.com", "a".repeat(64)), "63"),
        ("bad_name.com", "valid domain"),
    ] {
        let body = admin
            .post_problem(&path, &json!({"name": name}), 422, "validation-failed")
            .await;
        assert_eq!(body["errors"][0]["field"], "name");
        assert!(first_error(&body).contains(rule), "{name}: {body}");
    }
    let body = admin.post_problem(&path, &json!({"name": "ok.example", "route": {"host": "not a host", "port": 0, "priority": 101}}), 422, "validation-failed").await;
    let fields: Vec<&str> = texts(&body["errors"], "field");
    assert_eq!(fields, ["route.host", "route.port", "route.priority"]);
    admin
        .register_domain_problem(&tree.a, "ok.example", 422, "validation-failed")
        .await;
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 0);
    app.assert_verified();
}

#[tokio::test]
async fn a_deleted_domain_returns_its_unit_and_its_name() {
    admin_app!(app, admin, tree);
    let domain = admin.register_domain(&tree.c1, "gone.example").await;
    let path = format!("/v1/domains/{}", domain["id"].as_str().unwrap());
    let changed = admin.patch_ok(&path, &json!({"status": "disabled", "route": {"host": "192.0.2.1", "port": 2525, "priority": 90}})).await;
    assert_eq!(
        (
            changed["status"].as_str(),
            changed["route"]["port"].as_i64()
        ),
        (Some("disabled"), Some(2525))
    );
    let cleared = admin.patch_ok(&path, &json!({"route": null})).await;
    assert_eq!(cleared["route"], Value::Null);
    admin.delete_expect(&path, 204).await;
    admin.get_problem(&path, 404, "not-found").await;
    assert_eq!(admin.usage(&tree.a, "domains").await["used"], 0);
    admin.register_domain(&tree.c2, "gone.example").await;
    app.assert_verified();
}

#[tokio::test]
async fn a_domain_is_verified_by_its_txt_record_over_real_dns() {
    dns_app!(dns, app, admin, tree);
    let domain = admin.register_domain(&tree.c1, "proven.example").await;
    let verify = verify_path(&domain);
    let token = domain["verification"]["token"].as_str().unwrap();

    admin
        .post_problem(&verify, &json!({}), 409, "verification-failed")
        .await;
    dns.publish_txt("_allot.proven.example", "someone else's token");
    admin
        .post_problem(&verify, &json!({}), 409, "verification-failed")
        .await;
    dns.publish_txt("_allot.proven.example", token);
    let verified = admin.post_expect(&verify, &json!({}), 200).await;
    assert_eq!(verified["verification"]["status"], "verified");
    assert!(verified["verification"]["verified_at"].is_string());
    app.assert_verified();
}

#[tokio::test]
async fn a_reseller_lists_its_customers_domains_and_no_one_elses() {
    admin_app!(app, admin, tree);
    for (node, name) in [
        (&tree.c1, "one.example"),
        (&tree.c1, "two.example"),
        (&tree.c2, "three.example"),
    ] {
        admin.register_domain(node, name).await;
    }
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let a = admin.get_ok(&format!("/v1/nodes/{}/domains", tree.a)).await;
    assert_eq!(names(&a), ["one.example", "two.example"]);
    let owner = admin
        .get_ok(&format!("/v1/nodes/{}/domains?name_prefix=T", tree.owner))
        .await;
    assert_eq!(names(&owner), ["two.example", "three.example"]);
    let disabled = admin
        .get_ok(&format!("/v1/nodes/{}/domains?status=disabled", tree.owner))
        .await;
    assert!(names(&disabled).is_empty());
    app.assert_verified();
}

#[tokio::test]
async fn a_customer_with_domains_is_deleted_only_with_cascade_and_frees_them() {
    admin_app!(app, admin, tree);
    admin.register_domain(&tree.c1, "held.example").await;
    let body = admin
        .delete_problem(&format!("/v1/nodes/{}", tree.c1), 409, "not-empty")
        .await;
    assert!(problem_detail(&body).contains("1 domains in use"), "{body}");
    admin
        .delete_expect(&format!("/v1/nodes/{}?cascade=true", tree.c1), 204)
        .await;
    assert_eq!(admin.usage(&tree.a, "domains").await["used"], 0);
    admin.register_domain(&tree.c2, "held.example").await;
    app.assert_verified();
}

/// `customer` registers `name`; the registration's status and body.
async fn claim(admin: &Caller<'_>, customer: &str, name: &str) -> (u16, Value) {
    let response = admin
        .post(
            &format!("/v1/nodes/{customer}/domains"),
            &json!({"name": name}),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Asserts that `domain` is gone (404); `why` says what took it.
async fn assert_gone(admin: &Caller<'_>, domain: &Value, why: &str) {
    let path = format!("/v1/domains/{}", domain["id"].as_str().unwrap());
    assert_eq!(admin.get(&path).await.status(), 404, "{why}");
}

/// How many audit events of `action` the trail holds for `node`, and by whom.
fn audited(app: &TestApp, node: &str, action: &str, actor: &str) -> i64 {
    app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events \
         WHERE node_id = '{node}' AND action = '{action}' AND actor = '{actor}'"
    ))
}

#[tokio::test]
async fn a_pending_claim_expires_when_another_customer_claims_the_name() {
    admin_app!(app, admin, tree);
    let squatted = admin.register_domain(&tree.c1, "victim-corp.example").await;
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    // Eight days pass (the default claim lasts seven) without a TXT record.
    app.execute_sql(
        "UPDATE domains SET created_at = '2020-01-01 00:00:00' WHERE name = 'victim-corp.example'",
    );

    let (status, body) = claim(&admin, &tree.c2, "victim-corp.example").await;
    assert_eq!(status, 201, "the stale claim no longer blocks: {body}");
    assert_gone(&admin, &squatted, "the expired claim is gone").await;
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 0);
    assert_eq!(admin.usage(&tree.a, "domains").await["used"], 0);
    assert_eq!(admin.usage(&tree.c2, "domains").await["used"], 1);
    assert_eq!(audited(&app, &tree.c1, "domain.expire", "system"), 1);
    app.assert_verified();
}

#[tokio::test]
async fn an_expired_claim_returns_its_unit_though_nobody_wants_the_name() {
    admin_app!(app, admin, tree);
    admin.register_domain(&tree.c1, "forgotten.example").await;
    admin.register_domain(&tree.c1, "fresh.example").await;
    app.execute_sql(
        "UPDATE domains SET created_at = '2020-01-01 00:00:00' WHERE name = 'forgotten.example'",
    );
    // The sweep runs when an allot process starts, then every few minutes: a second instance on
    // the database sweeps now.
    let _second = spawn_another(&app).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while admin.usage(&tree.c1, "domains").await["used"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired claim's unit did not come back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(audited(&app, &tree.c1, "domain.expire", "system"), 1);
    let left = admin
        .get_ok(&format!("/v1/nodes/{}/domains", tree.c1))
        .await;
    let names: Vec<&str> = texts(&left["items"], "name");
    assert_eq!(names, ["fresh.example"], "a claim within its days stays");
    app.assert_verified();
}

#[tokio::test]
async fn a_verified_claim_takes_over_another_customers_pending_one() {
    dns_app!(dns, app, admin, tree);
    let squatted = admin.register_domain(&tree.c1, "victim-corp.example").await;
    let (status, owned) = claim(&admin, &tree.c2, "victim-corp.example").await;
    assert_eq!(status, 201, "a pending claim blocks no one: {owned}");
    assert_eq!(owned["verification"]["status"], "pending");
    assert_eq!(admin.usage(&tree.c2, "domains").await["used"], 1);

    dns.publish_proof("victim-corp.example", &owned);
    let verified = admin.verify_domain(&owned).await;
    assert_eq!(verified["verification"]["status"], "verified");
    assert_gone(&admin, &squatted, "the pending claim was taken over").await;
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 0);
    assert_eq!(admin.usage(&tree.c2, "domains").await["used"], 1);
    assert_eq!(
        audited(&app, &tree.c1, "domain.taken_over", "system"),
        1,
        "C1's admins find the takeover in C1's trail"
    );
    // The role addresses moved with the name.
    assert_eq!(
        app.count_sql(&format!(
            "SELECT COUNT(*) AS n FROM mailboxes WHERE node_id = '{}' AND origin = 'role'",
            tree.c2
        )),
        2
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_verified_domain_is_never_taken_over() {
    dns_app!(dns, app, admin, tree);
    let first = admin.register_domain(&tree.c1, "held.example").await;
    let (status, second) = claim(&admin, &tree.c2, "held.example").await;
    assert_eq!(status, 201, "{second}");
    for claim in [&first, &second] {
        dns.publish_proof("held.example", claim);
    }
    admin.verify_domain(&first).await;

    assert_eq!(
        admin.post(&verify_path(&second), &json!({})).await.status(),
        404,
        "the later claim went when the first proof won the name"
    );
    assert_eq!(audited(&app, &tree.c2, "domain.taken_over", "system"), 1);
    admin
        .register_domain_problem(&tree.c2, "held.example", 409, "domain-taken")
        .await;
    let held = admin
        .get_ok(&format!("/v1/domains/{}", first["id"].as_str().unwrap()))
        .await;
    assert_eq!(held["verification"]["status"], "verified");
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    assert_eq!(admin.usage(&tree.c2, "domains").await["used"], 0);
    assert_eq!(audited(&app, &tree.c1, "domain.taken_over", "system"), 0);
    app.assert_verified();
}

#[tokio::test]
async fn two_customers_proving_one_name_at_once_get_it_once() {
    dns_app!(dns, app, admin, tree);
    // Four rounds: C2 may hold four domains, and may win every round.
    let rounds = 4;
    for round in 0..rounds {
        let name = format!("raced{round}.example");
        let mut claims = Vec::new();
        for customer in [&tree.c1, &tree.c2] {
            let (status, body) = claim(&admin, customer, &name).await;
            assert_eq!(status, 201, "{body}");
            dns.publish_proof(&name, &body);
            claims.push(verify_path(&body));
        }
        let empty = json!({});
        let (first, second) = tokio::join!(
            admin.post(&claims[0], &empty),
            admin.post(&claims[1], &empty)
        );
        let mut statuses = [first.status().as_u16(), second.status().as_u16()];
        statuses.sort_unstable();
        // One proof wins. The other is refused `domain-taken` when the two overlap; when the
        // winner's transaction ended before the loser's request first read its claim (a slow
        // machine serialises them), the claim is already gone and the answer is 404.
        assert!(
            statuses == [200, 409] || statuses == [200, 404],
            "round {round}: {statuses:?}"
        );
        for response in [first, second] {
            match response.status().as_u16() {
                409 => drop(assert_problem(response, 409, "domain-taken").await),
                404 => drop(assert_problem(response, 404, "not-found").await),
                _ => {}
            }
        }
        assert_eq!(
            app.count_sql(&format!(
                "SELECT COUNT(*) AS n FROM domains WHERE name = '{name}'"
            )),
            1,
            "round {round}: the loser's claim went with the name"
        );
    }
    let c1 = admin.usage(&tree.c1, "domains").await["used"]
        .as_i64()
        .unwrap();
    let c2 = admin.usage(&tree.c2, "domains").await["used"]
        .as_i64()
        .unwrap();
    assert_eq!(c1 + c2, rounds);
    app.assert_verified();
}
