//! Sending through the mail server that applies: `POST /v1/nodes/{id}/settings/mail_server/test`
//! against a real SMTP conversation (lettre's, with the sink of `sink.rs`) and against a stand-in
//! for Microsoft's token endpoint and Graph.

use serde_json::{Value, json};

use allot::config::Config;

use crate::helpers::{Caller, TestApp, assert_problem, spawn_app, spawn_app_with};
use crate::sink::{GRAPH_TOKEN, Graph, Sink, TestCa};

const PASSWORD: &str = "relay password 42";

fn test_path(node: &str) -> String {
    format!("/v1/nodes/{node}/settings/mail_server/test")
}

/// Asks `node`'s mail server to send a test message to `to`; returns the report (200).
async fn send_test(admin: &Caller<'_>, node: &str, to: &str) -> Value {
    admin
        .post_expect(&test_path(node), &json!({"to": to}), 200)
        .await
}

/// The owner's SMTP server: the sink, without TLS, logging in with `auth`.
fn sink_server(sink: &Sink, auth: &str) -> Value {
    json!({
        "transport": "smtp",
        "host": sink.addr.ip().to_string(),
        "port": sink.addr.port(),
        "security": "none",
        "auth": auth,
        "username": "relay",
        "password": PASSWORD,
        "sender_address": "山田太郎@株式.会社",
        "sender_name": "Owner Mail",
        "utf8_headers": true,
    })
}

/// The owner, a reseller and a customer below it; returns (owner, customer).
async fn nodes(admin: &Caller<'_>) -> (String, String) {
    let owner = admin.node_id().await;
    let reseller = admin.create_child(&owner, "reseller", "R").await;
    let customer = admin.create_child(&reseller, "customer", "C").await;
    (owner, customer)
}

fn server_path(node: &str) -> String {
    format!("/v1/nodes/{node}/settings/mail_server")
}

/// An app whose owner sends through `server`, with a reseller and a customer below the owner.
struct Configured {
    app: TestApp,
    token: String,
    owner: String,
    customer: String,
}

impl Configured {
    /// The first admin, the owner and the customer.
    fn parts(&self) -> (Caller<'_>, &str, &str) {
        let admin = Caller {
            app: &self.app,
            token: self.token.clone(),
        };
        (admin, &self.owner, &self.customer)
    }
}

/// A test's setup: an app (of the test configuration, `adjust`ed), [`nodes`] in it, and the
/// owner's mail server set to `server`.
async fn configured_with(server: &Value, adjust: impl FnOnce(&mut Config)) -> Configured {
    let app = spawn_app_with(adjust).await;
    let admin = app.as_admin().await;
    let (owner, customer) = nodes(&admin).await;
    admin.put_expect(&server_path(&owner), server, 200).await;
    let token = admin.token;
    Configured {
        app,
        token,
        owner,
        customer,
    }
}

/// [`configured_with`] the test configuration.
async fn configured(server: &Value) -> Configured {
    configured_with(server, |_| {}).await
}

fn mail_tests(app: &TestApp) -> i64 {
    app.count_sql("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'settings.mail_test'")
}

#[tokio::test]
async fn a_test_message_goes_out_over_smtp_with_utf8_addresses_and_the_servers_reply() {
    let sink = Sink::start().await;
    let setup = configured(&sink_server(&sink, "plain")).await;
    let (admin, owner, customer) = setup.parts();
    let to = "ユーザー@例え.テスト";
    let report = send_test(&admin, customer, to).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["transport"], "smtp");
    assert_eq!(report["server_node_id"], json!(owner));
    assert_eq!(report["reply"]["code"], 250);
    assert!(
        report["reply"]["text"]
            .as_str()
            .unwrap()
            .contains("queued as SINK1")
    );
    assert_eq!(report["failure"], Value::Null);

    let received = sink.received();
    assert_eq!(received.len(), 1);
    let message = &received[0];
    assert_eq!(
        message.auth,
        Some(("relay".to_owned(), PASSWORD.to_owned()))
    );
    // RFC 6531: the envelope carries the UTF-8 addresses, announced with SMTPUTF8.
    assert!(
        message.mail.starts_with("FROM:<山田太郎@xn--"),
        "{}",
        message.mail
    );
    assert!(message.mail.contains("SMTPUTF8"), "{}", message.mail);
    assert_eq!(message.rcpt.len(), 1);
    assert!(
        message.rcpt[0].starts_with("ユーザー@xn--"),
        "{:?}",
        message.rcpt
    );
    // RFC 6532: the headers carry them as UTF-8, not encoded.
    let from = message.header("From").unwrap();
    assert!(
        from.contains("Owner Mail") && from.contains("山田太郎@"),
        "{from}"
    );
    assert!(message.header("To").unwrap().contains("ユーザー@"));
    assert_eq!(message.header("Subject").unwrap(), "allot: test message");
    assert!(message.header("Date").is_some() && message.header("Message-ID").is_some());
    assert!(
        message.body().contains("This is a test message from allot"),
        "{}",
        message.body()
    );
    assert_eq!(mail_tests(&setup.app), 1);
    let trail = admin
        .get_ok(&format!(
            "/v1/nodes/{customer}/audit?action=settings.mail_test"
        ))
        .await;
    assert_eq!(trail["items"][0]["after"]["reply_code"], 250);
}

#[tokio::test]
async fn a_refusal_by_the_server_is_reported_with_its_reply() {
    let sink = Sink::start().await;
    let setup = configured(&sink_server(&sink, "login")).await;
    let (admin, _, customer) = setup.parts();
    let report = send_test(&admin, customer, "refuse-me@example.com").await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["reply"]["code"], 550);
    assert!(
        report["failure"].as_str().unwrap().contains("No such user"),
        "{report}"
    );
    assert!(sink.received().is_empty());
    // LOGIN, as configured.
    let ok = send_test(&admin, customer, "jane@example.com").await;
    assert_eq!(ok["ok"], true);
    assert_eq!(
        sink.received()[0].auth,
        Some(("relay".to_owned(), PASSWORD.to_owned()))
    );
    assert_eq!(mail_tests(&setup.app), 2);
}

#[tokio::test]
async fn nothing_is_sent_while_sending_is_off_or_no_server_applies() {
    let sink = Sink::start().await;
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let (owner, customer) = nodes(&admin).await;
    let body = json!({"to": "jane@example.com"});
    let problem = admin
        .post_problem(&test_path(&customer), &body, 409, "mail-disabled")
        .await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("No mail server"),
        "{problem}"
    );
    // The customer's own server, but the owner's switch is off.
    admin
        .put_expect(&server_path(&customer), &sink_server(&sink, "plain"), 200)
        .await;
    admin
        .put_expect(&server_path(&owner), &json!({"enabled": false}), 200)
        .await;
    let problem = admin
        .post_problem(&test_path(&customer), &body, 409, "mail-disabled")
        .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("switched off"),
        "{problem}"
    );
    assert!(sink.received().is_empty());
    assert_eq!(mail_tests(&app), 0);
    // An address beyond ASCII through a server without UTF-8 headers.
    let mut plain = sink_server(&sink, "none");
    plain.as_object_mut().unwrap().remove("username");
    plain.as_object_mut().unwrap().remove("password");
    plain["utf8_headers"] = json!(false);
    plain["sender_address"] = json!("noreply@example.com");
    let mut on = plain.clone();
    on["host"] = json!("192.0.2.1");
    admin.put_expect(&server_path(&owner), &on, 200).await;
    admin.put_expect(&server_path(&customer), &plain, 200).await;
    let problem = admin
        .post_problem(
            &test_path(&customer),
            &json!({"to": "山田@example.com"}),
            422,
            "validation-failed",
        )
        .await;
    assert_eq!(problem["errors"][0]["field"], "to");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn a_mail_server_at_a_private_address_is_refused_unless_the_operator_allows_it() {
    let sink = Sink::start().await;
    let server = sink_server(&sink, "plain");
    let setup = configured_with(&server, |config| config.mail_allow_private = false).await;
    let (admin, _, customer) = setup.parts();
    let problem = admin
        .post_problem(
            &test_path(customer),
            &json!({"to": "jane@example.com"}),
            422,
            "mail-target-forbidden",
        )
        .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("loopback"),
        "{problem}"
    );
    assert!(sink.received().is_empty());
    assert_eq!(mail_tests(&setup.app), 0);
}

#[tokio::test]
async fn a_node_sends_at_most_ten_test_messages_a_minute() {
    let sink = Sink::start().await;
    let setup = configured(&sink_server(&sink, "plain")).await;
    let (admin, owner, customer) = setup.parts();
    let body = json!({"to": "jane@example.com"});
    for _ in 0..10 {
        admin.post_expect(&test_path(customer), &body, 200).await;
    }
    let response = admin.post(&test_path(customer), &body).await;
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_problem(response, 429, "mail-test-busy").await;
    assert_eq!(sink.received().len(), 10);
    // Another node has its own budget.
    admin.post_expect(&test_path(owner), &body, 200).await;
}

const CLIENT_SECRET: &str = "graph client secret 0123456789";
const TENANT: &str = "6f1e2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const CLIENT: &str = "0b1c2d3e-4f5a-4b6c-9d8e-7f6a5b4c3d2e";

#[tokio::test]
async fn graph_sends_with_a_client_credentials_token_as_microsoft_documents_it() {
    let graph = Graph::start(CLIENT_SECRET).await;
    let url = graph.url.clone();
    let mut server = json!({
        "transport": "m365_graph",
        "tenant_id": TENANT,
        "client_id": CLIENT,
        "client_secret": CLIENT_SECRET,
        "sender_address": "noreply@owner.example",
        "sender_name": "Owner Mail",
    });
    let setup = configured_with(&server, |config| {
        config.graph_login_url = url.clone();
        config.graph_url = url;
    })
    .await;
    let (admin, owner, customer) = setup.parts();
    let path = server_path(owner);
    let report = send_test(&admin, customer, "jane@example.com").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["transport"], "m365_graph");
    assert_eq!(report["status"], 202);
    assert_eq!(report["reply"], Value::Null);

    let calls = graph.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
    let form = actix_web::web::Query::<std::collections::HashMap<String, String>>::from_query(
        &calls[0].body,
    )
    .unwrap()
    .into_inner();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["scope"], format!("{}/.default", graph.url));
    assert_eq!(calls[1].path, "/v1.0/users/noreply@owner.example/sendMail");
    assert_eq!(
        calls[1].authorization.as_deref(),
        Some(format!("Bearer {GRAPH_TOKEN}").as_str())
    );
    let sent: Value = serde_json::from_str(&calls[1].body).unwrap();
    assert_eq!(sent["saveToSentItems"], false);
    assert_eq!(sent["message"]["subject"], "allot: test message");
    assert_eq!(sent["message"]["body"]["contentType"], "Text");
    assert!(
        sent["message"]["body"]["content"]
            .as_str()
            .unwrap()
            .contains("test message from allot")
    );
    assert_eq!(
        sent["message"]["toRecipients"],
        json!([{"emailAddress": {"address": "jane@example.com"}}])
    );
    assert_eq!(
        sent["message"]["from"],
        json!({"emailAddress": {"address": "noreply@owner.example", "name": "Owner Mail"}})
    );

    // A wrong secret: Microsoft's refusal, reported.
    server["client_secret"] = json!("not the secret");
    admin.put_expect(&path, &server, 200).await;
    let report = send_test(&admin, customer, "jane@example.com").await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["status"], 401);
    assert!(
        report["failure"]
            .as_str()
            .unwrap()
            .contains("AADSTS7000215"),
        "{report}"
    );
    assert!(!report.to_string().contains("not the secret"));
    assert_eq!(mail_tests(&setup.app), 2);
}

/// [`sink_server`] with `security`.
fn secured(sink: &Sink, security: &str) -> Value {
    let mut server = sink_server(sink, "plain");
    server["security"] = json!(security);
    server
}

#[tokio::test]
async fn a_test_message_goes_out_over_starttls_and_over_implicit_tls_to_a_trusted_certificate() {
    let ca = TestCa::new();
    for (security, sink) in [
        ("starttls", Sink::starttls(&ca).await),
        ("tls", Sink::implicit_tls(&ca).await),
    ] {
        let file = ca.file();
        let setup = configured_with(&secured(&sink, security), |config| {
            config.mail_ca_file = Some(file);
        })
        .await;
        let (admin, _, customer) = setup.parts();
        let report = send_test(&admin, customer, "ユーザー@例え.テスト").await;
        assert_eq!(report["ok"], true, "{security}: {report}");
        assert_eq!(report["reply"]["code"], 250, "{security}");
        let received = sink.received();
        assert_eq!(received.len(), 1, "{security}");
        // Over TLS: the credentials and the message never crossed in the clear.
        assert!(received[0].tls, "{security}");
        assert_eq!(
            received[0].auth,
            Some(("relay".to_owned(), PASSWORD.to_owned())),
            "{security}"
        );
        assert!(received[0].mail.contains("SMTPUTF8"), "{security}");
    }
}

#[tokio::test]
async fn starttls_required_against_a_server_without_it_fails_and_nothing_goes_in_the_clear() {
    let ca = TestCa::new();
    let sink = Sink::start().await;
    let file = ca.file();
    let setup = configured_with(&secured(&sink, "starttls"), |config| {
        config.mail_ca_file = Some(file);
    })
    .await;
    let (admin, _, customer) = setup.parts();
    let report = send_test(&admin, customer, "jane@example.com").await;
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["failure"].as_str().unwrap().contains("STARTTLS"),
        "{report}"
    );
    // No downgrade: no login, no message over the plain connection.
    assert!(sink.received().is_empty());
    assert!(sink.logins().is_empty(), "{:?}", sink.logins());
    assert_eq!(mail_tests(&setup.app), 1);
}

#[tokio::test]
async fn a_certificate_allot_does_not_trust_fails_over_starttls_and_implicit_tls() {
    let ca = TestCa::new();
    for (security, sink) in [
        ("starttls", Sink::starttls(&ca).await),
        ("tls", Sink::implicit_tls(&ca).await),
    ] {
        // The system's roots only: the throwaway authority is not among them.
        let setup = configured(&secured(&sink, security)).await;
        let (admin, _, customer) = setup.parts();
        let report = send_test(&admin, customer, "jane@example.com").await;
        assert_eq!(report["ok"], false, "{security}: {report}");
        assert!(
            report["failure"].as_str().unwrap().contains("certificate"),
            "{security}: {report}"
        );
        assert!(sink.received().is_empty(), "{security}");
        assert!(sink.logins().is_empty(), "{security}");
    }
}

/// A real Postfix (`crate::mta`) relaying `relay.example` to `sink`, as a tenant's own relay
/// would forward to the internet; every other domain refused (`reject_unauth_destination`).
async fn relay_to(sink: &Sink) -> crate::mta::Postfix {
    let main_cf = format!(
        "relay_domains = relay.example
transport_maps = inline:{{ relay.example=smtp:[127.0.0.1]:{} }}
smtputf8_enable = yes
",
        sink.addr.port()
    );
    let master_cf = "127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
";
    crate::mta::Postfix::start(&main_cf, master_cf).await
}

#[tokio::test]
async fn a_test_message_through_a_real_postfix_keeps_its_utf8_sender_and_recipient() {
    if crate::mta::missing() {
        return;
    }
    let sink = Sink::start().await;
    let postfix = relay_to(&sink).await;
    let server = json!({
        "transport": "smtp",
        "host": "127.0.0.1",
        "port": postfix.smtp.port(),
        "security": "none",
        "auth": "none",
        "sender_address": "山田太郎@株式.会社",
        "sender_name": "Owner Mail",
        "utf8_headers": true,
    });
    let setup = configured(&server).await;
    let (admin, _, customer) = setup.parts();
    let to = "ユーザー@relay.example";
    let report = send_test(&admin, customer, to).await;
    assert_eq!(report["ok"], true, "{report}\n{}", postfix.log());
    // Postfix's own reply to the final dot, with the queue id it gave the message.
    assert_eq!(report["reply"]["code"], 250, "{report}");
    let reply = report["reply"]["text"].as_str().unwrap();
    assert!(reply.contains("queued as "), "{report}");
    let queue_id = reply.rsplit(' ').next().unwrap().to_owned();

    // What Postfix accepted, as it relayed it on.
    assert!(
        postfix.wait_for_log("status=sent", 1).await,
        "not relayed:\n{}",
        postfix.log()
    );
    let log = postfix.log();
    assert!(
        log.contains(&format!("{queue_id}: from=<山田太郎@xn--")),
        "{log}"
    );
    assert!(log.contains(&format!("{queue_id}: to=<{to}>")), "{log}");
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:?}");
    let message = &received[0];
    // RFC 6531 end to end: Postfix took the UTF-8 envelope with SMTPUTF8 and passed it on so.
    assert!(
        message.mail.starts_with("FROM:<山田太郎@xn--"),
        "{}",
        message.mail
    );
    assert!(message.mail.contains("SMTPUTF8"), "{}", message.mail);
    assert_eq!(message.rcpt, vec![to.to_owned()]);
    // RFC 6532: the headers as allot wrote them, in UTF-8, under Postfix's own Received line.
    assert!(
        message
            .header("Received")
            .unwrap()
            .contains("mx.test.invalid"),
        "{}",
        message.data
    );
    let from = message.header("From").unwrap();
    assert!(
        from.contains("Owner Mail") && from.contains("山田太郎@"),
        "{from}"
    );
    assert!(message.header("To").unwrap().contains(to));
    assert_eq!(message.header("Subject").unwrap(), "allot: test message");

    // A recipient the relay does not serve: Postfix's refusal is the report's.
    let refused = send_test(&admin, customer, "jane@elsewhere.example").await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["reply"]["code"], 554, "{refused}");
    assert!(
        refused["failure"]
            .as_str()
            .unwrap()
            .contains("Relay access denied"),
        "{refused}"
    );
    assert_eq!(sink.received().len(), 1);
}
