//! HTTPS natively (`ALLOT_TLS_CERT`, `ALLOT_TLS_KEY`): the real binary, certificates made in the
//! test (rcgen), clients that trust only the certificate they are given, so that which
//! certificate a handshake got is seen in whether the client accepts it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};

use crate::cli::{Logged, allot, serve_logged};
use crate::helpers::TestDb;

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key, in PEM.
struct Pair {
    cert: String,
    key: String,
}

impl Pair {
    fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        Self {
            cert: made.cert.pem(),
            key: made.signing_key.serialize_pem(),
        }
    }
}

/// The two files allot reads, in a directory of the test's own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(pair: &Pair) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write(&pair.cert, &pair.key);
        files
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// Replaces both files, each by a rename, as a renewal tool does.
    fn write(&self, cert: &str, key: &str) {
        for (path, text) in [(self.cert(), cert), (self.key(), key)] {
            let new = path.with_extension("new");
            std::fs::write(&new, text).unwrap();
            std::fs::rename(&new, &path).unwrap();
        }
    }

    fn envs(&self) -> [(&'static str, String); 2] {
        [
            ("ALLOT_TLS_CERT", path(&self.cert())),
            ("ALLOT_TLS_KEY", path(&self.key())),
        ]
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn serve_tls(db: &TestDb, files: &Files, more: &[(&str, &str)]) -> Logged {
    let envs = files.envs();
    let mut all: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(more);
    let server = serve_logged(db, &all);
    let announced = server.wait_for("serving HTTPS");
    assert!(announced["sha256"].as_str().is_some_and(|s| s.len() == 64));
    server
}

/// A client that trusts `pair`'s certificate and nothing else.
fn trusting(pair: &Pair) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pair.cert.as_bytes()).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn healthz(client: &reqwest::Client, port: u16) -> reqwest::Result<reqwest::Response> {
    client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
}

#[test]
fn https_negotiates_http2_by_alpn_and_http1_for_clients_that_offer_only_it() {
    let db = TestDb::new();
    let pair = Pair::new();
    let files = Files::new(&pair);
    let server = serve_tls(&db, &files, &[]);
    runtime().block_on(async {
        let h2 = trusting(&pair).build().unwrap();
        let answer = healthz(&h2, server.port).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.version(), reqwest::Version::HTTP_2);
        // The API itself over HTTP/2: a login and an authenticated read.
        let base = format!("https://localhost:{}", server.port);
        let token =
            crate::helpers::token_at(&h2, &base, "admin", crate::helpers::ADMIN_PASSWORD).await;
        let me = h2
            .get(format!("{base}/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
        assert_eq!(me.version(), reqwest::Version::HTTP_2);

        let h1 = trusting(&pair).http1_only().build().unwrap();
        let answer = healthz(&h1, server.port).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.version(), reqwest::Version::HTTP_11);

        // Plain HTTP on the HTTPS port gets no answer.
        let plain = reqwest::Client::new();
        let refused = plain
            .get(format!("http://127.0.0.1:{}/healthz", server.port))
            .send()
            .await;
        assert!(refused.is_err(), "{refused:?}");
    });
}

/// A TLS handshake offering only `version`, with OpenSSL (which still speaks TLS 1.0 and 1.1 at
/// security level 0); the version agreed on, or the error.
fn handshake(port: u16, version: SslVersion) -> Result<String, String> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    builder.set_security_level(0);
    builder.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
    builder.set_min_proto_version(Some(version)).unwrap();
    builder.set_max_proto_version(Some(version)).unwrap();
    let connector = builder.build();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    connector
        .connect("localhost", stream)
        .map(|tls| tls.ssl().version_str().to_owned())
        .map_err(|e| e.to_string())
}

#[test]
fn tls_1_2_and_1_3_are_served_and_older_versions_refused() {
    let db = TestDb::new();
    let files = Files::new(&Pair::new());
    let server = serve_tls(&db, &files, &[]);
    assert_eq!(
        handshake(server.port, SslVersion::TLS1_3).as_deref(),
        Ok("TLSv1.3")
    );
    assert_eq!(
        handshake(server.port, SslVersion::TLS1_2).as_deref(),
        Ok("TLSv1.2")
    );
    for old in [SslVersion::TLS1_1, SslVersion::TLS1] {
        let refused = handshake(server.port, old);
        assert!(refused.is_err(), "{old:?}: {refused:?}");
    }
}

#[test]
fn sighup_serves_a_renewed_certificate_to_new_connections_and_drops_none() {
    let db = TestDb::new();
    let (old, new) = (Pair::new(), Pair::new());
    let files = Files::new(&old);
    let server = serve_tls(&db, &files, &[]);
    runtime().block_on(async {
        // A connection made before the renewal, kept open (HTTP/2: one connection per client).
        let before = trusting(&old).build().unwrap();
        assert_eq!(healthz(&before, server.port).await.unwrap().status(), 200);
        let trusts_new = trusting(&new).build().unwrap();
        assert!(
            healthz(&trusts_new, server.port).await.is_err(),
            "the old certificate is served before the renewal"
        );

        files.write(&new.cert, &new.key);
        server.signal("HUP");
        let reloaded = server.wait_for("TLS certificate reloaded");
        assert!(reloaded["sha256"].is_string());

        // A new connection gets the new certificate...
        let after = trusting(&new).build().unwrap();
        assert_eq!(healthz(&after, server.port).await.unwrap().status(), 200);
        let trusts_old = trusting(&old).build().unwrap();
        let refused = healthz(&trusts_old, server.port).await;
        assert!(refused.is_err(), "a new handshake still got the old one");
        // ...while the connection made before goes on answering: a new connection of that
        // client would have been refused, as the line above shows.
        let answer = healthz(&before, server.port).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    });
}

#[test]
fn a_renewal_that_does_not_load_keeps_the_certificate_being_served() {
    let db = TestDb::new();
    let (served, other) = (Pair::new(), Pair::new());
    let files = Files::new(&served);
    let server = serve_tls(&db, &files, &[]);
    let broken = [
        // Half-written.
        (&served.cert[..served.cert.len() / 2], served.key.as_str()),
        // A certificate with another certificate's key.
        (other.cert.as_str(), served.key.as_str()),
        // No key at all.
        (served.cert.as_str(), ""),
    ];
    for (cert, key) in broken {
        files.write(cert, key);
        server.signal("HUP");
        let refused =
            server.wait_for("TLS certificate not reloaded; still serving the previous one");
        assert!(refused["error"].is_string(), "{refused}");
        runtime().block_on(async {
            let client = trusting(&served).build().unwrap();
            let answer = healthz(&client, server.port).await.unwrap();
            assert_eq!(answer.status(), 200);
        });
    }
}

#[test]
fn https_settings_that_cannot_work_stop_start_up_naming_the_setting() {
    let db = TestDb::new();
    let pair = Pair::new();
    let files = Files::new(&pair);
    let other = Files::new(&Pair::new());
    let (cert, key) = (path(&files.cert()), path(&files.key()));
    let missing = path(&files.dir.path().join("missing.pem"));
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("ALLOT_TLS_CERT", &cert)], "ALLOT_TLS_KEY"),
        (&[("ALLOT_TLS_KEY", &key)], "ALLOT_TLS_CERT"),
        (
            &[("ALLOT_TLS_CERT", &missing), ("ALLOT_TLS_KEY", &key)],
            "ALLOT_TLS_CERT",
        ),
        (
            &[("ALLOT_TLS_CERT", &cert), ("ALLOT_TLS_KEY", &cert)],
            "ALLOT_TLS_KEY",
        ),
        (
            &[
                ("ALLOT_TLS_CERT", &cert),
                ("ALLOT_TLS_KEY", &path(&other.key())),
            ],
            "ALLOT_TLS_KEY",
        ),
    ];
    for (envs, named) in cases {
        let mut child = allot(&db)
            .env("ALLOT_LISTEN", "127.0.0.1:0")
            .env("ALLOT_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A server that starts anyway would never exit by itself.
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                child.kill().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{envs:?}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("allot: "))
            .unwrap_or_else(|| panic!("{envs:?}: {stderr}"));
        assert!(
            line.starts_with(&format!("allot: {named}: ")),
            "{envs:?}: {line}"
        );
    }
}

/// The request deadline and its 408 hold over TLS too: `on_connect` sees a TLS stream there, not
/// a TCP one, and must watch the socket under it.
#[test]
fn over_https_a_body_that_does_not_arrive_is_answered_408() {
    let db = TestDb::new();
    let files = Files::new(&Pair::new());
    let server = serve_tls(&db, &files, &[("ALLOT_REQUEST_TIMEOUT", "2")]);
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_verify(SslVerifyMode::NONE);
    let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = builder.build().connect("localhost", stream).unwrap();
    tls.write_all(
        b"POST /v1/auth/token HTTP/1.1\r\nHost: allot\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
}
