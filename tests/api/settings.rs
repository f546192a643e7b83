//! Settings inherited down the tree, through the API: each node's own values with ETags, the
//! values that apply with their sources (every rule of `domain::settings`), write-only secrets,
//! and validation naming the field.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, assert_problem, spawn_app};
use crate::principals::account;

/// Owner → reseller A → reseller A1 → customer C1, and owner → reseller B → customer C2.
struct Tree {
    owner: String,
    a: String,
    a1: String,
    c1: String,
    c2: String,
}

async fn tree(admin: &Caller<'_>) -> Tree {
    let owner = admin.node_id().await;
    let a = admin.create_child(&owner, "reseller", "A").await;
    let a1 = admin.create_child(&a, "reseller", "A1").await;
    let c1 = admin.create_child(&a1, "customer", "C1").await;
    let b = admin.create_child(&owner, "reseller", "B").await;
    let c2 = admin.create_child(&b, "customer", "C2").await;
    Tree {
        owner,
        a,
        a1,
        c1,
        c2,
    }
}

fn path(node: &str, group: &str) -> String {
    format!("/v1/nodes/{node}/settings/{group}")
}

/// An SMTP server at `host`, sending as `sender`.
fn smtp(host: &str, sender: &str) -> Value {
    json!({"transport": "smtp", "host": host, "port": 587, "sender_address": sender})
}

impl Caller<'_> {
    async fn put_settings(&self, node: &str, group: &str, body: Value) -> Value {
        self.put_expect(&path(node, group), &body, 200).await
    }

    async fn effective(&self, node: &str, group: &str) -> Value {
        self.get_ok(&format!("{}/effective", path(node, group)))
            .await["values"]
            .clone()
    }

    async fn put_invalid(&self, node: &str, group: &str, body: Value) -> Vec<String> {
        let problem = self
            .put_problem(&path(node, group), &body, 422, "validation-failed")
            .await;
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// The value that applies and its source, as `(value, source_node_id)`.
fn applied<'a>(values: &'a Value, field: &str) -> (&'a Value, &'a Value) {
    (&values[field]["value"], &values[field]["source_node_id"])
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE action = '{action}'"
    ))
}

#[tokio::test]
async fn own_values_are_replaced_and_cleared_under_their_etag_and_audited() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    let support = path(&t.c1, "support");
    let never = admin.get(&support).await;
    assert_eq!(never.headers()["etag"], "\"0\"");
    let never: Value = never.json().await.unwrap();
    assert_eq!(never["values"], json!({}));
    assert_eq!(never["version"], 0);

    let body = json!({"address": "help@c1.example", "attach_system_info": true});
    let response = admin
        .send_if_match(Method::PUT, &support, "\"0\"", Some(&body))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let set: Value = response.json().await.unwrap();
    assert_eq!(set["values"], body);
    assert_eq!(set["group"], "support");
    assert_eq!(admin.get_ok(&support).await["values"], body);

    // A PUT replaces: what it leaves out is no longer set.
    let stale = admin
        .send_if_match(
            Method::PUT,
            &support,
            "\"0\"",
            Some(&json!({"allow_client_specific": true})),
        )
        .await;
    assert_problem(stale, 412, "precondition-failed").await;
    let replaced = admin
        .send_if_match(
            Method::PUT,
            &support,
            "\"1\"",
            Some(&json!({"allow_client_specific": true})),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let values = admin.get_ok(&support).await["values"].clone();
    assert_eq!(values, json!({"allow_client_specific": true}));

    let stale = admin
        .send_if_match(Method::DELETE, &support, "\"1\"", None)
        .await;
    assert_problem(stale, 412, "precondition-failed").await;
    assert_eq!(
        admin.get_ok(&support).await["values"],
        values,
        "a refused clearing changes nothing"
    );
    let cleared = admin
        .send_if_match(Method::DELETE, &support, "\"2\"", None)
        .await;
    assert_eq!(cleared.status(), 204);
    let after = admin.get(&support).await;
    // Cleared, the version still moves on: the ETag of the values before never matches again.
    assert_eq!(after.headers()["etag"], "\"3\"");
    assert_eq!(after.json::<Value>().await.unwrap()["values"], json!({}));
    // Clearing what is clear changes nothing and records nothing.
    admin.delete_expect(&support, 204).await;
    assert_eq!(admin.get_ok(&support).await["version"], 3);

    assert_eq!(audit_count(&app, "settings.update"), 2);
    assert_eq!(audit_count(&app, "settings.clear"), 1);
    let trail = admin
        .get_ok(&format!("/v1/nodes/{}/audit?action=settings.update", t.c1))
        .await;
    let last = &trail["items"][0];
    assert_eq!(last["target"]["kind"], "settings");
    assert_eq!(last["target"]["id"], "support");
    assert_eq!(last["after"], json!({"allow_client_specific": true}));
    app.assert_verified();
}

#[tokio::test]
async fn the_owners_mail_server_applies_below_until_a_tenant_configures_its_own_whole() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    let nothing = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(applied(&nothing, "enabled"), (&json!(false), &Value::Null));
    assert!(nothing.get("host").is_none());

    let mut global = smtp("smtp.owner.example", "noreply@owner.example");
    global["sender_name"] = json!("The Owner");
    admin.put_settings(&t.owner, "mail_server", global).await;
    let values = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(applied(&values, "enabled"), (&json!(true), &json!(t.owner)));
    assert_eq!(
        applied(&values, "host"),
        (&json!("smtp.owner.example"), &json!(t.owner))
    );
    assert_eq!(values["password"]["value"], json!({"set": false}));

    // Reseller A's own server: the whole server comes from A; the owner's sender name (A sets
    // none) is not mixed in.
    admin
        .put_settings(
            &t.a,
            "mail_server",
            smtp("smtp.a.example", "noreply@a.example"),
        )
        .await;
    for node in [&t.a, &t.a1, &t.c1] {
        let values = admin.effective(node, "mail_server").await;
        assert_eq!(
            applied(&values, "host"),
            (&json!("smtp.a.example"), &json!(t.a))
        );
        assert_eq!(applied(&values, "enabled"), (&json!(true), &json!(t.a)));
        assert!(values.get("sender_name").is_none(), "{values}");
        for value in values.as_object().unwrap().values() {
            assert_eq!(value["source_node_id"], json!(t.a), "{values}");
        }
    }
    // The customer's own wins over both; B's subtree keeps the owner's.
    admin
        .put_settings(&t.c1, "mail_server", smtp("192.0.2.25", "it@c1.example"))
        .await;
    let values = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(
        applied(&values, "host"),
        (&json!("192.0.2.25"), &json!(t.c1))
    );
    let values = admin.effective(&t.c2, "mail_server").await;
    assert_eq!(
        applied(&values, "host"),
        (&json!("smtp.owner.example"), &json!(t.owner))
    );
    assert_eq!(
        applied(&values, "sender_name"),
        (&json!("The Owner"), &json!(t.owner))
    );

    // A tenant that switches its own server off falls back to the one above.
    let mut off = smtp("smtp.a.example", "noreply@a.example");
    off["enabled"] = json!(false);
    admin.put_settings(&t.a, "mail_server", off).await;
    let values = admin.effective(&t.a1, "mail_server").await;
    assert_eq!(
        applied(&values, "host"),
        (&json!("smtp.owner.example"), &json!(t.owner))
    );
}

#[tokio::test]
async fn the_owners_switch_off_sends_nothing_anywhere_whatever_a_tenant_set() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    admin
        .put_settings(
            &t.c1,
            "mail_server",
            smtp("smtp.c1.example", "it@c1.example"),
        )
        .await;
    // No global server at all: nothing is sent, not even with the customer's own.
    let values = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(applied(&values, "enabled"), (&json!(false), &Value::Null));
    // A global server, switched off: the same, and the switch is the owner's.
    let mut global = smtp("smtp.owner.example", "noreply@owner.example");
    global["enabled"] = json!(false);
    admin.put_settings(&t.owner, "mail_server", global).await;
    let values = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(
        applied(&values, "enabled"),
        (&json!(false), &json!(t.owner))
    );
    // What would apply is still shown.
    assert_eq!(
        applied(&values, "host"),
        (&json!("smtp.c1.example"), &json!(t.c1))
    );
    // The switch alone, without a server of the owner's own, is accepted too.
    let switch = admin
        .put_settings(&t.owner, "mail_server", json!({"enabled": false}))
        .await;
    assert_eq!(switch["values"]["enabled"], false);
    let values = admin.effective(&t.c2, "mail_server").await;
    assert_eq!(
        applied(&values, "enabled"),
        (&json!(false), &json!(t.owner))
    );
    // On again: the customer's own server is used.
    admin
        .put_settings(
            &t.owner,
            "mail_server",
            smtp("smtp.owner.example", "noreply@owner.example"),
        )
        .await;
    let values = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(applied(&values, "enabled"), (&json!(true), &json!(t.c1)));
}

#[tokio::test]
async fn a_tenants_support_address_applies_only_where_the_nearest_ancestor_allows_it() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    admin
        .put_settings(
            &t.owner,
            "support",
            json!({"address": "support@owner.example"}),
        )
        .await;
    admin
        .put_settings(&t.a, "support", json!({"address": "support@a.example"}))
        .await;
    admin
        .put_settings(&t.c1, "support", json!({"address": "help@c1.example"}))
        .await;
    // Nobody allows client-specific addresses: the owner's applies everywhere.
    let values = admin.effective(&t.c1, "support").await;
    assert_eq!(
        applied(&values, "address"),
        (&json!("support@owner.example"), &json!(t.owner))
    );
    assert_eq!(
        applied(&values, "allow_client_specific"),
        (&json!(false), &Value::Null)
    );

    // The owner allows: A's applies to A, and C1's to C1 (A1 between them says nothing).
    admin
        .put_settings(
            &t.owner,
            "support",
            json!({"address": "support@owner.example", "allow_client_specific": true}),
        )
        .await;
    let values = admin.effective(&t.a, "support").await;
    assert_eq!(
        applied(&values, "address"),
        (&json!("support@a.example"), &json!(t.a))
    );
    let values = admin.effective(&t.c1, "support").await;
    assert_eq!(
        applied(&values, "address"),
        (&json!("help@c1.example"), &json!(t.c1))
    );

    // A1, nearer to C1, forbids it: C1 gets A's (which the owner allows).
    admin
        .put_settings(&t.a1, "support", json!({"allow_client_specific": false}))
        .await;
    let values = admin.effective(&t.c1, "support").await;
    assert_eq!(
        applied(&values, "address"),
        (&json!("support@a.example"), &json!(t.a))
    );
    assert_eq!(
        applied(&values, "allow_client_specific"),
        (&json!(false), &json!(t.a1))
    );
    // B's subtree sets nothing of its own.
    let values = admin.effective(&t.c2, "support").await;
    assert_eq!(
        applied(&values, "address"),
        (&json!("support@owner.example"), &json!(t.owner))
    );
    assert_eq!(
        applied(&values, "allow_client_specific"),
        (&json!(true), &json!(t.owner))
    );
}

#[tokio::test]
async fn notifications_inherit_field_by_field_over_allots_defaults() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    let values = admin.effective(&t.c1, "notifications").await;
    assert_eq!(
        applied(&values, "quota_thresholds"),
        (&json!([80, 100]), &Value::Null)
    );
    assert_eq!(applied(&values, "recipients"), (&json!([]), &Value::Null));
    admin
        .put_settings(
            &t.owner,
            "notifications",
            json!({"recipients": ["noc@owner.example"]}),
        )
        .await;
    let own = admin
        .put_settings(
            &t.a,
            "notifications",
            json!({"quota_thresholds": [100, 50, 90]}),
        )
        .await;
    assert_eq!(
        own["values"]["quota_thresholds"],
        json!([50, 90, 100]),
        "kept ascending"
    );
    let values = admin.effective(&t.c1, "notifications").await;
    assert_eq!(
        applied(&values, "quota_thresholds"),
        (&json!([50, 90, 100]), &json!(t.a))
    );
    assert_eq!(
        applied(&values, "recipients"),
        (&json!(["noc@owner.example"]), &json!(t.owner))
    );
}

const PASSWORD: &str = "S3cret-smtp-pässword";
const CLIENT_SECRET: &str = "graph~client~secret~0123456789";

/// Whether `text` holds either secret.
fn leaks(text: &str) -> bool {
    text.contains(PASSWORD) || text.contains(CLIENT_SECRET)
}

#[tokio::test]
async fn secrets_are_write_only_kept_when_left_out_and_never_shown() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    let mail = path(&t.a, "mail_server");
    let mut body = smtp("smtp.a.example", "noreply@a.example");
    body["auth"] = json!("plain");
    body["username"] = json!("relay-user");
    body["password"] = json!(PASSWORD);
    let mut answers = Vec::new();
    let set = admin.put(&mail, &body).await.text().await.unwrap();
    answers.push(set.clone());
    let set: Value = serde_json::from_str(&set).unwrap();
    assert_eq!(set["values"]["password"], json!({"set": true}));
    assert_eq!(set["values"]["client_secret"], json!({"set": false}));

    // Left out: kept. The answer cannot hold it, so a client sends back what it read.
    let mut again = body.clone();
    again.as_object_mut().unwrap().remove("password");
    again["port"] = json!(2525);
    let kept = admin.put_expect(&mail, &again, 200).await;
    assert_eq!(kept["values"]["password"], json!({"set": true}));
    // `null` removes it, which `auth: plain` refuses: nothing changes.
    again["password"] = Value::Null;
    assert_eq!(
        admin.put_invalid(&t.a, "mail_server", again.clone()).await,
        ["password"]
    );
    // Authentication off: the password goes with it.
    let mut plain = smtp("smtp.a.example", "noreply@a.example");
    plain["auth"] = json!("none");
    let dropped = admin.put_expect(&mail, &plain, 200).await;
    assert_eq!(dropped["values"]["password"], json!({"set": false}));
    // Graph, with its secret.
    let graph = json!({
        "transport": "m365_graph",
        "tenant_id": "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
        "client_id": "0b1c2d3e-4f5a-4b6c-9d8e-7f6a5b4c3d2e",
        "client_secret": CLIENT_SECRET,
        "sender_address": "noreply@a.example",
    });
    let graph_set = admin.put(&mail, &graph).await.text().await.unwrap();
    answers.push(graph_set);
    // Every way to read them back.
    for reading in [
        mail.clone(),
        format!("{mail}/effective"),
        format!("{}/effective", path(&t.c1, "mail_server")),
        format!("/v1/nodes/{}/audit", t.a),
    ] {
        let text = admin.get(&reading).await.text().await.unwrap();
        answers.push(text);
    }
    for accept in ["text/csv", "application/x-ndjson"] {
        let export = app
            .client
            .get(app.url(&format!("/v1/nodes/{}/audit", t.a)))
            .bearer_auth(&admin.token)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(export.status(), 200);
        answers.push(export.text().await.unwrap());
    }
    for answer in &answers {
        assert!(!leaks(answer), "a secret in an answer: {answer}");
    }
    let effective = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(
        applied(&effective, "client_secret"),
        (&json!({"set": true}), &json!(t.a))
    );
    // The trail records whether a secret was set, nothing more.
    let trail = admin
        .get_ok(&format!("/v1/nodes/{}/audit?action=settings.update", t.a))
        .await;
    let first = trail["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(first["after"]["password"], json!({"set": true}));
    // Nor are they in the database as text, in the settings or in the trail.
    let stored = app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM node_settings WHERE secrets LIKE '%{PASSWORD}%' \
         OR secrets LIKE '%{CLIENT_SECRET}%' OR own_values LIKE '%{PASSWORD}%'"
    ));
    assert_eq!(stored, 0);
    let audited = app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE before LIKE '%{PASSWORD}%' \
         OR after LIKE '%{PASSWORD}%' OR after LIKE '%{CLIENT_SECRET}%'"
    ));
    assert_eq!(audited, 0);
}

#[test]
fn secrets_never_reach_the_log() {
    // The binary, logging everything it logs at debug, as JSON lines read back here.
    let db = crate::helpers::TestDb::new();
    let server = crate::cli::serve_logged(&db, &[("ALLOT_LOG", "debug")]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let token = crate::helpers::token_at(
            &client,
            &base,
            crate::helpers::ADMIN_USERNAME,
            crate::helpers::ADMIN_PASSWORD,
        )
        .await;
        let owner = &crate::helpers::owner_at(&client, &base, &token).await;
        let mut body = smtp("smtp.owner.example", "noreply@owner.example");
        body["auth"] = json!("login");
        body["username"] = json!("relay");
        body["password"] = json!(PASSWORD);
        for (body, status) in [(body.clone(), 200), (json!({"password": PASSWORD}), 422)] {
            let response = client
                .put(format!("{base}{}", path(owner, "mail_server")))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status);
        }
    });
    let lines = server.stop();
    assert!(lines.len() > 5, "the log was read: {lines:?}");
    for line in &lines {
        assert!(!leaks(&line.to_string()), "a secret in the log: {line}");
    }
}

#[tokio::test]
async fn invalid_values_are_refused_naming_each_field_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    let node = &t.c1;
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "mail_server",
            json!({"transport": "smtp", "host": "not a host", "sender_address": "a@b.example"}),
            vec!["host"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "smtp.example.com", "port": 0, "sender_address": "a@b.example"}),
            vec!["port"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "smtp.example.com", "port": 65536, "sender_address": "a@b.example"}),
            vec!["port"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "smtp.example.com", "sender_address": "山田太郎@株式.会社"}),
            vec!["sender_address"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "smtp.example.com", "sender_address": "no-at-sign"}),
            vec!["sender_address"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "sender_address": "a@b.example", "auth": "plain"}),
            vec!["host", "username"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "h.example", "sender_address": "a@b.example", "tenant_id": "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"}),
            vec!["tenant_id"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "h.example", "sender_address": "a@b.example", "password": "x"}),
            vec!["password"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "h.example", "sender_address": "a@b.example", "sender_name": "Evil\r\nBcc: x@y.example"}),
            vec!["sender_name"],
        ),
        (
            "mail_server",
            json!({"transport": "m365_graph", "tenant_id": "not-a-guid", "sender_address": "a@b.example"}),
            vec!["tenant_id"],
        ),
        (
            "mail_server",
            json!({"transport": "m365_graph", "host": "h.example", "sender_address": "a@b.example"}),
            vec!["host", "tenant_id", "client_id"],
        ),
        (
            "mail_server",
            json!({"transport": "m365_graph", "tenant_id": "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", "client_id": "0b1c2d3e-4f5a-4b6c-9d8e-7f6a5b4c3d2e", "sender_address": "a@b.example"}),
            vec!["client_secret"],
        ),
        (
            "mail_server",
            json!({"host": "h.example"}),
            vec!["transport", "host"],
        ),
        (
            "mail_server",
            json!({"transport": "smtp", "host": "h.example", "sender_address": "a@b.example", "address": "x@y.example"}),
            vec!["address"],
        ),
        (
            "support",
            json!({"address": "not an address"}),
            vec!["address"],
        ),
        // No mail server that takes UTF-8 headers applies here.
        (
            "support",
            json!({"address": "山田太郎@株式.会社"}),
            vec!["address"],
        ),
        (
            "support",
            json!({"allow_client_specific": "yes"}),
            vec!["allow_client_specific"],
        ),
        (
            "notifications",
            json!({"quota_thresholds": [80, 101]}),
            vec!["quota_thresholds"],
        ),
        (
            "notifications",
            json!({"quota_thresholds": [300]}),
            vec!["quota_thresholds[0]"],
        ),
        (
            "notifications",
            json!({"quota_thresholds": []}),
            vec!["quota_thresholds"],
        ),
        (
            "notifications",
            json!({"recipients": ["ok@x.example", "broken"]}),
            vec!["recipients[1]"],
        ),
    ];
    for (group, body, want) in cases {
        let fields = admin.put_invalid(node, group, body.clone()).await;
        assert_eq!(fields, want, "{group} {body}");
    }
    for group in ["mail_server", "support", "notifications"] {
        assert_eq!(admin.get_ok(&path(node, group)).await["version"], 0);
    }
    assert_eq!(audit_count(&app, "settings.update"), 0);
    // An unknown group names nothing.
    admin
        .get_problem(&path(node, "billing"), 404, "not-found")
        .await;
    admin
        .put_problem(&path(node, "billing"), &json!({}), 404, "not-found")
        .await;

    // With a mail server that takes UTF-8 headers, international addresses are fine.
    let mut utf8 = smtp("smtp.example.com", "山田太郎@株式.会社");
    utf8["utf8_headers"] = json!(true);
    admin.put_settings(node, "mail_server", utf8).await;
    admin
        .put_settings(node, "support", json!({"address": "山田太郎@株式.会社"}))
        .await;
}

#[tokio::test]
async fn managers_read_settings_admins_change_them_and_a_suspended_node_refuses() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let t = tree(&admin).await;
    let manager = account(&app, &admin, &t.a, "settings-manager", "manager").await;
    let customer_admin = account(&app, &admin, &t.c1, "settings-c1-admin", "admin").await;
    // A customer's admin sets its own mail server; a manager above reads it but cannot change it.
    customer_admin
        .put_settings(
            &t.c1,
            "mail_server",
            smtp("smtp.c1.example", "it@c1.example"),
        )
        .await;
    manager.get_ok(&path(&t.c1, "mail_server")).await;
    manager
        .put_problem(&path(&t.c1, "support"), &json!({}), 403, "forbidden")
        .await;
    // The customer's admin sees nothing above it.
    customer_admin
        .get_problem(&path(&t.a, "mail_server"), 404, "not-found")
        .await;

    admin
        .patch_ok(
            &format!("/v1/nodes/{}", t.c1),
            &json!({"status": "suspended"}),
        )
        .await;
    let problem = admin
        .put_problem(&path(&t.c1, "support"), &json!({}), 409, "node-suspended")
        .await;
    assert_eq!(problem["node_id"], json!(t.c1));
    admin
        .delete_problem(&path(&t.c1, "mail_server"), 409, "node-suspended")
        .await;
    // Reads go on.
    admin.get_ok(&path(&t.c1, "mail_server")).await;
    let values = admin.effective(&t.c1, "mail_server").await;
    assert_eq!(
        applied(&values, "host"),
        (&json!("smtp.c1.example"), &json!(t.c1))
    );
    assert_eq!(audit_count(&app, "settings.update"), 1);
    assert_eq!(audit_count(&app, "settings.clear"), 0);
}
