//! Settings inherited down the tree: `GET`/`PUT`/`DELETE /v1/nodes/{id}/settings/{group}` for a
//! node's own values, and `…/effective` for the values that apply to it with where each came from.
//!
//! One path per operation with `{group}` in it, as the contract names them; the body of a `PUT` is
//! parsed as the group's own type once the group is known (its schema is the `oneOf` of the
//! three), so a field of another group is refused by name like any unknown field.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::common::{self, Fields, IfMatch, etag, nullable, utc};
use super::extract::{self, Json};
use crate::auth::Principal;
use crate::auth::guard::Reach;
use crate::domain::ids::NodeId;
use crate::domain::settings::{
    self, Group, MailServer, Notifications, Security, SmtpAuth, Support, Transport,
};
use crate::error::{ApiError, Guarded, Problem};
use crate::mail::{Answer, Failure, Outgoing};
use crate::service::Ctx;
use crate::service::settings::{self as service, Change, Own, SecretChange, Values};
use crate::startup::AppState;
use crate::store::{self, nodes};

/// Whether a write-only value (a password, a client secret) is stored. The value itself is never
/// answered.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretState {
    pub set: bool,
}

/// A node's own `mail_server` values. Absent members are not set.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MailServerValues {
    #[serde(flatten)]
    #[schema(inline)]
    pub values: MailServerShown,
    pub password: SecretState,
    pub client_secret: SecretState,
}

/// The non-secret `mail_server` values, as set.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MailServerShown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<Security>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<SmtpAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub tenant_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub client_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub utf8_headers: Option<bool>,
}

/// A node's own `support` values. Absent members are not set.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SupportValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_client_specific: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_system_info: Option<bool>,
}

/// A node's own `notifications` values. Absent members are not set.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NotificationsValues {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<u8>>, example = json!([80, 100]))]
    pub quota_thresholds: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
}

/// The values of the group the path names.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum GroupValues {
    MailServer(MailServerValues),
    Support(SupportValues),
    Notifications(NotificationsValues),
}

/// A node's own values of one group.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettingsView {
    pub node_id: NodeId,
    pub group: Group,
    /// What the node sets itself (empty: it inherits everything); each secret as
    /// `{"set": true|false}`.
    pub values: GroupValues,
    /// Increases with every change, clearing included; 0 while the node never set the group.
    /// The `ETag` is this number in quotes.
    pub version: i64,
    /// Absent while the node never set the group.
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<Own> for SettingsView {
    fn from(own: Own) -> Self {
        let set = |field: &str| SecretState {
            set: own.secrets.contains(field),
        };
        let values = match &own.values {
            Values::MailServer(m) => GroupValues::MailServer(MailServerValues {
                values: MailServerShown {
                    enabled: m.enabled,
                    transport: m.transport,
                    host: m.host.clone(),
                    port: m.port,
                    security: m.security,
                    auth: m.auth,
                    username: m.username.clone(),
                    tenant_id: m.tenant_id,
                    client_id: m.client_id,
                    sender_address: m.sender_address.clone(),
                    sender_name: m.sender_name.clone(),
                    utf8_headers: m.utf8_headers,
                },
                password: set(settings::PASSWORD),
                client_secret: set(settings::CLIENT_SECRET),
            }),
            Values::Support(s) => GroupValues::Support(SupportValues {
                address: s.address.clone(),
                allow_client_specific: s.allow_client_specific,
                attach_system_info: s.attach_system_info,
            }),
            Values::Notifications(n) => GroupValues::Notifications(NotificationsValues {
                quota_thresholds: n.quota_thresholds.clone(),
                recipients: n.recipients.clone(),
            }),
        };
        Self {
            node_id: own.node_id,
            group: own.group(),
            values,
            version: own.version,
            updated_at: own.updated_at.map(utc),
        }
    }
}

fn ok_with_etag(own: Own) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(own.version)))
        .json(SettingsView::from(own))
}

/// A value that applies to a node, and where it came from.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AppliedValue {
    /// The value (a secret as `{"set": true|false}`).
    pub value: serde_json::Value,
    /// The node that set it: the node itself or an ancestor (the owner's values are the global
    /// ones); null for allot's own default.
    pub source_node_id: Option<NodeId>,
}

/// The values of one group that apply to a node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EffectiveView {
    pub node_id: NodeId,
    pub group: Group,
    /// Each value that applies, by name. For `mail_server`, `enabled` says whether mail is sent
    /// for the node at all (the owner's switch is on and a server applies); the other values are
    /// the server that applies, all from one node.
    pub values: BTreeMap<String, AppliedValue>,
}

/// The group a path names; an unknown one names nothing (404).
fn group(text: &str) -> Result<Group, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}

/// A node's own values of a group: what it sets itself, not what it inherits. Secrets answer
/// `{"set": true}` or `{"set": false}`, never their value. Admins and managers of the node or
/// above.
#[utoipa::path(
    tag = "settings",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ("group" = Group, Path)),
    responses(
        (status = 200, description = "The node's own values", body = SettingsView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/settings/{group}")]
pub(crate) async fn get_settings(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, group_text) = path.into_inner();
    let own = store::run(&state.pool, move |conn| {
        let node = principal.may_read_settings(nodes::find(conn, id)?)?;
        service::own(conn, node.id, group(&group_text)?)
    })
    .await?;
    Ok(ok_with_etag(own))
}

/// The values of a group that apply to a node, each with the node it came from
/// (`source_node_id`; null: allot's default).
///
/// The rules (from the source documents): the owner's values are the global ones, and a node
/// inherits each value from its nearest ancestor that sets it, except that the **mail server** is
/// taken whole from the nearest node (itself first) that configures one and has not switched it
/// off, and that nothing is sent anywhere while the owner's `mail_server.enabled` is not on
/// (`enabled` answers false then, from the owner); and a node's own **support address** applies
/// only when the nearest node above it that sets `allow_client_specific` allows it (otherwise the
/// address from above applies). Admins and managers of the node or above.
#[utoipa::path(
    tag = "settings",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ("group" = Group, Path)),
    responses(
        (status = 200, description = "The values that apply, with their sources", body = EffectiveView),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/settings/{group}/effective")]
pub(crate) async fn get_effective(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
) -> Result<web::Json<EffectiveView>, ApiError> {
    let (id, group_text) = path.into_inner();
    let view = store::run(&state.pool, move |conn| {
        let node = principal.may_read_settings(nodes::find(conn, id)?)?;
        let group = group(&group_text)?;
        let applied = service::effective(conn, &node, group)?;
        Ok::<_, ApiError>(EffectiveView {
            node_id: node.id,
            group,
            values: applied
                .into_iter()
                .map(|(name, sourced)| {
                    let value = AppliedValue {
                        value: sourced.value,
                        source_node_id: sourced.source,
                    };
                    (name, value)
                })
                .collect(),
        })
    })
    .await?;
    Ok(web::Json(view))
}

/// `mail_server` as set with `PUT`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailServerBody {
    /// Whether this server is used (default true). At the owner it is the global switch: while it
    /// is not on, nothing is sent anywhere, whatever a tenant configured. At a tenant, false
    /// switches its own server off, so that the one from above applies. Alone (`false`, without
    /// a `transport`) it sets only the switch.
    pub enabled: Option<bool>,
    /// Required for a server; without one only `enabled: false` may be sent.
    pub transport: Option<Transport>,
    /// SMTP: the server, a host name (any IDNA form) or an IP address. Required with `smtp`.
    #[schema(example = "smtp.example.com")]
    pub host: Option<String>,
    /// SMTP: 1–65535, default 25.
    #[schema(minimum = 1, maximum = 65535, example = 587)]
    pub port: Option<u16>,
    /// SMTP: default `starttls`.
    pub security: Option<Security>,
    /// SMTP: default `none`.
    pub auth: Option<SmtpAuth>,
    /// SMTP: required with `auth` `plain` or `login`, refused otherwise; 1–254 characters.
    pub username: Option<String>,
    /// SMTP: write-only. Left out, the stored one is kept; `null` removes it. Required (sent or
    /// stored) with `auth` `plain` or `login`; 1–1024 characters.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Password, write_only)]
    pub password: Option<Option<String>>,
    /// Graph: the directory (tenant) id, a GUID. Required with `m365_graph`.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub tenant_id: Option<Uuid>,
    /// Graph: the application (client) id, a GUID. Required with `m365_graph`.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub client_id: Option<Uuid>,
    /// Graph: write-only, like `password`; required (sent or stored) with `m365_graph`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Password, write_only)]
    pub client_secret: Option<Option<String>>,
    /// The address mail is sent from; required with a `transport`. A local part beyond ASCII
    /// only with `utf8_headers`.
    #[schema(value_type = Option<crate::api::schemas::Address>)]
    pub sender_address: Option<String>,
    /// The name shown with it, 1–100 characters.
    #[schema(example = "Acme Mail Services")]
    pub sender_name: Option<String>,
    /// Whether the server takes UTF-8 headers and addresses (RFC 6531/6532, SMTPUTF8): then
    /// addresses with local parts beyond ASCII, such as `山田太郎@株式.会社`, can be mailed.
    /// Default false.
    pub utf8_headers: Option<bool>,
}

/// `support` as set with `PUT`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportBody {
    /// Where support requests go. A tenant's applies only where the nearest node above it that
    /// sets `allow_client_specific` allows it.
    #[schema(value_type = Option<crate::api::schemas::Address>)]
    pub address: Option<String>,
    /// Whether the nodes below may use support addresses of their own (default false).
    pub allow_client_specific: Option<bool>,
    /// Whether support requests carry system details (licence data, version); default false.
    pub attach_system_info: Option<bool>,
}

/// `notifications` as set with `PUT`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsBody {
    /// Percentages of a limit at which a quota notice goes out: 1 to 10 of 1–100, each once
    /// (default `[80, 100]`).
    #[schema(value_type = Option<Vec<u8>>, min_items = 1, max_items = 10, example = json!([80, 100]))]
    pub quota_thresholds: Option<Vec<u8>>,
    /// Who gets quota notices besides the node's contact address; at most 20.
    #[schema(max_items = 20)]
    pub recipients: Option<Vec<String>>,
}

/// A `PUT`'s body: the values of the group the path names.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SettingsBody {
    MailServer(MailServerBody),
    Support(SupportBody),
    Notifications(NotificationsBody),
}

/// Records `why` against `field` when it was `given` where it is not taken.
fn refuse(fields: &mut Fields, given: bool, field: &str, why: &str) {
    if given {
        fields.push(field, why);
    }
}

/// A secret as sent: left out, a value, or `null`.
fn secret(fields: &mut Fields, field: &str, sent: Option<Option<String>>) -> SecretChange {
    match sent {
        None => SecretChange::Keep,
        Some(None) => SecretChange::Clear,
        Some(Some(text)) => match settings::parse_text(&text, 1024) {
            Ok(text) => SecretChange::Set(text),
            Err(message) => {
                fields.push(field, message);
                SecretChange::Keep
            }
        },
    }
}

impl TryFrom<MailServerBody> for Change {
    type Error = ApiError;
    fn try_from(body: MailServerBody) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let password = secret(&mut fields, settings::PASSWORD, body.password);
        let client_secret = secret(&mut fields, settings::CLIENT_SECRET, body.client_secret);
        let Some(transport) = body.transport else {
            const ALONE: &str = "is only taken with a `transport`";
            refuse(
                &mut fields,
                body.enabled != Some(false),
                "transport",
                "is required unless `enabled` is false (the switch alone)",
            );
            refuse(&mut fields, body.host.is_some(), "host", ALONE);
            refuse(&mut fields, body.port.is_some(), "port", ALONE);
            refuse(&mut fields, body.security.is_some(), "security", ALONE);
            refuse(&mut fields, body.auth.is_some(), "auth", ALONE);
            refuse(&mut fields, body.username.is_some(), "username", ALONE);
            refuse(&mut fields, body.tenant_id.is_some(), "tenant_id", ALONE);
            refuse(&mut fields, body.client_id.is_some(), "client_id", ALONE);
            refuse(
                &mut fields,
                body.sender_address.is_some(),
                "sender_address",
                ALONE,
            );
            refuse(
                &mut fields,
                body.sender_name.is_some(),
                "sender_name",
                ALONE,
            );
            refuse(
                &mut fields,
                body.utf8_headers.is_some(),
                "utf8_headers",
                ALONE,
            );
            refuse(
                &mut fields,
                password != SecretChange::Keep && password != SecretChange::Clear,
                "password",
                ALONE,
            );
            refuse(
                &mut fields,
                matches!(client_secret, SecretChange::Set(_)),
                "client_secret",
                ALONE,
            );
            fields.finish()?;
            return Ok(Change {
                values: Values::MailServer(MailServer {
                    enabled: Some(false),
                    ..MailServer::default()
                }),
                secrets: BTreeMap::from([
                    (settings::PASSWORD, password),
                    (settings::CLIENT_SECRET, client_secret),
                ]),
            });
        };
        let utf8 = body.utf8_headers.unwrap_or(false);
        let mut server = MailServer {
            enabled: Some(body.enabled.unwrap_or(true)),
            transport: Some(transport),
            utf8_headers: Some(utf8),
            ..MailServer::default()
        };
        match transport {
            Transport::Smtp => {
                const GRAPH: &str = "is only taken with `transport` `m365_graph`";
                refuse(&mut fields, body.tenant_id.is_some(), "tenant_id", GRAPH);
                refuse(&mut fields, body.client_id.is_some(), "client_id", GRAPH);
                let auth = body.auth.unwrap_or(SmtpAuth::None);
                if auth == SmtpAuth::None {
                    refuse(
                        &mut fields,
                        body.username.is_some(),
                        "username",
                        "is only taken with `auth` `plain` or `login`",
                    );
                }
                server.host = match body.host {
                    None => {
                        fields.push("host", "is required with `transport` `smtp`");
                        None
                    }
                    Some(host) => fields.check("host", settings::parse_host(&host)),
                };
                let port = body.port.unwrap_or(settings::DEFAULT_PORT);
                if port == 0 {
                    fields.push("port", "must be between 1 and 65535");
                }
                server.port = Some(port);
                server.security = Some(body.security.unwrap_or(Security::Starttls));
                server.auth = Some(auth);
                server.username = match (auth, body.username) {
                    (SmtpAuth::None, _) => None,
                    (_, None) => {
                        fields.push("username", "is required with `auth` `plain` or `login`");
                        None
                    }
                    (_, Some(name)) => fields.check("username", settings::parse_text(&name, 254)),
                };
            }
            Transport::M365Graph => {
                const SMTP: &str = "is only taken with `transport` `smtp`";
                refuse(&mut fields, body.host.is_some(), "host", SMTP);
                refuse(&mut fields, body.port.is_some(), "port", SMTP);
                refuse(&mut fields, body.security.is_some(), "security", SMTP);
                refuse(&mut fields, body.auth.is_some(), "auth", SMTP);
                refuse(&mut fields, body.username.is_some(), "username", SMTP);
                for (field, id) in [("tenant_id", body.tenant_id), ("client_id", body.client_id)] {
                    if id.is_none() {
                        fields.push(field, "is required with `transport` `m365_graph`: a GUID");
                    }
                }
                server.tenant_id = body.tenant_id;
                server.client_id = body.client_id;
            }
        }
        server.sender_address = match body.sender_address {
            None => {
                fields.push("sender_address", "is required with a `transport`");
                None
            }
            Some(raw) => fields.check("sender_address", settings::parse_address(&raw, utf8)),
        };
        server.sender_name = body
            .sender_name
            .and_then(|name| fields.check("sender_name", settings::parse_text(&name, 100)));
        fields.finish()?;
        Ok(Change {
            values: Values::MailServer(server),
            secrets: BTreeMap::from([
                (settings::PASSWORD, password),
                (settings::CLIENT_SECRET, client_secret),
            ]),
        })
    }
}

impl TryFrom<SupportBody> for Change {
    type Error = ApiError;
    fn try_from(body: SupportBody) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        // Whether the server takes UTF-8 is the workflow's to check: it knows which applies.
        let address = body
            .address
            .and_then(|raw| fields.check("address", settings::parse_address(&raw, true)));
        fields.finish()?;
        Ok(Change {
            values: Values::Support(Support {
                address,
                allow_client_specific: body.allow_client_specific,
                attach_system_info: body.attach_system_info,
            }),
            secrets: BTreeMap::new(),
        })
    }
}

impl TryFrom<NotificationsBody> for Change {
    type Error = ApiError;
    fn try_from(body: NotificationsBody) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let quota_thresholds = body
            .quota_thresholds
            .and_then(|t| fields.check("quota_thresholds", settings::parse_thresholds(&t)));
        let recipients = body.recipients.map(|list| {
            if list.len() > settings::MAX_RECIPIENTS {
                fields.push(
                    "recipients",
                    format!("must hold at most {} addresses", settings::MAX_RECIPIENTS),
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, raw)| {
                    fields.check(
                        &format!("recipients[{i}]"),
                        settings::parse_address(raw, true),
                    )
                })
                .collect()
        });
        fields.finish()?;
        Ok(Change {
            values: Values::Notifications(Notifications {
                quota_thresholds,
                recipients,
            }),
            secrets: BTreeMap::new(),
        })
    }
}

/// The body parsed as `group`'s values.
fn change(group: Group, raw: &[u8]) -> Result<Change, ApiError> {
    match group {
        Group::MailServer => Change::try_from(extract::parse::<MailServerBody>(raw)?),
        Group::Support => Change::try_from(extract::parse::<SupportBody>(raw)?),
        Group::Notifications => Change::try_from(extract::parse::<NotificationsBody>(raw)?),
    }
}

/// Replaces a node's own values of a group with the body, the group's type: what is left out is
/// no longer set (the value from above applies), except a **secret**, which is kept when left
/// out (it is never answered, so it cannot be sent back) and removed with `null`. A secret the
/// new values do not use is removed. `If-Match` with the `ETag` makes the change conditional.
/// Admins of the node or above; a customer's admin sets its own mail server.
///
/// Rules the schema cannot state: a `mail_server` needs a `transport` unless it is only the
/// switch (`{"enabled": false}`); SMTP needs `host` and, with `auth`, `username` and `password`;
/// Graph needs `tenant_id`, `client_id` and `client_secret`; fields of the other transport are
/// refused; addresses with a local part beyond ASCII need a mail server with `utf8_headers`.
#[utoipa::path(
    tag = "settings",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ("group" = Group, Path), IfMatch),
    request_body = SettingsBody,
    responses(
        (status = 200, description = "The node's own values now", body = SettingsView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`, each named by its path)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/nodes/{id}/settings/{group}")]
pub(crate) async fn put_settings(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
    if_match: IfMatch,
    body: Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let (id, group_text) = path.into_inner();
    let group = group(&group_text)?;
    let change = change(group, body.raw())?;
    let sealer = state.sealer.clone();
    let own = common::write(&state.pool, move |conn| {
        nodes::lock(conn, &[id])?;
        let node = principal.may_administer(nodes::find(conn, id)?, Reach::SelfOrBelow)?;
        let precondition = |version| if_match.check(version);
        service::replace(
            conn,
            &Ctx::of(&principal),
            &sealer,
            &node,
            change,
            precondition,
        )
    })
    .await?;
    Ok(ok_with_etag(own))
}

/// Clears a node's own values of a group, secrets included: the values from above apply again.
/// Clearing what is not set changes nothing. `If-Match` makes it conditional. Admins of the node
/// or above.
#[utoipa::path(
    tag = "settings",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ("group" = Group, Path), IfMatch),
    responses(
        (status = 204, description = "Cleared"),
        Guarded,
        (status = 409, description = "The node lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/nodes/{id}/settings/{group}")]
pub(crate) async fn delete_settings(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
    if_match: IfMatch,
) -> Result<HttpResponse, ApiError> {
    let (id, group_text) = path.into_inner();
    let group = group(&group_text)?;
    common::write(&state.pool, move |conn| {
        nodes::lock(conn, &[id])?;
        let node = principal.may_administer(nodes::find(conn, id)?, Reach::SelfOrBelow)?;
        let precondition = |version| if_match.check(version);
        service::clear(conn, &Ctx::of(&principal), &node, group, precondition)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailTestBody {
    /// Who gets the test message. A local part beyond ASCII only through a server with
    /// `utf8_headers`.
    #[schema(value_type = crate::api::schemas::Address)]
    pub to: String,
}

/// An SMTP server's reply.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MailReply {
    #[schema(minimum = 200, maximum = 599, example = 250)]
    pub code: u16,
    #[schema(example = "2.0.0 Ok: queued as 4XyZ")]
    pub text: String,
}

/// What the mail server said to the test message.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MailTestReport {
    /// Whether the server took the message.
    pub ok: bool,
    pub transport: Transport,
    /// The node whose mail server was used: the node itself or the nearest above it that has one.
    pub server_node_id: NodeId,
    /// SMTP: the server's reply to the message, or its refusal; null when it never answered.
    pub reply: Option<MailReply>,
    /// Graph: the HTTP status of `sendMail` (202 when taken), or of the token request that
    /// failed; null when there was no answer.
    #[schema(minimum = 100, maximum = 599, example = 202)]
    pub status: Option<u16>,
    /// What went wrong, in plain words; null when `ok`.
    pub failure: Option<String>,
}

fn report(
    sending: &service::Sending,
    outcome: Result<Answer, Failure>,
) -> Result<MailTestReport, ApiError> {
    let (ok, answer, failure) = match outcome {
        Ok(answer) => (true, Some(answer), None),
        Err(Failure::Forbidden(detail)) => return Err(ApiError::MailTargetForbidden(detail)),
        Err(Failure::Failed { answer, message }) => (false, answer, Some(message)),
    };
    let (reply, status) = match answer {
        Some(Answer::Smtp { code, text }) => (Some(MailReply { code, text }), None),
        Some(Answer::Graph { status }) => (None, Some(status)),
        None => (None, None),
    };
    Ok(MailTestReport {
        ok,
        transport: sending.server.transport.unwrap_or(Transport::Smtp),
        server_node_id: sending.node_id,
        reply,
        status,
        failure,
    })
}

fn busy(busy: crate::probe::gate::Busy) -> ApiError {
    use crate::probe::gate::{Busy, PER_DOMAIN_PER_MINUTE};
    let (detail, retry_after) = match busy {
        Busy::Running => (
            "A test message from this node is being sent; its report comes first.".to_owned(),
            crate::mail::TIMEOUT.as_secs(),
        ),
        Busy::Spent(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            (
                format!(
                    "This node has sent {PER_DOMAIN_PER_MINUTE} test messages in the last minute; retry in {seconds} s."
                ),
                seconds.max(1),
            )
        }
        Busy::Full => (
            "allot is sending as many test messages as it allows at once; retry shortly."
                .to_owned(),
            5,
        ),
    };
    ApiError::MailTestBusy {
        detail,
        retry_after,
    }
}

/// Sends a test message to `to` through the mail server that applies to the node, now, and
/// answers what the server said: the SMTP reply to the message (or its refusal), or Graph's
/// status. It waits for the answer (at most 30 s). A server that refuses or cannot be reached is
/// a 200 report with `ok: false`; a problem document means nothing was sent: no server applies
/// (`mail-disabled`), the server's address is not one allot connects to
/// (`mail-target-forbidden`), or the node sends one test at a time and at most 10 a minute
/// (`mail-test-busy`). Each test sent is in the audit trail. Admins of the node or above.
#[utoipa::path(
    tag = "settings",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    request_body = MailTestBody,
    responses(
        (status = 200, description = "What the mail server answered", body = MailTestReport),
        Guarded,
        (status = 409, description = "No mail is sent from the node (`mail-disabled`), or it lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`), or the server's address is one allot does not connect to (`mail-target-forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "A test from the node is running, or too many were sent (`mail-test-busy`)", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
#[post("/v1/nodes/{id}/settings/mail_server/test")]
pub(crate) async fn test_mail_server(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<MailTestBody>,
) -> Result<web::Json<MailTestReport>, ApiError> {
    let to =
        settings::parse_address(&body.0.to, true).map_err(|m| ApiError::validation("to", m))?;
    let id = id.into_inner();
    let sealer = state.sealer.clone();
    let asking = principal.clone();
    let (node, sending) = store::run(&state.pool, move |conn| {
        let node = asking.may_administer(nodes::find(conn, id)?, Reach::SelfOrBelow)?;
        let sending = service::sending(conn, &sealer, &node)?;
        Ok::<_, ApiError>((node, sending))
    })
    .await?;
    let sending = sending.map_err(|why| {
        ApiError::MailDisabled(match why {
            service::NotSending::SwitchedOff => "Sending mail is switched off: the owner's `mail_server.enabled` is not on, so nothing is sent anywhere.".to_owned(),
            service::NotSending::NoServer => "No mail server applies to this node: neither it nor any node above it configures one.".to_owned(),
        })
    })?;
    let local_ascii = to.split('@').next().is_some_and(str::is_ascii);
    if !local_ascii && sending.server.utf8_headers != Some(true) {
        return Err(ApiError::validation(
            "to",
            "has a local part beyond ASCII, but the mail server that applies here does not take UTF-8 headers (`utf8_headers`, RFC 6532)",
        ));
    }
    let _sending_now = state
        .mail_tests
        .admit(node.id, std::time::Instant::now())
        .map_err(busy)?;
    let message = Outgoing {
        to: to.clone(),
        subject: "allot: test message".to_owned(),
        text: format!(
            "This is a test message from allot, sent through the mail server of the node {}.\r\n\r\nIf you can read it, mail from allot reaches you.\r\n",
            sending.node_id
        ),
    };
    let outcome = crate::mail::send(&sending, &message, &state.dns, &state.mail).await;
    let report = report(&sending, outcome)?;
    let audit = serde_json::json!({
        "to": to,
        "server_node_id": sending.node_id,
        "transport": report.transport,
        "ok": report.ok,
        "reply_code": report.reply.as_ref().map(|r| r.code),
        "status": report.status,
    });
    common::write(&state.pool, move |conn| {
        service::record_mail_test(conn, &Ctx::of(&principal), &node, audit)
    })
    .await?;
    Ok(web::Json(report))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(get_settings)
        .service(get_effective)
        .service(put_settings)
        .service(delete_settings)
        .service(test_mail_server);
}
