//! The Postfix socketmap listener (<https://www.postfix.org/socketmap_table.5.html>): lookup
//! tables answered from the check's index.
//!
//! - `domain` answers every domain allot holds, whatever its state (`relay_domains` or
//!   `virtual_mailbox_domains`), so that Postfix treats it as its own: a domain allot knows and
//!   refuses must never be relayed (from a trusted client) or told "Relay access denied" (from
//!   outside, which a sender retries for days). The refusal comes from `mailbox` or the policy
//!   listener, with the reply it wants.
//! - `mailbox` answers an inbound check of the address (`relay_recipient_maps` or
//!   `virtual_mailbox_maps`): accepted is `OK`, a temporary refusal `TEMP` (Postfix answers
//!   `451 4.3.0` and the sender retries), a permanent one `NOTFOUND` (Postfix answers `550 5.1.1`).
//!   A table can say no more than that; the policy listener gives each reason its own code.
//! - `transport` answers a domain's route as a next hop, `smtp:[host]:port` (`transport_maps`),
//!   for the domain or any address on it: Postfix asks socketmaps whole addresses only.
//! - `alias` answers where an address goes instead (`virtual_alias_maps`): an alias to its
//!   mailbox, postmaster@ to the customer's role recipient, abuse@ to the operator's.
//!
//! Requests and replies are netstrings (`<len>:<payload>,`), a request's payload `<map> <key>`,
//! many per connection. Framing ([`decode`], [`encode`]) and the lookup ([`step`],
//! [`reply_for`]) are pure functions; [`serve`] only reads, bounds and times the connection.
//!
//! A lookup never enrols anybody: it is an inbound check, and Postfix looks keys up for many
//! reasons (address verification, alias expansion, `@domain` wildcards), none of which is a
//! sender seen. Keys that are not a domain or an address (`user`, `@example.com`) are simply not
//! found. A map name allot does not serve is `PERM`, as it is a configuration error
//! that retrying will not mend; a payload without the space is answered `PERM malformed request`
//! and the connection goes on, since the framing still holds. A netstring that cannot be framed
//! is answered the same way and closes the connection: where the next request starts is lost.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Answer, Ask, Direction, Found, Listener, Lookup, Origin, Question, Target, Verdict};
use crate::domain::address::{DomainName, MailAddress};

/// The longest request payload. A request is a map name and a key; an address is at most 254
/// bytes and Postfix's keys are addresses, domains or parts of them, so this is generous while
/// bounding what one connection may make allot buffer. (Postfix caps replies at 100,000 bytes; it
/// sets no request cap of its own.)
const MAX_REQUEST: usize = 10_000;
/// The digits of [`MAX_REQUEST`]: a longer length prefix is refused before its payload arrives.
const MAX_LENGTH_DIGITS: usize = 5;
/// How long a connection may wait for its next request. Postfix's socketmap client closes its
/// own after 10 s idle and 100 s in all, so this only drops peers that have gone away.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const READ_CHUNK: usize = 4096;

const MALFORMED: &str = "PERM malformed request";
const NOT_FOUND: &str = "NOTFOUND ";

/// Why bytes cannot be framed as a netstring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the length is not a decimal number without leading zeros followed by `:`")]
    Length,
    #[error("the length is over {MAX_REQUEST} bytes")]
    TooLong,
    #[error("the payload is not followed by `,`")]
    Terminator,
}

/// Decodes the netstring at the start of `buf`: its payload and how many bytes of `buf` it took,
/// or `None` while `buf` holds only the beginning of one (a request split across TCP segments).
pub fn decode(buf: &[u8]) -> Result<Option<(&[u8], usize)>, Malformed> {
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_LENGTH_DIGITS {
        return Err(Malformed::TooLong);
    }
    if digits == buf.len() {
        return Ok(None);
    }
    if digits == 0 || (digits > 1 && buf[0] == b'0') || buf[digits] != b':' {
        return Err(Malformed::Length);
    }
    let length: usize = std::str::from_utf8(&buf[..digits])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or(Malformed::Length)?;
    if length > MAX_REQUEST {
        return Err(Malformed::TooLong);
    }
    let start = digits + 1;
    let end = start + length;
    match buf.get(end) {
        None => Ok(None),
        Some(b',') => Ok(Some((&buf[start..end], end + 1))),
        Some(_) => Err(Malformed::Terminator),
    }
}

pub(crate) fn encode(payload: &str) -> Vec<u8> {
    format!("{}:{payload},", payload.len()).into_bytes()
}

/// What to do with a request: reply at once, ask the check about an address, or look a key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Reply(String),
    Ask(MailAddress),
    Look(Lookup),
}

/// Reads a request's payload, `<map> <key>`.
pub fn step(request: &[u8]) -> Step {
    let Some(space) = request.iter().position(|&b| b == b' ') else {
        return Step::Reply(MALFORMED.to_owned());
    };
    let (map, key) = (&request[..space], &request[space + 1..]);
    let key = std::str::from_utf8(key).ok();
    let domain = || key.and_then(|key| DomainName::parse(key).ok());
    let address = || key.and_then(|key| MailAddress::parse(key).ok());
    let step = match map {
        b"domain" => domain().map(|d| Step::Look(Lookup::Domain(d))),
        // Postfix asks a socketmap (a pattern table to it) the whole recipient address; a domain
        // is taken too, for any other client.
        b"transport" => domain()
            .or_else(|| address().map(|a| a.domain().clone()))
            .map(|d| Step::Look(Lookup::Transport(d))),
        b"alias" => address().map(|a| Step::Look(Lookup::Alias(a))),
        b"mailbox" => address().map(Step::Ask),
        _ => {
            return Step::Reply(format!("PERM unknown map {}", String::from_utf8_lossy(map)));
        }
    };
    step.unwrap_or_else(|| Step::Reply(NOT_FOUND.to_owned()))
}

/// The reply for the check's answer about `address`. A found key's value is the stored address,
/// which the rest of the mail system matches on.
pub(crate) fn reply_for(answer: &Answer, address: &MailAddress) -> String {
    match answer.verdict {
        Verdict::Accept => format!("OK {}", address.stored()),
        Verdict::Reject => NOT_FOUND.to_owned(),
        Verdict::Defer => format!("TEMP {}", answer.reason.as_str()),
    }
}

/// The reply for a table's answer.
pub(crate) fn reply_found(found: Found) -> String {
    match found {
        Found::Value(value) => format!("OK {value}"),
        Found::Nothing => NOT_FOUND.to_owned(),
        Found::Unavailable => "TEMP unavailable".to_owned(),
    }
}

/// Accepts connections forever, each served by its own task.
pub(crate) async fn serve<A: Ask>(
    listener: TcpListener,
    asker: Arc<A>,
    peers: Arc<crate::edge::PeerLimit>,
) {
    let connections = asker.metrics().socketmap.clone();
    super::accept_forever(
        listener,
        "socketmap",
        connections,
        peers,
        move |stream, origin| {
            let asker = Arc::clone(&asker);
            async move { connection(stream, &*asker, &origin).await }
        },
    )
    .await;
}

async fn connection<A: Ask>(mut stream: TcpStream, asker: &A, origin: &Origin) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    loop {
        let reply = match decode(&buf) {
            Err(err) => {
                tracing::debug!(error = %err, "malformed socketmap request");
                return send(&mut stream, MALFORMED).await;
            }
            Ok(None) => {
                buf.reserve(READ_CHUNK);
                match tokio::time::timeout(IDLE_TIMEOUT, stream.read_buf(&mut buf)).await {
                    Ok(Ok(0)) | Err(_) => return Ok(()),
                    Ok(Ok(_)) => continue,
                    Ok(Err(err)) => return Err(err),
                }
            }
            Ok(Some((request, used))) => {
                let next = step(request);
                buf.drain(..used);
                let reply = match &next {
                    Step::Reply(reply) => reply.clone(),
                    Step::Look(lookup) => reply_found(asker.look_up(lookup)),
                    Step::Ask(address) => {
                        let question = Question {
                            target: Target::Address(address.clone()),
                            direction: Direction::Inbound,
                            module: None,
                            enrol: Some(false),
                        };
                        reply_for(
                            &asker.ask(question, Listener::Socketmap, origin).await,
                            address,
                        )
                    }
                };
                tracing::debug!(request = ?next, reply, "socketmap lookup");
                reply
            }
        };
        send(&mut stream, &reply).await?;
    }
}

async fn send(stream: &mut TcpStream, reply: &str) -> io::Result<()> {
    tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(&encode(reply)))
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::check::{LicenceRefusals, Outcome, Reason};

    use crate::check::fake::Fake;

    #[test]
    fn netstrings_round_trip() {
        assert_eq!(encode("OK example.com"), b"14:OK example.com,");
        assert_eq!(encode(""), b"0:,");
        let wire = encode("mailbox known@example.com");
        assert_eq!(
            decode(&wire),
            Ok(Some((b"mailbox known@example.com".as_slice(), wire.len())))
        );
        assert_eq!(decode(b"0:,"), Ok(Some((b"".as_slice(), 3))));
    }

    #[test]
    fn a_partial_netstring_waits_for_more_at_every_split() {
        let wire = encode("domain example.com");
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(None), "cut at {cut}");
        }
        let mut two = wire.clone();
        two.extend_from_slice(b"7:doma");
        assert_eq!(
            decode(&two),
            Ok(Some((b"domain example.com".as_slice(), wire.len())))
        );
        assert_eq!(decode(&two[wire.len()..]), Ok(None));
    }

    #[test]
    fn what_cannot_be_framed_is_refused_as_early_as_it_shows() {
        assert_eq!(decode(b":abc,"), Err(Malformed::Length));
        assert_eq!(decode(b"x"), Err(Malformed::Length));
        assert_eq!(decode(b"01:a,"), Err(Malformed::Length));
        assert_eq!(decode(b"3;abc,"), Err(Malformed::Length));
        assert_eq!(decode(b"-1:"), Err(Malformed::Length));
        assert_eq!(decode(b"3:abcd"), Err(Malformed::Terminator));
        assert_eq!(decode(b"10001:"), Err(Malformed::TooLong));
        assert_eq!(decode(b"999999"), Err(Malformed::TooLong));
        let longest = encode(&"x".repeat(MAX_REQUEST));
        assert_eq!(decode(&longest).unwrap().unwrap().1, longest.len());
    }

    #[test]
    fn requests_name_a_map_and_a_key() {
        let domain = DomainName::parse("example.com").unwrap();
        assert_eq!(
            step(b"domain Example.COM"),
            Step::Look(Lookup::Domain(domain.clone()))
        );
        assert_eq!(
            step(b"transport example.com"),
            Step::Look(Lookup::Transport(domain.clone()))
        );
        assert_eq!(
            step("domain bücher.example".as_bytes()),
            Step::Look(Lookup::Domain(
                DomainName::parse("xn--bcher-kva.example").unwrap()
            ))
        );
        let jane = MailAddress::parse("Jane@example.com").unwrap();
        assert_eq!(step(b"mailbox Jane@example.com"), Step::Ask(jane.clone()));
        assert_eq!(
            step(b"alias Jane@example.com"),
            Step::Look(Lookup::Alias(jane))
        );
        let not_found = Step::Reply("NOTFOUND ".to_owned());
        for key in [
            b"mailbox jane".as_slice(),
            b"mailbox @example.com",
            b"mailbox ",
            b"mailbox \xff@example.com",
            b"domain @example.com",
            b"domain .example.com",
            b"domain localhost",
            b"transport *",
            b"alias example.com",
        ] {
            assert_eq!(step(key), not_found, "{key:?}");
        }
        assert_eq!(
            step(b"virtual a@example.com"),
            Step::Reply("PERM unknown map virtual".to_owned())
        );
        assert_eq!(
            step(b"mailbox"),
            Step::Reply("PERM malformed request".to_owned())
        );
    }

    #[test]
    fn answers_become_replies_by_their_class() {
        let address = MailAddress::parse("Jane@Example.com").unwrap();
        let reply = |reason| {
            let answer = Answer::new(
                Outcome::bare(reason),
                Direction::Inbound,
                LicenceRefusals::Temporary,
            );
            reply_for(&answer, &address)
        };
        assert_eq!(reply(Reason::Ok), "OK Jane@example.com");
        assert_eq!(reply(Reason::UnknownDomain), "NOTFOUND ");
        assert_eq!(reply(Reason::MailboxDisabled), "NOTFOUND ");
        assert_eq!(reply(Reason::OverLimit), "TEMP over_limit");
        assert_eq!(reply(Reason::Unavailable), "TEMP unavailable");
        assert_eq!(reply_found(Found::Value("x".into())), "OK x");
        assert_eq!(reply_found(Found::Nothing), "NOTFOUND ");
        assert_eq!(reply_found(Found::Unavailable), "TEMP unavailable");
    }

    async fn start() -> (SocketAddr, Arc<Fake>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let fake = Arc::new(Fake::default());
        tokio::spawn(serve(
            listener,
            Arc::clone(&fake),
            crate::edge::PeerLimit::new(256),
        ));
        (address, fake)
    }

    /// Reads one netstring reply, however it arrives.
    async fn read_reply(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
        loop {
            if let Some((payload, used)) = decode(buf).unwrap() {
                let reply = String::from_utf8(payload.to_vec()).unwrap();
                buf.drain(..used);
                return reply;
            }
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(buf))
                .await
                .expect("a reply in time")
                .unwrap();
            assert_ne!(read, 0, "the connection closed before a reply");
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn lookups_on_one_connection_are_answered_in_order_and_never_enrol() {
        let (address, fake) = start().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut buf = Vec::new();
        for (request, expected) in [
            ("domain example.com", "OK example.com"),
            ("domain EXAMPLE.com.", "OK example.com"),
            ("domain example.org", "NOTFOUND "),
            ("mailbox known@example.com", "OK known@example.com"),
            ("mailbox known@EXAMPLE.COM", "OK known@example.com"),
            ("mailbox nobody@example.com", "NOTFOUND "),
            ("mailbox slow@example.com", "TEMP unavailable"),
            ("mailbox full@example.com", "TEMP users_exhausted"),
            ("mailbox known", "NOTFOUND "),
            ("mailbox @example.com", "NOTFOUND "),
            ("transport example.com", "OK smtp:[mx.example.net]:25"),
            ("transport example.org", "NOTFOUND "),
            (
                "transport jane+x@example.com",
                "OK smtp:[mx.example.net]:25",
            ),
            ("alias postmaster@example.com", "OK boss@example.net"),
            ("alias known@example.com", "NOTFOUND "),
        ] {
            stream.write_all(&encode(request)).await.unwrap();
            assert_eq!(
                read_reply(&mut stream, &mut buf).await,
                expected,
                "{request}"
            );
        }
        let asked = fake.asked.lock().unwrap();
        assert_eq!(
            asked.len(),
            5,
            "only mailboxes are checked; keys that do not parse are not asked about"
        );
        assert!(asked.iter().all(|q| q.enrol == Some(false)
            && q.module.is_none()
            && q.direction == Direction::Inbound));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_lookups_in_one_write_get_two_replies() {
        let (address, _) = start().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut both = encode("mailbox nobody@example.com");
        both.extend(encode("mailbox known@example.com"));
        stream.write_all(&both).await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_reply(&mut stream, &mut buf).await, "NOTFOUND ");
        assert_eq!(
            read_reply(&mut stream, &mut buf).await,
            "OK known@example.com"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lookup_split_across_writes_is_answered_once_whole() {
        let (address, _) = start().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let wire = encode("mailbox known@example.com");
        for part in [&wire[..1], &wire[1..12], &wire[12..]] {
            stream.write_all(part).await.unwrap();
            stream.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut buf = Vec::new();
        assert_eq!(
            read_reply(&mut stream, &mut buf).await,
            "OK known@example.com"
        );
        assert!(buf.is_empty(), "one reply only");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_unknown_map_or_a_payload_without_key_is_perm_and_the_connection_goes_on() {
        let (address, _) = start().await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut buf = Vec::new();
        for (request, expected) in [
            ("virtual a@example.com", "PERM unknown map virtual"),
            ("mailbox", "PERM malformed request"),
            ("domain example.com", "OK example.com"),
        ] {
            stream.write_all(&encode(request)).await.unwrap();
            assert_eq!(
                read_reply(&mut stream, &mut buf).await,
                expected,
                "{request}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_malformed_netstring_is_perm_and_closes_the_connection() {
        let (address, _) = start().await;
        for garbage in [
            b"hello world\n".as_slice(),
            b"5:domain example.com,",
            b"123456789:",
            b"\xff\xfe\x00",
        ] {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(garbage).await.unwrap();
            let mut buf = Vec::new();
            assert_eq!(
                read_reply(&mut stream, &mut buf).await,
                "PERM malformed request",
                "{garbage:?}"
            );
            let mut rest = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
                .await
                .expect("the connection closes");
            // A reset is as closed as an end of file: unread input makes the kernel send one.
            assert!(read.is_err() || rest.is_empty(), "{rest:?}");
        }
    }
}
