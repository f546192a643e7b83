//! Scenario steps that many tests take: each one a named call on [`Caller`], so a test reads as
//! the story it tells and the requests behind a step are spelt once.

use serde_json::{Value, json};

use crate::helpers::{Caller, assert_problem};

impl Caller<'_> {
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
