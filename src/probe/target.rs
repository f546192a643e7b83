//! Which addresses a route test may connect to. Pure: no IO.
//!
//! The rule is "globally reachable unicast only", after IANA's special-purpose address registries
//! (RFC 6890 and its updates). An address that is not globally reachable is only reachable, if at
//! all, through the operator's own network, which is exactly what a probe made on a customer's
//! behalf must not reach. That includes the documentation and benchmarking ranges: nothing public
//! answers there, so a route to one is reached privately or not at all.
//!
//! Two tiers:
//! - [`Tier::Never`]: the unspecified address (connecting to `0.0.0.0` reaches the local host on
//!   Linux), multicast and broadcast: never a mail server, refused whatever the settings say.
//! - [`Tier::Private`]: everything else that is not global (loopback, RFC 1918, CGNAT, link-local,
//!   unique local, documentation, reserved, …): refused unless the operator sets
//!   `ALLOT_ROUTE_TEST_ALLOW_PRIVATE` (a relay on the same network, a test rig).
//!
//! IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) are judged by the IPv4 address they carry, so `::ffff:127.0.0.1` is loopback.
//! Any other IPv6 address outside global unicast `2000::/3` is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How firmly an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Never connected to.
    Never,
    /// Connected to only when the operator allows private targets.
    Private,
}

/// Why an address is refused: its tier and a phrase naming its kind ("a loopback address").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub tier: Tier,
    pub kind: String,
}

/// Whether a route test may connect to `ip`: `None` when it may, the refusal otherwise.
/// `allow_private` lifts the [`Tier::Private`] refusals.
pub(crate) fn refusal(ip: IpAddr, allow_private: bool) -> Option<Refusal> {
    classify(ip).filter(|r| r.tier == Tier::Never || !allow_private)
}

/// The refusal `ip` meets when private targets are not allowed; `None` for a global address.
pub(crate) fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|(tier, kind)| Refusal {
            tier,
            kind: kind.to_owned(),
        }),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// IPv4 ranges that are not globally reachable unicast, most specific first.
const V4: [(Ipv4Addr, u8, Tier, &str); 16] = [
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        Tier::Never,
        "the broadcast address",
    ),
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        Tier::Never,
        "an unspecified (\"this network\") address",
    ),
    (
        Ipv4Addr::new(224, 0, 0, 0),
        4,
        Tier::Never,
        "a multicast address",
    ),
    (
        Ipv4Addr::new(127, 0, 0, 0),
        8,
        Tier::Private,
        "a loopback address",
    ),
    (
        Ipv4Addr::new(10, 0, 0, 0),
        8,
        Tier::Private,
        "a private address (RFC 1918)",
    ),
    (
        Ipv4Addr::new(172, 16, 0, 0),
        12,
        Tier::Private,
        "a private address (RFC 1918)",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        Tier::Private,
        "a private address (RFC 1918)",
    ),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        Tier::Private,
        "a shared (carrier-grade NAT) address (RFC 6598)",
    ),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        Tier::Private,
        "a link-local address",
    ),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        Tier::Private,
        "an IETF protocol assignment address (192.0.0.0/24)",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        Tier::Private,
        "a documentation address (TEST-NET-1)",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        Tier::Private,
        "a documentation address (TEST-NET-2)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        Tier::Private,
        "a documentation address (TEST-NET-3)",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        Tier::Private,
        "a benchmarking address (RFC 2544)",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        Tier::Private,
        "a deprecated 6to4 relay address (RFC 7526)",
    ),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        Tier::Private,
        "a reserved address (240.0.0.0/4)",
    ),
];

fn classify_v4(ip: Ipv4Addr) -> Option<(Tier, &'static str)> {
    let bits = u32::from(ip);
    V4.iter()
        .find(|(net, len, _, _)| bits & mask32(*len) == u32::from(*net))
        .map(|(_, _, tier, kind)| (*tier, *kind))
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// IPv6 ranges refused by name, most specific first; the rest of `2000::/3` is global unicast,
/// and anything outside it is refused as such.
const V6: [(u128, u8, Tier, &str); 13] = [
    (0, 128, Tier::Never, "the unspecified address (::)"),
    (0xff00 << 112, 8, Tier::Never, "a multicast address"),
    (1, 128, Tier::Private, "the loopback address (::1)"),
    (
        0,
        96,
        Tier::Private,
        "a deprecated IPv4-compatible address (::/96)",
    ),
    (
        0x0064_ff9b_0001 << 80,
        48,
        Tier::Private,
        "a local-use NAT64 address (64:ff9b:1::/48)",
    ),
    (
        0x0100 << 112,
        64,
        Tier::Private,
        "a discard-only address (100::/64)",
    ),
    (
        0x2001_0db8 << 96,
        32,
        Tier::Private,
        "a documentation address (2001:db8::/32)",
    ),
    (
        0x3fff << 112,
        20,
        Tier::Private,
        "a documentation address (3fff::/20)",
    ),
    (
        0x2001 << 112,
        23,
        Tier::Private,
        "an IETF protocol assignment address (2001::/23)",
    ),
    (
        0x5f00 << 112,
        16,
        Tier::Private,
        "a segment routing (SRv6) address (5f00::/16)",
    ),
    (
        0xfc00 << 112,
        7,
        Tier::Private,
        "a unique local address (fc00::/7)",
    ),
    (
        0xfe80 << 112,
        10,
        Tier::Private,
        "a link-local address (fe80::/10)",
    ),
    (
        0xfec0 << 112,
        10,
        Tier::Private,
        "a deprecated site-local address (fec0::/10)",
    ),
];

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some((how, v4)) = embedded_v4(ip) {
        return classify_v4(v4).map(|(tier, kind)| Refusal {
            tier,
            kind: format!("{how} of {v4}, {kind}"),
        });
    }
    let bits = u128::from(ip);
    let named = V6
        .iter()
        .find(|(net, len, _, _)| bits & mask128(*len) == *net)
        .map(|(_, _, tier, kind)| (*tier, *kind));
    let global_unicast = bits & mask128(3) == 0x2000 << 112;
    match named {
        Some((tier, kind)) => Some(Refusal {
            tier,
            kind: kind.to_owned(),
        }),
        None if global_unicast => None,
        None => Some(Refusal {
            tier: Tier::Private,
            kind: "not a global unicast address (outside 2000::/3)".to_owned(),
        }),
    }
}

/// The IPv4 address an IPv6 address stands for, and how it carries it.
fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from(bits as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(("an IPv4-mapped address", v4))
    } else if bits & mask128(96) == 0x0064_ff9b << 96 {
        Some(("a NAT64 address", low))
    } else if bits & mask128(16) == 0x2002 << 112 {
        Some(("a 6to4 address", Ipv4Addr::from((bits >> 80) as u32)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<(Tier, String)> {
        classify(text.parse().unwrap()).map(|r| (r.tier, r.kind))
    }

    #[test]
    fn global_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "192.0.3.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2a00:1450:4001:82b::1b",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_non_global_range_is_refused_with_its_name() {
        for (ip, tier, words) in [
            ("127.0.0.1", Tier::Private, "loopback"),
            ("127.255.255.254", Tier::Private, "loopback"),
            ("10.1.2.3", Tier::Private, "RFC 1918"),
            ("172.16.0.1", Tier::Private, "RFC 1918"),
            ("172.31.255.255", Tier::Private, "RFC 1918"),
            ("192.168.1.1", Tier::Private, "RFC 1918"),
            ("100.64.0.1", Tier::Private, "carrier-grade NAT"),
            ("100.127.255.255", Tier::Private, "carrier-grade NAT"),
            ("169.254.169.254", Tier::Private, "link-local"),
            ("192.0.0.8", Tier::Private, "IETF protocol"),
            ("192.0.2.7", Tier::Private, "documentation"),
            ("198.51.100.1", Tier::Private, "documentation"),
            ("203.0.113.9", Tier::Private, "documentation"),
            ("198.18.0.1", Tier::Private, "benchmarking"),
            ("198.19.255.255", Tier::Private, "benchmarking"),
            ("192.88.99.1", Tier::Private, "6to4 relay"),
            ("240.0.0.1", Tier::Private, "reserved"),
            ("0.0.0.0", Tier::Never, "unspecified"),
            ("0.1.2.3", Tier::Never, "unspecified"),
            ("224.0.0.1", Tier::Never, "multicast"),
            ("239.255.255.255", Tier::Never, "multicast"),
            ("255.255.255.255", Tier::Never, "broadcast"),
            ("::", Tier::Never, "unspecified"),
            ("::1", Tier::Private, "loopback"),
            ("::127.0.0.1", Tier::Private, "IPv4-compatible"),
            ("ff02::1", Tier::Never, "multicast"),
            ("fc00::1", Tier::Private, "unique local"),
            ("fd12:3456::1", Tier::Private, "unique local"),
            ("fe80::1", Tier::Private, "link-local"),
            ("fec0::1", Tier::Private, "site-local"),
            ("2001:db8::25", Tier::Private, "documentation"),
            ("3fff::1", Tier::Private, "documentation"),
            ("2001::1", Tier::Private, "IETF protocol"),
            ("2001:1ff::1", Tier::Private, "IETF protocol"),
            ("100::1", Tier::Private, "discard-only"),
            ("64:ff9b:1::1", Tier::Private, "local-use NAT64"),
            ("5f00::1", Tier::Private, "SRv6"),
            ("4000::1", Tier::Private, "outside 2000::/3"),
            ("::ffff:127.0.0.1", Tier::Private, "IPv4-mapped"),
            ("::ffff:10.0.0.1", Tier::Private, "RFC 1918"),
            ("::ffff:0.0.0.0", Tier::Never, "unspecified"),
            (
                "64:ff9b::a9fe:a9fe",
                Tier::Private,
                "NAT64 address of 169.254.169.254",
            ),
            (
                "2002:c0a8:0101::1",
                Tier::Private,
                "6to4 address of 192.168.1.1",
            ),
        ] {
            let (got_tier, got_kind) = kind(ip).unwrap_or_else(|| panic!("{ip} was allowed"));
            assert_eq!(got_tier, tier, "{ip}: {got_kind}");
            assert!(got_kind.contains(words), "{ip}: {got_kind}");
        }
    }

    #[test]
    fn the_setting_lifts_private_refusals_but_never_the_others() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let unspecified: IpAddr = "0.0.0.0".parse().unwrap();
        let multicast: IpAddr = "ff02::1".parse().unwrap();
        assert!(refusal(loopback, false).is_some());
        assert_eq!(refusal(loopback, true), None);
        assert!(refusal(unspecified, true).is_some());
        assert!(refusal(multicast, true).is_some());
        assert_eq!(refusal("8.8.8.8".parse().unwrap(), false), None);
    }
}
