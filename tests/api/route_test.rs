//! The route test (`POST /v1/domains/{id}/route/test`): allot talks SMTP to a domain's route.
//!
//! The server on the other end is a real one: a private Postfix (Debian's, 3.7) started for each
//! test on a loopback port by the shared harness (`crate::mta`), announcing STARTTLS with a
//! throwaway certificate (made by the `openssl` command) and a SIZE limit. A tokio listener plays
//! the server that accepts and never speaks, and the DNS test server ([`crate::dns`]) the names.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::check::free_port;
use crate::dns::DnsServer;
use crate::helpers::{
    Caller, TestApp, admin_app, assert_problem, dns_app, problem_detail, seed_tree, spawn_app_with,
};
use crate::mta::{self, Postfix};
use crate::principals::{account, api_key};

/// What EHLO's SIZE announces.
const SIZE_LIMIT: u64 = 10_240_000;

/// A route's far end: a private Postfix relaying for `relay_domains` and refusing every other
/// recipient, with its certificate (kept as long as it runs).
struct RouteTarget {
    postfix: Postfix,
    _certificate: tempfile::TempDir,
}

impl RouteTarget {
    async fn start(relay_domains: &str) -> Self {
        let certificate = tempfile::tempdir().expect("a temporary directory");
        std::fs::set_permissions(
            certificate.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (key, cert) = (
            certificate.path().join("key.pem"),
            certificate.path().join("cert.pem"),
        );
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "2", "-subj", "/CN=mx.allot-test.example"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("the openssl command");
        assert!(made.status.success(), "{made:?}");
        let main_cf = format!(
            "myhostname = mx.allot-test.example
mydomain = allot-test.example
relay_domains = {relay_domains}
smtpd_relay_restrictions = reject_unauth_destination
smtpd_banner = $myhostname ESMTP allot-test
message_size_limit = {SIZE_LIMIT}
smtpd_tls_security_level = may
smtpd_tls_chain_files = {}, {}
",
            key.display(),
            cert.display()
        );
        let master_cf = "127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
tlsmgr unix - - n 1000? 1 tlsmgr
";
        Self {
            postfix: Postfix::start(&main_cf, master_cf).await,
            _certificate: certificate,
        }
    }

    fn smtp(&self) -> SocketAddr {
        self.postfix.smtp
    }

    fn log(&self) -> String {
        self.postfix.log()
    }
}

/// A domain `name` of `customer`'s routed to a loopback port nothing listens on; returns the
/// port and the domain's id.
async fn routed_to_a_closed_port(admin: &Caller<'_>, customer: &str, name: &str) -> (u16, String) {
    let closed = free_port().port();
    let domain = domain_with_route(admin, customer, name, "127.0.0.1", closed).await;
    (closed, domain)
}

/// Registers `name` for customer `customer` with a route to `host:port`; returns its id.
async fn domain_with_route(
    admin: &Caller<'_>,
    customer: &str,
    name: &str,
    host: &str,
    port: u16,
) -> String {
    let body = json!({"name": name, "route": {"host": host, "port": port}});
    let created = admin
        .post_expect(&format!("/v1/nodes/{customer}/domains"), &body, 201)
        .await;
    created["id"].as_str().unwrap().to_owned()
}

/// Tests `domain`'s route as `admin`; the report of a test that ran.
async fn test_route(admin: &Caller<'_>, domain: &str) -> Value {
    admin.post_expect(&test_path(domain), &json!({}), 200).await
}

fn test_path(domain: &str) -> String {
    format!("/v1/domains/{domain}/route/test")
}

/// The `after` of every `domain.route_test` event of `domain`, oldest first.
fn audited(app: &TestApp, domain: &str) -> Vec<Value> {
    use allot::store::schema::audit_events::dsl::*;
    use diesel::prelude::*;
    let pool = allot::store::connect(&app.database_url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    audit_events
        .filter(action.eq("domain.route_test"))
        .filter(target_id.eq(domain))
        .order(at.asc())
        .select(after)
        .load::<Option<String>>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|text| serde_json::from_str(&text.unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_reachable_server_reports_its_banner_extensions_and_accepts_postmaster() {
    if mta::missing() {
        return;
    }
    let postfix = RouteTarget::start("known.example").await;
    let dns = DnsServer::start().await;
    dns.publish_a("mx.known.example", Ipv4Addr::LOCALHOST);
    let app = spawn_app_with(|config| config.dns_resolver = dns.addr).await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let domain = domain_with_route(
        &admin,
        &tree.c1,
        "known.example",
        "mx.known.example",
        postfix.smtp().port(),
    )
    .await;

    let report = test_route(&admin, &domain).await;

    assert_eq!(report["ok"], true, "{report:#}\n{}", postfix.log());
    assert_eq!(
        report["target"],
        json!({"host": "mx.known.example", "port": postfix.smtp().port(), "address": "127.0.0.1"})
    );
    assert_eq!(
        report["banner"],
        json!({"code": 220, "text": "mx.allot-test.example ESMTP allot-test"})
    );
    let ehlo = &report["ehlo"];
    assert_eq!(ehlo["code"], 250);
    assert_eq!(ehlo["greeting"], "mx.allot-test.example");
    let capabilities: Vec<&str> = ehlo["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for announced in ["PIPELINING", "SIZE 10240000", "STARTTLS", "8BITMIME"] {
        assert!(capabilities.contains(&announced), "{capabilities:?}");
    }
    assert_eq!(ehlo["starttls"], true);
    assert_eq!(ehlo["size"], SIZE_LIMIT);
    assert_eq!(report["mail"], json!({"code": 250, "text": "2.1.0 Ok"}));
    assert_eq!(
        report["rcpt"],
        json!({"address": "postmaster@known.example", "accepted": true, "code": 250, "text": "2.1.5 Ok"})
    );
    for stage in ["resolve", "connect", "banner", "ehlo", "mail", "rcpt"] {
        assert!(report["timings_ms"][stage].is_u64(), "{stage}: {report:#}");
    }
    assert_eq!(report["failure"], Value::Null);
    // Postfix saw exactly this conversation, and no message: DATA was never sent.
    let log = postfix.log();
    assert!(
        log.contains("ehlo=1 mail=1 rcpt=1 quit=1 commands=4"),
        "{log}"
    );
    assert!(!log.contains("data="), "{log}");

    assert_eq!(
        audited(&app, &domain),
        [
            json!({"host": "mx.known.example", "port": postfix.smtp().port(), "address": "127.0.0.1"})
        ]
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_server_that_does_not_relay_for_the_domain_refuses_postmaster() {
    if mta::missing() {
        return;
    }
    let postfix = RouteTarget::start("known.example").await;
    admin_app!(app, admin, tree);
    let domain = domain_with_route(
        &admin,
        &tree.c1,
        "stranger.example",
        "127.0.0.1",
        postfix.smtp().port(),
    )
    .await;

    let report = test_route(&admin, &domain).await;

    assert_eq!(report["ok"], false);
    assert_eq!(report["banner"]["code"], 220);
    assert_eq!(report["mail"]["code"], 250);
    let rcpt = &report["rcpt"];
    assert_eq!(rcpt["address"], "postmaster@stranger.example");
    assert_eq!(rcpt["accepted"], false);
    assert_eq!(rcpt["code"], 554);
    assert_eq!(
        rcpt["text"],
        "5.7.1 <postmaster@stranger.example>: Relay access denied"
    );
    assert!(
        report["timings_ms"].get("resolve").is_none(),
        "an IP address is not resolved: {report:#}"
    );
    assert_eq!(
        report["failure"],
        json!({
            "stage": "rcpt",
            "reason": "rejected",
            "message": format!("The server at {} does not accept mail for postmaster@stranger.example: 554 5.7.1 <postmaster@stranger.example>: Relay access denied.", postfix.smtp()),
        })
    );
    // A refusal still ends with QUIT.
    assert!(postfix.log().contains("quit=1"), "{}", postfix.log());
    app.assert_verified();
}

#[tokio::test]
async fn a_closed_port_reports_the_refused_connection_in_plain_words() {
    admin_app!(app, admin, tree);
    let (closed, domain) = routed_to_a_closed_port(&admin, &tree.c1, "closed.example").await;

    let report = test_route(&admin, &domain).await;

    assert_eq!(report["ok"], false);
    assert_eq!(report["target"]["address"], "127.0.0.1");
    assert_eq!(
        report["failure"],
        json!({
            "stage": "connect",
            "reason": "refused",
            "message": format!("The server at 127.0.0.1:{closed} refused the connection."),
        })
    );
    assert!(report["timings_ms"]["connect"].is_u64());
    assert!(report["timings_ms"].get("banner").is_none());
    assert_eq!(report["banner"], Value::Null);
    app.assert_verified();
}

#[tokio::test]
async fn a_server_that_speaks_another_protocol_is_reported_as_not_smtp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ssh = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2p1\r\n").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    });
    admin_app!(app, admin, tree);
    let domain = domain_with_route(&admin, &tree.c1, "ssh.example", "127.0.0.1", ssh.port()).await;

    let report = test_route(&admin, &domain).await;

    assert_eq!(report["ok"], false);
    assert_eq!(report["banner"], Value::Null);
    assert_eq!(
        report["failure"],
        json!({
            "stage": "banner",
            "reason": "malformed",
            "message": format!("The server at {ssh} answered after connecting with a line that does not start with a three-digit reply code: \"SSH-2.0-OpenSSH_9.2p1\"; it does not speak SMTP there."),
        })
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_server_that_never_speaks_times_out_at_the_banner_while_a_second_test_waits() {
    // Accepts, then holds the first connection open in silence; closes every later one at once.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = listener.local_addr().unwrap();
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // Bound for as long as the task runs, which is as long as the test.
        let (_held, _) = listener.accept().await.unwrap();
        accepted_tx.send(()).unwrap();
        loop {
            let (closed, _) = listener.accept().await.unwrap();
            drop(closed);
        }
    });
    admin_app!(app, admin, tree);
    let domain = domain_with_route(
        &admin,
        &tree.c1,
        "silent.example",
        "127.0.0.1",
        silent.port(),
    )
    .await;

    let started = Instant::now();
    let first = tokio::spawn({
        let request = app
            .client
            .post(app.url(&test_path(&domain)))
            .bearer_auth(&admin.token)
            .json(&json!({}));
        async move { request.send().await.unwrap() }
    });
    accepted_rx.await.unwrap();
    let second = admin.post(&test_path(&domain), &json!({})).await;
    let retry_after: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_problem(second, 429, "route-test-busy").await;

    let first = first.await.unwrap();
    let took = started.elapsed();
    let report = admin.expect(first, 200).await;
    assert_eq!(
        report["failure"],
        json!({"stage": "banner", "reason": "timeout", "message": "No answer within 10 s after connecting."})
    );
    assert!(report["timings_ms"]["connect"].is_u64());
    assert!(
        report["timings_ms"]["banner"]
            .as_u64()
            .is_some_and(|ms| (10_000..15_000).contains(&ms)),
        "{report:#}"
    );
    assert!(report["timings_ms"].get("ehlo").is_none());
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(25),
        "the stage's 10 s bound the test: it took {took:?}"
    );

    // The place is free again: the next test runs, and meets a connection closed at once.
    let report = test_route(&admin, &domain).await;
    assert_eq!(
        report["failure"],
        json!({"stage": "banner", "reason": "closed", "message": format!("The server at {silent} closed the connection after connecting.")})
    );
    assert_eq!(
        audited(&app, &domain).len(),
        2,
        "the refused one is not a test"
    );
    app.assert_verified();
}

#[tokio::test]
async fn private_targets_are_refused_without_connecting_unless_the_operator_allows_them() {
    // Counts every connection it is offered: none may come.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let guarded = listener.local_addr().unwrap();
    let (offered_tx, mut offered) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            offered_tx.send(stream).unwrap();
        }
    });
    let dns = DnsServer::start().await;
    dns.publish_a("mx.rebound.example", Ipv4Addr::LOCALHOST);
    dns.publish_a("mx.rebound.example", Ipv4Addr::new(10, 0, 0, 25));
    let app = spawn_app_with(|config| {
        config.dns_resolver = dns.addr;
        config.route_test_allow_private = false;
    })
    .await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;

    let mut rebound = None;
    for (name, host, detail) in [
        (
            "loopback.example",
            "127.0.0.1",
            "127.0.0.1 is a loopback address; allot does not connect to such addresses.",
        ),
        (
            "mapped.example",
            "::ffff:127.0.0.1",
            "::ffff:127.0.0.1 is an IPv4-mapped address of 127.0.0.1, a loopback address; allot does not connect to such addresses.",
        ),
        (
            "private.example",
            "10.1.2.3",
            "10.1.2.3 is a private address (RFC 1918); allot does not connect to such addresses.",
        ),
        (
            "metadata.example",
            "169.254.169.254",
            "169.254.169.254 is a link-local address; allot does not connect to such addresses.",
        ),
        (
            "rebound.example",
            "mx.rebound.example",
            "mx.rebound.example resolves only to addresses allot does not connect to (loopback, private, link-local or otherwise not publicly routable).",
        ),
    ] {
        let domain = domain_with_route(&admin, &tree.c1, name, host, guarded.port()).await;
        let problem = admin
            .post_problem(
                &test_path(&domain),
                &json!({}),
                422,
                "route-target-forbidden",
            )
            .await;
        assert_eq!(problem["detail"], detail, "{host}");
        let audit = audited(&app, &domain);
        assert_eq!(audit.len(), 1, "{host}: the attempt is recorded");
        assert!(
            audit[0]["refused"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "{audit:?}"
        );
        rebound = Some(audit);
    }
    // What the name resolved to is the operator's to read, not the caller's (the last one).
    assert_eq!(
        rebound.unwrap()[0]["refused"],
        json!([
            {"address": "127.0.0.1", "kind": "a loopback address"},
            {"address": "10.0.0.25", "kind": "a private address (RFC 1918)"},
        ])
    );
    assert!(
        offered.try_recv().is_err(),
        "a refused target was connected to"
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_host_without_an_address_fails_at_the_resolve_stage() {
    dns_app!(dns, app, admin, tree);
    let domain = domain_with_route(
        &admin,
        &tree.c1,
        "nowhere.example",
        "mx.nowhere.example",
        25,
    )
    .await;

    let report = test_route(&admin, &domain).await;

    assert_eq!(report["ok"], false);
    assert_eq!(report["target"]["address"], Value::Null);
    assert_eq!(
        report["failure"],
        json!({"stage": "resolve", "reason": "no_address", "message": "mx.nowhere.example has no address: DNS has no A or AAAA record for it."})
    );
    assert!(report["timings_ms"]["resolve"].is_u64());
    assert!(report["timings_ms"].get("connect").is_none());
    app.assert_verified();
}

#[tokio::test]
async fn a_domain_without_a_route_answers_route_missing() {
    admin_app!(app, admin, tree);
    let domain = admin.register_domain(&tree.c1, "unrouted.example").await;
    let id = domain["id"].as_str().unwrap();

    let problem = admin
        .post_problem(&test_path(id), &json!({}), 409, "route-missing")
        .await;
    assert!(
        problem_detail(&problem).starts_with("unrouted.example has no delivery route"),
        "{problem}"
    );
    let described = admin
        .expect(app.get("/problems/route-missing").await, 200)
        .await;
    assert_eq!(described["type"], "/problems/route-missing");
    assert!(audited(&app, id).is_empty());
    app.assert_verified();
}

#[tokio::test]
async fn managers_may_test_but_viewers_and_check_keys_may_not_and_other_subtrees_see_nothing() {
    admin_app!(app, admin, tree);
    let (_, domain) = routed_to_a_closed_port(&admin, &tree.c1, "guarded.example").await;
    let path = test_path(&domain);

    let manager = account(&app, &admin, &tree.a, "manager-a", "manager").await;
    let report = manager.post_expect(&path, &json!({}), 200).await;
    assert_eq!(report["failure"]["stage"], "connect");

    let viewer = account(&app, &admin, &tree.a1, "viewer-a1", "viewer").await;
    viewer
        .post_problem(&path, &json!({}), 403, "forbidden")
        .await;
    let (check, _) = api_key(&app, &admin, &tree.c1, "check").await;
    check
        .post_problem(&path, &json!({}), 403, "forbidden")
        .await;
    let outsider = account(&app, &admin, &tree.b, "admin-b", "admin").await;
    let hidden = outsider
        .post_problem(&path, &json!({}), 404, "not-found")
        .await;
    assert!(!hidden.to_string().contains("guarded.example"));
    let anonymous = app.client.post(app.url(&path)).send().await.unwrap();
    assert_problem(anonymous, 401, "unauthorized").await;

    assert_eq!(
        audited(&app, &domain).len(),
        1,
        "only the manager's test ran"
    );
    app.assert_verified();
}
