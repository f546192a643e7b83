//! Accounts and API keys: who may create them, what they can do, and how they stop working.

use serde_json::{Value, json};

use crate::helpers::{
    Caller, TestApp, admin_app, assert_problem, item_count, owner_app, spawn_app, texts,
};

/// Creates an account at `node` and returns a caller logged in as it.
pub async fn account<'a>(
    app: &'a TestApp,
    admin: &Caller<'_>,
    node: &str,
    username: &str,
    role: &str,
) -> Caller<'a> {
    let password = "correct horse battery staple";
    admin.post_expect(&format!("/v1/nodes/{node}/accounts"), &json!({"username": username, "email": format!("{username}@example.test"), "role": role, "password": password}), 201).await;
    login(app, username, password).await
}

/// The fields a validation problem names.
fn fields(problem: &Value) -> Vec<&str> {
    texts(&problem["errors"], "field")
}

/// PATCHes `body` to `path` as `caller`, asserts a 422 `validation-failed`, and returns the
/// fields it names.
async fn invalid_fields(caller: &Caller<'_>, path: &str, body: Value) -> Vec<String> {
    let problem = caller
        .patch_problem(path, &body, 422, "validation-failed")
        .await;
    fields(&problem).into_iter().map(str::to_owned).collect()
}

/// Logs in and returns a caller with the token.
pub async fn login<'a>(app: &'a TestApp, username: &str, password: &str) -> Caller<'a> {
    login_flagged(app, username, password).await.0
}

/// Logs in; the caller, and whether the login says the password must be changed first.
async fn login_flagged<'a>(app: &'a TestApp, username: &str, password: &str) -> (Caller<'a>, bool) {
    let response = app.login(username, password).await;
    assert_eq!(response.status(), 200, "{username} logs in");
    let body = response.json::<Value>().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let must_change = body["password_change_required"].as_bool().unwrap();
    (Caller { app, token }, must_change)
}

/// Creates an API key at `node` and returns a caller using it.
pub async fn api_key<'a>(
    app: &'a TestApp,
    admin: &Caller<'_>,
    node: &str,
    role: &str,
) -> (Caller<'a>, Value) {
    let created = admin
        .create_api_key(node, &format!("{role} key"), role)
        .await;
    let token = created["key"].as_str().unwrap().to_owned();
    (Caller { app, token }, created)
}

/// Asserts that `caller`'s token opens neither the API nor the check.
async fn assert_locked_out(caller: &Caller<'_>) {
    caller.get_problem("/v1/me", 401, "unauthorized").await;
    caller
        .post_problem(
            "/v1/check",
            &json!({"direction": "inbound", "domain": "example.com"}),
            401,
            "unauthorized",
        )
        .await;
}

#[tokio::test]
async fn an_account_sees_its_own_subtree_and_nothing_else() {
    admin_app!(app, admin, tree);
    let reseller = account(&app, &admin, &tree.a, "alice", "admin").await;
    let me = reseller.get_ok("/v1/me").await;
    assert_eq!(
        (me["node_id"].as_str(), me["role"].as_str()),
        (Some(tree.a.as_str()), Some("admin"))
    );
    reseller.get_ok(&format!("/v1/nodes/{}", tree.c1)).await;
    for outside in [&tree.owner, &tree.b, &tree.c2] {
        reseller
            .get_problem(&format!("/v1/nodes/{outside}"), 404, "not-found")
            .await;
    }
    reseller.get_problem("/v1/licence", 404, "not-found").await;
    // It may grant below itself, not to itself.
    reseller.grant(&tree.a1, "users", 10).await;
    reseller
        .allocate_problem(&tree.a, "users", 10, 403, "forbidden")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_generated_password_is_shown_once_and_never_again() {
    owner_app!(app, admin, owner);
    let response = admin
        .post(
            &format!("/v1/nodes/{owner}/accounts"),
            &json!({"username": "bob", "email": "bob@example.test", "role": "viewer"}),
        )
        .await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let created = admin.expect(response, 201).await;
    let password = created["one_time_password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 20);
    assert_eq!(app.login("bob", &password).await.status(), 200);
    let read = admin
        .get_ok(&format!("/v1/accounts/{}", created["id"].as_str().unwrap()))
        .await;
    assert!(!read.to_string().contains(&password));
    assert!(read.get("one_time_password").is_none() && read.get("password_hash").is_none());
    let listed = admin.get_ok(&format!("/v1/nodes/{owner}/accounts")).await;
    assert_eq!(item_count(&listed), 2);
    assert!(!listed.to_string().contains("argon2"));
    app.assert_verified();
}

#[tokio::test]
async fn bad_accounts_are_refused_field_by_field() {
    owner_app!(app, admin, owner);
    let path = format!("/v1/nodes/{owner}/accounts");
    let body = admin
        .post_problem(
            &path,
            &json!({"username": "x y", "email": "nope", "role": "admin", "password": "short"}),
            422,
            "validation-failed",
        )
        .await;
    let fields: Vec<&str> = texts(&body["errors"], "field");
    assert_eq!(fields, ["username", "email", "password"]);
    for (body, status, slug) in [
        (
            json!({"username": "admin", "email": "a@b.test", "role": "viewer"}),
            409,
            "name-taken",
        ),
        (
            json!({"username": "eve", "email": "a@b.test", "role": "root"}),
            422,
            "validation-failed",
        ),
    ] {
        admin.post_problem(&path, &body, status, slug).await;
    }
}

#[tokio::test]
async fn only_admins_create_principals_and_never_above_their_role() {
    admin_app!(app, admin, tree);
    let manager = account(&app, &admin, &tree.a, "manny", "manager").await;
    let viewer = account(&app, &admin, &tree.a, "vera", "viewer").await;
    for caller in [&manager, &viewer] {
        for (what, body) in [
            (
                "accounts",
                json!({"username": "sneaky", "email": "s@x.test", "role": "viewer", "password": "long enough password"}),
            ),
            ("api-keys", json!({"name": "k", "role": "check"})),
            ("children", json!({"kind": "customer", "name": "X"})),
        ] {
            let path = format!("/v1/nodes/{}/{what}", tree.a1);
            caller.post_problem(&path, &body, 403, "forbidden").await;
        }
    }
    viewer
        .get_ok(&format!("/v1/nodes/{}/accounts", tree.a))
        .await;
    // A manager cannot make itself an admin, nor can anyone change their own role.
    let me = manager.get_ok("/v1/me").await;
    let path = format!("/v1/accounts/{}", me["id"].as_str().unwrap());
    manager
        .patch_problem(&path, &json!({"role": "admin"}), 403, "forbidden")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn a_disabled_or_deleted_accounts_tokens_stop_working_at_once_and_for_good() {
    admin_app!(app, admin, tree);
    let carol = account(&app, &admin, &tree.b, "carol", "manager").await;
    let id = carol.get_ok("/v1/me").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let disabled = admin
        .patch_ok(&format!("/v1/accounts/{id}"), &json!({"disabled": true}))
        .await;
    assert_eq!(disabled["disabled"], true);
    assert_locked_out(&carol).await;
    app.login_refused("carol", "correct horse battery staple")
        .await;
    admin
        .patch_ok(&format!("/v1/accounts/{id}"), &json!({"disabled": false}))
        .await;
    // Enabling the account again does not bring back the tokens the disable revoked, on the
    // API or on the check.
    assert_locked_out(&carol).await;
    let carol = login(&app, "carol", "correct horse battery staple").await;
    carol.get_ok("/v1/me").await;
    admin
        .delete_expect(&format!("/v1/accounts/{id}"), 204)
        .await;
    assert_locked_out(&carol).await;
    admin
        .get_problem(&format!("/v1/accounts/{id}"), 404, "not-found")
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn an_account_at_a_deleted_node_cannot_log_in_and_is_told_nothing_more() {
    owner_app!(app, admin, owner);
    let gone = admin.create_child(&owner, "customer", "Gone GmbH").await;
    let erin = account(&app, &admin, &gone, "erin", "admin").await;
    admin.delete_expect(&format!("/v1/nodes/{gone}"), 204).await;
    erin.get_problem("/v1/me", 401, "unauthorized").await;
    let refused = app
        .login_refused("erin", "correct horse battery staple")
        .await;
    let wrong = app.login_refused("erin", "not erin's password").await;
    assert_eq!(refused, wrong, "the same answer as a wrong password");
    app.assert_verified();
}

#[tokio::test]
async fn anyone_changes_their_own_password_but_not_their_role_or_existence() {
    admin_app!(app, admin);
    let me = admin.get_ok("/v1/me").await;
    let path = format!("/v1/accounts/{}", me["id"].as_str().unwrap());
    admin.patch_ok(&path,
                    &json!({"password": "a brand new password", "current_password": crate::helpers::ADMIN_PASSWORD})).await;
    assert_eq!(
        app.login("admin", "a brand new password").await.status(),
        200
    );
    let admin = login(&app, "admin", "a brand new password").await;
    admin
        .patch_problem(&path, &json!({"disabled": true}), 403, "forbidden")
        .await;
    admin.delete_problem(&path, 403, "forbidden").await;
    admin
        .patch_problem(
            &path,
            &json!({"password": "short", "current_password": "a brand new password"}),
            422,
            "validation-failed",
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one_and_ends_every_session() {
    owner_app!(app, admin, owner);
    let frank = account(&app, &admin, &owner, "frank", "viewer").await;
    let other_session = login(&app, "frank", "correct horse battery staple").await;
    let me = frank.get_ok("/v1/me").await;
    let path = format!("/v1/accounts/{}", me["id"].as_str().unwrap());
    let before = admin.get_ok(&path).await;

    // A token alone does not change the password: whoever holds a stolen one cannot lock the
    // owner out.
    assert_eq!(
        invalid_fields(&frank, &path, json!({"password": "taken over for good"})).await,
        ["current_password"]
    );
    assert_eq!(
        invalid_fields(
            &frank,
            &path,
            json!({"password": "taken over for good", "current_password": "a guess at it"})
        )
        .await,
        ["current_password"]
    );
    // Refused writes leave no trace.
    assert_eq!(admin.get_ok(&path).await, before);
    app.login_refused("frank", "taken over for good").await;
    frank.get_ok("/v1/me").await;

    frank.patch_ok(&path,
                    &json!({"password": "frank's new password", "current_password": "correct horse battery staple"})).await;
    // Every token issued before the change is refused, on the API and on the check, the one
    // that made the change included.
    for session in [&frank, &other_session] {
        assert_locked_out(session).await;
    }
    app.login_refused("frank", "correct horse battery staple")
        .await;
    let frank = login(&app, "frank", "frank's new password").await;
    let me = frank.get_ok("/v1/me").await;
    assert_eq!(me["password_change_required"], false);
    frank
        .post_expect(
            "/v1/check",
            &json!({"direction": "inbound", "domain": "example.com"}),
            200,
        )
        .await;
    app.assert_verified();
}

#[tokio::test]
async fn an_admin_reset_ends_every_session_and_the_next_login_must_change_the_password() {
    admin_app!(app, admin, tree);
    let gina = account(&app, &admin, &tree.c1, "gina", "manager").await;
    let me = gina.get_ok("/v1/me").await;
    let path = format!("/v1/accounts/{}", me["id"].as_str().unwrap());

    // An admin resets without knowing the old password; `current_password` is only for one's own.
    let problem = admin.patch_problem(&path,
                &json!({"password": "temporary password", "current_password": "correct horse battery staple"}), 422, "validation-failed").await;
    assert_eq!(fields(&problem), ["current_password"]);
    let reset = admin
        .patch_ok(&path, &json!({"password": "temporary password"}))
        .await;
    assert_eq!(reset["password_change_required"], true);
    gina.get_problem("/v1/me", 401, "unauthorized").await;
    gina.post_problem(
        "/v1/check",
        &json!({"direction": "inbound", "domain": "example.com"}),
        401,
        "unauthorized",
    )
    .await;

    // The password the admin set opens only the door to choosing a new one.
    let (gina, must_change) = login_flagged(&app, "gina", "temporary password").await;
    assert!(must_change);
    let me = gina.get_ok("/v1/me").await;
    assert_eq!(me["password_change_required"], true);
    for refused in [
        gina.get(&format!("/v1/nodes/{}", tree.c1)).await,
        gina.post(
            &format!("/v1/nodes/{}/domains", tree.c1),
            &json!({"name": "gina.example"}),
        )
        .await,
        gina.post(
            "/v1/check",
            &json!({"direction": "inbound", "domain": "example.com"}),
        )
        .await,
        gina.patch(&path, &json!({"email": "g@x.test"})).await,
    ] {
        assert_problem(refused, 403, "password-change-required").await;
    }
    assert_eq!(
        invalid_fields(&gina, &path, json!({"password": "gina's own password"})).await,
        ["current_password"]
    );
    gina.patch_ok(
        &path,
        &json!({"password": "gina's own password", "current_password": "temporary password"}),
    )
    .await;
    gina.get_problem("/v1/me", 401, "unauthorized").await;
    app.login_refused("gina", "temporary password").await;
    let (gina, must_change) = login_flagged(&app, "gina", "gina's own password").await;
    assert!(!must_change);
    gina.get_ok(&format!("/v1/nodes/{}", tree.c1)).await;
    let changed = admin.get_ok(&path).await;
    assert_eq!(changed["password_change_required"], false);
    app.assert_verified();
}

#[tokio::test]
async fn an_api_key_authenticates_until_revoked() {
    admin_app!(app, admin, tree);
    let (key, created) = api_key(&app, &admin, &tree.c1, "viewer").await;
    let text = created["key"].as_str().unwrap();
    assert!(text.starts_with(&format!("allot_{}_", created["id"].as_str().unwrap())));
    let me = key.get_ok("/v1/me").await;
    assert_eq!(
        (me["kind"].as_str(), me["role"].as_str()),
        (Some("api_key"), Some("viewer"))
    );
    key.get_ok(&format!("/v1/nodes/{}/usage", tree.c1)).await;
    key.post_problem(
        &format!("/v1/nodes/{}/api-keys", tree.c1),
        &json!({"name": "k", "role": "viewer"}),
        403,
        "forbidden",
    )
    .await;

    let listed = admin
        .get_ok(&format!("/v1/nodes/{}/api-keys", tree.c1))
        .await;
    let listed = &listed["items"][0];
    assert!(listed.get("key").is_none() && !listed.to_string().contains(&text[text.len() - 20..]));
    assert!(listed["last_used_at"].is_string(), "{listed}");

    let mut forged = text.to_owned();
    forged.pop();
    forged.push('x');
    assert_problem(
        Caller {
            app: &app,
            token: forged,
        }
        .get("/v1/me")
        .await,
        401,
        "unauthorized",
    )
    .await;

    admin
        .delete_expect(
            &format!("/v1/api-keys/{}", created["id"].as_str().unwrap()),
            204,
        )
        .await;
    key.get_problem("/v1/me", 401, "unauthorized").await;
    let listed = admin
        .get_ok(&format!("/v1/nodes/{}/api-keys", tree.c1))
        .await;
    assert!(listed["items"][0]["revoked_at"].is_string());
    app.assert_verified();
}

#[tokio::test]
async fn a_check_key_may_only_ask_the_check() {
    admin_app!(app, admin, tree);
    let (key, _) = api_key(&app, &admin, &tree.a, "check").await;
    key.get_ok("/v1/me").await;
    key.get_problem(&format!("/v1/nodes/{}", tree.a), 403, "forbidden")
        .await;
    key.get_problem(&format!("/v1/nodes/{}", tree.b), 404, "not-found")
        .await;
}

#[tokio::test]
async fn api_keys_expire() {
    owner_app!(app, admin, owner);
    let path = format!("/v1/nodes/{owner}/api-keys");
    let past = (chrono::Utc::now() - chrono::TimeDelta::minutes(1)).to_rfc3339();
    admin
        .post_problem(
            &path,
            &json!({"name": "old", "role": "viewer", "expires_at": past}),
            422,
            "validation-failed",
        )
        .await;
    let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(2)).to_rfc3339();
    let created = admin
        .post_expect(
            &path,
            &json!({"name": "brief", "role": "viewer", "expires_at": soon}),
            201,
        )
        .await;
    let key = Caller {
        app: &app,
        token: created["key"].as_str().unwrap().to_owned(),
    };
    key.get_ok("/v1/me").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    key.get_problem("/v1/me", 401, "unauthorized").await;
}

#[tokio::test]
async fn five_failed_logins_lock_out_further_attempts_whether_or_not_the_username_exists() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.login_refused("ghost", "wrong password!!").await;
    }
    let ghost = app.login("ghost", "wrong password!!").await;
    let retry_after: u64 = ghost.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after));
    let ghost = assert_problem(ghost, 429, "too-many-requests").await;
    // The client address has failed five times too: even the right password waits now.
    let admin = assert_problem(
        app.login("admin", crate::helpers::ADMIN_PASSWORD).await,
        429,
        "too-many-requests",
    )
    .await;
    assert_eq!(ghost["title"], admin["title"]);
}

#[tokio::test]
async fn principal_changes_are_audited_without_secrets() {
    use diesel::prelude::*;
    owner_app!(app, admin, owner);
    let created = admin.post_expect(&format!("/v1/nodes/{owner}/accounts"), &json!({"username": "dave", "email": "d@x.test", "role": "viewer", "password": "dave's long password"}), 201).await;
    admin
        .patch_ok(
            &format!("/v1/accounts/{}", created["id"].as_str().unwrap()),
            &json!({"password": "dave's newer password"}),
        )
        .await;
    // Dave, made to change the password the admin set, does.
    let dave = login(&app, "dave", "dave's newer password").await;
    dave.patch_ok(
        &format!("/v1/accounts/{}", created["id"].as_str().unwrap()),
        &json!({"password": "dave's newest password", "current_password": "dave's newer password"}),
    )
    .await;
    let (_, key) = api_key(&app, &admin, &owner, "check").await;
    let pool = allot::store::connect(&app.database_url, 1).unwrap();
    let mut conn = pool.get().unwrap();
    use allot::store::schema::audit_events::dsl::*;
    let events: Vec<(String, Option<String>, Option<String>)> = audit_events
        .filter(action.like("account.%").or(action.like("api_key.%")))
        .select((action, before, after))
        .load(&mut conn)
        .unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert!(
        actions.contains(&"account.create")
            && actions.contains(&"account.update")
            && actions.contains(&"api_key.create"),
        "{actions:?}"
    );
    let trail = format!("{events:?}");
    // `allot_<id>_<secret>`: the secret is base64url, which may itself hold `_`.
    let (_, secret) = key["key"]
        .as_str()
        .unwrap()
        .strip_prefix("allot_")
        .unwrap()
        .split_once('_')
        .unwrap();
    assert_eq!(secret.len(), 43, "{secret}");
    for forbidden in [
        "dave's long password",
        "dave's newer password",
        "dave's newest password",
        "argon2",
        secret,
    ] {
        assert!(
            !trail.contains(forbidden),
            "the audit trail holds {forbidden}"
        );
    }
}
