//! Every setting: its flag, its environment variable, its default, parsed once at start.
//!
//! clap reads flags and the environment alike and refuses a value it cannot parse with a message
//! naming the flag (and exit code 2), so a bad `ALLOT_LISTEN` stops start-up before anything is
//! opened. The secrets (`ALLOT_JWT_SECRET`, `ALLOT_JWT_PREVIOUS_SECRETS`, `ALLOT_SECRET_KEY`) are
//! the exception: clap's message repeats the value it refuses, which would put a secret in a log,
//! so clap takes them as text ([`SecretText`]) and start-up judges them (`init`), naming the
//! setting and never the value. The README's configuration table mirrors this file.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use clap::{Args, ValueEnum};

/// Settings for serving and for the commands that open the database.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port to serve HTTP on.
    #[arg(
        long,
        env = "ALLOT_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// PEM file of the certificate chain to serve HTTPS with, the server's own certificate first.
    /// Set together with `ALLOT_TLS_KEY`; both unset: plain HTTP. SIGHUP reads both files again.
    #[arg(long, env = "ALLOT_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of `ALLOT_TLS_CERT` (PKCS #8, PKCS #1 or SEC1).
    #[arg(long, env = "ALLOT_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Networks of the reverse proxies in front of allot, comma-separated CIDRs or addresses
    /// (`10.0.0.0/8,2001:db8::1`). Only a connection from one of them has its client's address
    /// taken from the forwarding header; unset: every client is its connection's peer.
    #[arg(long, env = "ALLOT_TRUSTED_PROXIES", value_parser = parse_network, value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Which header the trusted proxies write the client's address into: `x-forwarded-for` or
    /// `forwarded` (RFC 7239). Only the one: a proxy passes the other on from the client as it
    /// came, so believing both would believe the client.
    #[arg(long, env = "ALLOT_PROXY_HEADER", value_enum, default_value_t = ProxyHeader::XForwardedFor, global = true)]
    pub proxy_header: ProxyHeader,

    /// Origins whose pages may call the API from a browser, comma-separated, exactly as the
    /// browser sends them (`https://portal.example.com`). Unset: no CORS headers at all.
    #[arg(long, env = "ALLOT_CORS_ORIGINS", value_parser = parse_origin, value_delimiter = ',', global = true)]
    pub cors_origins: Vec<String>,

    /// `postgres://…` or `postgresql://…` for PostgreSQL; anything else is an SQLite file path.
    #[arg(long, env = "DATABASE_URL", default_value = "allot.db", global = true)]
    pub database_url: String,

    /// Database connections in the pool.
    #[arg(long, env = "ALLOT_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), global = true)]
    pub pool_size: u32,

    /// HS256 signing key for access tokens, base64 (standard alphabet), at least 32 bytes once
    /// decoded. Unset: a random key is generated on first start and kept in the database.
    #[arg(long, env = "ALLOT_JWT_SECRET", value_parser = SecretText::arg, hide_env_values = true, global = true)]
    pub jwt_secret: Option<SecretText>,

    /// Previous signing keys, comma-separated, still accepted for verification while their tokens
    /// live out their 15 minutes: set the old key here when rotating `ALLOT_JWT_SECRET`.
    #[arg(long, env = "ALLOT_JWT_PREVIOUS_SECRETS", value_parser = SecretText::arg, value_delimiter = ',', hide_env_values = true, global = true)]
    pub jwt_previous_secrets: Vec<SecretText>,

    /// The key that seals stored secrets (mail server passwords, Graph client secrets, webhook
    /// signing secrets): base64 (standard alphabet) of exactly 32 bytes (`openssl rand -base64
    /// 32`). Unset: with SQLite, one is generated on first start and kept in a file beside the
    /// database (`<database file>.secret-key`); with PostgreSQL allot refuses to start, since every
    /// instance must seal with the same key.
    #[arg(long, env = "ALLOT_SECRET_KEY", value_parser = SecretText::arg, hide_env_values = true, global = true)]
    pub secret_key: Option<SecretText>,

    /// The DNS server (`IP:PORT`) that domain ownership checks ask; unset: the system's resolvers.
    #[arg(long, env = "ALLOT_DNS_RESOLVER", global = true)]
    pub dns_resolver: Option<SocketAddr>,

    /// Let route tests connect to addresses that are not publicly routable: loopback, private
    /// (RFC 1918, unique local), carrier-grade NAT, link-local, documentation, reserved, and the
    /// host's own. Off, a route test connects to public addresses of other hosts only.
    #[arg(long, env = "ALLOT_ROUTE_TEST_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, global = true)]
    pub route_test_allow_private: bool,

    /// Let tenants' SMTP servers be at addresses that are not publicly routable (loopback,
    /// private, link-local, … and the host's own), by the route tests' rule. Off, allot sends
    /// mail only through servers at public addresses of other hosts.
    #[arg(long, env = "ALLOT_MAIL_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, global = true)]
    pub mail_allow_private: bool,

    /// A PEM file of certificates that SMTP over TLS (STARTTLS or implicit) trusts as roots in
    /// addition to the system's: an operator's own CA, which signed a relay's certificate. Read at
    /// start-up; a file without a certificate stops it. Certificates are always verified.
    #[arg(long, env = "ALLOT_MAIL_CA_FILE", global = true)]
    pub mail_ca_file: Option<PathBuf>,

    /// Microsoft's login endpoint for Graph tokens (another cloud's, or a test's).
    #[arg(
        long,
        env = "ALLOT_GRAPH_LOGIN_URL",
        default_value = "https://login.microsoftonline.com",
        hide = true,
        global = true
    )]
    pub graph_login_url: String,

    /// The Microsoft Graph API (another cloud's, or a test's).
    #[arg(
        long,
        env = "ALLOT_GRAPH_URL",
        default_value = "https://graph.microsoft.com",
        hide = true,
        global = true
    )]
    pub graph_url: String,

    /// Where to serve Postfix's SMTP access policy delegation (`IP:PORT`, e.g. `127.0.0.1:10040`);
    /// unset: not served. Unauthenticated by Postfix's design: bind it to loopback or a private
    /// interface only.
    #[arg(long, env = "ALLOT_POLICY_LISTEN", global = true)]
    pub policy_listen: Option<SocketAddr>,

    /// Which direction a policy request is: `auto` (the request's `policy_context`, `inbound` or
    /// `outbound`, when Postfix sends one; otherwise outbound for a client that logged in,
    /// inbound for any other), `inbound` (check the recipient) or `outbound` (check the sender).
    #[arg(
        long,
        env = "ALLOT_POLICY_DIRECTION",
        default_value = "auto",
        global = true
    )]
    pub policy_direction: crate::check::postfix::PolicyDirection,

    /// Where to serve Postfix socketmap lookups (maps `domain`, `mailbox`, `transport`, `alias`);
    /// unset: not served. Unauthenticated by Postfix's design, like the policy listener.
    #[arg(long, env = "ALLOT_SOCKETMAP_LISTEN", global = true)]
    pub socketmap_listen: Option<SocketAddr>,

    /// Whether the check refuses a domain whose ownership is not proven yet (`domain_unverified`).
    /// `false` accepts registered domains as soon as they are registered.
    #[arg(
        long,
        env = "ALLOT_REQUIRE_DOMAIN_VERIFICATION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub require_domain_verification: bool,

    /// Days an unproven domain registration (a claim on the name) lasts: then it is removed and its
    /// `domains` unit returned. Only while `ALLOT_REQUIRE_DOMAIN_VERIFICATION` is true: otherwise
    /// an unproven domain already takes mail, and nothing expires.
    #[arg(
        long,
        env = "ALLOT_DOMAIN_CLAIM_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(1..=3650),
        global = true
    )]
    pub domain_claim_days: u32,

    /// Days the audit trail keeps an event; older ones are deleted in the background, in small
    /// batches. Unset: events are kept forever.
    #[arg(
        long,
        env = "ALLOT_AUDIT_RETENTION_DAYS",
        value_parser = clap::value_parser!(u32).range(1..=36500),
        global = true
    )]
    pub audit_retention_days: Option<u32>,

    /// Let webhooks go to addresses that are not publicly routable (loopback, private, link-local
    /// and the rest of the route test's list, and the host's own), and over plain `http`. Off, a
    /// webhook URL must be `https` and every address connected to public: checked when the URL is
    /// given and again at each delivery, on the address actually connected to.
    #[arg(long, env = "ALLOT_WEBHOOKS_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue, global = true)]
    pub webhooks_allow_private: bool,

    /// Seconds a webhook delivery gets to connect, send and be answered; longer is a failed
    /// attempt.
    #[arg(long, env = "ALLOT_WEBHOOK_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300), global = true)]
    pub webhook_timeout: u64,

    /// Attempts the outbox makes at a message before it is `failed` (sent again only by
    /// `POST /v1/outbox/{id}/retry`).
    #[arg(long, env = "ALLOT_OUTBOX_MAX_ATTEMPTS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=100), global = true)]
    pub outbox_max_attempts: u32,

    /// Milliseconds before the first retry of a failed delivery; each further retry waits twice
    /// as long as the one before (half of it random), at most an hour.
    #[arg(long, env = "ALLOT_OUTBOX_BACKOFF_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=3_600_000), global = true)]
    pub outbox_backoff_ms: u64,

    /// Days a delivered message and its attempts stay listed in the outbox; then they are
    /// deleted. Failed messages stay until they are sent again.
    #[arg(long, env = "ALLOT_OUTBOX_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36500), global = true)]
    pub outbox_retention_days: u32,

    /// How the check answers refusals a customer can fix by buying or paying (`users_exhausted`, `ancestor_exhausted`,
    /// `over_limit`, `module_not_licensed`, `node_suspended`): `temporary` (4.7.1, the mail stays
    /// queued at the sender) or `permanent` (5.7.1, it bounces).
    #[arg(
        long,
        env = "ALLOT_LICENCE_REFUSALS",
        default_value = "temporary",
        global = true
    )]
    pub licence_refusals: crate::check::LicenceRefusals,

    /// Where mail to every domain's abuse@ goes, through the `alias` socketmap: the operator's
    /// own abuse desk. Unset: abuse@ is delivered like any other role address.
    #[arg(long, env = "ALLOT_ABUSE_RECIPIENT", value_parser = parse_address, global = true)]
    pub abuse_recipient: Option<String>,

    /// The characters that start an address extension, as Postfix's `recipient_delimiter` (e.g.
    /// `+`): an unknown `jane+news@example.com` is checked as `jane@example.com`. Postfix strips
    /// extensions for its own tables but not for a socketmap or a policy server, so set it to the
    /// same value. Unset: addresses are taken whole.
    #[arg(
        long,
        env = "ALLOT_RECIPIENT_DELIMITER",
        default_value = "",
        global = true
    )]
    pub recipient_delimiter: String,

    /// Log filter, in tracing's `EnvFilter` syntax (`info`, `allot=debug,actix_web=warn`, …).
    #[arg(long, env = "ALLOT_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "ALLOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ALLOT_BODY_LIMIT", default_value_t = 1024 * 1024, global = true)]
    pub body_limit: usize,

    /// Seconds a request gets to arrive whole (head and body) from the moment its connection is
    /// ready for it (accepted, or the previous answer sent); past it the answer is 408 and the
    /// connection is closed.
    #[arg(long, env = "ALLOT_REQUEST_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    pub request_timeout: u64,

    /// Open connections one peer address may hold, to the HTTP server and to each Postfix
    /// listener; further ones are closed at once.
    #[arg(long, env = "ALLOT_MAX_CONNECTIONS_PER_PEER", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_connections_per_peer: u32,

    /// Requests a minute each account and API key may make, in each instance (the whole minute's
    /// may come at once; the budget refills evenly). Over it: 429 `rate-limited`. A key's own
    /// `rate_limit` wins.
    #[arg(long, env = "ALLOT_RATE_LIMIT", default_value_t = NonZeroU32::new(3_000).expect("non-zero"), value_parser = parse_per_minute, global = true)]
    pub rate_limit: NonZeroU32,

    /// The same for `check` principals (mail workers' keys), whose checks come by the tens of
    /// thousands a second: 6,000,000 a minute is 100,000 a second.
    #[arg(long, env = "ALLOT_CHECK_RATE_LIMIT", default_value_t = NonZeroU32::new(6_000_000).expect("non-zero"), value_parser = parse_per_minute, global = true)]
    pub check_rate_limit: NonZeroU32,

    /// HTTP worker threads; 0 means one per CPU core.
    #[arg(long, env = "ALLOT_WORKERS", default_value_t = 0, global = true)]
    pub workers: usize,

    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT.
    #[arg(
        long,
        env = "ALLOT_SHUTDOWN_TIMEOUT",
        default_value_t = 30,
        global = true
    )]
    pub shutdown_timeout: u64,

    /// Username of the first admin, created on the first start of an empty database.
    #[arg(
        long,
        env = "ALLOT_ADMIN_USERNAME",
        default_value = "admin",
        global = true
    )]
    pub admin_username: String,

    /// Password of the first admin (at least 12 characters). Unset or empty: one is generated and
    /// printed once.
    #[arg(
        long,
        env = "ALLOT_ADMIN_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub admin_password: Option<String>,

    /// E-mail address of the first admin.
    #[arg(
        long,
        env = "ALLOT_ADMIN_EMAIL",
        default_value = "admin@localhost",
        global = true
    )]
    pub admin_email: String,

    /// Name of the owner node, created on the first start of an empty database.
    #[arg(long, env = "ALLOT_OWNER_NAME", default_value = "Owner", global = true)]
    pub owner_name: String,

    /// The clock the day is read from: the system clock (see [`crate::clock`]); not a setting.
    #[arg(skip)]
    pub clock: crate::clock::Clock,
}

impl Config {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout)
    }

    /// The outbox worker's share of the settings, with `mail` as [`Config::mail_settings`] read it.
    pub(crate) fn outbox_settings(&self, mail: crate::mail::Settings) -> crate::outbox::Settings {
        crate::outbox::Settings {
            max_attempts: self.outbox_max_attempts,
            backoff: crate::domain::outbox::Backoff {
                base: Duration::from_millis(self.outbox_backoff_ms),
                cap: Duration::from_secs(3600),
            },
            allow_private: self.webhooks_allow_private,
            timeout: Duration::from_secs(self.webhook_timeout),
            retention_days: self.outbox_retention_days,
            mail,
        }
    }

    /// Where mail may go, and the roots its TLS trusts beyond the system's (read from
    /// `ALLOT_MAIL_CA_FILE`); the message says why that file cannot be used.
    pub fn mail_settings(&self) -> Result<crate::mail::Settings, String> {
        let extra_roots = match &self.mail_ca_file {
            Some(path) => crate::mail::Roots::read(path)?,
            None => crate::mail::Roots::default(),
        };
        Ok(crate::mail::Settings {
            allow_private: self.mail_allow_private,
            graph_login_url: self.graph_login_url.clone(),
            graph_url: self.graph_url.clone(),
            extra_roots,
        })
    }

    /// The check's share of the settings.
    pub fn check_settings(&self) -> crate::check::Settings {
        crate::check::Settings {
            require_verification: self.require_domain_verification,
            licence: self.licence_refusals,
            abuse_recipient: self.abuse_recipient.clone(),
            recipient_delimiters: self.recipient_delimiter.clone(),
            clock: self.clock.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The header trusted proxies name the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, HAProxy, Traefik, Caddy, cloud load
    /// balancers).
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1, …` (RFC 7239).
    Forwarded,
}

/// A secret setting as given, not judged yet: start-up parses it (`init`), so that a malformed one
/// is refused by a message naming the setting, never repeating the value. Its `Debug` never shows
/// the text.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(…)")
    }
}

impl SecretText {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text, to parse.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// clap's parser: takes any text, refuses none.
    fn arg(text: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Self::new(text))
    }
}

/// A configured token-signing key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(pub Vec<u8>);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(…)")
    }
}

pub(crate) const MIN_JWT_SECRET_BYTES: usize = 32;

/// An address, in the stored form the alias table answers with.
fn parse_address(text: &str) -> Result<String, String> {
    crate::domain::address::MailAddress::parse(text).map(|a| a.stored())
}

/// A budget in requests a minute: 1 to [`crate::auth::rate_limit::MAX_PER_MINUTE`].
fn parse_per_minute(text: &str) -> Result<NonZeroU32, String> {
    let max = crate::auth::rate_limit::MAX_PER_MINUTE;
    text.trim()
        .parse::<NonZeroU32>()
        .ok()
        .filter(|n| n.get() <= max)
        .ok_or_else(|| format!("requests a minute: a whole number from 1 to {max}"))
}

/// A network in CIDR notation, or one address (a network of one).
fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is neither a CIDR network (`10.0.0.0/8`) nor an address"))
}

/// An origin as a browser sends it in `Origin`: `scheme://host[:port]`, lowercase, nothing after.
/// `*` is refused: the allowed origins are named (see `edge::cors`).
fn parse_origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text == "*" {
        return Err(
            "`*` is not accepted: name each origin (`https://portal.example.com`)".to_owned(),
        );
    }
    let uri: actix_web::http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not an origin: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = uri.authority().is_some_and(|a| !a.as_str().contains('@'))
        && uri.query().is_none()
        && !text.ends_with('/')
        && matches!(uri.path(), "" | "/");
    if !scheme_ok || !bare || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "`{text}` is not an origin: write `https://host` or `https://host:port`, lowercase, \
             without a path or a trailing slash, as the browser sends it"
        ));
    }
    Ok(text.to_owned())
}

/// A token-signing key: base64 of at least [`MIN_JWT_SECRET_BYTES`]. The message never repeats the
/// text, nor any character of it (base64's own error names the offending one).
pub(crate) fn parse_jwt_secret(text: &str) -> Result<JwtSecret, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| {
            "not base64 (standard alphabet); make one with `openssl rand -base64 32`".to_owned()
        })?;
    if bytes.len() < MIN_JWT_SECRET_BYTES {
        return Err(format!(
            "{} bytes once decoded; at least {MIN_JWT_SECRET_BYTES} are needed (e.g. `openssl rand -base64 32`)",
            bytes.len()
        ));
    }
    Ok(JwtSecret(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_a_whole_number_of_requests_a_minute_within_bounds() {
        assert_eq!(parse_per_minute(" 600 ").unwrap().get(), 600);
        for bad in ["0", "-1", "1.5", "lots", "100000001"] {
            assert!(parse_per_minute(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_proxies_are_networks_or_single_addresses() {
        assert_eq!(
            parse_network(" 10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("proxy.example").is_err());
    }

    #[test]
    fn cors_origins_are_exact_origins_and_never_a_wildcard() {
        assert_eq!(
            parse_origin("https://portal.example.com").unwrap(),
            "https://portal.example.com"
        );
        assert!(parse_origin("http://127.0.0.1:3000").is_ok());
        for bad in [
            "*",
            "portal.example.com",
            "https://portal.example.com/",
            "https://portal.example.com/app",
            "https://Portal.example.com",
            "ftp://portal.example.com",
            "https://user@portal.example.com",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_taken_as_text_and_never_shown() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "allot",
            "--secret-key",
            "not base64 !",
            "--jwt-previous-secrets",
            "one,two",
        ])
        .unwrap();
        assert_eq!(cli.config.secret_key, Some(SecretText::new("not base64 !")));
        assert_eq!(cli.config.jwt_previous_secrets.len(), 2);
        assert_eq!(
            format!("{:?}", cli.config.secret_key),
            "Some(SecretText(…))"
        );
    }

    #[test]
    fn a_short_or_non_base64_jwt_secret_is_refused() {
        assert!(
            parse_jwt_secret("c2hvcnQ=")
                .unwrap_err()
                .contains("at least 32")
        );
        let refusal = parse_jwt_secret("not base64 !").unwrap_err();
        assert!(refusal.contains("not base64"), "{refusal}");
        assert!(
            !refusal.contains('!') && !refusal.contains("32,"),
            "{refusal}"
        );
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_jwt_secret(&good).unwrap().0, vec![7u8; 32]);
    }
}
