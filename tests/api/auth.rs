//! Logging in, and every way a token can be refused.

use allot::auth::jwt::Keys;
use base64::Engine;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, ADMIN_USERNAME, assert_problem, spawn_another, spawn_app, spawn_app_on,
    spawn_app_with,
};

#[tokio::test]
async fn the_first_admin_logs_in_and_sees_itself_at_the_owner_node() {
    let app = spawn_app().await;
    let response = app.login(ADMIN_USERNAME, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();

    let response = app.get_with_token("/v1/me", token).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["kind"], "account");
    assert_eq!(me["name"], ADMIN_USERNAME);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["node_kind"], "owner");
    assert_eq!(me["node_name"], "Test Owner");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_username_get_the_same_answer() {
    let app = spawn_app().await;
    let wrong = app
        .login_refused(ADMIN_USERNAME, "not the password at all")
        .await;
    let unknown = app
        .login_refused("nobody-here", "not the password at all")
        .await;
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn me_without_credentials_is_401_with_www_authenticate() {
    let app = spawn_app().await;
    let response = app.get("/v1/me").await;
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_problem(response, 401, "unauthorized").await;

    let response = app
        .get_with_header("/v1/me", "authorization", "Basic YWRtaW46YWRtaW4=")
        .await;
    assert_problem(response, 401, "unauthorized").await;
}

const SECRET: [u8; 32] = [42; 32];

fn claims(now: i64) -> Value {
    json!({
        "iss": "allot", "aud": "allot",
        "sub": uuid::Uuid::nil(), "node": uuid::Uuid::nil(), "role": "admin",
        "iat": now, "nbf": now, "exp": now + 600,
        "credential_version": 1, "password_change_only": false,
    })
}

fn sign(claims: &Value, secret: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let app =
        spawn_app_with(|config| config.jwt_secret = Some(crate::helpers::secret_text(&SECRET)))
            .await;
    let good = app.admin_token().await;
    let me = app.me(&good).await;
    let kid = Keys::from_secret(&SECRET).kid().to_owned();
    let now = chrono::Utc::now().timestamp();
    let mut base = claims(now);
    base["sub"] = me["id"].clone();
    base["node"] = me["node_id"].clone();
    // The harness signs like allot does: a token it makes with the right key is accepted.
    assert_eq!(
        app.get_with_token("/v1/me", &sign(&base, &SECRET, &kid))
            .await
            .status(),
        200
    );

    let with = |key: &str, value: Value| {
        let mut claims = base.clone();
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = format!(
        "{}.{}.",
        engine.encode(format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#)),
        engine.encode(base.to_string())
    );
    // Change a character inside the signature (the last one carries padding bits that a lenient
    // decoder may ignore).
    let signed = sign(&base, &SECRET, &kid);
    let at = signed.len() - 10;
    let flipped = if &signed[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{flipped}{}", &signed[..at], &signed[at + 1..]);

    let cases = [
        ("garbage", "not-a-token".to_owned()),
        ("another key, same kid", sign(&base, &[7; 32], &kid)),
        ("unknown kid", sign(&base, &SECRET, "someone-else")),
        ("alg none", unsigned),
        ("tampered signature", tampered),
        (
            "expired",
            sign(&with("exp", json!(now - 120)), &SECRET, &kid),
        ),
        (
            "not yet valid",
            sign(&with("nbf", json!(now + 300)), &SECRET, &kid),
        ),
        (
            "wrong audience",
            sign(&with("aud", json!("billing")), &SECRET, &kid),
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("evil")), &SECRET, &kid),
        ),
        ("no exp", sign(&without("exp"), &SECRET, &kid)),
        (
            "unknown account",
            sign(&with("sub", json!(uuid::Uuid::now_v7())), &SECRET, &kid),
        ),
        (
            "another credential version",
            sign(&with("credential_version", json!(2)), &SECRET, &kid),
        ),
        (
            "no credential version",
            sign(&without("credential_version"), &SECRET, &kid),
        ),
    ];
    for (case, token) in cases {
        let response = app.get_with_token("/v1/me", &token).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_problem(response, 401, "unauthorized").await;
        // The check resolves callers from memory, by the same rules.
        let response = app
            .client
            .post(app.url("/v1/check"))
            .bearer_auth(&token)
            .json(&json!({"direction": "inbound", "domain": "example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{case} on the check");
    }
}

#[tokio::test]
async fn a_token_from_another_installation_is_refused() {
    let app = spawn_app().await;
    let other = spawn_app().await;
    let token = other.admin_token().await;
    let response = app.get_with_token("/v1/me", &token).await;
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn tokens_signed_with_a_rotated_out_key_stay_valid_until_they_expire() {
    let (old, new) = ([5u8; 32], [6u8; 32]);
    let app = spawn_app_with(|config| {
        config.jwt_secret = Some(crate::helpers::secret_text(&new));
        config.jwt_previous_secrets = vec![crate::helpers::secret_text(&old)];
    })
    .await;
    let fresh = app.admin_token().await;
    let header = jsonwebtoken::decode_header(&fresh).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(Keys::from_secret(&new).kid()),
        "the new key signs"
    );
    let me = app.me(&fresh).await;
    let mut claims = claims(chrono::Utc::now().timestamp());
    claims["sub"] = me["id"].clone();
    claims["node"] = me["node_id"].clone();
    let signed_with_old = sign(&claims, &old, Keys::from_secret(&old).kid());
    assert_eq!(
        app.get_with_token("/v1/me", &signed_with_old)
            .await
            .status(),
        200
    );
    let signed_with_other = sign(&claims, &[7; 32], Keys::from_secret(&[7; 32]).kid());
    assert_problem(
        app.get_with_token("/v1/me", &signed_with_other).await,
        401,
        "unauthorized",
    )
    .await;
}

/// The seconds a 429 asks to wait.
fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn forty_simultaneous_logins_verify_no_more_passwords_than_five_sequential_ones() {
    let app = spawn_app().await;
    // 39 wrong guesses and, last, the right password, all at once.
    let attempts = (0..40).map(|i| {
        let password = if i == 39 {
            ADMIN_PASSWORD
        } else {
            "wrong password!!"
        };
        app.login(ADMIN_USERNAME, password)
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    let verified_wrong = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        verified_wrong <= 5,
        "{verified_wrong} of 39 wrong guesses were checked: {statuses:?}"
    );
    // A success does not count as a failure, so its slot may go to one more guess: six answers
    // that are not 429 only when the right password was among the first five.
    let answered = statuses.iter().filter(|s| **s != 429).count();
    let let_in = statuses[39] == 200;
    assert!(
        answered <= 5 || (let_in && answered == 6),
        "{answered} answers were not 429: {statuses:?}"
    );
}

#[tokio::test]
async fn the_right_password_waits_once_five_guesses_are_counted_even_while_they_are_verified() {
    let app = spawn_app().await;
    let mut guesses: FuturesUnordered<_> = (0..39)
        .map(|_| app.login(ADMIN_USERNAME, "wrong password!!"))
        .collect();
    let mut statuses = Vec::new();
    // A 429 proves that five guesses hold their places (failed or still being verified), and
    // wrong guesses never give a place back.
    while let Some(response) = guesses.next().await {
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            break;
        }
    }
    // The right password now, while the other guesses may still be in flight.
    let (right, rest) = tokio::join!(
        app.login(ADMIN_USERNAME, ADMIN_PASSWORD),
        guesses.collect::<Vec<_>>()
    );
    statuses.extend(rest.iter().map(|r| r.status().as_u16()));
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (verified, refused),
        (5, 34),
        "of 39 wrong guesses, five are checked and the rest refused: {statuses:?}"
    );
    assert!((1..=900).contains(&retry_after(&right)));
    assert_problem(right, 429, "too-many-requests").await;

    // Now that the five have failed, the wait is the rest of the window, by username...
    let elsewhere = app.client_from(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let response = app
        .login_with(&elsewhere, ADMIN_USERNAME, ADMIN_PASSWORD)
        .await;
    let wait = retry_after(&response);
    assert!((800..=900).contains(&wait), "{wait}");
    assert_problem(response, 429, "too-many-requests").await;
    // ...and by address, for any username; another address and username are not held up.
    let response = app.login("ghost", "wrong password!!").await;
    assert!((800..=900).contains(&retry_after(&response)));
    assert_problem(response, 429, "too-many-requests").await;
    assert_problem(
        app.login_with(&elsewhere, "ghost", "wrong password!!")
            .await,
        401,
        "invalid-credentials",
    )
    .await;
}

#[tokio::test]
async fn the_api_answers_while_many_logins_are_verified() {
    // One database connection: a login that held it while verifying its password would make
    // everyone else wait, and after the pool's 5 s give up with 503.
    let app = spawn_app_with(|config| config.pool_size = 1).await;
    let admin = app.admin_token().await;
    // 60 accounts with the first admin's password, each logging in five times at once from an
    // address of its own (more would be the throttle's business, not this test's): 300 logins.
    let accounts = 60;
    for i in 0..accounts {
        app.execute_sql(&format!(
            "INSERT INTO accounts (id, node_id, username, email, role, password_hash, disabled, version, created_at, updated_at) \
             SELECT '{}', node_id, 'user{i}', 'user{i}@example.test', 'viewer', password_hash, disabled, 1, created_at, updated_at \
             FROM accounts WHERE username = '{ADMIN_USERNAME}'",
            uuid::Uuid::now_v7()
        ));
    }
    let clients: Vec<_> = (0..accounts)
        .map(|i| app.client_from(std::net::Ipv4Addr::new(127, 0, 1, i as u8 + 1)))
        .collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (app, done) = (&app, &done);
    let logins = async {
        let attempts = clients.iter().enumerate().flat_map(|(i, client)| {
            (0..5).map(move |_| async move {
                let username = format!("user{i}");
                app.login_with(client, &username, ADMIN_PASSWORD)
                    .await
                    .status()
                    .as_u16()
            })
        });
        let statuses = futures_util::future::join_all(attempts).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        statuses
    };
    let reads = async {
        let mut statuses = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            statuses.push(app.get_with_token("/v1/me", &admin).await.status().as_u16());
        }
        statuses
    };
    let (logins, reads) = tokio::join!(logins, reads);
    let failed_logins = logins.iter().filter(|s| **s != 200).count();
    let failed_reads = reads.iter().filter(|s| **s != 200).count();
    assert_eq!(
        (failed_logins, failed_reads),
        (0, 0),
        "logins {logins:?}, /v1/me {reads:?}"
    );
}

/// The login throttle's rows, as `SELECT count(*)` of `login_attempts` answers.
fn attempt_rows(app: &crate::helpers::TestApp) -> i64 {
    app.count_sql("SELECT CAST(count(*) AS BIGINT) AS n FROM login_attempts")
}

#[tokio::test]
async fn failed_logins_spread_over_two_instances_are_limited_as_one() {
    // Two instances on one database, as behind a load balancer: their counts are the database's,
    // so five failures anywhere lock the username at both.
    let first = spawn_app().await;
    let second = spawn_another(&first).await;
    let instances = [&first, &second];
    for i in 0..5 {
        instances[i % 2]
            .login_refused(ADMIN_USERNAME, "wrong password!!")
            .await;
    }
    for app in instances {
        let response = app.login(ADMIN_USERNAME, "wrong password!!").await;
        assert!((800..=900).contains(&retry_after(&response)));
        assert_problem(response, 429, "too-many-requests").await;
        let response = app.login(ADMIN_USERNAME, ADMIN_PASSWORD).await;
        assert_problem(response, 429, "too-many-requests").await;
    }
    // From another address the username is still locked; another username from there is not.
    let elsewhere = second.client_from(std::net::Ipv4Addr::new(127, 0, 0, 2));
    let response = second
        .login_with(&elsewhere, ADMIN_USERNAME, ADMIN_PASSWORD)
        .await;
    assert_problem(response, 429, "too-many-requests").await;
    let response = first
        .login_with(&elsewhere, "ghost", "wrong password!!")
        .await;
    assert_problem(response, 401, "invalid-credentials").await;
}

#[tokio::test]
async fn simultaneous_guesses_at_two_instances_verify_no_more_than_five_passwords() {
    let first = spawn_app().await;
    let second = spawn_another(&first).await;
    let instances = [&first, &second];
    let attempts = (0..40).map(|i| instances[i % 2].login(ADMIN_USERNAME, "wrong password!!"));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    let verified = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(verified, 5, "of 40 guesses at two instances: {statuses:?}");
}

#[tokio::test]
async fn a_success_at_one_instance_forgives_the_username_at_the_other() {
    let first = spawn_app().await;
    let second = spawn_another(&first).await;
    for _ in 0..4 {
        first
            .login_refused(ADMIN_USERNAME, "wrong password!!")
            .await;
    }
    assert_eq!(
        second.login(ADMIN_USERNAME, ADMIN_PASSWORD).await.status(),
        200
    );
    // The username's failures are forgotten everywhere: five new ones from another address are
    // verified before it is locked again...
    let elsewhere = first.client_from(std::net::Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..5 {
        first
            .login_with(&elsewhere, ADMIN_USERNAME, "wrong password!!")
            .await;
    }
    assert_eq!(
        first
            .login_with(&elsewhere, ADMIN_USERNAME, ADMIN_PASSWORD)
            .await
            .status(),
        429,
        "five new failures from elsewhere lock the username again"
    );
    // ...while the first address keeps its four (an address is never forgiven): one more guess
    // from it, at either instance, and the next is refused.
    first.login_refused("ghost", "wrong password!!").await;
    let response = second.login("ghost", "wrong password!!").await;
    assert_problem(response, 429, "too-many-requests").await;
}

#[tokio::test]
async fn login_attempts_age_out_of_the_window_and_their_rows_are_deleted() {
    let app = spawn_app().await;
    for _ in 0..5 {
        app.login_refused(ADMIN_USERNAME, "wrong password!!").await;
    }
    assert_eq!(
        attempt_rows(&app),
        10,
        "five attempts, each under a username and an address"
    );
    let response = app.login(ADMIN_USERNAME, ADMIN_PASSWORD).await;
    assert_problem(response, 429, "too-many-requests").await;
    // A quarter of an hour later every place is free again, and a login from the same address
    // deletes the rows that aged out under its keys.
    app.clock.advance(chrono::TimeDelta::minutes(15));
    assert_eq!(
        app.login(ADMIN_USERNAME, ADMIN_PASSWORD).await.status(),
        200
    );
    assert_eq!(attempt_rows(&app), 0);

    // Rows nobody tries again are deleted by the sweep every instance runs (at start, then every
    // five minutes): here by a second instance started after the window, on the same clock.
    let elsewhere = app.client_from(std::net::Ipv4Addr::new(127, 0, 0, 3));
    for _ in 0..3 {
        let response = app
            .login_with(&elsewhere, "ghost", "wrong password!!")
            .await;
        assert_eq!(response.status(), 401);
    }
    assert_eq!(attempt_rows(&app), 6);
    app.clock.advance(chrono::TimeDelta::minutes(15));
    let clock = app.clock.clone();
    let _sweeper = spawn_app_on(&app.database_url, |config| config.clock = clock).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while attempt_rows(&app) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep deleted nothing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
