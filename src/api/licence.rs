//! The owner's bulk licence: the root of every limit in the tree.

use actix_web::{get, put, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::allocations::{AllocationView, MAX_AMOUNT, audit_view, known_resource};
use super::common::today;
use super::extract::Json;
use crate::auth::Principal;
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::domain::quota::{self, Span};
use crate::error::{ApiError, FieldError, Guarded, Problem};
use crate::startup::AppState;
use crate::store::allocations::{self, Allocation, NewAllocation};
use crate::store::{self, DbConnection, audit, nodes, write_tx};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceLine {
    /// `users`, `domains` or `module:<code>`.
    #[schema(example = "users")]
    pub resource: String,
    #[schema(example = 10000)]
    pub amount: i64,
    /// Default today (UTC).
    pub starts_on: Option<NaiveDate>,
    /// Absent for open-ended.
    pub ends_on: Option<NaiveDate>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLicence {
    /// The whole licence from today on: lines not listed end today.
    pub resources: Vec<LicenceLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicenceView {
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

/// The licence lines that count today or later, for the command line.
pub fn current_lines(
    conn: &mut DbConnection,
    today: NaiveDate,
) -> Result<Vec<Allocation>, ApiError> {
    let owner = nodes::owner(conn)?.ok_or(ApiError::NotFound)?;
    current(conn, owner.id, today)
}

/// The licence lines that count today or later.
fn current(
    conn: &mut DbConnection,
    owner: NodeId,
    today: NaiveDate,
) -> Result<Vec<Allocation>, ApiError> {
    Ok(allocations::live_to(conn, owner, today)?
        .into_iter()
        .filter(|a| a.grantor_id.is_none())
        .collect())
}

/// Replaces the owner's licence from `today` on: current lines end today (or, not begun yet, are
/// deactivated), the given ones begin. Refused if the owner has allocated more than the new licence
/// grants on any day. Shared by `PUT /v1/licence` and `allot licence set`; runs in the caller's
/// write transaction.
pub fn replace(
    conn: &mut DbConnection,
    actor: &audit::Actor,
    request_id: Option<&str>,
    lines: &[LicenceLine],
    today: NaiveDate,
) -> Result<(NodeId, Vec<Allocation>), ApiError> {
    let owner = nodes::owner(conn)?.ok_or(ApiError::NotFound)?;
    nodes::lock(conn, &[owner.id])?;
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let starts_on = line.starts_on.unwrap_or(today);
        let field = |name: &str| format!("resources[{i}].{name}");
        match known_resource(conn, &line.resource) {
            Ok(resource) => {
                if parsed
                    .iter()
                    .any(|(r, ..): &(String, i64, NaiveDate, Option<NaiveDate>)| {
                        *r == resource.key()
                    })
                {
                    errors.push(FieldError::new(field("resource"), "is listed twice"));
                }
                parsed.push((resource.key(), line.amount, starts_on, line.ends_on));
            }
            Err(ApiError::Validation(mut e)) => {
                e.iter_mut().for_each(|e| e.field = field("resource"));
                errors.append(&mut e);
            }
            Err(other) => return Err(other),
        }
        if !(0..=MAX_AMOUNT).contains(&line.amount) {
            errors.push(FieldError::new(
                field("amount"),
                format!("must be between 0 and {MAX_AMOUNT}"),
            ));
        }
        if let Err(message) = super::common::check_date(starts_on) {
            errors.push(FieldError::new(field("starts_on"), message));
        }
        if let Some(Err(message)) = line.ends_on.map(super::common::check_date) {
            errors.push(FieldError::new(field("ends_on"), message));
        }
        if line.ends_on.is_some_and(|end| end <= starts_on) {
            errors.push(FieldError::new(field("ends_on"), "must be after starts_on"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let record = |conn: &mut DbConnection, action: Action, id: String, before, after| {
        audit::record(
            conn,
            audit::Event {
                actor,
                node_id: owner.id,
                action,
                target_kind: "allocation",
                target_id: id,
                before,
                after,
                request_id,
            },
        )
    };
    // Each resource's new lines replace its old ones from the earliest new start (today at the
    // latest): the old lines end there, so no day is counted twice. A resource left out ends today.
    let first_day = NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(today);
    for mut line in current(conn, owner.id, first_day)? {
        let cut = parsed
            .iter()
            .filter(|(resource, ..)| *resource == line.resource)
            .map(|(_, _, starts_on, _)| *starts_on)
            .min()
            .map_or(today, |earliest| earliest.min(today));
        if line.ends_on.is_some_and(|end| end <= cut) {
            continue;
        }
        let before = allocations::end(conn, &mut line, cut)?;
        record(
            conn,
            Action::LicenceEnd,
            line.id.to_string(),
            Some(audit_view(&before)),
            Some(audit_view(&line)),
        )?;
    }
    for (resource, amount, starts_on, ends_on) in parsed {
        let line = allocations::insert(
            conn,
            NewAllocation {
                node_id: owner.id,
                grantor_id: None,
                resource,
                amount,
                starts_on,
                ends_on,
                active: true,
                description: Some("licence".to_owned()),
            },
        )?;
        record(
            conn,
            Action::LicenceCreate,
            line.id.to_string(),
            None,
            Some(audit_view(&line)),
        )?;
    }
    let mut resources = allocations::granted_resources(conn, owner.id)?;
    resources.sort();
    for resource in resources {
        quota::decide_licence(
            owner.id,
            &resource,
            &allocations::limit_of(conn, owner.id, &resource, None)?,
            &allocations::granted_by(conn, owner.id, &resource, None)?,
            Span::from(NaiveDate::MIN),
        )?;
    }
    Ok((owner.id, current(conn, owner.id, today)?))
}

/// The owner's bulk licence: the lines that count today or later. Readable at the owner node.
#[utoipa::path(
    tag = "licence",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The licence", body = LicenceView),
        Guarded,
    )
)]
#[get("/v1/licence")]
pub async fn get_licence(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<web::Json<LicenceView>, ApiError> {
    let licence = store::run(&state.pool, move |conn| {
        let owner = nodes::owner(conn)?;
        let owner = principal.may_read(owner.filter(|o| o.id == principal.node_id))?;
        Ok::<_, ApiError>(view(owner.id, current(conn, owner.id, today())?))
    })
    .await?;
    Ok(web::Json(licence))
}

/// Sets the owner's bulk licence from today on (owner admins only). Lines not listed end today.
/// Refused with `quota-exceeded` if the owner has allocated more than the new licence grants.
#[utoipa::path(
    tag = "licence",
    security(("bearer" = [])),
    request_body = SetLicence,
    responses(
        (status = 200, description = "The new licence", body = LicenceView),
        Guarded,
        (status = 409, description = "Less than the owner has allocated (`quota-exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid lines", body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/v1/licence")]
pub async fn set_licence(
    state: web::Data<AppState>,
    principal: Principal,
    body: Json<SetLicence>,
) -> Result<web::Json<LicenceView>, ApiError> {
    let lines = body.0.resources;
    let licence = store::run(&state.pool, move |conn| {
        write_tx(conn, |conn| {
            super::common::owner_admin(conn, &principal)?;
            let (owner_id, lines) = replace(
                conn,
                &principal.actor,
                principal.request_id.as_deref(),
                &lines,
                today(),
            )?;
            Ok::<_, ApiError>(view(owner_id, lines))
        })
    })
    .await?;
    Ok(web::Json(licence))
}
