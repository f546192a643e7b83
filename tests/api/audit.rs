//! The audit trail, read back (issue 14): `GET /v1/nodes/{id}/audit` as pages and as NDJSON and
//! CSV streams, its filters, its order, who may read whose events, and retention.

use chrono::{NaiveDateTime, SubsecRound, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, admin_app, spawn_app, spawn_app_on};
use crate::principals::account;

/// Every event of `node`'s trail matching `query`, walking its pages of `limit`.
pub(crate) async fn trail(caller: &Caller<'_>, node: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/nodes/{node}/audit?limit={limit}&{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = caller.get_ok(&path).await;
        events.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// Asks for `node`'s trail matching `query` as `accept`, through `client`, as `caller`.
async fn ask(
    client: &reqwest::Client,
    caller: &Caller<'_>,
    node: &str,
    query: &str,
    accept: &str,
) -> reqwest::Response {
    client
        .get(caller.app.url(&format!("/v1/nodes/{node}/audit?{query}")))
        .bearer_auth(&caller.token)
        .header("Accept", accept)
        .send()
        .await
        .unwrap()
}

/// `node`'s trail matching `query` as `accept` answers it: the response, checked to be 200.
async fn stream(caller: &Caller<'_>, node: &str, query: &str, accept: &str) -> reqwest::Response {
    let response = ask(&caller.app.client, caller, node, query, accept).await;
    assert_eq!(response.status(), 200, "{accept} of {node}");
    response
}

/// The NDJSON stream of `node`'s trail: one event per line.
async fn ndjson(caller: &Caller<'_>, node: &str, query: &str) -> Vec<Value> {
    let response = stream(caller, node, query, "application/x-ndjson").await;
    assert_eq!(
        crate::helpers::content_type(&response),
        "application/x-ndjson"
    );
    let text = response.text().await.unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "lines end with LF");
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The CSV stream of `node`'s trail, read back by the `csv` crate: the header and the records.
async fn csv_export(
    caller: &Caller<'_>,
    node: &str,
    query: &str,
) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let response = stream(caller, node, query, "text/csv").await;
    assert!(crate::helpers::content_type(&response).starts_with("text/csv"));
    let disposition = response.headers()["content-disposition"].to_str().unwrap();
    let today = Utc::now().date_naive();
    assert_eq!(
        disposition,
        format!("attachment; filename=\"audit-{node}-{today}.csv\"")
    );
    let bytes = response.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_ref());
    let header = reader.headers().unwrap().clone();
    let records = reader.records().map(Result::unwrap).collect();
    (header, records)
}

fn ids(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

/// Appends `count` events at `node` behind the app's back, the `i`-th written at `at(i)`, as a
/// long-running installation would have them; returns their ids.
fn insert_events(
    app: &TestApp,
    node: &str,
    count: usize,
    at: impl Fn(usize) -> NaiveDateTime,
) -> Vec<String> {
    use allot::store::schema::audit_events as e;
    use diesel::prelude::*;
    let pool = allot::store::connect(&app.database_url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    let ids: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let rows: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            (
                e::id.eq(id.clone()),
                // As allot stores times: to the microsecond.
                e::at.eq(at(i).trunc_subsecs(6)),
                e::actor.eq("system"),
                e::actor_name.eq(Some("system")),
                e::node_id.eq(node.to_owned()),
                e::node_name.eq(Some("Inserted")),
                e::action.eq("node.update"),
                e::target_kind.eq("node"),
                e::target_id.eq(node.to_owned()),
            )
        })
        .collect();
    // One row per statement (diesel's batch insert does not serve both backends at once), in one
    // transaction.
    conn.transaction(|conn| {
        rows.into_iter().try_for_each(|row| {
            diesel::insert_into(e::table)
                .values(row)
                .execute(conn)
                .map(drop)
        })
    })
    .unwrap();
    ids
}

/// The `(at, id)` of each event, asserted strictly newest first.
fn assert_newest_first(events: &[Value]) {
    let keys: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["at"].as_str().unwrap(), e["id"].as_str().unwrap()))
        .collect();
    for pair in keys.windows(2) {
        let at = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
        assert!(
            (at(pair[0].0), pair[0].1) > (at(pair[1].0), pair[1].1),
            "{pair:?} out of order"
        );
    }
}

#[tokio::test]
async fn each_write_reads_back_with_its_actor_its_node_and_their_names_as_they_were() {
    admin_app!(app, admin, tree);
    let me = admin.get_ok("/v1/me").await;
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c1),
            &json!({"name": "Renamed C1"}),
        )
        .await;
    let query = format!("target_kind=node&target_id={}", tree.c1);
    let events = trail(&admin, &tree.c1, &query, 50).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["node.update", "node.create"]);
    let (update, create) = (&events[0], &events[1]);
    assert_eq!(
        update["actor"],
        json!({"kind": "account", "id": me["id"], "name": me["name"]})
    );
    assert_eq!(update["node"], json!({"id": tree.c1, "name": "Renamed C1"}));
    assert_eq!(
        create["node"],
        json!({"id": tree.c1, "name": "Customer C1"})
    );
    assert_eq!(update["target"], json!({"kind": "node", "id": tree.c1}));
    assert_eq!(update["before"]["name"], "Customer C1");
    assert_eq!(update["after"]["name"], "Renamed C1");
    assert!(create["before"].is_null());
    assert!(
        update["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    // The test client's connections come from loopback (no proxy is trusted here).
    assert_eq!(update["client_address"], "127.0.0.1");

    // The owner's first admin was made by allot itself at first start.
    let owner = admin.node_id().await;
    let first = trail(&admin, &owner, "actor=system&action=account.create", 50).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0]["actor"],
        json!({"kind": "system", "id": null, "name": "system"})
    );
    assert!(first[0]["request_id"].is_null());
    assert!(first[0]["client_address"].is_null());
}

#[tokio::test]
async fn secrets_never_reach_the_trail() {
    admin_app!(app, admin, tree);
    let key = admin.create_api_key(&tree.a, "ops key", "viewer").await;
    let secret = key["key"].as_str().unwrap().to_owned();
    let password = "a password nobody may read";
    admin
        .post_expect(
            &format!("/v1/nodes/{}/accounts", tree.a),
            &json!({"username": "someone", "email": "s@example.test", "role": "viewer", "password": password}),
            201,
        )
        .await;
    let account = trail(&admin, &tree.a, "target_kind=account", 50).await;
    let id = account[0]["target"]["id"].as_str().unwrap();
    let new_password = "another secret password";
    admin
        .patch_ok(
            &format!("/v1/accounts/{id}"),
            &json!({"password": new_password}),
        )
        .await;
    let page = admin
        .get(&format!("/v1/nodes/{}/audit", tree.a))
        .await
        .text()
        .await
        .unwrap();
    let lines = stream(&admin, &tree.a, "", "application/x-ndjson")
        .await
        .text()
        .await
        .unwrap();
    let csv = stream(&admin, &tree.a, "", "text/csv")
        .await
        .text()
        .await
        .unwrap();
    for text in [&page, &lines, &csv] {
        assert!(text.contains("api_key.create") && text.contains("account.update"));
        for secret in [secret.as_str(), password, new_password, "$argon2"] {
            assert!(!text.contains(secret), "the trail shows {secret}");
        }
    }
}

#[tokio::test]
async fn filters_narrow_the_trail_and_bad_ones_are_refused() {
    admin_app!(app, admin, tree);
    let (key, created) = crate::principals::api_key(&app, &admin, &tree.a, "admin").await;
    let key_id = created["id"].as_str().unwrap();
    let child = key.create_child(&tree.a1, "customer", "Made By Key").await;
    key.patch_ok(
        &format!("/v1/nodes/{child}"),
        &json!({"description": "changed"}),
    )
    .await;
    let all = trail(&admin, &tree.a, "", 500).await;
    assert_newest_first(&all);

    let by_key = trail(&admin, &tree.a, &format!("actor=api_key:{key_id}"), 50).await;
    assert_eq!(by_key.len(), 2);
    assert!(by_key.iter().all(|e| e["actor"]["name"] == "admin key"));
    assert_eq!(
        ids(&trail(&admin, &tree.a, &format!("actor={key_id}"), 50).await),
        ids(&by_key)
    );
    assert!(
        trail(&admin, &tree.a, &format!("actor=account:{key_id}"), 50)
            .await
            .is_empty()
    );

    let updates = trail(&admin, &tree.a, "action=node.update", 50).await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["target"]["id"], child.as_str());
    let about_child = trail(&admin, &tree.a, &format!("target_id={child}"), 50).await;
    assert_eq!(about_child.len(), 2);
    let allocations = trail(&admin, &tree.a, "target_kind=allocation", 500).await;
    assert!(!allocations.is_empty());
    assert!(
        allocations
            .iter()
            .all(|e| e["target"]["kind"] == "allocation")
    );
    assert_eq!(
        trail(
            &admin,
            &tree.a,
            "target_kind=allocation&action=allocation.create",
            500
        )
        .await
        .len(),
        allocations.len()
    );

    // A time range: `from` inclusive, `to` exclusive.
    let middle = &all[all.len() / 2];
    let at = middle["at"].as_str().unwrap().replace('+', "%2B");
    let newer = trail(&admin, &tree.a, &format!("from={at}"), 500).await;
    let older = trail(&admin, &tree.a, &format!("to={at}"), 500).await;
    assert_eq!(newer.len() + older.len(), all.len());
    assert!(ids(&newer).contains(&middle["id"].as_str().unwrap()));
    assert_eq!(ids(&[newer, older].concat()), ids(&all));
    let far = "2999-01-01T00:00:00Z";
    assert!(
        trail(&admin, &tree.a, &format!("from={far}"), 50)
            .await
            .is_empty()
    );

    let path = format!("/v1/nodes/{}/audit", tree.a);
    for query in [
        "actor=someone",
        "actor=account:not-an-id",
        "action=node.explode",
        "from=yesterday",
        "cursor=bm90IGEgY3Vyc29y",
        "limit=0",
        "colour=red",
    ] {
        admin
            .get_problem(&format!("{path}?{query}"), 400, "invalid-query")
            .await;
    }
}

#[tokio::test]
async fn pages_walk_newest_first_through_ties_without_a_gap_or_a_repeat() {
    admin_app!(app, admin, tree);
    // 130 events over 13 instants: every page boundary falls among events of one instant.
    let base = Utc::now().naive_utc() - TimeDelta::hours(1);
    let inserted = insert_events(&app, &tree.c2, 130, |i| {
        base + TimeDelta::seconds((i / 10) as i64)
    });
    let total = app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE node_id = '{}'",
        tree.c2
    ));
    for limit in [1, 7, 50] {
        let events = trail(&admin, &tree.c2, "", limit).await;
        assert_eq!(events.len() as i64, total, "pages of {limit}");
        assert_newest_first(&events);
        let seen: std::collections::HashSet<&str> = ids(&events).into_iter().collect();
        assert!(inserted.iter().all(|id| seen.contains(id.as_str())));
    }
    // The streams give the same events in the same order.
    let paged = trail(&admin, &tree.c2, "", 500).await;
    assert_eq!(ids(&ndjson(&admin, &tree.c2, "").await), ids(&paged));
    let (_, records) = csv_export(&admin, &tree.c2, "").await;
    let csv_ids: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(csv_ids, ids(&paged));
}

#[tokio::test]
async fn a_reseller_never_sees_an_event_of_a_siblings_subtree() {
    admin_app!(app, admin, tree);
    let reseller = account(&app, &admin, &tree.a, "alice", "viewer").await;
    // Writes on both sides, and a customer of A's that is gone: its events stay in A's trail.
    admin.create_api_key(&tree.c2, "b side", "viewer").await;
    let gone = admin
        .create_child(&tree.a1, "customer", "Gone Customer")
        .await;
    admin.delete_expect(&format!("/v1/nodes/{gone}"), 204).await;

    let everything = trail(&admin, &admin.node_id().await, "", 500).await;
    let node_of = |e: &Value| e["node"]["id"].as_str().unwrap().to_owned();
    let b_side: Vec<&Value> = everything
        .iter()
        .filter(|e| [&tree.b, &tree.c2].contains(&&node_of(e)))
        .collect();
    assert!(!b_side.is_empty());
    let a_side = [&tree.a, &tree.a1, &tree.c1, &gone];
    let expected: Vec<&str> = everything
        .iter()
        .filter(|e| a_side.contains(&&node_of(e)))
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(expected.len() > 5);

    let page = trail(&reseller, &tree.a, "", 500).await;
    let lines = ndjson(&reseller, &tree.a, "").await;
    let (_, records) = csv_export(&reseller, &tree.a, "").await;
    let csv_ids: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(ids(&page), expected);
    assert_eq!(ids(&lines), expected);
    assert_eq!(csv_ids, expected);
    assert!(
        page.iter()
            .any(|e| node_of(e) == gone && e["action"] == "node.delete")
    );

    // The sibling's trail, in any format, is a 404 that names nothing of it.
    for accept in ["application/json", "application/x-ndjson", "text/csv"] {
        for node in [&tree.b, &tree.c2] {
            let response = ask(&app.client, &reseller, node, "", accept).await;
            assert_eq!(response.status(), 404, "{accept} of {node}");
            let text = response.text().await.unwrap();
            assert!(!text.contains(node.as_str()) && !text.contains("b side"));
        }
    }
    // Nor does a subtree's trail show what happened above it.
    let c1 = trail(&reseller, &tree.c1, "", 500).await;
    assert!(c1.iter().all(|e| node_of(e) == tree.c1));
}

#[tokio::test]
async fn the_csv_export_reads_back_whatever_the_names_hold() {
    admin_app!(app, admin, tree);
    let awkward = "=HYPERLINK(\"x\"), \"Ops\", West";
    // Names as they were: a key acts under a name of commas, quotes and a leading `=`...
    let created = admin.create_api_key(&tree.c1, awkward, "admin").await;
    let named = Caller {
        app: &app,
        token: created["key"].as_str().unwrap().to_owned(),
    };
    named
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c1),
            &json!({"description": "a, \"b\"\nc"}),
        )
        .await;
    // ...and an event whose node was named, before names were checked, with a line break.
    let old = insert_events(&app, &tree.c1, 1, |_| {
        Utc::now().naive_utc() - TimeDelta::days(1)
    });
    app.execute_sql(&format!(
        "UPDATE audit_events SET node_name = 'Line one\nline two, \"quoted\"' WHERE id = '{}'",
        old[0]
    ));

    let (header, records) = csv_export(&admin, &tree.c1, "").await;
    assert_eq!(
        header.iter().collect::<Vec<_>>().join(","),
        "id,at,actor_kind,actor_id,actor_name,node_id,node_name,action,target_kind,target_id,before,after,request_id,client_address"
    );
    let events = trail(&admin, &tree.c1, "", 500).await;
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        assert_eq!(&record[0], event["id"].as_str().unwrap());
        assert_eq!(&record[7], event["action"].as_str().unwrap());
    }
    let update = &records[0];
    assert_eq!(&update[7], "node.update");
    assert_eq!(&update[2], "api_key");
    assert_eq!(&update[4], format!("'{awkward}"), "a formula is defused");
    let after: Value = serde_json::from_str(&update[11]).unwrap();
    assert_eq!(after["description"], "a, \"b\"\nc");
    let inserted = records.iter().find(|r| &r[0] == old[0].as_str()).unwrap();
    assert_eq!(&inserted[6], "Line one\nline two, \"quoted\"");
    assert_eq!(&inserted[4], "system");
}

#[tokio::test]
async fn the_streams_answer_thousands_of_events_complete_and_in_order() {
    admin_app!(app, admin, tree);
    // More than three of the stream's batches, with ties on time across their boundaries.
    let base = (Utc::now().naive_utc() - TimeDelta::days(2)).trunc_subsecs(6);
    insert_events(&app, &tree.c1, 3_500, |i| {
        base + TimeDelta::seconds((i / 7) as i64)
    });
    let total = app.count_sql(&format!(
        "SELECT COUNT(*) AS n FROM audit_events WHERE node_id = '{}'",
        tree.c1
    ));
    assert!(total > 3_500);
    let lines = ndjson(&admin, &tree.c1, "").await;
    assert_eq!(lines.len() as i64, total);
    assert_newest_first(&lines);
    let (_, records) = csv_export(&admin, &tree.c1, "").await;
    let csv_ids: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(csv_ids, ids(&lines));
    // Filtered, and resumed from a page's cursor.
    let to = (base + TimeDelta::seconds(100)).and_utc().to_rfc3339();
    let early = ndjson(&admin, &tree.c1, &format!("to={}", to.replace('+', "%2B"))).await;
    assert_eq!(early.len(), 700);
    let page = admin
        .get_ok(&format!("/v1/nodes/{}/audit?limit=10", tree.c1))
        .await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = ndjson(&admin, &tree.c1, &format!("cursor={cursor}")).await;
    assert_eq!(ids(&rest), ids(&lines)[10..]);
}

#[tokio::test]
async fn retention_prunes_what_is_older_and_keeps_the_rest() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let customer = admin.create_child(&owner, "customer", "Old Customer").await;
    // Two and a half batches of events from long ago, and one just inside the window.
    let long_ago = Utc::now().naive_utc() - TimeDelta::days(400);
    let old = insert_events(&app, &customer, 2_500, |i| {
        long_ago + TimeDelta::seconds(i as i64)
    });
    let recent = insert_events(&app, &customer, 1, |_| {
        Utc::now().naive_utc() - TimeDelta::days(29)
    });
    let count = |sql: &str| app.count_sql(sql);
    let all = "SELECT COUNT(*) AS n FROM audit_events";
    let before = count(all);

    // The first instance keeps everything; one started with 30 days prunes at start.
    let pruning = spawn_app_on(&app.database_url, |c| c.audit_retention_days = Some(30)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(all) > before - old.len() as i64 {
        assert!(
            std::time::Instant::now() < deadline,
            "pruning did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(count(all), before - old.len() as i64);
    let left = trail(&admin, &customer, "", 500).await;
    assert!(ids(&left).contains(&recent[0].as_str()));
    assert!(left.iter().any(|e| e["action"] == "node.create"));
    drop(pruning);
}

#[tokio::test]
async fn a_slow_reader_gets_the_whole_stream_past_the_request_deadline() {
    // The request deadline bounds how long a request takes to arrive, not how long its answer
    // takes to be read: an archive read slowly must not be cut.
    let app = crate::helpers::spawn_app_with(|c| c.request_timeout = 1).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let base = (Utc::now().naive_utc() - TimeDelta::days(1)).trunc_subsecs(6);
    insert_events(&app, &owner, 20_000, |i| {
        base + TimeDelta::milliseconds(i as i64)
    });
    let total = app.count_sql("SELECT COUNT(*) AS n FROM audit_events");
    // A fresh connection: the client's idle one outlived the 1 s deadline while the rows went in.
    let client = reqwest::Client::new();
    let mut response = ask(&client, &admin, &owner, "", "application/x-ndjson").await;
    assert_eq!(response.status(), 200);
    let started = std::time::Instant::now();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
        if started.elapsed() < std::time::Duration::from_secs(3) {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    assert!(started.elapsed() > std::time::Duration::from_secs(2));
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines as i64, total);
}

/// A request stays in the app until its answer is sent: the connection is ready for its next
/// request from then, not from when the handler returned. A streamed export read for longer than
/// the request deadline keeps its connection (on a raw socket: an HTTP client would quietly open
/// a new one where the server closed the old).
#[tokio::test]
async fn a_slowly_read_export_keeps_its_connection_for_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = crate::helpers::spawn_app_with(|c| c.request_timeout = 1).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let base = (Utc::now().naive_utc() - TimeDelta::days(1)).trunc_subsecs(6);
    insert_events(&app, &owner, 20_000, |i| {
        base + TimeDelta::milliseconds(i as i64)
    });
    let mut socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let export = format!(
        "GET /v1/nodes/{owner}/audit HTTP/1.1\r\nHost: allot\r\nAccept: application/x-ndjson\r\n\
         Authorization: Bearer {}\r\n\r\n",
        admin.token
    );
    socket.write_all(export.as_bytes()).await.unwrap();
    // Read it slowly, past the 1 s deadline, to the chunked body's last chunk.
    let (started, mut answer, mut buffer) = (std::time::Instant::now(), Vec::new(), [0u8; 16384]);
    while !answer.ends_with(b"\r\n0\r\n\r\n") {
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(
            read > 0,
            "the connection closed in the middle of the answer"
        );
        answer.extend_from_slice(&buffer[..read]);
        if started.elapsed() < std::time::Duration::from_secs(3) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(started.elapsed() > std::time::Duration::from_secs(2));
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: allot\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut next = Vec::new();
    let _ = socket.read_to_end(&mut next).await;
    let next = String::from_utf8_lossy(&next);
    assert!(
        next.starts_with("HTTP/1.1 200"),
        "the next request: {next:?}"
    );
}

/// The resident memory of process `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Appends `count` plain events at `node` written before `base`, a thousand per statement.
fn insert_plenty(database_url: &str, node: &str, count: usize, base: NaiveDateTime) {
    use diesel::prelude::*;
    let pool = allot::store::connect(database_url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    let rows: Vec<String> = (0..count)
        .map(|i| {
            let at = base - TimeDelta::milliseconds(i as i64);
            format!(
                "('{}', '{}', 'system', 'system', '{node}', 'Archived', 'node.update', 'node', \
                 '{node}', NULL, '{{\"description\":\"event {i} of an archive\"}}', NULL)",
                uuid::Uuid::now_v7(),
                at.format("%F %T%.f"),
            )
        })
        .collect();
    conn.transaction(|conn| {
        rows.chunks(1_000).try_for_each(|chunk| {
            diesel::sql_query(format!(
                "INSERT INTO audit_events (id, at, actor, actor_name, node_id, node_name, action, \
                 target_kind, target_id, before, after, request_id) VALUES {}",
                chunk.join(", ")
            ))
            .execute(conn)
            .map(drop)
        })
    })
    .unwrap();
}

#[tokio::test]
async fn an_export_of_a_hundred_thousand_events_runs_in_flat_memory() {
    // Its own allot process, so that its memory is the export's alone.
    let db = crate::helpers::TestDb::new();
    let (mut child, port) = crate::cli::serve(&db, &[("ALLOT_WORKERS", "1")]);
    let owner: String = {
        use allot::store::schema::nodes;
        use diesel::prelude::*;
        let pool = allot::store::connect(db.url(), 1).unwrap();
        let mut conn = pool.get().unwrap();
        nodes::table
            .filter(nodes::parent_id.is_null())
            .select(nodes::id)
            .first(&mut *conn)
            .unwrap()
    };
    insert_plenty(db.url(), &owner, 100_000, Utc::now().naive_utc());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let token = crate::helpers::token_at(
        &client,
        &base,
        crate::helpers::ADMIN_USERNAME,
        crate::helpers::ADMIN_PASSWORD,
    )
    .await;
    let token = token.as_str();
    let url = format!("{base}/v1/nodes/{owner}/audit");
    // Warm up: a page, so that the pool and the caches are what they will be.
    let page = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(page.status(), 200);
    page.bytes().await.unwrap();
    let before = resident_kib(child.id());

    let mut response = client
        .get(&url)
        .bearer_auth(token)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = std::time::Instant::now();
    let (mut bytes, mut lines, mut peak) = (0usize, 0usize, before);
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        peak = peak.max(resident_kib(child.id()));
    }
    let took = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines > 100_000, "{lines} lines");
    // The export is tens of megabytes; the server holds about two batches of it at a time.
    let grown = peak.saturating_sub(before);
    eprintln!(
        "audit export: {lines} lines, {bytes} bytes in {took:?}; the server grew {grown} KiB"
    );
    assert!(bytes > 25 << 20, "{bytes} bytes");
    assert!(
        grown < 24 << 10,
        "the server grew by {grown} KiB exporting {bytes} bytes"
    );
}

#[tokio::test]
async fn the_checks_enrolments_and_the_command_lines_writes_are_in_the_trail_too() {
    // The command line: the first start and a licence, as `system`.
    let db = crate::helpers::TestDb::new();
    let password = [("ALLOT_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)];
    let init = crate::cli::allot(&db)
        .envs(password)
        .arg("init")
        .output()
        .unwrap();
    assert!(init.status.success());
    let set = crate::cli::allot(&db)
        .args(["licence", "set", "--resource", "users=100"])
        .args(["--resource", "module:base=100", "--resource", "domains=10"])
        .output()
        .unwrap();
    assert!(set.status.success());
    let app = spawn_app_on(db.url(), |c| c.require_domain_verification = false).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let licence = trail(&admin, &owner, "action=licence.create", 50).await;
    assert_eq!(licence.len(), 3);
    for event in &licence {
        assert_eq!(
            event["actor"],
            json!({"kind": "system", "id": null, "name": "system"})
        );
        assert!(event["request_id"].is_null());
    }

    // The check: a mail worker's key enrols an address it has not seen.
    let customer = admin.create_child(&owner, "customer", "Enrolling").await;
    for resource in ["users", "module:base", "domains"] {
        admin.grant(&customer, resource, 5).await;
    }
    admin.register_domain(&customer, "enrol.example").await;
    let worker = crate::check::check_key(&app, &admin, &customer).await;
    let (_, _, answer) = crate::check::ask(
        &worker,
        json!({"direction": "outbound", "address": "new@enrol.example"}),
    )
    .await;
    assert_eq!(answer["enrolled"], true, "{answer}");
    let enrolled = trail(&admin, &customer, "action=mailbox.enrol", 50).await;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0]["actor"]["kind"], "api_key");
    assert_eq!(enrolled[0]["actor"]["name"], "mail worker");
    assert_eq!(enrolled[0]["target"]["id"], answer["mailbox_id"]);
    assert_eq!(
        enrolled[0]["node"],
        json!({"id": customer, "name": "Enrolling"})
    );
    // The worker's address, as for any write through the API.
    assert_eq!(enrolled[0]["client_address"], "127.0.0.1");
}
