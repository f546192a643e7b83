//! Webhooks: subscriptions, the events they hear of, and signatures that the Standard Webhooks
//! reference library (npm `standardwebhooks`, run by `clients/test/webhook-receiver.mjs`)
//! verifies: an implementation of the scheme that is not allot's.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Caller, admin_app, assert_problem, spawn_app_with};

/// A secret allot never made (the specification's test vector's), which must verify nothing.
pub(crate) const FOREIGN_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The receiver: a Node.js process verifying each delivery with the reference library.
pub(crate) struct Receiver {
    child: Child,
    pub port: u16,
    client: reqwest::Client,
}

impl Receiver {
    /// The receiver, or `None` when the reference library is not installed: `cargo test` on a
    /// fresh machine then skips the webhook tests, saying so. `.ci/run` installs it (`npm ci` in
    /// clients/) and sets `ALLOT_TEST_REQUIRE_WEBHOOK_VERIFIER`, under which its absence fails
    /// instead, so CI can never pass without them.
    pub(crate) fn start() -> Option<Self> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/clients");
        if !std::path::Path::new(dir)
            .join("node_modules/standardwebhooks")
            .exists()
        {
            let why = "the npm package standardwebhooks (pinned in clients/package.json) is not \
                       installed: run `npm ci` in clients/";
            if std::env::var_os("ALLOT_TEST_REQUIRE_WEBHOOK_VERIFIER").is_some() {
                panic!(
                    "the webhook verifier is required (ALLOT_TEST_REQUIRE_WEBHOOK_VERIFIER), but {why}"
                );
            }
            eprintln!(
                "skipped: this test verifies webhook signatures with the reference library, and {why}"
            );
            return None;
        }
        let mut child = Command::new("node")
            .arg("test/webhook-receiver.mjs")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (Node.js 20 or newer) runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the receiver announces its port");
        let port = serde_json::from_str::<Value>(&line).expect("a JSON line")["port"]
            .as_u64()
            .expect("a port") as u16;
        Some(Self {
            child,
            port,
            client: reqwest::Client::new(),
        })
    }

    /// Where allot is to POST.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Verifies what arrives with each of `secrets`; answers `statuses` in turn (then 200).
    pub(crate) async fn expect(&self, secrets: &[&str], statuses: &[u16]) {
        let response = self
            .client
            .put(format!("http://127.0.0.1:{}/_config", self.port))
            .json(&json!({"secrets": secrets, "statuses": statuses}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    /// Every delivery so far, oldest first.
    pub(crate) async fn received(&self) -> Vec<Value> {
        self.client
            .get(format!("http://127.0.0.1:{}/_received", self.port))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The deliveries once `done` says they are complete (waiting up to 30 s).
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let received = self.received().await;
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver never got {what}: {received:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A delivery's body, parsed.
pub(crate) fn body(delivery: &Value) -> Value {
    serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap()
}

/// Subscribes `url` to `events` at `node`; the 201's body (with the secret).
pub(crate) async fn subscribe(admin: &Caller<'_>, node: &str, url: &str, events: &[&str]) -> Value {
    admin
        .post_expect(
            &format!("/v1/nodes/{node}/webhooks"),
            &json!({"url": url, "events": events, "description": "test"}),
            201,
        )
        .await
}

/// `node`'s outbox once `done` says it is as awaited (waiting up to 30 s).
pub(crate) async fn outbox_until(
    admin: &Caller<'_>,
    node: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = admin
            .get_ok(&format!("/v1/nodes/{node}/outbox?limit=500"))
            .await;
        let items = page["items"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox never showed {what}: {items:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_event_arrives_signed_and_the_reference_library_verifies_it() {
    admin_app!(app, admin);
    let owner = admin.node_id().await;
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &owner, &receiver.url(), &["node.created"]).await;
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["events"], json!(["node.created"]));
    receiver.expect(&[secret, FOREIGN_SECRET], &[]).await;

    let child = admin.create_child(&owner, "reseller", "Hooked").await;

    let received = receiver.wait_until("a delivery", |r| !r.is_empty()).await;
    let delivery = &received[0];
    // The reference library accepts it with the subscription's secret, and not with another.
    assert_eq!(delivery["verified"], json!([true, false]), "{delivery}");
    assert_eq!(delivery["method"], "POST");
    assert_eq!(delivery["path"], "/hook");
    assert_eq!(delivery["content_type"], "application/json");
    let event = body(delivery);
    assert_eq!(event["type"], "node.created");
    assert_eq!(event["data"]["object"], "node");
    assert_eq!(event["data"]["id"], child.as_str());
    assert_eq!(event["data"]["name"], "Hooked");
    assert!(event["id"].as_str().is_some() && event["timestamp"].as_str().is_some());
    let sent_at: i64 = delivery["timestamp"].as_str().unwrap().parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - sent_at).abs() < 60);

    // The outbox shows it delivered, under the id it was sent with, with its one attempt.
    let messages = outbox_until(&admin, &owner, "a delivered message", |m| {
        m.iter().any(|m| m["status"] == "delivered")
    })
    .await;
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message["id"], delivery["id"]);
    assert_eq!(message["kind"], "webhook");
    assert_eq!(message["topic"], "node.created");
    assert_eq!(message["target"], created["id"]);
    assert_eq!(message["payload"], event);
    assert_eq!(message["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(message["attempts"][0]["status_code"], 200);
    assert_eq!(receiver.received().await.len(), 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_subscription_hears_the_events_it_named_of_its_own_subtree_only() {
    admin_app!(app, admin, tree);
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &tree.a, &receiver.url(), &["node.updated"]).await;
    receiver
        .expect(&[created["secret"].as_str().unwrap()], &[])
        .await;

    // Outside A's subtree, and an event it did not name: nothing is written for it.
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c2),
            &json!({"description": "outside"}),
        )
        .await;
    admin.create_child(&tree.a1, "customer", "Not named").await;
    // Inside, two levels down.
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c1),
            &json!({"description": "inside"}),
        )
        .await;

    let received = receiver.wait_until("a delivery", |r| !r.is_empty()).await;
    let event = body(&received[0]);
    assert_eq!(event["type"], "node.updated");
    assert_eq!(event["data"]["id"], tree.c1.as_str());
    assert_eq!(event["data"]["description"], "inside");
    assert_eq!(received[0]["verified"], json!([true]));
    // Written when the change committed, so the outbox is complete already.
    let messages = admin.get_ok(&format!("/v1/nodes/{}/outbox", tree.a)).await;
    assert_eq!(messages["items"].as_array().unwrap().len(), 1, "{messages}");
    // B's subtree has no subscription, so no message.
    let elsewhere = admin.get_ok(&format!("/v1/nodes/{}/outbox", tree.b)).await;
    assert_eq!(elsewhere["items"], json!([]));
    // The owner's outbox holds its subtree's: A's message is listed there too.
    let everything = admin
        .get_ok(&format!("/v1/nodes/{}/outbox?kind=webhook", tree.owner))
        .await;
    assert_eq!(everything["items"].as_array().unwrap().len(), 1);
    app.assert_verified();
}

#[tokio::test]
async fn the_secret_appears_only_in_the_answers_that_make_it_and_a_rotation_signs_with_both() {
    admin_app!(app, admin);
    let owner = admin.node_id().await;
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let created = subscribe(&admin, &owner, &receiver.url(), &["node.updated"]).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let first = created["secret"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{id}");

    let rotated = admin
        .post_expect(&format!("{path}/rotate-secret"), &json!({}), 200)
        .await;
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(
        rotated["previous_secret_signs_until"].is_string(),
        "{rotated}"
    );
    receiver
        .expect(&[first.as_str(), second.as_str(), FOREIGN_SECRET], &[])
        .await;

    admin
        .patch_ok(
            &format!("/v1/nodes/{owner}"),
            &json!({"description": "rotated"}),
        )
        .await;
    let received = receiver.wait_until("a delivery", |r| !r.is_empty()).await;
    // Signed with the new secret and, during the grace period, the previous one: a receiver that
    // has either verifies.
    assert_eq!(
        received[0]["verified"],
        json!([true, true, false]),
        "{:#?}",
        received[0]
    );
    let signatures = received[0]["signature"].as_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");

    // Nowhere else: not in any read, not in the audit trail, not in the outbox.
    admin
        .patch_ok(&path, &json!({"description": "renamed"}))
        .await;
    let reads = [
        path.clone(),
        format!("/v1/nodes/{owner}/webhooks"),
        format!("/v1/nodes/{owner}/outbox"),
        format!("/v1/nodes/{owner}/audit?limit=500"),
    ];
    for read in reads {
        let text = admin.get(&read).await.text().await.unwrap();
        for secret in [&first, &second] {
            let key = secret.trim_start_matches("whsec_");
            assert!(!text.contains(key), "GET {read} shows a secret: {text}");
        }
    }
    app.assert_verified();
}

#[tokio::test]
async fn a_private_target_is_refused_without_the_setting_and_a_refused_write_leaves_nothing() {
    let dns = crate::dns::DnsServer::start().await;
    let app = spawn_app_with(|config| {
        config.webhooks_allow_private = false;
        config.dns_resolver = dns.addr;
    })
    .await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let path = format!("/v1/nodes/{owner}/webhooks");
    for url in [
        "http://127.0.0.1:9/hook",
        "http://hooks.example.com/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.1.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://localhost/hook",
        "https://user:password@hooks.example.com/hook",
        "not a url",
    ] {
        let problem = admin
            .post_invalid(
                &path,
                &json!({"url": url, "events": ["node.created"]}),
                "url",
            )
            .await;
        assert!(problem.to_string().contains("url"), "{url}: {problem}");
    }
    admin
        .post_invalid(
            &path,
            &json!({"url": "https://hooks.example.com/", "events": []}),
            "events",
        )
        .await;
    let unknown = admin
        .post(
            &path,
            &json!({"url": "https://hooks.example.com/", "events": ["node.exploded"]}),
        )
        .await;
    assert_problem(unknown, 422, "validation-failed").await;
    assert_eq!(app.count_sql("SELECT COUNT(*) AS n FROM webhooks"), 0);
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM audit_events WHERE action LIKE 'webhook.%'"),
        0
    );

    // A name is judged where it is connected to: one that resolves to loopback is subscribed
    // (it might resolve elsewhere later), and every delivery to it is refused.
    let Some(receiver) = Receiver::start() else {
        return;
    };
    dns.publish_a("hooks.rebind.example", std::net::Ipv4Addr::LOCALHOST);
    let url = format!("https://hooks.rebind.example:{}/hook", receiver.port);
    subscribe(&admin, &owner, &url, &["node.updated"]).await;
    admin
        .patch_ok(
            &format!("/v1/nodes/{owner}"),
            &json!({"description": "rebound"}),
        )
        .await;
    let messages = outbox_until(&admin, &owner, "a refused attempt", |m| {
        m.iter()
            .any(|m| !m["attempts"].as_array().unwrap().is_empty())
    })
    .await;
    let error = messages[0]["attempts"][0]["error"].as_str().unwrap();
    assert!(error.contains("127.0.0.1 is a loopback address"), "{error}");
    assert_eq!(messages[0]["attempts"][0]["status_code"], Value::Null);
    assert!(receiver.received().await.is_empty());
    app.assert_verified();
}

#[tokio::test]
async fn a_subscription_is_listed_changed_with_its_etag_and_deleted() {
    admin_app!(app, admin, tree);
    let created = subscribe(
        &admin,
        &tree.a,
        "http://127.0.0.1:9/hook",
        &["node.created"],
    )
    .await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    let listed = admin
        .get_ok(&format!("/v1/nodes/{}/webhooks", tree.a))
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], created["id"]);
    assert!(listed["items"][0].get("secret").is_none());

    let current = admin.get(&path).await;
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();
    let change = json!({"events": ["mailbox.created", "node.created", "mailbox.created"], "description": null});
    let stale = admin.patch_if_match(&path, "\"99\"", &change).await;
    assert_problem(stale, 412, "precondition-failed").await;
    let changed = admin.patch_if_match(&path, &etag, &change).await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    assert_eq!(
        changed["events"],
        json!(["mailbox.created", "node.created"])
    );
    assert_eq!(changed["description"], Value::Null);
    assert_eq!(changed["version"], 2);
    admin
        .patch_problem(
            &path,
            &json!({"url": "ftp://x.example/"}),
            422,
            "validation-failed",
        )
        .await;

    admin.delete_expect(&path, 204).await;
    admin.get_problem(&path, 404, "not-found").await;
    assert_eq!(
        app.count_sql("SELECT COUNT(*) AS n FROM audit_events WHERE action LIKE 'webhook.%'"),
        3
    );
    app.assert_verified();
}

#[tokio::test]
async fn writes_in_a_suspended_subtree_are_refused() {
    admin_app!(app, admin, tree);
    let created = subscribe(
        &admin,
        &tree.c1,
        "http://127.0.0.1:9/hook",
        &["node.updated"],
    )
    .await;
    let webhook = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c1),
            &json!({"description": "queued"}),
        )
        .await;
    let messages = admin.get_ok(&format!("/v1/nodes/{}/outbox", tree.c1)).await;
    let message = messages["items"][0]["id"].as_str().unwrap().to_owned();
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c1),
            &json!({"status": "suspended"}),
        )
        .await;

    let refused = [
        admin
            .post(
                &format!("/v1/nodes/{}/webhooks", tree.c1),
                &json!({"url": "https://hooks.example.com/", "events": ["node.created"]}),
            )
            .await,
        admin.patch(&webhook, &json!({"description": "x"})).await,
        admin
            .post(&format!("{webhook}/rotate-secret"), &json!({}))
            .await,
        admin.delete(&webhook).await,
        admin
            .post(&format!("/v1/outbox/{message}/retry"), &json!({}))
            .await,
    ];
    for response in refused {
        assert_problem(response, 409, "node-suspended").await;
    }
    // Reading is still allowed.
    admin.get_ok(&webhook).await;
    admin.get_ok(&format!("/v1/nodes/{}/outbox", tree.c1)).await;
    app.assert_verified();
}
