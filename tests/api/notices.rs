//! What allot mails on its own, through the outbox: a new account's login details (the password
//! mailed, never answered nor listed), and quota notices once per crossing of a threshold, with
//! their `quota.threshold_crossed` events.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, owner_app};
use crate::sink::{Received, Sink};
use crate::webhooks::outbox_until;

/// The owner's mail server: the sink, switched on.
fn sink_server(sink: &Sink) -> Value {
    json!({
        "enabled": true,
        "transport": "smtp",
        "host": sink.addr.ip().to_string(),
        "port": sink.addr.port(),
        "security": "none",
        "auth": "none",
        "sender_address": "noreply@owner.example",
        "sender_name": "Owner",
    })
}

async fn serve_mail(admin: &Caller<'_>, owner: &str, sink: &Sink) {
    admin
        .put_expect(
            &format!("/v1/nodes/{owner}/settings/mail_server"),
            &sink_server(sink),
            200,
        )
        .await;
}

/// The sink's messages once there are `n` (waiting up to 30 s), and after a moment in which no
/// further one came.
async fn mails(sink: &Sink, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sink.received().len() < n {
        assert!(
            Instant::now() < deadline,
            "the sink never got {n} messages: {:#?}",
            sink.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = sink.received();
    assert_eq!(received.len(), n, "{received:#?}");
    received
}

/// The one-time password a login mail carries.
fn mailed_password(message: &Received) -> String {
    message
        .body()
        .lines()
        .find_map(|line| line.strip_prefix("One-time password: "))
        .unwrap_or_else(|| panic!("no password in {}", message.body()))
        .trim()
        .to_owned()
}

/// The request that makes the account `username` (at `username`@customer.example) at `node`.
fn create_account(node: &str, username: &str) -> (String, Value) {
    (
        format!("/v1/nodes/{node}/accounts"),
        json!({"username": username, "email": format!("{username}@customer.example"), "role": "admin"}),
    )
}

#[tokio::test]
async fn a_new_account_gets_its_login_details_by_mail_and_must_change_the_password() {
    let sink = Sink::start().await;
    owner_app!(app, admin, owner);
    serve_mail(&admin, &owner, &sink).await;
    let customer = admin.create_child(&owner, "customer", "C").await;

    let (path, body) = create_account(&customer, "jane");
    let answer = admin.post(&path, &body).await;
    assert_eq!(answer.status(), 201);
    let answer_text = answer.text().await.unwrap();
    let created: Value = serde_json::from_str(&answer_text).unwrap();
    assert_eq!(created["password_sent_to"], "jane@customer.example");
    assert_eq!(created.get("one_time_password"), None, "{created}");
    assert_eq!(created["password_change_required"], true);

    let received = mails(&sink, 1).await;
    let mail = &received[0];
    assert_eq!(mail.rcpt, ["jane@customer.example"]);
    assert_eq!(mail.header("Subject").unwrap(), "allot: your login details");
    assert!(mail.body().contains("Username: jane"), "{}", mail.body());
    let password = mailed_password(mail);
    assert!(password.len() >= 12, "{password}");
    assert!(!answer_text.contains(&password));

    // The mailed password logs in, to a token good only for choosing a new one.
    let login = app.login("jane", &password).await;
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    assert_eq!(login["password_change_required"], true, "{login}");
    let token = login["access_token"].as_str().unwrap();
    let refused = app
        .get_with_token(&format!("/v1/nodes/{customer}"), token)
        .await;
    assert_eq!(refused.status(), 403);

    // Listed as a delivered mail of the customer, without the password.
    let items = outbox_until(&admin, &owner, "the mail delivered", |items| {
        items.iter().any(|m| m["status"] == "delivered")
    })
    .await;
    assert_eq!(items.len(), 1, "{items:#?}");
    let message = &items[0];
    assert_eq!(message["kind"], "mail");
    assert_eq!(message["topic"], "account.login_details");
    assert_eq!(message["node_id"], json!(customer));
    assert_eq!(message["target"], "jane@customer.example");
    assert_eq!(message["payload"]["secret"], json!({"set": true}));
    assert!(
        message["payload"]["text"]
            .as_str()
            .unwrap()
            .contains("One-time password: {{secret}}")
    );
    assert_eq!(message["attempts"][0]["status_code"], 250);
    for listing in [
        format!("/v1/nodes/{owner}/outbox"),
        format!("/v1/nodes/{customer}/outbox?kind=mail"),
        format!("/v1/nodes/{owner}/audit?limit=500"),
    ] {
        let text = admin.get(&listing).await.text().await.unwrap();
        assert!(text.contains("jane"), "{listing}: {text}");
        assert!(!text.contains(&password), "{listing} shows the password");
    }
    // Nor does the stored row hold it in the clear.
    assert_eq!(
        app.count_sql(&format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE payload LIKE '%{password}%'"
        )),
        0
    );
}

/// The account `username` made at `node` answers its password (and mails nothing), which logs
/// in to a full token.
async fn answered_once(app: &TestApp, admin: &Caller<'_>, node: &str, username: &str) {
    let (path, body) = create_account(node, username);
    let created = admin.post_expect(&path, &body, 201).await;
    assert_eq!(created.get("password_sent_to"), None, "{created}");
    assert_eq!(created["password_change_required"], false);
    let password = created["one_time_password"].as_str().unwrap();
    let login: Value = app.login(username, password).await.json().await.unwrap();
    assert_eq!(login["password_change_required"], false, "{login}");
}

#[tokio::test]
async fn without_a_mail_server_or_with_sending_off_the_password_is_answered_once() {
    let sink = Sink::start().await;
    owner_app!(app, admin, owner);
    let customer = admin.create_child(&owner, "customer", "C").await;
    answered_once(&app, &admin, &customer, "first").await;

    // A server, but the owner's switch is off.
    let mut off = sink_server(&sink);
    off["enabled"] = json!(false);
    admin
        .put_expect(
            &format!("/v1/nodes/{owner}/settings/mail_server"),
            &off,
            200,
        )
        .await;
    answered_once(&app, &admin, &customer, "second").await;
    // On again, but the password was the admin's choice: it is not mailed.
    serve_mail(&admin, &owner, &sink).await;
    let (path, mut body) = create_account(&customer, "third");
    body["password"] = json!("a password the admin chose");
    let created = admin.post_expect(&path, &body, 201).await;
    assert_eq!(created.get("password_sent_to"), None, "{created}");
    assert_eq!(created.get("one_time_password"), None, "{created}");

    let outbox = admin.get_ok(&format!("/v1/nodes/{owner}/outbox")).await;
    assert_eq!(outbox["items"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn a_mail_written_while_sending_was_on_fails_while_it_is_off_and_the_retry_sends_it() {
    let sink = Sink::start().await;
    let app = crate::helpers::spawn_app_with(|config| config.outbox_max_attempts = 2).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    // Written while sending is on (to a server that does not answer), then the owner switches
    // sending off: the mail is not sent, and says why.
    let mut unreachable = sink_server(&sink);
    unreachable["host"] = json!("127.0.0.1");
    unreachable["port"] = json!(9);
    admin
        .put_expect(
            &format!("/v1/nodes/{owner}/settings/mail_server"),
            &unreachable,
            200,
        )
        .await;
    let (path, body) = create_account(&owner, "jane");
    admin.post_expect(&path, &body, 201).await;
    let failed = outbox_until(&admin, &owner, "the mail failed", |items| {
        items.first().is_some_and(|m| m["status"] == "failed")
    })
    .await;
    let id = failed[0]["id"].as_str().unwrap().to_owned();
    let mut off = sink_server(&sink);
    off["enabled"] = json!(false);
    admin
        .put_expect(
            &format!("/v1/nodes/{owner}/settings/mail_server"),
            &off,
            200,
        )
        .await;
    admin
        .post_expect(&format!("/v1/outbox/{id}/retry"), &json!({}), 200)
        .await;
    let failed = outbox_until(&admin, &owner, "the retry failed", |items| {
        items.first().is_some_and(|m| {
            m["status"] == "failed" && m["attempts"].as_array().unwrap().len() == 4
        })
    })
    .await;
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("switched off"),
        "{:#?}",
        failed[0]
    );
    // Back on, at the sink: the retry sends it, the password filled in.
    admin
        .put_expect(
            &format!("/v1/nodes/{owner}/settings/mail_server"),
            &sink_server(&sink),
            200,
        )
        .await;
    admin
        .post_expect(&format!("/v1/outbox/{id}/retry"), &json!({}), 200)
        .await;
    let received = mails(&sink, 1).await;
    let password = mailed_password(&received[0]);
    assert_eq!(app.login("jane", &password).await.status(), 200);
}

/// A licence, a customer with `users` seats of 5 (and room for the rest), its contact address
/// and a threshold of 80 % of its own, and the owner's notification recipients; returns the
/// customer.
async fn quota_tree(admin: &Caller<'_>, owner: &str) -> String {
    admin.licensed().await;
    let customer = admin.create_child(owner, "customer", "Acme").await;
    admin
        .patch_node(&customer, &json!({"contact_email": "boss@acme.example"}))
        .await;
    admin.grant(&customer, "users", 5).await;
    admin.grant(&customer, "domains", 10).await;
    admin.grant(&customer, "module:base", 100).await;
    admin
        .put_expect(
            &format!("/v1/nodes/{owner}/settings/notifications"),
            &json!({"recipients": ["ops@owner.example"]}),
            200,
        )
        .await;
    admin
        .put_expect(
            &format!("/v1/nodes/{customer}/settings/notifications"),
            &json!({"quota_thresholds": [80]}),
            200,
        )
        .await;
    admin.register_domain(&customer, "acme.example").await;
    customer
}

/// A licence and, under the owner, reseller `Resale` with a contact address and 10 users (10
/// domains, 100 base); returns it.
async fn resale(admin: &Caller<'_>, owner: &str) -> String {
    admin.licensed().await;
    let reseller = admin.create_child(owner, "reseller", "Resale").await;
    admin
        .patch_node(&reseller, &json!({"contact_email": "resale@owner.example"}))
        .await;
    admin.grant(&reseller, "users", 10).await;
    admin.grant(&reseller, "domains", 10).await;
    admin.grant(&reseller, "module:base", 100).await;
    reseller
}

/// A webhook subscription at `owner` to `quota.threshold_crossed` that no request reaches: the
/// events are read as its deliveries ([`crossed_events`]).
async fn hear_crossings(admin: &Caller<'_>, owner: &str) {
    crate::webhooks::subscribe(
        admin,
        owner,
        "http://127.0.0.1:9/hook",
        &["quota.threshold_crossed"],
    )
    .await;
}

/// The `quota.threshold_crossed` deliveries of the outbox at `owner`, oldest first.
async fn crossed_events(admin: &Caller<'_>, owner: &str) -> Vec<Value> {
    let page = admin
        .get_ok(&format!("/v1/nodes/{owner}/outbox?kind=webhook&limit=500"))
        .await;
    let mut events: Vec<Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["topic"] == "quota.threshold_crossed")
        .map(|m| m["payload"].clone())
        .collect();
    events.reverse();
    events
}

#[tokio::test]
async fn a_threshold_crossed_left_and_crossed_again_is_noticed_twice() {
    let sink = Sink::start().await;
    owner_app!(app, admin, owner);
    serve_mail(&admin, &owner, &sink).await;
    let customer = quota_tree(&admin, &owner).await;
    hear_crossings(&admin, &owner).await;

    let mut mailboxes = Vec::new();
    for n in 1..=3 {
        let made = admin
            .create_mailbox(&customer, &format!("user{n}@acme.example"))
            .await;
        mailboxes.push(made["id"].as_str().unwrap().to_owned());
    }
    assert!(crossed_events(&admin, &owner).await.is_empty());
    // 4 of 5: 80 %, crossed.
    admin.create_mailbox(&customer, "user4@acme.example").await;
    // 5 of 5: still past 80 %, and 100 is not a threshold here: nothing new.
    admin.create_mailbox(&customer, "user5@acme.example").await;
    let events = crossed_events(&admin, &owner).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["type"], "quota.threshold_crossed");
    let data = &events[0]["data"];
    assert_eq!(
        (
            &data["node_id"],
            &data["resource"],
            &data["threshold"],
            &data["used"],
            &data["limit"]
        ),
        (
            &json!(customer),
            &json!("users"),
            &json!(80),
            &json!(4),
            &json!(5)
        )
    );
    let first = mails(&sink, 2).await;

    // Down to 3 of 5 (left), up to 4 again (crossed again).
    for id in &mailboxes[..2] {
        admin.disable_mailbox(id).await;
    }
    admin
        .post_expect(
            &format!("/v1/mailboxes/{}/enable", mailboxes[0]),
            &json!({}),
            200,
        )
        .await;
    let events = crossed_events(&admin, &owner).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[1]["data"]["used"], 4);
    let all = mails(&sink, 4).await;
    assert_eq!(
        app.count_sql(
            "SELECT COUNT(*) AS n FROM audit_events WHERE action = 'quota.threshold_cross'"
        ),
        2
    );

    // Each crossing: one mail to the customer's contact, one to the recipients its owner set.
    for pair in [&first[..], &all[2..]] {
        let mut to: Vec<&str> = pair.iter().map(|m| m.rcpt[0].as_str()).collect();
        to.sort_unstable();
        assert_eq!(to, ["boss@acme.example", "ops@owner.example"]);
        for mail in pair {
            assert_eq!(
                mail.header("Subject").unwrap(),
                "allot: Acme uses 80% of its users limit"
            );
            assert!(
                mail.body().contains("now uses 4 of its limit of 5 users"),
                "{}",
                mail.body()
            );
        }
    }
    let notices = admin
        .get_ok(&format!("/v1/nodes/{customer}/outbox?kind=mail"))
        .await;
    assert_eq!(notices["items"].as_array().unwrap().len(), 4);
    assert!(
        notices["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["topic"] == "quota.notice" && m["payload"].get("secret").is_none())
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_limit_that_lapses_by_date_is_judged_once_as_the_day_begins() {
    owner_app!(app, admin, owner);
    let customer = quota_tree(&admin, &owner).await;
    hear_crossings(&admin, &owner).await;
    // 5 more users until tomorrow: 4 mailboxes are 40 % of 10 today.
    let tomorrow = app.clock.today() + chrono::Days::new(1);
    admin
        .post_expect(
            &format!("/v1/nodes/{customer}/allocations"),
            &json!({"resource": "users", "amount": 5, "ends_on": tomorrow}),
            201,
        )
        .await;
    for n in 1..=4 {
        admin
            .create_mailbox(&customer, &format!("user{n}@acme.example"))
            .await;
    }
    let history = format!("/v1/nodes/{customer}/usage/history");
    admin.get_ok(&history).await;
    assert!(crossed_events(&admin, &owner).await.is_empty());

    // Tomorrow nothing was written, but the grant lapsed: 4 of 5 is 80 %, crossed, as the day
    // begins (here at the first read of the day; in a running service within a minute of midnight).
    app.clock.advance(chrono::TimeDelta::days(1));
    admin.get_ok(&history).await;
    let events = crossed_events(&admin, &owner).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let data = &events[0]["data"];
    assert_eq!(
        (&data["threshold"], &data["used"], &data["limit"]),
        (&json!(80), &json!(4), &json!(5)),
        "{data}"
    );
    // No second notice from the next read (the marks make a judgement idempotent; that the day's
    // judgement runs once is `usage_history_days.limits_judged`'s, which this cannot observe).
    admin.get_ok(&history).await;
    assert_eq!(crossed_events(&admin, &owner).await.len(), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_reseller_is_noticed_when_its_subtree_crosses_its_own_threshold() {
    let sink = Sink::start().await;
    owner_app!(app, admin, owner);
    serve_mail(&admin, &owner, &sink).await;
    let reseller = resale(&admin, &owner).await;
    let mut customers = Vec::new();
    for name in ["one", "two"] {
        let customer = admin.create_child(&reseller, "customer", name).await;
        admin.grant(&customer, "users", 5).await;
        admin.grant(&customer, "domains", 1).await;
        admin.grant(&customer, "module:base", 50).await;
        admin
            .register_domain(&customer, &format!("{name}.example"))
            .await;
        customers.push(customer);
    }
    hear_crossings(&admin, &owner).await;
    // Each customer reaches 80 % of its 5 (4), the reseller 80 % of its 10 with the second.
    for (customer, name) in customers.iter().zip(["one", "two"]) {
        for n in 1..=4 {
            admin
                .create_mailbox(customer, &format!("u{n}@{name}.example"))
                .await;
        }
    }
    let events = crossed_events(&admin, &owner).await;
    let crossed: Vec<(Value, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["data"]["node_id"].clone(),
                e["data"]["threshold"].clone(),
                e["data"]["used"].clone(),
            )
        })
        .collect();
    assert_eq!(
        crossed,
        [
            (json!(customers[0]), json!(80), json!(4)),
            (json!(customers[1]), json!(80), json!(4)),
            (json!(reseller), json!(80), json!(8)),
        ],
        "{events:#?}"
    );
    // The customers have no contact address and no recipients: only the reseller's is mailed.
    let received = mails(&sink, 1).await;
    assert_eq!(received[0].rcpt, ["resale@owner.example"]);
    app.assert_verified();
}

#[tokio::test]
async fn an_overselling_reseller_crosses_on_its_own_while_its_customers_do_not() {
    let sink = Sink::start().await;
    owner_app!(app, admin, owner);
    serve_mail(&admin, &owner, &sink).await;
    let reseller = resale(&admin, &owner).await;
    admin
        .put_expect(
            &format!("/v1/nodes/{reseller}/oversell"),
            &json!({"ratios": {"users": 2}}),
            200,
        )
        .await;
    hear_crossings(&admin, &owner).await;
    // Each customer holds 10 of the reseller's real 10: 4 each is 40 % of theirs, 80 % of its.
    for name in ["one", "two"] {
        let customer = admin.create_child(&reseller, "customer", name).await;
        admin.grant(&customer, "users", 10).await;
        admin.grant(&customer, "domains", 5).await;
        admin.grant(&customer, "module:base", 50).await;
        admin
            .register_domain(&customer, &format!("{name}.example"))
            .await;
        for n in 1..=4 {
            admin
                .create_mailbox(&customer, &format!("u{n}@{name}.example"))
                .await;
        }
    }
    let events = crossed_events(&admin, &owner).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let data = &events[0]["data"];
    assert_eq!(
        (
            &data["node_id"],
            &data["threshold"],
            &data["used"],
            &data["limit"]
        ),
        (&json!(reseller), &json!(80), &json!(8), &json!(10))
    );
    let received = mails(&sink, 1).await;
    assert_eq!(received[0].rcpt, ["resale@owner.example"]);
    assert_eq!(
        received[0].header("Subject").unwrap(),
        "allot: Resale uses 80% of its users limit"
    );
    app.assert_verified();
}
