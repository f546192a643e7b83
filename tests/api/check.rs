//! The check: every reason it gives, enrolment (once, even when raced), batches, and an index that
//! follows every write, in this process and in another one on the same database.

use serde_json::{Value, json};

use crate::dns::DnsServer;
use crate::helpers::{
    Caller, TestApp, Tree, assert_problem, seed_tree, spawn_another, spawn_app_with, texts,
};

/// An app whose domains can be verified over (test) DNS.
pub(crate) async fn spawn() -> (TestApp, DnsServer) {
    let dns = DnsServer::start().await;
    let app = spawn_app_with(|config| config.dns_resolver = dns.addr).await;
    (app, dns)
}

/// Registers `name` for `customer` and proves it over DNS; returns the domain.
pub(crate) async fn verified_domain(
    admin: &Caller<'_>,
    dns: &DnsServer,
    customer: &str,
    name: &str,
) -> Value {
    let domain = admin.register_domain(customer, name).await;
    dns.publish_proof(name, &domain);
    admin.verify_domain(&domain).await
}

/// A key with the `check` role on `node`.
pub(crate) async fn check_key<'a>(app: &'a TestApp, admin: &Caller<'_>, node: &str) -> Caller<'a> {
    let created = admin.create_api_key(node, "mail worker", "check").await;
    Caller {
        app,
        token: created["key"].as_str().unwrap().to_owned(),
    }
}

/// Asks and returns `(verdict, reason)` with the whole answer.
pub(crate) async fn ask(caller: &Caller<'_>, body: Value) -> (String, String, Value) {
    let answer = caller.post_expect("/v1/check", &body, 200).await;
    (
        answer["verdict"].as_str().unwrap().to_owned(),
        answer["reason"].as_str().unwrap().to_owned(),
        answer,
    )
}

async fn reason(caller: &Caller<'_>, body: Value) -> String {
    ask(caller, body).await.1
}

/// The check of mail sent from `domain`.
fn outbound_domain(domain: &str) -> Value {
    json!({"direction": "outbound", "domain": domain})
}

/// The check of mail sent from `address`.
fn outbound_address(address: &str) -> Value {
    json!({"direction": "outbound", "address": address})
}

/// The check of mail sent from `address`, with enrolment off.
fn outbound_unenrolled(address: &str) -> Value {
    json!({"direction": "outbound", "address": address, "enrol": false})
}

/// The usual tree, with `c1.example` verified for C1 and `c2.example` for C2.
pub(crate) async fn setup<'a>(app: &'a TestApp, dns: &DnsServer) -> (Caller<'a>, Tree) {
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    verified_domain(&admin, dns, &tree.c1, "c1.example").await;
    verified_domain(&admin, dns, &tree.c2, "c2.example").await;
    (admin, tree)
}

/// A check test's first line: binds an app over test DNS to `$app` and the server to `$dns`
/// ([`spawn`]), then the first admin to `$admin` and the [`setup`] tree to `$tree`.
/// With `$worker @ $node` it also binds a `check` key on the tree's `$node` (`owner`, `a`, …) to
/// `$worker` ([`check_key`]).
macro_rules! verified_app {
    ($app:ident, $dns:ident, $admin:ident, $tree:ident) => {
        let ($app, $dns) = crate::check::spawn().await;
        let ($admin, $tree) = crate::check::setup(&$app, &$dns).await;
    };
    ($app:ident, $dns:ident, $admin:ident, $tree:ident, $worker:ident @ $node:ident) => {
        crate::check::verified_app!($app, $dns, $admin, $tree);
        let $worker = crate::check::check_key(&$app, &$admin, &$tree.$node).await;
    };
}
pub(crate) use verified_app;

/// Jane's mailbox, `jane@c1.example`, under `customer`, with her alias `j.doe@c1.example`;
/// returns her mailbox id.
pub(crate) async fn jane_and_her_alias(admin: &Caller<'_>, customer: &str) -> String {
    let jane = admin.create_mailbox(customer, "jane@c1.example").await;
    let jane_id = jane["id"].as_str().unwrap().to_owned();
    admin.add_alias(&jane_id, "j.doe@c1.example").await;
    jane_id
}

#[tokio::test]
async fn domains_are_accepted_only_when_verified_active_and_in_an_active_subtree() {
    verified_app!(app, dns, admin, tree, worker @ owner);

    let (verdict, reason_code, answer) = ask(&worker, outbound_domain("C1.Example")).await;
    assert_eq!((verdict.as_str(), reason_code.as_str()), ("accept", "ok"));
    assert_eq!(answer["node_id"], tree.c1);
    assert_eq!(answer["enrolled"], false);

    let (verdict, reason_code, answer) = ask(&worker, outbound_domain("nobody.example")).await;
    assert_eq!(
        (verdict.as_str(), reason_code.as_str()),
        ("reject", "unknown_domain")
    );
    assert!(answer["node_id"].is_null());

    let pending = admin.register_domain(&tree.c1, "pending.example").await;
    assert_eq!(
        reason(&worker, outbound_domain("pending.example")).await,
        "domain_unverified"
    );
    admin
        .patch_ok(
            &format!("/v1/domains/{}", pending["id"].as_str().unwrap()),
            &json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(
        reason(&worker, outbound_domain("pending.example")).await,
        "domain_disabled"
    );

    // Suspending an ancestor refuses the whole subtree at once; resuming restores it.
    admin
        .patch_node(&tree.a1, &json!({"status": "suspended"}))
        .await;
    let (verdict, reason_code, _) = ask(&worker, outbound_address("x@c1.example")).await;
    assert_eq!(
        (verdict.as_str(), reason_code.as_str()),
        ("defer", "node_suspended"),
        "suspension (for non-payment, mostly) is put right by paying: temporary"
    );
    assert_eq!(reason(&worker, outbound_domain("c2.example")).await, "ok");
    admin
        .patch_node(&tree.a1, &json!({"status": "active"}))
        .await;
    assert_eq!(reason(&worker, outbound_domain("c1.example")).await, "ok");

    // A worker of reseller B may not ask about A's customers, and is not told who holds them.
    let b_worker = check_key(&app, &admin, &tree.b).await;
    let (verdict, reason_code, answer) = ask(&b_worker, outbound_domain("c1.example")).await;
    assert_eq!(
        (verdict.as_str(), reason_code.as_str()),
        ("reject", "not_in_scope")
    );
    assert!(answer["node_id"].is_null());
    assert_eq!(reason(&b_worker, outbound_domain("c2.example")).await, "ok");
    app.assert_verified();
}

#[tokio::test]
async fn mailboxes_and_aliases_are_accepted_and_unknown_addresses_enrolled_once() {
    verified_app!(app, dns, admin, tree, worker @ a);
    let jane_id = jane_and_her_alias(&admin, &tree.c1).await;

    for address in [
        "jane@c1.example",
        "j.doe@c1.example",
        "postmaster@c1.example",
    ] {
        let (verdict, _, answer) = ask(&worker, outbound_address(address)).await;
        assert_eq!(verdict, "accept", "{address}: {answer}");
    }
    let (_, _, answer) = ask(&worker, outbound_address("j.doe@c1.example")).await;
    assert_eq!(answer["mailbox_id"], jane_id);

    // Without enrolment an unknown address is refused and nothing is written.
    let used_before = admin.usage(&tree.c1, "users").await["used"].clone();
    assert_eq!(
        reason(&worker, outbound_unenrolled("new@c1.example")).await,
        "unknown_mailbox"
    );
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], used_before);

    // With it (the default), the first sighting registers the address, once.
    let (verdict, _, first) = ask(&worker, outbound_address("new@c1.example")).await;
    assert_eq!(
        (verdict.as_str(), first["enrolled"].as_bool()),
        ("accept", Some(true))
    );
    let (_, _, again) = ask(&worker, outbound_address("new@c1.example")).await;
    assert_eq!(again["enrolled"], false);
    assert_eq!(again["mailbox_id"], first["mailbox_id"]);
    let enrolled = admin
        .get_ok(&format!(
            "/v1/mailboxes/{}",
            first["mailbox_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(enrolled["origin"], "check");
    assert!(enrolled["first_seen_at"].is_string());
    assert_eq!(
        admin.usage(&tree.c1, "users").await["used"].as_i64(),
        used_before.as_i64().map(|u| u + 1)
    );

    // A disabled mailbox is refused; the customer's auto_enrol=false turns enrolment off.
    admin.disable_mailbox(&jane_id).await;
    assert_eq!(
        reason(&worker, outbound_address("jane@c1.example")).await,
        "mailbox_disabled"
    );
    let patched = admin
        .patch_node(&tree.c1, &json!({"auto_enrol": false}))
        .await;
    assert_eq!(patched["auto_enrol"], false);
    assert_eq!(
        reason(&worker, outbound_address("other@c1.example")).await,
        "unknown_mailbox"
    );
    assert_eq!(
        ask(
            &worker,
            json!({"direction": "outbound", "address": "other@c1.example", "enrol": true})
        )
        .await
        .2["enrolled"],
        true
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_sender_is_not_enrolled_when_an_overselling_reseller_has_no_real_seat_left() {
    let (app, dns) = spawn().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    // One real `users` seat, sold four times over: each customer has room of its own.
    let seller = admin.create_child(&tree.b, "reseller", "Seller").await;
    for (resource, amount) in [("users", 1), ("module:base", 10), ("domains", 10)] {
        admin.grant(&seller, resource, amount).await;
    }
    admin
        .put_expect(
            &format!("/v1/nodes/{seller}/oversell"),
            &json!({"ratios": {"users": 4}}),
            200,
        )
        .await;
    let mut customers = Vec::new();
    for name in ["first", "second"] {
        let customer = admin.create_child(&seller, "customer", name).await;
        for (resource, amount) in [("users", 2), ("module:base", 2), ("domains", 1)] {
            admin.grant(&customer, resource, amount).await;
        }
        verified_domain(&admin, &dns, &customer, &format!("{name}.example")).await;
        customers.push(customer);
    }
    let worker = check_key(&app, &admin, &tree.owner).await;
    assert_eq!(
        ask(&worker, outbound_address("one@first.example")).await.2["enrolled"],
        true
    );
    let (verdict, reason_code, answer) = ask(&worker, outbound_address("one@second.example")).await;
    assert_eq!(
        (verdict.as_str(), reason_code.as_str()),
        ("defer", "ancestor_exhausted")
    );
    assert_eq!(
        (answer["smtp_code"].as_u64(), answer["smtp_status"].as_str()),
        (Some(450), Some("4.7.1"))
    );
    assert_eq!(admin.usage(&customers[1], "users").await["used"], 0);
    assert_eq!(admin.usage(&seller, "users").await["used"], 1);
    app.assert_verified();
}

#[tokio::test]
async fn a_customer_without_a_free_seat_enrols_nobody_and_one_over_its_limit_accepts_nobody() {
    let (app, dns) = spawn().await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let small = admin.create_child(&tree.b, "customer", "Small").await;
    // Two `users` seats but one `module:base`: a new mailbox needs one of each.
    for (resource, amount) in [("users", 2), ("module:base", 1), ("domains", 1)] {
        admin.grant(&small, resource, amount).await;
    }
    verified_domain(&admin, &dns, &small, "small.example").await;
    let worker = check_key(&app, &admin, &tree.owner).await;

    assert_eq!(
        ask(&worker, outbound_address("one@small.example")).await.2["enrolled"],
        true
    );
    let (verdict, reason_code, answer) = ask(&worker, outbound_address("two@small.example")).await;
    assert_eq!(
        (verdict.as_str(), reason_code.as_str()),
        ("defer", "users_exhausted")
    );
    assert_eq!(
        (answer["smtp_code"].as_u64(), answer["smtp_status"].as_str()),
        (Some(450), Some("4.7.1"))
    );
    assert_eq!(admin.usage(&small, "users").await["used"], 1);
    assert_eq!(admin.usage(&small, "module:base").await["used"], 1);
    app.assert_verified();

    // Time passes: the allocation ends today. Nobody writes through the API; the next check is
    // judged against today's limit, which no longer covers the mailbox it holds.
    app.execute_sql(&format!(
        "UPDATE allocations SET starts_on = '{}', ends_on = '{}' \
         WHERE node_id = '{small}' AND resource = 'users'",
        chrono::Utc::now().date_naive() - chrono::Days::new(30),
        chrono::Utc::now().date_naive()
    ));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (verdict, reason_code, _) = ask(&worker, outbound_address("one@small.example")).await;
    assert_eq!(
        (verdict.as_str(), reason_code.as_str()),
        ("defer", "over_limit")
    );
}

#[tokio::test]
async fn a_module_is_accepted_only_where_the_customer_holds_a_seat_and_the_holder_has_it() {
    verified_app!(app, dns, admin, tree, worker @ owner);
    let ann = admin.create_mailbox(&tree.c2, "ann@c2.example").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let asks = |module: &'static str| {
        let worker = &worker;
        async move {
            reason(
                worker,
                json!({"direction": "outbound", "address": "ann@c2.example", "module": module}),
            )
            .await
        }
    };
    assert_eq!(asks("lft").await, "module_not_licensed");
    assert_eq!(asks("base").await, "ok", "every mailbox holds base");
    admin
        .set_licence(json!([
            {"resource": "users", "amount": 1000},
            {"resource": "domains", "amount": 100},
            {"resource": "module:base", "amount": 1000},
            {"resource": "module:lft", "amount": 10},
            {"resource": "module:m365", "amount": 10},
        ]))
        .await;
    for (node, resource, amount) in [
        (&tree.b, "module:lft", 5),
        (&tree.c2, "module:lft", 2),
        (&tree.b, "module:m365", 1),
        (&tree.c2, "module:m365", 1),
    ] {
        admin.grant(node, resource, amount).await;
    }
    assert_eq!(
        asks("lft").await,
        "module_not_assigned",
        "licensed, but not ann's"
    );
    admin
        .put_expect(&format!("/v1/mailboxes/{ann}/modules/lft"), &json!({}), 200)
        .await;
    assert_eq!(asks("lft").await, "ok");
    assert_eq!(
        asks("m365").await,
        "module_not_assigned",
        "a per-customer module the customer lacks"
    );
    admin.enable_module(&tree.c2, "m365").await;
    assert_eq!(asks("m365").await, "ok");
    admin
        .delete_expect(&format!("/v1/mailboxes/{ann}/modules/lft"), 204)
        .await;
    assert_eq!(asks("lft").await, "module_not_assigned", "taken away again");
    // A new address enrolled by the check holds only the automatic modules.
    let (verdict, code, answer) = ask(
        &worker,
        json!({"direction": "outbound", "address": "new@c2.example", "module": "lft"}),
    )
    .await;
    assert_eq!(
        (verdict.as_str(), code.as_str(), &answer["enrolled"]),
        ("reject", "module_not_assigned", &json!(true))
    );
    assert_eq!(
        reason(
            &worker,
            json!({"direction": "outbound", "address": "new@c2.example", "module": "base"})
        )
        .await,
        "ok"
    );
    let refused = worker.post_problem("/v1/check",
                &json!({"direction": "outbound", "address": "ann@c2.example", "module": "no-such-module"}), 422, "validation-failed").await;
    assert_eq!(refused["errors"][0]["field"], "module");
    app.assert_verified();

    // An add-on over its limit (time took a seat away: here, SQL behind allot's back) refuses the
    // checks that ask about it, and only those: the customer's mail still flows.
    let bob = admin.create_mailbox(&tree.c2, "bob@c2.example").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for holder in [&ann, &bob] {
        admin.assign_module(holder, "lft").await;
    }
    app.execute_sql(&format!(
        "UPDATE allocations SET amount = 1 WHERE node_id = '{}' AND resource = 'module:lft'",
        tree.c2
    ));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(asks("lft").await, "over_limit");
    assert_eq!(
        reason(&worker, outbound_address("ann@c2.example")).await,
        "ok"
    );
}

#[tokio::test]
async fn a_batch_answers_in_order_and_bad_input_is_refused_whole() {
    verified_app!(app, dns, admin, tree, worker @ owner);
    admin.create_mailbox(&tree.c1, "kim@c1.example").await;
    let answers = worker
        .post_expect(
            "/v1/check/batch",
            &json!({"checks": [
                {"direction": "outbound", "address": "kim@c1.example"},
                {"direction": "outbound", "domain": "nobody.example"},
                {"direction": "outbound", "address": "lee@c1.example", "enrol": false},
                {"direction": "outbound", "domain": "c2.example"},
            ]}),
            200,
        )
        .await;
    let reasons: Vec<&str> = texts(&answers["results"], "reason");
    assert_eq!(reasons, ["ok", "unknown_domain", "unknown_mailbox", "ok"]);

    let refused = worker
        .post_problem(
            "/v1/check/batch",
            &json!({"checks": [
                {"direction": "outbound", "address": "new@c1.example"},
                {"direction": "outbound", "address": "not an address"},
                {"direction": "outbound", "domain": "c1.example", "address": "x@c1.example"},
            ]}),
            422,
            "validation-failed",
        )
        .await;
    let fields: Vec<&str> = texts(&refused["errors"], "field");
    assert_eq!(fields, ["checks[1].address", "checks[2].address"]);
    // The first check of the refused batch enrolled nobody.
    assert_eq!(
        reason(&worker, outbound_unenrolled("new@c1.example")).await,
        "unknown_mailbox"
    );
    let too_many: Vec<Value> = (0..1001).map(|_| outbound_domain("c1.example")).collect();
    worker
        .post_problem(
            "/v1/check/batch",
            &json!({"checks": too_many}),
            422,
            "validation-failed",
        )
        .await;
    assert_problem(
        app.post_json("/v1/check", &outbound_domain("c1.example"))
            .await,
        401,
        "unauthorized",
    )
    .await;
    worker
        .post_problem(
            "/v1/check",
            &json!({"direction": "outbound", "domain": "c1.example", "x": 1}),
            422,
            "validation-failed",
        )
        .await;
}

#[tokio::test]
async fn concurrent_first_sightings_of_one_address_enrol_it_once() {
    verified_app!(app, dns, admin, tree, worker @ owner);
    let used_before = admin.usage(&tree.c1, "users").await["used"]
        .as_i64()
        .unwrap();
    let body = outbound_address("race@c1.example");
    let answers =
        futures_util::future::join_all((0..16).map(|_| worker.post("/v1/check", &body))).await;
    let mut enrolled = 0;
    let mut ids = std::collections::BTreeSet::new();
    for response in answers {
        let answer = worker.expect(response, 200).await;
        assert_eq!(answer["verdict"], "accept", "{answer}");
        enrolled += usize::from(answer["enrolled"] == true);
        ids.insert(answer["mailbox_id"].as_str().unwrap().to_owned());
    }
    assert_eq!((enrolled, ids.len()), (1, 1));
    assert_eq!(
        admin.usage(&tree.c1, "users").await["used"].as_i64(),
        Some(used_before + 1)
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_write_on_one_instance_reaches_the_other_through_the_feed() {
    verified_app!(app, dns, admin, tree, worker_here @ owner);
    let other = spawn_another(&app).await;
    let worker_there = Caller {
        app: &other,
        token: worker_here.token.clone(),
    };
    let body = json!({"direction": "outbound", "address": "moved@c1.example", "enrol": false});
    assert_eq!(reason(&worker_there, body.clone()).await, "unknown_mailbox");
    admin.create_mailbox(&tree.c1, "moved@c1.example").await;
    // This instance knows before the write's response is sent; the other once its feed poll (every
    // 200 ms) has run. The deadline is generous on purpose: this proves the feed carries the
    // write, not how fast (a loaded CI machine must not fail it).
    assert_eq!(reason(&worker_here, body.clone()).await, "ok");
    let patience = std::time::Duration::from_secs(10);
    let started = std::time::Instant::now();
    loop {
        if reason(&worker_there, body.clone()).await == "ok" {
            break;
        }
        assert!(
            started.elapsed() < patience,
            "the other instance still does not know the mailbox"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Suspension too, and the other way round.
    let there_admin = Caller {
        app: &other,
        token: admin.token.clone(),
    };
    there_admin
        .patch_node(&tree.c1, &json!({"status": "suspended"}))
        .await;
    assert_eq!(reason(&worker_there, body.clone()).await, "node_suspended");
    let started = std::time::Instant::now();
    while reason(&worker_here, body.clone()).await != "node_suspended" {
        assert!(started.elapsed() < patience);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An app resolving through `dns` that answers Postfix on a policy and a socketmap listener of
/// its own; `adjust` changes the rest of its configuration. Returns the app and the two
/// listeners' addresses.
pub(crate) async fn with_listeners(
    dns: &DnsServer,
    adjust: impl FnOnce(&mut allot::config::Config),
) -> (TestApp, std::net::SocketAddr, std::net::SocketAddr) {
    let (policy, socketmap) = (free_port(), free_port());
    let app = spawn_app_with(|config| {
        config.dns_resolver = dns.addr;
        config.policy_listen = Some(policy);
        config.socketmap_listen = Some(socketmap);
        adjust(config);
    })
    .await;
    (app, policy, socketmap)
}

/// A policy delegation request about `sender` and `recipient` in `context` (`policy_context`),
/// as Postfix sends it at RCPT TO.
fn policy_request(context: &str, sender: &str, recipient: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=192.0.2.7\nhelo_name=mx.example.net\nsender={sender}\n\
         recipient={recipient}\npolicy_context={context}\nsasl_username=\n\n"
    )
}

/// A free port on loopback, for a listener the app binds itself.
pub(crate) fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The policy listener's answer on `stream` to [`policy_request`]`(context, sender, recipient)`.
pub(crate) async fn policy_answer(
    stream: &mut tokio::net::TcpStream,
    context: &str,
    sender: &str,
    recipient: &str,
) -> String {
    let request = policy_request(context, sender, recipient);
    exchange(stream, request.as_bytes(), b"\n\n").await
}

/// Asks the socketmap listener at `socketmap` each lookup over one connection, as Postfix does,
/// and asserts each answer is the expected one.
pub(crate) async fn assert_socketmap(socketmap: std::net::SocketAddr, lookups: &[(&str, &str)]) {
    let mut stream = tokio::net::TcpStream::connect(socketmap).await.unwrap();
    let netstring = |text: &str| format!("{}:{text},", text.len());
    for (lookup, expected) in lookups {
        assert_eq!(
            exchange(&mut stream, netstring(lookup).as_bytes(), b",").await,
            netstring(expected),
            "{lookup}"
        );
    }
}

/// Writes `request` and reads until `terminator` ends what was read.
pub(crate) async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    terminator: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    while !answer.ends_with(terminator) {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(
            read > 0,
            "closed after {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..read]);
    }
    String::from_utf8(answer).unwrap()
}

#[tokio::test]
async fn postfix_asks_through_the_policy_and_socketmap_listeners() {
    let dns = DnsServer::start().await;
    let (app, policy, socketmap) = with_listeners(&dns, |_| {}).await;
    let (admin, tree) = setup(&app, &dns).await;
    admin.create_mailbox(&tree.c1, "pat@c1.example").await;
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c2),
            &json!({"auto_enrol": false, "inbound_recipients": "known",
                    "role_recipient": "desk@elsewhere.example"}),
        )
        .await;
    let routed = admin.register_domain(&tree.c1, "routed.example").await;
    admin
        .patch_ok(
            &format!("/v1/domains/{}", routed["id"].as_str().unwrap()),
            &json!({"route": {"host": "mx.customer.example", "port": 2525}}),
        )
        .await;

    // An MX's request (no login, no policy context) is about its recipient; a request with
    // `policy_context=outbound` (or from a client that logged in) about its sender.
    let mut stream = tokio::net::TcpStream::connect(policy).await.unwrap();
    // Several requests on one connection, as Postfix keeps it open.
    for (context, sender, recipient, expected) in [
        (
            "",
            "someone@example.net",
            "pat@c1.example",
            "action=DUNNO\n\n",
        ),
        (
            "",
            "someone@example.net",
            "nobody@c2.example",
            "action=550 5.1.1 unknown_mailbox\n\n",
        ),
        (
            "",
            "someone@example.net",
            "x@unknown.example",
            "action=550 5.1.2 unknown_domain\n\n",
        ),
        // C1 takes any recipient (the default) and none of them takes a seat.
        (
            "",
            "someone@example.net",
            "fresh@c1.example",
            "action=DUNNO\n\n",
        ),
        // A sender is enrolled.
        (
            "outbound",
            "fresh@c1.example",
            "someone@example.net",
            "action=DUNNO\n\n",
        ),
        (
            "outbound",
            "ghost@c2.example",
            "someone@example.net",
            "action=550 5.7.1 unknown_mailbox\n\n",
        ),
    ] {
        assert_eq!(
            policy_answer(&mut stream, context, sender, recipient).await,
            expected,
            "{context} {sender} {recipient}"
        );
    }
    let enrolled = admin
        .list_texts(&tree.c1, "mailboxes?origin=check", "address")
        .await;
    assert_eq!(
        enrolled,
        ["fresh@c1.example"],
        "only the sender was enrolled"
    );
    // Audited as the service's, with the connection's request id and Postfix's address, as an
    // API request's enrolment is with its own.
    let audited = crate::audit::trail(&admin, &tree.c1, "action=mailbox.enrol", 50).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["actor"]["kind"], "system");
    assert_eq!(audited[0]["client_address"], "127.0.0.1");
    assert!(audited[0]["request_id"].is_string(), "{}", audited[0]);
    assert_eq!(
        exchange(&mut stream, b"no equals sign\n\n", b"\n\n").await,
        "action=DEFER_IF_PERMIT malformed policy request\n\n"
    );

    assert_socketmap(
        socketmap,
        &[
            ("domain c1.example", "OK c1.example"),
            // Held but refused (unverified): still Postfix's own, so that it is never relayed.
            ("domain routed.example", "OK routed.example"),
            ("domain nobody.example", "NOTFOUND "),
            ("mailbox pat@c1.example", "OK pat@c1.example"),
            ("mailbox ghost@c2.example", "NOTFOUND "),
            ("mailbox anyone@c1.example", "OK anyone@c1.example"),
            ("mailbox anyone@routed.example", "TEMP domain_unverified"),
            (
                "transport routed.example",
                "OK smtp:[mx.customer.example]:2525",
            ),
            ("transport c1.example", "NOTFOUND "),
            ("alias postmaster@c2.example", "OK desk@elsewhere.example"),
            ("alias postmaster@c1.example", "NOTFOUND "),
        ],
    )
    .await;
    app.assert_verified();
}

/// What the database says the check should answer about `address` (with enrolment off) now: the
/// rules read from the tables, independently of the index the check answers from.
fn expected_reason(database_url: &str, address: &str) -> (String, Option<String>) {
    use allot::store::schema::{domains, nodes};
    use diesel::prelude::*;
    let pool = allot::store::connect(database_url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    let conn = &mut *conn;
    let reason = |r: &str| (r.to_owned(), None);
    let (_, domain) = address.rsplit_once('@').unwrap();
    let Some((node, status, verified_at)) = domains::table
        .filter(domains::name.eq(domain))
        .select((domains::node_id, domains::status, domains::verified_at))
        .first::<(String, String, Option<chrono::NaiveDateTime>)>(conn)
        .optional()
        .unwrap()
    else {
        return reason("unknown_domain");
    };
    let path: String = nodes::table
        .find(&node)
        .select(nodes::path)
        .first(conn)
        .unwrap();
    let lineage: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let statuses: Vec<String> = nodes::table
        .filter(nodes::id.eq_any(&lineage))
        .select(nodes::status)
        .load(conn)
        .unwrap();
    if statuses.iter().any(|s| s != "active") {
        return reason("node_suspended");
    }
    if status != "active" {
        return reason("domain_disabled");
    }
    if verified_at.is_none() {
        return reason("domain_unverified");
    }
    match allot::store::check::mailbox_at(conn, address).unwrap() {
        None => reason("unknown_mailbox"),
        Some((id, status)) if status == "active" => ("ok".to_owned(), Some(id)),
        Some((id, _)) => ("mailbox_disabled".to_owned(), Some(id)),
    }
}

#[tokio::test]
async fn under_a_mixed_workload_every_answer_is_what_the_database_says() {
    verified_app!(app, dns, admin, tree);
    admin.register_domain(&tree.c1, "pending.example").await;
    let worker = check_key(&app, &admin, &tree.owner).await;
    let domain_ids: Vec<(String, String)> = {
        let page = admin
            .get_ok(&format!("/v1/nodes/{}/domains", tree.owner))
            .await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["id"].as_str().unwrap().to_owned(),
                    d["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let mut addresses: Vec<String> = ["c1.example", "c2.example", "pending.example"]
        .iter()
        .flat_map(|d| (0..4).map(move |n| format!("u{n}@{d}")))
        .chain([
            "postmaster@c1.example".to_owned(),
            "x@nowhere.example".to_owned(),
        ])
        .collect();
    let mut mailboxes: Vec<String> = Vec::new();
    let mut reasons = std::collections::BTreeSet::new();
    // A fixed xorshift sequence: the same workload on every run and both backends.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % n as u64).unwrap()
    };
    for round in 0..60 {
        let pick = next(8);
        match pick {
            0 | 1 => {
                let address = &addresses[next(8)];
                let (_, domain) = address.rsplit_once('@').unwrap();
                let customer = if domain == "c2.example" {
                    &tree.c2
                } else {
                    &tree.c1
                };
                let created = admin
                    .post(
                        &format!("/v1/nodes/{customer}/mailboxes"),
                        &json!({"address": address}),
                    )
                    .await;
                if created.status() == 201 {
                    let body: Value = created.json().await.unwrap();
                    mailboxes.push(body["id"].as_str().unwrap().to_owned());
                }
            }
            2 | 3 if !mailboxes.is_empty() => {
                let id = &mailboxes[next(mailboxes.len())];
                let action = ["disable", "enable"][pick - 2];
                admin
                    .post(&format!("/v1/mailboxes/{id}/{action}"), &json!({}))
                    .await;
            }
            4 if !mailboxes.is_empty() => {
                let index = next(mailboxes.len());
                let deleted = admin
                    .delete(&format!("/v1/mailboxes/{}", mailboxes[index]))
                    .await;
                if deleted.status() == 204 {
                    mailboxes.remove(index);
                }
            }
            5 if !mailboxes.is_empty() => {
                let alias = format!("alias{round}@c1.example");
                let id = &mailboxes[next(mailboxes.len())];
                let added = admin
                    .post(
                        &format!("/v1/mailboxes/{id}/aliases"),
                        &json!({"address": alias}),
                    )
                    .await;
                if added.status() == 201 {
                    addresses.push(alias);
                }
            }
            6 => {
                let node = [&tree.a1, &tree.c1, &tree.b, &tree.c2][next(4)];
                // Suspensions are undone more often than made, so every state keeps recurring.
                let status = ["suspended", "active", "active"][next(3)];
                admin
                    .patch(&format!("/v1/nodes/{node}"), &json!({"status": status}))
                    .await;
            }
            _ => {
                let (id, _) = &domain_ids[next(domain_ids.len())];
                let status = ["disabled", "active", "active"][next(3)];
                admin
                    .patch(&format!("/v1/domains/{id}"), &json!({"status": status}))
                    .await;
            }
        }
        for address in &addresses {
            let (_, _, answer) = ask(
                &worker,
                json!({"direction": "outbound", "address": address, "enrol": false}),
            )
            .await;
            let (reason, mailbox) = expected_reason(&app.database_url, address);
            assert_eq!(
                (
                    answer["reason"].as_str().unwrap(),
                    answer["mailbox_id"].as_str()
                ),
                (reason.as_str(), mailbox.as_deref()),
                "round {round}, {address}: {answer}"
            );
            reasons.insert(reason);
        }
    }
    // The workload went through every state it can reach, so the comparison covered each.
    assert_eq!(
        reasons.into_iter().collect::<Vec<_>>(),
        [
            "domain_disabled",
            "domain_unverified",
            "mailbox_disabled",
            "node_suspended",
            "ok",
            "unknown_domain",
            "unknown_mailbox"
        ]
    );
    app.assert_verified();
}

/// The database refusing writes for a while, as a test can arrange it: on SQLite another process
/// holding the write lock (longer than allot's 10-second busy timeout), on PostgreSQL the database
/// closed to connections with allot's own connections cut.
pub(crate) enum Outage {
    Sqlite(diesel::SqliteConnection),
    Postgres { server: String, name: String },
}

impl Outage {
    pub(crate) fn start(database_url: &str) -> Self {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        if database_url.starts_with("postgres") {
            let server = std::env::var("ALLOT_TEST_DATABASE_URL").unwrap();
            let name = database_url.rsplit('/').next().unwrap().to_owned();
            let mut conn = diesel::PgConnection::establish(&server).unwrap();
            conn.batch_execute(&format!(
                "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false;
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
            ))
            .unwrap();
            Self::Postgres { server, name }
        } else {
            let mut conn = diesel::SqliteConnection::establish(database_url).unwrap();
            conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
            Self::Sqlite(conn)
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        match self {
            Self::Sqlite(conn) => conn.batch_execute("ROLLBACK").unwrap(),
            Self::Postgres { server, name } => diesel::PgConnection::establish(server)
                .unwrap()
                .batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
                .unwrap(),
        }
    }
}

#[tokio::test]
async fn an_enrolment_the_database_cannot_take_defers_while_known_mailboxes_are_answered() {
    verified_app!(app, dns, admin, tree);
    admin.create_mailbox(&tree.c1, "known@c1.example").await;
    let worker = check_key(&app, &admin, &tree.owner).await;

    let outage = Outage::start(&app.database_url);
    let (verdict, reason_code, answer) = ask(&worker, outbound_address("new@c1.example")).await;
    assert_eq!(
        (
            verdict.as_str(),
            reason_code.as_str(),
            answer["enrolled"].as_bool()
        ),
        ("defer", "unavailable", Some(false))
    );
    // What the index holds is still answered, from memory.
    assert_eq!(
        reason(&worker, outbound_address("known@c1.example")).await,
        "ok"
    );
    drop(outage);

    let (verdict, _, answer) = ask(&worker, outbound_address("new@c1.example")).await;
    assert_eq!(
        (verdict.as_str(), answer["enrolled"].as_bool()),
        ("accept", Some(true))
    );
    app.assert_verified();
}

#[tokio::test]
async fn a_recipient_never_takes_a_seat_and_is_accepted_as_its_customer_says() {
    verified_app!(app, dns, admin, tree, worker @ owner);
    let jane_id = jane_and_her_alias(&admin, &tree.c1).await;
    let used = admin.usage(&tree.c1, "users").await["used"].clone();
    let inbound = |address: &str| json!({"direction": "inbound", "address": address});

    // C1 takes any recipient on its domain by default (`domain`), and none takes a seat, however
    // many strangers write to it.
    let batch: Vec<Value> = (0..50)
        .map(|i| inbound(&format!("stranger{i}@c1.example")))
        .collect();
    let results = worker
        .post_expect("/v1/check/batch", &json!({"checks": batch}), 200)
        .await;
    for result in results["results"].as_array().unwrap() {
        assert_eq!(
            (&result["verdict"], &result["reason"], &result["enrolled"]),
            (&json!("accept"), &json!("ok"), &json!(false)),
            "{result}"
        );
        assert!(result["mailbox_id"].is_null());
        assert_eq!(
            (&result["smtp_code"], &result["smtp_status"]),
            (&json!(250), &json!("2.1.5"))
        );
    }
    assert_eq!(admin.usage(&tree.c1, "users").await["used"], used);
    // A recipient is never enrolled, even when asked.
    let refused = worker
        .post(
            "/v1/check",
            &json!({"direction": "inbound", "address": "x@c1.example", "enrol": true}),
        )
        .await;
    let problem = assert_problem(refused, 422, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "enrol");
    // Without a direction the check does not guess.
    let missing = worker
        .post("/v1/check", &json!({"address": "x@c1.example"}))
        .await;
    assert_problem(missing, 422, "validation-failed").await;

    // Known addresses answer for their mailbox: an alias for the mailbox behind it.
    for address in ["jane@c1.example", "j.doe@c1.example"] {
        let (verdict, _, answer) = ask(&worker, inbound(address)).await;
        assert_eq!(
            (verdict.as_str(), &answer["mailbox_id"]),
            ("accept", &json!(jane_id))
        );
    }
    let (verdict, ..) = ask(&worker, inbound("postmaster@c1.example")).await;
    assert_eq!(verdict, "accept");

    // `known`: allot's list is authoritative, a stranger is refused for good.
    admin
        .patch_node(&tree.c1, &json!({"inbound_recipients": "known"}))
        .await;
    let (verdict, reason_code, answer) = ask(&worker, inbound("stranger1@c1.example")).await;
    assert_eq!(
        (
            verdict.as_str(),
            reason_code.as_str(),
            &answer["smtp_code"],
            &answer["smtp_status"]
        ),
        ("reject", "unknown_mailbox", &json!(550), &json!("5.1.1"))
    );
    assert_eq!(reason(&worker, inbound("j.doe@c1.example")).await, "ok");
    assert_eq!(
        reason(&worker, inbound("postmaster@c1.example")).await,
        "ok"
    );
    admin
        .post(&format!("/v1/mailboxes/{jane_id}/disable"), &json!({}))
        .await;
    let (verdict, reason_code, answer) = ask(&worker, inbound("j.doe@c1.example")).await;
    assert_eq!(
        (
            verdict.as_str(),
            reason_code.as_str(),
            &answer["smtp_status"]
        ),
        ("reject", "mailbox_disabled", &json!("5.2.1"))
    );
    let (_, _, answer) = ask(&worker, inbound("x@unknown.example")).await;
    assert_eq!(answer["smtp_status"], "5.1.2");
    let (_, _, answer) = ask(&worker, outbound_address("x@unknown.example")).await;
    assert_eq!(answer["smtp_status"], "5.1.8");

    // A sender is what takes a seat.
    let used = admin.usage(&tree.c1, "users").await["used"].clone();
    let (_, _, answer) = ask(&worker, outbound_address("stranger1@c1.example")).await;
    assert_eq!(answer["enrolled"], true);
    assert_eq!(
        admin.usage(&tree.c1, "users").await["used"],
        json!(used.as_i64().unwrap() + 1)
    );

    // Every answer was counted, by listener, direction, verdict and reason.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for series in [
        r#"allot_checks_total{direction="inbound",listener="http",reason="ok",verdict="accept"} 5"#,
        r#"allot_checks_total{direction="inbound",listener="http",reason="unknown_mailbox",verdict="reject"} 1"#,
        r#"allot_checks_total{direction="outbound",listener="http",reason="ok",verdict="accept"} 1"#,
        "allot_check_enrolments_total 1",
        "allot_check_index_domains 2",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    app.assert_verified();
}

#[tokio::test]
async fn an_operator_may_accept_unverified_domains_and_make_licence_refusals_permanent() {
    let dns = DnsServer::start().await;
    let app = spawn_app_with(|config| {
        config.dns_resolver = dns.addr;
        config.require_domain_verification = false;
        config.licence_refusals = allot::check::LicenceRefusals::Permanent;
    })
    .await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    let worker = check_key(&app, &admin, &tree.owner).await;
    admin.register_domain(&tree.c1, "pending.example").await;
    let (verdict, reason_code, answer) =
        ask(&worker, outbound_address("new@pending.example")).await;
    assert_eq!((verdict.as_str(), reason_code.as_str()), ("accept", "ok"));
    assert_eq!(answer["enrolled"], true);

    // A customer with no seat left: the refusal bounces now instead of waiting in queues.
    let small = admin.create_child(&tree.b, "customer", "Small").await;
    for resource in ["users", "module:base", "domains"] {
        admin.grant(&small, resource, 1).await;
    }
    admin.register_domain(&small, "small.example").await;
    admin.create_mailbox(&small, "one@small.example").await;
    let (verdict, reason_code, answer) = ask(&worker, outbound_address("two@small.example")).await;
    assert_eq!(
        (
            verdict.as_str(),
            reason_code.as_str(),
            &answer["smtp_code"],
            &answer["smtp_status"]
        ),
        ("reject", "users_exhausted", &json!(550), &json!("5.7.1"))
    );
    app.assert_verified();
}
