//! The test harness: a real allot on a random port over a fresh database, and a client for it.
//!
//! Each test gets its own database: an SQLite file in a temporary directory, or, when
//! `ALLOT_TEST_DATABASE_URL` names a PostgreSQL server, a new database on it that is dropped when
//! the test ends. Tests therefore run in parallel on either backend.

use std::net::SocketAddr;

use allot::config::{Config, LogFormat};
use allot::startup::{self, Application};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use serde_json::{Value, json};

pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "first admin's password";

/// A database that exists for one test.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        server: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    pub fn new() -> Self {
        match std::env::var("ALLOT_TEST_DATABASE_URL") {
            Ok(server) if !server.is_empty() => {
                let name = format!("allot_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = PgConnection::establish(&server)
                    .unwrap_or_else(|e| panic!("ALLOT_TEST_DATABASE_URL: {e}"));
                conn.batch_execute(&format!("CREATE DATABASE \"{name}\""))
                    .expect("create the test database");
                let url = with_database(&server, &name);
                Self::Postgres { server, name, url }
            }
            _ => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url = dir.path().join("allot.db").to_string_lossy().into_owned();
                Self::Sqlite { _dir: dir, url }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Self::Postgres { server, name, .. } = self
            && let Ok(mut conn) = PgConnection::establish(server)
        {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        }
    }
}

/// `postgres://user@host:port/db?params` with `db` replaced by `name`.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The configuration a test app starts with; tests adjust it with [`spawn_app_with`].
pub fn test_config(database_url: &str) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        database_url: database_url.to_owned(),
        pool_size: 4,
        jwt_secret: None,
        log: "warn".to_owned(),
        log_format: LogFormat::Text,
        body_limit: 1024 * 1024,
        workers: 1,
        shutdown_timeout: 1,
        admin_username: ADMIN_USERNAME.to_owned(),
        admin_password: Some(ADMIN_PASSWORD.to_owned()),
        admin_email: "admin@example.test".to_owned(),
        owner_name: "Test Owner".to_owned(),
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    handle: actix_web::dev::ServerHandle,
    // Dropped after the server is told to stop: the database outlives it.
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends its command when called; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new();
    let mut config = test_config(db.url());
    adjust(&mut config);
    let (pool, keys, _) = startup::prepare(&config).expect("the test app prepares");
    let app = Application::build(config, pool, keys).expect("the test app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
        handle,
        _db: db,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/v1/auth/token",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// An access token of the first admin.
    pub async fn admin_token(&self) -> String {
        let response = self.login(ADMIN_USERNAME, ADMIN_PASSWORD).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("a JSON body");
        body["access_token"].as_str().expect("a token").to_owned()
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }
}

/// Asserts that `response` is a problem document of `status` and `slug`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, slug: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("a JSON problem document");
    assert_eq!(
        body["type"],
        format!("/problems/{slug}"),
        "problem type in {body}"
    );
    assert_eq!(body["status"], status, "status member in {body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "title in {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "detail in {body}"
    );
    body
}

#[test]
fn database_names_are_replaced_in_postgres_urls() {
    assert_eq!(
        with_database("postgres://u@h:5432/postgres", "t"),
        "postgres://u@h:5432/t"
    );
    assert_eq!(
        with_database("postgres://u@h/db?sslmode=disable", "t"),
        "postgres://u@h/t?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "t"), "postgresql://h/t");
}
