//! Address identity: which spellings are one mailbox (NFC, the domain's case, the local part's
//! case unless the customer says otherwise), the characters refused in local parts, the customer
//! setting and its switch, domains mixing scripts, and what `allot verify` says about rows that
//! were the same address before keys existed.

use serde_json::{Value, json};

use crate::check::{
    ask, assert_socketmap, check_key, policy_answer, setup, verified_app, with_listeners,
};
use crate::dns::DnsServer;
use crate::helpers::{Caller, admin_app, assert_problem, first_error, item_count, spawn_another};
use crate::mailboxes::{import_csv_each_row, with_domains};

const NFC_JORG: &str = "j\u{f6}rg@c1.example";
const NFD_JORG: &str = "jo\u{308}rg@c1.example";

/// The addresses of `customer`'s mailboxes, role addresses left out.
async fn addresses(admin: &Caller<'_>, customer: &str) -> Vec<String> {
    let listed = admin
        .get_ok(&format!("/v1/nodes/{customer}/mailboxes?limit=500"))
        .await;
    let mut found: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["origin"] != "role")
        .map(|m| m["address"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    found
}

async fn patch_case(admin: &Caller<'_>, node: &str, case: &str) -> reqwest::Response {
    admin
        .patch(
            &format!("/v1/nodes/{node}"),
            &json!({"local_part_case": case}),
        )
        .await
}

#[tokio::test]
async fn case_and_normalisation_variants_are_one_address_and_invisible_characters_are_refused() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let path = format!("/v1/nodes/{}/mailboxes", tree.c1);
    let jane = admin.create_mailbox(&tree.c1, "Jane@c1.example").await;
    assert_eq!(jane["address"], "Jane@c1.example", "kept as given");
    // Written decomposed, kept composed.
    let jorg = admin.create_mailbox(&tree.c1, NFD_JORG).await;
    assert_eq!(jorg["address"], NFC_JORG);
    let sales = admin
        .add_alias(jane["id"].as_str().unwrap(), "Sales@c1.example")
        .await;
    assert_eq!(sales["address"], "Sales@c1.example");

    for taken in [
        "JANE@c1.example",
        "jane@C1.EXAMPLE",
        NFC_JORG,
        NFD_JORG,
        "J\u{d6}RG@c1.example",
        "sales@c1.example",
    ] {
        admin
            .post_problem(&path, &json!({"address": taken}), 409, "address-taken")
            .await;
        admin
            .post_problem(
                &format!("/v1/mailboxes/{}/aliases", jorg["id"].as_str().unwrap()),
                &json!({"address": taken}),
                409,
                "address-taken",
            )
            .await;
    }
    for (invisible, code) in [
        ("ja\u{200b}ne@c1.example", "U+200B"),
        ("\u{202e}enaj@c1.example", "U+202E"),
        ("ja\u{ad}ne@c1.example", "U+00AD"),
        ("\"ja\u{2066}ne\"@c1.example", "U+2066"),
    ] {
        let body = admin
            .post_invalid(&path, &json!({"address": invisible}), "address")
            .await;
        assert!(first_error(&body).contains(code), "{body}");
    }
    // Straße and strasse are two spellings, not two cases.
    admin
        .create_mailbox(&tree.c1, "stra\u{df}e@c1.example")
        .await;
    admin.create_mailbox(&tree.c1, "strasse@c1.example").await;
    assert_eq!(
        addresses(&admin, &tree.c1).await,
        [
            "Jane@c1.example",
            NFC_JORG,
            "strasse@c1.example",
            "stra\u{df}e@c1.example"
        ]
    );
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 4);
    app.assert_verified();
}

#[tokio::test]
async fn an_import_reports_case_and_normalisation_variants_as_taken() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    admin.create_mailbox(&tree.c1, "ann@c1.example").await;
    let csv = format!(
        "address\nAnn@c1.example\nbob@c1.example\nBOB@C1.EXAMPLE\n{NFC_JORG}\n{NFD_JORG}\n"
    );
    let report = admin
        .expect(import_csv_each_row(&admin, &tree.c1, csv).await, 200)
        .await;
    let outcomes: Vec<(i64, &str, &str)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["status"].as_str().unwrap(),
                r["problem"]["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (2, "failed", "/problems/address-taken"),
            (3, "created", ""),
            (4, "failed", "/problems/address-taken"),
            (5, "created", ""),
            (6, "failed", "/problems/address-taken"),
        ]
    );
    assert_eq!(
        addresses(&admin, &tree.c1).await,
        ["ann@c1.example", "bob@c1.example", NFC_JORG]
    );
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 3);
    app.assert_verified();
}

#[tokio::test]
async fn checks_and_enrolments_of_variants_find_one_mailbox_taking_one_seat() {
    verified_app!(app, dns, admin, tree, worker @ owner);
    let outbound =
        |address: &str| json!({"direction": "outbound", "address": address, "enrol": true});

    let (verdict, _, first) = ask(&worker, outbound("Jane@c1.example")).await;
    assert_eq!(
        (verdict.as_str(), &first["enrolled"]),
        ("accept", &json!(true))
    );
    let (_, _, jorg) = ask(&worker, outbound(NFD_JORG)).await;
    assert_eq!(jorg["enrolled"], true);
    for (variant, same) in [
        ("JANE@c1.example", &first),
        ("jane@C1.EXAMPLE", &first),
        (NFC_JORG, &jorg),
        ("J\u{d6}RG@c1.example", &jorg),
    ] {
        let (verdict, _, answer) = ask(&worker, outbound(variant)).await;
        assert_eq!(verdict, "accept", "{variant}: {answer}");
        assert_eq!(answer["enrolled"], false, "{variant}: {answer}");
        assert_eq!(answer["mailbox_id"], same["mailbox_id"], "{variant}");
    }
    assert_eq!(
        addresses(&admin, &tree.c1).await,
        ["Jane@c1.example", NFC_JORG]
    );
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 2);
    app.assert_verified();
}

#[tokio::test]
async fn postfix_finds_case_variants_through_the_policy_and_socketmap_listeners() {
    let dns = DnsServer::start().await;
    let (app, policy, socketmap) = with_listeners(&dns, |_| {}).await;
    let (admin, tree) = setup(&app, &dns).await;
    admin
        .patch_node(&tree.c1, &json!({"inbound_recipients": "known"}))
        .await;
    let pat = admin.create_mailbox(&tree.c1, "Pat@c1.example").await;
    admin
        .add_alias(pat["id"].as_str().unwrap(), "Team@c1.example")
        .await;

    let mut stream = tokio::net::TcpStream::connect(policy).await.unwrap();
    for (context, sender, recipient) in [
        ("", "someone@example.net", "PAT@c1.example"),
        ("", "someone@example.net", "team@c1.example"),
        // Senders: known in any case, so nothing is enrolled.
        ("outbound", "pat@C1.example", "someone@example.net"),
        ("outbound", "TEAM@c1.example", "someone@example.net"),
    ] {
        assert_eq!(
            policy_answer(&mut stream, context, sender, recipient).await,
            "action=DUNNO\n\n",
            "{context} {sender} {recipient}"
        );
    }
    assert_eq!(addresses(&admin, &tree.c1).await, ["Pat@c1.example"]);
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 1);

    // Postfix lowercases socketmap keys: the lowercase spellings find the mixed-case entries.
    assert_socketmap(
        socketmap,
        &[
            ("mailbox pat@c1.example", "OK pat@c1.example"),
            ("mailbox team@c1.example", "OK team@c1.example"),
            ("alias team@c1.example", "OK Pat@c1.example"),
            ("mailbox nobody@c1.example", "NOTFOUND "),
        ],
    )
    .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_case_sensitive_customer_keeps_variants_apart_and_cannot_switch_back_while_they_collide()
{
    verified_app!(app, dns, admin, tree, worker @ owner);
    let node = admin.get_ok(&format!("/v1/nodes/{}", tree.c1)).await;
    assert_eq!(node["local_part_case"], "insensitive", "the default");
    let owner = admin.get_ok(&format!("/v1/nodes/{}", tree.owner)).await;
    assert!(owner.get("local_part_case").is_none(), "a customer setting");
    assert_problem(
        patch_case(&admin, &tree.a, "sensitive").await,
        422,
        "validation-failed",
    )
    .await;

    let jane = admin.create_mailbox(&tree.c1, "Jane@c1.example").await;
    admin
        .add_alias(jane["id"].as_str().unwrap(), "desk@c1.example")
        .await;
    let changed = admin
        .expect(patch_case(&admin, &tree.c1, "sensitive").await, 200)
        .await;
    assert_eq!(changed["local_part_case"], "sensitive");
    let check =
        |address: &str| json!({"direction": "outbound", "address": address, "enrol": false});
    // Keyed again at once: the old key is gone from the check's index too.
    let (_, reason, answer) = ask(&worker, check("jane@c1.example")).await;
    assert_eq!(reason, "unknown_mailbox", "{answer}");
    // An alias whose own key stays finds its mailbox by the mailbox's new key.
    let (_, _, answer) = ask(&worker, check("desk@c1.example")).await;
    assert_eq!(answer["mailbox_id"], jane["id"], "{answer}");
    let lower = admin.create_mailbox(&tree.c1, "jane@c1.example").await;
    admin
        .create_mailbox_problem(&tree.c1, "Jane@c1.example", 409, "address-taken")
        .await;
    let (_, reason, _) = ask(&worker, check("JANE@c1.example")).await;
    assert_eq!(reason, "unknown_mailbox", "exact comparison");
    let (_, _, answer) = ask(&worker, check("jane@c1.example")).await;
    assert_eq!(answer["mailbox_id"], lower["id"]);

    // Back to insensitive: the two would be one mailbox, so it is refused, naming them.
    let body = assert_problem(
        patch_case(&admin, &tree.c1, "insensitive").await,
        409,
        "address-collision",
    )
    .await;
    assert_eq!(body["collisions"][0]["key"], "jane@c1.example", "{body}");
    let mut named: Vec<&str> = body["collisions"][0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    named.sort();
    assert_eq!(named, ["Jane@c1.example", "jane@c1.example"]);
    let node = admin.get_ok(&format!("/v1/nodes/{}", tree.c1)).await;
    assert_eq!(node["local_part_case"], "sensitive", "nothing changed");

    let lower_id = lower["id"].as_str().unwrap();
    admin.disable_mailbox(lower_id).await;
    admin
        .delete_expect(&format!("/v1/mailboxes/{lower_id}"), 204)
        .await;
    admin
        .expect(patch_case(&admin, &tree.c1, "insensitive").await, 200)
        .await;
    let (verdict, _, answer) = ask(&worker, check("JANE@c1.example")).await;
    assert_eq!(verdict, "accept", "keyed again: {answer}");
    app.assert_verified();
}

#[tokio::test]
async fn a_domain_whose_label_mixes_scripts_is_refused() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let path = format!("/v1/nodes/{}/domains", tree.c1);
    for confusable in ["p\u{430}ypal.example", "xn--pypal-4ve.example"] {
        let body = admin
            .post_invalid(&path, &json!({"name": confusable}), "name")
            .await;
        let message = first_error(&body);
        assert!(
            message.contains("p\u{430}ypal")
                && message.contains("Cyrillic")
                && message.contains("Latin"),
            "{message}"
        );
    }
    // One script per label is fine, whichever.
    admin
        .register_domain(&tree.c1, "\u{43f}\u{43e}\u{447}\u{442}\u{430}.example")
        .await;
    let listed: Value = admin
        .get_ok(&format!("/v1/nodes/{}/domains", tree.c1))
        .await;
    assert_eq!(item_count(&listed), 2, "{listed}");
    app.assert_verified();
}

#[tokio::test]
async fn rows_keyed_at_start_and_verify_names_the_ones_that_are_the_same_address() {
    verified_app!(app, dns, admin, tree);
    let ann = admin.create_mailbox(&tree.c1, "ann@c1.example").await;
    let domain = ann["domain_id"].as_str().unwrap();
    // Rows as an older allot wrote them: no key, and one the same address as ann@ (disabled, so
    // that no seat count is off: the collision is the only finding).
    let old = |id: &str, address: &str| {
        let local = address.split('@').next().unwrap();
        format!(
            "INSERT INTO mailboxes (id, node_id, domain_id, local_part, address, status, origin,
                                    version, created_at, updated_at)
             VALUES ('{id}', '{}', '{domain}', '{local}', '{address}', 'disabled', 'import', 1,
                     '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            tree.c1
        )
    };
    let twin = "01900000-0000-7000-8000-0000000000a1";
    let bob = "01900000-0000-7000-8000-0000000000b1";
    app.execute_sql(&old(twin, "ANN@c1.example"));
    app.execute_sql(&old(bob, "Bob@c1.example"));
    app.execute_sql(&format!(
        "UPDATE mailboxes SET address_key = NULL WHERE id IN ('{twin}', '{bob}')"
    ));

    // The next start keys them.
    let second = spawn_another(&app).await;
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM mailboxes WHERE address_key IS NULL"),
        0
    );
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM mailboxes WHERE address_key = 'bob@c1.example'"),
        1
    );
    let findings = second.verify();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let ann_id = ann["id"].as_str().unwrap();
    assert!(
        findings[0].contains(twin)
            && findings[0].contains(ann_id)
            && findings[0].contains("same address"),
        "{findings:#?}"
    );
    // Nothing was deleted, and ann@ is the one the check finds.
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM mailboxes WHERE origin <> 'role'"),
        3
    );
    let second_admin = second.as_admin().await;
    let worker = check_key(&second, &second_admin, &tree.owner).await;
    let (_, _, answer) = ask(
        &worker,
        json!({"direction": "inbound", "address": "Ann@c1.example"}),
    )
    .await;
    assert_eq!(answer["mailbox_id"], ann["id"], "{answer}");
}
