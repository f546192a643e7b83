//! Settings inherited down the tree: three small groups (`mail_server`, `support`,
//! `notifications`), each set or not by each node, and the rules that say which values apply to a
//! node. Pure: the lineage comes in, the values that apply come out, each with the node it came
//! from (`None`: allot's own default).
//!
//! The owner's values are the global ones; a node inherits what its nearest ancestor sets, field
//! by field, with two exceptions from the source documents (seed 004):
//!
//! - **The mail server is one thing, resolved whole**: it comes from the nearest node (the node
//!   itself first) that configures one and has not switched it off; its host, port, credentials
//!   and sender are never mixed from two nodes. Taken field by field, a customer that set only a
//!   host would send its reseller's password to that host, and a sender address from one tenant
//!   would go out through another's server. And the owner's `enabled` is the global switch: while
//!   it is not on, nothing is sent anywhere, whatever a tenant configured.
//! - **A tenant's support address applies only when allowed**: a node's own `support.address`
//!   counts when the nearest node strictly above it that sets `allow_client_specific` allows it
//!   (no such node: not allowed); otherwise the address inherited from above applies. The owner's
//!   address always counts: nothing is above it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::address::{DomainName, MailAddress};
use super::ids::NodeId;
use super::text_enum;

text_enum! {
    /// A group of settings, set per node and inherited down the tree.
    pub enum Group {
        /// How allot sends mail: SMTP or Microsoft Graph, and the sender.
        MailServer = "mail_server",
        /// Where support requests go.
        Support = "support",
        /// Quota notices: at which thresholds, and to whom besides the node's contact.
        Notifications = "notifications",
    }
}

impl Group {
    /// The write-only fields of the group: stored sealed, shown as `{"set": bool}`.
    pub const fn secrets(self) -> &'static [&'static str] {
        match self {
            Self::MailServer => &[PASSWORD, CLIENT_SECRET],
            Self::Support | Self::Notifications => &[],
        }
    }
}

/// The SMTP password: a secret of `mail_server`.
pub const PASSWORD: &str = "password";
/// The Graph application's client secret: a secret of `mail_server`.
pub const CLIENT_SECRET: &str = "client_secret";

text_enum! {
    /// How mail leaves allot.
    pub enum Transport {
        Smtp = "smtp",
        /// Microsoft 365: the Graph API's `sendMail`, as an app registration.
        M365Graph = "m365_graph",
    }
}

text_enum! {
    /// How the SMTP connection is protected.
    pub enum Security {
        /// Plain text (a relay on a trusted network only).
        None = "none",
        /// STARTTLS, required: refused if the server does not offer it.
        Starttls = "starttls",
        /// TLS from the first byte (SMTPS, usually port 465).
        Tls = "tls",
    }
}

text_enum! {
    /// How allot logs in to the SMTP server.
    pub enum SmtpAuth {
        None = "none",
        Plain = "plain",
        Login = "login",
    }
}

/// The port when none is given: SMTP's (seed 004).
pub const DEFAULT_PORT: u16 = 25;
/// The thresholds when no node sets any, in percent of a limit.
pub const DEFAULT_THRESHOLDS: [u8; 2] = [80, 100];
/// At most this many thresholds and recipients.
pub const MAX_THRESHOLDS: usize = 10;
pub const MAX_RECIPIENTS: usize = 20;

/// A node's own `mail_server` values, as stored (without its secrets, which are sealed apart).
/// After parsing, `transport` set means a whole server is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailServer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<SmtpAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utf8_headers: Option<bool>,
}

impl MailServer {
    /// Whether this node has a server of its own that is switched on: what the nearest-server
    /// rule looks for.
    pub fn configures_server(&self) -> bool {
        self.enabled != Some(false) && self.transport.is_some()
    }

    /// The secrets this configuration uses: the password with SMTP authentication, the client
    /// secret with Graph. Others are dropped when it is saved.
    pub fn secrets_used(&self) -> BTreeSet<&'static str> {
        let mut used = BTreeSet::new();
        match self.transport {
            Some(Transport::Smtp) if self.auth.is_some_and(|a| a != SmtpAuth::None) => {
                used.insert(PASSWORD);
            }
            Some(Transport::M365Graph) => {
                used.insert(CLIENT_SECRET);
            }
            _ => {}
        }
        used
    }
}

/// A node's own `support` values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Support {
    /// Where support requests go (stored address form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether the nodes below may use support addresses of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_client_specific: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_system_info: Option<bool>,
}

/// A node's own `notifications` values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// Percent of a limit at which a quota notice goes out, ascending, without repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_thresholds: Option<Vec<u8>>,
    /// Who gets quota notices besides the node's contact address (stored address forms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
}

/// One node of a lineage with its own values of a group, if it sets any.
#[derive(Debug)]
pub struct Level<'a, T> {
    pub node: NodeId,
    pub own: Option<&'a T>,
}

// By hand: the derives would ask `T: Copy`, which a reference does not need.
impl<T> Clone for Level<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Level<'_, T> {}

/// A value that applies, and the node it came from; `None`: allot's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub source: Option<NodeId>,
}

impl<T> Sourced<T> {
    fn default(value: T) -> Self {
        Self {
            value,
            source: None,
        }
    }
}

/// The value the nearest node of `lineage` (owner first, the node last) sets with `field`.
fn nearest<T, V>(lineage: &[Level<'_, T>], field: impl Fn(&T) -> Option<V>) -> Option<Sourced<V>> {
    lineage.iter().rev().find_map(|level| {
        level.own.and_then(&field).map(|value| Sourced {
            value,
            source: Some(level.node),
        })
    })
}

/// The mail server that applies to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMailServer<'a> {
    /// Whether mail is sent for the node: the owner's switch is on and a server applies.
    pub sending: Sourced<bool>,
    /// The server that applies (sent through only while `sending`), and the node whose it is.
    pub server: Option<(NodeId, &'a MailServer)>,
}

/// The mail server rule; `lineage` runs from the owner (first) down to the node (last).
pub fn mail_server<'a>(lineage: &[Level<'a, MailServer>]) -> EffectiveMailServer<'a> {
    let server = lineage.iter().rev().find_map(|level| {
        level
            .own
            .filter(|own| own.configures_server())
            .map(|own| (level.node, own))
    });
    let owner = lineage.first();
    let switch = owner.and_then(|o| o.own.and_then(|own| own.enabled).map(|on| (o.node, on)));
    let sending = match (switch, server) {
        (Some((_, true)), Some((from, _))) => Sourced {
            value: true,
            source: Some(from),
        },
        (Some((owner, _)), _) => Sourced {
            value: false,
            source: Some(owner),
        },
        (None, _) => Sourced::default(false),
    };
    EffectiveMailServer { sending, server }
}

/// The support settings that apply to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSupport {
    pub address: Option<Sourced<String>>,
    pub allow_client_specific: Sourced<bool>,
    pub attach_system_info: Sourced<bool>,
}

/// The support rule; `lineage` runs from the owner (first) down to the node (last).
pub fn support(lineage: &[Level<'_, Support>]) -> EffectiveSupport {
    // Whether the node at `at` may use an address of its own: the nearest node above it that
    // says so decides; the owner needs nobody's leave.
    let allowed = |at: usize| {
        at == 0
            || nearest(&lineage[..at], |own: &Support| own.allow_client_specific)
                .is_some_and(|allow| allow.value)
    };
    let address = (0..lineage.len()).rev().find_map(|at| {
        let level = &lineage[at];
        let own = level.own.and_then(|own| own.address.clone())?;
        allowed(at).then_some(Sourced {
            value: own,
            source: Some(level.node),
        })
    });
    EffectiveSupport {
        address,
        allow_client_specific: nearest(lineage, |own: &Support| own.allow_client_specific)
            .unwrap_or(Sourced::default(false)),
        attach_system_info: nearest(lineage, |own: &Support| own.attach_system_info)
            .unwrap_or(Sourced::default(false)),
    }
}

/// The notification settings that apply to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveNotifications {
    pub quota_thresholds: Sourced<Vec<u8>>,
    pub recipients: Sourced<Vec<String>>,
}

/// Field by field, from the nearest node that sets it.
pub fn notifications(lineage: &[Level<'_, Notifications>]) -> EffectiveNotifications {
    EffectiveNotifications {
        quota_thresholds: nearest(lineage, |own: &Notifications| own.quota_thresholds.clone())
            .unwrap_or(Sourced::default(DEFAULT_THRESHOLDS.to_vec())),
        recipients: nearest(lineage, |own: &Notifications| own.recipients.clone())
            .unwrap_or(Sourced::default(Vec::new())),
    }
}

/// A mail server's host: an IP address or a host name (any IDNA form, kept in ASCII).
pub fn parse_host(raw: &str) -> Result<String, String> {
    match raw.trim().parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ip.to_string()),
        Err(_) => DomainName::parse(raw)
            .map(|name| name.as_str().to_owned())
            .map_err(|m| format!("must be an IP address or a host name: {m}")),
    }
}

/// An address allot sends from or to, by the mailbox rules: a local part beyond ASCII only where
/// the mail server takes UTF-8 headers (RFC 6531/6532), which `utf8` says.
pub fn parse_address(raw: &str, utf8: bool) -> Result<String, String> {
    let address = MailAddress::parse(raw)?;
    if !utf8 && !address.local().is_ascii() {
        return Err(
            "has a local part beyond ASCII, which needs a mail server with `utf8_headers` (RFC 6532)"
                .to_owned(),
        );
    }
    Ok(address.stored())
}

/// Text shown in mail headers or sent to a server (a sender's name, a username): 1 to `max`
/// characters, no control characters (a CR or LF would end a header or a command).
pub fn parse_text(raw: &str, max: usize) -> Result<String, String> {
    let length = raw.chars().count();
    if length == 0 || length > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters".to_owned());
    }
    Ok(raw.to_owned())
}

/// Quota thresholds: 1 to [`MAX_THRESHOLDS`] percentages from 1 to 100, kept ascending.
pub fn parse_thresholds(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.is_empty() || raw.len() > MAX_THRESHOLDS {
        return Err(format!("must hold 1 to {MAX_THRESHOLDS} thresholds"));
    }
    if let Some(bad) = raw.iter().find(|t| !(1..=100).contains(*t)) {
        return Err(format!("{bad} is not a percentage from 1 to 100"));
    }
    let sorted: BTreeSet<u8> = raw.iter().copied().collect();
    if sorted.len() != raw.len() {
        return Err("must not repeat a threshold".to_owned());
    }
    Ok(sorted.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One node of a lineage and its own values.
    fn level<T>(node: NodeId, own: Option<&T>) -> Level<'_, T> {
        Level { node, own }
    }

    fn ids<const N: usize>() -> [NodeId; N] {
        std::array::from_fn(|_| NodeId::generate())
    }

    fn smtp(host: &str) -> MailServer {
        MailServer {
            enabled: Some(true),
            transport: Some(Transport::Smtp),
            host: Some(host.to_owned()),
            port: Some(25),
            ..MailServer::default()
        }
    }

    #[test]
    fn the_owners_server_applies_where_no_one_below_has_one() {
        let [owner, reseller, customer] = ids();
        let global = smtp("global.example");
        let lineage = [
            level(owner, Some(&global)),
            level(reseller, None),
            level(customer, None),
        ];
        let effective = mail_server(&lineage);
        assert_eq!(effective.server, Some((owner, &global)));
        assert_eq!(
            effective.sending,
            Sourced {
                value: true,
                source: Some(owner)
            }
        );
    }

    #[test]
    fn the_nearest_own_server_wins_whole() {
        let [owner, reseller, customer] = ids();
        let global = smtp("global.example");
        // The reseller's server, with its own credentials; the customer sets nothing.
        let mut resellers = smtp("reseller.example");
        resellers.auth = Some(SmtpAuth::Plain);
        resellers.username = Some("reseller".to_owned());
        let lineage = [
            level(owner, Some(&global)),
            level(reseller, Some(&resellers)),
            level(customer, None),
        ];
        let effective = mail_server(&lineage);
        assert_eq!(effective.server, Some((reseller, &resellers)));
        assert_eq!(effective.sending.source, Some(reseller));
        // The customer's own server wins over both.
        let customers = smtp("customer.example");
        let lineage = [lineage[0], lineage[1], level(customer, Some(&customers))];
        assert_eq!(mail_server(&lineage).server, Some((customer, &customers)));
    }

    #[test]
    fn a_switched_off_or_partial_server_below_is_skipped() {
        let [owner, customer] = ids();
        let global = smtp("global.example");
        let mut off = smtp("customer.example");
        off.enabled = Some(false);
        let lineage = [level(owner, Some(&global)), level(customer, Some(&off))];
        assert_eq!(mail_server(&lineage).server, Some((owner, &global)));
    }

    #[test]
    fn the_owners_switch_off_sends_nothing_anywhere() {
        let [owner, customer] = ids();
        let mut global = smtp("global.example");
        global.enabled = Some(false);
        let customers = smtp("customer.example");
        let lineage = [
            level(owner, Some(&global)),
            level(customer, Some(&customers)),
        ];
        let effective = mail_server(&lineage);
        assert_eq!(
            effective.sending,
            Sourced {
                value: false,
                source: Some(owner)
            }
        );
        // What would apply is still told.
        assert_eq!(effective.server, Some((customer, &customers)));
        // Only the switch, no server of its own: the same.
        let switch_only = MailServer {
            enabled: Some(false),
            ..MailServer::default()
        };
        let lineage = [
            level(owner, Some(&switch_only)),
            level(customer, Some(&customers)),
        ];
        assert!(!mail_server(&lineage).sending.value);
    }

    #[test]
    fn no_global_server_sends_nothing_even_with_a_tenants_own() {
        let [owner, customer] = ids();
        let customers = smtp("customer.example");
        let lineage = [level(owner, None), level(customer, Some(&customers))];
        let effective = mail_server(&lineage);
        assert_eq!(
            effective.sending,
            Sourced {
                value: false,
                source: None
            }
        );
        assert_eq!(effective.server, Some((customer, &customers)));
    }

    fn support_of(address: Option<&str>, allow: Option<bool>) -> Support {
        Support {
            address: address.map(str::to_owned),
            allow_client_specific: allow,
            attach_system_info: None,
        }
    }

    #[test]
    fn a_tenants_support_address_needs_the_nearest_allowing_ancestor() {
        let [owner, reseller, customer] = ids();
        let global = support_of(Some("support@owner.example"), Some(true));
        let denying = support_of(Some("support@reseller.example"), Some(false));
        let own = support_of(Some("help@customer.example"), None);
        // The owner allows the reseller's; the reseller denies the customer's.
        let lineage = [
            level(owner, Some(&global)),
            level(reseller, Some(&denying)),
            level(customer, Some(&own)),
        ];
        let effective = support(&lineage);
        assert_eq!(
            effective.address,
            Some(Sourced {
                value: "support@reseller.example".to_owned(),
                source: Some(reseller)
            })
        );
        assert_eq!(
            effective.allow_client_specific,
            Sourced {
                value: false,
                source: Some(reseller)
            }
        );
        // A reseller that says nothing leaves the owner's word: allowed.
        let silent = support_of(None, None);
        let lineage = [lineage[0], level(reseller, Some(&silent)), lineage[2]];
        assert_eq!(support(&lineage).address.unwrap().source, Some(customer));
        // Nobody allows: the owner's address, whatever the tenants set.
        let quiet_owner = support_of(Some("support@owner.example"), None);
        let lineage = [level(owner, Some(&quiet_owner)), lineage[1], lineage[2]];
        assert_eq!(support(&lineage).address.unwrap().source, Some(owner));
        assert_eq!(
            support(&lineage).allow_client_specific,
            Sourced {
                value: false,
                source: None
            }
        );
    }

    #[test]
    fn a_node_cannot_allow_its_own_address() {
        let [owner, customer] = ids();
        let global = support_of(Some("support@owner.example"), None);
        let own = support_of(Some("help@customer.example"), Some(true));
        let lineage = [level(owner, Some(&global)), level(customer, Some(&own))];
        assert_eq!(support(&lineage).address.unwrap().source, Some(owner));
    }

    #[test]
    fn support_flags_inherit_field_by_field_with_defaults() {
        let [owner, customer] = ids();
        let global = Support {
            attach_system_info: Some(true),
            ..Support::default()
        };
        let lineage = [level(owner, Some(&global)), level(customer, None)];
        let effective = support(&lineage);
        assert_eq!(
            effective.attach_system_info,
            Sourced {
                value: true,
                source: Some(owner)
            }
        );
        assert_eq!(effective.address, None);
    }

    #[test]
    fn notifications_inherit_field_by_field_and_default_to_80_and_100() {
        let [owner, reseller, customer] = ids();
        let global = Notifications {
            recipients: Some(vec!["ops@owner.example".to_owned()]),
            quota_thresholds: None,
        };
        let resellers = Notifications {
            quota_thresholds: Some(vec![50, 90]),
            recipients: None,
        };
        let lineage = [
            level(owner, Some(&global)),
            level(reseller, Some(&resellers)),
            level(customer, None),
        ];
        let effective = notifications(&lineage);
        assert_eq!(
            effective.quota_thresholds,
            Sourced {
                value: vec![50, 90],
                source: Some(reseller)
            }
        );
        assert_eq!(effective.recipients.source, Some(owner));
        let bare = notifications(&[Level::<Notifications> {
            node: owner,
            own: None,
        }]);
        assert_eq!(
            bare.quota_thresholds,
            Sourced {
                value: vec![80, 100],
                source: None
            }
        );
        assert!(bare.recipients.value.is_empty());
    }

    #[test]
    fn secrets_used_follow_the_transport_and_auth() {
        let mut server = smtp("a.example");
        assert!(server.secrets_used().is_empty());
        server.auth = Some(SmtpAuth::Login);
        assert_eq!(server.secrets_used(), BTreeSet::from([PASSWORD]));
        server.transport = Some(Transport::M365Graph);
        assert_eq!(server.secrets_used(), BTreeSet::from([CLIENT_SECRET]));
    }

    #[test]
    fn fields_are_parsed_by_their_rules() {
        assert_eq!(parse_host("Mail.Example.COM").unwrap(), "mail.example.com");
        assert_eq!(parse_host(" ::1 ").unwrap(), "::1");
        assert!(parse_host("not a host").is_err());
        assert!(
            parse_address("山田@example.com", false)
                .unwrap_err()
                .contains("utf8_headers")
        );
        assert!(
            parse_address("山田@株式.会社", true)
                .unwrap()
                .starts_with("山田@xn--")
        );
        assert!(parse_text("a\r\nBcc: x", 100).is_err());
        assert!(parse_text("", 100).is_err());
        assert_eq!(parse_thresholds(&[100, 80]).unwrap(), vec![80, 100]);
        assert!(parse_thresholds(&[]).is_err());
        assert!(parse_thresholds(&[0]).is_err());
        assert!(parse_thresholds(&[101]).is_err());
        assert!(parse_thresholds(&[80, 80]).is_err());
    }
}
