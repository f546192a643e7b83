//! The database outage: PostgreSQL stopped and started under load, allot left running.
//!
//! The test starts a private PostgreSQL cluster of its own (`initdb` into a temporary directory, a
//! free loopback port, its own socket directory, fsync off), never the shared server. As root it
//! runs the server binaries as the `postgres` user (they refuse root). The postmaster is the test
//! process's child, and a watchdog `sh` (as in `mta.rs`) sends it SIGQUIT when the test process's
//! end closes its pipe, so no server outlives the test binary. It runs on either suite's run
//! (allot's own database is the cluster's), and skips itself, saying why, where no PostgreSQL
//! server binaries are installed.
//!
//! Under load (writes, reads and checks from concurrent tasks) the server is stopped
//! (`pg_ctl stop -m immediate`, then again with `-m fast`). While it is down every API answer is
//! 200-class or a 503 `unavailable` problem with `Retry-After` (never a 500, never slower than a
//! bound), `/readyz` says 503, a check of a known mailbox still accepts from the index and an
//! outbound check that would enrol defers `unavailable`. Started again on the same port, writes
//! succeed within a bound, the check sees them (its change-feed poller survived), all without a
//! restart of allot.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_on, wait_bounded};

/// No request may take longer than this while the database is down: the pool's connection timeout
/// (5 s) plus scheduling on a loaded machine.
const REQUEST_BOUND: Duration = Duration::from_secs(15);
/// How long the outage lasts.
const OUTAGE: Duration = Duration::from_secs(4);
/// How soon after the server is back a write must succeed.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A private PostgreSQL cluster, stopped and removed on drop.
struct PrivatePostgres {
    bin: PathBuf,
    /// The cluster's owner, when the test runs as root.
    user: Option<(u32, u32)>,
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Server>,
}

/// A running postmaster and its watchdog.
struct Server {
    postmaster: Child,
    watchdog: Child,
}

/// Where the newest installed PostgreSQL's server binaries are, if any.
fn server_binaries() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("postgres").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// The uid and gid of `postgres` in /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl PrivatePostgres {
    /// A new cluster, not started; `Err` says why none can be made here.
    fn create() -> Result<Self, String> {
        let bin =
            server_binaries().ok_or("no PostgreSQL server binaries in /usr/lib/postgresql")?;
        let user = if running_as_root() {
            Some(postgres_user().ok_or("running as root and there is no `postgres` user")?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("allot-outage-")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown the cluster directory: {e}"))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        let cluster = Self {
            bin,
            user,
            dir,
            port,
            server: None,
        };
        std::fs::create_dir(cluster.socket_dir()).map_err(|e| format!("socket dir: {e}"))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(cluster.socket_dir(), Some(uid), Some(gid))
                .map_err(|e| format!("chown the socket directory: {e}"))?;
        }
        let output = cluster
            .command("initdb")
            .arg("-D")
            .arg(cluster.data_dir())
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// One of the server binaries, as the cluster's owner, in its directory.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// Starts the postmaster in the foreground (our child) and waits until it accepts
    /// connections.
    fn start(&mut self) {
        assert!(self.server.is_none(), "the server runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the server log");
        let postmaster = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=40"])
            .args(["-c", "lc_messages=C"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the server log"))
            .stderr(log)
            .spawn()
            .expect("spawn postgres");
        // Spawned after the postmaster, so the postmaster does not hold the pipe's other end.
        let watchdog =
            crate::helpers::watchdog(postmaster.id(), "QUIT").expect("spawn the watchdog");
        self.server = Some(Server {
            postmaster,
            watchdog,
        });
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            use diesel::Connection;
            if diesel::PgConnection::establish(&self.url()).is_ok() {
                return;
            }
            let exited = self
                .server
                .as_mut()
                .and_then(|s| s.postmaster.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the private PostgreSQL did not start ({exited:?}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `pg_ctl stop -m <mode>`, then reaps the postmaster.
    fn stop(&mut self, mode: &str) {
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-w", "-t", "30", "-m", mode])
            .stdin(Stdio::null())
            .output()
            .expect("pg_ctl");
        assert!(
            output.status.success(),
            "pg_ctl stop -m {mode}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = self.server.take().expect("a running server");
        assert!(
            wait_bounded(
                &mut server.postmaster,
                Duration::from_secs(30),
                Duration::from_millis(20)
            ),
            "the postmaster exits after pg_ctl stop"
        );
        let _ = server.watchdog.kill();
        let _ = server.watchdog.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Ok(Some(_)) = server.postmaster.try_wait() {
                // Reaped already: its pid may be another process's now.
                let _ = server.watchdog.kill();
            }
            // The watchdog sends SIGQUIT (an immediate shutdown) when its input ends.
            drop(server.watchdog.stdin.take());
            if !wait_bounded(
                &mut server.postmaster,
                Duration::from_secs(20),
                Duration::from_millis(20),
            ) {
                let _ = server.postmaster.kill();
                let _ = server.postmaster.wait();
            }
            let _ = server.watchdog.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- private PostgreSQL log ---\n{}--- end ---", self.log());
        }
    }
}

/// One answer seen under load.
#[derive(Debug, Clone)]
struct Seen {
    what: &'static str,
    status: u16,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

/// Sends `request` and records what came back; a transport error or timeout is status 0.
async fn observe(what: &'static str, request: reqwest::RequestBuilder) -> Seen {
    let started = Instant::now();
    let response = request.timeout(REQUEST_BOUND * 2).send().await;
    let (status, retry_after, body) = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.json::<Value>().await.unwrap_or(Value::Null);
            (status, retry_after, body)
        }
        Err(err) => (0, None, json!(err.to_string())),
    };
    Seen {
        what,
        status,
        retry_after,
        body,
        took: started.elapsed(),
    }
}

/// What the load needs: the app, an admin's token, a check key, the customer and a known mailbox.
#[derive(Clone)]
struct Target {
    address: String,
    client: reqwest::Client,
    token: String,
    check_key: String,
    customer: String,
}

impl Target {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(&self.token)
    }

    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.token)
            .json(body)
    }

    fn check(&self, address: &str, direction: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/check", self.address))
            .bearer_auth(&self.check_key)
            .json(&json!({"address": address, "direction": direction}))
    }

    fn create_mailbox(&self, address: &str) -> reqwest::RequestBuilder {
        self.post(
            &format!("/v1/nodes/{}/mailboxes", self.customer),
            &json!({"address": address}),
        )
    }
}

async fn seed(app: &TestApp) -> Target {
    let admin = app.as_admin().await;
    let root = admin.node_id().await;
    admin
        .set_licence(json!([{"resource": "users", "amount": 100000}, {"resource": "module:base", "amount": 100000}, {"resource": "domains", "amount": 10}]))
        .await;
    let reseller = admin.create_child(&root, "reseller", "R").await;
    let customer = admin.create_child(&reseller, "customer", "C").await;
    for node in [&reseller, &customer] {
        for resource in ["users", "module:base"] {
            admin.grant(node, resource, 50000).await;
        }
        admin.grant(node, "domains", 5).await;
    }
    admin.register_domain(&customer, "c.example").await;
    admin.create_mailbox(&customer, "known@c.example").await;
    let key = admin.create_api_key(&root, "worker", "check").await;
    Target {
        address: app.address.clone(),
        client: app.client.clone(),
        token: admin.token.clone(),
        check_key: key["key"].as_str().unwrap().to_owned(),
        customer,
    }
}

/// Concurrent tasks writing, reading and checking until stopped; every answer is kept.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

impl Load {
    fn start(target: &Target) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for kind in ["write", "write", "read", "check", "check"] {
            let (target, stop, seen) = (target.clone(), stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let one = match kind {
                        "write" => {
                            let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
                            observe(
                                "write",
                                target.create_mailbox(&format!("load{n}@c.example")),
                            )
                            .await
                        }
                        "read" => {
                            observe(
                                "read",
                                target.get(&format!("/v1/nodes/{}/mailboxes", target.customer)),
                            )
                            .await
                        }
                        _ => observe("check", target.check("known@c.example", "inbound")).await,
                    };
                    seen.lock().unwrap().push(one);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
        Load { stop, seen, tasks }
    }

    async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task");
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Every answer is a success or a 503 `unavailable` problem with `Retry-After`, in bound; a check
/// of the known mailbox always accepts.
fn assert_answers(seen: &[Seen], phase: &str) {
    assert!(!seen.is_empty(), "{phase}: the load ran");
    for one in seen {
        assert!(one.took < REQUEST_BOUND, "{phase}: {one:?} took too long");
        match one.status {
            200 | 201 => {}
            503 => {
                assert_eq!(
                    one.body["type"], "/problems/unavailable",
                    "{phase}: {one:?}"
                );
                assert!(
                    one.retry_after
                        .as_deref()
                        .is_some_and(|s| s.parse::<u64>().is_ok()),
                    "{phase}: a 503 without Retry-After: {one:?}"
                );
            }
            _ => panic!("{phase}: neither success nor 503: {one:?}"),
        }
        if one.what == "check" {
            assert_eq!(
                one.status, 200,
                "{phase}: the check answers from its index: {one:?}"
            );
            assert_eq!(one.body["verdict"], "accept", "{phase}: {one:?}");
        }
    }
}

/// Stops the server with `mode` under load, asserts what allot answers meanwhile, starts it
/// again and asserts that allot recovers on its own.
async fn outage(cluster: &mut PrivatePostgres, target: &Target, mode: &str) {
    let load = Load::start(target);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| cluster.stop(mode));
    let down_since = Instant::now();

    // While it is down: the API says 503 with Retry-After, readiness says not ready, liveness
    // says alive, the check answers from its index, and an enrolment defers.
    let read = observe(
        "read",
        target.get(&format!("/v1/nodes/{}", target.customer)),
    )
    .await;
    assert_eq!(read.status, 503, "{mode}: a read while down: {read:?}");
    let write = observe("write", target.create_mailbox("during@c.example")).await;
    assert_eq!(write.status, 503, "{mode}: a write while down: {write:?}");
    assert_answers(&[read, write], mode);
    let ready = observe(
        "readyz",
        target.client.get(format!("{}/readyz", target.address)),
    )
    .await;
    assert_eq!(ready.status, 503, "{mode}: /readyz while down");
    assert!(
        ready.retry_after.is_some(),
        "{mode}: /readyz's 503 says Retry-After"
    );
    let alive = observe(
        "healthz",
        target.client.get(format!("{}/healthz", target.address)),
    )
    .await;
    assert_eq!(alive.status, 200, "{mode}: /healthz while down");
    let known = observe("check", target.check("known@c.example", "inbound")).await;
    assert_eq!(known.body["verdict"], "accept", "{mode}: {known:?}");
    let enrol = observe("check", target.check("newcomer@c.example", "outbound")).await;
    assert_eq!(enrol.status, 200, "{mode}: {enrol:?}");
    assert_eq!(enrol.body["verdict"], "defer", "{mode}: {enrol:?}");
    assert_eq!(enrol.body["reason"], "unavailable", "{mode}: {enrol:?}");
    assert!(enrol.took < REQUEST_BOUND, "{mode}: {enrol:?}");
    if let Some(rest) = OUTAGE.checked_sub(down_since.elapsed()) {
        tokio::time::sleep(rest).await;
    }

    tokio::task::block_in_place(|| cluster.start());
    let back = Instant::now();
    let address = format!("after-{mode}@c.example");
    loop {
        let write = observe("write", target.create_mailbox(&address)).await;
        if write.status == 201 {
            break;
        }
        assert_answers(std::slice::from_ref(&write), mode);
        assert!(
            back.elapsed() < RECOVERY_BOUND,
            "{mode}: no write succeeded within {RECOVERY_BOUND:?} of the restart: {write:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recovered_in = back.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = load.finish().await;
    assert_answers(&seen, mode);
    let count = |what: &str, status: u16| {
        seen.iter()
            .filter(|s| s.what == what && s.status == status)
            .count()
    };
    assert!(count("write", 503) > 0, "{mode}: the load met the outage");
    assert!(count("write", 201) > 0, "{mode}: the load wrote");
    eprintln!(
        "outage -m {mode}: {} answers ({} writes 201, {} writes 503, {} reads 503, {} checks \
         accepted); a write succeeded {recovered_in:?} after the restart",
        seen.len(),
        count("write", 201),
        count("write", 503),
        count("read", 503),
        count("check", 200),
    );

    // Everything is back: readiness, and the check sees the new mailbox (its poller survived).
    let ready = observe(
        "readyz",
        target.client.get(format!("{}/readyz", target.address)),
    )
    .await;
    assert_eq!(ready.status, 200, "{mode}: /readyz after the restart");
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let known = observe("check", target.check(&address, "inbound")).await;
        if known.body["verdict"] == "accept" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{mode}: the check never saw {address}: {known:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let enrol = observe(
        "check",
        target.check(&format!("sender-{mode}@c.example"), "outbound"),
    )
    .await;
    assert_eq!(
        enrol.body["verdict"], "accept",
        "{mode}: enrolment works again: {enrol:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_stopped_and_started_under_load_answers_503_and_recovers_without_a_restart() {
    let mut cluster = match PrivatePostgres::create() {
        Ok(cluster) => cluster,
        Err(why) => {
            eprintln!("skipped: cannot run a private PostgreSQL: {why}");
            return;
        }
    };
    tokio::task::block_in_place(|| cluster.start());
    let url = cluster.url();
    let app = spawn_app_on(&url, |config| config.require_domain_verification = false).await;
    let target = seed(&app).await;
    for mode in ["immediate", "fast"] {
        outage(&mut cluster, &target, mode).await;
    }
    app.assert_verified();
    drop(app);
}
