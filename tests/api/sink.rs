//! Test stand-ins for mail servers, on loopback: an SMTP sink that takes whatever it is sent
//! and keeps it, and an HTTP server playing Microsoft's token endpoint and Graph's `sendMail`.
//!
//! The sink is written here on tokio rather than taken from a crate: what the tests must see is
//! the conversation itself (the EHLO, the AUTH exchange decoded, the MAIL FROM parameters such
//! as SMTPUTF8, every RCPT and the raw DATA), and a sink that records exactly that is a page of
//! code; the crates made for embedding an SMTP server hand over the message, not the dialogue.
//!
//! A sink speaks plain SMTP, or offers STARTTLS, or speaks TLS from the first byte (implicit TLS,
//! RFC 8314), with a certificate of a throwaway authority ([`TestCa`]) that allot is told to trust
//! through `ALLOT_MAIL_CA_FILE`, as an operator would trust a relay's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// One message as the sink received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Whether the message came over TLS (after STARTTLS, or implicit).
    pub tls: bool,
    pub ehlo: String,
    /// The decoded `(username, password)` of AUTH PLAIN or LOGIN.
    pub auth: Option<(String, String)>,
    /// The MAIL command's arguments as sent (`FROM:<a@b> SMTPUTF8 BODY=8BITMIME`).
    pub mail: String,
    /// Each RCPT's address.
    pub rcpt: Vec<String>,
    /// The message, dot-unstuffed, lines joined with `\r\n`.
    pub data: String,
}

impl Received {
    /// The value of the header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(value) = &mut found {
                if line.starts_with([' ', '\t']) {
                    value.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_owned());
            }
        }
        found
    }

    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

pub struct Sink {
    pub addr: SocketAddr,
    kept: Arc<Mutex<Kept>>,
}

/// What a sink keeps: the messages, and every login, with or without a message after it.
#[derive(Default)]
struct Kept {
    received: Vec<Received>,
    logins: Vec<(String, String)>,
}

/// A certificate for 127.0.0.1, self-signed (so its own authority), and the PEM file that holds
/// it for `ALLOT_MAIL_CA_FILE`.
pub struct TestCa {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), made.cert.pem()).unwrap();
        Self {
            cert: made.cert.der().clone(),
            key: made.signing_key.serialize_der(),
            dir,
        }
    }

    /// The PEM file of the certificate, to trust.
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn acceptor(&self) -> TlsAcceptor {
        #[expect(
            deprecated,
            reason = "ring, as allot's own TLS (src/edge/tls.rs): no post-quantum key exchange"
        )]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], key)
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

/// How a sink secures its conversations.
#[derive(Clone)]
enum Security {
    Plain,
    /// Offers STARTTLS in its EHLO and upgrades when asked.
    StartTls(TlsAcceptor),
    /// TLS from the first byte.
    Implicit(TlsAcceptor),
}

/// The EHLO reply: STARTTLS offered when `starttls`.
fn ehlo(starttls: bool) -> String {
    let offer = if starttls { "250-STARTTLS\r\n" } else { "" };
    format!(
        "250-sink.test\r\n{offer}250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000000\r\n"
    )
}

impl Sink {
    /// A sink speaking plain SMTP, without STARTTLS, that accepts every recipient but those
    /// starting with `refuse`, and answers the message's end with `250 2.0.0 Ok: queued as SINK1`.
    pub async fn start() -> Self {
        Self::start_with(Security::Plain, "127.0.0.1:0".parse().unwrap()).await
    }

    /// [`Sink::start`] on `addr` (a port a test reserved: a mail server that comes up late).
    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::start_with(Security::Plain, addr).await
    }

    /// A sink like [`Sink::start`]'s that offers STARTTLS with `ca`'s certificate.
    pub async fn starttls(ca: &TestCa) -> Self {
        Self::start_with(
            Security::StartTls(ca.acceptor()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
    }

    /// A sink like [`Sink::start`]'s that speaks TLS from the first byte with `ca`'s certificate.
    pub async fn implicit_tls(ca: &TestCa) -> Self {
        Self::start_with(
            Security::Implicit(ca.acceptor()),
            "127.0.0.1:0".parse().unwrap(),
        )
        .await
    }

    async fn start_with(security: Security, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let kept: Arc<Mutex<Kept>> = Arc::default();
        let keep = kept.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = keep.clone();
                let security = security.clone();
                tokio::spawn(async move {
                    let _ = session(stream, security, keep).await;
                });
            }
        });
        Self { addr, kept }
    }

    pub fn received(&self) -> Vec<Received> {
        self.kept.lock().unwrap().received.clone()
    }

    /// Every `(username, password)` a client logged in with.
    pub fn logins(&self) -> Vec<(String, String)> {
        self.kept.lock().unwrap().logins.clone()
    }
}

fn decode(text: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// One connection: plain, upgraded by STARTTLS, or TLS throughout.
async fn session(
    stream: TcpStream,
    security: Security,
    keep: Arc<Mutex<Kept>>,
) -> std::io::Result<()> {
    match security {
        Security::Plain => {
            converse(stream, true, false, false, keep).await?;
        }
        Security::Implicit(acceptor) => {
            let stream = acceptor.accept(stream).await?;
            converse(stream, true, false, true, keep).await?;
        }
        Security::StartTls(acceptor) => {
            if let Ended::StartTls(stream) =
                converse(stream, true, true, false, keep.clone()).await?
            {
                // No new greeting: the client says EHLO again (RFC 3207).
                let stream = acceptor.accept(stream).await?;
                converse(stream, false, false, true, keep).await?;
            }
        }
    }
    Ok(())
}

/// How a conversation ended: QUIT, or STARTTLS answered (the stream to upgrade).
enum Ended<S> {
    Quit,
    StartTls(S),
}

async fn next<R: AsyncBufRead + Unpin>(lines: &mut tokio::io::Lines<R>) -> std::io::Result<String> {
    match lines.next_line().await? {
        Some(line) => Ok(line.trim_end_matches('\r').to_owned()),
        None => Err(std::io::ErrorKind::UnexpectedEof.into()),
    }
}

/// The SMTP dialogue on `stream`, greeting first when `greet`, offering STARTTLS when
/// `offer_starttls`; every message is kept with `tls`.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    greet: bool,
    offer_starttls: bool,
    tls: bool,
    keep: Arc<Mutex<Kept>>,
) -> std::io::Result<Ended<S>> {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    if greet {
        write.write_all(b"220 sink.test ESMTP\r\n").await?;
        write.flush().await?;
    }
    let mut current = Received {
        tls,
        ..Received::default()
    };
    loop {
        let command = next(&mut lines).await?;
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            current.ehlo = command[4..].trim().to_owned();
            ehlo(offer_starttls)
        } else if offer_starttls && upper == "STARTTLS" {
            write.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
            write.flush().await?;
            let read = lines.into_inner().into_inner();
            return Ok(Ended::StartTls(read.unsplit(write)));
        } else if upper.starts_with("AUTH PLAIN") {
            let initial = command[10..].trim().to_owned();
            let encoded = if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                write.flush().await?;
                next(&mut lines).await?
            } else {
                initial
            };
            let decoded = decode(&encoded);
            let mut parts = decoded.split('\0').skip(1);
            let login = (
                parts.next().unwrap_or_default().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
            );
            keep.lock().unwrap().logins.push(login.clone());
            current.auth = Some(login);
            "235 2.7.0 Authentication successful\r\n".to_owned()
        } else if upper.starts_with("AUTH LOGIN") {
            write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
            write.flush().await?;
            let user = decode(&next(&mut lines).await?);
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            write.flush().await?;
            let password = decode(&next(&mut lines).await?);
            keep.lock()
                .unwrap()
                .logins
                .push((user.clone(), password.clone()));
            current.auth = Some((user, password));
            "235 2.7.0 Authentication successful\r\n".to_owned()
        } else if upper.starts_with("MAIL ") {
            current.mail = command[5..].to_owned();
            "250 2.1.0 Ok\r\n".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            let address = command[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or_default()
                .to_owned();
            if address.starts_with("refuse") {
                "550 5.1.1 No such user here\r\n".to_owned()
            } else {
                current.rcpt.push(address);
                "250 2.1.5 Ok\r\n".to_owned()
            }
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            write.flush().await?;
            let mut data = Vec::new();
            loop {
                let text = next(&mut lines).await?;
                if text == "." {
                    break;
                }
                data.push(text.strip_prefix('.').map_or(text.clone(), str::to_owned));
            }
            current.data = data.join("\r\n");
            keep.lock().unwrap().received.push(std::mem::replace(
                &mut current,
                Received {
                    tls,
                    ..Received::default()
                },
            ));
            "250 2.0.0 Ok: queued as SINK1\r\n".to_owned()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            write.flush().await?;
            return Ok(Ended::Quit);
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 Ok\r\n".to_owned()
        } else {
            "502 5.5.2 Command not recognized\r\n".to_owned()
        };
        write.write_all(reply.as_bytes()).await?;
        write.flush().await?;
    }
}

/// What the Graph stand-in was asked: each request's path, `Authorization` and body.
#[derive(Debug, Clone)]
pub struct GraphCall {
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// An HTTP server playing `login.microsoftonline.com` and `graph.microsoft.com` at once: the
/// token endpoint answers a token for the right client secret (401 `invalid_client` otherwise),
/// and `sendMail` answers 202 to that token.
pub struct Graph {
    pub url: String,
    calls: Arc<Mutex<Vec<GraphCall>>>,
    _server: actix_web::dev::ServerHandle,
}

pub const GRAPH_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6InRlc3QifQ.graph-test-token";

impl Graph {
    pub async fn start(client_secret: &'static str) -> Self {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let calls: Arc<Mutex<Vec<GraphCall>>> = Arc::default();
        let keep = calls.clone();
        let server = HttpServer::new(move || {
            let keep = keep.clone();
            App::new().default_service(web::to(move |request: HttpRequest, body: web::Bytes| {
                let keep = keep.clone();
                async move {
                    let path = request.path().to_owned();
                    let authorization = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = String::from_utf8_lossy(&body).into_owned();
                    keep.lock().unwrap().push(GraphCall {
                        path: path.clone(),
                        authorization: authorization.clone(),
                        body: text.clone(),
                    });
                    if path.ends_with("/oauth2/v2.0/token") {
                        let form = web::Query::<std::collections::HashMap<String, String>>::from_query(&text)
                            .map(web::Query::into_inner)
                            .unwrap_or_default();
                        if form.get("client_secret").is_some_and(|v| v == client_secret) {
                            HttpResponse::Ok().json(serde_json::json!({
                                "token_type": "Bearer", "expires_in": 3599, "access_token": GRAPH_TOKEN,
                            }))
                        } else {
                            HttpResponse::Unauthorized().json(serde_json::json!({
                                "error": "invalid_client",
                                "error_description": "AADSTS7000215: Invalid client secret provided.",
                            }))
                        }
                    } else if path.ends_with("/sendMail")
                        && authorization.as_deref() == Some(&format!("Bearer {GRAPH_TOKEN}"))
                    {
                        HttpResponse::Accepted().finish()
                    } else {
                        HttpResponse::Unauthorized().finish()
                    }
                }
            }))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}"),
            calls,
            _server: handle,
        }
    }

    pub fn calls(&self) -> Vec<GraphCall> {
        self.calls.lock().unwrap().clone()
    }
}
