//! Mailboxes (users) and their aliases over HTTP, and the import of many mailboxes at once: the
//! views, the parsing (of a body, of a CSV) and the handlers. The workflows live in
//! [`crate::service::mailboxes`] and [`crate::service::aliases`]: each active mailbox takes a
//! `users` seat of its customer and a seat of every module it holds (the automatic `base` at
//! least); disabling frees them, enabling takes them again. A mailbox must be disabled before it
//! can be deleted; a domain's role addresses (postmaster@, abuse@) take no seat and go only with
//! their domain.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::utc;
use super::common::{self, Fields, IfMatch, Page, etag, nullable};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use crate::api::schemas::{
    Address, ContactEmail, DomainText, ItemStatus, MailboxOrigin, ModuleCode, PersonName, RowStatus,
};
use crate::auth::Principal;
use crate::auth::guard::{Authorised, Manage};
use crate::domain::address::{DomainName, MailAddress};
use crate::domain::ids::{AliasId, DomainId, MailboxId, NodeId};
use crate::domain::status::Status;
use crate::domain::tree::{self, NodeKind};
use crate::error::{ApiError, FieldError, Guarded, Problem};
pub use crate::service::mailboxes::NewMailbox;
use crate::service::mailboxes::{self as service, MailboxChange, Row};
use crate::service::{self as services, Ctx};
use crate::startup::AppState;
use crate::store::aliases::Alias;
use crate::store::mailboxes::{Mailbox, MailboxFilter, Origin};
use crate::store::{self, DbConnection, mailboxes, nodes};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MailboxView {
    pub id: MailboxId,
    /// The customer it belongs to.
    pub node_id: NodeId,
    pub domain_id: DomainId,
    /// `local@domain`, the domain in ASCII: what mail workers match.
    #[schema(example = "jane.doe@example.com")]
    pub address: String,
    /// The domain in Unicode, for people.
    #[schema(example = "山田太郎@株式.会社")]
    pub display_address: String,
    pub display_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub contact_email: Option<String>,
    #[schema(value_type = ItemStatus)]
    pub status: &'static str,
    #[schema(value_type = MailboxOrigin)]
    pub origin: Origin,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The per-mailbox modules it holds, by code (`base` on every mailbox but role addresses).
    #[schema(example = json!(["base", "lft"]))]
    pub modules: Vec<String>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MailboxView {
    pub fn new(m: &Mailbox, modules: impl IntoIterator<Item = String>) -> Self {
        Self {
            id: m.id,
            node_id: m.node_id,
            domain_id: m.domain_id,
            address: m.address.stored(),
            display_address: m.address.display(),
            display_name: m.display_name.clone(),
            first_name: m.first_name.clone(),
            last_name: m.last_name.clone(),
            contact_email: m.contact_email.clone(),
            status: Status::of(m.active).as_str(),
            origin: m.origin,
            first_seen_at: m.first_seen_at.map(utc),
            last_seen_at: m.last_seen_at.map(utc),
            modules: modules.into_iter().collect(),
            version: m.version,
            created_at: utc(m.created_at),
            updated_at: utc(m.updated_at),
        }
    }
}

/// A mailbox with the modules it holds, read in the same transaction.
type Held = (Mailbox, std::collections::BTreeSet<String>);

fn respond((mailbox, modules): Held) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(mailbox.version)))
        .json(MailboxView::new(&mailbox, modules))
}

/// `mailbox` with the modules it holds.
pub(crate) fn held(conn: &mut DbConnection, mailbox: Mailbox) -> Result<Held, ApiError> {
    let modules = store::modules::of_mailbox(conn, mailbox.id)?;
    Ok((mailbox, modules))
}

/// A name field: at most 200 characters, no control characters.
fn parse_text(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err("must be at most 200 characters without control characters".to_owned());
    }
    Ok(text.to_owned())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMailbox {
    /// On one of the customer's domains; not a role address (postmaster@, abuse@).
    #[schema(value_type = Address)]
    pub address: String,
    #[schema(value_type = Option<PersonName>)]
    pub display_name: Option<String>,
    #[schema(value_type = Option<PersonName>)]
    pub first_name: Option<String>,
    #[schema(value_type = Option<PersonName>)]
    pub last_name: Option<String>,
    /// An address outside the service to reach the person; empty is the same as absent.
    #[schema(value_type = Option<ContactEmail>)]
    pub contact_email: Option<String>,
}

impl TryFrom<CreateMailbox> for NewMailbox {
    type Error = ApiError;
    fn try_from(body: CreateMailbox) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        let address = fields.check("address", MailAddress::parse(&body.address));
        if address.as_ref().is_some_and(MailAddress::is_role) {
            fields.push(
                "address",
                "postmaster@ and abuse@ are role addresses every domain has already",
            );
        }
        let mut optional =
            |field: &str, value: Option<String>, parse: fn(&str) -> Result<String, String>| {
                value
                    .filter(|v| !v.is_empty())
                    .and_then(|v| fields.check(field, parse(&v)))
            };
        let display_name = optional("display_name", body.display_name, parse_text);
        let first_name = optional("first_name", body.first_name, parse_text);
        let last_name = optional("last_name", body.last_name, parse_text);
        let contact_email = optional("contact_email", body.contact_email, tree::parse_email);
        fields.finish()?;
        Ok(Self {
            address: address.ok_or_else(|| ApiError::validation("address", "is required"))?,
            display_name,
            first_name,
            last_name,
            contact_email,
        })
    }
}

/// The node, if it is a customer: only customers hold domains and mailboxes.
pub(crate) fn customer<L>(node: Authorised<L>) -> Result<Authorised<L>, ApiError> {
    if node.kind == NodeKind::Customer {
        Ok(node)
    } else {
        Err(ApiError::validation(
            "id",
            "mailboxes belong to customers; this node is a reseller or the owner",
        ))
    }
}

/// Creates a mailbox for customer `{id}`, taking one `users` seat and one seat of each
/// automatically assigned module (`module:base`): all or none.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer"), IdempotencyHeader),
    request_body = CreateMailbox,
    responses(
        (status = 201, description = "Created", body = MailboxView, headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "The address exists (`address-taken`), no `users` or `module:base` seat is free (`quota-exceeded`, naming the resource), or an ancestor has no real seat of it left (`ancestor-exhausted`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, a role address, a domain that is not the customer's, or a node that is not a customer (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/mailboxes")]
pub(crate) async fn create_mailbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    key: IdempotencyKey,
    body: Json<CreateMailbox>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let new = NewMailbox::try_from(body.0)?;
    let node_id = id.into_inner();
    let answer = common::write(&state.pool, move |conn| {
        let found = nodes::find_locked(conn, node_id, &[])?;
        idempotency::once(conn, &principal, &key, &raw, |conn| {
            let node = customer(principal.may_manage(found)?)?;
            let (mailbox, modules) = service::create(conn, &Ctx::of(&principal), &node, new)
                .map_err(|e| principal.shown(e))?;
            Answer::created(
                format!("/v1/mailboxes/{}", mailbox.id),
                etag(mailbox.version),
                &MailboxView::new(&mailbox, modules),
            )
        })
    })
    .await?;
    Ok(answer.into_response())
}

common::list_query! {
    pub struct MailboxesQuery {
        /// Only mailboxes of this status.
        #[param(value_type = Option<ItemStatus>)]
        pub status: Option<String>,
        /// Only mailboxes of this origin.
        #[param(value_type = Option<MailboxOrigin>)]
        pub origin: Option<String>,
        /// Only addresses starting with this.
        pub address_prefix: Option<String>,
        /// Only addresses on this domain (any IDNA form).
        #[param(value_type = Option<DomainText>)]
        pub domain: Option<String>,
        /// Only mailboxes holding this per-mailbox module (a per-customer one is refused, 422).
        #[param(value_type = Option<ModuleCode>)]
        pub module: Option<String>,
    }
}

fn parse_filter(query: &MailboxesQuery) -> Result<MailboxFilter, ApiError> {
    let mut errors = Vec::new();
    let active = match query.status.as_deref().map(common::parse_active) {
        None => None,
        Some(Ok(active)) => Some(active),
        Some(Err(message)) => {
            errors.push(FieldError::new("status", message));
            None
        }
    };
    let origin = match query.origin.as_deref() {
        None => None,
        Some(text) => match [Origin::Manual, Origin::Import, Origin::Check, Origin::Role]
            .into_iter()
            .find(|o| o.as_str() == text)
        {
            Some(origin) => Some(origin),
            None => {
                errors.push(FieldError::new(
                    "origin",
                    "must be manual, import, check or role",
                ));
                None
            }
        },
    };
    let domain = match query.domain.as_deref().map(DomainName::parse) {
        None => None,
        Some(Ok(domain)) => Some(domain),
        Some(Err(message)) => {
            errors.push(FieldError::new("domain", message));
            None
        }
    };
    let module = match query.module.as_deref() {
        Some(code) if !crate::domain::resource::is_module_code(code) => {
            errors.push(FieldError::new("module", "is not a module code"));
            None
        }
        other => other.map(str::to_owned),
    };
    if errors.is_empty() {
        Ok(MailboxFilter {
            active,
            origin,
            address_prefix: query.address_prefix.clone(),
            domain,
            module,
        })
    } else {
        Err(ApiError::InvalidQuery(errors))
    }
}

/// The mailboxes of `{id}`'s subtree, oldest first.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), MailboxesQuery),
    responses(
        (status = 200, description = "A page of mailboxes", body = super::common::pages::MailboxPage),
        Guarded,
        (status = 422, description = "`module` names a per-customer module (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/mailboxes")]
pub(crate) async fn list_mailboxes(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<MailboxesQuery>,
) -> Result<web::Json<Page<MailboxView>>, ApiError> {
    let query = query.into_inner();
    let filter = parse_filter(&query)?;
    list(state, principal, id.into_inner(), &query, filter).await
}

/// A page of the mailboxes of `id`'s subtree that pass `filter`, each with its modules.
async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    id: NodeId,
    query: &MailboxesQuery,
    filter: MailboxFilter,
) -> Result<web::Json<Page<MailboxView>>, ApiError> {
    let page = query.page()?;
    let fetch = page.clone();
    let (rows, modules) = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?;
        if let Some(code) = &filter.module {
            let catalogue = store::modules::all(conn)?;
            let module = catalogue
                .iter()
                .find(|m| m.code == *code)
                .ok_or(ApiError::NotFound)?;
            if module.rules.unit != crate::domain::catalogue::Unit::PerMailbox {
                return Err(ApiError::validation(
                    "module",
                    format!(
                        "{code} is a per_customer module: customers hold it (GET /v1/nodes/{{id}}/modules)"
                    ),
                ));
            }
        }
        let rows = mailboxes::list_in_subtree(
            conn,
            &node.path,
            &filter,
            fetch.after.as_deref(),
            fetch.fetch(),
        )?;
        let ids: Vec<MailboxId> = rows.iter().map(|m| m.id).collect();
        let modules = store::modules::of_mailboxes(conn, &ids)?;
        Ok::<_, ApiError>((rows, modules))
    })
    .await?;
    Ok(web::Json(page.page(
        rows,
        |m| m.id.to_string(),
        |m| MailboxView::new(&m, modules.get(&m.id).cloned().unwrap_or_default()),
    )))
}

/// The mailboxes of `{id}`'s subtree that hold per-mailbox module `{code}`, oldest first: who is
/// authorised to use it. The same filters as the mailbox list apply.
#[utoipa::path(
    tag = "modules",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ("code" = String, Path, description = "A module code"), MailboxesQuery),
    responses(
        (status = 200, description = "A page of mailboxes", body = super::common::pages::MailboxPage),
        Guarded,
        (status = 422, description = "`{code}` is a per-customer module (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/v1/nodes/{id}/modules/{code}/mailboxes")]
pub(crate) async fn list_module_mailboxes(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(NodeId, String)>,
    query: web::Query<MailboxesQuery>,
) -> Result<web::Json<Page<MailboxView>>, ApiError> {
    let (id, code) = path.into_inner();
    let query = query.into_inner();
    if !crate::domain::resource::is_module_code(&code) {
        return Err(ApiError::NotFound);
    }
    let filter = MailboxFilter {
        module: Some(code),
        ..parse_filter(&query)?
    };
    list(state, principal, id, &query, filter).await
}

/// A mailbox the caller may see, with its customer.
fn visible_mailbox(
    conn: &mut DbConnection,
    principal: &Principal,
    id: MailboxId,
) -> Result<(Mailbox, nodes::Node), ApiError> {
    let mailbox = mailboxes::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let node = principal.visible(nodes::find(conn, mailbox.node_id)?)?;
    Ok((mailbox, node))
}

/// The mailbox for a change: visible, managed by the caller, read again under its customer's lock.
pub(crate) fn locked_mailbox(
    conn: &mut DbConnection,
    principal: &Principal,
    id: MailboxId,
) -> Result<(Mailbox, Authorised<Manage>), ApiError> {
    let (first, _) = visible_mailbox(conn, principal, id)?;
    let node = principal.may_manage(nodes::find_locked(conn, first.node_id, &[])?)?;
    let mailbox = mailboxes::find(conn, id)?
        .filter(|m| m.node_id == node.id)
        .ok_or(ApiError::NotFound)?;
    Ok((mailbox, node))
}

/// One mailbox of the caller's subtree.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path)),
    responses(
        (status = 200, description = "The mailbox", body = MailboxView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/mailboxes/{id}")]
pub(crate) async fn get_mailbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let mailbox = store::run(&state.pool, move |conn| {
        let (mailbox, node) = visible_mailbox(conn, &principal, id)?;
        principal.may_read(Some(node))?;
        held(conn, mailbox)
    })
    .await?;
    Ok(respond(mailbox))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMailbox {
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PersonName>)]
    pub display_name: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PersonName>)]
    pub first_name: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<PersonName>)]
    pub last_name: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<ContactEmail>)]
    pub contact_email: Option<Option<String>>,
}

/// Changes a mailbox's names or contact address; `If-Match` makes it conditional. (Its status
/// changes through `disable` and `enable`, which count seats.)
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path), IfMatch),
    request_body = UpdateMailbox,
    responses(
        (status = 200, description = "The changed mailbox", body = MailboxView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/mailboxes/{id}")]
pub(crate) async fn update_mailbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
    if_match: IfMatch,
    body: Json<UpdateMailbox>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let mut fields = Fields::default();
    let mut text =
        |field: &str, value: Option<Option<String>>, parse: fn(&str) -> Result<String, String>| {
            value.map(|v| v.and_then(|v| fields.check(field, parse(&v))))
        };
    let change = MailboxChange {
        display_name: text("display_name", body.display_name, parse_text),
        first_name: text("first_name", body.first_name, parse_text),
        last_name: text("last_name", body.last_name, parse_text),
        contact_email: text("contact_email", body.contact_email, tree::parse_email),
    };
    fields.finish()?;
    let id = id.into_inner();
    let mailbox = common::write(&state.pool, move |conn| {
        let (mailbox, node) = locked_mailbox(conn, &principal, id)?;
        if_match.check(mailbox.version)?;
        let mailbox = service::update(conn, &Ctx::of(&principal), &node, mailbox, change)?;
        held(conn, mailbox)
    })
    .await?;
    Ok(respond(mailbox))
}

/// Sets a mailbox active or disabled, taking or freeing its seats: `users` and one per module it
/// holds (enabling assigns the automatic modules it lacks).
async fn set_active(
    state: web::Data<AppState>,
    principal: Principal,
    id: MailboxId,
    active: bool,
) -> Result<HttpResponse, ApiError> {
    let mailbox = common::write(&state.pool, move |conn| {
        let (mailbox, node) = locked_mailbox(conn, &principal, id)?;
        let ctx = Ctx::of(&principal);
        let mailbox = service::set_active(conn, &ctx, &node, mailbox, active)
            .map_err(|e| principal.shown(e))?;
        held(conn, mailbox)
    })
    .await?;
    Ok(respond(mailbox))
}

/// Disables a mailbox: it is refused by the check and frees its seats (`users` and its modules',
/// which it keeps). Disabling a disabled one changes nothing.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path)),
    responses(
        (status = 200, description = "Disabled", body = MailboxView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/mailboxes/{id}/disable")]
pub(crate) async fn disable_mailbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
) -> Result<HttpResponse, ApiError> {
    set_active(state, principal, id.into_inner(), false).await
}

/// Enables a mailbox again, taking its seats again (`users` and each module it holds, `base`
/// included): refused with `quota-exceeded`, naming the resource, when one is not free.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path)),
    responses(
        (status = 200, description = "Enabled", body = MailboxView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "A seat is not free (`quota-exceeded`), or an ancestor has no real seat of it left (`ancestor-exhausted`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/mailboxes/{id}/enable")]
pub(crate) async fn enable_mailbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
) -> Result<HttpResponse, ApiError> {
    set_active(state, principal, id.into_inner(), true).await
}

/// Deletes a disabled mailbox. An active one must be disabled first; role addresses go only with
/// their domain.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        Guarded,
        (status = 409, description = "Still active, or a role address (`conflict`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/mailboxes/{id}")]
pub(crate) async fn delete_mailbox(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let (mailbox, node) = locked_mailbox(conn, &principal, id)?;
        service::delete(conn, &Ctx::of(&principal), &node, mailbox)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AliasView {
    pub id: AliasId,
    pub mailbox_id: MailboxId,
    /// `local@domain`, the domain in ASCII.
    #[schema(example = "sales@example.com")]
    pub address: String,
    /// The domain in Unicode, for people.
    pub display_address: String,
    pub created_at: DateTime<Utc>,
}

impl From<&Alias> for AliasView {
    fn from(a: &Alias) -> Self {
        Self {
            id: a.id,
            mailbox_id: a.mailbox_id,
            address: a.address.stored(),
            display_address: a.address.display(),
            created_at: utc(a.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlias {
    /// On any of the mailbox's customer's domains; unique across mailboxes and aliases; not a role
    /// address (postmaster@, abuse@).
    #[schema(value_type = Address, example = "sales@example.com")]
    pub address: String,
}

/// Adds an alias to a mailbox: another address on any of its customer's domains that delivers to
/// it. At most the customer's `max_aliases_per_mailbox` (default 10) per mailbox; aliases take no
/// seat.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path)),
    request_body = CreateAlias,
    responses(
        (status = 201, description = "Added", body = AliasView, headers(("Location" = String))),
        Guarded,
        (status = 409, description = "The address exists (`address-taken`), the mailbox has its most aliases (`conflict`), or the customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid address, a role address, or one not on the customer's domains (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/mailboxes/{id}/aliases")]
pub(crate) async fn create_alias(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
    body: Json<CreateAlias>,
) -> Result<HttpResponse, ApiError> {
    let address =
        MailAddress::parse(&body.0.address).map_err(|m| ApiError::validation("address", m))?;
    if address.is_role() {
        return Err(ApiError::validation(
            "address",
            "postmaster@ and abuse@ are role addresses every domain has already",
        ));
    }
    let id = id.into_inner();
    let alias = common::write(&state.pool, move |conn| {
        let (mailbox, node) = locked_mailbox(conn, &principal, id)?;
        services::aliases::create(conn, &Ctx::of(&principal), &node, &mailbox, address)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/aliases/{}", alias.id)))
        .json(AliasView::from(&alias)))
}

/// A mailbox's aliases, oldest first (at most the customer's `max_aliases_per_mailbox`, so one page).
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = MailboxId, Path)),
    responses(
        (status = 200, description = "The aliases", body = super::common::pages::AliasPage),
        Guarded,
    )
)]
#[get("/v1/mailboxes/{id}/aliases")]
pub(crate) async fn list_aliases(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<MailboxId>,
) -> Result<web::Json<Page<AliasView>>, ApiError> {
    let id = id.into_inner();
    let items = store::run(&state.pool, move |conn| {
        let (mailbox, node) = visible_mailbox(conn, &principal, id)?;
        principal.may_read(Some(node))?;
        Ok::<_, ApiError>(store::aliases::of_mailbox(conn, mailbox.id)?)
    })
    .await?;
    Ok(web::Json(Page {
        items: items.iter().map(AliasView::from).collect(),
        next_cursor: None,
    }))
}

/// Removes an alias.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = AliasId, Path)),
    responses(
        (status = 204, description = "Removed"),
        Guarded,
        (status = 409, description = "The customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/aliases/{id}")]
pub(crate) async fn delete_alias(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AliasId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let first = store::aliases::find(conn, id)?.ok_or(ApiError::NotFound)?;
        principal.visible(nodes::find(conn, first.node_id)?)?;
        let node = principal.may_manage(nodes::find_locked(conn, first.node_id, &[])?)?;
        let alias = store::aliases::find(conn, id)?
            .filter(|a| a.node_id == node.id)
            .ok_or(ApiError::NotFound)?;
        services::aliases::delete(conn, &Ctx::of(&principal), &node, alias)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The most rows one import takes.
pub(crate) const MAX_IMPORT_ROWS: usize = 10_000;
/// The largest import body: 10,000 rows of generous width.
const IMPORT_BODY_LIMIT: usize = 16 * 1024 * 1024;
const CSV_COLUMNS: [&str; 5] = [
    "address",
    "display_name",
    "first_name",
    "last_name",
    "contact_email",
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// All or nothing (the default): if any row fails, nothing is imported and the answer is 422
    /// listing the failed rows. With `false` each row succeeds or fails on its own.
    pub atomic: Option<bool>,
}

/// The JSON form of an import: up to 10,000 mailboxes.
pub(crate) struct ImportRows;

impl utoipa::PartialSchema for ImportRows {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::schema::Ref::from_schema_name(
                "CreateMailbox",
            ))
            .max_items(Some(MAX_IMPORT_ROWS))
            .description(Some(
                "The mailboxes to import, each as `POST /v1/nodes/{id}/mailboxes` takes one; a \
                 row's line is its position counting from 1.",
            ))
            .into()
    }
}

impl ToSchema for ImportRows {}

/// The CSV form of an import.
pub(crate) struct CsvRows;

impl utoipa::PartialSchema for CsvRows {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "UTF-8 CSV (RFC 4180, CRLF or LF lines) whose header row names any of `address` \
                 (required), `display_name`, `first_name`, `last_name`, `contact_email`, in any \
                 order; then up to 10,000 rows. A row's line is its line in the file (the header \
                 is line 1).",
            ))
            .examples([serde_json::json!(
                "address,display_name\nann@example.com,Ann\nbob@example.com,Bob\n"
            )])
            .into()
    }
}

impl ToSchema for CsvRows {}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RowOutcome {
    /// The row's line: in CSV the file's line (the header is line 1), in JSON the element's
    /// position counting from 1.
    pub line: usize,
    #[schema(value_type = RowStatus)]
    pub status: &'static str,
    pub mailbox_id: Option<MailboxId>,
    /// Why the row failed (`failed` rows only).
    #[schema(no_recursion)]
    pub problem: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportReport {
    pub atomic: bool,
    pub created: usize,
    pub failed: usize,
    /// Every row's outcome, in order.
    pub rows: Vec<RowOutcome>,
}

/// The rows of a CSV body with a header row, each with its line number. Public for the fuzz
/// harness (`tests/fuzz.rs`): it is the whole of the import's parsing.
pub fn csv_rows(bytes: &[u8]) -> Result<Vec<(usize, CreateMailbox)>, ApiError> {
    if let Some(opened) = open_quote(bytes) {
        return Err(ApiError::MalformedBody(format!(
            "The CSV has a quote opened at line {opened} and never closed."
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let malformed = |err: csv::Error| {
        let line = err
            .position()
            .map_or(String::new(), |p| format!(" at line {}", p.line()));
        ApiError::MalformedBody(format!("The CSV could not be read{line}: {err}."))
    };
    let columns = csv_columns(reader.headers().map_err(malformed)?)?;
    let mut rows = Vec::new();
    let mut lines = LineCounter::default();
    for record in reader.records() {
        let record = record.map_err(malformed)?;
        let line = lines.line_at(bytes, record_start(bytes, &record));
        let mut values: [Option<String>; 5] = Default::default();
        for (field, column) in record.iter().zip(&columns) {
            values[*column] = Some(field.to_owned());
        }
        let [address, display_name, first_name, last_name, contact_email] = values;
        rows.push((
            line,
            CreateMailbox {
                address: address.unwrap_or_default(),
                display_name,
                first_name,
                last_name,
                contact_email,
            },
        ));
        if rows.len() > MAX_IMPORT_ROWS {
            break;
        }
    }
    Ok(rows)
}

/// A record's line as an editor shows it. The csv crate ends a record at CRLF, LF or a lone CR
/// but counts lines by LF only, so two records split by a lone CR (a classic Mac file) would both
/// claim one line. Records come in order, so the count goes on from the previous record's start.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    line: usize,
}

impl LineCounter {
    fn line_at(&mut self, bytes: &[u8], offset: usize) -> usize {
        let end = offset.min(bytes.len());
        self.line += (self.offset.min(end)..end)
            .filter(|&at| ends_line(bytes, at))
            .count();
        self.offset = end;
        self.line + 1
    }
}

/// Where a record's first byte is. The csv crate's position can point at the blank lines it
/// skipped before the record, or at the LF of the CRLF that ended the previous one.
fn record_start(bytes: &[u8], record: &csv::StringRecord) -> usize {
    let from = record.position().map_or(0, |p| p.byte() as usize);
    bytes
        .iter()
        .skip(from)
        .position(|byte| !matches!(byte, b'\r' | b'\n'))
        .map_or(bytes.len(), |skipped| from + skipped)
}

/// Whether the byte at `at` ends a line: an LF, or a CR not followed by an LF.
fn ends_line(bytes: &[u8], at: usize) -> bool {
    match bytes[at] {
        b'\n' => true,
        b'\r' => bytes.get(at + 1) != Some(&b'\n'),
        _ => false,
    }
}

/// The line where a quote opens and never closes, if one does. The csv crate lets a quote left
/// open run to the end of the file as one field; the import refuses it, naming the line where it
/// opened (doubled quotes inside a quoted field keep the count even).
fn open_quote(bytes: &[u8]) -> Option<usize> {
    let (mut open_at, mut line) = (None, 1);
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'"' {
            open_at = if open_at.is_some() { None } else { Some(line) };
        } else if ends_line(bytes, at) {
            line += 1;
        }
    }
    open_at
}

/// Each header's column among [`CSV_COLUMNS`], in order; the address column is required.
fn csv_columns(headers: &csv::StringRecord) -> Result<Vec<usize>, ApiError> {
    let mut columns = Vec::new();
    for header in headers {
        match CSV_COLUMNS.iter().position(|c| *c == header.trim()) {
            Some(index) => columns.push(index),
            None => {
                return Err(ApiError::validation(
                    "header",
                    format!(
                        "unknown column {header:?}; the columns are {}",
                        CSV_COLUMNS.join(", ")
                    ),
                ));
            }
        }
    }
    if !columns.contains(&0) {
        return Err(ApiError::validation(
            "header",
            "the address column is missing",
        ));
    }
    Ok(columns)
}

/// Imports up to 10,000 mailboxes for customer `{id}` from JSON (an array of mailboxes, as for
/// `POST /v1/nodes/{id}/mailboxes`) or CSV (`text/csv` with a header row naming any of `address`,
/// `display_name`, `first_name`, `last_name`, `contact_email`). Each imported mailbox takes a seat
/// and has origin `import`. The answer reports every row's outcome with its line number.
#[utoipa::path(
    tag = "mailboxes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer"), ImportQuery),
    request_body(
        description = "Up to 10,000 rows: a JSON array of mailboxes, or CSV with a header row",
        content(
            (ImportRows = "application/json"),
            (CsvRows = "text/csv"),
        ),
    ),
    responses(
        (status = 200, description = "Not atomic: each row's outcome", body = ImportReport),
        (status = 201, description = "Atomic: every row imported", body = ImportReport),
        (status = 400, description = "The body is not well-formed JSON or CSV: a quote never closed, a row longer than the header, invalid UTF-8 (`malformed-body`)", body = Problem, content_type = "application/problem+json"),
        Guarded,
        (status = 409, description = "The customer, or a node above it, is suspended (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 16 MiB (`payload-too-large`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Atomic with failed rows (`import-failed`: nothing imported, `rows` lists each), a CSV header naming an unknown column or no `address`, more than 10,000 rows, or a node that is not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/mailboxes/import")]
pub(crate) async fn import_mailboxes(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<ImportQuery>,
    request: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let atomic = query.atomic.unwrap_or(true);
    let rows: Vec<_> = import_rows(&request, payload)
        .await?
        .into_iter()
        .map(|(line, row)| (line, NewMailbox::try_from(row)))
        .collect();
    let node_id = id.into_inner();
    let report = common::write(&state.pool, move |conn| {
        let node = customer(principal.may_manage(nodes::find_locked(conn, node_id, &[])?)?)?;
        let imported = service::import(conn, &Ctx::of(&principal), &node, rows, atomic)
            .map_err(|e| principal.shown(e))?;
        match imported {
            Ok(rows) => Ok(report(atomic, shown(&principal, rows))),
            // Nothing is kept: the rows that passed their checks are reported as skipped.
            Err(rows) => Err(ApiError::ImportFailed(skipped(shown(&principal, rows)))),
        }
    })
    .await?;
    let status = if atomic {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(report))
}

/// The rows of an import's body, JSON or CSV as its content type says, each with its line; at most
/// [`MAX_IMPORT_ROWS`] of them.
async fn import_rows(
    request: &actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<Vec<(usize, CreateMailbox)>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = payload
        .to_bytes_limited(IMPORT_BODY_LIMIT)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: IMPORT_BODY_LIMIT,
        })?
        .map_err(|err| ApiError::MalformedBody(format!("The body could not be read: {err}")))?;
    let rows: Vec<(usize, CreateMailbox)> = match content_type.as_str() {
        "application/json" => super::extract::parse::<Vec<CreateMailbox>>(&bytes)?
            .into_iter()
            .enumerate()
            .map(|(i, row)| (i + 1, row))
            .collect(),
        "text/csv" => csv_rows(&bytes)?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "An import is `application/json` or `text/csv`.".to_owned(),
            ));
        }
    };
    if rows.len() > MAX_IMPORT_ROWS {
        return Err(ApiError::validation(
            "rows",
            format!("an import holds at most {MAX_IMPORT_ROWS} rows"),
        ));
    }
    Ok(rows)
}

/// `rows` with each refusal as `principal` may see it ([`Principal::shown`]).
fn shown(principal: &Principal, rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|row| Row {
            line: row.line,
            placed: row.placed.map_err(|e| principal.shown(e)),
        })
        .collect()
}

/// A row's outcome as the answer shows it.
fn row_outcome(row: Row) -> RowOutcome {
    match row.placed {
        Ok(id) => RowOutcome {
            line: row.line,
            status: "created",
            mailbox_id: Some(id),
            problem: None,
        },
        Err(err) => RowOutcome {
            line: row.line,
            status: "failed",
            mailbox_id: None,
            problem: Some(err.to_problem()),
        },
    }
}

/// The report of an import that kept its rows.
fn report(atomic: bool, rows: Vec<Row>) -> ImportReport {
    let rows: Vec<RowOutcome> = rows.into_iter().map(row_outcome).collect();
    let created = rows.iter().filter(|o| o.mailbox_id.is_some()).count();
    ImportReport {
        atomic,
        created,
        failed: rows.len() - created,
        rows,
    }
}

/// The rows of an atomic import that failed, as its problem lists them: those that passed their
/// checks are `skipped`.
fn skipped(rows: Vec<Row>) -> Vec<serde_json::Value> {
    rows.into_iter()
        .map(|row| {
            let mut outcome = row_outcome(row);
            if outcome.mailbox_id.take().is_some() {
                outcome.status = "skipped";
            }
            serde_json::to_value(outcome).unwrap_or_default()
        })
        .collect()
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(import_mailboxes)
        .service(create_mailbox)
        .service(list_mailboxes)
        .service(get_mailbox)
        .service(update_mailbox)
        .service(disable_mailbox)
        .service(enable_mailbox)
        .service(delete_mailbox)
        .service(create_alias)
        .service(list_aliases)
        .service(delete_alias);
}
