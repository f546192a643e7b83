//! The owner's bulk licence: the root of every limit in the tree.

use actix_web::{get, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::allocations::AllocationView;
use super::common;
use super::extract::Json;
use crate::api::schemas::{Day, ResourceKey};
use crate::auth::Principal;
use crate::domain::ids::NodeId;
use crate::error::{ApiError, Guarded, Problem};
use crate::service::Ctx;
use crate::service::licence::{self, LicenceLine};
use crate::startup::AppState;
use crate::store::allocations::Allocation;
use crate::store::{self, nodes};
use chrono::NaiveDate;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLicence {
    /// The whole licence from today on: lines not listed end today. A resource may be listed
    /// several times, for lines over different days.
    pub resources: Vec<LicenceLineBody>,
}

/// One line of the licence.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LicenceLine)]
pub struct LicenceLineBody {
    #[schema(value_type = ResourceKey)]
    pub resource: String,
    /// Units, 0 to 1,000,000,000,000.
    #[schema(example = 10000, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// Default today (UTC).
    #[schema(value_type = Option<Day>)]
    pub starts_on: Option<NaiveDate>,
    /// After `starts_on`; absent for open-ended.
    #[schema(value_type = Option<Day>)]
    pub ends_on: Option<NaiveDate>,
}

impl From<LicenceLineBody> for LicenceLine {
    fn from(body: LicenceLineBody) -> Self {
        Self {
            resource: body.resource,
            amount: body.amount,
            starts_on: body.starts_on,
            ends_on: body.ends_on,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LicenceView {
    pub owner_id: NodeId,
    /// The licence lines that count today or later.
    pub resources: Vec<AllocationView>,
}

fn view(owner_id: NodeId, lines: Vec<Allocation>) -> LicenceView {
    LicenceView {
        owner_id,
        resources: lines.into_iter().map(AllocationView::from).collect(),
    }
}

/// The owner's bulk licence: the lines that count today or later. Readable at the owner node.
#[utoipa::path(
    tag = "licence",
    security(("accessToken" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The licence", body = LicenceView),
        Guarded,
    )
)]
#[get("/v1/licence")]
pub(crate) async fn get_licence(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<web::Json<LicenceView>, ApiError> {
    let licence = store::run(&state.pool, move |conn| {
        let owner = nodes::owner(conn)?;
        let owner = principal.may_read(owner.filter(|o| o.id == principal.node_id))?;
        Ok::<_, ApiError>(view(
            owner.id,
            licence::current(conn, owner.id, principal.today)?,
        ))
    })
    .await?;
    Ok(web::Json(licence))
}

/// Sets the owner's bulk licence from today on (owner admins only). Lines not listed end today.
/// Refused with `quota-exceeded` if the owner has allocated more than the new licence grants.
///
/// Rules the body's schema cannot state: each line's `ends_on` must be after its `starts_on` (or
/// after today), and each `resource` must be `users`, `domains` or a module of the catalogue.
#[utoipa::path(
    tag = "licence",
    security(("accessToken" = []), ("apiKey" = [])),
    request_body = SetLicence,
    responses(
        (status = 200, description = "The new licence", body = LicenceView),
        Guarded,
        (status = 409, description = "Less than the owner has allocated (`quota-exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid lines: an amount out of range, `ends_on` not after `starts_on`, or a resource the catalogue does not know (`validation-failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/licence")]
pub(crate) async fn set_licence(
    state: web::Data<AppState>,
    principal: Principal,
    body: Json<SetLicence>,
) -> Result<web::Json<LicenceView>, ApiError> {
    let lines: Vec<LicenceLine> = body.0.resources.into_iter().map(Into::into).collect();
    let licence = common::write(&state.pool, move |conn| {
        let owner = super::common::owner_admin(conn, &principal)?;
        let lines = licence::replace(conn, &owner, &Ctx::of(&principal), &lines)?;
        Ok::<_, ApiError>(view(owner.id, lines))
    })
    .await?;
    Ok(web::Json(licence))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(get_licence).service(set_licence);
}
