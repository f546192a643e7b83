//! Where a webhook may be sent.
//!
//! A subscription's URL must be `https` (its deliveries carry customers' data and their
//! signatures): plain `http` is accepted only when the operator allows private targets
//! (`ALLOT_WEBHOOKS_ALLOW_PRIVATE`: a test rig, a receiver on the operator's own network), where
//! the traffic does not cross the Internet. No user name or password in the URL (they would be
//! shown back in every listing), no fragment.
//!
//! The addresses are the route test's rules (`probe::connect_refusal`: loopback, private,
//! link-local and every other range that is not globally reachable, and the host's own
//! addresses), applied twice: to an IP literal when the URL is given, and at every delivery to the
//! addresses actually connected to. The second is what counts: a name that resolved to a public
//! address when it was subscribed can resolve to 127.0.0.1 later (DNS rebinding). The delivery's
//! HTTP client resolves names only through [`GuardedResolver`], which hands the connector the
//! allowed addresses alone, so it cannot connect to another; IP literals never reach a resolver
//! and are judged by [`refused_literal`] before each request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

use crate::dns::Verifier;
use crate::domain::address::DomainName;

/// The longest URL accepted.
pub(crate) const MAX_URL: usize = 2000;

/// `text` as a webhook URL, or why not.
pub(crate) fn parse_url(text: &str, allow_private: bool) -> Result<Url, String> {
    if text.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let url = Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("must be https".to_owned()),
        _ => return Err("must be an https URL".to_owned()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    if url.host().is_none() {
        return Err("must name a host".to_owned());
    }
    if let Some(why) = refused_literal(&url, allow_private) {
        return Err(why);
    }
    Ok(url)
}

/// Why `url`'s host, if it is an IP address, must not be connected to.
pub(crate) fn refused_literal(url: &Url, allow_private: bool) -> Option<String> {
    let ip = match url.host()? {
        Host::Ipv4(v4) => IpAddr::V4(v4),
        Host::Ipv6(v6) => IpAddr::V6(v6),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let local = name == "localhost" || name.ends_with(".localhost");
            return (local && !allow_private)
                .then(|| "must not name the local host (localhost)".to_owned());
        }
    };
    crate::probe::connect_refusal(ip, allow_private)
        .map(|why| format!("names {ip}, {}; allot does not send there", why.kind))
}

/// The delivery client's resolver: the route test's (`dns::Verifier`: `ALLOT_DNS_RESOLVER` or the
/// system's resolvers, never the search domains), less every address allot must not connect to.
/// A name with no allowed address fails to resolve, naming why.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    pub dns: Arc<Verifier>,
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(allowed_addresses(
            self.dns.clone(),
            self.allow_private,
            name.as_str().trim_end_matches('.').to_ascii_lowercase(),
        ))
    }
}

/// The addresses of `host` allot may connect to; an error naming the first refused one when there
/// are none.
async fn allowed_addresses(
    dns: Arc<Verifier>,
    allow_private: bool,
    host: String,
) -> Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let found = dns
        .addresses(&DomainName::from_stored(host.clone()))
        .await
        .map_err(|e| format!("looking up {host} failed: {e}"))?;
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(
            |ip| match crate::probe::connect_refusal(*ip, allow_private) {
                None => true,
                Some(why) => {
                    refused.get_or_insert(format!("{ip} is {}", why.kind));
                    false
                }
            },
        )
        // The connector puts the URL's port in.
        .map(|ip| SocketAddr::new(ip, 0))
        .collect();
    if allowed.is_empty() {
        let why = refused.unwrap_or_else(|| "it has no address".to_owned());
        return Err(format!("{host} is refused: {why}").into());
    }
    Ok(Box::new(allowed.into_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_unless_private_targets_are_allowed() {
        assert!(parse_url("https://hooks.example.com/allot", false).is_ok());
        assert_eq!(
            parse_url("http://hooks.example.com/allot", false).unwrap_err(),
            "must be https"
        );
        assert!(parse_url("http://hooks.example.com/allot", true).is_ok());
        assert!(parse_url("ftp://hooks.example.com/", true).is_err());
        assert!(parse_url("https://user:pw@hooks.example.com/", true).is_err());
        assert!(parse_url("https://hooks.example.com/#x", true).is_err());
    }

    #[test]
    fn private_literals_and_localhost_are_refused_unless_allowed() {
        for url in [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[::ffff:192.168.0.1]/",
            "https://localhost/",
            "https://api.localhost./",
        ] {
            assert!(parse_url(url, false).is_err(), "{url}");
            assert!(parse_url(url, true).is_ok(), "{url}");
        }
        // Never, whatever the setting.
        assert!(parse_url("https://0.0.0.0/", true).is_err());
        assert!(parse_url("https://8.8.8.8/", false).is_ok());
    }
}
