//! Scenario steps that many tests take: each one a named call on [`Caller`], so a test reads as
//! the story it tells and the requests behind a step are spelt once.

use serde_json::{Value, json};

use crate::helpers::{Caller, assert_problem};

/// The path that asks allot to look for `domain`'s proof in DNS.
pub fn verify_path(domain: &Value) -> String {
    format!("/v1/domains/{}/verify", domain["id"].as_str().unwrap())
}

impl Caller<'_> {
    /// Asks allot to check `domain`'s proof, asserts it is verified (200), and returns it.
    pub async fn verify_domain(&self, domain: &Value) -> Value {
        self.post_expect(&verify_path(domain), &json!({}), 200)
            .await
    }

    /// POSTs every one of `bodies` to `path` at once, as racing clients would; returns the
    /// answers in the order of `bodies`.
    pub async fn post_racing(
        &self,
        path: &str,
        bodies: impl IntoIterator<Item = Value>,
    ) -> Vec<reqwest::Response> {
        let attempts = bodies
            .into_iter()
            .map(|body| async move { self.post(path, &body).await });
        futures_util::future::join_all(attempts).await
    }

    /// Turns `module` on for `node` (200); returns what allot answered.
    pub async fn enable_module(&self, node: &str, module: &str) -> Value {
        let path = format!("/v1/nodes/{node}/modules/{module}");
        self.put_expect(&path, &json!({}), 200).await
    }

    /// Asks to enable `mailbox` and asserts the 409 `quota-exceeded` refusal; returns it.
    pub async fn enable_over_quota(&self, mailbox: &str) -> Value {
        let path = format!("/v1/mailboxes/{mailbox}/enable");
        self.post_problem(&path, &json!({}), 409, "quota-exceeded")
            .await
    }

    /// Asserts that `field` (`used`, `limit`, `free`, …) of `node`'s usage of `resource` is
    /// `expected`; `why` says what that shows.
    pub async fn assert_usage(
        &self,
        node: &str,
        resource: &str,
        field: &str,
        expected: i64,
        why: &str,
    ) {
        assert_eq!(self.usage(node, resource).await[field], expected, "{why}");
    }

    /// The string `field` of every item `node`'s `listing` (`mailboxes?origin=check`, say)
    /// holds, in order.
    pub async fn list_texts(&self, node: &str, listing: &str, field: &str) -> Vec<String> {
        let listed = self.get_ok(&format!("/v1/nodes/{node}/{listing}")).await;
        let texts = crate::helpers::texts(&listed["items"], field);
        texts.into_iter().map(str::to_owned).collect()
    }

    /// PATCHes `node` with `body`, asserts 200, and returns the node.
    pub async fn patch_node(&self, node: &str, body: &Value) -> Value {
        self.patch_ok(&format!("/v1/nodes/{node}"), body).await
    }

    /// Disables `mailbox` (200); returns it.
    pub async fn disable_mailbox(&self, mailbox: &str) -> Value {
        let path = format!("/v1/mailboxes/{mailbox}/disable");
        self.post_expect(&path, &json!({}), 200).await
    }

    /// Assigns `module` to `mailbox` (200); returns what allot answered.
    pub async fn assign_module(&self, mailbox: &str, module: &str) -> Value {
        let path = format!("/v1/mailboxes/{mailbox}/modules/{module}");
        self.put_expect(&path, &json!({}), 200).await
    }

    /// POSTs `body` to `path`, asserts 201, and returns the `Location` and what was created.
    pub async fn post_created(&self, path: &str, body: &Value) -> (String, Value) {
        let response = self.post(path, body).await;
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        (location, response.json().await.unwrap())
    }

    /// POSTs `body` to `path`, asserts 201, and returns what was created.
    async fn created(&self, path: &str, body: Value) -> Value {
        self.post_expect(path, &body, 201).await
    }

    /// Replaces the owner's licence with `lines` (`[{"resource", "amount"}]`); returns it.
    pub async fn set_licence(&self, lines: Value) -> Value {
        self.put_expect("/v1/licence", &json!({"resources": lines}), 200)
            .await
    }

    /// Licenses `amount` units of each of `resources` (and nothing else).
    pub async fn set_licence_of(&self, resources: &[impl AsRef<str>], amount: i64) -> Value {
        let lines: Vec<Value> = resources
            .iter()
            .map(|resource| json!({"resource": resource.as_ref(), "amount": amount}))
            .collect();
        self.set_licence(Value::from(lines)).await
    }

    /// A licence of 1,000 of everything a mailbox and a domain take (`users`, `domains`,
    /// `module:base`).
    pub async fn licensed(&self) -> Value {
        self.set_licence_of(&["users", "domains", "module:base"], 1000)
            .await
    }

    /// Creates a child node of `kind` called `name` under `parent`; returns its id.
    pub async fn create_child(&self, parent: &str, kind: &str, name: &str) -> String {
        let path = format!("/v1/nodes/{parent}/children");
        let body = self
            .created(&path, json!({"kind": kind, "name": name}))
            .await;
        body["id"].as_str().unwrap().to_owned()
    }

    /// Registers domain `name` for `customer` (unverified); returns it.
    pub async fn register_domain(&self, customer: &str, name: &str) -> Value {
        self.created(
            &format!("/v1/nodes/{customer}/domains"),
            json!({"name": name}),
        )
        .await
    }

    /// Asks to register domain `name` for `customer` and asserts the refusal is a problem of
    /// `status` and `slug`; returns it.
    pub async fn register_domain_problem(
        &self,
        customer: &str,
        name: &str,
        status: u16,
        slug: &str,
    ) -> Value {
        let path = format!("/v1/nodes/{customer}/domains");
        self.post_problem(&path, &json!({"name": name}), status, slug)
            .await
    }

    /// The usage report line of `resource` at `node`.
    pub async fn usage(&self, node: &str, resource: &str) -> Value {
        let report = self.get_ok(&format!("/v1/nodes/{node}/usage")).await;
        report["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == resource)
            .cloned()
            .unwrap()
    }

    /// Creates the mailbox `address` for `customer`; returns it.
    pub async fn create_mailbox(&self, customer: &str, address: &str) -> Value {
        let path = format!("/v1/nodes/{customer}/mailboxes");
        self.created(&path, json!({"address": address})).await
    }

    /// Creates an API key called `name` with `role` at `node`; returns it (its secret in `key`).
    pub async fn create_api_key(&self, node: &str, name: &str, role: &str) -> Value {
        let path = format!("/v1/nodes/{node}/api-keys");
        self.created(&path, json!({"name": name, "role": role}))
            .await
    }

    /// Asks to create the mailbox `address` for `customer` and asserts the refusal is a problem
    /// of `status` and `slug`; returns it.
    pub async fn create_mailbox_problem(
        &self,
        customer: &str,
        address: &str,
        status: u16,
        slug: &str,
    ) -> Value {
        let body = json!({"address": address});
        let path = format!("/v1/nodes/{customer}/mailboxes");
        self.post_problem(&path, &body, status, slug).await
    }

    /// Asks `node`'s parent to grant `node` `amount` units of `resource`; the answer is the
    /// test's to judge.
    pub async fn allocate(&self, node: &str, resource: &str, amount: i64) -> reqwest::Response {
        self.post(
            &format!("/v1/nodes/{node}/allocations"),
            &json!({"resource": resource, "amount": amount}),
        )
        .await
    }

    /// Asks to move `node` under `parent`; the answer is the test's to judge.
    pub async fn move_under(&self, node: &str, parent: &str) -> reqwest::Response {
        let body = json!({"parent_id": parent});
        self.post(&format!("/v1/nodes/{node}/move"), &body).await
    }

    /// Gives mailbox `mailbox` the alias `address`; returns it.
    pub async fn add_alias(&self, mailbox: &str, address: &str) -> Value {
        self.created(
            &format!("/v1/mailboxes/{mailbox}/aliases"),
            json!({"address": address}),
        )
        .await
    }

    /// Grants `node` `amount` units of `resource` from its parent, asserts 201, and returns the
    /// grant.
    pub async fn grant(&self, node: &str, resource: &str, amount: i64) -> Value {
        self.expect(self.allocate(node, resource, amount).await, 201)
            .await
    }

    /// Asks to grant `node` `amount` units of `resource` and asserts the refusal is a problem of
    /// `status` and `slug`; returns it.
    pub async fn allocate_problem(
        &self,
        node: &str,
        resource: &str,
        amount: i64,
        status: u16,
        slug: &str,
    ) -> Value {
        assert_problem(self.allocate(node, resource, amount).await, status, slug).await
    }

    /// The id of `node`'s first grant of `resource`.
    pub async fn grant_id(&self, node: &str, resource: &str) -> String {
        let listed = self
            .get_ok(&format!("/v1/nodes/{node}/allocations?resource={resource}"))
            .await;
        listed["items"][0]["id"].as_str().unwrap().to_owned()
    }

    /// Changes the amount of `node`'s (first) grant of `resource` to `amount`: raises or lowers
    /// the allocation a test starts from.
    pub async fn set_grant(&self, node: &str, resource: &str, amount: i64) {
        let grant = self.grant_id(node, resource).await;
        self.patch_ok(
            &format!("/v1/allocations/{grant}"),
            &json!({"amount": amount}),
        )
        .await;
    }
}
