//! The `allot` binary itself: first start, configuration errors, signals.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::TestDb;

pub(crate) fn allot(db: &TestDb) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_allot"));
    command
        .env_clear()
        .env("DATABASE_URL", db.url())
        .env("ALLOT_LOG", "info")
        .env("ALLOT_WORKERS", "1")
        // PostgreSQL requires it; with SQLite the test of the generated key removes it.
        .env("ALLOT_SECRET_KEY", crate::helpers::secret_key_env());
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command) -> Output {
    command.output().expect("allot runs")
}

#[test]
fn openapi_prints_the_committed_document() {
    let db = TestDb::new();
    let output = run(allot(&db).arg("openapi"));
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout),
        include_str!("../../openapi/openapi.json")
    );
}

#[test]
fn init_prints_a_generated_password_once_and_refuses_a_second_time() {
    let db = TestDb::new();
    let output = run(allot(&db).arg("init"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("username: admin"), "{stdout}");
    let password_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("password:"))
        .unwrap();
    assert!(
        password_line.trim_start()["password:".len()..].trim().len() >= 20,
        "{stdout}"
    );

    let again = run(allot(&db).arg("init"));
    assert_eq!(again.status.code(), Some(1));
    assert!(!text(&again.stdout).contains("password"));
    assert!(text(&again.stderr).contains("already has an owner"));
}

#[test]
fn a_first_start_announces_the_admin_and_later_starts_do_not() {
    let db = TestDb::new();
    // An occupied port makes serve stop right after preparing the database.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let first = run(allot(&db)
        .env("ALLOT_LISTEN", &listen)
        .env("ALLOT_ADMIN_USERNAME", "root-admin"));
    assert_eq!(first.status.code(), Some(2));
    assert!(text(&first.stdout).contains("username: root-admin"));
    assert!(text(&first.stdout).contains("shown once"));
    let stderr = text(&first.stderr);
    assert!(
        stderr.contains("allot: ALLOT_LISTEN: cannot listen on"),
        "{stderr}"
    );

    let second = run(allot(&db).env("ALLOT_LISTEN", &listen));
    assert_eq!(second.status.code(), Some(2));
    assert_eq!(text(&second.stdout), "");
}

#[test]
fn bad_configuration_stops_start_up_with_exit_2_and_one_line_naming_the_setting() {
    let db = TestDb::new();
    let cases: [(&str, &str, &str); 10] = [
        ("ALLOT_LISTEN", "not-an-address", "ALLOT_LISTEN"),
        (
            "ALLOT_MAIL_CA_FILE",
            "/nonexistent/ca.pem",
            "ALLOT_MAIL_CA_FILE",
        ),
        ("ALLOT_MAIL_CA_FILE", "/proc/version", "ALLOT_MAIL_CA_FILE"),
        ("ALLOT_JWT_SECRET", "c2hvcnQ=", "ALLOT_JWT_SECRET"),
        ("ALLOT_SECRET_KEY", "c2hvcnQ=", "ALLOT_SECRET_KEY"),
        ("ALLOT_SECRET_KEY", "not base64!", "ALLOT_SECRET_KEY"),
        ("ALLOT_POOL_SIZE", "0", "ALLOT_POOL_SIZE"),
        ("ALLOT_LOG", "allot=loud", "ALLOT_LOG"),
        ("ALLOT_ADMIN_PASSWORD", "short", "ALLOT_ADMIN_PASSWORD"),
        (
            "DATABASE_URL",
            "postgres://allot@127.0.0.1:1/none",
            "DATABASE_URL",
        ),
    ];
    for (variable, value, named) in cases {
        let output = run(allot(&db)
            .env("ALLOT_LISTEN", "127.0.0.1:0")
            .env(variable, value));
        assert_eq!(
            output.status.code(),
            Some(2),
            "{variable}={value}: {}",
            text(&output.stderr)
        );
        let stderr = text(&output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("allot: "))
            .collect();
        assert_eq!(lines.len(), 1, "{variable}={value}: one line, got {stderr}");
        assert!(lines[0].contains(named), "{variable}={value}: {stderr}");
    }
}

#[test]
fn a_malformed_secret_is_refused_naming_its_setting_and_never_its_value() {
    let db = TestDb::new();
    // Each value is distinctive, so that any echo of it (or of a part: base64's own error names
    // the offending character) is seen.
    let valid = crate::helpers::secret_key_env();
    let cases = [
        ("ALLOT_SECRET_KEY", "Sekr3t-K3y-n0t-b4se64!".to_owned()),
        ("ALLOT_SECRET_KEY", "U2Vrcjl0S2V5VG9vU2hvcnQ=".to_owned()),
        ("ALLOT_JWT_SECRET", "Jwt-S3cr3t-n0t-b4se64!".to_owned()),
        ("ALLOT_JWT_SECRET", "Snd0U2VjcmV0VG9vU2hvcnQ=".to_owned()),
        (
            "ALLOT_JWT_PREVIOUS_SECRETS",
            format!("{valid},Pr3v10us-S3cr3t-n0t-b4se64!"),
        ),
    ];
    for (variable, value) in cases {
        let output = run(allot(&db)
            .env("ALLOT_LISTEN", "127.0.0.1:0")
            .env(variable, &value));
        let stderr = text(&output.stderr);
        let stdout = text(&output.stdout);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(
            stderr.starts_with(&format!("allot: {variable}: ")),
            "{variable}: {stderr}"
        );
        let secret = value.rsplit(',').next().unwrap();
        for shown in [&stderr, &stdout] {
            assert!(
                !shown.contains(secret),
                "{variable}: the value shown: {shown}"
            );
            assert!(
                !shown.contains('!'),
                "{variable}: a character shown: {shown}"
            );
        }
        // Refused before anything was opened: no owner was created.
        assert!(!stdout.contains("created the owner"), "{stdout}");
    }
}

/// A running `allot` whose log lines (JSON) arrive on `log`; killed when dropped, unless stopped.
pub(crate) struct Logged {
    pub child: std::process::Child,
    pub port: u16,
    pub log: std::sync::mpsc::Receiver<serde_json::Value>,
    /// The lines read before the port was announced, not waited for yet.
    early: std::cell::RefCell<Vec<serde_json::Value>>,
}

impl Logged {
    /// Sends `signal` (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to 10 s for a log line whose message is `message`, and returns it.
    pub fn wait_for(&self, message: &str) -> serde_json::Value {
        let mut early = self.early.borrow_mut();
        if let Some(at) = early.iter().position(|event| event["message"] == message) {
            return early.remove(at);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(event) if event["message"] == message => return event,
                Ok(_) => {}
                Err(err) => panic!("no log line {message:?}: {err}"),
            }
        }
    }

    /// SIGTERM, then every line it logged until it exited.
    pub fn stop(mut self) -> Vec<serde_json::Value> {
        self.signal("TERM");
        assert!(self.child.wait().unwrap().success());
        self.log.iter().collect()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `allot serve` on `db` on a free loopback port with `envs`, the first admin's password
/// `ADMIN_PASSWORD`, JSON logs: the child and its standard error, to be read.
fn spawn_serving(db: &TestDb, envs: &[(&str, &str)]) -> (std::process::Child, ChildStderr) {
    let mut child = allot(db)
        .env("ALLOT_LISTEN", "127.0.0.1:0")
        .env("ALLOT_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .env("ALLOT_LOG_FORMAT", "json")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    (child, stderr)
}

/// Starts `allot` serving on `db` on a free loopback port with `envs`, JSON logs read into a
/// channel; returns once it announced its port (HTTP or HTTPS, as `envs` say).
pub(crate) fn serve_logged(db: &TestDb, envs: &[(&str, &str)]) -> Logged {
    let (child, stderr) = spawn_serving(db, envs);
    let (sender, log) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line) {
                let _ = sender.send(event);
            }
        }
    });
    let mut early = Vec::new();
    let port = loop {
        let event = log.recv().expect("the server announces its port");
        if event["message"] == "serving" {
            break event["port"].as_u64().expect("a port") as u16;
        }
        early.push(event);
    };
    Logged {
        child,
        port,
        log,
        early: early.into(),
    }
}

/// Starts `allot` serving on `db` on a free loopback port, with the first admin's password
/// `ADMIN_PASSWORD`; the child and its port, once it answers.
pub(crate) fn serve(db: &TestDb, envs: &[(&str, &str)]) -> (std::process::Child, u16) {
    let (child, stderr) = spawn_serving(db, envs);
    let mut lines = BufReader::new(stderr).lines();
    // JSON logs: the line announcing the server names the port it bound.
    let port = lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .find(|event| event["message"] == "serving")
        .and_then(|event| event["port"].as_u64())
        .expect("the server announces its port");
    // Keep reading its log, so that a full pipe never stops it.
    std::thread::spawn(move || lines.for_each(drop));
    // Once it answers, its signal handlers are in place.
    let health = std::net::TcpStream::connect(("127.0.0.1", port as u16)).and_then(|mut stream| {
        use std::io::{Read, Write};
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    });
    assert!(health.unwrap().starts_with("HTTP/1.1 200"));
    (child, port as u16)
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let db = TestDb::new();
    let (mut child, _) = serve(&db, &[("ALLOT_SHUTDOWN_TIMEOUT", "5")]);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn licence_set_and_show_and_verify_work_from_the_command_line() {
    let db = TestDb::new();
    let password = [("ALLOT_ADMIN_PASSWORD", "a long enough password")];
    assert!(run(allot(&db).envs(password).arg("init")).status.success());
    let set = run(allot(&db).args([
        "licence",
        "set",
        "--resource",
        "users=10000",
        "--resource",
        "module:lft=500",
    ]));
    assert!(set.status.success(), "{}", text(&set.stderr));
    let shown = run(allot(&db).args(["licence", "show"]));
    let stdout = text(&shown.stdout);
    assert!(
        stdout.contains("users") && stdout.contains("10000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("module:lft") && stdout.contains("500"),
        "{stdout}"
    );

    let bad = run(allot(&db).args(["licence", "set", "--resource", "seats=5"]));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("resources[0].resource"),
        "{}",
        text(&bad.stderr)
    );
    let malformed = run(allot(&db).args(["licence", "set", "--resource", "users"]));
    assert_eq!(malformed.status.code(), Some(2));

    let verify = run(allot(&db).arg("verify"));
    assert!(verify.status.success());
    assert!(text(&verify.stdout).contains("no violations"));
}

#[test]
fn verify_reports_an_oversold_node_and_exits_1() {
    use diesel::connection::SimpleConnection;
    let db = TestDb::new();
    let password = [("ALLOT_ADMIN_PASSWORD", "a long enough password")];
    assert!(run(allot(&db).envs(password).arg("init")).status.success());
    assert!(
        run(allot(&db).args(["licence", "set", "--resource", "users=10"]))
            .status
            .success()
    );
    // Write behind allot's back what the API would refuse: a reseller holding 11 of 10 users.
    let pool = allot::store::connect(db.url(), 1).unwrap();
    let mut conn = pool.get().unwrap();
    let owner = allot::store::nodes::owner(&mut conn).unwrap().unwrap();
    let reseller = uuid::Uuid::now_v7();
    conn.batch_execute(&format!(
        "INSERT INTO nodes (id, parent_id, path, kind, name, status, version, created_at, updated_at)
           VALUES ('{reseller}', '{o}', '{p}{reseller}/', 'reseller', 'Rogue', 'active', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO allocations (id, node_id, grantor_id, resource, amount, starts_on, active, version, created_at, updated_at)
           VALUES ('{a}', '{reseller}', '{o}', 'users', 11, '2026-01-01', TRUE, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO usage_counters (node_id, resource, used) VALUES ('{reseller}', 'domains', 3);
         UPDATE nodes SET path = '/elsewhere/{reseller}/' WHERE id = '{reseller}';",
        o = owner.id,
        p = owner.path,
        a = uuid::Uuid::now_v7(),
    ))
    .unwrap();
    let verify = run(allot(&db).arg("verify"));
    assert_eq!(verify.status.code(), Some(1));
    let stdout = text(&verify.stdout);
    assert!(
        stdout.contains(&format!("node {} has allocated 11 users", owner.id)),
        "{stdout}"
    );
    // A reseller's usage that no customer below accounts for, and that was not added up to the owner.
    assert!(
        stdout.contains(&format!(
            "node {reseller} counts 3 domains in use, but its children count 0"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "node {} counts 0 domains in use, but its children count 3",
            owner.id
        )),
        "{stdout}"
    );
    // And a path that does not follow from its parent's.
    assert!(
        stdout.contains(&format!("node {reseller} has the path /elsewhere/")),
        "{stdout}"
    );
    // Those 3 domains are more than the reseller holds (none): the use invariant.
    assert!(
        stdout.contains(&format!("node {reseller}'s subtree uses 3 domains")),
        "{stdout}"
    );
    assert!(stdout.contains("5 violation"), "{stdout}");
}

/// At `info`, every request is a line, except the check's answered ones: those are counted in
/// `/metrics`, and at tens of thousands a second a line each would be the log. A check refused
/// with an error status is still a line. The last lines reach standard error at exit (the
/// non-blocking writer's queue is written out).
#[test]
fn answered_checks_are_counted_not_logged_line_by_line() {
    let db = TestDb::new();
    let mut child = allot(&db)
        .env("ALLOT_LISTEN", "127.0.0.1:0")
        .env("ALLOT_ADMIN_PASSWORD", "a long enough password")
        .env("ALLOT_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line) {
                let _ = sender.send(event);
            }
        }
    });
    let port = lines
        .iter()
        .find(|event| event["message"] == "serving")
        .and_then(|event| event["port"].as_u64())
        .expect("the server announces its port");
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let token = crate::helpers::token_at(&http, &base, "admin", "a long enough password").await;
        let token = token.as_str();
        let check = serde_json::json!({"domain": "example.com", "direction": "inbound"});
        for _ in 0..3 {
            let answered = http
                .post(format!("{base}/v1/check"))
                .bearer_auth(token)
                .json(&check)
                .send()
                .await
                .unwrap();
            assert_eq!(answered.status(), 200);
        }
        let refused = http.post(format!("{base}/v1/check")).json(&check).send();
        assert_eq!(refused.await.unwrap().status(), 401);
        let health = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    let handled: Vec<(String, u64)> = lines
        .try_iter()
        .filter(|event| event["message"] == "handled")
        .map(|event| {
            let path = event["span"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (path, event["status"].as_u64().unwrap_or_default())
        })
        .collect();
    assert!(
        handled.contains(&("/healthz".to_owned(), 200)),
        "{handled:?}"
    );
    assert!(
        handled.contains(&("/v1/auth/token".to_owned(), 200)),
        "{handled:?}"
    );
    assert_eq!(
        handled
            .iter()
            .filter(|(path, _)| path == "/v1/check")
            .collect::<Vec<_>>(),
        [&("/v1/check".to_owned(), 401)],
        "only the refused check is a line"
    );
}

#[test]
fn verify_checks_the_oversell_ratio_and_the_use_of_a_subtree() {
    use diesel::connection::SimpleConnection;
    let db = TestDb::new();
    let password = [("ALLOT_ADMIN_PASSWORD", "a long enough password")];
    assert!(run(allot(&db).envs(password).arg("init")).status.success());
    assert!(
        run(allot(&db).args(["licence", "set", "--resource", "users=100"]))
            .status
            .success()
    );
    // A reseller holding 10 users that granted 15 under a ratio of 1.5: sound.
    let today = chrono::Utc::now().date_naive();
    let pool = allot::store::connect(db.url(), 1).unwrap();
    let mut conn = pool.get().unwrap();
    let owner = allot::store::nodes::owner(&mut conn).unwrap().unwrap();
    let reseller = uuid::Uuid::now_v7();
    let customer = uuid::Uuid::now_v7();
    conn.batch_execute(&format!(
        "INSERT INTO nodes (id, parent_id, path, kind, name, status, version, created_at, updated_at)
           VALUES ('{reseller}', '{o}', '{p}{reseller}/', 'reseller', 'Seller', 'active', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO nodes (id, parent_id, path, kind, name, status, version, created_at, updated_at)
           VALUES ('{customer}', '{reseller}', '{p}{reseller}/{customer}/', 'customer', 'Buyer', 'active', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO allocations (id, node_id, grantor_id, resource, amount, starts_on, active, version, created_at, updated_at)
           VALUES ('{a}', '{reseller}', '{o}', 'users', 10, '{today}', TRUE, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO allocations (id, node_id, grantor_id, resource, amount, starts_on, active, version, created_at, updated_at)
           VALUES ('{b}', '{customer}', '{reseller}', 'users', 15, '{today}', TRUE, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00');
         INSERT INTO oversell_ratios (node_id, resource, permille) VALUES ('{reseller}', 'users', 1500);",
        o = owner.id,
        p = owner.path,
        a = uuid::Uuid::now_v7(),
        b = uuid::Uuid::now_v7(),
    ))
    .unwrap();
    let verify = run(allot(&db).arg("verify"));
    assert!(verify.status.success(), "{}", text(&verify.stdout));

    // Behind allot's back: the ratio gone, and 11 seats taken below the reseller's 10.
    conn.batch_execute(&format!(
        "DELETE FROM oversell_ratios;
         UPDATE usage_counters SET used = 11 WHERE resource = 'users';
         INSERT INTO usage_counters (node_id, resource, used) VALUES ('{reseller}', 'users', 11), ('{customer}', 'users', 11);"
    ))
    .unwrap();
    let verify = run(allot(&db).arg("verify"));
    assert_eq!(verify.status.code(), Some(1));
    let stdout = text(&verify.stdout);
    assert!(
        stdout.contains(&format!("node {reseller} has allocated 15 users")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("node {reseller}'s subtree uses 11 users")),
        "{stdout}"
    );
}
