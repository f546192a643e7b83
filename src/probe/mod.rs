//! Route tests: allot connects to a domain's delivery route over SMTP, as a sending server would,
//! and reports what it met. The one place where a user's request makes allot open a connection
//! somewhere, so it is shaped around what an attacker would try:
//!
//! - the host is resolved once ([`crate::dns`], or taken as an IP literal), every address is
//!   judged by [`target`] and refused too when it is one of allot's own host's (a public address
//!   of the host reaches what listens on all interfaces), and the connection goes to the exact
//!   address judged, never to a name resolved a second time (DNS rebinding gains nothing);
//! - the conversation is fixed: `EHLO [our address]`, `MAIL FROM:<>`, `RCPT TO:<postmaster@domain>`,
//!   `QUIT`. It never sends DATA, and the only bytes a user influences are the domain's name, which
//!   is a parsed DNS name (no CR, LF or spaces can reach the wire);
//! - every stage has [`STAGE_TIMEOUT`] and the whole test [`TOTAL_TIMEOUT`]; replies are read a
//!   bounded line at a time ([`reply::MAX_LINE`], [`reply::MAX_LINES`]);
//! - [`gate`] limits how many tests run, per domain and per process.
//!
//! Why not `lettre`: its `AsyncSmtpConnection` reads the greeting inside `connect` and keeps
//! only a fixed set of extensions (`ServerInfo`: 8BITMIME, SMTPUTF8, STARTTLS, AUTH), so it can
//! report neither the banner's text, nor SIZE and its number, nor the raw capability list, nor a
//! time per stage; and it resolves host names itself. What a test needs is four commands and a
//! reply reader ([`reply`], pure and unit-tested), so a small client on tokio's TCP stream is the
//! smaller dependency.

pub(crate) mod gate;
pub(crate) mod reply;
pub(crate) mod target;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use utoipa::ToSchema;

use crate::dns::Verifier;
use crate::domain::address::DomainName;
use reply::{Extensions, Reply};

/// How long each stage (resolving, connecting, each reply) may take.
pub(crate) const STAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole test may take: a server answering each stage just in time is cut off here.
pub(crate) const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the answer to QUIT is waited for (not reported).
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a route test met, stage by stage.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RouteTestReport)]
pub(crate) struct Report {
    /// Whether the server greeted, took EHLO and `MAIL FROM:<>`, and accepted
    /// `RCPT TO:<postmaster@domain>`.
    pub ok: bool,
    pub target: Target,
    /// The greeting; null when none came.
    pub banner: Option<ReplyView>,
    /// The answer to EHLO; null when it was not sent or not answered.
    pub ehlo: Option<EhloView>,
    /// The answer to `MAIL FROM:<>`.
    pub mail: Option<ReplyView>,
    /// The answer to `RCPT TO:<postmaster@domain>`.
    pub rcpt: Option<RcptView>,
    pub timings_ms: Timings,
    /// What went wrong; null when `ok`.
    pub failure: Option<Failure>,
}

/// Where the test connected.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RouteTestTarget)]
pub(crate) struct Target {
    /// The route's host, as configured.
    #[schema(example = "mx.customer.example")]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535, example = 25)]
    pub port: u16,
    /// The IP address connected to (the first of the host's addresses in the resolver's order);
    /// null when the host did not resolve.
    #[schema(example = "203.0.113.25")]
    pub address: Option<String>,
}

/// An SMTP reply.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SmtpReply)]
pub(crate) struct ReplyView {
    #[schema(minimum = 200, maximum = 599, example = 220)]
    pub code: u16,
    /// The text of each line after the code, joined with `\n`.
    #[schema(example = "mx.customer.example ESMTP Postfix")]
    pub text: String,
}

impl From<&Reply> for ReplyView {
    fn from(reply: &Reply) -> Self {
        Self {
            code: reply.code,
            text: reply.text(),
        }
    }
}

/// The answer to EHLO, with what it announces.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = EhloReply)]
pub(crate) struct EhloView {
    #[schema(minimum = 200, maximum = 599, example = 250)]
    pub code: u16,
    /// The first line's text: the server's name and greeting.
    #[schema(example = "mx.customer.example")]
    pub greeting: String,
    /// Every extension announced, as the server wrote it; empty unless the code is 250.
    #[schema(example = json!(["PIPELINING", "SIZE 10240000", "STARTTLS", "8BITMIME"]))]
    pub capabilities: Vec<String>,
    /// Whether STARTTLS is announced.
    pub starttls: bool,
    /// The largest message accepted, in bytes, from SIZE; 0 when SIZE is announced without a
    /// limit; null when SIZE is not announced.
    #[schema(minimum = 0, example = 10240000)]
    pub size: Option<u64>,
}

/// The answer to `RCPT TO:<postmaster@domain>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RcptReply)]
pub(crate) struct RcptView {
    /// The recipient asked about.
    #[schema(example = "postmaster@customer.example")]
    pub address: String,
    /// Whether the server accepted it (a 2xx reply).
    pub accepted: bool,
    #[schema(minimum = 200, maximum = 599, example = 250)]
    pub code: u16,
    #[schema(example = "2.1.5 Ok")]
    pub text: String,
}

/// Milliseconds each stage took; a stage that did not happen is absent.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = RouteTestTimings)]
pub(crate) struct Timings {
    /// Resolving the host name (absent for an IP address).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub resolve: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub connect: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub banner: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub ehlo: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub mail: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub rcpt: Option<u64>,
}

/// Where a test stopped, why, and a sentence saying so.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RouteTestFailure)]
pub(crate) struct Failure {
    pub stage: Stage,
    pub reason: Reason,
    /// For a person: what happened, in plain words.
    #[schema(example = "The server at 203.0.113.25:25 refused the connection.")]
    pub message: String,
}

/// Where the test stopped: resolving the host, connecting, waiting for the greeting (`banner`),
/// or the answer to EHLO, `MAIL FROM` or `RCPT TO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = RouteTestStage)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stage {
    Resolve,
    Connect,
    Banner,
    Ehlo,
    Mail,
    Rcpt,
}

/// `no_address`: the host has no A or AAAA record; `dns_error`: DNS answered with an error;
/// `timeout`: no answer within the stage's time (or the test's); `refused`: the connection was
/// refused; `unreachable`: no route to the address; `closed`: the server closed or broke the
/// connection; `malformed`: it answered with something that is not SMTP; `rejected`: it answered
/// with a 4xx or 5xx reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = RouteTestReason)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Reason {
    NoAddress,
    DnsError,
    Timeout,
    Refused,
    Unreachable,
    Closed,
    Malformed,
    Rejected,
}

/// Why no connection is attempted: every address of the host is one allot does not connect to.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    /// For the caller. Names the address only when the caller gave it: what a name resolves to
    /// inside the operator's network is not the caller's to learn.
    pub detail: String,
    /// Every address with why it was refused, for the audit trail.
    pub addresses: Vec<(IpAddr, target::Refusal)>,
}

/// The first of `host`'s `addresses` (`literal`: the host is that one address) that allot may
/// connect to on a user's behalf, each judged by [`connect_refusal`]: a route test's, and a
/// tenant's mail server's ([`crate::mail`], under its own setting).
pub(crate) fn first_allowed(
    host: &str,
    addresses: &[IpAddr],
    literal: bool,
    allow_private: bool,
) -> Result<IpAddr, Refused> {
    let mut refused = Vec::new();
    for &ip in addresses {
        match connect_refusal(ip, allow_private) {
            None => return Ok(ip),
            Some(why) => refused.push((ip, why)),
        }
    }
    let detail = match refused.as_slice() {
        [(ip, why)] if literal => format!(
            "{ip} is {}; allot does not connect to such addresses.",
            why.kind
        ),
        _ => format!(
            "{host} resolves only to addresses allot does not connect to (loopback, private, \
             link-local or otherwise not publicly routable)."
        ),
    };
    Err(Refused {
        detail,
        addresses: refused,
    })
}

/// What comes after resolving.
#[derive(Debug)]
pub(crate) enum Next {
    /// Connect to this address.
    Connect(SocketAddr),
    /// Resolving failed; the report says how, and nothing is connected to.
    Done,
    /// No address may be connected to.
    Refused(Refused),
}

impl Next {
    /// What the audit trail keeps of a test about to connect (or not): the route, and the
    /// address chosen, the refusal or the resolver's failure.
    pub fn audit(&self, report: &Report) -> serde_json::Value {
        let mut view = json!({"host": report.target.host, "port": report.target.port});
        match self {
            Self::Connect(addr) => view["address"] = json!(addr.ip().to_string()),
            Self::Done => {
                view["failure"] = json!(report.failure.as_ref().map(|f| f.message.clone()))
            }
            Self::Refused(refused) => {
                view["refused"] = refused
                    .addresses
                    .iter()
                    .map(|(ip, why)| json!({"address": ip.to_string(), "kind": why.kind}))
                    .collect();
            }
        }
        view
    }
}

/// One route test in progress.
pub(crate) struct RouteTest {
    report: Report,
    deadline: Instant,
}

impl RouteTest {
    /// A test of the route `host:port`, starting now.
    pub fn new(host: &str, port: u16) -> Self {
        Self {
            report: Report {
                ok: false,
                target: Target {
                    host: host.to_owned(),
                    port,
                    address: None,
                },
                banner: None,
                ehlo: None,
                mail: None,
                rcpt: None,
                timings_ms: Timings::default(),
                failure: None,
            },
            deadline: Instant::now() + TOTAL_TIMEOUT,
        }
    }

    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The report as it stands (after [`Next::Done`]).
    pub fn finish(self) -> Report {
        self.report
    }

    /// Resolves the host (unless it is an IP address) and picks the first address that
    /// `allow_private` lets allot connect to.
    pub async fn resolve(&mut self, dns: &Verifier, allow_private: bool) -> Next {
        let host = self.report.target.host.clone();
        let port = self.report.target.port;
        let (addresses, literal) = match host.parse::<IpAddr>() {
            Ok(ip) => (vec![ip], true),
            Err(_) => match self.lookup(dns, &host).await {
                Some(addresses) => (addresses, false),
                None => return Next::Done,
            },
        };
        match first_allowed(&host, &addresses, literal, allow_private) {
            Ok(ip) => {
                self.report.target.address = Some(ip.to_string());
                Next::Connect(SocketAddr::new(ip, port))
            }
            Err(refused) => Next::Refused(refused),
        }
    }

    /// The host's addresses; `None` (with the failure reported) when there are none.
    async fn lookup(&mut self, dns: &Verifier, host: &str) -> Option<Vec<IpAddr>> {
        let started = Instant::now();
        let limit = self.limit(started);
        let name = DomainName::from_stored(host.to_owned());
        let answer = tokio::time::timeout_at(limit.into(), dns.addresses(&name)).await;
        self.report.timings_ms.resolve = Some(millis(started.elapsed()));
        let (reason, message) = match answer {
            Ok(Ok(addresses)) if !addresses.is_empty() => return Some(addresses),
            Ok(Ok(_)) => (
                Reason::NoAddress,
                format!("{host} has no address: DNS has no A or AAAA record for it."),
            ),
            Ok(Err(err)) if err.timed_out() => (
                Reason::Timeout,
                format!("DNS did not answer for {host} in time."),
            ),
            Ok(Err(err)) => (
                Reason::DnsError,
                format!("Looking up {host} failed: {err}."),
            ),
            Err(_) => (Reason::Timeout, self.no_answer(limit, "for the DNS lookup")),
        };
        self.fail(Stage::Resolve, reason, message);
        None
    }

    /// Talks to `addr` as far as it lets us, then QUITs; the report of everything it said.
    pub async fn converse(mut self, addr: SocketAddr, domain: &DomainName) -> Report {
        let Some(mut stream) = self.connect(addr).await else {
            return self.report;
        };
        let finished = self.exchanges(&mut stream, addr, domain).await;
        if finished {
            // Polite and bounded: the server's answer to QUIT changes nothing.
            let limit = (Instant::now() + QUIT_TIMEOUT).min(self.deadline);
            let _ =
                tokio::time::timeout_at(limit.into(), exchange(&mut stream, Some("QUIT"))).await;
        }
        self.report
    }

    async fn connect(&mut self, addr: SocketAddr) -> Option<BufReader<TcpStream>> {
        let started = Instant::now();
        let limit = self.limit(started);
        let attempt = tokio::time::timeout_at(limit.into(), TcpStream::connect(addr)).await;
        self.report.timings_ms.connect = Some(millis(started.elapsed()));
        let (reason, message) = match attempt {
            Ok(Ok(stream)) => return Some(BufReader::new(stream)),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => (
                Reason::Refused,
                format!("The server at {addr} refused the connection."),
            ),
            Ok(Err(err)) => (
                Reason::Unreachable,
                format!("{addr} could not be reached: {err}."),
            ),
            Err(_) => (
                Reason::Timeout,
                self.no_answer(limit, &format!("to the connection attempt to {addr}")),
            ),
        };
        self.fail(Stage::Connect, reason, message);
        None
    }

    /// Banner, EHLO, MAIL, RCPT, each recorded as it comes; false when the connection is no
    /// longer fit for a QUIT (it timed out, broke or spoke something other than SMTP).
    async fn exchanges(
        &mut self,
        stream: &mut BufReader<TcpStream>,
        addr: SocketAddr,
        domain: &DomainName,
    ) -> bool {
        let ehlo = format!("EHLO {}", address_literal(stream.get_ref()));
        let postmaster = format!("postmaster@{}", domain.as_str());
        let rcpt = format!("RCPT TO:<{postmaster}>");
        let steps = [
            (Stage::Banner, None, "after connecting"),
            (Stage::Ehlo, Some(ehlo.as_str()), "after EHLO"),
            (Stage::Mail, Some("MAIL FROM:<>"), "after MAIL FROM:<>"),
            (Stage::Rcpt, Some(rcpt.as_str()), "after RCPT TO"),
        ];
        for (stage, command, after) in steps {
            let started = Instant::now();
            let limit = self.limit(started);
            let answer = tokio::time::timeout_at(limit.into(), exchange(stream, command)).await;
            let timings = &mut self.report.timings_ms;
            *match stage {
                Stage::Banner => &mut timings.banner,
                Stage::Ehlo => &mut timings.ehlo,
                Stage::Mail => &mut timings.mail,
                _ => &mut timings.rcpt,
            } = Some(millis(started.elapsed()));
            let reply = match answer {
                Ok(Ok(reply)) => reply,
                Ok(Err(trouble)) => {
                    let (reason, message) = trouble.describe(addr, after);
                    self.fail(stage, reason, message);
                    return false;
                }
                Err(_) => {
                    let message = self.no_answer(limit, after);
                    self.fail(stage, Reason::Timeout, message);
                    return false;
                }
            };
            let rejected =
                |what: String| format!("The server at {addr} {what}: {}.", reply.summary());
            let refusal = match stage {
                Stage::Banner => {
                    self.report.banner = Some(ReplyView::from(&reply));
                    rejected("does not offer service; it greeted with".into())
                }
                Stage::Ehlo => {
                    self.report.ehlo = Some(ehlo_view(&reply));
                    rejected("refused EHLO".into())
                }
                Stage::Mail => {
                    self.report.mail = Some(ReplyView::from(&reply));
                    rejected("refused MAIL FROM:<> (the null sender bounces use)".into())
                }
                _ => {
                    self.report.rcpt = Some(RcptView {
                        address: postmaster.clone(),
                        accepted: reply.is_positive(),
                        code: reply.code,
                        text: reply.text(),
                    });
                    rejected(format!("does not accept mail for {postmaster}"))
                }
            };
            if !reply.is_positive() {
                self.fail(stage, Reason::Rejected, refusal);
                return true;
            }
        }
        self.report.ok = true;
        true
    }

    /// When the current stage must end: its own limit or the test's, whichever comes first.
    fn limit(&self, started: Instant) -> Instant {
        (started + STAGE_TIMEOUT).min(self.deadline)
    }

    /// "No answer within 10 s after EHLO.", or, when the test's own time ran out first, says so.
    fn no_answer(&self, limit: Instant, after: &str) -> String {
        if limit >= self.deadline {
            format!(
                "No answer {after} before the test's {} s ran out.",
                TOTAL_TIMEOUT.as_secs()
            )
        } else {
            format!("No answer within {} s {after}.", STAGE_TIMEOUT.as_secs())
        }
    }

    fn fail(&mut self, stage: Stage, reason: Reason, message: String) {
        self.report.ok = false;
        self.report.failure = Some(Failure {
            stage,
            reason,
            message,
        });
    }
}

/// Why allot must not connect to `ip` on a user's behalf (a route test, a mail server, a webhook
/// delivery), if
/// it must not: [`target::refusal`]'s ranges, and, unless private targets are allowed, the host's
/// own addresses.
pub(crate) fn connect_refusal(ip: IpAddr, allow_private: bool) -> Option<target::Refusal> {
    target::refusal(ip, allow_private).or_else(|| {
        (!allow_private && own_address(ip)).then(|| target::Refusal {
            tier: target::Tier::Private,
            kind: "an address of allot's own host".to_owned(),
        })
    })
}

/// Whether `ip` is one of this host's own addresses: a public address of allot's host reaches
/// every service listening on all interfaces, as loopback would. Binding a socket to an address
/// succeeds only for a local one, and needs no interface list.
fn own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn ehlo_view(reply: &Reply) -> EhloView {
    let extensions = Extensions::of(reply);
    if reply.code == 250 {
        EhloView {
            code: reply.code,
            greeting: extensions.greeting,
            capabilities: extensions.capabilities,
            starttls: extensions.starttls,
            size: extensions.size,
        }
    } else {
        EhloView {
            code: reply.code,
            greeting: reply.text(),
            capabilities: Vec::new(),
            starttls: false,
            size: None,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// How allot names itself in EHLO: its own address as a literal (RFC 5321 §4.1.3), which needs
/// no setting and is never false.
fn address_literal(stream: &TcpStream) -> String {
    match stream.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V6(ip)) => format!("[IPv6:{ip}]"),
        Ok(IpAddr::V4(ip)) => format!("[{ip}]"),
        Err(_) => "[127.0.0.1]".to_owned(),
    }
}

/// What broke an exchange, short of a timeout.
#[derive(Debug)]
enum Trouble {
    Closed,
    Broken(std::io::Error),
    Malformed(String),
}

impl Trouble {
    fn describe(&self, addr: SocketAddr, after: &str) -> (Reason, String) {
        match self {
            Self::Closed => (
                Reason::Closed,
                format!("The server at {addr} closed the connection {after}."),
            ),
            Self::Broken(err) => (
                Reason::Closed,
                format!("The connection to {addr} broke {after}: {err}."),
            ),
            Self::Malformed(what) => (
                Reason::Malformed,
                format!(
                    "The server at {addr} answered {after} with {what}; it does not speak SMTP there."
                ),
            ),
        }
    }
}

/// Sends `command` (if any) and reads one whole reply.
async fn exchange(
    stream: &mut BufReader<TcpStream>,
    command: Option<&str>,
) -> Result<Reply, Trouble> {
    if let Some(command) = command {
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .map_err(Trouble::Broken)?;
    }
    let mut reader = reply::Reader::default();
    loop {
        let mut line = Vec::new();
        let read = (&mut *stream)
            .take(reply::MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(Trouble::Broken)?;
        if !line.ends_with(b"\n") {
            return Err(if read >= reply::MAX_LINE {
                Trouble::Malformed(format!("a line longer than {} bytes", reply::MAX_LINE))
            } else {
                Trouble::Closed
            });
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(reply) = reader
            .line(line)
            .map_err(|e| Trouble::Malformed(e.to_string()))?
        {
            return Ok(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_own_addresses_are_told_from_others() {
        assert!(own_address("127.0.0.1".parse().unwrap()));
        assert!(!own_address("8.8.8.8".parse().unwrap()));
        assert!(!own_address("2001:4860:4860::8888".parse().unwrap()));
    }
}
