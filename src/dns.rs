//! DNS: domain ownership proofs (a TXT record `_allot.<domain>` holding the domain's token) and
//! the addresses of a route's host, for the route test. The resolver is the system's
//! (`/etc/resolv.conf`) unless `ALLOT_DNS_RESOLVER` names one; answers are not cached, so a record
//! just published is seen at the next attempt.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::domain::address::DomainName;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    /// A TXT record holds the token.
    Found,
    /// The name has no TXT record holding the token (or no TXT record, or does not exist).
    Missing,
}

#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed: {message}")]
pub(crate) struct LookupError {
    message: String,
    timed_out: bool,
}

impl LookupError {
    fn new(message: impl ToString) -> Self {
        Self {
            message: message.to_string(),
            timed_out: false,
        }
    }

    /// Whether no server answered in time (rather than answering with an error).
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }
}

impl From<hickory_resolver::net::NetError> for LookupError {
    fn from(err: hickory_resolver::net::NetError) -> Self {
        Self {
            timed_out: matches!(err, hickory_resolver::net::NetError::Timeout),
            message: err.to_string(),
        }
    }
}

pub(crate) struct Verifier {
    resolver: Result<TokioResolver, String>,
}

impl Verifier {
    /// A verifier asking `server`, or the system's resolvers when `None`.
    pub fn new(server: Option<SocketAddr>) -> Self {
        let provider = TokioRuntimeProvider::default();
        let builder = match server {
            Some(addr) => {
                let mut name_server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut name_server.connections {
                    connection.port = addr.port();
                }
                Ok(TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![name_server]),
                    provider,
                ))
            }
            None => TokioResolver::builder(provider).map_err(|e| e.to_string()),
        };
        let resolver = builder.and_then(|mut builder| {
            let options = builder.options_mut();
            options.cache_size = 0;
            options.timeout = Duration::from_secs(3);
            options.attempts = 2;
            builder.build().map_err(|e| e.to_string())
        });
        if let Err(err) = &resolver {
            tracing::warn!(error = %err, "no DNS resolver: domain verification will answer 503");
        }
        Self { resolver }
    }

    /// Whether `_allot.<domain>` has a TXT record whose text is `token`.
    pub async fn check(&self, domain: &DomainName, token: &str) -> Result<Proof, LookupError> {
        let resolver = self.resolver.as_ref().map_err(LookupError::new)?;
        let name = format!("_allot.{}.", domain.as_str());
        match resolver.txt_lookup(name).await {
            Ok(lookup) => {
                let found = lookup.answers().iter().any(|record| {
                    matches!(&record.data, hickory_resolver::proto::rr::RData::TXT(txt)
                        if txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>() == token)
                });
                Ok(if found { Proof::Found } else { Proof::Missing })
            }
            Err(err) if err.is_no_records_found() || err.is_nx_domain() => Ok(Proof::Missing),
            Err(err) => Err(err.into()),
        }
    }

    /// The IPv4 and IPv6 addresses of `host`, in the resolver's order; none when the name does
    /// not exist or has no address. Asked as a fully qualified name, so that the search domains
    /// of `/etc/resolv.conf` never turn a customer's name into one of the operator's own.
    pub async fn addresses(&self, host: &DomainName) -> Result<Vec<IpAddr>, LookupError> {
        let resolver = self.resolver.as_ref().map_err(LookupError::new)?;
        match resolver.lookup_ip(format!("{}.", host.as_str())).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(err) if err.is_no_records_found() || err.is_nx_domain() => Ok(Vec::new()),
            Err(err) => Err(err.into()),
        }
    }
}
