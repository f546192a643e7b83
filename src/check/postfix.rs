//! The Postfix SMTP access policy delegation listener (`check_policy_service`,
//! <https://www.postfix.org/SMTPD_POLICY_README.html>): one address per request, answered from
//! the check. An inbound request asks about its recipient, an outbound one about its sender.
//!
//! Which direction a request is, an operator says in Postfix's own terms, per `smtpd` service:
//! `-o smtpd_policy_service_policy_context=outbound` on the submission service (or
//! `check_policy_service { inet:…, policy_context=outbound }`) makes Postfix send
//! `policy_context=outbound` with every request, and `inbound` likewise. Without it, a request
//! from a client that logged in (`sasl_username` set) is outbound and any other inbound: the
//! usual split between submission and an MX. [`PolicyDirection`] can also fix the listener to one
//! direction whatever the request says.
//!
//! The protocol is lines of `name=value` ended by an empty line, answered by `action=…` and an
//! empty line, many requests on one connection. Parsing and the choice of action are pure
//! functions ([`parse_request`], [`step`], [`action_for`]); [`serve`] only frames, bounds and
//! times the connection around them.
//!
//! Every refusal carries the reply code and RFC 3463 enhanced status code of the shared reply map
//! ([`super::reply`]) and the stable reason code, and nothing else: Postfix itself prefixes the
//! text with `<address>: Recipient address rejected:` (or `Sender`), so repeating the address
//! would only say it twice. A permanent refusal is the numeric action (`550 5.1.1 …`); a
//! temporary one is `DEFER_IF_PERMIT`, so that a later restriction that rejects for good still
//! wins.
//!
//! Two kinds of bad input, two treatments. A request that is framed but wrong (a line without
//! `=`, a name that is not UTF-8, no `request=smtpd_access_policy`) is read to its empty line,
//! answered `DEFER_IF_PERMIT malformed policy request`, and the connection goes on: where the next
//! request starts is still known. A line or a request over its cap is answered the same way and
//! the connection closed: reading on would mean buffering without bound or guessing at framing.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};

use super::{Answer, Ask, Direction, Listener, Origin, Question, Target, Verdict};
use crate::domain::address::MailAddress;
use crate::domain::text_enum;

/// The longest line, without its line end. Postfix's longest attributes (a client certificate's
/// subject, a SASL user name) stay far below it.
const MAX_LINE: usize = 4096;
/// Postfix sends some 30 attributes; a peer sending more is not Postfix.
const MAX_ATTRIBUTES: usize = 100;
/// The most bytes one request may take, line ends included.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a connection may wait for its next request. Longer than Postfix's own
/// `smtpd_policy_service_max_idle` (300 s), so it is Postfix that closes an idle connection it
/// might still reuse, and this only drops peers that have gone away.
const IDLE_TIMEOUT: Duration = Duration::from_secs(360);

const MALFORMED: &str = "DEFER_IF_PERMIT malformed policy request";

text_enum! {
    /// Which direction the policy listener takes a request for.
    #[derive(Default)]
    pub enum PolicyDirection {
        /// The request's `policy_context` (`inbound` or `outbound`) when it has one; otherwise
        /// outbound for a client that logged in (`sasl_username`), inbound for any other.
        #[default]
        Auto = "auto",
        /// Every request is about its recipient.
        Inbound = "inbound",
        /// Every request is about its sender.
        Outbound = "outbound",
    }
}

/// One policy request: its attributes by name, borrowed from the lines they were read in. Values
/// stay bytes, as Postfix passes on whatever the client sent; only the checked one need be text.
/// A repeated name keeps its last value, as in the example server of Postfix's README.
///
/// Some 30 attributes, each looked up once or twice: a list searched from its end costs less than
/// hashing every name into a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    attributes: Vec<(&'a str, &'a [u8])>,
}

impl<'a> Request<'a> {
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.attributes
            .iter()
            .rev()
            .find_map(|&(n, value)| (n == name).then_some(value))
    }
}

/// Why a framed request is not a policy request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("a line is not name=value")]
    NotAttribute,
    #[error("an attribute name is not UTF-8")]
    NameNotUtf8,
    #[error("the request is not request=smtpd_access_policy")]
    NotAccessPolicy,
}

/// Parses one request's lines (without line ends and without the empty line that ended it).
pub fn parse_request<L: AsRef<[u8]>>(lines: &[L]) -> Result<Request<'_>, Malformed> {
    let mut attributes = Vec::with_capacity(lines.len());
    for line in lines {
        let line = line.as_ref();
        let equals = line
            .iter()
            .position(|&b| b == b'=')
            .filter(|&at| at > 0)
            .ok_or(Malformed::NotAttribute)?;
        let name = std::str::from_utf8(&line[..equals]).map_err(|_| Malformed::NameNotUtf8)?;
        attributes.push((name, &line[equals + 1..]));
    }
    let request = Request { attributes };
    if request.get("request") != Some(b"smtpd_access_policy".as_slice()) {
        return Err(Malformed::NotAccessPolicy);
    }
    Ok(request)
}

/// What to do with a request: answer at once, or ask the check about an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Action(String),
    Ask(MailAddress, Direction),
}

/// The direction of `request` under the listener's `mode`.
pub(crate) fn direction(request: &Request, mode: PolicyDirection) -> Direction {
    match mode {
        PolicyDirection::Inbound => Direction::Inbound,
        PolicyDirection::Outbound => Direction::Outbound,
        PolicyDirection::Auto => match request.get("policy_context") {
            Some(b"inbound") => Direction::Inbound,
            Some(b"outbound") => Direction::Outbound,
            _ if request.get("sasl_username").is_some_and(|u| !u.is_empty()) => Direction::Outbound,
            _ => Direction::Inbound,
        },
    }
}

/// Picks the address to check out of a request: the recipient inbound, the sender outbound.
///
/// A missing or empty value leaves nothing to check, so the action is `DUNNO` (let the rest of
/// Postfix's restrictions decide): an empty sender is the null sender of bounces and delivery
/// notifications, which must never be refused for being nobody's; an empty or missing recipient
/// is a request from a stage before `RCPT TO` or from the end of `DATA`, where there is no single
/// recipient.
pub fn step(request: &Request, mode: PolicyDirection) -> Step {
    let direction = direction(request, mode);
    let attribute = match direction {
        Direction::Inbound => "recipient",
        Direction::Outbound => "sender",
    };
    let raw = match request.get(attribute) {
        None | Some(b"") => return Step::Action("DUNNO".to_owned()),
        Some(raw) => raw,
    };
    match std::str::from_utf8(raw)
        .ok()
        .and_then(|raw| MailAddress::parse(raw).ok())
    {
        Some(address) => Step::Ask(address, direction),
        None => Step::Action(match direction {
            Direction::Inbound => "REJECT 5.1.3 bad recipient address syntax".to_owned(),
            Direction::Outbound => "REJECT 5.1.7 bad sender address syntax".to_owned(),
        }),
    }
}

/// The action for the check's answer.
///
/// Accepted is `DUNNO`, not `OK`: allot vouches for the licence, not for the rest of Postfix's
/// restrictions (rate limits, RBLs) that may still follow.
pub(crate) fn action_for(answer: &Answer) -> String {
    let reason = answer.reason.as_str();
    let status = answer.smtp_status;
    match answer.verdict {
        Verdict::Accept => "DUNNO".to_owned(),
        Verdict::Defer => format!("DEFER_IF_PERMIT {status} {reason}"),
        Verdict::Reject => format!("{} {status} {reason}", answer.smtp_code),
    }
}

/// Accepts connections forever, each served by its own task.
pub(crate) async fn serve<A: Ask>(
    listener: TcpListener,
    asker: Arc<A>,
    mode: PolicyDirection,
    peers: Arc<crate::edge::PeerLimit>,
) {
    let connections = asker.metrics().policy.clone();
    super::accept_forever(
        listener,
        "policy",
        connections,
        peers,
        move |stream, origin| {
            let asker = Arc::clone(&asker);
            async move { connection(stream, &*asker, mode, &origin).await }
        },
    )
    .await;
}

/// What came in on a connection.
enum Incoming {
    /// A request, its lines in the reader's [`Lines`].
    Request,
    /// The peer closed the connection or went quiet; if mid-request, there is nobody to answer.
    Gone,
    /// A line or the request outgrew its cap.
    TooLarge,
}

async fn connection<A: Ask>(
    mut stream: TcpStream,
    asker: &A,
    mode: PolicyDirection,
    origin: &Origin,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.split();
    let mut reader = BufReader::new(read);
    // One buffer for each request's bytes, kept for the next: reading allocates nothing once warm.
    let mut lines = Lines::default();
    loop {
        let incoming = tokio::time::timeout(IDLE_TIMEOUT, read_request(&mut reader, &mut lines))
            .await
            .unwrap_or(Ok(Incoming::Gone))?;
        let action = match incoming {
            Incoming::Gone => return Ok(()),
            Incoming::TooLarge => {
                tracing::debug!("policy request over its size cap");
                return reply(&mut write, MALFORMED).await;
            }
            Incoming::Request => match parse_request(&lines.each()) {
                Err(err) => {
                    tracing::debug!(error = %err, "malformed policy request");
                    MALFORMED.to_owned()
                }
                Ok(request) => match step(&request, mode) {
                    Step::Action(action) => action,
                    Step::Ask(address, direction) => {
                        let stored = tracing::enabled!(tracing::Level::DEBUG)
                            .then(|| address.stored())
                            .unwrap_or_default();
                        let question = Question {
                            target: Target::Address(address),
                            direction,
                            module: None,
                            enrol: None,
                        };
                        let action =
                            action_for(&asker.ask(question, Listener::Policy, origin).await);
                        tracing::debug!(%direction, address = stored, action, "policy lookup");
                        action
                    }
                },
            },
        };
        reply(&mut write, &action).await?;
    }
}

async fn reply<W: AsyncWrite + Unpin>(write: &mut W, action: &str) -> io::Result<()> {
    let answer = format!("action={action}\n\n");
    tokio::time::timeout(IDLE_TIMEOUT, write.write_all(answer.as_bytes()))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

/// A request's lines, without their line ends, in one buffer.
#[derive(Default)]
struct Lines {
    bytes: Vec<u8>,
    lines: Vec<Range<usize>>,
}

impl Lines {
    /// Each line, in order.
    fn each(&self) -> Vec<&[u8]> {
        self.lines.iter().map(|r| &self.bytes[r.clone()]).collect()
    }
}

/// Reads lines up to the empty line that ends a request, within the caps, into `lines`.
async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    lines: &mut Lines,
) -> io::Result<Incoming> {
    lines.bytes.clear();
    lines.lines.clear();
    let mut size = 0;
    loop {
        let start = lines.bytes.len();
        // Room for the longest line and a `\r\n`, and one byte more to tell an over-long line.
        let cap = MAX_LINE as u64 + 3;
        let read = (&mut *reader)
            .take(cap)
            .read_until(b'\n', &mut lines.bytes)
            .await?;
        size += read;
        if lines.bytes.pop() != Some(b'\n') {
            return Ok(if read as u64 == cap {
                Incoming::TooLarge
            } else {
                Incoming::Gone
            });
        }
        if lines.bytes.len() > start && lines.bytes.last() == Some(&b'\r') {
            lines.bytes.pop();
        }
        let line = start..lines.bytes.len();
        if line.len() > MAX_LINE || size > MAX_REQUEST {
            return Ok(Incoming::TooLarge);
        }
        if line.is_empty() {
            return Ok(Incoming::Request);
        }
        if lines.lines.len() == MAX_ATTRIBUTES {
            return Ok(Incoming::TooLarge);
        }
        lines.lines.push(line);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    use crate::check::fake::Fake;
    use crate::check::{LicenceRefusals, Outcome, Reason};

    fn request(pairs: &[&'static str]) -> Request<'static> {
        let mut lines: Vec<&str> = vec!["request=smtpd_access_policy"];
        lines.extend_from_slice(pairs);
        parse_request(lines.leak()).unwrap()
    }

    #[test]
    fn direction_names_round_trip() {
        for &mode in PolicyDirection::ALL {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        assert!("Inbound".parse::<PolicyDirection>().is_err());
    }

    #[test]
    fn the_policy_context_then_a_login_say_which_direction_a_request_is() {
        use Direction::{Inbound, Outbound};
        use PolicyDirection::Auto;
        for (attributes, mode, expected) in [
            (&[][..], Auto, Inbound),
            (&["sasl_username="][..], Auto, Inbound),
            (&["sasl_username=jane"][..], Auto, Outbound),
            (&["policy_context=outbound"][..], Auto, Outbound),
            (
                &["policy_context=inbound", "sasl_username=jane"][..],
                Auto,
                Inbound,
            ),
            (&["policy_context=submission"][..], Auto, Inbound),
            (
                &["policy_context=outbound"][..],
                PolicyDirection::Inbound,
                Inbound,
            ),
            (&[][..], PolicyDirection::Outbound, Outbound),
        ] {
            assert_eq!(
                direction(&request(attributes), mode),
                expected,
                "{attributes:?} {mode:?}"
            );
        }
    }

    #[test]
    fn requests_are_name_value_lines_of_an_access_policy_request() {
        let parsed = request(&["recipient=a@example.com", "sender=", "helo_name=x=y"]);
        assert_eq!(parsed.get("recipient"), Some(b"a@example.com".as_slice()));
        assert_eq!(parsed.get("sender"), Some(b"".as_slice()));
        assert_eq!(parsed.get("helo_name"), Some(b"x=y".as_slice()));
        assert_eq!(parsed.get("client_address"), None);

        let binary: [&[u8]; 2] = [b"request=smtpd_access_policy", b"ccert_subject=\xff\xfe"];
        assert!(parse_request(&binary).is_ok());
        assert_eq!(
            parse_request(&["request=smtpd_access_policy", "no equals sign"]),
            Err(Malformed::NotAttribute)
        );
        assert_eq!(
            parse_request(&["request=smtpd_access_policy", "=value"]),
            Err(Malformed::NotAttribute)
        );
        let bad_name: [&[u8]; 2] = [b"request=smtpd_access_policy", b"\xff=1"];
        assert_eq!(parse_request(&bad_name), Err(Malformed::NameNotUtf8));
        assert_eq!(
            parse_request(&["recipient=a@example.com"]),
            Err(Malformed::NotAccessPolicy)
        );
        assert_eq!(parse_request::<&str>(&[]), Err(Malformed::NotAccessPolicy));
    }

    #[test]
    fn nothing_to_check_is_dunno_and_bad_syntax_is_refused_by_its_side() {
        use PolicyDirection::{Inbound, Outbound};
        let dunno = Step::Action("DUNNO".to_owned());
        assert_eq!(step(&request(&[]), Inbound), dunno);
        assert_eq!(step(&request(&["sender="]), Outbound), dunno);
        assert_eq!(step(&request(&["recipient="]), Inbound), dunno);
        assert_eq!(
            step(
                &request(&["recipient=Jane@Example.COM", "sender=a@b.example"]),
                Inbound
            ),
            Step::Ask(
                MailAddress::parse("Jane@example.com").unwrap(),
                Direction::Inbound
            )
        );
        assert_eq!(
            step(&request(&["recipient=no-at-sign"]), Inbound),
            Step::Action("REJECT 5.1.3 bad recipient address syntax".to_owned())
        );
        assert_eq!(
            step(&request(&["sender=a@localhost"]), Outbound),
            Step::Action("REJECT 5.1.7 bad sender address syntax".to_owned())
        );
        let lines: [&[u8]; 2] = [
            b"request=smtpd_access_policy",
            b"recipient=\xff@example.com",
        ];
        assert_eq!(
            step(&parse_request(&lines).unwrap(), Inbound),
            Step::Action("REJECT 5.1.3 bad recipient address syntax".to_owned())
        );
    }

    #[test]
    fn answers_become_actions_with_the_reply_maps_codes_and_the_reason() {
        use Direction::{Inbound, Outbound};
        for (reason, direction, expected) in [
            (Reason::Ok, Inbound, "DUNNO"),
            (
                Reason::Unavailable,
                Inbound,
                "DEFER_IF_PERMIT 4.3.0 unavailable",
            ),
            (Reason::UnknownMailbox, Inbound, "550 5.1.1 unknown_mailbox"),
            (Reason::UnknownDomain, Inbound, "550 5.1.2 unknown_domain"),
            (
                Reason::MailboxDisabled,
                Inbound,
                "550 5.2.1 mailbox_disabled",
            ),
            (
                Reason::ModuleNotLicensed,
                Inbound,
                "DEFER_IF_PERMIT 4.7.1 module_not_licensed",
            ),
            (
                Reason::UnknownMailbox,
                Outbound,
                "550 5.7.1 unknown_mailbox",
            ),
            (Reason::UnknownDomain, Outbound, "550 5.1.8 unknown_domain"),
            (
                Reason::UsersExhausted,
                Outbound,
                "DEFER_IF_PERMIT 4.7.1 users_exhausted",
            ),
        ] {
            let answer = Answer::new(Outcome::bare(reason), direction, LicenceRefusals::Temporary);
            assert_eq!(action_for(&answer), expected, "{reason:?} {direction:?}");
        }
        let permanent = Answer::new(
            Outcome::bare(Reason::OverLimit),
            Inbound,
            LicenceRefusals::Permanent,
        );
        assert_eq!(action_for(&permanent), "550 5.7.1 over_limit");
    }

    async fn start(mode: PolicyDirection) -> (SocketAddr, Arc<Fake>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let fake = Arc::new(Fake::default());
        tokio::spawn(serve(
            listener,
            Arc::clone(&fake),
            mode,
            crate::edge::PeerLimit::new(256),
        ));
        (address, fake)
    }

    /// A request as Postfix 3 sends it at `RCPT TO`.
    fn postfix_request(sender: &str, recipient: &str) -> String {
        format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
             client_address=192.0.2.10\nclient_name=mail.example.net\nclient_port=41234\n\
             reverse_client_name=mail.example.net\nserver_address=198.51.100.1\nserver_port=25\n\
             helo_name=mail.example.net\nsender={sender}\nrecipient={recipient}\n\
             recipient_count=0\nqueue_id=\ninstance=1a2b.5f3c4d5e.6f7a8.0\nsize=12345\n\
             etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n\
             ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n\
             encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n\
             encryption_keysize=256\npolicy_context=\ncompatibility_level=3.6\n\
             mail_version=3.7.11\n\n"
        )
    }

    /// Sends `request` and reads one answer, up to its empty line.
    async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
        stream.write_all(request).await.unwrap();
        read_answer(stream).await
    }

    async fn read_answer(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        while !answer.ends_with(b"\n\n") {
            let byte = tokio::time::timeout(Duration::from_secs(10), stream.read_u8())
                .await
                .expect("an answer in time")
                .expect("an answer before the connection closes");
            answer.push(byte);
        }
        String::from_utf8(answer).unwrap()
    }

    async fn assert_closed(stream: &mut TcpStream) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("the connection closes");
        // A reset is as closed as an end of file: unread input makes the kernel send one.
        assert!(read.is_err() || rest.is_empty(), "{rest:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn one_connection_answers_request_after_request() {
        let (address, fake) = start(PolicyDirection::Inbound).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let sender = "someone@example.net";
        for (recipient, expected) in [
            ("known@example.com", "action=DUNNO\n\n"),
            ("nobody@example.com", "action=550 5.1.1 unknown_mailbox\n\n"),
            (
                "slow@example.com",
                "action=DEFER_IF_PERMIT 4.3.0 unavailable\n\n",
            ),
            ("off@example.com", "action=550 5.2.1 mailbox_disabled\n\n"),
            (
                "not an address",
                "action=REJECT 5.1.3 bad recipient address syntax\n\n",
            ),
            ("Known@EXAMPLE.com", "action=550 5.1.1 unknown_mailbox\n\n"),
        ] {
            let answer = exchange(&mut stream, postfix_request(sender, recipient).as_bytes()).await;
            assert_eq!(answer, expected, "{recipient}");
        }
        let crlf = postfix_request(sender, "known@example.com").replace('\n', "\r\n");
        assert_eq!(
            exchange(&mut stream, crlf.as_bytes()).await,
            "action=DUNNO\n\n"
        );

        let asked = fake.asked.lock().unwrap();
        assert_eq!(asked.len(), 6, "a bad address is not asked about");
        assert!(
            asked
                .iter()
                .all(|q| q.enrol.is_none() && q.module.is_none())
        );
        assert_eq!(
            asked[0].target,
            Target::Address(MailAddress::parse("known@example.com").unwrap())
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_requests_in_one_write_get_two_answers_in_order() {
        let (address, _) = start(PolicyDirection::Inbound).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let both = postfix_request("a@example.net", "nobody@example.com")
            + &postfix_request("a@example.net", "known@example.com");
        assert_eq!(
            exchange(&mut stream, both.as_bytes()).await,
            "action=550 5.1.1 unknown_mailbox\n\n"
        );
        assert_eq!(read_answer(&mut stream).await, "action=DUNNO\n\n");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_sender_listener_checks_the_sender_and_lets_the_null_sender_through() {
        let (address, fake) = start(PolicyDirection::Outbound).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        for (sender, expected) in [
            ("known@example.com", "action=DUNNO\n\n"),
            ("nobody@example.com", "action=550 5.7.1 unknown_mailbox\n\n"),
            ("", "action=DUNNO\n\n"),
            ("@", "action=REJECT 5.1.7 bad sender address syntax\n\n"),
        ] {
            let answer = exchange(
                &mut stream,
                postfix_request(sender, "anyone@example.org").as_bytes(),
            )
            .await;
            assert_eq!(answer, expected, "{sender:?}");
        }
        let asked = fake.asked.lock().unwrap();
        assert_eq!(
            asked.iter().map(|q| q.target.clone()).collect::<Vec<_>>(),
            ["known@example.com", "nobody@example.com"]
                .map(|a| Target::Address(MailAddress::parse(a).unwrap()))
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn malformed_requests_are_deferred_and_the_connection_goes_on() {
        let (address, _) = start(PolicyDirection::Inbound).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let malformed = "action=DEFER_IF_PERMIT malformed policy request\n\n";
        for bad in [
            b"request=smtpd_access_policy\nno equals sign here\nrecipient=known@example.com\n\n"
                .as_slice(),
            b"\xff\xfe\x00garbage\x80\n\n",
            b"recipient=known@example.com\n\n",
            b"\n",
        ] {
            assert_eq!(exchange(&mut stream, bad).await, malformed, "{bad:?}");
            let good = postfix_request("", "known@example.com");
            assert_eq!(
                exchange(&mut stream, good.as_bytes()).await,
                "action=DUNNO\n\n"
            );
        }
        let binary_address = b"request=smtpd_access_policy\nrecipient=\xc3\x28@example.com\n\n";
        assert_eq!(
            exchange(&mut stream, binary_address).await,
            "action=REJECT 5.1.3 bad recipient address syntax\n\n"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_over_long_line_is_deferred_and_closes_the_connection() {
        let (address, _) = start(PolicyDirection::Inbound).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let long = format!(
            "request=smtpd_access_policy\nccert_subject={}\n\n",
            "x".repeat(MAX_LINE)
        );
        assert_eq!(
            exchange(&mut stream, long.as_bytes()).await,
            "action=DEFER_IF_PERMIT malformed policy request\n\n"
        );
        assert_closed(&mut stream).await;

        // A line of exactly the cap is fine.
        let mut stream = TcpStream::connect(address).await.unwrap();
        let name = "ccert_subject=";
        let fits = format!(
            "request=smtpd_access_policy\n{name}{}\r\nrecipient=known@example.com\n\n",
            "x".repeat(MAX_LINE - name.len())
        );
        assert_eq!(
            exchange(&mut stream, fits.as_bytes()).await,
            "action=DUNNO\n\n"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn too_many_attributes_are_deferred_and_close_the_connection() {
        let (address, _) = start(PolicyDirection::Inbound).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let many = "request=smtpd_access_policy\n".to_owned() + &"a=b\n".repeat(MAX_ATTRIBUTES);
        assert_eq!(
            exchange(&mut stream, format!("{many}\n").as_bytes()).await,
            "action=DEFER_IF_PERMIT malformed policy request\n\n"
        );
        assert_closed(&mut stream).await;

        let mut stream = TcpStream::connect(address).await.unwrap();
        let line = format!("a={}\n", "x".repeat(MAX_LINE - 2));
        let big = "request=smtpd_access_policy\n".to_owned()
            + &line.repeat(MAX_REQUEST / line.len() + 1)
            + "\n";
        assert_eq!(
            exchange(&mut stream, big.as_bytes()).await,
            "action=DEFER_IF_PERMIT malformed policy request\n\n"
        );
        assert_closed(&mut stream).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_peer_that_leaves_mid_request_gets_no_answer_and_others_are_unaffected() {
        let (address, _) = start(PolicyDirection::Inbound).await;
        let mut leaving = TcpStream::connect(address).await.unwrap();
        leaving
            .write_all(b"request=smtpd_access_policy\nrecipient=known@exa")
            .await
            .unwrap();
        leaving.shutdown().await.unwrap();
        assert_closed(&mut leaving).await;

        let mut stream = TcpStream::connect(address).await.unwrap();
        let good = postfix_request("", "known@example.com");
        assert_eq!(
            exchange(&mut stream, good.as_bytes()).await,
            "action=DUNNO\n\n"
        );
    }

    /// The policy listener's line reader on arbitrary input (the other policy harnesses are in
    /// `tests/fuzz.rs`): `PROPTEST_CASES` sets the cases, `bench/fuzz.sh` runs it long.
    mod fuzz {
        use std::collections::VecDeque;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        use proptest::prelude::*;
        use tokio::io::{AsyncRead, ReadBuf};

        use super::*;

        /// A peer that sends its bytes in the given pieces, one piece per read at most.
        struct Pieces(VecDeque<Vec<u8>>);

        impl AsyncRead for Pieces {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                if let Some(mut piece) = self.0.pop_front() {
                    let n = piece.len().min(buf.remaining());
                    buf.put_slice(&piece[..n]);
                    if n < piece.len() {
                        self.0.push_front(piece.split_off(n));
                    }
                }
                Poll::Ready(Ok(()))
            }
        }

        fn pieces(bytes: &[u8], cuts: &[prop::sample::Index]) -> Pieces {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut out = VecDeque::new();
            let mut start = 0;
            for cut in at.into_iter().chain([bytes.len()]) {
                if cut > start {
                    out.push_back(bytes[start..cut].to_vec());
                }
                start = cut;
            }
            Pieces(out)
        }

        /// Everything the reader makes of `peer`, until it stops.
        fn read_all(peer: Pieces) -> (Vec<Vec<Vec<u8>>>, bool) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut reader = BufReader::new(peer);
                let mut requests = Vec::new();
                let mut read = Lines::default();
                loop {
                    match read_request(&mut reader, &mut read).await.unwrap() {
                        Incoming::Request => {
                            let lines: Vec<Vec<u8>> =
                                read.each().into_iter().map(<[u8]>::to_vec).collect();
                            assert!(lines.len() <= MAX_ATTRIBUTES);
                            let size: usize = lines.iter().map(|l| l.len() + 1).sum();
                            assert!(size <= MAX_REQUEST);
                            for line in &lines {
                                assert!(line.len() <= MAX_LINE && !line.is_empty());
                                assert!(!line.contains(&b'\n'));
                            }
                            requests.push(lines);
                        }
                        Incoming::Gone => return (requests, false),
                        Incoming::TooLarge => return (requests, true),
                    }
                }
            })
        }

        fn line() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                8 => "[a-z_]{1,20}=[ -~]{0,60}".prop_map(String::into_bytes),
                // Any bytes but a line end; a line cannot end in `\r` (the reader takes it for
                // half of a CRLF), nor be empty (that ends the request).
                1 => prop::collection::vec(any::<u8>().prop_filter("not a line end", |b| *b != b'\n'), 1..100)
                    .prop_filter("no CR at the end", |l| l.last() != Some(&b'\r')),
                1 => (MAX_LINE - 2..=MAX_LINE + 2).prop_map(|n| vec![b'x'; n]),
            ]
        }

        proptest! {
            #[test]
            fn fuzz_policy_reader_arbitrary_bytes(
                bytes in prop::collection::vec(any::<u8>(), 0..2000),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            ) {
                // The same bytes, whole or in pieces: the same requests, within every cap.
                let whole = read_all(pieces(&bytes, &[]));
                prop_assert_eq!(read_all(pieces(&bytes, &cuts)), whole);
            }

            #[test]
            fn fuzz_policy_reader_reassembles_requests(
                requests in prop::collection::vec(prop::collection::vec(line(), 0..8), 0..4),
                crlf in any::<bool>(),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            ) {
                let end: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                let mut wire = Vec::new();
                for request in &requests {
                    for line in request {
                        wire.extend_from_slice(line);
                        wire.extend_from_slice(end);
                    }
                    wire.extend_from_slice(end);
                }
                let (got, too_large) = read_all(pieces(&wire, &cuts));
                let fits = |l: &Vec<u8>| l.len() <= MAX_LINE;
                let whole = requests.iter().take_while(|r| r.iter().all(fits)).count();
                prop_assert_eq!(&got[..], &requests[..whole]);
                prop_assert_eq!(too_large, whole < requests.len());
            }
        }
    }
}
