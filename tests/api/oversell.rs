//! Overselling (issue 16): a reseller allowed to grant more than it holds, and the seats its
//! subtree really takes never exceeding its own limit.

use serde_json::{Value, json};

use crate::helpers::{TestApp, owner_app};

/// Counts the audit events of `action` behind the app's back.
fn events(app: &TestApp, action: &str) -> i64 {
    app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}'"
    ))
}

#[tokio::test]
async fn an_overselling_reseller_grants_up_to_its_ratio_and_no_further() {
    owner_app!(app, admin, owner);
    admin.licensed().await;
    let reseller = admin.create_child(&owner, "reseller", "R").await;
    admin.grant(&reseller, "users", 10).await;
    let one = admin.create_child(&reseller, "customer", "One").await;
    let two = admin.create_child(&reseller, "customer", "Two").await;
    let path = format!("/v1/nodes/{reseller}/oversell");
    assert_eq!(
        admin.get_ok(&path).await,
        json!({"node_id": reseller, "ratios": {}})
    );

    // Without a ratio: no more than it holds.
    admin
        .allocate_problem(&one, "users", 11, 409, "quota-exceeded")
        .await;
    let set = admin
        .put_expect(&path, &json!({"ratios": {"users": 2.5}}), 200)
        .await;
    assert_eq!(set, json!({"node_id": reseller, "ratios": {"users": 2.5}}));
    assert_eq!(admin.get_ok(&path).await, set);
    assert_eq!(events(&app, "node.oversell.update"), 1);

    admin.grant(&one, "users", 15).await;
    admin.grant(&two, "users", 10).await;
    let refusal = admin
        .allocate_problem(&two, "users", 1, 409, "quota-exceeded")
        .await;
    assert_eq!(refusal["node_id"], reseller);
    assert_eq!(
        (refusal["limit"].as_i64(), refusal["available"].as_i64()),
        (Some(25), Some(0))
    );
    let report = admin.usage(&reseller, "users").await;
    assert_eq!(
        (
            report["ratio"].as_f64(),
            report["limit"].as_i64(),
            report["allocated"].as_i64(),
            report["free"].as_i64(),
            report["headroom"].as_i64()
        ),
        (Some(2.5), Some(10), Some(25), Some(0), Some(10))
    );

    // Lowering the ratio under what it granted is refused, and leaves no trace.
    let audit_before = app.count_sql("SELECT COUNT(*) AS n FROM audit_events");
    let refusal = admin
        .put_problem(
            &path,
            &json!({"ratios": {"users": 2}}),
            409,
            "quota-exceeded",
        )
        .await;
    assert_eq!(
        (refusal["limit"].as_i64(), refusal["requested"].as_i64()),
        (Some(20), Some(25))
    );
    admin
        .put_problem(&path, &json!({"ratios": {}}), 409, "quota-exceeded")
        .await;
    assert_eq!(admin.get_ok(&path).await, set);
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM audit_events"),
        audit_before
    );
    app.assert_verified();
}

#[tokio::test]
async fn bad_ratios_are_refused_field_by_field_and_change_nothing() {
    owner_app!(app, admin, owner);
    admin.licensed().await;
    let reseller = admin.create_child(&owner, "reseller", "R").await;
    let customer = admin.create_child(&reseller, "customer", "C").await;
    let path = format!("/v1/nodes/{reseller}/oversell");
    for (body, field) in [
        (json!({"ratios": {"users": 0.5}}), "ratios.users"),
        (json!({"ratios": {"users": 100.5}}), "ratios.users"),
        (json!({"ratios": {"users": 1.0001}}), "ratios.users"),
        (json!({"ratios": {"module:nope": 2}}), "ratios.module:nope"),
        (json!({"ratios": {"seats": 2}}), "ratios.seats"),
    ] {
        let problem = admin
            .put_problem(&path, &body, 422, "validation-failed")
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    admin
        .put_problem(
            &format!("/v1/nodes/{customer}/oversell"),
            &json!({"ratios": {"users": 2}}),
            422,
            "validation-failed",
        )
        .await;
    // The owner has nobody above it to let it oversell.
    admin
        .put_problem(
            &format!("/v1/nodes/{owner}/oversell"),
            &json!({"ratios": {"users": 2}}),
            403,
            "forbidden",
        )
        .await;
    assert_eq!(events(&app, "node.oversell.update"), 0);
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM oversell_ratios"),
        0
    );
    app.assert_verified();
}

/// An overselling reseller holding `users` real seats, ratio 4, with `customers` customers each
/// granted `own` `users` seats (and room for everything else a mailbox takes) and a domain.
async fn oversold(
    admin: &crate::helpers::Caller<'_>,
    owner: &str,
    users: i64,
    customers: usize,
    own: i64,
) -> (String, Vec<String>) {
    admin.licensed().await;
    let reseller = admin.create_child(owner, "reseller", "Seller").await;
    admin.grant(&reseller, "users", users).await;
    admin.grant(&reseller, "module:base", 200).await;
    admin.grant(&reseller, "domains", 200).await;
    admin
        .put_expect(
            &format!("/v1/nodes/{reseller}/oversell"),
            &json!({"ratios": {"users": 4}}),
            200,
        )
        .await;
    let mut ids = Vec::new();
    for i in 0..customers {
        let customer = admin
            .create_child(&reseller, "customer", &format!("Customer {i}"))
            .await;
        admin.grant(&customer, "users", own).await;
        admin.grant(&customer, "module:base", 2).await;
        admin.grant(&customer, "domains", 1).await;
        admin
            .register_domain(&customer, &format!("c{i}.example"))
            .await;
        ids.push(customer);
    }
    (reseller, ids)
}

#[tokio::test]
async fn a_customer_with_room_is_refused_when_its_reseller_has_no_real_seat_left() {
    owner_app!(app, admin, owner);
    let (reseller, customers) = oversold(&admin, &owner, 3, 2, 2).await;
    admin.create_mailbox(&customers[0], "a@c0.example").await;
    admin.create_mailbox(&customers[0], "b@c0.example").await;
    admin.create_mailbox(&customers[1], "a@c1.example").await;
    let refusal = admin
        .create_mailbox_problem(&customers[1], "b@c1.example", 409, "ancestor-exhausted")
        .await;
    assert_eq!(refusal["node_id"], reseller);
    assert_eq!(refusal["resource"], "users");
    assert_eq!(
        (refusal["limit"].as_i64(), refusal["used"].as_i64()),
        (Some(3), Some(3))
    );
    // The customer's own report shows its room, and the real headroom: none.
    let own = admin.usage(&customers[1], "users").await;
    assert_eq!(
        (own["free"].as_i64(), own["headroom"].as_i64()),
        (Some(1), Some(0))
    );
    // A seat freed anywhere below the reseller is a seat for the others.
    let mailboxes = admin
        .get_ok(&format!(
            "/v1/nodes/{}/mailboxes?address_prefix=a%40c0",
            customers[0]
        ))
        .await;
    let first = mailboxes["items"][0]["id"].as_str().unwrap().to_owned();
    admin
        .post_expect(&format!("/v1/mailboxes/{first}/disable"), &json!({}), 200)
        .await;
    admin.create_mailbox(&customers[1], "b@c1.example").await;
    assert_eq!(admin.usage(&reseller, "users").await["used"], 3);
    app.assert_verified();
}

#[tokio::test]
async fn racing_customers_of_an_oversold_reseller_take_exactly_its_real_seats() {
    owner_app!(app, admin, owner);
    let (reseller, customers) = oversold(&admin, &owner, 10, 32, 1).await;
    race_for_ten(&app, &admin, &reseller, &customers).await;
}

/// The 32 racers hang under two resellers of their own below the overselling one: each create
/// locks only its customer and that customer's parent, so the two halves meet only at the
/// overselling reseller's usage counters, which the seat check locks (PostgreSQL).
#[tokio::test]
async fn racers_under_different_sub_resellers_are_serialised_at_the_oversold_one() {
    owner_app!(app, admin, owner);
    admin.licensed().await;
    let reseller = admin.create_child(&owner, "reseller", "Seller").await;
    admin.grant(&reseller, "users", 10).await;
    admin.grant(&reseller, "module:base", 200).await;
    admin.grant(&reseller, "domains", 200).await;
    admin
        .put_expect(
            &format!("/v1/nodes/{reseller}/oversell"),
            &json!({"ratios": {"users": 4}}),
            200,
        )
        .await;
    let mut customers = Vec::new();
    for half in 0..2 {
        let sub = admin
            .create_child(&reseller, "reseller", &format!("Sub {half}"))
            .await;
        for (resource, amount) in [("users", 16), ("module:base", 32), ("domains", 16)] {
            admin.grant(&sub, resource, amount).await;
        }
        for i in 0..16 {
            let n = half * 16 + i;
            let customer = admin
                .create_child(&sub, "customer", &format!("Customer {n}"))
                .await;
            for resource in ["users", "module:base", "domains"] {
                admin.grant(&customer, resource, 1).await;
            }
            admin
                .register_domain(&customer, &format!("c{n}.example"))
                .await;
            customers.push(customer);
        }
    }
    race_for_ten(&app, &admin, &reseller, &customers).await;
}

/// Races one mailbox create for each of `customers` (customer i on `c{i}.example`): exactly 10
/// are made, the rest refused naming `reseller`.
async fn race_for_ten(
    app: &TestApp,
    admin: &crate::helpers::Caller<'_>,
    reseller: &str,
    customers: &[String],
) {
    let attempts = customers
        .iter()
        .enumerate()
        .map(|(i, customer)| async move {
            admin
                .post(
                    &format!("/v1/nodes/{customer}/mailboxes"),
                    &json!({"address": format!("racer@c{i}.example")}),
                )
                .await
        });
    let responses = futures_util::future::join_all(attempts).await;
    let mut created = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => created += 1,
            409 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["type"], "/problems/ancestor-exhausted");
                assert_eq!(body["node_id"], reseller);
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert_eq!(created, 10, "exactly the real seats there were");
    let report = admin.usage(reseller, "users").await;
    assert_eq!(
        (report["used"].as_i64(), report["allocated"].as_i64()),
        (Some(10), Some(32))
    );
    app.assert_verified();
}

#[tokio::test]
async fn lowering_a_resellers_limit_under_its_subtrees_use_needs_allow_over_limit() {
    owner_app!(app, admin, owner);
    let (reseller, customers) = oversold(&admin, &owner, 4, 2, 2).await;
    admin.create_mailbox(&customers[0], "a@c0.example").await;
    admin.create_mailbox(&customers[1], "a@c1.example").await;
    let allocations = admin
        .get_ok(&format!("/v1/nodes/{reseller}/allocations?resource=users"))
        .await;
    let id = allocations["items"][0]["id"].as_str().unwrap().to_owned();
    // 4 × 1 still covers the 4 granted; but 1 real seat is under the 2 in use.
    let refusal = admin
        .patch_problem(
            &format!("/v1/allocations/{id}"),
            &json!({"amount": 1}),
            409,
            "quota-exceeded",
        )
        .await;
    assert_eq!(
        (refusal["node_id"].as_str(), refusal["requested"].as_i64()),
        (Some(reseller.as_str()), Some(2))
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_move_under_an_oversold_reseller_must_fit_its_real_seats() {
    owner_app!(app, admin, owner);
    let (reseller, customers) = oversold(&admin, &owner, 3, 1, 2).await;
    admin.create_mailbox(&customers[0], "a@c0.example").await;
    admin.create_mailbox(&customers[0], "b@c0.example").await;
    let other = admin.create_child(&owner, "reseller", "Other").await;
    for resource in ["users", "module:base", "domains"] {
        admin.grant(&other, resource, 10).await;
    }
    let mover = admin.create_child(&other, "customer", "Mover").await;
    for resource in ["users", "module:base", "domains"] {
        admin.grant(&mover, resource, 2).await;
    }
    admin.register_domain(&mover, "mover.example").await;
    admin.create_mailbox(&mover, "a@mover.example").await;
    admin.create_mailbox(&mover, "b@mover.example").await;
    // Its grants fit under the reseller's ratio (4 + 2 of 12), its two seats not (2 + 2 of 3).
    let refusal = admin
        .post_problem(
            &format!("/v1/nodes/{mover}/move"),
            &json!({"parent_id": reseller}),
            409,
            "ancestor-exhausted",
        )
        .await;
    assert_eq!(refusal["node_id"], reseller);
    assert_eq!(
        admin.get_ok(&format!("/v1/nodes/{mover}")).await["parent_id"],
        other
    );
    assert_eq!(admin.usage(&reseller, "users").await["used"], 2);
    assert_eq!(admin.usage(&other, "users").await["used"], 2);
    app.assert_verified();
}

#[tokio::test]
async fn the_ratios_carry_an_etag_and_a_stale_if_match_changes_nothing() {
    owner_app!(app, admin, owner);
    admin.licensed().await;
    let reseller = admin.create_child(&owner, "reseller", "R").await;
    admin.grant(&reseller, "users", 10).await;
    let path = format!("/v1/nodes/{reseller}/oversell");
    let etag =
        |response: &reqwest::Response| response.headers()["etag"].to_str().unwrap().to_owned();
    let read = admin.get(&path).await;
    assert_eq!(read.status(), 200);
    let first = etag(&read);

    let body = json!({"ratios": {"users": 2}});
    let set = admin
        .send_if_match(reqwest::Method::PUT, &path, &first, Some(&body))
        .await;
    assert_eq!(set.status(), 200);
    let second = etag(&set);
    assert_ne!(second, first);
    assert_eq!(etag(&admin.get(&path).await), second);

    // The version read before that change is stale: refused, and nothing changes.
    let stale = admin
        .send_if_match(
            reqwest::Method::PUT,
            &path,
            &first,
            Some(&json!({"ratios": {"users": 3}})),
        )
        .await;
    crate::helpers::assert_problem(stale, 412, "precondition-failed").await;
    let now = admin.get(&path).await;
    assert_eq!(etag(&now), second);
    assert_eq!(
        now.json::<Value>().await.unwrap()["ratios"],
        json!({"users": 2.0})
    );
    assert_eq!(events(&app, "node.oversell.update"), 1);

    // The same set again is no change: the version stays.
    let again = admin
        .send_if_match(reqwest::Method::PUT, &path, &second, Some(&body))
        .await;
    assert_eq!(
        (again.status().as_u16(), etag(&again)),
        (200, second.clone())
    );
    assert_eq!(events(&app, "node.oversell.update"), 1);
}

/// An overselling reseller holding 3 real `domains`, 1 real `module:certificate` and 1 real
/// `module:branding` (ratio 4 each), and two customers each granted more of them than that share
/// allows together, with room for mailboxes; returns (reseller, customers).
async fn oversold_modules_and_domains(
    admin: &crate::helpers::Caller<'_>,
    owner: &str,
) -> (String, [String; 2]) {
    let resources = [
        "users",
        "domains",
        "module:base",
        "module:certificate",
        "module:branding",
    ];
    admin.set_licence_of(&resources, 1000).await;
    let reseller = admin.create_child(owner, "reseller", "Seller").await;
    for (resource, amount) in [
        ("users", 10),
        ("module:base", 10),
        ("domains", 3),
        ("module:certificate", 1),
        ("module:branding", 1),
    ] {
        admin.grant(&reseller, resource, amount).await;
    }
    admin
        .put_expect(
            &format!("/v1/nodes/{reseller}/oversell"),
            &json!({"ratios": {"domains": 4, "module:certificate": 4, "module:branding": 4}}),
            200,
        )
        .await;
    let mut customers = Vec::new();
    for i in 0..2 {
        let customer = admin
            .create_child(&reseller, "customer", &format!("Customer {i}"))
            .await;
        for (resource, amount) in [
            ("users", 5),
            ("module:base", 5),
            ("domains", 2),
            ("module:certificate", 1),
            ("module:branding", 1),
        ] {
            admin.grant(&customer, resource, amount).await;
        }
        customers.push(customer);
    }
    (reseller, customers.try_into().unwrap())
}

#[tokio::test]
async fn domains_and_modules_are_refused_at_an_exhausted_ancestor() {
    owner_app!(app, admin, owner);
    let (reseller, [c0, c1]) = oversold_modules_and_domains(&admin, &owner).await;
    // Domains: the reseller's 3 real ones taken (2 by c0, 1 by c1); c1 has room for a second.
    admin.register_domain(&c0, "d0a.example").await;
    admin.register_domain(&c0, "d0b.example").await;
    admin.register_domain(&c1, "d1a.example").await;
    let refusal = admin
        .post_problem(
            &format!("/v1/nodes/{c1}/domains"),
            &json!({"name": "d1b.example"}),
            409,
            "ancestor-exhausted",
        )
        .await;
    assert_eq!(
        (&refusal["node_id"], &refusal["resource"]),
        (&json!(reseller), &json!("domains"))
    );
    assert_eq!(
        (refusal["limit"].as_i64(), refusal["used"].as_i64()),
        (Some(3), Some(3))
    );

    // A per-mailbox module: the reseller's one certificate seat taken by c0's mailbox.
    let m0 = admin.create_mailbox(&c0, "a@d0a.example").await;
    let m1 = admin.create_mailbox(&c1, "a@d1a.example").await;
    let assign = |mailbox: &Value| {
        format!(
            "/v1/mailboxes/{}/modules/certificate",
            mailbox["id"].as_str().unwrap()
        )
    };
    admin.put_expect(&assign(&m0), &json!({}), 200).await;
    let refusal = admin
        .put_problem(&assign(&m1), &json!({}), 409, "ancestor-exhausted")
        .await;
    assert_eq!(
        (&refusal["node_id"], &refusal["resource"]),
        (&json!(reseller), &json!("module:certificate"))
    );

    // A per-customer module: the reseller's one branding seat taken by c0.
    let branding = |customer: &str| format!("/v1/nodes/{customer}/modules/branding");
    admin.put_expect(&branding(&c0), &json!({}), 200).await;
    let refusal = admin
        .put_problem(&branding(&c1), &json!({}), 409, "ancestor-exhausted")
        .await;
    assert_eq!(
        (&refusal["node_id"], &refusal["resource"]),
        (&json!(reseller), &json!("module:branding"))
    );
    for (resource, used) in [
        ("domains", 1),
        ("module:certificate", 0),
        ("module:branding", 0),
    ] {
        assert_eq!(admin.usage(&c1, resource).await["used"], used, "{resource}");
    }
    app.assert_verified();
}

#[tokio::test]
async fn an_import_and_an_enable_are_refused_at_an_exhausted_ancestor() {
    owner_app!(app, admin, owner);
    let (reseller, customers) = oversold(&admin, &owner, 2, 2, 2).await;
    admin.create_mailbox(&customers[0], "a@c0.example").await;
    let b = admin.create_mailbox(&customers[0], "b@c0.example").await;
    let import = format!("/v1/nodes/{}/mailboxes/import", customers[1]);

    // Atomic (JSON): nothing imported, the row's problem names the ancestor.
    let failed = admin
        .post_problem(
            &import,
            &json!([{"address": "a@c1.example"}]),
            422,
            "import-failed",
        )
        .await;
    let row = &failed["rows"][0];
    assert_eq!(row["status"], "failed", "{failed}");
    assert_eq!(row["problem"]["type"], "/problems/ancestor-exhausted");
    assert_eq!(row["problem"]["node_id"], json!(reseller));
    // Not atomic (CSV): the row fails alone.
    let report = admin
        .expect(
            app.client
                .post(app.url(&format!("{import}?atomic=false")))
                .bearer_auth(&admin.token)
                .header("content-type", "text/csv")
                .body("address\na@c1.example\n")
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
    assert_eq!(
        (report["created"].as_u64(), report["failed"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(
        report["rows"][0]["problem"]["type"],
        "/problems/ancestor-exhausted"
    );
    assert_eq!(admin.usage(&customers[1], "users").await["used"], 0);

    // Enabling a disabled mailbox takes its seat again: refused once another took it.
    let b = b["id"].as_str().unwrap();
    admin
        .post_expect(&format!("/v1/mailboxes/{b}/disable"), &json!({}), 200)
        .await;
    admin.create_mailbox(&customers[1], "a@c1.example").await;
    let refusal = admin
        .post_problem(
            &format!("/v1/mailboxes/{b}/enable"),
            &json!({}),
            409,
            "ancestor-exhausted",
        )
        .await;
    assert_eq!(refusal["node_id"], json!(reseller));
    let mailbox = admin.get_ok(&format!("/v1/mailboxes/{b}")).await;
    assert_eq!(mailbox["status"], "disabled");
    assert_eq!(admin.usage(&reseller, "users").await["used"], 2);
    app.assert_verified();
}

#[tokio::test]
async fn only_callers_at_or_above_the_exhausted_ancestor_see_which_it_is_and_its_figures() {
    owner_app!(app, admin, owner);
    let (reseller, customers) = oversold(&admin, &owner, 1, 2, 2).await;
    admin.create_mailbox(&customers[0], "a@c0.example").await;
    let customer =
        crate::principals::account(&app, &admin, &customers[1], "c1-admin", "admin").await;
    let seller = crate::principals::account(&app, &admin, &reseller, "seller-admin", "admin").await;
    let create = format!("/v1/nodes/{}/mailboxes", customers[1]);
    let body = json!({"address": "a@c1.example"});

    // The reseller (the exhausted ancestor itself) and the owner above it see all of it.
    for caller in [&seller, &admin] {
        let refusal = caller
            .post_problem(&create, &body, 409, "ancestor-exhausted")
            .await;
        assert_eq!(refusal["node_id"], json!(reseller), "{refusal}");
        assert_eq!(
            (refusal["limit"].as_i64(), refusal["used"].as_i64()),
            (Some(1), Some(1)),
            "{refusal}"
        );
    }
    // The customer below learns that an ancestor is exhausted, and of what; not which one, nor
    // its numbers.
    let refusal = customer
        .post_problem(&create, &body, 409, "ancestor-exhausted")
        .await;
    assert_eq!(refusal["resource"], "users", "{refusal}");
    for hidden in ["node_id", "limit", "used", "available", "requested"] {
        assert!(refusal.get(hidden).is_none(), "{hidden} shown: {refusal}");
    }
    assert!(!refusal.to_string().contains(&reseller), "{refusal}");
    // So too in an import's rows.
    let failed = customer
        .post_problem(
            &format!("/v1/nodes/{}/mailboxes/import", customers[1]),
            &json!([{"address": "b@c1.example"}]),
            422,
            "import-failed",
        )
        .await;
    let problem = &failed["rows"][0]["problem"];
    assert_eq!(problem["type"], "/problems/ancestor-exhausted", "{failed}");
    assert!(
        problem.get("node_id").is_none() && problem.get("limit").is_none(),
        "{failed}"
    );
    assert!(!failed.to_string().contains(&reseller), "{failed}");
    app.assert_verified();
}
