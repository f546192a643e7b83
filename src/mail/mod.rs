//! Sending mail: a plain-text message ([`Outgoing`]) sent through the mail server that applies to
//! a node (`service::settings::sending`), over SMTP ([`smtp`], with lettre) or Microsoft Graph's
//! `sendMail` ([`graph`]).
//!
//! A tenant's SMTP server is a host a user named, so it is reached like a route test's: resolved
//! once, judged by the route test's rule ([`crate::probe::first_allowed`]) under its own setting
//! `ALLOT_MAIL_ALLOW_PRIVATE`, and connected to at the exact address judged, while TLS checks the
//! certificate against the host's name. Graph's endpoints are Microsoft's (or the operator's,
//! `ALLOT_GRAPH_LOGIN_URL` and `ALLOT_GRAPH_URL`), never a user's. Every send is bounded by
//! [`TIMEOUT`], each SMTP command by [`COMMAND_TIMEOUT`].
//!
//! Nothing here logs, and no error carries a secret: lettre's and reqwest's errors name the
//! server's reply or the URL, never the credentials.

pub(crate) mod graph;
pub(crate) mod smtp;

use std::time::Duration;

use crate::domain::settings::Transport;
use crate::service::settings::Sending;

/// How long one send may take, all of it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// How long each SMTP command (and the connection) may take.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where mail may go: the operator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether a mail server may be at a private address (`ALLOT_MAIL_ALLOW_PRIVATE`).
    pub allow_private: bool,
    /// Roots SMTP's TLS trusts besides the system's (`ALLOT_MAIL_CA_FILE`).
    pub extra_roots: Roots,
    /// Microsoft's login endpoint, before `/{tenant}/oauth2/v2.0/token`.
    pub graph_login_url: String,
    /// The Graph API, before `/v1.0/users/{sender}/sendMail`; also the token's scope.
    pub graph_url: String,
}

/// Certificates trusted as roots in addition to the system's, as lettre takes them.
#[derive(Clone, Default)]
pub struct Roots(Vec<lettre::transport::smtp::client::Certificate>);

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Roots({} certificates)", self.0.len())
    }
}

impl Roots {
    /// Every certificate of the PEM file at `path`; at least one, or why not.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let ders = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
        if ders.is_empty() {
            return Err(format!("{} holds no certificate", path.display()));
        }
        let roots = ders
            .into_iter()
            .map(|der| lettre::transport::smtp::client::Certificate::from_der(der.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Self(roots))
    }

    pub(crate) fn certificates(&self) -> &[lettre::transport::smtp::client::Certificate] {
        &self.0
    }
}

/// A plain-text message to one recipient.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// In the stored form (`local@ascii-domain`).
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// What the mail server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// SMTP: the reply to the message (after its final dot), or the refusal.
    Smtp { code: u16, text: String },
    /// Graph: the HTTP status of `sendMail`, or of the token request that failed.
    Graph { status: u16 },
}

/// Why a message was not taken.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The server's address is one allot does not connect to; nothing was connected to.
    Forbidden(String),
    /// Connected or not, the message was not taken: what the server answered, if anything, and
    /// a sentence for a person.
    Failed {
        answer: Option<Answer>,
        message: String,
    },
}

impl Failure {
    fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            answer: None,
            message: message.into(),
        }
    }
}

/// Sends `message` through `sending`'s server.
pub(crate) async fn send(
    sending: &Sending,
    message: &Outgoing,
    dns: &crate::dns::Verifier,
    settings: &Settings,
) -> Result<Answer, Failure> {
    let attempt = async {
        match sending.server.transport {
            Some(Transport::M365Graph) => graph::send(sending, message, settings).await,
            _ => smtp::send(sending, message, dns, settings).await,
        }
    };
    tokio::time::timeout(TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::failed(format!(
                "The mail server did not take the message within {} s.",
                TIMEOUT.as_secs()
            )))
        })
}
