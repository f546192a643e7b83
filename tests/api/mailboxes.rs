//! Mailboxes: seats taken and freed, addresses unique and well-formed, delete only when disabled.

use serde_json::{Value, json};

use crate::helpers::{
    Caller, Tree, admin_app, assert_problem, first_error, item_count, seed_tree, texts,
};

/// The tree with a domain for C1 and one for C2.
pub(crate) async fn with_domains(admin: &Caller<'_>) -> Tree {
    let tree = seed_tree(admin).await;
    admin.register_domain(&tree.c1, "c1.example").await;
    admin.register_domain(&tree.c2, "株式.会社").await;
    tree
}

#[tokio::test]
async fn a_mailbox_takes_a_seat_and_every_domain_has_its_role_addresses() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let roles = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes?origin=role", tree.c1))
        .await;
    let roles: Vec<&str> = texts(&roles["items"], "address");
    assert_eq!(roles, ["postmaster@c1.example", "abuse@c1.example"]);
    admin
        .assert_usage(&tree.c1, "users", "used", 0, "role addresses take no seat")
        .await;

    let response = admin
        .post(
            &format!("/v1/nodes/{}/mailboxes", tree.c2),
            &json!({"address": "山田太郎@株式.会社", "display_name": "Yamada Taro"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let mailbox: Value = response.json().await.unwrap();
    assert_eq!(mailbox["display_address"], "山田太郎@株式.会社");
    assert!(
        mailbox["address"]
            .as_str()
            .unwrap()
            .starts_with("山田太郎@xn--")
    );
    assert_eq!(
        (mailbox["status"].as_str(), mailbox["origin"].as_str()),
        (Some("active"), Some("manual"))
    );
    assert_eq!(admin.usage(&tree.c2, "users").await["used"], 1);
    assert_eq!(admin.usage(&tree.owner, "users").await["used"], 1);
    app.assert_verified();
}

#[tokio::test]
async fn addresses_are_unique_and_must_be_on_the_customers_own_domains() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let path = format!("/v1/nodes/{}/mailboxes", tree.c1);
    admin
        .post_expect(&path, &json!({"address": "Jane@C1.example"}), 201)
        .await;
    admin
        .post_problem(
            &path,
            &json!({"address": "Jane@c1.EXAMPLE"}),
            409,
            "address-taken",
        )
        .await;
    // Local parts compare regardless of case by default (tests/api/identity.rs has the rest).
    admin
        .post_problem(
            &path,
            &json!({"address": "jane@c1.example"}),
            409,
            "address-taken",
        )
        .await;
    let body = admin
        .post_problem(
            &path,
            &json!({"address": "x@株式.会社"}),
            422,
            "validation-failed",
        )
        .await;
    assert!(first_error(&body).contains("not one of this customer's domains"));
    admin
        .post_problem(
            &path,
            &json!({"address": "postmaster@c1.example"}),
            422,
            "validation-failed",
        )
        .await;
    for bad in [
        "no-at",
        "a..b@c1.example",
        "\"open@c1.example",
        "a b@c1.example",
    ] {
        let body = admin
            .post_problem(&path, &json!({"address": bad}), 422, "validation-failed")
            .await;
        assert_eq!(body["errors"][0]["field"], "address", "{bad}");
    }
    admin
        .post_expect(&path, &json!({"address": "\"john smith\"@c1.example"}), 201)
        .await;
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 2);
    app.assert_verified();
}

#[tokio::test]
async fn disabling_frees_the_seat_and_enabling_takes_it_when_one_is_free() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    admin.set_grant(&tree.c1, "users", 1).await;
    let path = format!("/v1/nodes/{}/mailboxes", tree.c1);
    let first = admin
        .post_expect(&path, &json!({"address": "one@c1.example"}), 201)
        .await;
    let body = admin
        .post_problem(
            &path,
            &json!({"address": "two@c1.example"}),
            409,
            "quota-exceeded",
        )
        .await;
    assert_eq!(
        (
            body["resource"].as_str(),
            body["limit"].as_i64(),
            body["available"].as_i64()
        ),
        (Some("users"), Some(1), Some(0))
    );
    let id = first["id"].as_str().unwrap();
    let disabled = admin.disable_mailbox(id).await;
    assert_eq!(disabled["status"], "disabled");
    let second = admin
        .post_expect(&path, &json!({"address": "two@c1.example"}), 201)
        .await;
    assert_eq!(second["status"], "active");
    admin.enable_over_quota(id).await;
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_mailbox_is_deleted_only_once_disabled_and_role_addresses_never() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let created = admin.create_mailbox(&tree.c1, "bye@c1.example").await;
    let path = format!("/v1/mailboxes/{}", created["id"].as_str().unwrap());
    admin.delete_problem(&path, 409, "conflict").await;
    admin
        .post_expect(&format!("{path}/disable"), &json!({}), 200)
        .await;
    admin.delete_expect(&path, 204).await;
    admin.get_problem(&path, 404, "not-found").await;
    let roles = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes?origin=role", tree.c1))
        .await;
    let postmaster = roles["items"][0]["id"].as_str().unwrap();
    admin
        .delete_problem(&format!("/v1/mailboxes/{postmaster}"), 409, "conflict")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_domain_with_mailboxes_goes_only_with_cascade_and_returns_their_seats() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    admin.create_mailbox(&tree.c1, "stay@c1.example").await;
    let domains = admin
        .get_ok(&format!("/v1/nodes/{}/domains", tree.c1))
        .await;
    let domain = format!(
        "/v1/domains/{}",
        domains["items"][0]["id"].as_str().unwrap()
    );
    admin.delete_problem(&domain, 409, "not-empty").await;
    admin
        .delete_expect(&format!("{domain}?cascade=true"), 204)
        .await;
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 0);
    let left = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes", tree.c1))
        .await;
    assert_eq!(left["items"], json!([]));
    app.assert_verified();
}

#[tokio::test]
async fn mailboxes_are_listed_and_changed_field_by_field() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let created = admin
        .post_expect(
            &format!("/v1/nodes/{}/mailboxes", tree.c1),
            &json!({"address": "ann@c1.example", "first_name": "Ann"}),
            201,
        )
        .await;
    let path = format!("/v1/mailboxes/{}", created["id"].as_str().unwrap());
    let changed = admin
        .patch_ok(&path, &json!({"last_name": "Lee", "first_name": null}))
        .await;
    assert_eq!(
        (changed["first_name"].clone(), changed["last_name"].as_str()),
        (Value::Null, Some("Lee"))
    );
    admin
        .patch_problem(
            &path,
            &json!({"status": "disabled"}),
            422,
            "validation-failed",
        )
        .await;
    let listed = admin
        .get_ok(&format!(
            "/v1/nodes/{}/mailboxes?address_prefix=ann&status=active",
            tree.a
        ))
        .await;
    assert_eq!(item_count(&listed), 1);
    let by_domain = admin
        .get_ok(&format!(
            "/v1/nodes/{}/mailboxes?domain=C1.example&origin=manual",
            tree.owner
        ))
        .await;
    assert_eq!(item_count(&by_domain), 1);
    admin
        .get_problem(
            &format!("/v1/nodes/{}/mailboxes?origin=robot", tree.owner),
            400,
            "invalid-query",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn the_last_seat_raced_by_32_creates_is_taken_once() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    admin.set_grant(&tree.c1, "users", 1).await;
    let path = format!("/v1/nodes/{}/mailboxes", tree.c1);
    let addresses = (0..32).map(|i| json!({"address": format!("racer{i}@c1.example")}));
    let responses = admin.post_racing(&path, addresses).await;
    assert_eq!(responses.iter().filter(|r| r.status() == 201).count(), 1);
    assert!(
        responses
            .iter()
            .all(|r| r.status() == 201 || r.status() == 409)
    );
    app.assert_verified();
}

#[tokio::test]
async fn aliases_share_the_address_space_with_mailboxes_and_are_capped_per_customer() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    admin.register_domain(&tree.c1, "other.example").await;
    let jane = admin.create_mailbox(&tree.c1, "jane@c1.example").await;
    let aliases = format!("/v1/mailboxes/{}/aliases", jane["id"].as_str().unwrap());
    let created = admin
        .post(&aliases, &json!({"address": "sales@other.example"}))
        .await;
    assert_eq!(created.status(), 201);
    let alias: Value = created.json().await.unwrap();
    assert_eq!(alias["address"], "sales@other.example");
    admin
        .post_problem(
            &aliases,
            &json!({"address": "jane@c1.example"}),
            409,
            "address-taken",
        )
        .await;
    admin
        .create_mailbox_problem(&tree.c1, "sales@other.example", 409, "address-taken")
        .await;
    admin
        .post_problem(
            &aliases,
            &json!({"address": "x@株式.会社"}),
            422,
            "validation-failed",
        )
        .await;
    admin
        .assert_usage(&tree.c1, "users", "used", 1, "aliases take no seat")
        .await;

    let limited = admin
        .patch_node(&tree.c1, &json!({"max_aliases_per_mailbox": 2}))
        .await;
    assert_eq!(limited["max_aliases_per_mailbox"], 2);
    admin
        .post_expect(&aliases, &json!({"address": "info@other.example"}), 201)
        .await;
    admin
        .post_problem(
            &aliases,
            &json!({"address": "third@other.example"}),
            409,
            "conflict",
        )
        .await;
    admin
        .patch_problem(
            &format!("/v1/nodes/{}", tree.a),
            &json!({"max_aliases_per_mailbox": 2}),
            422,
            "validation-failed",
        )
        .await;
    let listed = admin.get_ok(&aliases).await;
    assert_eq!(item_count(&listed), 2);

    admin
        .delete_expect(
            &format!("/v1/aliases/{}", alias["id"].as_str().unwrap()),
            204,
        )
        .await;
    admin.create_mailbox(&tree.c1, "sales@other.example").await;
    // Deleting the mailbox takes its remaining alias along.
    let jane = format!("/v1/mailboxes/{}", jane["id"].as_str().unwrap());
    admin
        .post_expect(&format!("{jane}/disable"), &json!({}), 200)
        .await;
    admin.delete_expect(&jane, 204).await;
    admin.create_mailbox(&tree.c1, "info@other.example").await;
    app.assert_verified();
}

#[tokio::test]
async fn groups_list_their_members_and_lose_deleted_mailboxes() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let path = format!("/v1/nodes/{}/groups", tree.c1);
    let response = admin.post(&path, &json!({"name": "Sales"})).await;
    assert_eq!(response.status(), 201);
    let group: Value = response.json().await.unwrap();
    admin
        .post_problem(&path, &json!({"name": " Sales "}), 409, "name-taken")
        .await;
    admin
        .post_problem(
            &format!("/v1/nodes/{}/groups", tree.a),
            &json!({"name": "X"}),
            422,
            "validation-failed",
        )
        .await;
    let group_path = format!("/v1/groups/{}", group["id"].as_str().unwrap());
    let mut ids = Vec::new();
    for local in ["bob", "amy"] {
        let m = admin
            .create_mailbox(&tree.c1, &format!("{local}@c1.example"))
            .await;
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        admin
            .put_expect(&format!("{group_path}/members/{id}"), &json!({}), 200)
            .await;
    }
    let twice = admin
        .put_expect(&format!("{group_path}/members/{}", ids[0]), &json!({}), 200)
        .await;
    let members: Vec<&str> = texts(&twice["members"], "address");
    assert_eq!(members, ["amy@c1.example", "bob@c1.example"]);
    // A mailbox of another customer cannot join.
    let outsider = admin.create_mailbox(&tree.c2, "x@株式.会社").await;
    admin
        .put_problem(
            &format!("{group_path}/members/{}", outsider["id"].as_str().unwrap()),
            &json!({}),
            404,
            "not-found",
        )
        .await;
    admin
        .delete_expect(&format!("{group_path}/members/{}", ids[1]), 200)
        .await;
    admin
        .post_expect(
            &format!("/v1/mailboxes/{}/disable", ids[0]),
            &json!({}),
            200,
        )
        .await;
    admin
        .delete_expect(&format!("/v1/mailboxes/{}", ids[0]), 204)
        .await;
    let left = admin.get_ok(&group_path).await;
    assert_eq!(left["members"], json!([]));
    let listed = admin.get_ok(&path).await;
    assert_eq!(listed["items"][0]["name"], "Sales");
    admin.delete_expect(&group_path, 204).await;
    admin.get_problem(&group_path, 404, "not-found").await;
    app.assert_verified();
}

#[tokio::test]
async fn over_long_strings_control_characters_and_broken_utf8_change_nothing() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let path = format!("/v1/nodes/{}/mailboxes", tree.c1);
    let body = admin.post_problem(&path, &json!({"address": "ok@c1.example", "display_name": "x".repeat(201), "first_name": "bell\u{7}", "contact_email": "nope"}), 422, "validation-failed").await;
    let fields: Vec<&str> = texts(&body["errors"], "field");
    assert_eq!(fields, ["display_name", "first_name", "contact_email"]);
    admin
        .post_problem(
            &path,
            &json!({"address": format!("{}@c1.example", "a".repeat(65))}),
            422,
            "validation-failed",
        )
        .await;
    let broken = app
        .client
        .post(app.url(&path))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body(b"{\"address\": \"caf\xe9@c1.example\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_problem(broken, 400, "malformed-body").await;
    admin
        .post_invalid(
            &format!("/v1/nodes/{}/domains", tree.c1),
            &json!({"name": "new.example", "description": "x".repeat(1001)}),
            "description",
        )
        .await;
    let listed = admin.get_ok(&format!("{path}?origin=manual")).await;
    assert_eq!(listed["items"], json!([]));
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 0);
    assert_eq!(admin.usage(&tree.c1, "domains").await["used"], 1);
    app.assert_verified();
}

pub(crate) async fn import(
    admin: &Caller<'_>,
    node: &str,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let url = admin
        .app
        .url(&format!("/v1/nodes/{node}/mailboxes/import{query}"));
    let request = admin.app.client.post(url).bearer_auth(&admin.token);
    let request = request.header("content-type", content_type).body(body);
    request.send().await.unwrap()
}

/// Imports the CSV `csv` into `node` row by row (`?atomic=false`): each row stands alone.
pub(crate) async fn import_csv_each_row(
    admin: &Caller<'_>,
    node: &str,
    csv: impl Into<Vec<u8>>,
) -> reqwest::Response {
    import(admin, node, "?atomic=false", "text/csv", csv.into()).await
}

#[tokio::test]
async fn an_atomic_import_takes_every_row_or_none() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let good = json!([{"address": "a@c1.example", "first_name": "A"}, {"address": "b@c1.example"}, {"address": "c@c1.example"}]);
    let response = import(
        &admin,
        &tree.c1,
        "",
        "application/json",
        good.to_string().into_bytes(),
    )
    .await;
    let report = admin.expect(response, 201).await;
    assert_eq!(
        (report["created"].as_i64(), report["failed"].as_i64()),
        (Some(3), Some(0))
    );
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 3);

    let mixed = json!([{"address": "d@c1.example"}, {"address": "a@c1.example"}, {"address": "not an address"}]);
    let body = assert_problem(
        import(
            &admin,
            &tree.c1,
            "",
            "application/json",
            mixed.to_string().into_bytes(),
        )
        .await,
        422,
        "import-failed",
    )
    .await;
    let statuses: Vec<(i64, &str)> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(statuses, [(1, "skipped"), (2, "failed"), (3, "failed")]);
    assert_eq!(
        body["rows"][1]["problem"]["type"],
        "/problems/address-taken"
    );
    assert_eq!(body["rows"][2]["problem"]["errors"][0]["field"], "address");
    admin
        .assert_usage(
            &tree.c1,
            "users",
            "used",
            3,
            "nothing of the failed import stays",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_csv_import_reports_each_row_by_its_line() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    admin.set_grant(&tree.c1, "users", 3).await;
    let csv = "address,display_name\n\
               one@c1.example,One\n\
               \"two@c1.example\",\"Two, the second\"\n\
               one@c1.example,Again\n\
               x@elsewhere.example,\n\
               three@c1.example,Three\n\
               four@c1.example,No seat left\n";
    let report = admin
        .expect(import_csv_each_row(&admin, &tree.c1, csv).await, 200)
        .await;
    let outcomes: Vec<(i64, String, String)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_owned(),
                r["problem"]["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (2, "created".into(), "".into()),
            (3, "created".into(), "".into()),
            (4, "failed".into(), "/problems/address-taken".into()),
            (5, "failed".into(), "/problems/validation-failed".into()),
            (6, "created".into(), "".into()),
            (7, "failed".into(), "/problems/quota-exceeded".into()),
        ]
    );
    let two = admin
        .get_ok(&format!(
            "/v1/mailboxes/{}",
            report["rows"][1]["mailbox_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (two["display_name"].as_str(), two["origin"].as_str()),
        (Some("Two, the second"), Some("import"))
    );
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 3);
    app.assert_verified();
}

/// A row's line is the line an editor shows, whatever ends the lines: a lone CR (a classic Mac
/// file) ends a line as LF and CRLF do, a blank line counts, and a quoted field's line breaks too.
#[tokio::test]
async fn a_csv_import_counts_lines_as_an_editor_does() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let csv = "address,display_name\r\
               one@c1.example,One\r\
               \r\
               two@c1.example,Two\n\
               \"not an\r\naddress\",\r\n\
               three@c1.example,Three\r";
    let report = admin
        .expect(import_csv_each_row(&admin, &tree.c1, csv).await, 200)
        .await;
    let lines: Vec<(i64, &str)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            (2, "created"),
            (4, "created"),
            (5, "failed"),
            (7, "created")
        ]
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_broken_csv_is_refused_whole() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let cases: [(&str, u16, &str); 4] = [
        ("display_name\nAnn\n", 422, "validation-failed"),
        (
            "address,colour\na@c1.example,red\n",
            422,
            "validation-failed",
        ),
        (
            "address,display_name\na@c1.example,\"open quote\nb@c1.example,Bee\n",
            400,
            "malformed-body",
        ),
        (
            "address,display_name\na@c1.example\n",
            400,
            "malformed-body",
        ),
    ];
    for (csv, status, slug) in cases {
        assert_problem(
            import_csv_each_row(&admin, &tree.c1, csv).await,
            status,
            slug,
        )
        .await;
    }
    assert_problem(
        import(
            &admin,
            &tree.c1,
            "",
            "text/csv",
            b"address\ncaf\xe9@c1.example\n".to_vec(),
        )
        .await,
        400,
        "malformed-body",
    )
    .await;
    assert_problem(
        import(&admin, &tree.c1, "", "text/plain", b"address\n".to_vec()).await,
        415,
        "unsupported-media-type",
    )
    .await;
    assert_problem(
        import(&admin, &tree.a, "", "application/json", b"[]".to_vec()).await,
        422,
        "validation-failed",
    )
    .await;
    let rows: String = std::iter::once("address\n".to_owned())
        .chain((0..10_001).map(|i| format!("u{i}@c1.example\n")))
        .collect();
    assert_problem(
        import(&admin, &tree.c1, "", "text/csv", rows.into_bytes()).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 0);
    app.assert_verified();
}

#[tokio::test]
async fn two_creates_racing_for_one_address_make_one_mailbox() {
    admin_app!(app, admin);
    let tree = with_domains(&admin).await;
    let path = format!("/v1/nodes/{}/mailboxes", tree.c1);
    let body = json!({"address": "contested@c1.example"});
    let responses = admin.post_racing(&path, vec![body; 8]).await;
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], 1);
    app.assert_verified();
}
