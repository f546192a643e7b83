//! The module catalogue and module seats: the seeded rules, catalogue changes, assignments to
//! mailboxes and customers, the seats they take, and the last seat raced for.

use serde_json::{Value, json};

use crate::helpers::{
    Caller, TestApp, admin_app, assert_problem, first_error, item_count, problem_detail, spawn_app,
    texts,
};

/// A customer under a reseller, with a domain and seats of everything: `users`, `module:base` and
/// the add-ons, `seats` of each (the reseller holds twice as many).
struct Shop {
    reseller: String,
    customer: String,
}

const ADD_ONS: [&str; 9] = [
    "certificate",
    "sign_only",
    "sign_encrypt",
    "lft",
    "filter_inbound",
    "filter_outbound",
    "m365",
    "branding",
    "sandbox",
];

async fn shop(admin: &Caller<'_>, seats: i64) -> Shop {
    let owner = admin.node_id().await;
    let mut resources = vec![
        "users".to_owned(),
        "domains".to_owned(),
        "module:base".to_owned(),
    ];
    resources.extend(ADD_ONS.iter().map(|code| format!("module:{code}")));
    admin.set_licence_of(&resources, 1000).await;
    let reseller = admin.create_child(&owner, "reseller", "Reseller").await;
    let customer = admin.create_child(&reseller, "customer", "Customer").await;
    for resource in &resources {
        admin.grant(&reseller, resource, 2 * seats).await;
        admin.grant(&customer, resource, seats).await;
    }
    admin.register_domain(&customer, "shop.example").await;
    Shop { reseller, customer }
}

/// Creates `local@shop.example` for `customer`; returns its id.
async fn mailbox(admin: &Caller<'_>, customer: &str, local: &str) -> String {
    let created = admin
        .create_mailbox(customer, &format!("{local}@shop.example"))
        .await;
    created["id"].as_str().unwrap().to_owned()
}

async fn assign(admin: &Caller<'_>, mailbox: &str, code: &str) -> reqwest::Response {
    admin
        .put(
            &format!("/v1/mailboxes/{mailbox}/modules/{code}"),
            &json!({}),
        )
        .await
}

async fn modules_of(admin: &Caller<'_>, mailbox: &str) -> Value {
    admin.get_ok(&format!("/v1/mailboxes/{mailbox}")).await["modules"].clone()
}

async fn used(admin: &Caller<'_>, node: &str, resource: &str) -> i64 {
    admin.usage(node, resource).await["used"].as_i64().unwrap()
}

/// What `customer` uses of `users`, `module:base` and `module:lft`.
async fn seats(admin: &Caller<'_>, customer: &str) -> (i64, i64, i64) {
    (
        used(admin, customer, "users").await,
        used(admin, customer, "module:base").await,
        used(admin, customer, "module:lft").await,
    )
}

#[tokio::test]
async fn the_seeded_catalogue_has_the_documents_modules_and_rules() {
    admin_app!(app, admin);
    let page = admin.get_ok("/v1/modules?limit=500").await;
    let items = page["items"].as_array().unwrap();
    let codes: Vec<&str> = items.iter().map(|m| m["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        [
            "base",
            "branding",
            "certificate",
            "filter_inbound",
            "filter_outbound",
            "lft",
            "m365",
            "sandbox",
            "sign_encrypt",
            "sign_only"
        ]
    );
    let by_code = |code: &str| items.iter().find(|m| m["code"] == code).unwrap().clone();
    assert_eq!(by_code("base")["auto_assign"], true);
    assert_eq!(by_code("base")["unit"], "per_mailbox");
    assert_eq!(by_code("sign_encrypt")["requires"], json!(["certificate"]));
    assert_eq!(by_code("sign_encrypt")["excludes"], json!(["sign_only"]));
    assert_eq!(by_code("sign_only")["excludes"], json!(["sign_encrypt"]));
    assert_eq!(
        by_code("m365")["excludes"],
        json!(["filter_inbound", "filter_outbound"])
    );
    assert_eq!(by_code("filter_inbound")["excludes"], json!(["m365"]));
    for code in ["m365", "filter_inbound", "filter_outbound", "branding"] {
        assert_eq!(by_code(code)["unit"], "per_customer", "{code}");
    }
    for code in ["certificate", "lft", "sandbox"] {
        assert_eq!(by_code(code)["unit"], "per_mailbox", "{code}");
    }

    // Pages follow the code order.
    let first = admin.get_ok("/v1/modules?limit=4").await;
    assert_eq!(item_count(&first), 4);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = admin
        .get_ok(&format!("/v1/modules?limit=500&cursor={cursor}"))
        .await;
    assert_eq!(second["items"][0]["code"], "filter_outbound");
    assert!(second["next_cursor"].is_null());
    let lft = admin.get("/v1/modules/lft").await;
    assert_eq!(lft.status(), 200);
    assert!(lft.headers().get("etag").is_some());
}

#[tokio::test]
async fn requirements_come_first_and_exclusions_hold_both_ways() {
    admin_app!(app, admin);
    let shop = shop(&admin, 10).await;
    let ann = mailbox(&admin, &shop.customer, "ann").await;
    assert_eq!(modules_of(&admin, &ann).await, json!(["base"]));

    let refused = assert_problem(
        assign(&admin, &ann, "sign_encrypt").await,
        409,
        "module-required",
    )
    .await;
    assert_eq!(refused["module"], "certificate");
    assert!(problem_detail(&refused).contains("certificate"));
    admin
        .expect(assign(&admin, &ann, "certificate").await, 200)
        .await;
    let view = admin
        .expect(assign(&admin, &ann, "sign_encrypt").await, 200)
        .await;
    assert_eq!(
        view["modules"],
        json!(["base", "certificate", "sign_encrypt"])
    );
    let refused = assert_problem(
        assign(&admin, &ann, "sign_only").await,
        409,
        "module-excluded",
    )
    .await;
    assert_eq!(refused["module"], "sign_encrypt");
    // A module others need stays; the one needing it goes first.
    let refused = admin
        .delete_problem(
            &format!("/v1/mailboxes/{ann}/modules/certificate"),
            409,
            "module-required",
        )
        .await;
    assert_eq!(refused["module"], "sign_encrypt");
    admin
        .delete_expect(&format!("/v1/mailboxes/{ann}/modules/sign_encrypt"), 204)
        .await;
    admin
        .expect(assign(&admin, &ann, "sign_only").await, 200)
        .await;
    // Assigning what is held changes nothing.
    let again = admin
        .expect(assign(&admin, &ann, "sign_only").await, 200)
        .await;
    assert_eq!(
        again["modules"],
        json!(["base", "certificate", "sign_only"])
    );
    assert_eq!(used(&admin, &shop.customer, "module:sign_only").await, 1);

    // Per-customer modules: m365 and the filters exclude each other, whichever comes first.
    let node_module = |code: &str| format!("/v1/nodes/{}/modules/{code}", shop.customer);
    let held = admin
        .put_expect(&node_module("filter_inbound"), &json!({}), 200)
        .await;
    assert_eq!(held["modules"][0]["code"], "filter_inbound");
    let refused = admin
        .put_problem(&node_module("m365"), &json!({}), 409, "module-excluded")
        .await;
    assert_eq!(refused["module"], "filter_inbound");
    admin
        .delete_expect(&node_module("filter_inbound"), 204)
        .await;
    admin
        .put_expect(&node_module("m365"), &json!({}), 200)
        .await;
    let refused = admin
        .put_problem(
            &node_module("filter_outbound"),
            &json!({}),
            409,
            "module-excluded",
        )
        .await;
    assert_eq!(refused["module"], "m365");
    let listed = admin
        .get_ok(&format!("/v1/nodes/{}/modules", shop.customer))
        .await;
    assert_eq!(listed["modules"].as_array().unwrap().len(), 1);
    assert_eq!(used(&admin, &shop.customer, "module:m365").await, 1);
    assert_eq!(
        used(&admin, &shop.customer, "module:filter_inbound").await,
        0
    );

    // Each module goes where its unit says; base follows the mailbox; unknown modules are not.
    let wrong = assert_problem(assign(&admin, &ann, "m365").await, 422, "validation-failed").await;
    assert_eq!(wrong["errors"][0]["field"], "code");
    admin
        .put_problem(&node_module("lft"), &json!({}), 422, "validation-failed")
        .await;
    admin
        .delete_problem(
            &format!("/v1/mailboxes/{ann}/modules/base"),
            409,
            "conflict",
        )
        .await;
    assert_problem(assign(&admin, &ann, "nonesuch").await, 404, "not-found").await;
    admin
        .delete_problem(
            &format!("/v1/mailboxes/{ann}/modules/lft"),
            404,
            "not-found",
        )
        .await;
    // Role addresses hold no seats, so no modules either.
    let roles = admin
        .get_ok(&format!(
            "/v1/nodes/{}/mailboxes?origin=role",
            shop.customer
        ))
        .await;
    let postmaster = roles["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(roles["items"][0]["modules"], json!([]));
    assert_problem(assign(&admin, &postmaster, "lft").await, 409, "conflict").await;
    app.assert_verified();
}

#[tokio::test]
async fn catalogue_changes_keep_the_rules_and_the_holders_whole() {
    admin_app!(app, admin);
    let shop = shop(&admin, 10).await;
    let ann = mailbox(&admin, &shop.customer, "ann").await;
    admin.expect(assign(&admin, &ann, "lft").await, 200).await;

    let created = admin
        .post(
            "/v1/modules",
            &json!({"code": "archive", "name": "Archiving", "unit": "per_mailbox", "requires": ["lft"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["location"], "/v1/modules/archive");
    let archive: Value = created.json().await.unwrap();
    assert_eq!(archive["requires"], json!(["lft"]));
    assert_eq!(archive["version"], 1);
    admin
        .post_problem(
            "/v1/modules",
            &json!({"code": "archive", "name": "Again", "unit": "per_mailbox"}),
            409,
            "name-taken",
        )
        .await;

    // Rules the catalogue cannot hold are refused, naming the field.
    for (body, field) in [
        (
            json!({"code": "x1", "name": "X", "unit": "per_mailbox", "requires": ["nonesuch"]}),
            "requires",
        ),
        (
            json!({"code": "x2", "name": "X", "unit": "per_mailbox", "excludes": ["m365"]}),
            "excludes",
        ),
        (
            json!({"code": "x3", "name": "X", "unit": "per_mailbox", "requires": ["sign_only", "sign_encrypt"]}),
            "requires",
        ),
        (
            json!({"code": "x4", "name": "X", "unit": "per_customer", "auto_assign": true}),
            "auto_assign",
        ),
        (
            json!({"code": "X5", "name": "X", "unit": "per_mailbox"}),
            "code",
        ),
        (
            json!({"code": "x6", "name": "X", "unit": "per_seat"}),
            "unit",
        ),
    ] {
        let refused = admin
            .post_problem("/v1/modules", &body, 422, "validation-failed")
            .await;
        assert_eq!(refused["errors"][0]["field"], field, "{body}");
    }
    let cycle = admin
        .patch_problem(
            "/v1/modules/lft",
            &json!({"requires": ["archive"]}),
            422,
            "validation-failed",
        )
        .await;
    assert!(first_error(&cycle).contains("cycle"), "{cycle}");

    // A rule that holders would break is refused until they are put right.
    let refused = admin
        .patch_problem(
            "/v1/modules/lft",
            &json!({"requires": ["certificate"]}),
            409,
            "conflict",
        )
        .await;
    assert!(problem_detail(&refused).contains("1 mailbox(es)"));
    admin
        .expect(assign(&admin, &ann, "sandbox").await, 200)
        .await;
    admin
        .patch_problem(
            "/v1/modules/sandbox",
            &json!({"excludes": ["lft"]}),
            409,
            "conflict",
        )
        .await;
    admin
        .expect(assign(&admin, &ann, "certificate").await, 200)
        .await;
    let lft = admin
        .patch_ok("/v1/modules/lft", &json!({"requires": ["certificate"]}))
        .await;
    assert_eq!(lft["requires"], json!(["certificate"]));
    assert_eq!(lft["version"], 2);
    assert_problem(
        admin
            .patch_if_match("/v1/modules/lft", "\"1\"", &json!({"name": "Stale"}))
            .await,
        412,
        "precondition-failed",
    )
    .await;
    // An exclusion named on one side shows on both.
    admin
        .patch_ok(
            "/v1/modules/archive",
            &json!({"requires": [], "excludes": ["sandbox"]}),
        )
        .await;
    let sandbox = admin.get_ok("/v1/modules/sandbox").await;
    assert_eq!(sandbox["excludes"], json!(["archive"]));
    // An automatic module is taken by every mailbox, so it excludes nothing.
    let refused = admin
        .patch_problem(
            "/v1/modules/sandbox",
            &json!({"auto_assign": true}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(refused["errors"][0]["field"], "excludes");
    let refused = assert_problem(
        assign(&admin, &ann, "archive").await,
        409,
        "module-excluded",
    )
    .await;
    assert_eq!(refused["module"], "sandbox");

    // In use: not removed, only retired, and then granted and assigned no further.
    let in_use = admin
        .delete_problem("/v1/modules/lft", 409, "conflict")
        .await;
    assert!(problem_detail(&in_use).contains("retire"));
    admin
        .patch_ok("/v1/modules/sandbox", &json!({"retired": true}))
        .await;
    let bob = mailbox(&admin, &shop.customer, "bob").await;
    assert_problem(assign(&admin, &bob, "sandbox").await, 409, "conflict").await;
    admin
        .allocate_problem(&shop.customer, "module:sandbox", 1, 409, "conflict")
        .await;
    assert_eq!(
        modules_of(&admin, &ann).await,
        json!(["base", "certificate", "lft", "sandbox"]),
        "what was held stays"
    );
    // Unused: removed, and gone from the other side's exclusions.
    admin.delete_expect("/v1/modules/archive", 204).await;
    admin
        .get_problem("/v1/modules/archive", 404, "not-found")
        .await;
    let sandbox = admin.get_ok("/v1/modules/sandbox").await;
    assert_eq!(sandbox["excludes"], json!([]));
    app.assert_verified();
}

#[tokio::test]
async fn every_mailbox_takes_a_base_seat_and_gives_its_seats_back() {
    admin_app!(app, admin);
    let shop = shop(&admin, 2).await;
    let ann = mailbox(&admin, &shop.customer, "ann").await;
    admin.expect(assign(&admin, &ann, "lft").await, 200).await;
    assert_eq!(seats(&admin, &shop.customer).await, (1, 1, 1));
    let lft = admin.usage(&shop.customer, "module:lft").await;
    assert_eq!(
        (lft["limit"].as_i64(), lft["free"].as_i64()),
        (Some(2), Some(1))
    );
    let reseller = admin.usage(&shop.reseller, "module:lft").await;
    assert_eq!(reseller["used"], 1, "the reseller counts its subtree");

    // Disabling frees every seat, the assignments stay; enabling takes them again.
    admin.disable_mailbox(&ann).await;
    assert_eq!(seats(&admin, &shop.customer).await, (0, 0, 0));
    assert_eq!(modules_of(&admin, &ann).await, json!(["base", "lft"]));
    let bob = mailbox(&admin, &shop.customer, "bob").await;
    admin.expect(assign(&admin, &bob, "lft").await, 200).await;
    let cy = mailbox(&admin, &shop.customer, "cy").await;
    admin.expect(assign(&admin, &cy, "lft").await, 200).await;
    assert_eq!(seats(&admin, &shop.customer).await, (2, 2, 2));
    // No users seat is left for ann: the refusal names it, and nothing changes.
    let refused = admin.enable_over_quota(&ann).await;
    assert_eq!(refused["resource"], "users");
    assert_eq!(seats(&admin, &shop.customer).await, (2, 2, 2));

    // A users seat alone is not enough: the base seat is named when it is the one missing.
    admin.grant(&shop.customer, "users", 2).await;
    let refused = admin
        .create_mailbox_problem(&shop.customer, "dee@shop.example", 409, "quota-exceeded")
        .await;
    assert_eq!(refused["resource"], "module:base");
    let refused = admin
        .post_problem(
            &format!("/v1/nodes/{}/mailboxes/import", shop.customer),
            &json!([{"address": "eve@shop.example"}]),
            422,
            "import-failed",
        )
        .await;
    assert_eq!(refused["rows"][0]["problem"]["resource"], "module:base");
    let listed = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes", shop.customer))
        .await;
    let addresses: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["address"].as_str().unwrap())
        .filter(|a| !a.starts_with("postmaster@") && !a.starts_with("abuse@"))
        .collect();
    assert_eq!(
        addresses,
        ["ann@shop.example", "bob@shop.example", "cy@shop.example"]
    );
    assert_eq!(seats(&admin, &shop.customer).await, (2, 2, 2));

    // Deleting returns everything: bob disabled and deleted leaves one holder of lft.
    admin.disable_mailbox(&bob).await;
    admin
        .delete_expect(&format!("/v1/mailboxes/{bob}"), 204)
        .await;
    assert_eq!(seats(&admin, &shop.customer).await, (1, 1, 1));
    let holders = admin
        .get_ok(&format!(
            "/v1/nodes/{}/modules/lft/mailboxes",
            shop.reseller
        ))
        .await;
    let ids: Vec<&str> = texts(&holders["items"], "id");
    assert_eq!(
        ids,
        [ann.as_str(), cy.as_str()],
        "the disabled ann still holds lft"
    );
    admin
        .get_problem(
            &format!("/v1/nodes/{}/modules/m365/mailboxes", shop.reseller),
            422,
            "validation-failed",
        )
        .await;
    admin
        .get_problem(
            &format!("/v1/nodes/{}/modules/nonesuch/mailboxes", shop.reseller),
            404,
            "not-found",
        )
        .await;
    // Now ann fits again, with base and lft.
    admin
        .post_expect(&format!("/v1/mailboxes/{ann}/enable"), &json!({}), 200)
        .await;
    assert_eq!(seats(&admin, &shop.customer).await, (2, 2, 2));

    // A domain removed with its mailboxes returns their seats.
    let domains = admin
        .get_ok(&format!("/v1/nodes/{}/domains", shop.customer))
        .await;
    let domain = domains["items"][0]["id"].as_str().unwrap();
    admin
        .delete_expect(&format!("/v1/domains/{domain}?cascade=true"), 204)
        .await;
    assert_eq!(seats(&admin, &shop.customer).await, (0, 0, 0));
    app.assert_verified();
}

#[tokio::test]
async fn racing_managers_never_oversell_the_last_module_seat() {
    admin_app!(app, admin);
    let shop = shop(&admin, 40).await;
    // 3 seats of lft for the customer, 24 mailboxes wanting one.
    admin
        .patch_ok(
            &allocation_of(&admin, &shop.customer, "module:lft").await,
            &json!({"amount": 3}),
        )
        .await;
    let mut mailboxes = Vec::new();
    for i in 0..24 {
        mailboxes.push(mailbox(&admin, &shop.customer, &format!("m{i}")).await);
    }
    let attempts = mailboxes.iter().map(|id| {
        let admin = &admin;
        async move { assign(admin, id, "lft").await }
    });
    let mut assigned = 0;
    for response in futures_util::future::join_all(attempts).await {
        match response.status().as_u16() {
            200 => assigned += 1,
            409 => {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["type"], "/problems/quota-exceeded");
                assert_eq!(body["resource"], "module:lft");
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(assigned, 3, "exactly the seats there were");
    assert_eq!(used(&admin, &shop.customer, "module:lft").await, 3);
    assert_eq!(used(&admin, &shop.reseller, "module:lft").await, 3);
    app.assert_verified();
}

/// The path of `node`'s one allocation of `resource`.
async fn allocation_of(admin: &Caller<'_>, node: &str, resource: &str) -> String {
    let listed = admin.get_ok(&format!("/v1/nodes/{node}/allocations")).await;
    let id = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["resource"] == resource)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("/v1/allocations/{id}")
}

#[tokio::test]
async fn only_owner_admins_change_the_catalogue() {
    let app: TestApp = spawn_app().await;
    let admin = app.as_admin().await;
    let shop = shop(&admin, 1).await;
    let body = json!({"username": "reseller-admin", "email": "r@x.test", "role": "admin", "password": "reseller password"});
    admin
        .post_expect(&format!("/v1/nodes/{}/accounts", shop.reseller), &body, 201)
        .await;
    let token = app
        .login("reseller-admin", "reseller password")
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reseller = Caller { app: &app, token };
    reseller.get_ok("/v1/modules").await;
    reseller
        .post_problem(
            "/v1/modules",
            &json!({"code": "mine", "name": "Mine", "unit": "per_mailbox"}),
            404,
            "not-found",
        )
        .await;
    reseller
        .patch_problem(
            "/v1/modules/lft",
            &json!({"retired": true}),
            404,
            "not-found",
        )
        .await;
    let lft = admin.get_ok("/v1/modules/lft").await;
    assert_eq!(lft["retired"], false, "nothing changed");
}

#[tokio::test]
async fn verify_counts_module_seats_against_their_holders() {
    admin_app!(app, admin);
    let shop = shop(&admin, 5).await;
    let ann = mailbox(&admin, &shop.customer, "ann").await;
    admin.expect(assign(&admin, &ann, "lft").await, 200).await;
    admin.enable_module(&shop.customer, "branding").await;
    app.assert_verified();
    // Behind allot's back: an assignment gone while its seat is still counted, and a customer's
    // module held without its seat.
    app.execute_sql(&format!(
        "DELETE FROM mailbox_modules WHERE mailbox_id = '{ann}' AND module_code = 'lft'"
    ));
    app.execute_sql(&format!(
        "UPDATE usage_counters SET used = 0 WHERE node_id = '{}' AND resource = 'module:branding'",
        shop.customer
    ));
    let findings = app.verify();
    for expected in [
        format!(
            "customer {} counts 1 module:lft in use but holds 0",
            shop.customer
        ),
        format!(
            "customer {} counts 0 module:branding in use but holds 1",
            shop.customer
        ),
    ] {
        assert!(
            findings.contains(&expected),
            "{expected} not in {findings:#?}"
        );
    }
}
