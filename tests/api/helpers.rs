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
use reqwest::Method;
use serde_json::{Value, json};

pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "first admin's password";
/// The key every test app seals stored secrets with (`ALLOT_SECRET_KEY`): PostgreSQL requires
/// one, and a second app on the same database must open what the first sealed.
pub const SECRET_KEY: [u8; 32] = [0x5e; 32];

/// [`SECRET_KEY`] as `ALLOT_SECRET_KEY` spells it, for the `allot` binary.
pub fn secret_key_env() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(SECRET_KEY)
}

/// `bytes` as a secret setting spells them (base64), for `ALLOT_JWT_SECRET` and its kin.
pub fn secret_text(bytes: &[u8]) -> allot::config::SecretText {
    use base64::Engine;
    allot::config::SecretText::new(base64::engine::general_purpose::STANDARD.encode(bytes))
}

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
        tls_cert: None,
        tls_key: None,
        trusted_proxies: Vec::new(),
        proxy_header: allot::config::ProxyHeader::XForwardedFor,
        cors_origins: Vec::new(),
        database_url: database_url.to_owned(),
        pool_size: 4,
        jwt_secret: None,
        jwt_previous_secrets: Vec::new(),
        secret_key: Some(secret_text(&SECRET_KEY)),
        dns_resolver: None,
        // The test servers listen on loopback; the route tests that prove the refusal turn it off.
        route_test_allow_private: true,
        // The tests' webhook receivers listen on loopback; the tests of the refusal turn it off.
        webhooks_allow_private: true,
        webhook_timeout: 5,
        outbox_max_attempts: 12,
        // Retries within a test's patience.
        outbox_backoff_ms: 50,
        outbox_retention_days: 30,
        // The same for the test mail servers (SMTP sinks, a Graph stand-in) on loopback.
        mail_allow_private: true,
        // The system's roots only; the TLS mail tests add their certificate authority.
        mail_ca_file: None,
        graph_login_url: "https://login.microsoftonline.com".to_owned(),
        graph_url: "https://graph.microsoft.com".to_owned(),
        policy_listen: None,
        policy_direction: allot::check::postfix::PolicyDirection::Auto,
        socketmap_listen: None,
        require_domain_verification: true,
        domain_claim_days: 7,
        audit_retention_days: None,
        licence_refusals: allot::check::LicenceRefusals::Temporary,
        abuse_recipient: None,
        recipient_delimiter: String::new(),
        log: "warn".to_owned(),
        log_format: LogFormat::Text,
        body_limit: 1024 * 1024,
        request_timeout: 30,
        max_connections_per_peer: 256,
        // Budgets no test but the rate limit's own reaches (they set theirs).
        rate_limit: std::num::NonZeroU32::new(100_000_000).unwrap(),
        check_rate_limit: std::num::NonZeroU32::new(100_000_000).unwrap(),
        workers: 1,
        shutdown_timeout: 1,
        admin_username: ADMIN_USERNAME.to_owned(),
        admin_password: Some(ADMIN_PASSWORD.to_owned()),
        admin_email: "admin@example.test".to_owned(),
        owner_name: "Test Owner".to_owned(),
        // The tests move it (`TestApp::clock`) to drive the history across days without sleeping.
        clock: allot::clock::Clock::movable(),
    }
}

pub struct TestApp {
    pub address: String,
    /// The app's clock: `app.clock.advance(…)` moves the day it judges limits and keeps history on.
    pub clock: allot::clock::Clock,
    pub client: reqwest::Client,
    pub database_url: String,
    handle: actix_web::dev::ServerHandle,
    /// The app's metrics: which statuses each route answered, for [`crate::coverage`].
    metrics: prometheus::Registry,
    // Dropped after the server is told to stop: the database outlives it. A second instance on
    // the same database owns none.
    _db: Option<TestDb>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        crate::coverage::record(&self.metrics);
        // `stop` sends its command when called; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

/// A test's usual first line: starts the app (`spawn_app`) and binds it to `$app`, a `Caller` acting
/// as the first admin to `$admin`, and, when a third name is given, the seeded `Tree` to `$tree`.
/// One line instead of three, so that tests do not all open alike.
macro_rules! admin_app {
    ($app:ident, $admin:ident) => {
        let $app = crate::helpers::spawn_app().await;
        let $admin = $app.as_admin().await;
    };
    ($app:ident, $admin:ident, $tree:ident) => {
        crate::helpers::admin_app!($app, $admin);
        let $tree = crate::helpers::seed_tree(&$admin).await;
    };
}
pub(crate) use admin_app;

/// `admin_app!` that also binds the first admin's own node id to `$owner`.
macro_rules! owner_app {
    ($app:ident, $admin:ident, $owner:ident) => {
        crate::helpers::admin_app!($app, $admin);
        let $owner = $admin.node_id().await;
    };
}
pub(crate) use owner_app;

/// `admin_app!` over a test DNS server: binds the server to `$dns`, the app resolving through it
/// to `$app`, the first admin to `$admin` and the seeded `Tree` to `$tree`.
macro_rules! dns_app {
    ($dns:ident, $app:ident, $admin:ident, $tree:ident) => {
        let $dns = crate::dns::DnsServer::start().await;
        let $app = crate::helpers::spawn_app_with(|config| config.dns_resolver = $dns.addr).await;
        let $admin = $app.as_admin().await;
        let $tree = crate::helpers::seed_tree(&$admin).await;
    };
}
pub(crate) use dns_app;

/// Logs `username` in at the server at `base` (one not started by [`spawn_app`], such as the
/// `allot` binary run as a process) and returns the access token.
pub async fn token_at(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> String {
    let answer: Value = client
        .post(format!("{base}/v1/auth/token"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().expect("a token").to_owned()
}

/// GETs `path` at the server at `base` (as [`token_at`]'s) with `token`; returns the JSON body.
pub async fn get_at(client: &reqwest::Client, base: &str, path: &str, token: &str) -> Value {
    let response = client.get(format!("{base}{path}")).bearer_auth(token);
    response.send().await.unwrap().json().await.unwrap()
}

/// The node id of the holder of `token` at the server at `base` (as [`token_at`]'s), from
/// `/v1/me`.
pub async fn owner_at(client: &reqwest::Client, base: &str, token: &str) -> String {
    let me = get_at(client, base, "/v1/me", token).await;
    me["node_id"].as_str().expect("a node id").to_owned()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new();
    let mut config = test_config(db.url());
    adjust(&mut config);
    let database_url = config.database_url.clone();
    start(config, database_url, Some(db))
}

/// How every test client is made. Redirects are the test's to see. An idle connection is dropped
/// after 2 s, well before the server's 5 s keep-alive closes it: reusing one that the server is
/// closing at that moment fails the request (`IncompleteMessage`), which a slow machine made
/// happen when a test paused between requests (issue 18's login test, in CI).
fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(std::time::Duration::from_secs(2))
}

/// Another allot process on `first`'s database, as a second instance behind a load balancer.
pub async fn spawn_another(first: &TestApp) -> TestApp {
    spawn_app_on(&first.database_url, |_| {}).await
}

/// An allot on a database the caller owns (another instance's, or a private server's).
pub async fn spawn_app_on(database_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(database_url);
    adjust(&mut config);
    start(config, database_url.to_owned(), None)
}

/// Starts an allot of `config` in the background; `database_url` is what the test reads behind
/// its back, and `db`, if any, is dropped after the server is told to stop.
fn start(config: Config, database_url: String, db: Option<TestDb>) -> TestApp {
    let prepared = startup::prepare(&config).expect("the test app prepares");
    let clock = config.clock.clone();
    let app = Application::build(config, prepared.pool, prepared.keys, prepared.sealer)
        .expect("the test app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let metrics = app.metrics();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        clock,
        client: client().build().expect("a client"),
        database_url,
        handle,
        metrics,
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
        let request = self.client.post(self.url(path)).json(body);
        request.send().await.expect("POST")
    }

    /// GETs `path` with one extra header, unauthenticated.
    pub async fn get_with_header(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).header(name, value);
        request.send().await.expect("GET")
    }

    /// POSTs the raw `body` to `path` as `content_type`, unauthenticated.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let request = self.client.post(self.url(path));
        let request = request.header("content-type", content_type).body(body);
        request.send().await.expect("POST")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.login_with(&self.client, username, password).await
    }

    /// Logs in through `client` (one made by [`TestApp::client_from`], say).
    pub async fn login_with(
        &self,
        client: &reqwest::Client,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        client
            .post(self.url("/v1/auth/token"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("POST")
    }

    /// Logs in as `username` with `password`, asserts the 401 `invalid-credentials` refusal, and
    /// returns the problem.
    pub async fn login_refused(&self, username: &str, password: &str) -> Value {
        let response = self.login(username, password).await;
        assert_problem(response, 401, "invalid-credentials").await
    }

    /// A client whose connections come from `address` (any of 127.0.0.0/8 reaches the app): the
    /// app sees another peer, as it would another machine.
    pub fn client_from(&self, address: std::net::Ipv4Addr) -> reqwest::Client {
        client()
            .local_address(std::net::IpAddr::V4(address))
            .build()
            .expect("a client")
    }

    /// An access token of the first admin.
    pub async fn admin_token(&self) -> String {
        let response = self.login(ADMIN_USERNAME, ADMIN_PASSWORD).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("a JSON body");
        body["access_token"].as_str().expect("a token").to_owned()
    }

    /// `/v1/me` as the holder of `token` sees it (whatever the status).
    pub async fn me(&self, token: &str) -> Value {
        let response = self.get_with_token("/v1/me", token).await;
        response.json().await.unwrap()
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).bearer_auth(token);
        request.send().await.expect("GET")
    }
}

impl TestApp {
    /// A client acting as the first admin.
    pub async fn as_admin(&self) -> Caller<'_> {
        Caller {
            app: self,
            token: self.admin_token().await,
        }
    }

    /// Runs SQL on the app's database behind its back, as another program (or time) would.
    pub fn execute_sql(&self, sql: &str) {
        use diesel::RunQueryDsl;
        let pool = allot::store::connect(&self.database_url, 1).expect("the test database opens");
        let mut conn = pool.get().expect("a connection");
        diesel::sql_query(sql)
            .execute(&mut *conn)
            .expect("the SQL runs");
    }

    /// Recomputes every invariant from the database, as `allot verify` does, and asserts none
    /// is broken. Every scenario that writes ends with it.
    pub fn assert_verified(&self) {
        let findings = self.verify();
        assert!(findings.is_empty(), "verify found: {findings:#?}");
    }

    /// What `allot verify` finds wrong in the database now.
    pub fn verify(&self) -> Vec<String> {
        let pool = allot::store::connect(&self.database_url, 1).expect("the test database opens");
        let mut conn = pool.get().expect("a connection");
        allot::store::verify::run(&mut conn, self.clock.today()).expect("verify runs")
    }
}

/// An authenticated client.
pub struct Caller<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl Caller<'_> {
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(&self.token)
    }

    /// Sends `method` on `path` with `header` and the JSON `body`, if any; returns the answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        header: Option<(&str, &str)>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let what = method.to_string();
        let mut request = self.request(method, path);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect(&what)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(Method::POST, path, None, Some(body)).await
    }

    pub async fn post_with_key(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        let header = Some(("idempotency-key", key));
        self.send(Method::POST, path, header, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(Method::PUT, path, None, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(Method::PATCH, path, None, Some(body)).await
    }

    pub async fn patch_if_match(&self, path: &str, etag: &str, body: &Value) -> reqwest::Response {
        let header = Some(("if-match", etag));
        self.send(Method::PATCH, path, header, Some(body)).await
    }

    /// Sends `method` on `path` with `If-Match: etag` and the JSON `body`, if any.
    pub async fn send_if_match(
        &self,
        method: Method,
        path: &str,
        etag: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        self.send(method, path, Some(("if-match", etag)), body)
            .await
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.send(Method::DELETE, path, None, None).await
    }

    /// PATCHes `body` onto `path`, asserts 200, and returns the changed resource.
    pub async fn patch_ok(&self, path: &str, body: &Value) -> Value {
        self.patch_expect(path, body, 200).await
    }

    /// GETs `path`, asserts 200, and returns the JSON body.
    pub async fn get_ok(&self, path: &str) -> Value {
        self.get_expect(path, 200).await
    }

    /// GETs `path`, asserts `status`, and returns the JSON body.
    pub async fn get_expect(&self, path: &str, status: u16) -> Value {
        self.expect(self.get(path).await, status).await
    }

    /// POSTs `body` to `path`, asserts `status`, and returns the JSON body.
    pub async fn post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        self.expect(self.post(path, body).await, status).await
    }

    /// PUTs `body` on `path`, asserts `status`, and returns the JSON body.
    pub async fn put_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        self.expect(self.put(path, body).await, status).await
    }

    /// PATCHes `body` onto `path`, asserts `status`, and returns the JSON body.
    pub async fn patch_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        self.expect(self.patch(path, body).await, status).await
    }

    /// DELETEs `path`, asserts `status`, and returns the JSON body (null when empty).
    pub async fn delete_expect(&self, path: &str, status: u16) -> Value {
        self.expect(self.delete(path).await, status).await
    }

    /// Sends, asserts the status, and returns the JSON body.
    pub async fn expect(&self, response: reqwest::Response, status: u16) -> Value {
        let actual = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(actual, status, "unexpected status; body: {body}");
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).expect("a JSON body")
        }
    }

    /// GETs `path` and asserts the refusal is a problem of `status` and `slug`; returns it.
    pub async fn get_problem(&self, path: &str, status: u16, slug: &str) -> Value {
        assert_problem(self.get(path).await, status, slug).await
    }

    /// POSTs `body` to `path` and asserts a problem of `status` and `slug`; returns it.
    pub async fn post_problem(&self, path: &str, body: &Value, status: u16, slug: &str) -> Value {
        assert_problem(self.post(path, body).await, status, slug).await
    }

    /// PUTs `body` on `path` and asserts a problem of `status` and `slug`; returns it.
    pub async fn put_problem(&self, path: &str, body: &Value, status: u16, slug: &str) -> Value {
        assert_problem(self.put(path, body).await, status, slug).await
    }

    /// PATCHes `body` onto `path` and asserts a problem of `status` and `slug`; returns it.
    pub async fn patch_problem(&self, path: &str, body: &Value, status: u16, slug: &str) -> Value {
        assert_problem(self.patch(path, body).await, status, slug).await
    }

    /// POSTs `body` to `path` and asserts a 422 `validation-failed` whose first error is on
    /// `field`; returns the problem.
    pub async fn post_invalid(&self, path: &str, body: &Value, field: &str) -> Value {
        let problem = self
            .post_problem(path, body, 422, "validation-failed")
            .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        problem
    }

    /// DELETEs `path` and asserts a problem of `status` and `slug`; returns it.
    pub async fn delete_problem(&self, path: &str, status: u16, slug: &str) -> Value {
        assert_problem(self.delete(path).await, status, slug).await
    }

    /// The caller's own node id.
    pub async fn node_id(&self) -> String {
        let me = self.get_ok("/v1/me").await;
        me["node_id"].as_str().unwrap().to_owned()
    }
}

/// The usual tree: the owner with a licence of 1000 users and 100 domains; resellers A (500 users,
/// 50 domains) and B (300 users, 30 domains); A's sub-reseller A1 (200 users, 20 domains); customer
/// C1 under A1 (50 users, 5 domains) and C2 under B (40 users, 4 domains).
pub struct Tree {
    pub owner: String,
    pub a: String,
    pub b: String,
    pub a1: String,
    pub c1: String,
    pub c2: String,
}

pub async fn seed_tree(admin: &Caller<'_>) -> Tree {
    let owner = admin.node_id().await;
    admin
        .set_licence(
            json!([{"resource": "users", "amount": 1000}, {"resource": "domains", "amount": 100}, {"resource": "module:base", "amount": 1000}]),
        )
        .await;
    let a = admin.create_child(&owner, "reseller", "Reseller A").await;
    let b = admin.create_child(&owner, "reseller", "Reseller B").await;
    let a1 = admin.create_child(&a, "reseller", "Reseller A1").await;
    let c1 = admin.create_child(&a1, "customer", "Customer C1").await;
    let c2 = admin.create_child(&b, "customer", "Customer C2").await;
    for (node, users, domains) in [
        (&a, 500, 50),
        (&b, 300, 30),
        (&a1, 200, 20),
        (&c1, 50, 5),
        (&c2, 40, 4),
    ] {
        // Every mailbox takes a `users` and a `module:base` seat: the tree grants both alike.
        for resource in ["users", "module:base"] {
            admin.grant(node, resource, users).await;
        }
        admin.grant(node, "domains", domains).await;
    }
    Tree {
        owner,
        a,
        b,
        a1,
        c1,
        c2,
    }
}

/// The `detail` a problem explains itself with.
pub fn problem_detail(problem: &Value) -> &str {
    problem["detail"].as_str().unwrap()
}

/// How many items a listing holds.
pub fn item_count(list: &Value) -> usize {
    list["items"].as_array().unwrap().len()
}

/// The message of the first error a `validation-failed` problem lists.
pub fn first_error(problem: &Value) -> &str {
    problem["errors"][0]["message"].as_str().unwrap()
}

/// The string `field` of every element of the array `list`, in order (the addresses of a listing's
/// items, say).
pub fn texts<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap())
        .collect()
}

/// A watchdog for the child process `pid`: a shell that sends it `SIG{signal}` as soon as its
/// stdin gives a line or ends, which it does when the test drops the watchdog's stdin or the test
/// process (the pipe's only writer) dies, however it dies. So a server a test started does not
/// outlive a test run that was killed. Spawn it after the watched process, so that process does
/// not hold the pipe's other end.
pub fn watchdog(pid: u32, signal: &str) -> std::io::Result<std::process::Child> {
    std::process::Command::new("sh")
        .args([
            "-c",
            &format!(r#"read -r line; kill -{signal} "$0" 2>/dev/null"#),
            &pid.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
}

/// Waits for `child` to exit, looking `every` so often, for at most `timeout`; true if it did.
pub fn wait_bounded(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
    every: std::time::Duration,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if std::time::Instant::now() > deadline => return false,
            Ok(None) => std::thread::sleep(every),
        }
    }
}

/// The `content-type` of `response` ("" when it has none or it is not text).
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Asserts that `response` is a problem document of `status` and `slug`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, slug: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(content_type(&response), "application/problem+json");
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

impl TestApp {
    /// The number `sql` (a query selecting one `n` of SQL type BIGINT) answers, read behind the
    /// app's back: for what no API shows yet, such as the audit trail.
    pub fn count_sql(&self, sql: &str) -> i64 {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let pool = allot::store::connect(&self.database_url, 1).expect("the test database opens");
        let mut conn = pool.get().expect("a connection");
        diesel::sql_query(sql)
            .get_result::<Count>(&mut *conn)
            .expect("the SQL runs")
            .n
    }
}
