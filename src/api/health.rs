//! Health, readiness and metrics: what an orchestrator and a Prometheus server ask.

use actix_web::{HttpResponse, get, web};
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::startup::AppState;
use crate::store;

#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(value_type = crate::api::schemas::Ok)]
    pub status: &'static str,
}

/// Liveness: the process is up and serving. Touches nothing, so it is also the constant handler
/// the check's benchmark compares against.
#[utoipa::path(tag = "health", responses((status = 200, description = "Alive", body = Health)))]
#[get("/healthz")]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// Readiness: the database answers a query. 503 while it does not.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database is unreachable", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    store::run(&state.pool, |conn| {
        store::ping(conn).map_err(|err| {
            tracing::warn!(error = %err, "readiness query failed");
            ApiError::Unavailable("The database does not answer.".to_owned())
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(Health { status: "ok" }))
}

/// Prometheus metrics in the text exposition format: `allot_http_requests_total` and the
/// `allot_http_requests_duration_seconds` histogram, labelled by route pattern, method and status;
/// `allot_checks_total` by listener (`http`, `policy`, `socketmap`), direction, verdict and reason;
/// `allot_check_enrolments_total`; the check index's size (`allot_check_index_mailboxes`,
/// `allot_check_index_domains`) and lag (`allot_check_feed_age_seconds`,
/// `allot_check_feed_gaps`); the Postfix listeners' connections
/// (`allot_postfix_connections_total`, `allot_postfix_connections_open`).
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4"))
)]
#[get("/metrics")]
pub(crate) async fn metrics(
    registry: web::Data<prometheus::Registry>,
) -> Result<HttpResponse, ApiError> {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    encoder
        .encode(&registry.gather(), &mut buffer)
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(buffer))
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(healthz).service(readyz).service(metrics);
}
