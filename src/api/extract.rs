//! Request extractors that fail with problem documents.
//!
//! [`Json`] replaces `actix_web::web::Json` so that each way a body can be wrong gets its own
//! problem type: a wrong `Content-Type` is 415, a body over `ALLOT_BODY_LIMIT` is 413, bytes that
//! are not JSON (or not UTF-8) are 400, and JSON of the wrong shape is 422 naming the field by its
//! path (`route.port`), found by serde_path_to_error. Request types use
//! `#[serde(deny_unknown_fields)]`, so a field a caller may not set is refused, never ignored.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::web::{Bytes, Data};
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::startup::AppState;

/// A JSON body of type `T`, with the bytes it was read from (for idempotency fingerprints).
#[derive(Debug)]
pub(crate) struct Json<T>(pub T, Bytes);

impl<T> Json<T> {
    /// The body as received.
    pub fn raw(&self) -> &[u8] {
        &self.1
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<Data<AppState>>()
            .map_or(crate::startup::DEFAULT_BODY_LIMIT, |s| s.config.body_limit);
        let content_type_ok = is_json(req);
        let body = actix_web::web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType(
                    "The body must be JSON: send `Content-Type: application/json`.".to_owned(),
                ));
            }
            let bytes: Bytes = body
                .await
                .map_err(|err| match err.as_error::<PayloadError>() {
                    Some(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit },
                    _ => ApiError::MalformedBody(format!("The body could not be read: {err}")),
                })?;
            parse(&bytes).map(|value| Json(value, bytes))
        })
    }
}

fn is_json(req: &HttpRequest) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parses a JSON body, telling syntax errors (400) from shape errors (422, with the field's path).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let strict = super::strict::Strict(&mut deserializer);
    let value = serde_path_to_error::deserialize(strict).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = strip_position(&inner);
                ApiError::Validation(vec![FieldError::new(field_of(&path, &message), message)])
            }
            _ => ApiError::MalformedBody(format!("The body is not valid JSON: {inner}.")),
        }
    })?;
    deserializer
        .end()
        .map_err(|err| ApiError::MalformedBody(format!("The body is not valid JSON: {err}.")))?;
    Ok(value)
}

/// The field a body of the wrong type as a whole (`[]` where an object belongs) is reported at.
pub(crate) const BODY_FIELD: &str = "body";

/// The failing field's path. serde reports a missing field at its parent, naming it only in the
/// message ("missing field `name`"), so the name is appended here. An error at the top that
/// names nothing (a body of the wrong type) is the body's own: [`BODY_FIELD`].
fn field_of(path: &str, message: &str) -> String {
    let parent = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match missing.filter(|name| !name.is_empty()) {
        Some(name) if parent.is_empty() => name.to_owned(),
        Some(name) => format!("{parent}.{name}"),
        None if parent.is_empty() => BODY_FIELD.to_owned(),
        None => parent.to_owned(),
    }
}

/// serde_json appends " at line 1 column 17" to data errors; the field path says more.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Body {
        name: String,
        route: Option<Route>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "fields exist to be deserialised")]
    struct Route {
        port: u16,
    }

    #[test]
    fn a_shape_error_names_the_field_by_its_path() {
        let err = parse::<Body>(br#"{"name":"a","route":{"port":70000}}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("expected a validation error, got {err:?}")
        };
        assert_eq!(errors[0].field, "route.port");
        assert!(!errors[0].message.contains("line"));
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse::<Body>(br#"{"route":{"port":25}}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("expected a validation error, got {err:?}")
        };
        assert_eq!(errors[0].field, "name");
        let err = parse::<Body>(br#"{"name":"a","route":{}}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("expected a validation error, got {err:?}")
        };
        assert_eq!(errors[0].field, "route.port");
    }

    fn field(body: &[u8]) -> String {
        match parse::<Body>(body).unwrap_err() {
            ApiError::Validation(errors) => errors[0].field.clone(),
            err => panic!("expected a validation error, got {err:?}"),
        }
    }

    #[test]
    fn an_unknown_field_is_refused_naming_it() {
        assert_eq!(field(br#"{"name":"a","admin":true}"#), "admin");
        assert_eq!(
            field(br#"{"name":"a","route":{"port":25,"x":1}}"#),
            "route.x"
        );
        assert_eq!(field(br#"{"name":"a","a`b, c":1}"#), "a`b, c");
        assert_eq!(field(br#"{"name":"a","":1}"#), "body");
    }

    #[test]
    fn a_body_of_the_wrong_type_is_named_body() {
        // Found by fuzzing (tests/fuzz.rs): `null`, `0` or `[]` as the body was reported with an
        // empty field name.
        for body in [b"null".as_slice(), b"0", b"[]", br#""name""#] {
            assert_eq!(field(body), "body", "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(field(br#"{"name":"a","route":[]}"#), "route");
    }

    #[test]
    fn a_struct_is_taken_from_an_object_only() {
        // Found by fuzzing (tests/fuzz.rs): serde fills a struct from an array by position, so
        // `["a"]` was accepted as `{"name": "a"}`, and `["a", null, 1]` was "not valid JSON".
        assert_eq!(field(br#"["a"]"#), "body");
        assert_eq!(field(br#"["a", null, 1]"#), "body");
        assert_eq!(field(br#"{"name":"a","route":[25]}"#), "route");
        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "fields exist to be deserialised")]
        struct Batch {
            routes: Vec<Route>,
            default: Option<Route>,
        }
        let err = parse::<Batch>(br#"{"routes":[{"port":1},[2]]}"#).unwrap_err();
        let ApiError::Validation(errors) = err else {
            panic!("expected a validation error, got {err:?}")
        };
        assert_eq!(errors[0].field, "routes[1]");
        assert!(parse::<Batch>(br#"{"routes":[],"default":[3]}"#).is_err());
        let batch = parse::<Batch>(br#"{"routes":[{"port":1}],"default":{"port":2}}"#);
        assert!(batch.is_ok(), "{batch:?}");
    }

    #[test]
    fn syntax_errors_and_invalid_utf8_are_malformed() {
        assert!(matches!(
            parse::<Body>(br#"{"name":"#),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse::<Body>(b"{\"name\":\"\xff\"}"),
            Err(ApiError::MalformedBody(_))
        ));
        assert!(matches!(
            parse::<Body>(br#"{"name":"a"} x"#),
            Err(ApiError::MalformedBody(_))
        ));
    }
}
