//! Request budgets: every authenticated request counts against its principal's, and one over it is
//! refused 429 `rate-limited` with `Retry-After` and the `RateLimit` fields, doing nothing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, assert_problem, spawn_app_with};

/// A check any principal may ask (an unknown domain: answered `reject`, 200).
static A_CHECK: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({"direction": "inbound", "domain": "example.com"}));

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// What the budget's requests answered until the first refusal: the successes (each with its
/// `RateLimit` field, if any), and the refusal.
struct Spent {
    successes: Vec<Option<String>>,
    refusal: reqwest::Response,
    took: Duration,
}

/// Sends `request` until it is refused (at most `max` times).
async fn spend<F, Fut>(max: usize, mut request: F) -> Spent
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let start = Instant::now();
    let mut successes = Vec::new();
    for _ in 0..max {
        let response = request().await;
        if response.status() == 429 {
            return Spent {
                successes,
                refusal: response,
                took: start.elapsed(),
            };
        }
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        successes.push(header(&response, "ratelimit"));
    }
    panic!("{max} requests and none refused");
}

impl Spent {
    /// Asserts that between `budget` and what refilled meanwhile (one request per `60 / budget`
    /// seconds) got through.
    fn assert_budget(&self, budget: usize) {
        let refilled = (self.took.as_secs_f64() * budget as f64 / 60.0).ceil() as usize;
        let through = self.successes.len();
        assert!(
            (budget..=budget + refilled).contains(&through),
            "{through} requests got through a budget of {budget} (+{refilled} refilled)"
        );
    }

    /// Asserts the refusal is `rate-limited` under `policy` with `quota` a minute, and returns
    /// its `Retry-After`.
    async fn assert_refused(self, policy: &str, quota: u32) -> u64 {
        let retry_after: u64 = header(&self.refusal, "retry-after")
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!(retry_after >= 1 && retry_after <= 60 / u64::from(quota) + 1);
        assert_eq!(
            header(&self.refusal, "ratelimit-policy").as_deref(),
            Some(format!("\"{policy}\";q={quota};w=60").as_str())
        );
        assert_eq!(
            header(&self.refusal, "ratelimit").as_deref(),
            Some(format!("\"{policy}\";r=0;t={retry_after}").as_str()),
            "the effective window is the wait"
        );
        let problem = assert_problem(self.refusal, 429, "rate-limited").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("{quota} requests a minute")),
            "{problem}"
        );
        retry_after
    }
}

/// An app whose principals may make `default` requests a minute, and `check` principals `check`.
async fn app_with_budgets(default: u32, check: u32) -> TestApp {
    spawn_app_with(|config| {
        config.rate_limit = default.try_into().unwrap();
        config.check_rate_limit = check.try_into().unwrap();
    })
    .await
}

/// A key of `role` at `node`, made by `admin` with `rate_limit`, as a caller.
async fn key_with<'a>(
    app: &'a TestApp,
    admin: &Caller<'_>,
    node: &str,
    role: &str,
    rate_limit: Value,
) -> (Caller<'a>, Value) {
    let body = json!({"name": format!("{role} key"), "role": role, "rate_limit": rate_limit});
    let created = admin
        .post_expect(&format!("/v1/nodes/{node}/api-keys"), &body, 201)
        .await;
    let token = created["key"].as_str().unwrap().to_owned();
    (Caller { app, token }, created)
}

#[tokio::test]
async fn a_principal_over_its_budget_is_refused_until_it_refills_and_others_are_not() {
    let app = app_with_budgets(60, 100_000).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let (other, _) = key_with(&app, &admin, &owner, "admin", Value::Null).await;
    let spent = spend(200, || admin.get("/v1/me")).await;
    // Two of the admin's 60 went on asking its node and creating the key.
    spent.assert_budget(58);
    // Every answer says what is left, counting down.
    let left: Vec<u32> = spent
        .successes
        .iter()
        .map(|field| {
            let field = field.as_deref().expect("every answer carries RateLimit");
            let r = field
                .split(";r=")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            r.parse().unwrap()
        })
        .collect();
    assert!(left.windows(2).all(|w| w[1] <= w[0]), "{left:?}");
    assert!(*left.last().unwrap() <= 1, "{left:?}");
    let retry_after = spent.assert_refused("default", 60).await;

    // A refused request does nothing: this child is not created.
    let refused = admin
        .post(
            &format!("/v1/nodes/{owner}/children"),
            &json!({"kind": "customer", "name": "Never"}),
        )
        .await;
    assert_problem(refused, 429, "rate-limited").await;
    // Another principal of the same node is counted apart, and sees nothing was created.
    let children = other.get_ok(&format!("/v1/nodes/{owner}/children")).await;
    assert_eq!(children["items"], json!([]));
    let me = other.get("/v1/me").await;
    assert_eq!(me.status(), 200);
    assert_eq!(
        header(&me, "ratelimit-policy").as_deref(),
        Some("\"default\";q=60;w=60")
    );

    // The budget refills: after the wait named, the next request goes through.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(admin.get("/v1/me").await.status(), 200);
}

#[tokio::test]
async fn a_keys_own_budget_is_given_at_creation_and_changed_or_removed_later() {
    let app = app_with_budgets(60, 100_000).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let (key, created) = key_with(&app, &admin, &owner, "viewer", json!(5)).await;
    assert_eq!(created["rate_limit"], 5);
    let id = created["id"].as_str().unwrap().to_owned();
    let spent = spend(50, || key.get("/v1/me")).await;
    spent.assert_budget(5);
    spent.assert_refused("key", 5).await;

    // Bad budgets are refused naming the field, and change nothing.
    for bad in [
        json!(0),
        json!(100_000_001),
        json!(-1),
        json!("many"),
        json!(2.5),
    ] {
        let body = json!({"name": "bad", "role": "viewer", "rate_limit": bad});
        admin
            .post_invalid(&format!("/v1/nodes/{owner}/api-keys"), &body, "rate_limit")
            .await;
        let problem = admin
            .patch_expect(
                &format!("/v1/api-keys/{id}"),
                &json!({"rate_limit": bad}),
                422,
            )
            .await;
        assert!(problem["errors"][0]["field"] == "rate_limit", "{problem}");
    }
    let keys = admin.get_ok(&format!("/v1/nodes/{owner}/api-keys")).await;
    assert_eq!(keys["items"].as_array().unwrap().len(), 1, "{keys}");
    let stored = admin.get_ok(&format!("/v1/api-keys/{id}")).await;
    assert_eq!(
        (stored["rate_limit"].clone(), stored["version"].clone()),
        (json!(5), json!(1))
    );

    // Back to the default (`null`): the key's requests count against it from the next one on.
    let changed = admin
        .patch_ok(&format!("/v1/api-keys/{id}"), &json!({"rate_limit": null}))
        .await;
    assert_eq!(
        (changed["rate_limit"].clone(), changed["version"].clone()),
        (Value::Null, json!(2))
    );
    let me = key.get("/v1/me").await;
    assert_eq!(me.status(), 200);
    assert_eq!(
        header(&me, "ratelimit-policy").as_deref(),
        Some("\"default\";q=60;w=60")
    );
    // And a lower one again, with the version it is based on.
    let stale = admin
        .patch_if_match(
            &format!("/v1/api-keys/{id}"),
            "\"1\"",
            &json!({"rate_limit": 3}),
        )
        .await;
    assert_problem(stale, 412, "precondition-failed").await;
    let response = admin
        .patch_if_match(
            &format!("/v1/api-keys/{id}"),
            "\"2\"",
            &json!({"rate_limit": 3}),
        )
        .await;
    assert_eq!(response.status(), 200);
    spend(50, || key.get("/v1/me"))
        .await
        .assert_refused("key", 3)
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn only_the_owners_admins_give_a_key_more_than_its_roles_default() {
    let app = app_with_budgets(600, 1_000).await;
    let admin = app.as_admin().await;
    let tree = crate::helpers::seed_tree(&admin).await;
    let body = json!({"username": "reseller-admin", "email": "r@x.test", "role": "admin", "password": "reseller password 1"});
    admin
        .post_expect(&format!("/v1/nodes/{}/accounts", tree.a), &body, 201)
        .await;
    let login = app.login("reseller-admin", "reseller password 1").await;
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reseller = Caller { app: &app, token };

    // The role's default and below: any admin of the key. Above it: the owner's admins only.
    let path = format!("/v1/nodes/{}/api-keys", tree.a1);
    for (role, default) in [("viewer", 600), ("check", 1_000)] {
        let over = json!({"name": "more", "role": role, "rate_limit": default + 1});
        let refused = reseller.post(&path, &over).await;
        assert_problem(refused, 403, "forbidden").await;
        let at = json!({"name": "as much", "role": role, "rate_limit": default});
        reseller.post_expect(&path, &at, 201).await;
    }
    let (_, key) = key_with(&app, &reseller, &tree.a1, "viewer", json!(10)).await;
    let key_path = format!("/v1/api-keys/{}", key["id"].as_str().unwrap());
    let refused = reseller
        .patch(&key_path, &json!({"rate_limit": 6_000}))
        .await;
    assert_problem(refused, 403, "forbidden").await;
    let changed = admin
        .patch_ok(&key_path, &json!({"rate_limit": 6_000}))
        .await;
    assert_eq!(changed["rate_limit"], 6_000);
    // The reseller may still rename it, and lower its budget to the default or below.
    reseller
        .patch_ok(&key_path, &json!({"name": "billing sync"}))
        .await;
    let lowered = reseller
        .patch_ok(&key_path, &json!({"rate_limit": 30}))
        .await;
    assert_eq!(
        (lowered["name"].clone(), lowered["rate_limit"].clone()),
        (json!("billing sync"), json!(30))
    );

    // Every change is in the audit trail, with the budget before and after.
    let trail = admin
        .get_ok(&format!(
            "/v1/nodes/{}/audit?action=api_key.update",
            tree.a1
        ))
        .await;
    let budgets: Vec<(Value, Value)> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["before"]["rate_limit"].clone(),
                e["after"]["rate_limit"].clone(),
            )
        })
        .collect();
    assert_eq!(
        budgets,
        [
            (json!(6_000), json!(30)),
            (json!(6_000), json!(6_000)),
            (json!(10), json!(6_000)),
        ]
    );
    // A revoked key changes no more.
    admin.delete_expect(&key_path, 204).await;
    admin
        .patch_problem(&key_path, &json!({"name": "again"}), 409, "conflict")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn check_principals_have_their_own_much_higher_default() {
    let app = app_with_budgets(5, 40).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let (worker, _) = key_with(&app, &admin, &owner, "check", Value::Null).await;
    let (other_worker, _) = key_with(&app, &admin, &owner, "check", Value::Null).await;
    let (viewer, _) = key_with(&app, &admin, &owner, "viewer", Value::Null).await;

    let spent = spend(200, || worker.post("/v1/check", &A_CHECK)).await;
    spent.assert_budget(40);
    // The check's answers carry the fields only once less than a tenth of the budget is left.
    let first_with = spent.successes.iter().position(Option::is_some);
    let carried = spent.successes.iter().filter(|f| f.is_some()).count();
    assert!(
        first_with.is_some_and(|i| i >= 36) && carried <= 4 + 1,
        "{:?}",
        spent.successes
    );
    assert!(
        spent
            .successes
            .iter()
            .flatten()
            .all(|f| f.starts_with("\"check\";r="))
    );
    spent.assert_refused("check", 40).await;

    // Another worker's budget is its own.
    assert_eq!(other_worker.post("/v1/check", &A_CHECK).await.status(), 200);
    // Any other principal asking the check counts against the default budget.
    let spent = spend(50, || viewer.post("/v1/check", &A_CHECK)).await;
    spent.assert_budget(5);
    spent.assert_refused("default", 5).await;
}

#[tokio::test]
async fn a_check_keys_changed_budget_reaches_the_check_at_once() {
    let app = app_with_budgets(60, 1_000).await;
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let (worker, created) = key_with(&app, &admin, &owner, "check", Value::Null).await;
    assert_eq!(worker.post("/v1/check", &A_CHECK).await.status(), 200);
    // The check resolves keys from its in-memory index: a changed budget must reach it.
    let path = format!("/v1/api-keys/{}", created["id"].as_str().unwrap());
    admin.patch_ok(&path, &json!({"rate_limit": 3})).await;
    let spent = spend(50, || worker.post("/v1/check", &A_CHECK)).await;
    spent.assert_budget(3);
    spent.assert_refused("key", 3).await;
}
