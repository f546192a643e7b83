//! Statistics per customer (`statistics.csv` and its JSON pages) and the children list with its
//! usage: the figures are those `/usage` gives for each node, the CSV reads back cell for cell,
//! and nobody sees a customer outside their subtree.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, TimeDelta};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, Tree, admin_app, assert_problem};
use crate::principals::account;

/// Descriptions a naive CSV writer or a spreadsheet gets wrong: separators, quotes, line breaks,
/// and cells a spreadsheet would run as formulas.
const AWKWARD: [&str; 3] = [
    "=HYPERLINK(\"http://evil.example\", \"click\")",
    "@SUM(1+1), with \"quotes\"\nand a second line",
    "plain, with a comma",
];

/// The seeded tree with two more customers with awkward texts (one under A, one under A1), and
/// mailboxes at C1 (seen 5 days ago, at the first moment of the 30th day back, at the last moment
/// of the 31st day back and 40 days ago; and its postmaster@ seen today, which is no user) and at
/// the dash customer (seen yesterday). Returns the two new customers' ids.
async fn awkward_customers(app: &TestApp, admin: &Caller<'_>, tree: &Tree) -> (String, String) {
    let dash = admin
        .post_expect(
            &format!("/v1/nodes/{}/children", tree.a1),
            &json!({"kind": "customer", "name": "-Dash 'n' Co", "description": AWKWARD[0],
                    "contact_email": "=billing@dash.example"}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let comma = admin
        .post_expect(
            &format!("/v1/nodes/{}/children", tree.a),
            &json!({"kind": "customer", "name": "Comma & Quote Ltd", "description": AWKWARD[1],
                    "contact_phone": "+49 30 1234-567", "contact_email": "ops@comma.example"}),
            201,
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin
        .patch_ok(
            &format!("/v1/nodes/{}", tree.c1),
            &json!({"description": AWKWARD[2]}),
        )
        .await;
    for (node, units) in [(&dash, 7), (&comma, 3)] {
        for resource in ["users", "module:base", "domains"] {
            admin.grant(node, resource, units).await;
        }
    }
    admin.register_domain(&tree.c1, "c1.example").await;
    admin.register_domain(&dash, "dash.example").await;
    let addresses = [
        "ann@c1.example",
        "bob@c1.example",
        "edge-in@c1.example",
        "edge-out@c1.example",
        "cid@dash.example",
    ];
    for address in addresses {
        let owner = if address.ends_with("c1.example") {
            &tree.c1
        } else {
            &dash
        };
        admin.create_mailbox(owner, address).await;
    }
    let now = chrono::Utc::now().naive_utc();
    let midnight = now.date().and_time(chrono::NaiveTime::MIN);
    for (address, at) in [
        ("ann@c1.example", now - chrono::Duration::days(5)),
        ("bob@c1.example", now - chrono::Duration::days(40)),
        ("edge-in@c1.example", midnight - chrono::Duration::days(29)),
        (
            "edge-out@c1.example",
            midnight - chrono::Duration::days(29) - chrono::Duration::seconds(1),
        ),
        ("postmaster@c1.example", now),
        ("cid@dash.example", now - chrono::Duration::days(1)),
    ] {
        app.execute_sql(&format!(
            "UPDATE mailboxes SET last_seen_at = '{}' WHERE address = '{address}'",
            at.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    (dash, comma)
}

/// The CSV of `node` as `caller` sees it: the checked headers, then each row by its header, keyed
/// by tenant id.
async fn statistics_csv(
    caller: &Caller<'_>,
    node: &str,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let today = chrono::Utc::now().date_naive();
    statistics_csv_of(caller, &format!("/v1/nodes/{node}/statistics.csv"), today).await
}

/// The CSV at `path`, whose file name must carry `day`, as [`statistics_csv`] reads it.
async fn statistics_csv_of(
    caller: &Caller<'_>,
    path: &str,
    day: NaiveDate,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let response = caller.get(path).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    let disposition = headers["content-disposition"].to_str().unwrap().to_owned();
    let body = response.bytes().await.unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"statistics-")
            && disposition.ends_with(&format!("-{day}.csv\"")),
        "{disposition}"
    );
    let mut reader = csv::Reader::from_reader(body.as_ref());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = BTreeMap::new();
    for record in reader.records() {
        let record = record.unwrap();
        assert_eq!(record.len(), header.len(), "every row has every column");
        let row: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        assert!(
            rows.insert(row["tenant_id"].clone(), row).is_none(),
            "each customer once"
        );
    }
    rows
}

/// What a spreadsheet cell shows for `text`: with a leading `'` when it would start a formula.
fn guarded(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// Every page of `path` (a list), followed by its cursors.
async fn all_pages(caller: &Caller<'_>, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let page = match &cursor {
            None => caller.get_ok(&format!("{path}{separator}limit=2")).await,
            Some(c) => {
                caller
                    .get_ok(&format!("{path}{separator}limit=2&cursor={c}"))
                    .await
            }
        };
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test]
async fn the_csv_reads_back_cell_for_cell_with_the_figures_usage_gives() {
    admin_app!(app, admin, tree);
    let (dash, comma) = awkward_customers(&app, &admin, &tree).await;
    let rows = statistics_csv(&admin, &tree.owner).await;
    let customers = [&tree.c1, &tree.c2, &dash, &comma];
    assert_eq!(
        rows.keys().collect::<BTreeSet<_>>(),
        customers.iter().copied().collect::<BTreeSet<_>>(),
        "one row per customer of the subtree, no reseller"
    );
    for customer in customers {
        let row = &rows[customer];
        let node = admin.get_ok(&format!("/v1/nodes/{customer}")).await;
        let parent_id = node["parent_id"].as_str().unwrap();
        let parent = admin.get_ok(&format!("/v1/nodes/{parent_id}")).await;
        let text = |field: &str| node[field].as_str().map(guarded).unwrap_or_default();
        assert_eq!(row["name"], text("name"));
        assert_eq!(row["description"], text("description"));
        assert_eq!(row["contact_email"], text("contact_email"));
        assert_eq!(row["contact_phone"], text("contact_phone"));
        assert_eq!(row["status"], "active");
        assert_eq!(row["parent_id"], parent_id);
        assert_eq!(row["parent_name"], parent["name"].as_str().unwrap());
        let usage = admin.get_ok(&format!("/v1/nodes/{customer}/usage")).await;
        for figure in usage["resources"].as_array().unwrap() {
            let resource = figure["resource"].as_str().unwrap();
            for field in ["used", "limit"] {
                assert_eq!(
                    row[&format!("{resource}_{field}")],
                    figure[field].to_string(),
                    "{resource} {field} of {}",
                    row["name"]
                );
            }
        }
    }
    // The texts survive separators, quotes and line breaks, and formulas are defused.
    assert_eq!(rows[&dash]["name"], "'-Dash 'n' Co");
    assert_eq!(rows[&dash]["description"], format!("'{}", AWKWARD[0]));
    assert_eq!(rows[&dash]["contact_email"], "'=billing@dash.example");
    assert_eq!(rows[&comma]["description"], format!("'{}", AWKWARD[1]));
    assert_eq!(rows[&comma]["contact_phone"], "'+49 30 1234-567");
    assert_eq!(rows[&tree.c1]["description"], AWKWARD[2]);
    // Figures are numbers: C1 holds four mailboxes of 50, one domain of 5.
    assert_eq!(rows[&tree.c1]["users_used"], "4");
    assert_eq!(rows[&tree.c1]["users_limit"], "50");
    assert_eq!(rows[&tree.c1]["domains_used"], "1");
    assert_eq!(rows[&tree.c1]["module:base_used"], "4");
    // Active users: seen within the 30 days up to today (from the first moment of the 30th day
    // back), role addresses not counted.
    assert_eq!(rows[&tree.c1]["active_users"], "2");
    assert_eq!(rows[&dash]["active_users"], "1");
    assert_eq!(rows[&comma]["active_users"], "0");
    app.assert_verified();
}

#[tokio::test]
async fn the_json_pages_hold_the_same_customers_and_figures() {
    admin_app!(app, admin, tree);
    let (dash, comma) = awkward_customers(&app, &admin, &tree).await;
    let items = all_pages(&admin, &format!("/v1/nodes/{}/statistics", tree.owner)).await;
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in id order");
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            tree.c1.as_str(),
            tree.c2.as_str(),
            dash.as_str(),
            comma.as_str()
        ])
    );
    for item in &items {
        let id = item["id"].as_str().unwrap();
        let node = admin.get_ok(&format!("/v1/nodes/{id}")).await;
        for field in [
            "name",
            "description",
            "contact_email",
            "contact_phone",
            "status",
        ] {
            assert_eq!(item[field], node[field], "{field}: JSON is not guarded");
        }
        assert_eq!(item["parent"]["id"], node["parent_id"]);
        let usage = admin.get_ok(&format!("/v1/nodes/{id}/usage")).await;
        let figures: Vec<Value> = usage["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!({"resource": r["resource"], "used": r["used"], "limit": r["limit"]}))
            .collect();
        assert_eq!(item["resources"], Value::from(figures), "figures of {id}");
    }
    let c1 = items.iter().find(|i| i["id"] == tree.c1.as_str()).unwrap();
    assert_eq!(c1["active_users"], 2);
    assert_eq!(c1["parent"]["name"], "Reseller A1");
    // A customer's own statistics are its one row.
    let own = admin
        .get_ok(&format!("/v1/nodes/{}/statistics", tree.c1))
        .await;
    assert_eq!(own["items"].as_array().unwrap().len(), 1);
    assert_eq!(own["items"][0], *c1);
}

#[tokio::test]
async fn a_reseller_sees_the_customers_of_its_own_subtree_only() {
    admin_app!(app, admin, tree);
    let (dash, comma) = awkward_customers(&app, &admin, &tree).await;
    let reseller = account(&app, &admin, &tree.a, "viewer-of-a", "viewer").await;
    let rows = statistics_csv(&reseller, &tree.a).await;
    assert_eq!(
        rows.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([tree.c1.as_str(), dash.as_str(), comma.as_str()]),
        "C2 lies under B"
    );
    let items = all_pages(&reseller, &format!("/v1/nodes/{}/statistics", tree.a)).await;
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["id"] != tree.c2.as_str()));
    for node in [&tree.owner, &tree.b, &tree.c2] {
        for path in [
            format!("/v1/nodes/{node}/statistics.csv"),
            format!("/v1/nodes/{node}/statistics"),
        ] {
            let problem = reseller.get_problem(&path, 404, "not-found").await;
            assert!(!problem.to_string().contains(tree.c2.as_str()));
        }
    }
}

#[tokio::test]
async fn children_with_their_usage_are_what_usage_says_of_each() {
    admin_app!(app, admin, tree);
    awkward_customers(&app, &admin, &tree).await;
    for parent in [&tree.owner, &tree.a, &tree.a1] {
        let plain = all_pages(&admin, &format!("/v1/nodes/{parent}/children")).await;
        let with_usage = all_pages(
            &admin,
            &format!("/v1/nodes/{parent}/children?include=usage"),
        )
        .await;
        assert_eq!(plain.len(), with_usage.len());
        assert!(!plain.is_empty());
        for (plain, mut child) in plain.into_iter().zip(with_usage) {
            assert!(plain.get("usage").is_none(), "no usage unless asked for");
            let id = child["id"].as_str().unwrap().to_owned();
            let usage = child.as_object_mut().unwrap().remove("usage").unwrap();
            assert_eq!(child, plain, "the same child otherwise");
            let alone = admin.get_ok(&format!("/v1/nodes/{id}/usage")).await;
            assert_eq!(usage, alone, "the usage of {id}");
        }
    }
}

#[tokio::test]
async fn an_unknown_include_is_refused_and_changes_nothing() {
    admin_app!(app, admin, tree);
    let path = format!("/v1/nodes/{}/children", tree.a);
    let before = admin.get_ok(&path).await;
    for include in ["usages", "usage,audit", "", "USAGE"] {
        let problem = assert_problem(
            admin.get(&format!("{path}?include={include}")).await,
            400,
            "invalid-query",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "include", "{problem}");
    }
    assert_eq!(admin.get_ok(&path).await, before);
    app.assert_verified();
}

#[tokio::test]
async fn the_csv_of_more_customers_than_one_batch_holds_lists_each_once() {
    admin_app!(app, admin, tree);
    // 520 customers under B: more than one batch of 500, so the stream reads a second one.
    let names: Vec<String> = (0..520).map(|n| format!("Bulk {n:03}")).collect();
    for chunk in names.chunks(8) {
        let creations = chunk
            .iter()
            .map(|name| admin.create_child(&tree.b, "customer", name));
        futures_util::future::join_all(creations).await;
    }
    let rows = statistics_csv(&admin, &tree.b).await;
    assert_eq!(rows.len(), 521, "the 520 and C2, each once");
    let listed: BTreeSet<&str> = rows.values().map(|r| r["name"].as_str()).collect();
    assert!(names.iter().all(|n| listed.contains(n.as_str())));
    assert_eq!(rows[&tree.c2]["users_limit"], "40");
}

/// Sets when an outbound check last saw `address`: at noon of `day`.
fn seen_on(app: &TestApp, address: &str, day: NaiveDate) {
    app.execute_sql(&format!(
        "UPDATE mailboxes SET last_seen_at = '{day} 12:00:00' WHERE address = '{address}'"
    ));
}

/// `row`'s (used, limit) of `resource`.
fn figure(row: &Value, resource: &str) -> (i64, i64) {
    let figure = row["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["resource"] == resource)
        .unwrap_or_else(|| panic!("no {resource} in {row}"));
    (
        figure["used"].as_i64().unwrap(),
        figure["limit"].as_i64().unwrap(),
    )
}

/// The row of `id` among `rows`.
fn row_of<'a>(rows: &'a [Value], id: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {rows:?}"))
}

#[tokio::test]
async fn statistics_of_a_past_day_are_that_days_history_and_without_a_day_are_now() {
    admin_app!(app, admin, tree);
    let day0 = app.clock.today();
    admin.register_domain(&tree.c1, "c1.example").await;
    for address in ["ann@c1.example", "bob@c1.example"] {
        admin.create_mailbox(&tree.c1, address).await;
    }
    seen_on(&app, "ann@c1.example", day0);
    app.clock.advance(TimeDelta::days(1));
    let day1 = day0 + TimeDelta::days(1);
    // Day 1: C1 grows and gets more users, bob is seen, and a customer is born.
    admin.create_mailbox(&tree.c1, "cid@c1.example").await;
    admin.grant(&tree.c1, "users", 10).await;
    seen_on(&app, "bob@c1.example", day1);
    let late = admin.create_child(&tree.a, "customer", "Late Ltd").await;
    admin.grant(&late, "users", 5).await;
    admin.grant(&late, "domains", 1).await;
    admin.register_domain(&late, "late.example").await;

    let base = format!("/v1/nodes/{}/statistics", tree.owner);
    let past = all_pages(&admin, &format!("{base}?at={day0}")).await;
    let now = all_pages(&admin, &base).await;
    assert!(
        past.iter().all(|r| r["id"] != late.as_str()),
        "born on day 1"
    );
    let (c1_then, c1_now) = (row_of(&past, &tree.c1), row_of(&now, &tree.c1));
    assert_eq!(figure(c1_then, "users"), (2, 50));
    assert_eq!(figure(c1_now, "users"), (3, 60));
    assert_eq!(figure(c1_then, "domains"), (1, 5));
    assert_eq!(
        (
            c1_then["active_users"].clone(),
            c1_now["active_users"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(figure(row_of(&now, &late), "domains"), (1, 1));
    // Each past row is the customer's history of that day; a resource it had no row of is 0 of 0.
    for row in &past {
        let id = row["id"].as_str().unwrap();
        let history = admin
            .get_ok(&format!(
                "/v1/nodes/{id}/usage/history?from={day0}&to={day0}"
            ))
            .await;
        let day = &history["days"][0];
        assert_eq!(
            day["day"],
            day0.to_string(),
            "{id} was counted on {day0}: {history}"
        );
        assert_eq!(row["active_users"], day["active_users"], "{id}");
        for figure in row["resources"].as_array().unwrap() {
            let counted = day["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["resource"] == figure["resource"]);
            let expected = counted.map_or((json!(0), json!(0)), |r| {
                (r["used"].clone(), r["limit"].clone())
            });
            assert_eq!(
                (figure["used"].clone(), figure["limit"].clone()),
                expected,
                "{id}: {figure}"
            );
        }
    }
    // The CSV of the day holds the same rows, its file named after the day.
    let csv = statistics_csv_of(&admin, &format!("{base}.csv?at={day0}"), day0).await;
    assert_eq!(csv.len(), past.len());
    assert_eq!(csv[&tree.c1]["users_used"], "2");
    assert_eq!(csv[&tree.c1]["users_limit"], "50");
    assert_eq!(csv[&tree.c1]["active_users"], "1");
    // Today named is no day named; a day before the history is no rows; a day to come is refused.
    assert_eq!(all_pages(&admin, &format!("{base}?at={day1}")).await, now);
    let before = day0 - TimeDelta::days(10);
    assert_eq!(
        all_pages(&admin, &format!("{base}?at={before}")).await,
        Vec::<Value>::new()
    );
    assert!(
        statistics_csv_of(&admin, &format!("{base}.csv?at={before}"), before)
            .await
            .is_empty()
    );
    let day2 = day1 + TimeDelta::days(1);
    for path in [format!("{base}?at={day2}"), format!("{base}.csv?at={day2}")] {
        let problem = admin.get_problem(&path, 422, "validation-failed").await;
        assert_eq!(problem["errors"][0]["field"], "at", "{problem}");
    }
    admin
        .get_problem(&format!("{base}.csv?at=yesterday"), 400, "invalid-query")
        .await;
    app.assert_verified();
}
