//! The API describing itself: the OpenAPI document, the interactive docs, and the problem types.

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem, ProblemType};

/// The OpenAPI document, serialised once at start.
pub(crate) struct OpenApiJson(pub String);

/// This document: the OpenAPI 3.1 description of every route, body, status and problem type.
#[utoipa::path(tag = "meta", responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
#[get("/openapi.json")]
pub(crate) async fn openapi_json(doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.clone())
}

/// The interactive documentation lives at `/docs/`; this redirects there.
#[utoipa::path(tag = "meta", responses((status = 308, description = "Redirect to `/docs/`")))]
#[get("/docs")]
pub(crate) async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProblemTypeDoc {
    #[serde(rename = "type")]
    #[schema(example = "/problems/not-found")]
    pub problem_type: String,
    pub title: &'static str,
    pub description: &'static str,
}

impl From<ProblemType> for ProblemTypeDoc {
    fn from(kind: ProblemType) -> Self {
        Self {
            problem_type: kind.uri(),
            title: kind.title(),
            description: kind.description(),
        }
    }
}

/// What a problem `type` means. Every `type` allot sends resolves here.
#[utoipa::path(
    tag = "meta",
    params(("slug" = String, Path, description = "The last segment of a problem `type`", example = "not-found")),
    responses(
        (status = 200, description = "The problem type", body = ProblemTypeDoc),
        (status = 404, description = "No such problem type", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/problems/{slug}")]
pub(crate) async fn problem_type(
    slug: web::Path<String>,
) -> Result<web::Json<ProblemTypeDoc>, ApiError> {
    ProblemType::from_slug(&slug)
        .map(|kind| web::Json(kind.into()))
        .ok_or(ApiError::NotFound)
}

/// Which methods each documented path answers, for the fallback: a known path asked with another
/// method is 405 with `Allow`, not 404. Built from the OpenAPI document, which lists every route.
pub(crate) struct MethodTable(Vec<(actix_web::dev::ResourceDef, Vec<&'static str>)>);

impl MethodTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let entries = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ]
                .into_iter()
                .filter_map(|(name, present)| present.then_some(name))
                .collect();
                (actix_web::dev::ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        Self(entries)
    }

    fn allowed(&self, path: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(def, _)| def.is_match(path))
            .map(|(_, methods)| methods.join(", "))
    }
}

/// Answers what no route matched: 405 with `Allow` for a known path, 404 otherwise. The catch-all
/// middleware turns either into a problem document.
pub(crate) async fn fallback(
    req: actix_web::HttpRequest,
    table: web::Data<MethodTable>,
) -> HttpResponse {
    match table.allowed(req.path()) {
        Some(allow) => HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, allow))
            .finish(),
        None => HttpResponse::NotFound().finish(),
    }
}

/// This resource's routes, for [`super::configure`].
pub(crate) fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig<'_>) {
    cfg.service(openapi_json)
        .service(docs_redirect)
        .service(problem_type);
}
