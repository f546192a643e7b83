//! The check in real mail flow: a real Postfix (Debian's package, through `crate::mta`) configured
//! with the README's own `main.cf` and `master.cf` lines, pointed at allot's policy and socketmap
//! listeners, and spoken to over SMTP. Every case of the README's table gets the exact reply code
//! and enhanced status asserted, inbound (the MX) and outbound (the submission service).
//!
//! The README's lines are read from README.md itself, so the documented configuration is the
//! tested one. Two changes are made, both said here: allot's ports become the test's, and the
//! submission service trusts loopback (`mynetworks`) instead of TLS and SASL logins, which need a
//! certificate and a SASL server the test does not run; its allot lines stay as written.

use serde_json::{Value, json};

use crate::check::{Outage, setup, verified_domain, with_listeners};
use crate::dns::DnsServer;
use crate::helpers::{Caller, TestApp, Tree, texts};
use crate::mta::{self, Postfix, Reply, Smtp, rcpt};

const README: &str = include_str!("../../README.md");

/// The README's fenced block whose first line is `title`, without that line.
fn readme_block(title: &str) -> String {
    let start = README
        .find(&format!("```\n{title}\n"))
        .unwrap_or_else(|| panic!("README.md has no block titled {title:?}"));
    let body = &README[start + 4 + title.len() + 1..];
    body[..body.find("```").expect("the block ends")].to_owned()
}

/// A Postfix with the README's configuration, asking the allot whose listeners are `policy` and
/// `socketmap`.
async fn postfix(policy: std::net::SocketAddr, socketmap: std::net::SocketAddr) -> Postfix {
    let ours = |text: String| {
        text.replace("127.0.0.1:10040", &policy.to_string())
            .replace("127.0.0.1:10041", &socketmap.to_string())
    };
    let main_cf = ours(readme_block("# main.cf: an inbound MX asking allot"))
        + &ours(readme_block(
            "# main.cf: the submission service's sender check",
        ));
    let mut submission = String::new();
    for line in readme_block("# master.cf: the submission service").lines() {
        let option = line.trim();
        if line.starts_with("submission ") {
            submission.push_str("127.0.0.1:{submission} inet n - n - - smtpd\n");
            submission.push_str("  -o mynetworks=127.0.0.0/8\n");
        } else if option.contains("smtpd_tls_") || option.contains("smtpd_sasl_") {
            // No certificate, no SASL server: loopback is trusted instead (above).
        } else if option.starts_with("-o smtpd_relay_restrictions=") {
            submission.push_str("  -o smtpd_relay_restrictions=permit_mynetworks,reject\n");
        } else {
            submission.push_str(line);
            submission.push('\n');
        }
    }
    let master_cf = format!("127.0.0.1:{{smtp}} inet n - n - - smtpd\n{submission}");
    Postfix::start(&main_cf, &master_cf).await
}

/// An allot with its Postfix listeners, whose domains verify over (test) DNS, and its Postfix.
struct Flow {
    app: TestApp,
    dns: DnsServer,
    postfix: Postfix,
}

async fn flow(adjust: impl FnOnce(&mut allot::config::Config)) -> Flow {
    let dns = DnsServer::start().await;
    let (app, policy, socketmap) = with_listeners(&dns, adjust).await;
    let postfix = postfix(policy, socketmap).await;
    Flow { app, dns, postfix }
}

impl Flow {
    /// `RCPT TO:<to>` at the MX, from a stranger on the internet.
    async fn inbound(&self, to: &str) -> Reply {
        rcpt(self.postfix.smtp, "someone@sender.example", to).await
    }

    /// `MAIL FROM:<from>` at the submission service, to someone on the internet (the sender check
    /// answers at `RCPT TO`, where Postfix applies its sender restrictions).
    async fn outbound(&self, from: &str) -> Reply {
        rcpt(self.postfix.submission, from, "someone@elsewhere.example").await
    }
}

/// Asserts that `reply` is `expected` (`"550 5.1.1"`) and, for a refusal, names `reason`.
fn assert_reply(reply: &Reply, expected: &str, reason: &str, case: &str) {
    let got = format!("{} {}", reply.code, reply.enhanced().unwrap_or("-"));
    assert_eq!(got, expected, "{case}: {reply}");
    assert!(
        reply.code == 250 || reply.text.contains(reason),
        "{case}: {reply} should name {reason}"
    );
}

/// A customer under `parent` with `seats` users (and base) seats, 1 domain unit, and `name`
/// verified.
async fn customer(
    admin: &Caller<'_>,
    dns: &DnsServer,
    parent: &str,
    name: &str,
    seats: i64,
) -> String {
    let node = admin.create_child(parent, "customer", name).await;
    for (resource, amount) in [("users", seats), ("module:base", seats), ("domains", 1)] {
        admin.grant(&node, resource, amount).await;
    }
    verified_domain(admin, dns, &node, name).await;
    node
}

/// The cases of the README's table: C1 (`c1.example`) takes any recipient and enrols senders; C2
/// (`c2.example`) takes only known recipients and enrols nobody; `pending.example` is C1's,
/// unverified; `suspended.example`'s customer is suspended, `over.example`'s uses more than its
/// limit, `full.example`'s has no seat left.
async fn cases(flow: &Flow) -> (Caller<'_>, Tree) {
    let (admin, tree) = setup(&flow.app, &flow.dns).await;
    let pat = admin.create_mailbox(&tree.c1, "pat@c1.example").await;
    let pat = pat["id"].as_str().unwrap();
    admin.add_alias(pat, "p.doe@c1.example").await;
    let off = admin.create_mailbox(&tree.c1, "off@c1.example").await;
    admin
        .post(
            &format!("/v1/mailboxes/{}/disable", off["id"].as_str().unwrap()),
            &json!({}),
        )
        .await;
    admin
        .patch_node(
            &tree.c2,
            &json!({"inbound_recipients": "known", "auto_enrol": false}),
        )
        .await;
    admin.register_domain(&tree.c1, "pending.example").await;

    let suspended = customer(&admin, &flow.dns, &tree.b, "suspended.example", 5).await;
    admin
        .patch_node(&suspended, &json!({"status": "suspended"}))
        .await;
    let full = customer(&admin, &flow.dns, &tree.b, "full.example", 1).await;
    admin.create_mailbox(&full, "one@full.example").await;
    // Over its limit as time passes: its users allocation ended today, with a mailbox held. The
    // history is made up behind allot's back (the grant starts before its parent's), so the
    // verifier is asked before.
    let over = customer(&admin, &flow.dns, &tree.b, "over.example", 1).await;
    admin.create_mailbox(&over, "one@over.example").await;
    flow.app.assert_verified();
    let today = chrono::Utc::now().date_naive();
    flow.app.execute_sql(&format!(
        "UPDATE allocations SET starts_on = '{}', ends_on = '{today}' \
         WHERE node_id = '{over}' AND resource = 'users'",
        today - chrono::Days::new(30),
    ));
    // The other process's way in: the feed's next poll.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    (admin, tree)
}

#[tokio::test]
async fn a_real_postfix_gives_every_case_its_reply_inbound_and_outbound() {
    if mta::missing() {
        return;
    }
    let flow = flow(|_| {}).await;
    let (admin, tree) = cases(&flow).await;
    for (to, expected, reason) in [
        ("pat@c1.example", "250 2.1.5", "ok"),
        ("p.doe@c1.example", "250 2.1.5", "ok"),
        ("postmaster@c1.example", "250 2.1.5", "ok"),
        ("abuse@c2.example", "250 2.1.5", "ok"),
        ("stranger@c1.example", "250 2.1.5", "ok"),
        ("stranger@c2.example", "550 5.1.1", "unknown_mailbox"),
        ("off@c1.example", "550 5.2.1", "mailbox_disabled"),
        ("x@nobody.example", "554 5.7.1", "Relay access denied"),
        ("x@pending.example", "450 4.7.1", "domain_unverified"),
        ("x@suspended.example", "450 4.7.1", "node_suspended"),
        ("one@over.example", "450 4.7.1", "over_limit"),
        ("two@full.example", "250 2.1.5", "ok"),
    ] {
        let reply = flow.inbound(to).await;
        assert_reply(&reply, expected, reason, &format!("inbound {to}"));
    }
    for (from, expected, reason) in [
        ("pat@c1.example", "250 2.1.5", "ok"),
        ("new@c1.example", "250 2.1.5", "ok"),
        ("stranger@c2.example", "550 5.7.1", "unknown_mailbox"),
        ("off@c1.example", "550 5.7.1", "mailbox_disabled"),
        ("x@nobody.example", "550 5.1.8", "unknown_domain"),
        ("x@pending.example", "450 4.7.1", "domain_unverified"),
        ("x@suspended.example", "450 4.7.1", "node_suspended"),
        ("one@over.example", "450 4.7.1", "over_limit"),
        ("two@full.example", "450 4.7.1", "users_exhausted"),
    ] {
        let reply = flow.outbound(from).await;
        assert_reply(&reply, expected, reason, &format!("outbound {from}"));
        if reply.code != 250 {
            assert!(reply.text.contains("Sender address rejected"), "{reply}");
        }
    }
    // The one sender seen for the first time is a mailbox now; no recipient became one.
    let enrolled = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes?origin=check", tree.owner))
        .await;
    let addresses: Vec<&str> = texts(&enrolled["items"], "address");
    assert_eq!(addresses, ["new@c1.example"]);
}

#[tokio::test]
async fn a_hundred_messages_to_unknown_recipients_enrol_nobody_and_take_no_seat() {
    if mta::missing() {
        return;
    }
    let flow = flow(|_| {}).await;
    let (admin, tree) = setup(&flow.app, &flow.dns).await;
    let before = admin.usage(&tree.c1, "users").await;
    let mut smtp = Smtp::ehlo(flow.postfix.smtp).await;
    for n in 0..100 {
        let to = format!("random{n}@c1.example");
        assert_eq!(
            smtp.command("MAIL FROM:<spammer@sender.example>")
                .await
                .code,
            250
        );
        let reply = smtp.command(&format!("RCPT TO:<{to}>")).await;
        assert_eq!(reply.code, 250, "{to}: {reply}");
        let reply = smtp
            .data(&format!("Subject: {n}\r\nTo: <{to}>\r\n\r\nHello.\r\n"))
            .await;
        assert_eq!(reply.code, 250, "{reply}");
    }
    smtp.quit().await;
    assert_eq!(admin.usage(&tree.c1, "users").await, before);
    assert_eq!(
        admin.usage(&tree.c1, "module:base").await["used"],
        before["used"]
    );
    let enrolled: Value = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes?origin=check", tree.c1))
        .await;
    assert_eq!(enrolled["items"], json!([]));
    let metrics = flow.app.get("/metrics").await.text().await.unwrap();
    let series =
        r#"allot_checks_total{direction="inbound",listener="policy",reason="ok",verdict="accept"}"#;
    let counted: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(counted >= 100, "{counted} inbound checks counted");
    flow.app.assert_verified();
}

#[tokio::test]
async fn with_verification_not_required_an_unverified_domain_receives_and_sends() {
    if mta::missing() {
        return;
    }
    let flow = flow(|config| config.require_domain_verification = false).await;
    let (admin, tree) = setup(&flow.app, &flow.dns).await;
    admin.register_domain(&tree.c1, "pending.example").await;
    assert_reply(
        &flow.inbound("anyone@pending.example").await,
        "250 2.1.5",
        "ok",
        "inbound",
    );
    assert_reply(
        &flow.outbound("new@pending.example").await,
        "250 2.1.5",
        "ok",
        "outbound",
    );
}

#[tokio::test]
async fn with_the_database_down_known_addresses_are_answered_and_a_new_sender_waits() {
    if mta::missing() {
        return;
    }
    let flow = flow(|_| {}).await;
    let (admin, tree) = setup(&flow.app, &flow.dns).await;
    admin.create_mailbox(&tree.c1, "pat@c1.example").await;
    let outage = Outage::start(&flow.app.database_url);
    assert_reply(
        &flow.inbound("pat@c1.example").await,
        "250 2.1.5",
        "ok",
        "inbound",
    );
    assert_reply(
        &flow.outbound("pat@c1.example").await,
        "250 2.1.5",
        "ok",
        "outbound known",
    );
    assert_reply(
        &flow.outbound("new@c1.example").await,
        "450 4.3.0",
        "unavailable",
        "outbound new",
    );
    drop(outage);
    // Back: the sender is enrolled at its next try.
    assert_reply(
        &flow.outbound("new@c1.example").await,
        "250 2.1.5",
        "ok",
        "outbound new, later",
    );
}
