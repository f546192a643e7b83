//! Conventions every resource shares: cursor pagination, ETags and `If-Match`, PATCH's "absent
//! versus null", and the audit record of a write.

use std::future::{Ready, ready};

use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::domain::ids::NodeId;
use crate::error::{ApiError, FieldError};
use crate::store::DbConnection;
use crate::store::nodes::Node;

pub(crate) const DEFAULT_LIMIT: u32 = 50;
pub(crate) const MAX_LIMIT: u32 = 500;

/// A page of a list: `next_cursor` is absent on the last page.
#[derive(Debug, Serialize)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `?cursor=` to get the next page; absent when there is none.
    pub next_cursor: Option<String>,
}

/// The schemas of the pages, one per item type, each named `Page_<item>` (`Page_MailboxView`).
/// Written by hand: the derive on the generic [`Page`] inlines a copy of the item's schema in
/// each page's, so that a generated client's page item was a type of its own instead of its
/// `MailboxView`. Here the items refer to the item's named schema.
pub(crate) mod pages {
    use std::borrow::Cow;

    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Ref, Schema, SchemaType, Type};
    use utoipa::{PartialSchema, ToSchema};

    macro_rules! pages {
        ($($page:ident => $item:ty,)*) => {$(
            #[doc = concat!("The schema of a page of `", stringify!($item), "`.")]
            pub(crate) struct $page;

            impl PartialSchema for $page {
                fn schema() -> RefOr<Schema> {
                    page(<$item as ToSchema>::name())
                }
            }

            impl ToSchema for $page {
                fn name() -> Cow<'static, str> {
                    Cow::Owned(format!("Page_{}", <$item as ToSchema>::name()))
                }

                fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                    schemas.push((<$item as ToSchema>::name().into_owned(), <$item>::schema()));
                    <$item as ToSchema>::schemas(schemas);
                }
            }
        )*};
    }

    fn page(item: Cow<'static, str>) -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("A page of a list."))
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(item)),
            )
            .required("items")
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .description(Some(
                        "Pass as `?cursor=` to get the next page; absent or null on the last page.",
                    )),
            )
            .into()
    }

    pages! {
        AccountPage => crate::api::principals::AccountView,
        AliasPage => crate::api::mailboxes::AliasView,
        AllocationPage => crate::api::allocations::AllocationView,
        ApiKeyPage => crate::api::principals::ApiKeyView,
        AuditPage => crate::api::audit::AuditEvent,
        ChildPage => crate::api::nodes::ChildView,
        StatisticsPage => crate::api::statistics::CustomerStatistics,
        DomainPage => crate::api::domains::DomainView,
        GroupPage => crate::api::groups::GroupView,
        MailboxPage => crate::api::mailboxes::MailboxView,
        ModulePage => crate::api::modules::ModuleView,
        PlanPage => crate::api::plans::PlanView,
        PlanVersionPage => crate::api::plans::PlanVersionView,
        MessagePage => crate::api::webhooks::MessageView,
        WebhookPage => crate::api::webhooks::WebhookView,
    }
}

/// The validated `?limit=` and `?cursor=` of a list request. The cursor is opaque to clients; it
/// encodes the id of the last item seen (ids sort by creation).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<String>,
}

impl PageRequest {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, ApiError> {
        Self::parse_keyed(limit, cursor, |id| uuid::Uuid::parse_str(id).is_ok())
    }

    /// As [`PageRequest::parse`], for a list ordered by another key than a UUID: `is_key` says
    /// which cursors could have come from this list.
    pub fn parse_keyed(
        limit: Option<u32>,
        cursor: Option<&str>,
        is_key: impl Fn(&str) -> bool,
    ) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidQuery(vec![FieldError::new(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )]));
        }
        let after = cursor
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|key| is_key(key))
                    .ok_or_else(|| {
                        ApiError::InvalidQuery(vec![FieldError::new(
                            "cursor",
                            "is not a cursor this API gave out",
                        )])
                    })
            })
            .transpose()?;
        Ok(Self {
            limit: i64::from(limit),
            after,
        })
    }

    /// One more row than the page holds is fetched to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts the fetched rows to a page, with the cursor to the next one.
    pub fn page<R, T: ToSchema>(
        &self,
        mut rows: Vec<R>,
        id_of: impl Fn(&R) -> String,
        view: impl Fn(R) -> T,
    ) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = more.then(|| {
            let last = rows.last().map(&id_of).unwrap_or_default();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
        });
        Page {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// Declares a list's query: its own filters, then `?limit=` and `?cursor=` as every list takes
/// them, with `page()` to validate those two. One struct, so that an unknown parameter is refused
/// naming every accepted one.
macro_rules! list_query {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            /// Items per page, 1–500 (default 50).
            #[param(minimum = 1, maximum = 500)]
            pub limit: Option<u32>,
            /// From a previous page's `next_cursor`, as it was given: opaque.
            pub cursor: Option<String>,
        }

        impl $name {
            /// The page asked for, validated.
            pub fn page(&self) -> Result<$crate::api::common::PageRequest, $crate::error::ApiError> {
                $crate::api::common::PageRequest::parse(self.limit, self.cursor.as_deref())
            }
        }
    };
}
pub(crate) use list_query;

list_query! {
    /// A list with no filters of its own.
    pub struct ListQuery {}
}

/// Runs `f` in one write transaction on a pooled connection: committed when it returns `Ok`,
/// rolled back otherwise. Every write handler's one call into the store.
pub(crate) async fn write<T, F>(pool: &crate::store::Pool, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&mut DbConnection) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    crate::store::run(pool, move |conn| crate::store::write_tx(conn, f)).await
}

/// A page of what node `id` holds, for a caller who may read it: `rows` reads, under the node,
/// up to `limit` rows after the key `after` (one more than the page holds, to know whether
/// another follows); `key` names a row's key for the next cursor, `view` shows it.
pub(crate) async fn node_page<R, T>(
    pool: &crate::store::Pool,
    principal: Principal,
    id: NodeId,
    page: PageRequest,
    rows: impl FnOnce(&mut DbConnection, &Node, Option<&str>, i64) -> diesel::QueryResult<Vec<R>>
    + Send
    + 'static,
    key: impl Fn(&R) -> String,
    view: impl Fn(R) -> T,
) -> Result<actix_web::web::Json<Page<T>>, ApiError>
where
    R: Send + 'static,
    T: ToSchema,
{
    let fetch = page.clone();
    let rows = crate::store::run(pool, move |conn| {
        let node = principal.may_read(crate::store::nodes::find(conn, id)?)?;
        Ok::<_, ApiError>(rows(conn, &node, fetch.after.as_deref(), fetch.fetch())?)
    })
    .await?;
    Ok(actix_web::web::Json(page.page(rows, key, view)))
}

/// The entity tag of a resource at `version`.
pub(crate) fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The `If-Match` header: `None` when absent (the write proceeds unconditionally).
#[derive(Debug, Clone)]
pub(crate) struct IfMatch(Option<Vec<String>>);

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let tags = req.headers().get(header::IF_MATCH).map(|value| {
            value
                .to_str()
                .unwrap_or_default()
                .split(',')
                // If-Match compares strongly (RFC 9110): a weak tag never matches.
                .map(|t| t.trim().to_owned())
                .collect()
        });
        ready(Ok(Self(tags)))
    }
}

/// Its OpenAPI description, so each `PATCH` lists `IfMatch` among its parameters.
impl utoipa::IntoParams for IfMatch {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{Required, schema::Ref};
        vec![
            ParameterBuilder::new()
                .name("If-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes the change conditional: it is made only if the resource's current `ETag` \
                     is listed (or `*` is). Without it the change is unconditional; with a tag that \
                     is not current the answer is 412 and nothing changes.",
                ))
                .schema(Some(Ref::from_schema_name(
                    <crate::api::schemas::IfMatchText as utoipa::ToSchema>::name(),
                )))
                .build(),
        ]
    }
}

impl IfMatch {
    /// 412 unless the header is absent, `*`, or names `version`.
    pub fn check(&self, version: i64) -> Result<(), ApiError> {
        match &self.0 {
            None => Ok(()),
            Some(tags) if tags.iter().any(|t| t == "*" || *t == etag(version)) => Ok(()),
            Some(_) => Err(ApiError::PreconditionFailed {
                current: etag(version),
            }),
        }
    }
}

/// For PATCH bodies: an absent field is `None`, an explicit `null` is `Some(None)`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Collects field errors so that a body reports every bad field at once.
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<FieldError>);

impl Fields {
    /// The parsed value, or `None` with the error recorded under `field`.
    pub fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.0.push(FieldError::new(field, message));
                None
            }
        }
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok` when no field failed, else the 422 listing them all.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// Dates a request may name (a rule of the quota arithmetic, kept there).
pub(crate) use crate::domain::quota::check_date;

/// `active` or `disabled`, as domains and mailboxes spell their status: whether it is active.
pub fn parse_active(text: &str) -> Result<bool, String> {
    text.parse::<crate::domain::status::Status>()
        .map(crate::domain::status::Status::is_active)
        .map_err(|_| "must be active or disabled".to_owned())
}

/// A stored time (UTC, without zone) as the API shows it.
pub(crate) fn utc(at: chrono::NaiveDateTime) -> chrono::DateTime<chrono::Utc> {
    at.and_utc()
}

/// The owner node, locked, if the caller is one of its admins (the licence and the module
/// catalogue are theirs): 404 for anyone at another node, 403 for another role at the owner.
pub(crate) fn owner_admin(
    conn: &mut DbConnection,
    principal: &Principal,
) -> Result<crate::auth::guard::Authorised<crate::auth::guard::Administer>, ApiError> {
    let owner = crate::store::nodes::owner(conn)?;
    let owner = principal.may_administer(
        owner.filter(|o| o.id == principal.node_id),
        crate::auth::guard::Reach::SelfOrBelow,
    )?;
    crate::store::nodes::lock(conn, &[owner.id])?;
    Ok(owner)
}
