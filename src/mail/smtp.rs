//! SMTP with lettre: the connection security the settings name (STARTTLS required, never skipped
//! when the server does not offer it; or TLS from the first byte) with the server's certificate
//! verified, the authentication they name, SMTPUTF8
//! (RFC 6531) when an address needs it (lettre asks for it by itself, and refuses a server that
//! does not offer it), and the server's reply to the message as the answer.

use std::net::IpAddr;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Answer, COMMAND_TIMEOUT, Failure, Outgoing};
use crate::domain::address::DomainName;
use crate::domain::settings::{Security, SmtpAuth};
use crate::service::settings::Sending;

/// A stored address (`local@ascii-domain`) as lettre's.
fn address(stored: &str) -> Result<Address, Failure> {
    let (local, domain) = stored
        .rsplit_once('@')
        .ok_or_else(|| Failure::failed(format!("{stored} is not an address")))?;
    Address::new(local, domain)
        .map_err(|e| Failure::failed(format!("lettre does not take the address {stored}: {e}")))
}

/// The message as lettre builds it: `From` the sender (with its name), `To` the recipient.
fn build(sending: &Sending, message: &Outgoing) -> Result<Message, Failure> {
    let server = &sending.server;
    let sender = server.sender_address.as_deref().unwrap_or_default();
    let from = Mailbox::new(server.sender_name.clone(), address(sender)?);
    let to = Mailbox::new(None, address(&message.to)?);
    let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
    Message::builder()
        .message_id(Some(format!(
            "<{}@{domain}>",
            uuid::Uuid::new_v4().simple()
        )))
        .from(from)
        .to(to)
        .subject(message.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(message.text.clone())
        .map_err(|e| Failure::failed(format!("the message could not be built: {e}")))
}

/// The address to connect to: `host` itself when it is one, else the first of its addresses
/// that the route test's rule allows.
async fn target(
    host: &str,
    dns: &crate::dns::Verifier,
    allow_private: bool,
) -> Result<IpAddr, Failure> {
    let (addresses, literal) = match host.parse::<IpAddr>() {
        Ok(ip) => (vec![ip], true),
        Err(_) => {
            let name = DomainName::from_stored(host.to_owned());
            let found = dns
                .addresses(&name)
                .await
                .map_err(|e| Failure::failed(format!("Looking up {host} failed: {e}.")))?;
            if found.is_empty() {
                return Err(Failure::failed(format!("{host} has no address.")));
            }
            (found, false)
        }
    };
    crate::probe::first_allowed(host, &addresses, literal, allow_private)
        .map_err(|refused| Failure::Forbidden(refused.detail))
}

pub(super) async fn send(
    sending: &Sending,
    message: &Outgoing,
    dns: &crate::dns::Verifier,
    settings: &super::Settings,
) -> Result<Answer, Failure> {
    let server = &sending.server;
    let host = server.host.as_deref().unwrap_or_default();
    let email = build(sending, message)?;
    let ip = target(host, dns, settings.allow_private).await?;
    // The certificate is verified against `host`, by the system's roots and the operator's
    // (`ALLOT_MAIL_CA_FILE`); never accepted unverified.
    let tls = || {
        let mut parameters = TlsParameters::builder(host.to_owned());
        for root in settings.extra_roots.certificates() {
            parameters = parameters.add_root_certificate(root.clone());
        }
        parameters
            .build()
            .map_err(|e| Failure::failed(format!("TLS could not be set up for {host}: {e}")))
    };
    let security = match server.security.unwrap_or(Security::Starttls) {
        Security::None => Tls::None,
        Security::Starttls => Tls::Required(tls()?),
        Security::Tls => Tls::Wrapper(tls()?),
    };
    // Introduced by the sender's domain: allot sends as that domain.
    let hello = server
        .sender_address
        .as_deref()
        .and_then(|a| a.rsplit_once('@'))
        .map_or("localhost", |(_, domain)| domain);
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
        .port(server.port.unwrap_or(crate::domain::settings::DEFAULT_PORT))
        .timeout(Some(COMMAND_TIMEOUT))
        .hello_name(ClientId::Domain(hello.to_owned()))
        .tls(security);
    let mechanism = match server.auth.unwrap_or(SmtpAuth::None) {
        SmtpAuth::None => None,
        SmtpAuth::Plain => Some(Mechanism::Plain),
        SmtpAuth::Login => Some(Mechanism::Login),
    };
    if let Some(mechanism) = mechanism {
        let username = server.username.clone().unwrap_or_default();
        let password = sending.secret.clone().unwrap_or_default();
        transport = transport
            .credentials(Credentials::new(username, password))
            .authentication(vec![mechanism]);
    }
    match transport.build().send(email).await {
        Ok(response) => Ok(Answer::Smtp {
            code: code(response.code()),
            text: response.message().collect::<Vec<_>>().join("\n"),
        }),
        Err(err) => Err(Failure::Failed {
            answer: err.status().map(|status| Answer::Smtp {
                code: code(status),
                text: err.to_string(),
            }),
            message: format!("The mail server at {host} did not take the message: {err}."),
        }),
    }
}

fn code(code: lettre::transport::smtp::response::Code) -> u16 {
    code.to_string().parse().unwrap_or(0)
}
