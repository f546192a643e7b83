//! Scenario steps that many tests take: each one a named call on [`Caller`], so a test reads as
//! the story it tells and the requests behind a step are spelt once.

use serde_json::json;

use crate::helpers::Caller;

impl Caller<'_> {
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
