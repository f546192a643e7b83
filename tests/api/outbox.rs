//! The outbox: deliveries off the request path with retries and their attempts recorded, failed
//! messages sent again, order per node, several instances on one database, a restart, retention.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    admin_app, get_at, owner_at, spawn_another, spawn_app_on, spawn_app_with, token_at,
};
use crate::webhooks::{Receiver, body, outbox_until, subscribe};

/// The status codes of a message's attempts, in order.
fn codes(message: &Value) -> Vec<Value> {
    message["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect()
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_event_once_with_four_attempts_recorded() {
    admin_app!(app, admin);
    let owner = admin.node_id().await;
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &owner, &receiver.url(), &["node.created"]).await;
    receiver
        .expect(&[created["secret"].as_str().unwrap()], &[500, 500, 500])
        .await;

    admin.create_child(&owner, "customer", "Retried").await;

    let messages = outbox_until(&admin, &owner, "a delivered message", |m| {
        m.first().is_some_and(|m| m["status"] == "delivered")
    })
    .await;
    let message = &messages[0];
    assert_eq!(
        codes(message),
        [json!(500), json!(500), json!(500), json!(200)]
    );
    for attempt in &message["attempts"].as_array().unwrap()[..3] {
        assert!(
            attempt["error"]
                .as_str()
                .unwrap()
                .starts_with("answered 500"),
            "{attempt}"
        );
    }
    assert_eq!(message["attempts"][3]["error"], Value::Null);
    assert_eq!(message["last_error"], Value::Null);
    // Four requests, each signed afresh and verified, one message: accepted once.
    let received = receiver.received().await;
    assert_eq!(received.len(), 4, "{received:#?}");
    assert!(received.iter().all(|r| r["id"] == message["id"]));
    assert!(received.iter().all(|r| r["verified"] == json!([true])));
    let accepted: Vec<_> = received.iter().filter(|r| r["answered"] == 200).collect();
    assert_eq!(accepted.len(), 1);
    let delivered = admin
        .get_ok(&format!("/v1/nodes/{owner}/outbox?status=delivered"))
        .await;
    assert_eq!(delivered["items"].as_array().unwrap().len(), 1);
    let failed = admin
        .get_ok(&format!("/v1/nodes/{owner}/outbox?status=failed"))
        .await;
    assert_eq!(failed["items"], json!([]));
    app.assert_verified();
}

#[tokio::test]
async fn an_exhausted_message_fails_and_the_retry_route_sends_it_again() {
    let app = spawn_app_with(|config| config.outbox_max_attempts = 2).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &owner, &receiver.url(), &["node.created"]).await;
    receiver
        .expect(&[created["secret"].as_str().unwrap()], &[503, 503])
        .await;
    admin.create_child(&owner, "customer", "Exhausted").await;

    let messages = outbox_until(&admin, &owner, "a failed message", |m| {
        m.first().is_some_and(|m| m["status"] == "failed")
    })
    .await;
    let message = &messages[0];
    assert_eq!(codes(message), [json!(503), json!(503)]);
    assert!(
        message["last_error"]
            .as_str()
            .unwrap()
            .starts_with("answered 503")
    );
    assert!(message["finished_at"].is_string());
    let retry = format!("/v1/outbox/{}/retry", message["id"].as_str().unwrap());

    let again = admin.post_expect(&retry, &json!({}), 200).await;
    assert_eq!(again["status"], "pending");
    let messages = outbox_until(&admin, &owner, "the message delivered", |m| {
        m.first().is_some_and(|m| m["status"] == "delivered")
    })
    .await;
    // The attempts before the retry stay listed.
    assert_eq!(codes(&messages[0]), [json!(503), json!(503), json!(200)]);
    // Only a failed message is sent again.
    admin
        .post_problem(&retry, &json!({}), 409, "conflict")
        .await;
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'outbox.retry'"),
        1
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_later_event_of_a_node_waits_until_the_earlier_one_is_delivered() {
    admin_app!(app, admin, tree);
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &tree.owner, &receiver.url(), &["node.updated"]).await;
    // The first delivery is refused twice; the second event must not overtake it.
    receiver
        .expect(&[created["secret"].as_str().unwrap()], &[500, 500])
        .await;
    for description in ["first", "second", "third"] {
        admin
            .patch_ok(
                &format!("/v1/nodes/{}", tree.c1),
                &json!({"description": description}),
            )
            .await;
    }
    let received = receiver
        .wait_until("three accepted deliveries", |r| {
            r.iter().filter(|r| r["answered"] == 200).count() == 3
        })
        .await;
    let order: Vec<(String, u64)> = received
        .iter()
        .map(|r| {
            let event = body(r);
            (
                event["data"]["description"].as_str().unwrap().to_owned(),
                r["answered"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = [
        ("first", 500),
        ("first", 500),
        ("first", 200),
        ("second", 200),
        ("third", 200),
    ]
    .into_iter()
    .map(|(d, s)| (d.to_owned(), s))
    .collect();
    assert_eq!(order, expected);
    app.assert_verified();
}

#[tokio::test]
async fn two_instances_on_one_database_deliver_each_message_once() {
    // Room for a message that meets several of the refusals meant for others.
    let settings = |config: &mut allot::config::Config| {
        config.outbox_backoff_ms = 20;
        config.outbox_max_attempts = 50;
    };
    let first = spawn_app_with(settings).await;
    let second = spawn_app_on(&first.database_url, settings).await;
    let admins = [first.as_admin().await, second.as_admin().await];
    let owner = admins[0].node_id().await;
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admins[0], &owner, &receiver.url(), &["node.created"]).await;
    // Every message is refused once, so its retry falls due at both instances alike.
    const MESSAGES: usize = 24;
    receiver
        .expect(&[created["secret"].as_str().unwrap()], &[500; MESSAGES])
        .await;
    for n in 0..MESSAGES {
        admins[n % 2]
            .create_child(&owner, "customer", &format!("Customer {n}"))
            .await;
    }
    let received = receiver
        .wait_until("every message accepted", |r| {
            r.iter().filter(|r| r["answered"] == 200).count() >= MESSAGES
        })
        .await;
    // A little longer, for a duplicate still on its way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = if received.len() < receiver.received().await.len() {
        receiver.received().await
    } else {
        received
    };
    let messages = outbox_until(&admins[1], &owner, "every message delivered", |m| {
        m.len() == MESSAGES && m.iter().all(|m| m["status"] == "delivered")
    })
    .await;
    for message in &messages {
        let sent: Vec<&Value> = received
            .iter()
            .filter(|r| r["id"] == message["id"])
            .collect();
        let accepted = sent.iter().filter(|r| r["answered"] == 200).count();
        assert_eq!(accepted, 1, "{} accepted {accepted} times", message["id"]);
        // Every request sent is an attempt recorded, and no attempt was made twice.
        assert_eq!(
            sent.len(),
            message["attempts"].as_array().unwrap().len(),
            "{message:#?}"
        );
    }
    assert_eq!(received.len(), 2 * MESSAGES, "{received:#?}");
    first.assert_verified();
}

#[tokio::test]
async fn delivered_messages_are_deleted_after_the_retention_period() {
    admin_app!(app, admin);
    let owner = admin.node_id().await;
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &owner, &receiver.url(), &["node.created"]).await;
    receiver
        .expect(&[created["secret"].as_str().unwrap()], &[])
        .await;
    admin.create_child(&owner, "customer", "Old news").await;
    outbox_until(&admin, &owner, "a delivered message", |m| {
        m.first().is_some_and(|m| m["status"] == "delivered")
    })
    .await;
    // Delivered 31 days ago; an instance started now prunes it at once.
    let long_ago = (chrono::Utc::now() - chrono::TimeDelta::days(31)).naive_utc();
    app.execute_sql(&format!(
        "UPDATE outbox SET finished_at = '{}'",
        long_ago.format("%Y-%m-%d %H:%M:%S")
    ));
    let later = spawn_another(&app).await;
    let admin = later.as_admin().await;
    outbox_until(&admin, &owner, "nothing", <[Value]>::is_empty).await;
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM outbox_attempts"),
        0
    );
}

#[test]
fn a_restart_loses_no_queued_webhook_and_no_log_line_shows_a_secret() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = crate::helpers::TestDb::new();
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let key = crate::helpers::secret_key_env();
    let envs = [
        ("ALLOT_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("ALLOT_OUTBOX_BACKOFF_MS", "200"),
        ("ALLOT_WEBHOOK_TIMEOUT", "2"),
        ("ALLOT_LOG", "debug"),
        ("ALLOT_SECRET_KEY", key.as_str()),
    ];
    let first = crate::cli::serve_logged(&db, &envs);
    let base = format!("http://127.0.0.1:{}", first.port);
    let client = reqwest::Client::new();
    const EVENTS: usize = 5;
    let (secret, owner) = runtime.block_on(async {
        let token = token_at(&client, &base, "admin", crate::helpers::ADMIN_PASSWORD).await;
        let owner = owner_at(&client, &base, &token).await;
        let created: Value = client
            .post(format!("{base}/v1/nodes/{owner}/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": receiver.url(), "events": ["node.created"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = created["secret"].as_str().unwrap().to_owned();
        // Refused until the restart.
        receiver.expect(&[&secret], &[503; 1000]).await;
        for n in 0..EVENTS {
            let response = client
                .post(format!("{base}/v1/nodes/{owner}/children"))
                .bearer_auth(&token)
                .json(&json!({"kind": "customer", "name": format!("Queued {n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
        }
        receiver
            .wait_until("attempts before the crash", |r| r.len() >= EVENTS)
            .await;
        (secret, owner)
    });
    // Killed, as a crash would: whatever it had claimed is claimed again after its lease.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut lines: Vec<Value> = first.log.try_iter().collect();

    let second = crate::cli::serve_logged(&db, &envs);
    let base = format!("http://127.0.0.1:{}", second.port);
    runtime.block_on(async {
        receiver.expect(&[&secret], &[]).await;
        let received = receiver
            .wait_until("every event accepted after the restart", |r| {
                let mut accepted: Vec<&Value> = r
                    .iter()
                    .filter(|r| r["answered"] == 200)
                    .map(|r| &r["id"])
                    .collect();
                accepted.sort_by_key(|id| id.to_string());
                accepted.dedup();
                accepted.len() == EVENTS
            })
            .await;
        assert!(received.iter().all(|r| r["verified"] == json!([true])));
        let token = token_at(&client, &base, "admin", crate::helpers::ADMIN_PASSWORD).await;
        let outbox = get_at(&client, &base, &format!("/v1/nodes/{owner}/outbox"), &token).await;
        let items = outbox["items"].as_array().unwrap();
        assert_eq!(items.len(), EVENTS);
    });
    lines.extend(second.stop());
    let secret_key = secret.trim_start_matches("whsec_");
    let logged: Vec<String> = lines.iter().map(Value::to_string).collect();
    assert!(logged.len() > 5, "{logged:#?}");
    assert!(
        logged.iter().all(|line| !line.contains(secret_key)),
        "a log line shows the secret"
    );
}

/// POSTs `body` to `path` of the app at `base` with `token`; asserts 201.
async fn post_created(client: &reqwest::Client, base: &str, token: &str, path: &str, body: Value) {
    let response = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{path}");
}

#[test]
fn a_restart_loses_no_queued_mail_nor_webhook_sends_each_once_and_logs_no_password() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = crate::helpers::TestDb::new();
    let Some(receiver) = Receiver::start() else {
        return;
    };
    // The mail server's port, with nothing listening until the restart.
    let mail_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = crate::helpers::secret_key_env();
    let envs = [
        ("ALLOT_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("ALLOT_MAIL_ALLOW_PRIVATE", "true"),
        ("ALLOT_OUTBOX_BACKOFF_MS", "200"),
        ("ALLOT_WEBHOOK_TIMEOUT", "2"),
        ("ALLOT_LOG", "debug"),
        ("ALLOT_SECRET_KEY", key.as_str()),
    ];
    let first = crate::cli::serve_logged(&db, &envs);
    let base = format!("http://127.0.0.1:{}", first.port);
    let client = reqwest::Client::new();
    const EACH: usize = 4;
    let (secret, owner) = runtime.block_on(async {
        let token = token_at(&client, &base, "admin", crate::helpers::ADMIN_PASSWORD).await;
        let owner = owner_at(&client, &base, &token).await;
        let server = json!({
            "enabled": true, "transport": "smtp", "host": "127.0.0.1", "port": mail_port,
            "security": "none", "auth": "none", "sender_address": "noreply@owner.example",
        });
        let response = client
            .put(format!("{base}/v1/nodes/{owner}/settings/mail_server"))
            .bearer_auth(&token)
            .json(&server)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let created: Value = client
            .post(format!("{base}/v1/nodes/{owner}/webhooks"))
            .bearer_auth(&token)
            .json(&json!({"url": receiver.url(), "events": ["node.created"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = created["secret"].as_str().unwrap().to_owned();
        receiver.expect(&[&secret], &[503; 1000]).await;
        for n in 0..EACH {
            let children = format!("/v1/nodes/{owner}/children");
            let child = json!({"kind": "customer", "name": format!("Queued {n}")});
            post_created(&client, &base, &token, &children, child).await;
            let accounts = format!("/v1/nodes/{owner}/accounts");
            let account = json!({"username": format!("user{n}"), "email": format!("user{n}@example.com"), "role": "viewer"});
            post_created(&client, &base, &token, &accounts, account).await;
        }
        receiver
            .wait_until("attempts before the crash", |r| r.len() >= EACH)
            .await;
        // Every mail tried at least once, and refused: nothing listens yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = get_at(
                &client,
                &base,
                &format!("/v1/nodes/{owner}/outbox?kind=mail"),
                &token,
            )
            .await;
            let items = page["items"].as_array().unwrap();
            if items.len() == EACH
                && items
                    .iter()
                    .all(|m| m["status"] == "pending" && !m["attempts"].as_array().unwrap().is_empty())
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{page:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (secret, owner)
    });
    // Killed, as a crash would.
    let mut first = first;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut lines: Vec<Value> = first.log.try_iter().collect();

    let sink = runtime.block_on(crate::sink::Sink::start_on(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        mail_port,
    ))));
    let second = crate::cli::serve_logged(&db, &envs);
    let base = format!("http://127.0.0.1:{}", second.port);
    let passwords = runtime.block_on(async {
        receiver.expect(&[&secret], &[]).await;
        let received = receiver
            .wait_until("every event accepted after the restart", |r| {
                r.iter().filter(|r| r["answered"] == 200).count() >= EACH
            })
            .await;
        let mut accepted: Vec<String> = received
            .iter()
            .filter(|r| r["answered"] == 200)
            .map(|r| r["id"].to_string())
            .collect();
        accepted.sort();
        accepted.dedup();
        assert_eq!(
            accepted.len(),
            EACH,
            "each event accepted once: {received:#?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sink.received().len() < EACH {
            assert!(
                std::time::Instant::now() < deadline,
                "{:#?}",
                sink.received()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let token = token_at(&client, &base, "admin", crate::helpers::ADMIN_PASSWORD).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = get_at(&client, &base, &format!("/v1/nodes/{owner}/outbox"), &token).await;
            let items = page["items"].as_array().unwrap();
            assert_eq!(items.len(), 2 * EACH, "{page:#}");
            if items.iter().all(|m| m["status"] == "delivered") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{page:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Each mail once, and its password logs in.
        let mails = sink.received();
        let mut to: Vec<&str> = mails.iter().map(|m| m.rcpt[0].as_str()).collect();
        to.sort_unstable();
        to.dedup();
        assert_eq!((mails.len(), to.len()), (EACH, EACH), "{mails:#?}");
        let mut passwords = Vec::new();
        for mail in &mails {
            let password = mail
                .body()
                .lines()
                .find_map(|l| l.strip_prefix("One-time password: "))
                .unwrap()
                .trim()
                .to_owned();
            let username = mail.rcpt[0].split('@').next().unwrap();
            token_at(&client, &base, username, &password).await;
            passwords.push(password);
        }
        passwords
    });
    lines.extend(second.stop());
    let logged: Vec<String> = lines.iter().map(Value::to_string).collect();
    assert!(logged.len() > 5, "{logged:#?}");
    for password in &passwords {
        assert!(
            logged.iter().all(|line| !line.contains(password.as_str())),
            "a log line shows a mailed password"
        );
    }
}
