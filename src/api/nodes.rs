//! Nodes: the owner, resellers and customers of the tree.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::common::{self, Fields, IfMatch, Page, etag, nullable, utc};
use super::extract::Json;
use super::idempotency::{self, Answer, IdempotencyHeader, IdempotencyKey};
use super::usage::UsageReport;
use crate::api::schemas::{Address, ChildKind, ContactEmail, Description, NodeName, Phone};
use crate::auth::Principal;
use crate::auth::guard::Reach;
use crate::domain::address::MailAddress;
use crate::domain::ids::NodeId;
use crate::domain::mail::{InboundRecipients, LocalPartCase};
use crate::domain::tree::{self, NodeKind, NodeStatus};
use crate::error::{ApiError, Guarded, Problem};
use crate::service::{self, Ctx};
use crate::startup::AppState;
use crate::store::nodes::{ChildFilter, NewNode, Node, NodeChanges};
use crate::store::{self, nodes};

/// A node as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeView {
    pub id: NodeId,
    /// Absent for the owner.
    pub parent_id: Option<NodeId>,
    pub kind: NodeKind,
    pub name: String,
    pub description: Option<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub status: NodeStatus,
    /// Customers only: how many aliases one mailbox may have (default 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_aliases_per_mailbox: Option<i32>,
    /// Customers only: whether `POST /v1/check` registers an address it has not seen on one of the
    /// customer's domains as a new mailbox, when the check does not say (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_enrol: Option<bool>,
    /// Customers only: which recipients on its domains inbound mail is accepted for (default
    /// `domain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_recipients: Option<InboundRecipients>,
    /// Customers only: where mail to the postmaster@ of each of its domains is delivered (the
    /// `alias` socketmap); `null`: to postmaster@ itself, like any address.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "it@example.com")]
    pub role_recipient: Option<Option<String>>,
    /// Customers only: whether its addresses' local parts compare regardless of case
    /// (`insensitive`, the default: `Jane@` and `jane@` are one mailbox) or exactly (`sensitive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_part_case: Option<LocalPartCase>,
    /// Customers on a plan only (`GET /v1/nodes/{id}` and a child created with a plan): the
    /// plan and the version it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub plan: Option<super::plans::PlanRef>,
    /// Increases with every change; the `ETag` is this number in quotes.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl NodeView {
    /// The node with the plan it is on, if any.
    fn with_plan(node: Node, conn: &mut store::DbConnection) -> diesel::QueryResult<Self> {
        let mut plans = super::plans::refs_of(conn, &[node.id])?;
        let plan = plans.remove(&node.id);
        Ok(Self {
            plan,
            ..Self::from(node)
        })
    }
}

impl From<Node> for NodeView {
    fn from(node: Node) -> Self {
        Self {
            id: node.id,
            parent_id: node.parent_id,
            kind: node.kind,
            name: node.name,
            description: node.description,
            contact_phone: node.contact_phone,
            contact_email: node.contact_email,
            status: node.status,
            max_aliases_per_mailbox: (node.kind == NodeKind::Customer)
                .then_some(node.max_aliases_per_mailbox),
            auto_enrol: (node.kind == NodeKind::Customer).then_some(node.auto_enrol),
            inbound_recipients: (node.kind == NodeKind::Customer)
                .then_some(node.inbound_recipients),
            role_recipient: (node.kind == NodeKind::Customer).then_some(node.role_recipient),
            local_part_case: (node.kind == NodeKind::Customer).then_some(node.local_part_case),
            plan: None,
            version: node.version,
            created_at: utc(node.created_at),
            updated_at: utc(node.updated_at),
        }
    }
}

/// 200 with the node and its `ETag`.
fn ok_with_etag(node: Node) -> HttpResponse {
    ok_view(NodeView::from(node))
}

/// 200 with the node's view and its `ETag`.
fn ok_view(view: NodeView) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, etag(view.version)))
        .json(view)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    /// `reseller` or `customer`.
    #[schema(value_type = ChildKind)]
    pub kind: NodeKind,
    /// Unique among siblings.
    #[schema(value_type = NodeName)]
    pub name: String,
    #[schema(value_type = Option<Description>)]
    pub description: Option<String>,
    #[schema(value_type = Option<Phone>)]
    pub contact_phone: Option<String>,
    #[schema(value_type = Option<ContactEmail>)]
    pub contact_email: Option<String>,
    /// A customer only: a plan to put it on at once, as `PUT /v1/nodes/{id}/plan` would (its
    /// grants from `{id}`, its modules and settings). The customer is created with them, or not
    /// at all.
    pub plan: Option<crate::domain::ids::PlanId>,
    /// With `plan`: the day its grants start, today (the default) or later.
    #[schema(value_type = Option<crate::api::schemas::Day>)]
    pub starts_on: Option<chrono::NaiveDate>,
}

impl TryFrom<CreateNode> for NewNode {
    type Error = ApiError;
    fn try_from(body: CreateNode) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        if body.kind == NodeKind::Owner {
            fields.push(
                "kind",
                "the owner exists once; a child is a reseller or a customer",
            );
        }
        let name = fields.check("name", tree::parse_name(&body.name));
        let description = body
            .description
            .map(|d| fields.check("description", tree::parse_description(&d)));
        let contact_phone = body
            .contact_phone
            .map(|p| fields.check("contact_phone", tree::parse_phone(&p)));
        let contact_email = body
            .contact_email
            .map(|e| fields.check("contact_email", tree::parse_email(&e)));
        fields.finish()?;
        Ok(NewNode {
            kind: body.kind,
            name: name.unwrap_or_default(),
            description: description.flatten(),
            contact_phone: contact_phone.flatten(),
            contact_email: contact_email.flatten(),
        })
    }
}

/// Creates a reseller or a customer under `{id}`. Customers cannot have children. With `plan`, a
/// customer is put on the plan in the same transaction (see `PUT /v1/nodes/{id}/plan`; the caller
/// must then stand above it, as every grant needs): it is created with its allocations, modules
/// and settings, or not at all.
#[utoipa::path(
    tag = "nodes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The parent node"), IdempotencyHeader),
    request_body = CreateNode,
    responses(
        (status = 201, description = "Created; `Location` names it", body = NodeView,
            headers(("Location" = String), ("ETag" = String))),
        Guarded,
        (status = 409, description = "A sibling has this name (`name-taken`), the parent lies in a suspended subtree (`node-suspended`), or with `plan`: the parent lacks room for its grants (`quota-exceeded`, `ancestor-exhausted`), the plan is retired (`conflict`) or a module rule refuses (`module-required`, `module-excluded`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, a customer as the parent, a plan for a reseller, or a plan defined outside the parent's lineage (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/children")]
pub(crate) async fn create_child(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    key: IdempotencyKey,
    body: Json<CreateNode>,
) -> Result<HttpResponse, ApiError> {
    let raw = body.raw().to_vec();
    let body = body.0;
    let plan = body.plan.map(|plan| super::plans::ApplyPlan {
        plan,
        starts_on: body.starts_on,
        allow_over_limit: None,
    });
    if plan.is_none() && body.starts_on.is_some() {
        return Err(ApiError::validation(
            "starts_on",
            "is the day a plan starts: send it with `plan`",
        ));
    }
    let new = NewNode::try_from(body)?;
    let parent_id = id.into_inner();
    let answer = common::write(&state.pool, move |conn| {
        nodes::lock(conn, &[parent_id])?;
        idempotency::once(conn, &principal, &key, &raw, |conn| {
            let parent =
                principal.may_administer(nodes::find(conn, parent_id)?, Reach::SelfOrBelow)?;
            let node = service::nodes::create_child(conn, &parent, &Ctx::of(&principal), new)?;
            let node = match &plan {
                None => node,
                Some(plan) => {
                    super::plans::apply_locked(conn, &principal, node.id, plan)?;
                    nodes::find(conn, node.id)?.ok_or(ApiError::NotFound)?
                }
            };
            let view = NodeView::with_plan(node, conn)?;
            Answer::created(format!("/v1/nodes/{}", view.id), etag(view.version), &view)
        })
    })
    .await?;
    Ok(answer.into_response())
}

/// One node of the caller's subtree.
#[utoipa::path(
    tag = "nodes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    responses(
        (status = 200, description = "The node", body = NodeView, headers(("ETag" = String))),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}")]
pub(crate) async fn get_node(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let view = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?.into_inner();
        Ok::<_, ApiError>(NodeView::with_plan(node, conn)?)
    })
    .await?;
    Ok(ok_view(view))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNode {
    /// Unique among siblings.
    #[schema(value_type = Option<NodeName>)]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Description>)]
    pub description: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Phone>)]
    pub contact_phone: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<ContactEmail>)]
    pub contact_email: Option<Option<String>>,
    /// Suspending a node refuses the check for its whole subtree and makes the subtree read-only
    /// (`node-suspended`), without changing anything below it. Only an admin above the node (and
    /// outside any suspension) may change it.
    pub status: Option<NodeStatus>,
    /// Customers only: how many aliases one mailbox may have, 0–1000.
    #[schema(minimum = 0, maximum = 1000)]
    pub max_aliases_per_mailbox: Option<i32>,
    /// Customers only: whether an outbound check enrols senders it has not seen (when it does
    /// not say).
    pub auto_enrol: Option<bool>,
    /// Customers only: `domain` (any address on its verified, active domains is accepted inbound:
    /// its own mail server decides) or `known` (only mailboxes, aliases and role addresses allot
    /// knows; others are refused `unknown_mailbox`).
    pub inbound_recipients: Option<InboundRecipients>,
    /// Customers only: where mail to its domains' postmaster@ goes: an address on any domain, not
    /// itself a role address (postmaster@, abuse@). `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Address>, example = "it@example.com")]
    pub role_recipient: Option<Option<String>>,
    /// Customers only: `insensitive` (`Jane@` and `jane@` are one mailbox) or `sensitive` (local
    /// parts compare exactly, as RFC 5321 allows). Becoming `insensitive` is refused
    /// (`address-collision`) while addresses differing only in case exist.
    pub local_part_case: Option<LocalPartCase>,
}

impl TryFrom<UpdateNode> for NodeChanges {
    type Error = ApiError;
    fn try_from(body: UpdateNode) -> Result<Self, ApiError> {
        let mut fields = Fields::default();
        if body
            .max_aliases_per_mailbox
            .is_some_and(|max| !(0..=1000).contains(&max))
        {
            fields.push("max_aliases_per_mailbox", "must be between 0 and 1000");
        }
        let name = body
            .name
            .map(|n| fields.check("name", tree::parse_name(&n)));
        let description = body
            .description
            .map(|v| v.and_then(|d| fields.check("description", tree::parse_description(&d))));
        let contact_phone = body
            .contact_phone
            .map(|v| v.and_then(|p| fields.check("contact_phone", tree::parse_phone(&p))));
        let contact_email = body
            .contact_email
            .map(|v| v.and_then(|e| fields.check("contact_email", tree::parse_email(&e))));
        let role_recipient = body.role_recipient.map(|v| {
            v.and_then(|raw| {
                let parsed = MailAddress::parse(&raw).and_then(|address| {
                    if address.is_role() {
                        Err("must not be a role address itself (postmaster@, abuse@): mail would loop".to_owned())
                    } else {
                        Ok(address.stored())
                    }
                });
                fields.check("role_recipient", parsed)
            })
        });
        fields.finish()?;
        Ok(NodeChanges {
            name: name.flatten(),
            description,
            contact_phone,
            contact_email,
            status: body.status,
            max_aliases_per_mailbox: body.max_aliases_per_mailbox,
            auto_enrol: body.auto_enrol,
            inbound_recipients: body.inbound_recipients,
            role_recipient,
            local_part_case: body.local_part_case,
        })
    }
}

/// Changes a node's name, description, contacts or status. Only the fields sent change; `If-Match`
/// with the node's `ETag` makes the change conditional.
///
/// Rules the body's schema cannot state: the customer settings (`max_aliases_per_mailbox`,
/// `auto_enrol`, `inbound_recipients`, `role_recipient`, `local_part_case`) are refused for a
/// reseller or the owner (422); `status` may be changed only by an admin strictly above the node
/// (403 for its own admins).
#[utoipa::path(
    tag = "nodes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), IfMatch),
    request_body = UpdateNode,
    responses(
        (status = 200, description = "The changed node", body = NodeView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "A sibling has this name (`name-taken`), `local_part_case` cannot become `insensitive` while addresses differ only in case (`address-collision`, listing them), or the node lies in a suspended subtree that the caller may not lift (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a customer setting sent for a reseller (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/v1/nodes/{id}")]
pub(crate) async fn update_node(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    if_match: IfMatch,
    body: Json<UpdateNode>,
) -> Result<HttpResponse, ApiError> {
    let changes = NodeChanges::try_from(body.0)?;
    let id = id.into_inner();
    let node = common::write(&state.pool, move |conn| {
        nodes::lock(conn, &[id])?;
        let reach = if changes.status.is_some() {
            Reach::Below
        } else {
            Reach::SelfOrBelow
        };
        let node = principal.may_administer(nodes::find(conn, id)?, reach)?;
        service::nodes::update(conn, node, &Ctx::of(&principal), changes, |node| {
            if_match.check(node.version)
        })
    })
    .await?;
    Ok(ok_with_etag(node))
}

common::list_query! {
    pub struct ChildrenQuery {
        /// Only children of this kind.
        pub kind: Option<NodeKind>,
        /// Only children with this status.
        pub status: Option<NodeStatus>,
        /// Only children whose name starts with this (case-insensitive).
        pub name_prefix: Option<String>,
        /// `usage`: each child with its `usage` today, read for the whole page at once. No other
        /// value is accepted.
        #[param(value_type = Option<ChildInclude>)]
        pub include: Option<String>,
    }
}

/// What a child may be listed with (`?include=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ChildInclude {
    Usage,
}

/// A child in the children list: the node, and its usage when the list was asked to include it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChildView {
    #[serde(flatten)]
    pub node: NodeView,
    /// With `include=usage` only (absent otherwise): the child's usage today, exactly as
    /// `GET /v1/nodes/{id}/usage` answers it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub usage: Option<UsageReport>,
}

/// What `?include=` asks for: absent is nothing, `usage` is each child's usage, anything else is
/// refused.
fn include(raw: Option<&str>) -> Result<Option<ChildInclude>, ApiError> {
    match raw {
        None => Ok(None),
        Some("usage") => Ok(Some(ChildInclude::Usage)),
        Some(_) => Err(ApiError::InvalidQuery(vec![crate::error::FieldError::new(
            "include",
            "must be `usage`, the one thing a child can be listed with",
        )])),
    }
}

/// The children of `{id}`, oldest first; with `include=usage`, each with its usage today (the
/// whole page's usage read in a fixed number of queries, not one per child).
#[utoipa::path(
    tag = "nodes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), ChildrenQuery),
    responses(
        (status = 200, description = "A page of children", body = super::common::pages::ChildPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/children")]
pub(crate) async fn list_children(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<ChildrenQuery>,
) -> Result<web::Json<Page<ChildView>>, ApiError> {
    let query = query.into_inner();
    let page = query.page()?;
    let with_usage = include(query.include.as_deref())? == Some(ChildInclude::Usage);
    let today = principal.today;
    let filter = ChildFilter {
        kind: query.kind,
        status: query.status,
        name_prefix: query.name_prefix,
        counted_on: None,
    };
    common::node_page(
        &state.pool,
        principal,
        id.into_inner(),
        page,
        move |conn, parent, after, limit| {
            let children = nodes::children(conn, parent.id, &filter, after, limit)?;
            if !with_usage {
                return Ok(children.into_iter().map(|n| (n, None)).collect());
            }
            let reports = super::usage::reports(conn, children.clone(), today)?;
            Ok(children
                .into_iter()
                .zip(reports.into_iter().map(Some))
                .collect())
        },
        |(n, _)| n.id.to_string(),
        |(node, usage)| ChildView {
            node: NodeView::from(node),
            usage,
        },
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Delete with everything held (a customer's domains and mailboxes, a domain's mailboxes),
    /// returning the seats.
    pub cascade: Option<bool>,
}

/// Deletes a node. Refused while it has children, live allocations to children, or (without
/// `cascade`) anything it holds; its own allocations end today, returning the seats to its parent.
/// The id is never reused.
#[utoipa::path(
    tag = "nodes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path), DeleteQuery),
    responses(
        (status = 204, description = "Deleted"),
        Guarded,
        (status = 409, description = "The node still holds something (`not-empty`), or the caller stands inside its suspension (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`cascade` asked for a node that is not a customer", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/nodes/{id}")]
pub(crate) async fn delete_node(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let cascade = query.cascade.unwrap_or(false);
    common::write(&state.pool, move |conn| {
        let node = principal.may_administer(nodes::find_locked(conn, id, &[])?, Reach::Below)?;
        service::nodes::delete(conn, &node, &Ctx::of(&principal), cascade)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveNode {
    /// The new parent: a reseller (or the owner) in the caller's subtree.
    pub parent_id: NodeId,
}

/// Moves a reseller or customer, with its subtree, under another parent in one atomic step: its
/// live allocations from the old parent end today and equal ones from the new parent begin today
/// (or when they were due to), refused if the new parent lacks room.
#[utoipa::path(
    tag = "nodes",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    request_body = MoveNode,
    responses(
        (status = 200, description = "The moved node", body = NodeView, headers(("ETag" = String))),
        Guarded,
        (status = 409, description = "The new parent lacks room to grant (`quota-exceeded`), or an ancestor the node joins lacks the real seats its subtree uses (`ancestor-exhausted`), or has a child of this name (`name-taken`), or the node or the new parent lies in a suspension the caller stands inside (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The new parent cannot hold this node", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/move")]
pub(crate) async fn move_node(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<MoveNode>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let target = body.0.parent_id;
    let node = common::write(&state.pool, move |conn| {
        let node =
            principal.may_administer(nodes::find_locked(conn, id, &[target])?, Reach::Below)?;
        let new_parent =
            principal.may_administer(nodes::find(conn, target)?, Reach::SelfOrBelow)?;
        service::nodes::move_under(conn, node, &new_parent, &Ctx::of(&principal))
            .map_err(|e| principal.shown(e))
    })
    .await?;
    Ok(ok_with_etag(node))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(get_node)
        .service(update_node)
        .service(delete_node)
        .service(list_children)
        .service(create_child)
        .service(move_node);
}
