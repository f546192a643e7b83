//! A private, real Postfix on loopback, and the small SMTP client the tests speak to it with: for
//! tests that assert what Postfix itself answers when it asks allot (policy delegation,
//! socketmap), not what allot would like it to answer.
//!
//! [`Postfix::start`] writes a whole instance into a temporary directory: its own
//! `config_directory`, `queue_directory`, `data_directory` and log file (`maillog_file`, written
//! by the instance's own `postlogd`). `postfix -c DIR check` creates the queue directories with
//! Postfix's own owners and modes; then the test process runs `master -c DIR -s` as its child. The
//! machine's Postfix configuration is only read for compiled-in paths and never written; the
//! system instance is not started. Master and daemons must run as root (they drop to `postfix`).
//!
//! Why `master` in the foreground and not `postfix start`: that leaves a daemon that outlives a
//! panicking test, and `postfix start-fg` keeps `master` under a shell that does not pass signals
//! on. On SIGTERM the master signals its process group (every daemon of the instance) and exits.
//! Two things send it: [`Drop`], which also runs when a test panics, and a watchdog `sh` that
//! reads a pipe from the test process and sends SIGTERM when the pipe closes. The kernel closes it
//! when the test process ends by any means, killed included, so no instance outlives the test
//! binary.
//!
//! Ports are chosen by binding port 0 on loopback and releasing it. Should another process take
//! one meanwhile, the master fails to bind and exits; it says so only to syslog (its log file is
//! written by a daemon it has not started yet), so an instance whose master exits before it
//! answers is retried on new ports.
//!
//! The base configuration is an MX for nobody: no local or virtual domain, no client in
//! `mynetworks` (every test client is a stranger from the internet), relaying refused with 554
//! (`reject_unauth_destination`, where compatibility level 3.6 would say 454), no DNS and no
//! reverse lookup of clients, no sleep after a refused command. A caller's `main.cf` line for a
//! parameter replaces the base one, and a caller's `master.cf` service replaces the base service of
//! the same name and type. A test that panics while an instance is alive prints the instance's
//! log.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::helpers::wait_bounded;

/// How long an instance may take to answer on both ports.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the master may take to exit after SIGTERM before its process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound on every connect and every reply. Generous: Postfix's own timeouts towards a policy
/// service or a socketmap are longer still, so a test that hits this has found a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Postfix::wait_for_log`] waits, e.g. for a delivery.
const LOG_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: usize = 3;
const POLL: Duration = Duration::from_millis(50);

/// The name the client gives in EHLO.
const CLIENT_NAME: &str = "client.test.invalid";

/// `{dir}` is the instance's directory.
const BASE_MAIN_CF: &str = "\
compatibility_level = 3.6
queue_directory = {dir}/spool
data_directory = {dir}/data
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
myhostname = mx.test.invalid
mydomain = test.invalid
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_error_sleep_time = 0s
biff = no
";

/// The internal services, as Debian's master.cf has them but with chroot off (the instance has no
/// chroot jail to copy files into).
const BASE_MASTER_CF: &str = "\
pickup     unix  n  -  n  60    1  pickup
cleanup    unix  n  -  n  -     0  cleanup
qmgr       unix  n  -  n  300   1  qmgr
rewrite    unix  -  -  n  -     -  trivial-rewrite
bounce     unix  -  -  n  -     0  bounce
defer      unix  -  -  n  -     0  bounce
trace      unix  -  -  n  -     0  bounce
verify     unix  -  -  n  -     1  verify
flush      unix  n  -  n  1000? 0  flush
proxymap   unix  -  -  n  -     -  proxymap
proxywrite unix  -  -  n  -     1  proxymap
smtp       unix  -  -  n  -     -  smtp
relay      unix  -  -  n  -     -  smtp
showq      unix  n  -  n  -     -  showq
error      unix  -  -  n  -     -  error
retry      unix  -  -  n  -     -  error
discard    unix  -  -  n  -     -  discard
local      unix  -  n  n  -     -  local
virtual    unix  -  n  n  -     -  virtual
lmtp       unix  -  -  n  -     -  lmtp
anvil      unix  -  -  n  -     1  anvil
scache     unix  -  -  n  -     1  scache
postlog    unix-dgram n  -  n  -  1  postlogd
";

/// Whether the tests that need a real Postfix cannot run here: Debian's `postfix` is not
/// installed, or the tests do not run as root (the master must). `cargo test` on a fresh machine
/// then skips them, saying so; `.ci/run` installs Postfix and sets `ALLOT_TEST_REQUIRE_POSTFIX`,
/// under which a missing Postfix fails instead, so CI can never pass without them.
pub fn missing() -> bool {
    let installed = ["/usr/sbin/postfix", "/usr/bin/postfix"]
        .iter()
        .any(|path| Path::new(path).exists());
    // `/proc/self` belongs to the process's effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if installed && root {
        return false;
    }
    let why = if installed {
        "they must run as root"
    } else {
        "Debian's postfix package is not installed"
    };
    if std::env::var_os("ALLOT_TEST_REQUIRE_POSTFIX").is_some() {
        panic!("a real Postfix is required (ALLOT_TEST_REQUIRE_POSTFIX), but {why}");
    }
    eprintln!("skipped: this test needs a real Postfix, and {why}");
    true
}

/// A private Postfix instance, stopped and removed on drop.
pub struct Postfix {
    /// Where the `{smtp}` service of the caller's master.cf listens.
    pub smtp: SocketAddr,
    /// Where the `{submission}` service of the caller's master.cf listens.
    pub submission: SocketAddr,
    master: Child,
    watchdog: Child,
    // Removed after `drop` has stopped the master.
    dir: tempfile::TempDir,
}

/// Why one attempt to start failed.
enum StartError {
    /// The master exited before it answered: a port may have been taken meanwhile.
    Exited(String),
    /// Anything else; trying again would not help.
    Fatal(String),
}

impl Postfix {
    /// Starts an instance with `main_cf` added to the base main.cf and the services of `master_cf`
    /// (where `{smtp}` and `{submission}` stand for two free loopback ports) added to the base
    /// internal services, and returns once both ports answer with a 220 banner.
    ///
    /// Both ports must be used by `master_cf`. Panics with the log if the instance does not come
    /// up.
    pub async fn start(main_cf: &str, master_cf: &str) -> Postfix {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(main_cf, master_cf).await {
                Ok(postfix) => return postfix,
                Err(StartError::Exited(failure)) => failures.push(failure),
                Err(StartError::Fatal(failure)) => panic!("Postfix did not start: {failure}"),
            }
        }
        panic!(
            "Postfix did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    async fn try_start(main_cf: &str, master_cf: &str) -> Result<Postfix, StartError> {
        let fatal = |what: &str, e: &dyn fmt::Display| StartError::Fatal(format!("{what}: {e}"));
        let dir = tempfile::Builder::new()
            .prefix("allot-postfix-")
            .tempdir()
            .map_err(|e| fatal("a temporary directory", &e))?;
        // The daemons run as `postfix` and must reach the queue inside it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fatal("chmod the instance directory", &e))?;
        let etc = dir.path().join("etc");
        for sub in [&etc, &dir.path().join("spool")] {
            std::fs::create_dir(sub).map_err(|e| fatal("an instance directory", &e))?;
        }
        let (smtp, submission) = free_ports().map_err(|e| fatal("two free ports", &e))?;
        let dir_str = dir.path().to_str().expect("a UTF-8 temporary directory");
        std::fs::write(etc.join("main.cf"), main_cf_text(dir_str, main_cf))
            .map_err(|e| fatal("write main.cf", &e))?;
        std::fs::write(
            etc.join("master.cf"),
            master_cf_text(master_cf, smtp.port(), submission.port()),
        )
        .map_err(|e| fatal("write master.cf", &e))?;

        // Creates the queue and data directories, and refuses a configuration Postfix cannot use.
        let check = run(Command::new("postfix").arg("-c").arg(&etc).arg("check"))
            .map_err(|e| fatal("postfix check (is Postfix installed, and are we root?)", &e))?;
        let daemon_directory = run(Command::new("postconf")
            .arg("-c")
            .arg(&etc)
            .args(["-h", "daemon_directory"]))
        .map_err(|e| fatal("postconf", &e))?;
        let master_log = dir.path().join("master.out");
        let output = std::fs::File::create(&master_log).map_err(|e| fatal("master.out", &e))?;
        let mut master = Command::new(Path::new(daemon_directory.trim()).join("master"))
            .arg("-c")
            .arg(&etc)
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(output.try_clone().map_err(|e| fatal("master.out", &e))?)
            .stderr(output)
            .spawn()
            .map_err(|e| fatal("spawn master", &e))?;
        // Spawned after the master, so the master does not hold the pipe's other end. Rust opens
        // the pipe close-on-exec, so no other test's child holds it either.
        let watchdog = crate::helpers::watchdog(master.id(), "TERM");
        let watchdog = match watchdog {
            Ok(watchdog) => watchdog,
            Err(e) => {
                let _ = master.kill();
                let _ = master.wait();
                return Err(fatal("spawn the watchdog", &e));
            }
        };
        let mut postfix = Postfix {
            smtp,
            submission,
            master,
            watchdog,
            dir,
        };
        match postfix.wait_until_ready().await {
            Ok(()) => Ok(postfix),
            Err(failure) => {
                let report = |failure: String| {
                    format!(
                        "{failure}\n--- postfix check ---\n{check}\n--- master output ---\n{}\n--- \
                         maillog ---\n{}",
                        std::fs::read_to_string(&master_log).unwrap_or_default(),
                        postfix.log()
                    )
                };
                Err(match failure {
                    StartError::Exited(failure) => StartError::Exited(report(failure)),
                    StartError::Fatal(failure) => StartError::Fatal(report(failure)),
                })
            }
        }
    }

    /// Polls both ports until each answers a 220 banner, while the master lives.
    async fn wait_until_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for addr in [self.smtp, self.submission] {
            loop {
                if let Ok(Some(status)) = self.master.try_wait() {
                    return Err(StartError::Exited(format!(
                        "the master exited ({status}) before {addr} answered"
                    )));
                }
                match Smtp::try_connect(addr).await {
                    Ok((smtp, banner)) if banner.code == 220 => {
                        smtp.quit().await;
                        break;
                    }
                    Ok((_, banner)) => {
                        return Err(StartError::Fatal(format!("{addr} greeted with {banner}")));
                    }
                    Err(e) if Instant::now() > deadline => {
                        return Err(StartError::Fatal(format!(
                            "{addr} did not answer in {READY_TIMEOUT:?}: {e}"
                        )));
                    }
                    Err(_) => tokio::time::sleep(POLL).await,
                }
            }
        }
        Ok(())
    }

    /// The instance's log so far (Postfix's `maillog_file`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// Waits until the log holds `needle` `count` times (deliveries are logged once per
    /// recipient); false if it does not within a bounded time.
    pub async fn wait_for_log(&self, needle: &str, count: usize) -> bool {
        let deadline = Instant::now() + LOG_TIMEOUT;
        while Instant::now() < deadline {
            if self.log().matches(needle).count() >= count {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
        false
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.master.try_wait() {
            // Reaped already: its pid may be another process's by now, so the watchdog must not
            // send it anything.
            let _ = self.watchdog.kill();
        }
        // The watchdog sends the master SIGTERM when its input ends.
        drop(self.watchdog.stdin.take());
        if !wait_bounded(&mut self.master, STOP_TIMEOUT, Duration::from_millis(10)) {
            // The master is still our unreaped child, so its pid (and process group) is still it.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.master.id())])
                .status();
            let _ = self.master.kill();
            let _ = self.master.wait();
        }
        if !wait_bounded(&mut self.watchdog, STOP_TIMEOUT, Duration::from_millis(10)) {
            let _ = self.watchdog.kill();
            let _ = self.watchdog.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- Postfix log ({}) ---\n{}--- end of the Postfix log ---",
                self.dir.path().display(),
                self.log()
            );
        }
    }
}

/// Runs a short command to completion; its output, or an error that includes it.
fn run(command: &mut Command) -> io::Result<String> {
    let output = command.stdin(Stdio::null()).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(io::Error::other(format!("{}: {text}", output.status)))
    }
}

/// Two distinct loopback ports that were free a moment ago.
fn free_ports() -> io::Result<(SocketAddr, SocketAddr)> {
    let first = TcpListener::bind("127.0.0.1:0")?;
    let second = TcpListener::bind("127.0.0.1:0")?;
    Ok((first.local_addr()?, second.local_addr()?))
}

/// The parameter a main.cf line sets, if it starts one.
fn parameter_name(line: &str) -> Option<&str> {
    if line.starts_with(|c: char| c.is_whitespace() || c == '#') {
        return None;
    }
    line.split_once('=').map(|(name, _)| name.trim())
}

/// The base main.cf for the instance in `dir` without the parameters `extra` sets, then `extra`.
fn main_cf_text(dir: &str, extra: &str) -> String {
    let overridden: HashSet<&str> = extra.lines().filter_map(parameter_name).collect();
    let mut text: String = BASE_MAIN_CF
        .replace("{dir}", dir)
        .lines()
        .filter(|line| parameter_name(line).is_none_or(|name| !overridden.contains(name)))
        .map(|line| format!("{line}\n"))
        .collect();
    text.push_str(extra);
    text.push('\n');
    text
}

/// The service (name and type) a master.cf line starts, if it starts one.
fn service(line: &str) -> Option<(&str, &str)> {
    if line.starts_with(|c: char| c.is_whitespace() || c == '#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    Some((fields.next()?, fields.next()?))
}

/// The caller's services with the ports filled in, then the base services it does not redefine.
fn master_cf_text(services: &str, smtp: u16, submission: u16) -> String {
    let services = services
        .replace("{smtp}", &smtp.to_string())
        .replace("{submission}", &submission.to_string());
    let defined: HashSet<(&str, &str)> = services.lines().filter_map(service).collect();
    let mut text = services.clone();
    text.push('\n');
    let mut skipping = false;
    for line in BASE_MASTER_CF.lines() {
        // Continuation lines (`  -o ...`) belong to the service above them.
        if let Some(key) = service(line) {
            skipping = defined.contains(&key);
        }
        if !skipping {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// An SMTP reply: its code and its text, the lines of a multi-line reply joined with `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Reply {
    /// The RFC 3463 enhanced status code that opens the text (`5.1.1`), if there is one.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let well_formed = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts.all(|part| {
                (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit())
            });
        well_formed.then_some(first)
    }
}

/// As on the wire for a one-line reply: `550 5.1.1 <b@ok.example>: ...`.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// A client's side of one SMTP session. Every read is bounded; a failure panics, naming the
/// command.
pub struct Smtp {
    stream: BufReader<TcpStream>,
}

impl Smtp {
    /// Connects and reads the banner.
    pub async fn connect(addr: SocketAddr) -> (Smtp, Reply) {
        Self::try_connect(addr)
            .await
            .unwrap_or_else(|e| panic!("SMTP to {addr}: {e}"))
    }

    /// Connects, expects a 220 banner, and says EHLO, expecting 250.
    pub async fn ehlo(addr: SocketAddr) -> Smtp {
        let (mut smtp, banner) = Self::connect(addr).await;
        assert_eq!(banner.code, 220, "the banner: {banner}");
        let ehlo = smtp.command(&format!("EHLO {CLIENT_NAME}")).await;
        assert_eq!(ehlo.code, 250, "the answer to EHLO: {ehlo}");
        smtp
    }

    async fn try_connect(addr: SocketAddr) -> io::Result<(Smtp, Reply)> {
        let stream = bounded(TcpStream::connect(addr)).await??;
        let mut smtp = Smtp {
            stream: BufReader::new(stream),
        };
        let banner = smtp.read_reply().await?;
        Ok((smtp, banner))
    }

    /// Sends `line` and CRLF; the reply.
    pub async fn command(&mut self, line: &str) -> Reply {
        self.try_command(line)
            .await
            .unwrap_or_else(|e| panic!("SMTP {line:?}: {e}"))
    }

    async fn try_command(&mut self, line: &str) -> io::Result<Reply> {
        bounded(
            self.stream
                .get_mut()
                .write_all(format!("{line}\r\n").as_bytes()),
        )
        .await??;
        self.read_reply().await
    }

    /// Sends DATA and, if the server is ready (354), `message` (lines separated by `\n` or
    /// `\r\n`, dot-stuffed here) and the final dot; the last reply.
    pub async fn data(&mut self, message: &str) -> Reply {
        let ready = self.command("DATA").await;
        if ready.code != 354 {
            return ready;
        }
        let mut wire = String::new();
        for line in message.lines() {
            if line.starts_with('.') {
                wire.push('.');
            }
            wire.push_str(line);
            wire.push_str("\r\n");
        }
        wire.push('.');
        self.command(&wire).await
    }

    /// Says QUIT and reads the answer if one comes; the session is over either way.
    pub async fn quit(mut self) {
        let _ = self.try_command("QUIT").await;
    }

    /// One reply, all its lines.
    async fn read_reply(&mut self) -> io::Result<Reply> {
        let mut code = None;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if bounded(self.stream.read_line(&mut line)).await?? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the server closed the connection after {lines:?}"),
                ));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let malformed = || {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not an SMTP reply line: {line:?}"),
                )
            };
            let this_code: u16 = line
                .get(..3)
                .ok_or_else(malformed)?
                .parse()
                .map_err(|_| malformed())?;
            if *code.get_or_insert(this_code) != this_code {
                return Err(malformed());
            }
            let last = match line.as_bytes().get(3) {
                None | Some(b' ') => true,
                Some(b'-') => false,
                Some(_) => return Err(malformed()),
            };
            lines.push(line.get(4..).unwrap_or_default().to_owned());
            if last {
                return Ok(Reply {
                    code: this_code,
                    text: lines.join("\n"),
                });
            }
        }
    }
}

/// `future` within [`IO_TIMEOUT`], a timeout being an I/O error.
async fn bounded<T>(future: impl Future<Output = T>) -> io::Result<T> {
    tokio::time::timeout(IO_TIMEOUT, future).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer in {IO_TIMEOUT:?}"),
        )
    })
}

/// EHLO, MAIL FROM:<from>, RCPT TO:<to>, QUIT: the answer to RCPT, or to MAIL if that refused.
pub async fn rcpt(addr: SocketAddr, from: &str, to: &str) -> Reply {
    let mut smtp = Smtp::ehlo(addr).await;
    let mail = smtp.command(&format!("MAIL FROM:<{from}>")).await;
    let reply = if mail.code == 250 {
        smtp.command(&format!("RCPT TO:<{to}>")).await
    } else {
        mail
    };
    smtp.quit().await;
    reply
}

/// Sends `message` from `from` to `to` in one session: the answer to the final dot, or the first
/// refusal on the way (MAIL, RCPT or DATA).
pub async fn send(addr: SocketAddr, from: &str, to: &str, message: &str) -> Reply {
    let mut smtp = Smtp::ehlo(addr).await;
    let mut reply = smtp.command(&format!("MAIL FROM:<{from}>")).await;
    if reply.code == 250 {
        reply = smtp.command(&format!("RCPT TO:<{to}>")).await;
    }
    if reply.code == 250 {
        reply = smtp.data(message).await;
    }
    smtp.quit().await;
    reply
}

#[cfg(test)]
mod tests {
    //! What Postfix 3.7 does, pinned: the harness works, and the facts allot's listeners are
    //! designed on (which keys a socketmap is asked, what a temporary failure becomes, in which
    //! order the policy and the recipient maps are consulted) still hold.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncReadExt;

    use super::*;

    const MX: &str = "127.0.0.1:{smtp} inet n - n - - smtpd\n\
                      127.0.0.1:{submission} inet n - n - - smtpd\n";

    type Attributes = HashMap<String, String>;

    /// A policy service that answers by a function of the request and records every request
    /// before it answers.
    struct PolicyService {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<Attributes>>>,
    }

    impl PolicyService {
        async fn start(action: fn(&Attributes) -> &'static str) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let service = Self {
                addr: listener.local_addr().unwrap(),
                requests: requests.clone(),
            };
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(serve_policy(conn, action, requests.clone()));
                }
            });
            service
        }

        fn requests(&self) -> Vec<Attributes> {
            self.requests.lock().unwrap().clone()
        }
    }

    async fn serve_policy(
        conn: TcpStream,
        action: fn(&Attributes) -> &'static str,
        requests: Arc<Mutex<Vec<Attributes>>>,
    ) -> io::Result<()> {
        let (read, mut write) = conn.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut attributes = Attributes::new();
        while let Some(line) = lines.next_line().await? {
            if line.is_empty() {
                let request = std::mem::take(&mut attributes);
                let answer = format!("action={}\n\n", action(&request));
                requests.lock().unwrap().push(request);
                write.write_all(answer.as_bytes()).await?;
            } else if let Some((name, value)) = line.split_once('=') {
                attributes.insert(name.to_owned(), value.to_owned());
            }
        }
        Ok(())
    }

    /// A socketmap server that answers by a function of (map, key) and records every lookup as
    /// `"map key"` before it answers.
    struct SocketmapServer {
        addr: SocketAddr,
        lookups: Arc<Mutex<Vec<String>>>,
    }

    impl SocketmapServer {
        async fn start(answer: fn(&str, &str) -> &'static str) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let lookups = Arc::new(Mutex::new(Vec::new()));
            let server = Self {
                addr: listener.local_addr().unwrap(),
                lookups: lookups.clone(),
            };
            tokio::spawn(async move {
                while let Ok((conn, _)) = listener.accept().await {
                    tokio::spawn(serve_socketmap(conn, answer, lookups.clone()));
                }
            });
            server
        }

        /// `socketmap:inet:ADDR:map`, for main.cf.
        fn table(&self, map: &str) -> String {
            format!("socketmap:inet:{}:{map}", self.addr)
        }

        /// The lookups since the last call.
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.lookups.lock().unwrap())
        }
    }

    async fn serve_socketmap(
        conn: TcpStream,
        answer: fn(&str, &str) -> &'static str,
        lookups: Arc<Mutex<Vec<String>>>,
    ) -> io::Result<()> {
        let mut conn = BufReader::new(conn);
        loop {
            let mut length = Vec::new();
            if conn.read_until(b':', &mut length).await? == 0 {
                return Ok(());
            }
            let length: usize = String::from_utf8_lossy(&length)
                .trim_end_matches(':')
                .parse()
                .map_err(io::Error::other)?;
            // The payload and its terminating comma.
            let mut payload = vec![0; length + 1];
            conn.read_exact(&mut payload).await?;
            let request = String::from_utf8_lossy(&payload[..length]).into_owned();
            let (map, key) = request.split_once(' ').unwrap_or((&request, ""));
            let reply = answer(map, key);
            lookups.lock().unwrap().push(request.clone());
            conn.get_mut()
                .write_all(format!("{}:{reply},", reply.len()).as_bytes())
                .await?;
        }
    }

    #[tokio::test]
    async fn postfix_accepts_a_listed_mailbox_and_refuses_an_unknown_one_and_relaying() {
        if missing() {
            return;
        }
        // Not `static:ok.example` for the domains: a static table finds every key, so every
        // domain would be a mailbox domain and relaying could not be refused.
        let postfix = Postfix::start(
            "virtual_mailbox_domains = ok.example\n\
             virtual_mailbox_maps = inline:{ a@ok.example=x }",
            MX,
        )
        .await;
        let from = "sender@elsewhere.example";

        let listed = rcpt(postfix.smtp, from, "a@ok.example").await;
        assert_eq!(listed.to_string(), "250 2.1.5 Ok");
        let unknown = rcpt(postfix.smtp, from, "b@ok.example").await;
        assert_eq!(
            unknown.to_string(),
            "550 5.1.1 <b@ok.example>: Recipient address rejected: User unknown in virtual \
             mailbox table"
        );
        assert_eq!(unknown.enhanced(), Some("5.1.1"));
        let relay = rcpt(postfix.smtp, from, "someone@elsewhere.example").await;
        assert_eq!(
            relay.to_string(),
            "554 5.7.1 <someone@elsewhere.example>: Relay access denied"
        );
        assert_eq!(relay.enhanced(), Some("5.7.1"));
    }

    fn policy_by_recipient(request: &Attributes) -> &'static str {
        match request.get("recipient").map(String::as_str) {
            Some("nobody@ok.example") => "550 5.1.1 test_reason",
            Some("full@ok.example") => "DEFER_IF_PERMIT 4.7.1 licence",
            _ => "DUNNO",
        }
    }

    #[tokio::test]
    async fn postfix_asks_the_policy_service_at_rcpt_and_answers_with_its_action() {
        if missing() {
            return;
        }
        let policy = PolicyService::start(policy_by_recipient).await;
        let postfix = Postfix::start(
            &format!(
                "virtual_mailbox_domains = ok.example\n\
                 virtual_mailbox_maps = inline:{{ a@ok.example=x nobody@ok.example=x \
                 full@ok.example=x }}\n\
                 smtpd_recipient_restrictions = check_policy_service inet:{}",
                policy.addr
            ),
            "127.0.0.1:{smtp} inet n - n - - smtpd\n\
             127.0.0.1:{submission} inet n - n - - smtpd \
             -o smtpd_policy_service_policy_context=outbound\n",
        )
        .await;

        for (port, context) in [(postfix.smtp, ""), (postfix.submission, "outbound")] {
            let from = "sender@elsewhere.example";
            let refused = rcpt(port, from, "nobody@ok.example").await;
            assert_eq!(
                refused.to_string(),
                "550 5.1.1 <nobody@ok.example>: Recipient address rejected: test_reason"
            );
            let deferred = rcpt(port, from, "full@ok.example").await;
            assert_eq!(
                deferred.to_string(),
                "450 4.7.1 <full@ok.example>: Recipient address rejected: licence"
            );
            assert_eq!(deferred.enhanced(), Some("4.7.1"));
            assert_eq!(
                rcpt(port, from, "a@ok.example").await.to_string(),
                "250 2.1.5 Ok"
            );

            let requests = std::mem::take(&mut *policy.requests.lock().unwrap());
            let seen: Vec<_> = requests
                .iter()
                .map(|r| {
                    (
                        r["recipient"].as_str(),
                        r["protocol_state"].as_str(),
                        r["policy_context"].as_str(),
                        r["sender"].as_str(),
                    )
                })
                .collect();
            assert_eq!(
                seen,
                [
                    ("nobody@ok.example", "RCPT", context, from),
                    ("full@ok.example", "RCPT", context, from),
                    ("a@ok.example", "RCPT", context, from),
                ]
            );
        }
    }

    fn mailbox_b(map: &str, key: &str) -> &'static str {
        match (map, key) {
            ("mailbox", "b@ok.example") => "OK b",
            ("mailbox", "temp@ok.example") => "TEMP backend down",
            _ => "NOTFOUND ",
        }
    }

    #[tokio::test]
    async fn a_socketmap_is_asked_only_the_whole_lowercased_address_and_temp_defers() {
        if missing() {
            return;
        }
        let map = SocketmapServer::start(mailbox_b).await;
        let postfix = Postfix::start(
            &format!(
                "recipient_delimiter = +\n\
                 virtual_mailbox_domains = ok.example\n\
                 virtual_mailbox_maps = {}",
                map.table("mailbox")
            ),
            MX,
        )
        .await;
        let mut smtp = Smtp::ehlo(postfix.smtp).await;
        smtp.command("MAIL FROM:<sender@elsewhere.example>").await;
        map.take();

        // A socketmap is a "pattern" table to Postfix, like regexp: no `b@ok.example` without the
        // extension, no `@ok.example`.
        let extended = smtp.command("RCPT TO:<b+ext@ok.example>").await;
        assert_eq!(
            extended.to_string(),
            "550 5.1.1 <b+ext@ok.example>: Recipient address rejected: User unknown in virtual \
             mailbox table"
        );
        assert_eq!(map.take(), ["mailbox b+ext@ok.example"]);

        let temp = smtp.command("RCPT TO:<temp@ok.example>").await;
        assert_eq!(
            temp.to_string(),
            "451 4.3.0 <temp@ok.example>: Temporary lookup failure"
        );
        assert_eq!(map.take(), ["mailbox temp@ok.example"]);

        let upper = smtp.command("RCPT TO:<B@OK.Example>").await;
        assert_eq!(upper.to_string(), "250 2.1.5 Ok");
        assert_eq!(map.take(), ["mailbox b@ok.example"]);
        smtp.quit().await;
    }

    fn domains(map: &str, key: &str) -> &'static str {
        match (map, key) {
            (_, "temp.example") => "TEMP backend down",
            ("domains" | "relay", "ok.example") => "OK ok.example",
            ("mailbox", _) => "OK mailbox",
            _ => "NOTFOUND ",
        }
    }

    #[tokio::test]
    async fn a_temporary_failure_of_a_domain_socketmap_defers_the_recipient() {
        if missing() {
            return;
        }
        for (parameter, name) in [
            ("virtual_mailbox_domains", "domains"),
            ("relay_domains", "relay"),
        ] {
            let map = SocketmapServer::start(domains).await;
            // Not virtual_mailbox_maps with relay_domains: virtual_mailbox_domains defaults to
            // $virtual_mailbox_maps, and this one finds every key.
            let main_cf = if parameter == "relay_domains" {
                format!("{parameter} = {}", map.table(name))
            } else {
                format!(
                    "{parameter} = {}\nvirtual_mailbox_maps = {}",
                    map.table(name),
                    map.table("mailbox")
                )
            };
            let postfix = Postfix::start(&main_cf, MX).await;
            let mut smtp = Smtp::ehlo(postfix.smtp).await;
            smtp.command("MAIL FROM:<sender@elsewhere.example>").await;
            // The sender's domain is classified too.
            assert_eq!(map.take(), [format!("{name} elsewhere.example")]);

            let temp = smtp.command("RCPT TO:<a@temp.example>").await;
            assert_eq!(
                temp.to_string(),
                "451 4.3.0 <a@temp.example>: Temporary lookup failure",
                "{parameter}"
            );
            assert_eq!(map.take(), [format!("{name} temp.example")]);

            let listed = smtp.command("RCPT TO:<a@ok.example>").await;
            assert_eq!(listed.to_string(), "250 2.1.5 Ok", "{parameter}");
            let expected: &[String] = if parameter == "relay_domains" {
                // relay_recipient_maps is empty: every recipient of a relay domain is accepted.
                &[format!("{name} ok.example")]
            } else {
                &[
                    format!("{name} ok.example"),
                    "mailbox a@ok.example".to_owned(),
                ]
            };
            assert_eq!(map.take(), expected, "{parameter}");

            let unlisted = smtp.command("RCPT TO:<a@elsewhere.example>").await;
            assert_eq!(
                unlisted.to_string(),
                "554 5.7.1 <a@elsewhere.example>: Relay access denied",
                "{parameter}"
            );
            smtp.quit().await;
        }
    }

    fn policy_by_local_part(request: &Attributes) -> &'static str {
        let recipient = request.get("recipient").map_or("", String::as_str);
        if recipient.starts_with("defer") {
            "DEFER_IF_PERMIT 4.7.1 licence"
        } else if recipient.starts_with("ok") {
            "OK"
        } else {
            "DUNNO"
        }
    }

    fn mailbox_none(map: &str, key: &str) -> &'static str {
        match (map, key) {
            ("mailbox", "listed@ok.example") => "OK listed",
            _ => "NOTFOUND ",
        }
    }

    #[tokio::test]
    async fn the_policy_is_asked_before_the_recipient_maps_and_its_deferral_wins() {
        if missing() {
            return;
        }
        let policy = PolicyService::start(policy_by_local_part).await;
        let map = SocketmapServer::start(mailbox_none).await;
        let postfix = Postfix::start(
            &format!(
                "virtual_mailbox_domains = ok.example\n\
                 virtual_mailbox_maps = {}\n\
                 smtpd_recipient_restrictions = check_policy_service inet:{}",
                map.table("mailbox"),
                policy.addr
            ),
            MX,
        )
        .await;
        let mut smtp = Smtp::ehlo(postfix.smtp).await;
        smtp.command("MAIL FROM:<sender@elsewhere.example>").await;

        // DEFER_IF_PERMIT turns the end of the restrictions into 450; the map is not asked.
        let deferred = smtp.command("RCPT TO:<defer-unknown@ok.example>").await;
        assert_eq!(
            deferred.to_string(),
            "450 4.7.1 <defer-unknown@ok.example>: Recipient address rejected: licence"
        );
        assert!(map.take().is_empty());

        // The policy's OK does not spare the recipient the map (smtpd_reject_unlisted_recipient).
        let unknown = smtp.command("RCPT TO:<ok-unknown@ok.example>").await;
        assert_eq!(
            unknown.to_string(),
            "550 5.1.1 <ok-unknown@ok.example>: Recipient address rejected: User unknown in \
             virtual mailbox table"
        );
        assert_eq!(map.take(), ["mailbox ok-unknown@ok.example"]);

        // DUNNO: the map decides.
        let listed = smtp.command("RCPT TO:<listed@ok.example>").await;
        assert_eq!(listed.to_string(), "250 2.1.5 Ok");
        assert_eq!(map.take(), ["mailbox listed@ok.example"]);
        smtp.quit().await;

        let asked: Vec<_> = policy
            .requests()
            .into_iter()
            .map(|r| r["recipient"].clone())
            .collect();
        assert_eq!(
            asked,
            [
                "defer-unknown@ok.example",
                "ok-unknown@ok.example",
                "listed@ok.example"
            ]
        );
    }

    fn postmaster_to_jane(map: &str, key: &str) -> &'static str {
        match (map, key) {
            ("alias", "postmaster@ok.example") => "OK jane@ok.example",
            ("mailbox", "jane@ok.example") => "OK jane",
            _ => "NOTFOUND ",
        }
    }

    #[tokio::test]
    async fn an_alias_from_a_socketmap_makes_postmaster_a_recipient() {
        if missing() {
            return;
        }
        let map = SocketmapServer::start(postmaster_to_jane).await;
        let postfix = Postfix::start(
            &format!(
                "virtual_mailbox_domains = ok.example\n\
                 virtual_mailbox_maps = {}\n\
                 virtual_alias_maps = {}\n\
                 virtual_transport = discard",
                map.table("mailbox"),
                map.table("alias")
            ),
            MX,
        )
        .await;
        let mut smtp = Smtp::ehlo(postfix.smtp).await;
        smtp.command("MAIL FROM:<sender@elsewhere.example>").await;
        // virtual_alias_domains defaults to $virtual_alias_maps: the alias map is asked whether a
        // domain is a virtual alias domain, by its bare name.
        assert_eq!(map.take(), ["alias elsewhere.example"]);

        let unknown = smtp.command("RCPT TO:<other@ok.example>").await;
        assert_eq!(
            unknown.to_string(),
            "550 5.1.1 <other@ok.example>: Recipient address rejected: User unknown in virtual \
             mailbox table"
        );
        assert_eq!(
            map.take(),
            [
                "alias ok.example",
                "alias other@ok.example",
                "mailbox other@ok.example"
            ]
        );

        // Found as an alias: accepted without asking the mailbox map about it or its target.
        let postmaster = smtp.command("RCPT TO:<postmaster@ok.example>").await;
        assert_eq!(postmaster.to_string(), "250 2.1.5 Ok");
        let queued = smtp.data("Subject: alias\n\nhello\n").await;
        assert_eq!(queued.code, 250, "{queued}");
        smtp.quit().await;
        assert!(
            postfix
                .wait_for_log("to=<jane@ok.example>, orig_to=<postmaster@ok.example>", 1)
                .await,
            "postmaster's mail reaches jane"
        );
        let lookups = map.take();
        // smtpd's check, then cleanup's expansion and its recursion into the target.
        assert_eq!(
            lookups
                .iter()
                .filter(|l| l.contains('@'))
                .map(String::as_str)
                .collect::<Vec<_>>(),
            [
                "alias postmaster@ok.example",
                "alias postmaster@ok.example",
                "alias jane@ok.example"
            ],
            "all lookups: {lookups:?}"
        );
    }

    fn transport_by_address(map: &str, key: &str) -> &'static str {
        match (map, key) {
            ("transport", "a@ok.example") => "OK discard:by-address",
            ("transport", "ok.example" | "@ok.example") => "OK discard:by-domain",
            _ => "NOTFOUND ",
        }
    }

    #[tokio::test]
    async fn transport_maps_in_a_socketmap_are_asked_the_whole_address_at_rcpt_and_delivery() {
        if missing() {
            return;
        }
        let map = SocketmapServer::start(transport_by_address).await;
        let postfix = Postfix::start(
            &format!(
                "recipient_delimiter = +\n\
                 virtual_mailbox_domains = ok.example\n\
                 virtual_mailbox_maps = inline:{{ a@ok.example=x b@ok.example=x }}\n\
                 virtual_transport = discard\n\
                 transport_maps = {}",
                map.table("transport")
            ),
            MX,
        )
        .await;
        // A trivial-rewrite process asks `*` when it starts, and another may start at any time
        // (cleanup's requests, say): `*` is left out of the sequences below.
        let not_wildcard = |lookups: Vec<String>| -> Vec<String> {
            lookups.into_iter().filter(|l| l != "transport *").collect()
        };
        let mut smtp = Smtp::ehlo(postfix.smtp).await;
        smtp.command("MAIL FROM:<sender@elsewhere.example>").await;
        let at_mail = map.take();
        // The first trivial-rewrite starts here, then resolves the sender.
        assert!(at_mail.contains(&"transport *".to_owned()), "{at_mail:?}");
        assert_eq!(
            not_wildcard(at_mail),
            ["transport sender@elsewhere.example"]
        );

        assert_eq!(
            smtp.command("RCPT TO:<a@ok.example>").await.to_string(),
            "250 2.1.5 Ok"
        );
        assert_eq!(not_wildcard(map.take()), ["transport a@ok.example"]);
        assert_eq!(
            smtp.command("RCPT TO:<b+ext@ok.example>").await.to_string(),
            "250 2.1.5 Ok"
        );
        assert_eq!(not_wildcard(map.take()), ["transport b+ext@ok.example"]);

        let queued = smtp.data("Subject: transport\n\n.leading dot\n").await;
        assert!(
            queued.to_string().starts_with("250 2.0.0 Ok: queued as "),
            "{queued}"
        );
        smtp.quit().await;
        assert!(
            postfix.wait_for_log("status=sent", 2).await,
            "both are delivered"
        );
        let log = postfix.log();
        assert!(log.contains("to=<a@ok.example>, relay=none"), "{log}");
        assert!(log.contains("status=sent (by-address)"), "{log}");
        // b+ext is not found, nor is its domain asked: virtual_transport delivers it.
        assert!(log.contains("to=<b+ext@ok.example>, relay=none"), "{log}");
        assert!(log.contains("status=sent (ok.example)"), "{log}");
        let mut at_delivery = not_wildcard(map.take());
        at_delivery.sort();
        assert_eq!(
            at_delivery,
            ["transport a@ok.example", "transport b+ext@ok.example"]
        );
    }

    #[tokio::test]
    async fn send_delivers_a_whole_message_and_instances_run_side_by_side() {
        if missing() {
            return;
        }
        let main_cf = "virtual_mailbox_domains = ok.example\n\
                       virtual_mailbox_maps = inline:{ a@ok.example=x }\n\
                       virtual_transport = discard";
        let first = Postfix::start(main_cf, MX).await;
        let second = Postfix::start(main_cf, MX).await;
        for postfix in [&first, &second] {
            let reply = send(
                postfix.smtp,
                "sender@elsewhere.example",
                "a@ok.example",
                "Subject: hello\r\n\r\nhello\r\n",
            )
            .await;
            assert!(
                reply.to_string().starts_with("250 2.0.0 Ok: queued as "),
                "{reply}"
            );
            assert_eq!(reply.enhanced(), Some("2.0.0"));
            assert!(postfix.wait_for_log("status=sent", 1).await);
        }
        let refused = send(second.smtp, "sender@elsewhere.example", "b@ok.example", "x").await;
        assert_eq!(refused.code, 550, "{refused}");
    }
}
