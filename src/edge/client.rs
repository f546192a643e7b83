//! Who the client is: the one address that login throttling, the audit trail and the logs name.
//!
//! Without `ALLOT_TRUSTED_PROXIES` it is the connection's peer. Behind reverse proxies the peer is
//! a proxy, and the client's address is in the header the proxies write (`ALLOT_PROXY_HEADER`:
//! `X-Forwarded-For` or RFC 7239 `Forwarded`). Anyone can send that header, so it is read only
//! when the peer is a trusted proxy, and then only as far as trusted proxies wrote it: each proxy
//! appends the address it received the request from, so the list is walked from the right,
//! skipping trusted hops, and the first address that is not a trusted proxy is the client.
//! Whatever a client wrote to the left of that is never looked at.
//!
//! Only the other header is never read: a proxy that writes one passes the other on as the
//! client sent it, so believing both would believe the client.
//!
//! An element the walk reaches that is not an address (garbage, `unknown`, an obfuscated RFC 7239
//! identifier, a `Forwarded` element without `for`) ends it at the peer: the proxies did not say
//! who the client is. Every hop trusted: the farthest one is the client (a request from inside).
//!
//! Computed once per request, by the request-id middleware (which logs it), and kept in the
//! request's extensions; every reader goes through [`address`].

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{HttpMessage, HttpRequest, web};
use ipnet::IpNet;

use crate::config::ProxyHeader;
use crate::startup::AppState;

/// The client's address, once resolved, in the request's extensions.
#[derive(Debug, Clone, Copy)]
struct Client(Option<IpAddr>);

/// The client address of `req`: the peer's, or behind trusted proxies the forwarded one. `None`
/// only when the connection has no peer address (never over TCP).
pub(crate) fn address(req: &HttpRequest) -> Option<IpAddr> {
    if let Some(Client(known)) = req.extensions().get::<Client>() {
        return *known;
    }
    let peer = req.peer_addr().map(|a| a.ip());
    let resolved = match (peer, req.app_data::<web::Data<AppState>>()) {
        (Some(peer), Some(state)) => Some(resolve(
            peer,
            req.headers(),
            &state.config.trusted_proxies,
            state.config.proxy_header,
        )),
        (peer, _) => peer.map(|p| p.to_canonical()),
    };
    req.extensions_mut().insert(Client(resolved));
    resolved
}

/// The client behind `peer`, given the request's `headers`, the `trusted` proxies' networks and
/// the `header` they write.
pub(crate) fn resolve(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ProxyHeader,
) -> IpAddr {
    // An IPv4 peer on a dual-stack socket is one address, however it is written.
    let peer = peer.to_canonical();
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    if !is_trusted(&peer) {
        return peer;
    }
    let name = match header {
        ProxyHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
        ProxyHeader::Forwarded => HeaderName::from_static("forwarded"),
    };
    // The header's lines, last first; each line's hops, rightmost first. A line is parsed only
    // when the walk reaches it.
    let lines: Vec<&[u8]> = headers.get_all(&name).map(|v| v.as_bytes()).collect();
    let mut nearest = peer;
    for line in lines.into_iter().rev() {
        let hops = match header {
            ProxyHeader::XForwardedFor => x_forwarded_for(line),
            ProxyHeader::Forwarded => forwarded(line),
        };
        let Some(hops) = hops else {
            return peer;
        };
        for hop in hops.into_iter().rev() {
            let Some(addr) = hop else {
                return peer;
            };
            let addr = addr.to_canonical();
            if !is_trusted(&addr) {
                return addr;
            }
            nearest = addr;
        }
    }
    nearest
}

/// One `X-Forwarded-For` line's hops, left to right; `None` for an element that is not an
/// address. Parsed whole but cheaply: elements are split on commas, which no address contains.
fn x_forwarded_for(line: &[u8]) -> Option<Vec<Option<IpAddr>>> {
    let line = std::str::from_utf8(line).ok()?;
    Some(line.split(',').map(|hop| node(hop.trim())).collect())
}

/// An address as proxies write it: bare, `[v6]`, `v4:port` or `[v6]:port`.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// One `Forwarded` line's hops (RFC 7239 §4: `forwarded-element *( "," forwarded-element )`, each
/// `pair *( ";" pair )`, a pair `token "=" ( token / quoted-string )`), left to right: each
/// element's `for` if it is an address, `None` if it is not or is missing. `None` as a whole when
/// the line does not parse (a quote left open makes every later comma ambiguous).
fn forwarded(line: &[u8]) -> Option<Vec<Option<IpAddr>>> {
    let line = std::str::from_utf8(line).ok()?;
    let mut hops = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        // One element: its pairs up to a comma or the end.
        let mut client = None;
        loop {
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            let mut name = String::new();
            while let Some(c) = chars.next_if(|c| is_tchar(*c)) {
                name.push(c);
            }
            if name.is_empty() || chars.next() != Some('=') {
                return None;
            }
            let value = if chars.next_if_eq(&'"').is_some() {
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => value.push(chars.next()?),
                        c => value.push(c),
                    }
                }
                value
            } else {
                let mut value = String::new();
                while let Some(c) = chars.next_if(|c| is_tchar(*c)) {
                    value.push(c);
                }
                if value.is_empty() {
                    return None;
                }
                value
            };
            if name.eq_ignore_ascii_case("for") {
                client = Some(node(&value));
            }
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            match chars.next() {
                Some(';') => continue,
                Some(',') => break,
                None => {
                    hops.push(client.flatten());
                    return Some(hops);
                }
                Some(_) => return None,
            }
        }
        hops.push(client.flatten());
    }
}

/// RFC 9110's `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(name: &'static str, lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_str(line).unwrap(),
            );
        }
        map
    }

    fn xff(peer: &str, trusted: &[&str], lines: &[&str]) -> String {
        resolve(
            peer.parse().unwrap(),
            &headers("x-forwarded-for", lines),
            &nets(trusted),
            ProxyHeader::XForwardedFor,
        )
        .to_string()
    }

    fn fwd(peer: &str, trusted: &[&str], lines: &[&str]) -> String {
        resolve(
            peer.parse().unwrap(),
            &headers("forwarded", lines),
            &nets(trusted),
            ProxyHeader::Forwarded,
        )
        .to_string()
    }

    const PROXIES: &[&str] = &["10.0.0.0/8", "2001:db8:1::/48"];

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(xff("192.0.2.1", PROXIES, &["203.0.113.9"]), "192.0.2.1");
        assert_eq!(xff("192.0.2.1", &[], &["203.0.113.9"]), "192.0.2.1");
        assert_eq!(fwd("192.0.2.1", PROXIES, &["for=203.0.113.9"]), "192.0.2.1");
    }

    #[test]
    fn the_walk_skips_trusted_hops_from_the_right_and_ignores_what_the_client_wrote() {
        // The client claimed 1.1.1.1; the first proxy appended the address it saw.
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["1.1.1.1, 203.0.113.9, 10.0.0.1"]),
            "203.0.113.9"
        );
        // Lines are one list, in order; garbage left of the client is never read.
        assert_eq!(
            xff(
                "10.0.0.2",
                PROXIES,
                &["nonsense,,", "203.0.113.9", "10.0.0.1"]
            ),
            "203.0.113.9"
        );
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["[2001:db8:2::7]:4711"]),
            "2001:db8:2::7"
        );
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["203.0.113.9:4711"]),
            "203.0.113.9"
        );
        // A v4-mapped peer is its IPv4 address.
        assert_eq!(
            xff("::ffff:10.0.0.2", PROXIES, &["203.0.113.9"]),
            "203.0.113.9"
        );
    }

    #[test]
    fn a_hop_that_is_not_an_address_ends_the_walk_at_the_peer() {
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["203.0.113.9, unknown"]),
            "10.0.0.2"
        );
        assert_eq!(xff("10.0.0.2", PROXIES, &["203.0.113.9,"]), "10.0.0.2");
        assert_eq!(xff("10.0.0.2", PROXIES, &[]), "10.0.0.2");
        // Every hop trusted: the farthest is the client.
        assert_eq!(
            xff("10.0.0.2", PROXIES, &["10.9.9.9, 10.0.0.1"]),
            "10.9.9.9"
        );
    }

    #[test]
    fn forwarded_elements_are_parsed_as_rfc_7239_writes_them() {
        assert_eq!(
            fwd(
                "10.0.0.2",
                PROXIES,
                &["for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.2"]
            ),
            "2001:db8:cafe::17"
        );
        assert_eq!(
            fwd(
                "10.0.0.2",
                PROXIES,
                &["For=203.0.113.9 ; Proto=http", "for=10.0.0.1"]
            ),
            "203.0.113.9"
        );
        // A quoted comma is no element boundary.
        assert_eq!(
            fwd("10.0.0.2", PROXIES, &["for=203.0.113.9;x=\"a,b\""]),
            "203.0.113.9"
        );
        for bad in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=\"203.0.113.9",
            "for=203.0.113.9;",
            "for",
            "for=1.1.1.1 x",
        ] {
            assert_eq!(fwd("10.0.0.2", PROXIES, &[bad]), "10.0.0.2", "{bad}");
        }
        // A broken line the walk does not reach is not read.
        assert_eq!(
            fwd("10.0.0.2", PROXIES, &["for=\"open", "for=203.0.113.9"]),
            "203.0.113.9"
        );
    }
}
