//! Settings inherited down the tree: a node's own values of a group (read, replaced, cleared) and
//! the values that apply to it. Which values apply is `domain::settings`; this module reads the
//! lineage's rows, keeps the secrets sealed, and records each change in the audit trail.
//!
//! **Secrets are write-only.** A request sets one by sending it, clears it with `null`, and keeps
//! the stored one by leaving it out: the API never answers a secret, so a client that read the
//! values cannot send it back, and a `PUT` of the other values must not wipe it. A secret the new
//! values do not use (a password once authentication is `none`, the Graph secret once the
//! transport is SMTP) is dropped. Secrets appear as `{"set": true}` in answers and in the audit
//! trail, and nowhere else: they are sealed (`secret::Sealer`) for their node, group and field.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::Ctx;
use crate::auth::guard::{Administer, Authorised};
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::settings::{
    self, Group, Level, MailServer, Notifications, Sourced, Support, Transport,
};
use crate::domain::tree;
use crate::error::{ApiError, FieldError};
use crate::secret::Sealer;
use crate::store::nodes::Node;
use crate::store::{DbConnection, node_settings};

/// The values of one group, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Values {
    MailServer(MailServer),
    Support(Support),
    Notifications(Notifications),
}

impl Values {
    fn empty(group: Group) -> Self {
        match group {
            Group::MailServer => Self::MailServer(MailServer::default()),
            Group::Support => Self::Support(Support::default()),
            Group::Notifications => Self::Notifications(Notifications::default()),
        }
    }

    pub fn group(&self) -> Group {
        match self {
            Self::MailServer(_) => Group::MailServer,
            Self::Support(_) => Group::Support,
            Self::Notifications(_) => Group::Notifications,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::MailServer(v) => serde_json::to_value(v),
            Self::Support(v) => serde_json::to_value(v),
            Self::Notifications(v) => serde_json::to_value(v),
        }
        .expect("settings are plain data and always serialise")
    }

    fn from_json(group: Group, text: &str) -> serde_json::Result<Self> {
        Ok(match group {
            Group::MailServer => Self::MailServer(serde_json::from_str(text)?),
            Group::Support => Self::Support(serde_json::from_str(text)?),
            Group::Notifications => Self::Notifications(serde_json::from_str(text)?),
        })
    }

    /// The secrets these values use; the others are dropped on saving.
    fn secrets_used(&self) -> BTreeSet<&'static str> {
        match self {
            Self::MailServer(server) => server.secrets_used(),
            Self::Support(_) | Self::Notifications(_) => BTreeSet::new(),
        }
    }
}

/// A node's own values of a group, and which of its secrets are set.
#[derive(Debug, Clone)]
pub(crate) struct Own {
    pub node_id: NodeId,
    pub values: Values,
    pub secrets: BTreeSet<String>,
    /// 0 while the node never set the group.
    pub version: i64,
    pub updated_at: Option<NaiveDateTime>,
}

impl Own {
    /// What a node that never set `group` has of it.
    fn unset(node_id: NodeId, group: Group) -> Self {
        Self {
            node_id,
            values: Values::empty(group),
            secrets: BTreeSet::new(),
            version: 0,
            updated_at: None,
        }
    }

    fn from_row(row: &node_settings::Row) -> Result<Self, ApiError> {
        let values = Values::from_json(row.group, &row.values).map_err(ApiError::internal)?;
        Ok(Self {
            node_id: row.node_id,
            values,
            secrets: row.secrets.keys().cloned().collect(),
            version: row.version,
            updated_at: Some(row.updated_at),
        })
    }

    pub fn group(&self) -> Group {
        self.values.group()
    }

    /// The values as JSON, each secret of the group as `{"set": bool}`: what answers and the
    /// audit trail show.
    pub fn shown(&self) -> Value {
        let mut shown = self.values.to_json();
        for field in self.group().secrets() {
            shown[*field] = json!({"set": self.secrets.contains(*field)});
        }
        shown
    }
}

/// What a request does to a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretChange {
    /// Left out: the stored one stays.
    Keep,
    Set(String),
    /// `null`: removed.
    Clear,
}

/// A node's new values of a group, parsed, with what to do to each secret.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub values: Values,
    pub secrets: BTreeMap<&'static str, SecretChange>,
}

/// Where the secret `field` of `node`'s `group` is sealed for: a value sealed for one place does
/// not open in another.
pub(crate) fn context(node: NodeId, group: Group, field: &str) -> String {
    format!("settings:{node}:{}.{field}", group.as_str())
}

/// `node`'s own values of `group` (empty, version 0, if it never set them).
pub(crate) fn own(conn: &mut DbConnection, node: NodeId, group: Group) -> Result<Own, ApiError> {
    match node_settings::find(conn, node, group)? {
        Some(row) => Own::from_row(&row),
        None => Ok(Own::unset(node, group)),
    }
}

/// The own values of every node of `node`'s lineage, from the owner down to `node`.
fn lineage(conn: &mut DbConnection, node: &Node, group: Group) -> Result<Vec<Own>, ApiError> {
    lineage_of(conn, tree::lineage(&node.path), group)
}

/// The own values of every node of `ids` (a lineage, owner first).
fn lineage_of(
    conn: &mut DbConnection,
    ids: Vec<NodeId>,
    group: Group,
) -> Result<Vec<Own>, ApiError> {
    let mut rows: BTreeMap<NodeId, Own> = BTreeMap::new();
    for row in node_settings::of_nodes(conn, &ids, group)? {
        rows.insert(row.node_id, Own::from_row(&row)?);
    }
    Ok(ids
        .into_iter()
        .map(|id| rows.remove(&id).unwrap_or_else(|| Own::unset(id, group)))
        .collect())
}

/// One group's levels of a lineage, typed.
fn levels<'a, T>(
    lineage: &'a [Own],
    pick: impl Fn(&'a Values) -> Option<&'a T>,
) -> Vec<Level<'a, T>> {
    lineage
        .iter()
        .map(|own| Level {
            node: own.node_id,
            own: pick(&own.values),
        })
        .collect()
}

/// A value that applies, as JSON, with the node it came from.
pub(crate) type Applied = BTreeMap<String, Sourced<Value>>;

fn sourced(value: impl serde::Serialize, source: Option<NodeId>) -> Sourced<Value> {
    Sourced {
        value: serde_json::to_value(value).expect("settings are plain data and always serialise"),
        source,
    }
}

/// The values of `group` that apply to `node`, each with the node it came from; for
/// `mail_server`, `enabled` says whether mail is sent for the node at all.
pub(crate) fn effective(
    conn: &mut DbConnection,
    node: &Node,
    group: Group,
) -> Result<Applied, ApiError> {
    let lineage = lineage(conn, node, group)?;
    let mut applied = Applied::new();
    match group {
        Group::MailServer => {
            let levels = levels(&lineage, |v| match v {
                Values::MailServer(m) => Some(m),
                _ => None,
            });
            let effective = settings::mail_server(&levels);
            applied.insert(
                "enabled".to_owned(),
                sourced(effective.sending.value, effective.sending.source),
            );
            if let Some((from, server)) = effective.server {
                let own = lineage
                    .iter()
                    .find(|o| o.node_id == from)
                    .expect("the server's node is of the lineage");
                let shown = Own {
                    values: Values::MailServer(MailServer {
                        enabled: None,
                        ..server.clone()
                    }),
                    ..own.clone()
                }
                .shown();
                for (field, value) in shown.as_object().into_iter().flatten() {
                    applied.insert(field.clone(), sourced(value, Some(from)));
                }
            }
        }
        Group::Support => {
            let levels = levels(&lineage, |v| match v {
                Values::Support(s) => Some(s),
                _ => None,
            });
            let effective = settings::support(&levels);
            if let Some(address) = effective.address {
                applied.insert("address".to_owned(), sourced(address.value, address.source));
            }
            for (field, flag) in [
                ("allow_client_specific", effective.allow_client_specific),
                ("attach_system_info", effective.attach_system_info),
            ] {
                applied.insert(field.to_owned(), sourced(flag.value, flag.source));
            }
        }
        Group::Notifications => {
            let levels = levels(&lineage, |v| match v {
                Values::Notifications(n) => Some(n),
                _ => None,
            });
            let effective = settings::notifications(&levels);
            let thresholds = effective.quota_thresholds;
            applied.insert(
                "quota_thresholds".to_owned(),
                sourced(thresholds.value, thresholds.source),
            );
            let recipients = effective.recipients;
            applied.insert(
                "recipients".to_owned(),
                sourced(recipients.value, recipients.source),
            );
        }
    }
    Ok(applied)
}

/// The notification settings that apply to each node of `lineage` (owner first), in its order:
/// one read for the whole lineage.
pub(crate) fn notifications_along(
    conn: &mut DbConnection,
    lineage: &[NodeId],
) -> Result<Vec<settings::EffectiveNotifications>, ApiError> {
    let own = lineage_of(conn, lineage.to_vec(), Group::Notifications)?;
    let levels = levels(&own, |v| match v {
        Values::Notifications(n) => Some(n),
        _ => None,
    });
    Ok((1..=levels.len())
        .map(|n| settings::notifications(&levels[..n]))
        .collect())
}

/// Whether mail is sent for `node` now: the owner's switch is on and a mail server applies (what
/// `effective` answers as `mail_server.enabled`). Its secrets stay sealed.
pub(crate) fn sending_possible(conn: &mut DbConnection, node: &Node) -> Result<bool, ApiError> {
    let lineage = lineage(conn, node, Group::MailServer)?;
    let levels = levels(&lineage, |v| match v {
        Values::MailServer(m) => Some(m),
        _ => None,
    });
    Ok(settings::mail_server(&levels).sending.value)
}

/// Whether the mail server that applies to `node` takes UTF-8 headers: what decides whether an
/// address with a local part beyond ASCII can be mailed from there.
fn takes_utf8(conn: &mut DbConnection, node: &Node) -> Result<bool, ApiError> {
    let applied = effective(conn, node, Group::MailServer)?;
    Ok(applied
        .get("utf8_headers")
        .is_some_and(|v| v.value == Value::Bool(true)))
}

/// The addresses of `values` that need UTF-8 headers, by field path.
fn utf8_addresses(values: &Values) -> Vec<(String, &str)> {
    let needs = |address: &str| {
        address
            .split('@')
            .next()
            .is_some_and(|local| !local.is_ascii())
    };
    match values {
        Values::Support(s) => s
            .address
            .iter()
            .filter(|a| needs(a))
            .map(|a| ("address".to_owned(), a.as_str()))
            .collect(),
        Values::Notifications(n) => n
            .recipients
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, a)| needs(a))
            .map(|(i, a)| (format!("recipients[{i}]"), a.as_str()))
            .collect(),
        Values::MailServer(_) => Vec::new(),
    }
}

/// Replaces `node`'s own values of the change's group, keeping, setting or clearing each secret
/// as the change says. `precondition` sees the current version first (If-Match).
pub(crate) fn replace(
    conn: &mut DbConnection,
    ctx: &Ctx,
    sealer: &Sealer,
    node: &Authorised<Administer>,
    change: Change,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
) -> Result<Own, ApiError> {
    let group = change.values.group();
    let row = node_settings::find(conn, node.id, group)?;
    let before = match &row {
        Some(row) => Own::from_row(row)?,
        None => Own::unset(node.id, group),
    };
    precondition(before.version)?;
    // International addresses need a server that takes UTF-8 headers (the mail server's own
    // sender was checked against its own `utf8_headers` when parsed).
    let utf8 = utf8_addresses(&change.values);
    if !utf8.is_empty() && !takes_utf8(conn, node)? {
        return Err(ApiError::Validation(
            utf8.into_iter()
                .map(|(field, _)| {
                    FieldError::new(
                        field,
                        "has a local part beyond ASCII, but the mail server that applies here does not take UTF-8 headers (`utf8_headers`, RFC 6532)",
                    )
                })
                .collect(),
        ));
    }
    let used = change.values.secrets_used();
    let stored = row.map(|r| r.secrets).unwrap_or_default();
    let mut secrets = BTreeMap::new();
    let mut errors = Vec::new();
    for field in group.secrets() {
        let instruction = change
            .secrets
            .get(field)
            .cloned()
            .unwrap_or(SecretChange::Keep);
        let sealed = match instruction {
            SecretChange::Set(_) if !used.contains(field) => {
                errors.push(FieldError::new(*field, unused(field)));
                continue;
            }
            SecretChange::Set(text) => Some(sealer.seal(&text, &context(node.id, group, field))),
            SecretChange::Keep => stored.get(*field).cloned(),
            SecretChange::Clear => None,
        };
        match sealed {
            Some(sealed) if used.contains(field) => {
                secrets.insert((*field).to_owned(), sealed);
            }
            None if used.contains(field) => {
                errors.push(FieldError::new(*field, required(field)));
            }
            _ => {}
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let saved = node_settings::Row {
        node_id: node.id,
        group,
        values: change.values.to_json().to_string(),
        secrets,
        version: before.version + 1,
        updated_at: crate::store::now(),
    };
    node_settings::save(conn, &saved, before.version)?;
    let after = Own::from_row(&saved)?;
    ctx.record(
        conn,
        node.id,
        Action::SettingsUpdate,
        ("settings", group.as_str().to_owned()),
        Some(before.shown()),
        Some(after.shown()),
    )?;
    Ok(after)
}

fn unused(field: &str) -> &'static str {
    match field {
        settings::PASSWORD => "is used only with `transport` `smtp` and `auth` `plain` or `login`",
        _ => "is used only with `transport` `m365_graph`",
    }
}

fn required(field: &str) -> &'static str {
    match field {
        settings::PASSWORD => "is required with `auth` `plain` or `login` (none is stored)",
        _ => "is required with `transport` `m365_graph` (none is stored)",
    }
}

/// Clears `node`'s own values of `group`: the values above it apply again. The row stays, empty,
/// with a new version (see the migration). Clearing what is clear changes nothing.
pub(crate) fn clear(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Administer>,
    group: Group,
    precondition: impl FnOnce(i64) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let before = own(conn, node.id, group)?;
    precondition(before.version)?;
    if before.values == Values::empty(group) && before.secrets.is_empty() {
        return Ok(());
    }
    let saved = node_settings::Row {
        node_id: node.id,
        group,
        values: Values::empty(group).to_json().to_string(),
        secrets: BTreeMap::new(),
        version: before.version + 1,
        updated_at: crate::store::now(),
    };
    node_settings::save(conn, &saved, before.version)?;
    ctx.record(
        conn,
        node.id,
        Action::SettingsClear,
        ("settings", group.as_str().to_owned()),
        Some(before.shown()),
        None,
    )?;
    Ok(())
}

/// A mail server to send through, with its secret opened.
#[derive(Clone)]
pub(crate) struct Sending {
    /// The node whose server it is.
    pub node_id: NodeId,
    pub server: MailServer,
    /// The password (SMTP) or client secret (Graph), if the server uses one.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Sending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sending")
            .field("node_id", &self.node_id)
            .field("server", &self.server)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Why no mail can be sent for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotSending {
    /// The owner's `mail_server.enabled` is not on: nothing is sent anywhere.
    SwitchedOff,
    /// No node of the lineage configures a server.
    NoServer,
}

/// The mail server mail for `node` goes through, with its secret opened; or why none.
pub(crate) fn sending(
    conn: &mut DbConnection,
    sealer: &Sealer,
    node: &Node,
) -> Result<Result<Sending, NotSending>, ApiError> {
    let lineage = lineage(conn, node, Group::MailServer)?;
    let levels = levels(&lineage, |v| match v {
        Values::MailServer(m) => Some(m),
        _ => None,
    });
    let effective = settings::mail_server(&levels);
    if !effective.sending.value {
        // Nobody configured anything: no server. Otherwise the owner's switch is what is off.
        let nothing = effective.server.is_none() && effective.sending.source.is_none();
        return Ok(Err(if nothing {
            NotSending::NoServer
        } else {
            NotSending::SwitchedOff
        }));
    }
    let Some((from, server)) = effective.server else {
        return Ok(Err(NotSending::NoServer));
    };
    let field = match server.transport {
        Some(Transport::M365Graph) => Some(settings::CLIENT_SECRET),
        _ => server.secrets_used().first().copied(),
    };
    let secret = match field {
        None => None,
        Some(field) => {
            let row = node_settings::find(conn, from, Group::MailServer)?.ok_or_else(|| {
                ApiError::internal(std::io::Error::other("the server's row is gone"))
            })?;
            let sealed = row.secrets.get(field).ok_or_else(|| {
                ApiError::internal(std::io::Error::other(format!(
                    "the server's {field} is not stored"
                )))
            })?;
            Some(
                sealer
                    .open(sealed, &context(from, Group::MailServer, field))
                    .map_err(ApiError::internal)?,
            )
        }
    };
    Ok(Ok(Sending {
        node_id: from,
        server: server.clone(),
        secret,
    }))
}

/// Records that a test message was sent from `node` (`what`: to whom, through which server, and
/// what it answered; never a secret).
pub(crate) fn record_mail_test(
    conn: &mut DbConnection,
    ctx: &Ctx,
    node: &Authorised<Administer>,
    what: Value,
) -> Result<(), ApiError> {
    ctx.record(
        conn,
        node.id,
        Action::SettingsMailTest,
        ("settings", Group::MailServer.as_str().to_owned()),
        None,
        Some(what),
    )?;
    Ok(())
}
