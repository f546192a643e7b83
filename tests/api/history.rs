//! Usage over time: a node's history per day, driven across days by moving the test app's clock
//! (never by sleeping), on both backends.

use chrono::{NaiveDate, TimeDelta};
use serde_json::{Value, json};

use crate::check::{ask, verified_app};
use crate::helpers::{Caller, TestApp, admin_app};

/// `node`'s history for `query` (a query string).
async fn history(admin: &Caller<'_>, node: &str, query: &str) -> Value {
    admin
        .get_ok(&format!("/v1/nodes/{node}/usage/history?{query}"))
        .await
}

/// The query for the days from `from` to `to`.
fn range(from: NaiveDate, to: NaiveDate) -> String {
    format!("from={from}&to={to}")
}

/// The days a history answers, oldest first.
fn days(history: &Value) -> Vec<NaiveDate> {
    history["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["day"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn on(history: &Value, day: NaiveDate) -> &Value {
    history["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["day"] == day.to_string())
        .unwrap_or_else(|| panic!("no {day} in {history}"))
}

/// (limit, peak, used) of `resource` on `day`.
fn figures(history: &Value, day: NaiveDate, resource: &str) -> (i64, i64, i64) {
    let row = on(history, day)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == resource)
        .unwrap_or_else(|| panic!("no {resource} on {day} in {history}"));
    let n = |field: &str| row[field].as_i64().unwrap();
    (n("limit"), n("peak"), n("used"))
}

fn active(history: &Value, day: NaiveDate) -> i64 {
    on(history, day)["active_users"].as_i64().unwrap()
}

fn days_after(day: NaiveDate, n: i64) -> NaiveDate {
    day + TimeDelta::days(n)
}

#[tokio::test]
async fn a_day_keeps_its_peak_and_end_and_quiet_days_carry_the_day_before() {
    admin_app!(app, admin, tree);
    admin.register_domain(&tree.c1, "c1.example").await;
    let day0 = app.clock.today();
    let mut ids = Vec::new();
    for local in ["ann", "bob", "cid"] {
        let created = admin
            .create_mailbox(&tree.c1, &format!("{local}@c1.example"))
            .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    for id in &ids[..2] {
        admin.disable_mailbox(id).await;
    }
    // Days before the customer's first counted day answer nothing, not zeros.
    let first = history(&admin, &tree.c1, &range(days_after(day0, -3), day0)).await;
    assert_eq!(days(&first), [day0]);
    assert_eq!(figures(&first, day0, "users"), (50, 3, 1));
    assert_eq!(figures(&first, day0, "domains"), (5, 1, 1));
    app.assert_verified();

    app.clock.advance(TimeDelta::days(2));
    let day2 = days_after(day0, 2);
    admin.create_mailbox(&tree.c1, "dan@c1.example").await;
    let later = history(&admin, &tree.c1, &range(days_after(day0, -3), day2)).await;
    assert_eq!(days(&later), [day0, days_after(day0, 1), day2]);
    assert_eq!(figures(&later, day0, "users"), (50, 3, 1));
    assert_eq!(figures(&later, days_after(day0, 1), "users"), (50, 1, 1));
    assert_eq!(figures(&later, day2, "users"), (50, 2, 2));
    // The range's default is the 30 days up to today; `resource` keeps one.
    let users = history(&admin, &tree.c1, "resource=users").await;
    assert_eq!(users["to"], day2.to_string());
    assert_eq!(days(&users).len(), 3);
    assert!(
        users["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["resources"].as_array().unwrap().len() == 1)
    );
    app.assert_verified();
}

#[tokio::test]
async fn verify_finds_a_history_row_that_disagrees_with_the_counters() {
    admin_app!(app, admin, tree);
    admin.register_domain(&tree.c1, "c1.example").await;
    admin.create_mailbox(&tree.c1, "ann@c1.example").await;
    app.assert_verified();
    app.execute_sql(&format!(
        "UPDATE usage_history SET used = used + 1 WHERE node_id = '{}' AND resource = 'users'",
        tree.c1
    ));
    let findings = app.verify();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(findings[0].contains(&tree.c1) && findings[0].contains("usage history"));
}

#[tokio::test]
async fn a_resellers_history_is_the_sum_of_its_customers() {
    admin_app!(app, admin, tree);
    admin.register_domain(&tree.c1, "c1.example").await;
    admin.register_domain(&tree.c2, "c2.example").await;
    for address in ["ann@c1.example", "bob@c1.example"] {
        admin.create_mailbox(&tree.c1, address).await;
    }
    admin.create_mailbox(&tree.c2, "cid@c2.example").await;
    let day0 = app.clock.today();
    app.clock.advance(TimeDelta::days(1));
    admin.create_mailbox(&tree.c2, "dan@c2.example").await;
    let day1 = days_after(day0, 1);
    let q = range(day0, day1);
    let mut got = Vec::new();
    for node in [&tree.owner, &tree.a, &tree.a1, &tree.b, &tree.c1, &tree.c2] {
        got.push(history(&admin, node, &q).await);
    }
    let [owner, a, a1, b, c1, c2] = <[Value; 6]>::try_from(got).unwrap();
    for day in [day0, day1] {
        for resource in ["users", "domains", "module:base"] {
            let used = |h: &Value| figures(h, day, resource).2;
            assert_eq!(used(&owner), used(&c1) + used(&c2), "{resource} on {day}");
            assert_eq!(used(&a), used(&c1));
            assert_eq!(used(&a1), used(&c1));
            assert_eq!(used(&b), used(&c2));
        }
    }
    assert_eq!(figures(&owner, day0, "users"), (1000, 3, 3));
    assert_eq!(figures(&owner, day1, "users"), (1000, 4, 4));
    assert_eq!(figures(&b, day1, "users"), (300, 2, 2));
    app.assert_verified();
}

/// Waits until the check's sighting of each mailbox `ids` is written (it flushes every 2 s).
async fn seen(app: &TestApp, admin: &Caller<'_>, ids: &[&str]) {
    for _ in 0..100 {
        let mut all = true;
        for id in ids {
            let mailbox = admin.get_ok(&format!("/v1/mailboxes/{id}")).await;
            all &= mailbox["last_seen_at"].is_string();
        }
        if all {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} never saw {ids:?}", app.address);
}

#[tokio::test]
async fn active_users_enter_and_leave_the_thirty_day_window_and_roll_up() {
    verified_app!(app, _dns, admin, tree, worker @ owner);
    let jane = admin.create_mailbox(&tree.c1, "jane@c1.example").await;
    let bob = admin.create_mailbox(&tree.c2, "bob@c2.example").await;
    admin.create_mailbox(&tree.c2, "quiet@c2.example").await;
    let (jane, bob) = (jane["id"].as_str().unwrap(), bob["id"].as_str().unwrap());
    // The domain's postmaster@ sends too: a role address takes no seat and is no active user.
    let mailboxes = admin
        .get_ok(&format!("/v1/nodes/{}/mailboxes?limit=500", tree.c1))
        .await;
    let postmaster = mailboxes["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["address"] == "postmaster@c1.example")
        .expect("the domain's role address")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let day0 = app.clock.today();
    for address in ["jane@c1.example", "bob@c2.example", "postmaster@c1.example"] {
        let (verdict, _, answer) = ask(
            &worker,
            json!({"direction": "outbound", "address": address}),
        )
        .await;
        assert_eq!(verdict, "accept", "{answer}");
    }
    seen(&app, &admin, &[jane, bob, &postmaster]).await;
    let now = history(&admin, &tree.owner, &range(day0, day0)).await;
    assert_eq!(active(&now, day0), 2);

    // Seen on day 0: active on each of the 30 days up to day 29, and not on day 30.
    app.clock.advance(TimeDelta::days(29));
    let day29 = days_after(day0, 29);
    let c1 = history(&admin, &tree.c1, &range(day0, day29)).await;
    assert_eq!(days(&c1).len(), 30);
    assert!(days(&c1).iter().all(|day| active(&c1, *day) == 1), "{c1}");
    app.clock.advance(TimeDelta::days(1));
    let day30 = days_after(day0, 30);
    let q = range(day29, day30);
    let (owner, a, c1, b, c2) = (
        history(&admin, &tree.owner, &q).await,
        history(&admin, &tree.a, &q).await,
        history(&admin, &tree.c1, &q).await,
        history(&admin, &tree.b, &q).await,
        history(&admin, &tree.c2, &q).await,
    );
    for (h, expected) in [(&owner, 2), (&a, 1), (&c1, 1), (&b, 1), (&c2, 1)] {
        assert_eq!(active(h, day29), expected, "{h}");
        assert_eq!(active(h, day30), 0, "{h}");
    }

    // Seen again: active again from that day on.
    ask(
        &worker,
        json!({"direction": "outbound", "address": "jane@c1.example"}),
    )
    .await;
    let before = admin.get_ok(&format!("/v1/mailboxes/{jane}")).await["last_seen_at"].clone();
    for _ in 0..100 {
        let now = admin.get_ok(&format!("/v1/mailboxes/{jane}")).await;
        if now["last_seen_at"] != before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let owner = history(&admin, &tree.owner, &range(day30, day30)).await;
    let c1 = history(&admin, &tree.c1, &range(day30, day30)).await;
    assert_eq!((active(&owner, day30), active(&c1, day30)), (1, 1));
    app.assert_verified();
}

#[tokio::test]
async fn the_range_is_capped_and_must_run_forward() {
    admin_app!(app, admin, tree);
    let c1 = &tree.c1;
    let problem = admin
        .get_problem(
            &format!("/v1/nodes/{c1}/usage/history?from=2025-01-01&to=2026-01-02"),
            400,
            "range-too-long",
        )
        .await;
    assert_eq!(problem["errors"][0]["field"], "from");
    assert!(problem["detail"].as_str().unwrap().contains("367 days"));
    let year = history(&admin, c1, "from=2025-01-01&to=2026-01-01").await;
    assert_eq!(year["days"], json!([]));
    admin
        .get_problem(
            &format!("/v1/nodes/{c1}/usage/history?from=2026-01-02&to=2026-01-01"),
            422,
            "validation-failed",
        )
        .await;
    admin
        .get_problem(
            &format!("/v1/nodes/{c1}/usage/history?resource=module:nope"),
            400,
            "invalid-query",
        )
        .await;
    admin
        .get_problem(
            &format!("/v1/nodes/{c1}/usage/history?from=yesterday"),
            400,
            "invalid-query",
        )
        .await;
}

/// Until `n` sessions of the database at `url` wait for a lock (looked at every few milliseconds:
/// a wait for a state, not for time to pass).
async fn lock_waiters(url: &str, n: i64) {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    loop {
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .get_result(&mut conn)
        .unwrap();
        if waiting.n >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A write judged on day D, held up by `lock` (SQL that a transaction of the test runs and holds)
/// until day D+1 has begun to open: D+1's rows still end where the counters do.
async fn a_write_across_midnight(app: &TestApp, admin: &Caller<'_>, c1: &str, lock: &str) {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let mut held = diesel::PgConnection::establish(&app.database_url).unwrap();
    held.batch_execute(&format!("BEGIN; {lock}")).unwrap();
    let mailboxes = format!("/v1/nodes/{c1}/mailboxes");
    let body = json!({"address": format!("late-{}@c1.example", app.clock.today())});
    let write = admin.post(&mailboxes, &body);
    let midnight = async {
        lock_waiters(&app.database_url, 1).await;
        app.clock.advance(TimeDelta::days(1));
        let today = app.clock.today();
        let day = range(today, today);
        let open = history(admin, c1, &day);
        tokio::pin!(open);
        // The opening either waits for the write (it must) or is done without it.
        let early = tokio::select! {
            opened = &mut open => Some(opened),
            () = lock_waiters(&app.database_url, 2) => None,
        };
        held.batch_execute("COMMIT").unwrap();
        match early {
            Some(opened) => opened,
            None => open.await,
        }
    };
    let (written, _) = tokio::join!(write, midnight);
    assert_eq!(written.status(), 201);
    let today = app.clock.today();
    let usage = admin.get_ok(&format!("/v1/nodes/{c1}/usage")).await;
    let users = usage["resources"][0]["used"].as_i64().unwrap();
    assert_eq!(usage["resources"][0]["resource"], "users");
    let after = history(admin, c1, &range(today, today)).await;
    assert_eq!(figures(&after, today, "users").2, users, "{after}");
    app.assert_verified();
}

#[tokio::test]
async fn a_write_judged_before_midnight_reaches_the_day_opened_meanwhile() {
    admin_app!(app, admin, tree);
    if !app.database_url.starts_with("postgres") {
        // SQLite runs one writer at a time and has no lock a test could hold a write up with
        // without holding up the day's opening too: nothing to order here.
        return;
    }
    admin.register_domain(&tree.c1, "c1.example").await;
    admin.create_mailbox(&tree.c1, "ann@c1.example").await;
    // Held up before it changes usage (on the customer's lock): it starts after D+1 opened,
    // judged on D, and must write D+1's row too.
    let customer = format!("SELECT id FROM nodes WHERE id = '{}' FOR UPDATE", tree.c1);
    a_write_across_midnight(&app, &admin, &tree.c1, &customer).await;
    // Held up after it took its share of the day lock (on the owner's counter): the opening of
    // the next day waits for it, and then starts from its counters.
    let counter = format!(
        "SELECT used FROM usage_counters WHERE node_id = '{}' AND resource = 'users' FOR UPDATE",
        tree.owner
    );
    a_write_across_midnight(&app, &admin, &tree.c1, &counter).await;
}

#[tokio::test]
async fn a_customer_with_a_limit_and_nothing_used_is_counted_from_the_next_day() {
    admin_app!(app, admin, tree);
    // A change of usage opens day 0 (if the background task has not yet): the customer below
    // gets its limit after that.
    admin.register_domain(&tree.c1, "c1.example").await;
    let day0 = app.clock.today();
    let idle = admin.create_child(&tree.b, "customer", "Idle Ltd").await;
    admin.grant(&idle, "users", 5).await;
    assert_eq!(days(&history(&admin, &idle, &range(day0, day0)).await), []);
    app.clock.advance(TimeDelta::days(1));
    let day1 = days_after(day0, 1);
    let later = history(&admin, &idle, &range(day0, day1)).await;
    assert_eq!(days(&later), [day1]);
    assert_eq!(figures(&later, day1, "users"), (5, 0, 0));
    app.assert_verified();
}
