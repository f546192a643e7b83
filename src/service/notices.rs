//! What allot mails on its own: a new account's login details and quota notices. Each is written
//! to the outbox (`MessageKind::Mail`, one row per recipient) in the transaction of the change
//! that causes it, and sent by the outbox's worker through the mail server that applies to the
//! message's node *when it is delivered* (`service::settings::sending`): the server's
//! credentials stay sealed in the settings and are never copied into the outbox.
//!
//! A mail is written only while sending is possible for its node (the owner's switch on and a
//! server applies): a change made while mail is off sends nothing later. If the owner switches
//! sending off after a mail was written, its attempts fail with "sending is switched off", are
//! retried with the outbox's backoff, and end `failed` (listed, sent again by
//! `POST /v1/outbox/{id}/retry`) unless sending comes back on meanwhile.

use serde_json::json;

use super::Ctx;
use crate::domain::audit::Action;
use crate::domain::ids::{MessageId, NodeId};
use crate::domain::outbox::{Mail, MessageKind};
use crate::domain::quota::Standing;
use crate::error::ApiError;
use crate::secret::Sealer;
use crate::store::accounts::Account;
use crate::store::nodes::Node;
use crate::store::outbox::{self as rows, NewMessage};
use crate::store::{self, DbConnection};

/// The topic of a new account's login details.
pub(crate) const LOGIN_DETAILS: &str = "account.login_details";
/// The topic of a quota notice.
pub(crate) const QUOTA_NOTICE: &str = "quota.notice";

/// Writes `mail` for `node` to the outbox, due now.
fn enqueue(
    conn: &mut DbConnection,
    node: NodeId,
    topic: &str,
    mail: &Mail,
) -> diesel::QueryResult<MessageId> {
    rows::insert(
        conn,
        NewMessage {
            kind: MessageKind::Mail,
            node_id: node,
            target: mail.to.clone(),
            ordering_key: None,
            topic: topic.to_owned(),
            payload: serde_json::to_string(mail).expect("a mail is plain data and serialises"),
        },
    )
}

/// Mails `account` (new, at `node`) its login details with `password`, sealed in the outbox (see
/// [`Mail`]): the caller has checked that sending is possible for the node.
pub(crate) fn login_details(
    conn: &mut DbConnection,
    sealer: &Sealer,
    node: &Node,
    account: &Account,
    password: &str,
) -> Result<(), ApiError> {
    use base64::Engine;
    let sealed = sealer.seal(password, &Mail::seal_context(node.id, &account.email));
    let mail = Mail {
        to: account.email.clone(),
        subject: "allot: your login details".to_owned(),
        text: format!(
            "An account was made for you in allot, at {}.\r\n\r\nUsername: {}\r\nOne-time password: {}\r\n\r\nThe password works once: the first login asks you to choose your own.\r\n",
            node.name,
            account.username,
            Mail::SECRET_SLOT,
        ),
        secret: Some(base64::engine::general_purpose::STANDARD.encode(sealed)),
    };
    enqueue(conn, node.id, LOGIN_DETAILS, &mail)?;
    Ok(())
}

/// A node's use of `resource` reached `threshold` % of its limit (`standing`, after the change):
/// the audit record and its `quota.threshold_crossed` event, and, while sending is possible for
/// the node, one mail to its contact address and each of `recipients`.
pub(crate) fn threshold_crossed(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node_id: NodeId,
    resource: &str,
    threshold: u8,
    standing: Standing,
    recipients: &[String],
) -> Result<(), ApiError> {
    ctx.record(
        conn,
        node_id,
        Action::QuotaThresholdCross,
        ("quota", resource.to_owned()),
        None,
        Some(json!({
            "node_id": node_id,
            "resource": resource,
            "threshold": threshold,
            "used": standing.used,
            "limit": standing.limit,
        })),
    )?;
    let Some(node) = store::nodes::find(conn, node_id)? else {
        return Ok(());
    };
    if !super::settings::sending_possible(conn, &node)? {
        return Ok(());
    }
    let mut to: Vec<&String> = node.contact_email.iter().chain(recipients).collect();
    to.sort_unstable();
    to.dedup();
    for address in to {
        let mail = Mail {
            to: address.clone(),
            subject: format!(
                "allot: {} uses {threshold}% of its {resource} limit",
                node.name
            ),
            text: format!(
                "{}\r\n(node {})\r\nnow uses {} of its limit of {} {resource}:\r\n{threshold}% or more.\r\n\r\nThis notice goes out once each time the use reaches {threshold}%,\r\nagain only after it fell back below.\r\n",
                node.name, node.id, standing.used, standing.limit,
            ),
            secret: None,
        };
        enqueue(conn, node.id, QUOTA_NOTICE, &mail)?;
    }
    Ok(())
}
