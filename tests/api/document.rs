//! The answers the document promises every operation of a kind, asked of every documented
//! operation of that kind: read from the document itself, so that a route added tomorrow is
//! walked too. Each walk sends a request that can fail in one way only (a body of the documented
//! shape when the body is not what is being tested), and asserts the status and problem type.
//! With `tests/api/coverage.rs`, these are what make each documented shared status observed.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

/// A documented operation.
#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    /// The path template, `/v1/nodes/{id}`.
    path: String,
    secured: bool,
    query: bool,
    path_parameters: bool,
    idempotency_key: bool,
    /// The media types of the request body.
    body: Vec<String>,
    /// A body of the documented shape, when it takes JSON.
    example: Option<Value>,
    responses: Vec<String>,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path with every parameter replaced by `value`.
    fn filled(&self, value: &str) -> String {
        let mut path = String::new();
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            path.push_str(&rest[..open]);
            path.push_str(value);
            let close = rest[open..].find('}').expect("a closed parameter");
            rest = &rest[open + close + 1..];
        }
        path.push_str(rest);
        path
    }

    /// The path with a fresh id in each parameter: names nothing.
    fn nowhere(&self) -> String {
        self.filled(&uuid::Uuid::now_v7().to_string())
    }

    fn json_body(&self) -> bool {
        self.body.iter().any(|m| m == "application/json")
    }

    fn documents(&self, status: u16) -> bool {
        self.responses.iter().any(|s| *s == status.to_string())
    }
}

/// Every documented operation.
fn operations() -> Vec<Operation> {
    let doc = serde_json::to_value(allot::api::openapi()).expect("the document serialises");
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let located = |place: &str, name: Option<&str>| {
                parameters
                    .iter()
                    .any(|p| p["in"] == place && name.is_none_or(|n| p["name"] == n))
            };
            let content = operation["requestBody"]["content"].as_object();
            let body: Vec<String> = content
                .map(|c| c.keys().cloned().collect())
                .unwrap_or_default();
            let example = content
                .and_then(|c| c.get("application/json"))
                .map(|media| instance(&doc, &media["schema"]));
            found.push(Operation {
                method: method.to_uppercase().parse().expect("a method"),
                path: path.clone(),
                secured: operation["security"]
                    .as_array()
                    .is_some_and(|s| !s.is_empty()),
                query: located("query", None),
                path_parameters: located("path", None),
                idempotency_key: located("header", Some("Idempotency-Key")),
                body,
                example,
                responses: operation["responses"]
                    .as_object()
                    .expect("responses")
                    .keys()
                    .cloned()
                    .collect(),
            });
        }
    }
    assert!(found.len() > 60, "the document lists the routes");
    found
}

/// A value of `schema`'s shape: what serde takes, not what the handler would accept (the walks
/// fail before a handler runs).
fn instance(doc: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().expect("a schema name");
        return instance(doc, &doc["components"]["schemas"][name]);
    }
    for choice in ["oneOf", "anyOf"] {
        if let Some(options) = schema[choice].as_array() {
            let option = options
                .iter()
                .find(|o| o["type"] != "null")
                .expect("an option");
            return instance(doc, option);
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = match &schema["type"] {
        Value::Array(types) => types.iter().find(|t| *t != "null").cloned(),
        other => Some(other.clone()),
    };
    match kind.as_ref().and_then(Value::as_str) {
        Some("object") => {
            let mut object = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten() {
                let name = name.as_str().expect("a member name");
                object.insert(name.to_owned(), instance(doc, &schema["properties"][name]));
            }
            Value::Object(object)
        }
        Some("array") => {
            let items = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array(vec![instance(doc, &schema["items"]); items])
        }
        Some("integer" | "number") => schema["minimum"].clone().max_or(json!(1)),
        Some("boolean") => json!(false),
        _ => match schema["format"].as_str() {
            Some("uuid") => json!(uuid::Uuid::now_v7().to_string()),
            Some("date") => json!("2030-01-01"),
            Some("date-time") => json!("2099-01-01T00:00:00Z"),
            _ => schema["examples"][0]
                .as_str()
                .or(schema["example"].as_str())
                .map_or(json!("x"), |e| json!(e)),
        },
    }
}

trait OrDefault {
    fn max_or(self, default: Value) -> Value;
}

impl OrDefault for Value {
    fn max_or(self, default: Value) -> Value {
        if self.is_null() { default } else { self }
    }
}

/// Sends `operation` to `path` as `token` (none: anonymous), with `body` as `content_type`.
async fn send(
    app: &TestApp,
    operation: &Operation,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
    header: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut request = app.client.request(operation.method.clone(), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.send().await.expect("a response")
}

/// The documented example body, as JSON bytes.
fn example(operation: &Operation) -> Option<(&'static str, Vec<u8>)> {
    operation
        .example
        .as_ref()
        .map(|body| ("application/json", serde_json::to_vec(body).expect("JSON")))
}

/// Asserts `response` is the problem `slug` with `status`, naming the operation if not.
async fn expect(operation: &Operation, response: reqwest::Response, status: u16, slug: &str) {
    assert!(
        operation.documents(status),
        "{} does not document {status}",
        operation.name()
    );
    let got = response.status().as_u16();
    if got != status {
        let text = response.text().await.unwrap_or_default();
        panic!(
            "{}: {got} instead of {status} {slug}: {text}",
            operation.name()
        );
    }
    assert_problem(response, status, slug).await;
}

#[tokio::test]
async fn every_secured_operation_refuses_a_request_without_credentials() {
    let app = spawn_app().await;
    for operation in operations().iter().filter(|o| o.secured) {
        let response = send(
            &app,
            operation,
            &operation.nowhere(),
            None,
            example(operation),
            None,
        )
        .await;
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{}: a 401 without WWW-Authenticate",
            operation.name()
        );
        expect(operation, response, 401, "unauthorized").await;
    }
}

/// A token good only for changing its account's password: an admin set the password.
async fn password_change_token(app: &TestApp) -> String {
    let admin = app.as_admin().await;
    let owner = admin.node_id().await;
    let account = admin
        .post_expect(
            &format!("/v1/nodes/{owner}/accounts"),
            &json!({"username": "walker", "email": "walker@example.test", "role": "admin",
                    "password": "walker's first password"}),
            201,
        )
        .await;
    let id = account["id"].as_str().expect("an id");
    admin
        .patch_expect(
            &format!("/v1/accounts/{id}"),
            &json!({"password": "a password the admin set"}),
            200,
        )
        .await;
    let login: Value = app
        .login("walker", "a password the admin set")
        .await
        .json()
        .await
        .expect("a token");
    assert_eq!(login["password_change_required"], true);
    login["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn every_secured_operation_refuses_a_token_good_only_for_a_password_change() {
    let app = spawn_app().await;
    let token = password_change_token(&app).await;
    for operation in operations()
        .iter()
        .filter(|o| o.secured && o.path != "/v1/me")
    {
        let response = send(
            &app,
            operation,
            &operation.nowhere(),
            Some(&token),
            example(operation),
            None,
        )
        .await;
        expect(operation, response, 403, "password-change-required").await;
    }
}

/// Sends every operation `which` keeps, with its documented example body, to the path `path`
/// makes of it, as `token`, and expects the problem `slug` with `status` from each.
async fn walk(
    app: &TestApp,
    token: &str,
    which: impl Fn(&Operation) -> bool,
    path: impl Fn(&Operation) -> String,
    (status, slug): (u16, &str),
) {
    for operation in operations().iter().filter(|o| which(o)) {
        let response = send(
            app,
            operation,
            &path(operation),
            Some(token),
            example(operation),
            None,
        )
        .await;
        expect(operation, response, status, slug).await;
    }
}

#[tokio::test]
async fn every_path_that_names_nothing_answers_404() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    // Not an id of anything, whatever the parameter's kind.
    let nothing = |o: &Operation| o.filled("no-such-thing");
    walk(
        &app,
        &token,
        |o| o.path_parameters,
        nothing,
        (404, "not-found"),
    )
    .await;
}

#[tokio::test]
async fn every_operation_with_a_query_refuses_an_unknown_parameter() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let unknown = |o: &Operation| format!("{}?no_such_parameter=1", o.nowhere());
    walk(&app, &token, |o| o.query, unknown, (400, "invalid-query")).await;
}

#[tokio::test]
async fn every_operation_with_a_body_refuses_one_of_another_type_malformed_or_misshapen() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for operation in operations().iter().filter(|o| !o.body.is_empty()) {
        let path = operation.nowhere();
        let cases: [(&str, &[u8], u16, &str); 2] = [
            ("text/plain", b"x", 415, "unsupported-media-type"),
            // Not JSON from its first byte, whatever the body's type.
            ("application/json", b"]", 400, "malformed-body"),
        ];
        for (content_type, bytes, status, slug) in cases {
            let body = Some((content_type, bytes.to_vec()));
            let response = send(&app, operation, &path, Some(&token), body, None).await;
            expect(operation, response, status, slug).await;
        }
        if operation.json_body() {
            // A JSON string where the document wants an object or an array.
            let body = Some(("application/json", b"\"a string\"".to_vec()));
            let response = send(&app, operation, &path, Some(&token), body, None).await;
            expect(operation, response, 422, "validation-failed").await;
        }
    }
}

#[tokio::test]
async fn every_operation_with_a_body_refuses_one_over_the_limit() {
    let app = spawn_app_with(|config| config.body_limit = 64).await;
    let token = app.admin_token().await;
    for operation in operations().iter().filter(|o| !o.body.is_empty()) {
        // The import has a limit of its own, 16 MiB, whatever `ALLOT_BODY_LIMIT` says.
        let size = if operation.path.ends_with("/import") {
            16 * 1024 * 1024 + 1
        } else {
            65
        };
        let mut bytes = b"[\"".to_vec();
        bytes.resize(size - 2, b'x');
        bytes.extend_from_slice(b"\"]");
        let body = Some(("application/json", bytes));
        let response = send(
            &app,
            operation,
            &operation.nowhere(),
            Some(&token),
            body,
            None,
        )
        .await;
        expect(operation, response, 413, "payload-too-large").await;
    }
}

#[tokio::test]
async fn every_operation_with_an_idempotency_key_refuses_a_malformed_one() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let too_long = "k".repeat(256);
    for operation in operations().iter().filter(|o| o.idempotency_key) {
        let header = Some(("Idempotency-Key", too_long.as_str()));
        let response = send(
            &app,
            operation,
            &operation.nowhere(),
            Some(&token),
            example(operation),
            header,
        )
        .await;
        expect(operation, response, 422, "validation-failed").await;
    }
}

/// The server's address, for raw connections.
fn address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Everything the server sends on a new connection after `request`, until it closes it.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address(app))
        .await
        .expect("a connection");
    // A server that closed the connection first may refuse the rest of the request.
    let _ = stream.write_all(request).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received));
    let _ = read.await.expect("the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn every_operation_with_a_body_answers_408_when_the_body_does_not_arrive() {
    let app = spawn_app_with(|config| config.request_timeout = 1).await;
    let token = app.admin_token().await;
    let walks = operations()
        .into_iter()
        .filter(|o| !o.body.is_empty())
        .map(|operation| {
            let app = &app;
            let token = &token;
            async move {
                let head = format!(
                    "{} {} HTTP/1.1\r\nHost: allot\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
                    operation.method,
                    operation.nowhere()
                );
                let answer = raw(app, head.as_bytes()).await;
                assert!(
                    operation.documents(408),
                    "{} does not document 408",
                    operation.name()
                );
                assert!(
                    answer.starts_with("HTTP/1.1 408")
                        && answer.contains("/problems/request-timeout"),
                    "{}: {answer}",
                    operation.name()
                );
            }
        });
    futures_util::future::join_all(walks).await;
}

#[tokio::test]
async fn every_operation_answers_503_to_a_client_over_its_connection_bound() {
    // No connection from this address is admitted: a request already sent when the connection is
    // refused is answered 503 `unavailable` (one that arrives after is not read at all, and is
    // tried again).
    let app = spawn_app_with(|config| config.max_connections_per_peer = 0).await;
    for operation in operations() {
        let request = format!(
            "{} {} HTTP/1.1\r\nHost: allot\r\nContent-Length: 0\r\n\r\n",
            operation.method,
            operation.nowhere()
        );
        let mut tries = 0;
        let answer = loop {
            let answer = raw(&app, request.as_bytes()).await;
            tries += 1;
            if !answer.is_empty() || tries == 50 {
                break answer;
            }
        };
        assert!(
            operation.documents(503),
            "{} does not document 503",
            operation.name()
        );
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("/problems/unavailable"),
            "{}: {answer:?} after {tries} tries",
            operation.name()
        );
    }
}

#[tokio::test]
async fn a_change_based_on_another_version_answers_412_and_only_the_quoted_etag_matches() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = crate::helpers::seed_tree(&admin).await;
    admin.register_domain(&tree.c1, "etag.example").await;
    let mailbox = admin.create_mailbox(&tree.c1, "jane@etag.example").await;
    let domains = admin
        .get_ok(&format!("/v1/nodes/{}/domains", tree.c1))
        .await;
    let account = admin
        .post_expect(
            &format!("/v1/nodes/{}/accounts", tree.c1),
            &json!({"username": "etag", "email": "etag@example.test", "role": "viewer"}),
            201,
        )
        .await;
    let changes = [
        (
            format!("/v1/mailboxes/{}", mailbox["id"].as_str().unwrap()),
            json!({"display_name": "Jane"}),
        ),
        (
            format!(
                "/v1/domains/{}",
                domains["items"][0]["id"].as_str().unwrap()
            ),
            json!({"description": "the etag domain"}),
        ),
        (
            format!("/v1/accounts/{}", account["id"].as_str().unwrap()),
            json!({"email": "etag2@example.test"}),
        ),
    ];
    for (path, body) in changes {
        let current = admin.get(&path).await;
        let etag = current.headers()["etag"].to_str().unwrap().to_owned();
        let version = etag.trim_matches('"').to_owned();
        // The tag without its quotes, and a weak one, name no version: refused, as documented.
        for stale in [
            version.clone(),
            format!("W/{etag}"),
            "\"999999\"".to_owned(),
        ] {
            let response = admin.patch_if_match(&path, &stale, &body).await;
            assert_problem(response, 412, "precondition-failed").await;
        }
        let response = admin.patch_if_match(&path, &etag, &body).await;
        assert_eq!(response.status(), 200, "PATCH {path} with If-Match: {etag}");
    }
}

#[tokio::test]
async fn a_per_customer_module_is_refused_where_mailboxes_are_meant() {
    let app = spawn_app().await;
    let admin = app.as_admin().await;
    let tree = crate::helpers::seed_tree(&admin).await;
    admin.register_domain(&tree.c1, "modules.example").await;
    let mailbox = admin.create_mailbox(&tree.c1, "jane@modules.example").await;
    let mailbox = mailbox["id"].as_str().unwrap();
    let refused = [
        admin
            .get(&format!("/v1/nodes/{}/mailboxes?module=branding", tree.c1))
            .await,
        admin
            .delete(&format!("/v1/mailboxes/{mailbox}/modules/branding"))
            .await,
    ];
    for response in refused {
        let problem = assert_problem(response, 422, "validation-failed").await;
        assert!(
            problem["detail"].as_str().unwrap().contains("branding"),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn every_secured_operation_refuses_a_caller_over_its_request_budget() {
    let app = spawn_app_with(|config| {
        config.rate_limit = 2.try_into().unwrap();
        config.check_rate_limit = 2.try_into().unwrap();
    })
    .await;
    let admin = app.as_admin().await;
    // Spend the budget of two a minute.
    let mut spent = 0;
    while admin.get("/v1/me").await.status() != 429 {
        spent += 1;
        assert!(spent <= 2, "more requests than the budget were answered");
    }
    // Each answer's headers are asserted by tests/api/rate_limit.rs; here, that every secured
    // operation is refused.
    let nowhere = |o: &Operation| o.nowhere();
    walk(
        &app,
        &admin.token,
        |o| o.secured,
        nowhere,
        (429, "rate-limited"),
    )
    .await;
}
