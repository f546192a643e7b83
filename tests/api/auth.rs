//! Logging in, and every way a token can be refused.

use allot::auth::jwt::Keys;
use allot::config::JwtSecret;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, ADMIN_USERNAME, assert_problem, spawn_app, spawn_app_with};

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
    let wrong = assert_problem(
        app.login(ADMIN_USERNAME, "not the password at all").await,
        401,
        "invalid-credentials",
    )
    .await;
    let unknown = assert_problem(
        app.login("nobody-here", "not the password at all").await,
        401,
        "invalid-credentials",
    )
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
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "unauthorized").await;
}

const SECRET: [u8; 32] = [42; 32];

fn claims(now: i64) -> Value {
    json!({
        "iss": "allot", "aud": "allot",
        "sub": uuid::Uuid::nil(), "node": uuid::Uuid::nil(), "role": "admin",
        "iat": now, "nbf": now, "exp": now + 600,
    })
}

fn sign(claims: &Value, secret: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn forged_expired_and_misaddressed_tokens_are_refused() {
    let app = spawn_app_with(|config| config.jwt_secret = Some(JwtSecret(SECRET.to_vec()))).await;
    let good = app.admin_token().await;
    let me: Value = app
        .get_with_token("/v1/me", &good)
        .await
        .json()
        .await
        .unwrap();
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
    ];
    for (case, token) in cases {
        let response = app.get_with_token("/v1/me", &token).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_problem(response, 401, "unauthorized").await;
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
        config.jwt_secret = Some(JwtSecret(new.to_vec()));
        config.jwt_previous_secrets = vec![JwtSecret(old.to_vec())];
    })
    .await;
    let fresh = app.admin_token().await;
    let header = jsonwebtoken::decode_header(&fresh).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(Keys::from_secret(&new).kid()),
        "the new key signs"
    );
    let me: Value = app
        .get_with_token("/v1/me", &fresh)
        .await
        .json()
        .await
        .unwrap();
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
