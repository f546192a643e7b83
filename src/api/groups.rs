//! A customer's groups of mailboxes, with their members listed on the group.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::utc;
use super::common::{self, Page};
use super::extract::Json;
use crate::auth::Principal;
use crate::auth::guard::{Authorised, Manage};
use crate::domain::ids::{GroupId, MailboxId, NodeId};
use crate::domain::tree;
use crate::error::{ApiError, Guarded, Problem};
use crate::service::{self, Ctx};
use crate::startup::AppState;
use crate::store::groups::Group;
use crate::store::{self, DbConnection, groups, nodes};

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Member {
    pub mailbox_id: MailboxId,
    pub address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupView {
    pub id: GroupId,
    pub node_id: NodeId,
    pub name: String,
    /// By address.
    pub members: Vec<Member>,
    pub created_at: DateTime<Utc>,
}

fn view(conn: &mut DbConnection, group: &Group) -> Result<GroupView, ApiError> {
    let members = groups::members(conn, group.id)?
        .into_iter()
        .map(|(id, address)| {
            Ok(Member {
                mailbox_id: id.parse().map_err(|_| ApiError::NotFound)?,
                address,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(GroupView {
        id: group.id,
        node_id: group.node_id,
        name: group.name.clone(),
        members,
        created_at: utc(group.created_at),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Unique among the customer's groups.
    #[schema(value_type = crate::api::schemas::NodeName, example = "Sales")]
    pub name: String,
}

/// Creates a group of mailboxes for customer `{id}`.
#[utoipa::path(
    tag = "groups",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path, description = "The customer")),
    request_body = CreateGroup,
    responses(
        (status = 201, description = "Created", body = GroupView, headers(("Location" = String))),
        Guarded,
        (status = 409, description = "The customer has a group of this name (`name-taken`), or lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid name, or a node that is not a customer (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/nodes/{id}/groups")]
pub(crate) async fn create_group(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
    body: Json<CreateGroup>,
) -> Result<HttpResponse, ApiError> {
    let name = tree::parse_name(&body.0.name).map_err(|m| ApiError::validation("name", m))?;
    let node_id = id.into_inner();
    let view = common::write(&state.pool, move |conn| {
        let node = principal.may_manage(nodes::find_locked(conn, node_id, &[])?)?;
        let group = service::groups::create(conn, &Ctx::of(&principal), &node, name)?;
        view(conn, &group)
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/groups/{}", view.id)))
        .json(view))
}

/// The groups of customer `{id}`, by name, each with its members.
#[utoipa::path(
    tag = "groups",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = NodeId, Path)),
    responses(
        (status = 200, description = "The groups", body = super::common::pages::GroupPage),
        Guarded,
    )
)]
#[get("/v1/nodes/{id}/groups")]
pub(crate) async fn list_groups(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<NodeId>,
) -> Result<web::Json<Page<GroupView>>, ApiError> {
    let id = id.into_inner();
    let items = store::run(&state.pool, move |conn| {
        let node = principal.may_read(nodes::find(conn, id)?)?;
        groups::of_node(conn, node.id)?
            .iter()
            .map(|g| view(conn, g))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(web::Json(Page {
        items,
        next_cursor: None,
    }))
}

/// A group the caller may see, and its customer.
fn visible_group(
    conn: &mut DbConnection,
    principal: &Principal,
    id: GroupId,
) -> Result<(Group, nodes::Node), ApiError> {
    let group = groups::find(conn, id)?.ok_or(ApiError::NotFound)?;
    let node = principal.visible(nodes::find(conn, group.node_id)?)?;
    Ok((group, node))
}

/// A group the caller may manage, and its customer, locked.
fn managed_group(
    conn: &mut DbConnection,
    principal: &Principal,
    id: GroupId,
) -> Result<(Group, Authorised<Manage>), ApiError> {
    let (group, node) = visible_group(conn, principal, id)?;
    let node = principal.may_manage(nodes::find_locked(conn, node.id, &[])?)?;
    Ok((group, node))
}

/// One group with its members.
#[utoipa::path(
    tag = "groups",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = GroupId, Path)),
    responses(
        (status = 200, description = "The group", body = GroupView),
        Guarded,
    )
)]
#[get("/v1/groups/{id}")]
pub(crate) async fn get_group(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<GroupId>,
) -> Result<web::Json<GroupView>, ApiError> {
    let id = id.into_inner();
    let view = store::run(&state.pool, move |conn| {
        let (group, node) = visible_group(conn, &principal, id)?;
        principal.may_read(Some(node))?;
        view(conn, &group)
    })
    .await?;
    Ok(web::Json(view))
}

/// Deletes a group; its mailboxes stay.
#[utoipa::path(
    tag = "groups",
    security(("accessToken" = []), ("apiKey" = [])),
    params(("id" = GroupId, Path)),
    responses(
        (status = 204, description = "Deleted"),
        Guarded,
        (status = 409, description = "The customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/groups/{id}")]
pub(crate) async fn delete_group(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<GroupId>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    common::write(&state.pool, move |conn| {
        let (group, node) = managed_group(conn, &principal, id)?;
        service::groups::delete(conn, &Ctx::of(&principal), &node, group)
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Adds or removes a member, under the customer's lock; the mailbox must be the group's customer's.
async fn change_membership(
    state: web::Data<AppState>,
    principal: Principal,
    ids: (GroupId, MailboxId),
    add: bool,
) -> Result<web::Json<GroupView>, ApiError> {
    let (group_id, mailbox_id) = ids;
    let view = common::write(&state.pool, move |conn| {
        let (group, node) = managed_group(conn, &principal, group_id)?;
        let ctx = Ctx::of(&principal);
        service::groups::set_member(conn, &ctx, &node, &group, mailbox_id, add)?;
        view(conn, &group)
    })
    .await?;
    Ok(web::Json(view))
}

/// A membership route: the same path, parameters and answer for adding and for removing, each
/// with its own method and documentation.
macro_rules! membership_route {
    ($(#[doc = $doc:literal])* $method:ident $name:ident, member: $member:literal) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            tag = "groups",
            security(("accessToken" = []), ("apiKey" = [])),
            params(("id" = GroupId, Path), ("mailbox_id" = MailboxId, Path)),
            responses(
                (status = 200, description = "The group", body = GroupView),
                Guarded,
                (status = 409, description = "The customer lies in a suspended subtree (`node-suspended`)", body = Problem, content_type = "application/problem+json"),
            )
        )]
        #[$method("/v1/groups/{id}/members/{mailbox_id}")]
        pub async fn $name(
            state: web::Data<AppState>,
            principal: Principal,
            path: web::Path<(GroupId, MailboxId)>,
        ) -> Result<web::Json<GroupView>, ApiError> {
            change_membership(state, principal, path.into_inner(), $member).await
        }
    };
}

membership_route!(
    /// Makes a mailbox of the group's customer a member; making it one twice changes nothing.
    put add_member, member: true
);

membership_route!(
    /// Removes a member; removing a non-member changes nothing.
    delete remove_member, member: false
);

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(create_group)
        .service(list_groups)
        .service(get_group)
        .service(delete_group)
        .service(add_member)
        .service(remove_member);
}
