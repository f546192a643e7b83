//! The isolation matrix: every route of the OpenAPI document, called as every kind of caller
//! against nodes across the tree, must answer exactly the status the access rules give, and a
//! caller outside a target's subtree must never see that target's data. Every write it makes
//! must also leave exactly its number of audit events when it succeeds (see [`audited`]) and
//! none when it is refused. A route missing from [`route`] fails the test, so a new route cannot
//! ship without its row.

use std::collections::HashMap;

use allot::auth::jwt::Keys;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Caller, TestApp, seed_tree, spawn_app_with};
use crate::principals::api_key;

const SECRET: [u8; 32] = [77; 32];

/// Where the matrix's subscriptions send: nothing listens there.
const MATRIX_HOOK: &str = "http://127.0.0.1:9/matrix";

/// The owner's licence while the matrix runs (and what its `PUT /v1/licence` cell sets again).
const LICENCE: [(&str, i64); 5] = [
    ("users", 1000),
    ("domains", 1000),
    ("module:base", 1000),
    ("module:lft", 1000),
    ("module:branding", 1000),
];

fn licence() -> Value {
    LICENCE
        .iter()
        .map(|(resource, amount)| json!({"resource": resource, "amount": amount}))
        .collect()
}

/// What a caller is: an invalid credential, or a principal at a node with a role.
#[derive(Clone)]
struct Identity {
    label: String,
    token: Option<String>,
    principal: Option<(String, String)>, // (node path, role)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Need {
    Read,
    /// An admin or a manager.
    Manage,
    Admin,
    /// An admin strictly above the target.
    AdminAbove,
    /// An admin anywhere the target is visible (a plan's sync: the admin's own customers move).
    AnyAdmin,
}

/// How a route is guarded, and what an allowed call answers.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Public(u16),
    Authenticated(u16),
    /// The owner's licence: only principals at the owner node see it.
    Licence(Need, u16),
    /// About a node (or an object at it).
    Node(Need, u16),
    /// The module catalogue: read by every principal but `check`, wherever it stands.
    Catalogue(u16),
    /// A plan defined at the target: visible at and above it and in its subtree; `Need::Admin`
    /// is an admin at or above the defining node.
    Plan(Need, u16),
}

#[derive(Clone)]
struct Target {
    label: &'static str,
    id: String,
    path: String,
    name: String,
    kind: &'static str,
}

/// Everything a cell's request may need, made before the calls.
struct World<'a> {
    app: &'a TestApp,
    admin: Caller<'a>,
    allocations: HashMap<String, String>,
    accounts: HashMap<String, String>,
    api_keys: HashMap<String, String>,
    domains: HashMap<String, String>,
    domain_names: HashMap<String, String>,
    mailboxes: HashMap<String, String>,
    groups: HashMap<String, String>,
    webhooks: HashMap<String, String>,
    /// A plan defined at each target that is not a customer.
    plans: HashMap<String, String>,
    /// A plan of the owner's with no content, that every customer may be put on.
    empty_plan: String,
    /// A pending message to each target's own subscription.
    messages: HashMap<String, String>,
    counter: std::sync::atomic::AtomicUsize,
}

impl World<'_> {
    fn unique(&self, prefix: &str) -> String {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}{n}")
    }

    /// A fresh empty customer under `parent`, for calls that delete or move.
    async fn disposable_customer(&self, parent: &str) -> String {
        let name = self.unique("Disposable ");
        self.admin.create_child(parent, "customer", &name).await
    }
}

/// The rule of a route and, for a target node, the request to make: (path, body). `None` when the
/// route does not apply to that target (deleting or moving needs a reseller to hang a disposable
/// customer under).
async fn route(
    world: &World<'_>,
    method: &str,
    template: &str,
    target: &Target,
) -> Option<(Rule, String, Option<Value>)> {
    let t = &target.id;
    let is_parent = target.kind != "customer";
    let entry = match (method, template) {
        ("get", "/healthz")
        | ("get", "/readyz")
        | ("get", "/metrics")
        | ("get", "/openapi.json") => (Rule::Public(200), template.to_owned(), None),
        ("get", "/docs") => (Rule::Public(308), template.to_owned(), None),
        ("get", "/problems/{slug}") => (Rule::Public(200), "/problems/not-found".to_owned(), None),
        ("post", "/v1/auth/token") => (
            Rule::Public(200),
            template.to_owned(),
            Some(json!({"username": "matrix-login", "password": "matrix login password"})),
        ),
        ("get", "/v1/me") => (Rule::Authenticated(200), template.to_owned(), None),
        // Any principal may ask; what lies outside its subtree is answered `not_in_scope`.
        ("post", "/v1/check") => (
            Rule::Authenticated(200),
            template.to_owned(),
            Some(json!({"direction": "inbound", "domain": "matrix.example"})),
        ),
        ("post", "/v1/check/batch") => (
            Rule::Authenticated(200),
            template.to_owned(),
            Some(json!({"checks": [{"direction": "inbound", "domain": "matrix.example"}]})),
        ),
        ("get", "/v1/licence") => (Rule::Licence(Need::Read, 200), template.to_owned(), None),
        ("put", "/v1/licence") => (
            Rule::Licence(Need::Admin, 200),
            template.to_owned(),
            Some(json!({"resources": licence()})),
        ),
        ("get", "/v1/modules") | ("get", "/v1/modules/{code}") => (
            Rule::Catalogue(200),
            template.replace("{code}", "lft"),
            None,
        ),
        ("post", "/v1/modules") => (
            Rule::Licence(Need::Admin, 201),
            template.to_owned(),
            Some(json!({"code": world.unique("matrix_"), "name": "Matrix", "unit": "per_mailbox"})),
        ),
        ("patch", "/v1/modules/{code}") => (
            Rule::Licence(Need::Admin, 200),
            "/v1/modules/sandbox".to_owned(),
            Some(json!({"description": world.unique("Changed by the matrix ")})),
        ),
        ("delete", "/v1/modules/{code}") => {
            let code = world.unique("doomed_");
            world
                .admin
                .post_expect(
                    "/v1/modules",
                    &json!({"code": code, "name": "Doomed", "unit": "per_customer"}),
                    201,
                )
                .await;
            (
                Rule::Licence(Need::Admin, 204),
                format!("/v1/modules/{code}"),
                None,
            )
        }
        ("put", "/v1/mailboxes/{id}/modules/{code}") if !is_parent => (
            Rule::Node(Need::Manage, 200),
            format!("/v1/mailboxes/{}/modules/lft", world.mailboxes[t]),
            None,
        ),
        ("delete", "/v1/mailboxes/{id}/modules/{code}") if !is_parent => {
            let path = format!("/v1/mailboxes/{}/modules/lft", world.mailboxes[t]);
            world.admin.put_expect(&path, &json!({}), 200).await;
            (Rule::Node(Need::Manage, 204), path, None)
        }
        ("put" | "delete", "/v1/mailboxes/{id}/modules/{code}") => return None,
        ("get", "/v1/nodes/{id}/modules") => (
            Rule::Node(Need::Read, if is_parent { 422 } else { 200 }),
            format!("/v1/nodes/{t}/modules"),
            None,
        ),
        ("get", "/v1/nodes/{id}/modules/{code}/mailboxes") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/nodes/{t}/modules/base/mailboxes"),
            None,
        ),
        ("put", "/v1/nodes/{id}/modules/{code}") => (
            Rule::Node(Need::Manage, if is_parent { 422 } else { 200 }),
            format!("/v1/nodes/{t}/modules/branding"),
            None,
        ),
        ("delete", "/v1/nodes/{id}/modules/{code}") => {
            let path = format!("/v1/nodes/{t}/modules/branding");
            if !is_parent {
                world.admin.put_expect(&path, &json!({}), 200).await;
            }
            (
                Rule::Node(Need::Manage, if is_parent { 422 } else { 204 }),
                path,
                None,
            )
        }
        // The children with their usage: the same rule as the plain list.
        ("get", "/v1/nodes/{id}/children") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/nodes/{t}/children?include=usage"),
            None,
        ),
        ("get", "/v1/nodes/{id}")
        | ("get", "/v1/nodes/{id}/usage")
        | ("get", "/v1/nodes/{id}/usage/history")
        | ("get", "/v1/nodes/{id}/statistics")
        | ("get", "/v1/nodes/{id}/statistics.csv")
        | ("get", "/v1/nodes/{id}/audit")
        | ("get", "/v1/nodes/{id}/allocations")
        | ("get", "/v1/nodes/{id}/oversell")
        | ("get", "/v1/nodes/{id}/accounts")
        | ("get", "/v1/nodes/{id}/api-keys") => (
            Rule::Node(Need::Read, 200),
            template.replace("{id}", t),
            None,
        ),
        ("patch", "/v1/nodes/{id}") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/nodes/{t}"),
            Some(json!({"description": "matrix"})),
        ),
        ("delete", "/v1/nodes/{id}") => {
            if !is_parent {
                return None;
            }
            let d = world.disposable_customer(t).await;
            (Rule::Node(Need::Admin, 204), format!("/v1/nodes/{d}"), None)
        }
        ("post", "/v1/nodes/{id}/move") => {
            if !is_parent {
                return None;
            }
            let d = world.disposable_customer(t).await;
            (
                Rule::Node(Need::Admin, 200),
                format!("/v1/nodes/{d}/move"),
                Some(json!({"parent_id": t})),
            )
        }
        ("post", "/v1/nodes/{id}/children") => (
            Rule::Node(Need::Admin, if is_parent { 201 } else { 422 }),
            format!("/v1/nodes/{t}/children"),
            Some(json!({"kind": "customer", "name": world.unique("Child ")})),
        ),
        ("post", "/v1/nodes/{id}/allocations") => (
            Rule::Node(Need::AdminAbove, 201),
            format!("/v1/nodes/{t}/allocations"),
            Some(json!({"resource": "users", "amount": 0})),
        ),
        // Only an admin strictly above may let a node oversell: a reseller cannot raise its own.
        ("put", "/v1/nodes/{id}/oversell") => (
            Rule::Node(Need::AdminAbove, if is_parent { 200 } else { 422 }),
            format!("/v1/nodes/{t}/oversell"),
            Some(json!({"ratios": {"users": 1.5}})),
        ),
        ("get", "/v1/allocations/{id}") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/allocations/{}", world.allocations[t]),
            None,
        ),
        ("patch", "/v1/allocations/{id}") => (
            Rule::Node(Need::AdminAbove, 200),
            format!("/v1/allocations/{}", world.allocations[t]),
            Some(json!({"description": "matrix"})),
        ),
        ("post", "/v1/nodes/{id}/plans") => (
            Rule::Node(Need::Admin, if is_parent { 201 } else { 422 }),
            format!("/v1/nodes/{t}/plans"),
            Some(
                json!({"code": world.unique("matrix-"), "name": "Matrix", "resources": {"users": 1}}),
            ),
        ),
        ("get", "/v1/nodes/{id}/plans") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/nodes/{t}/plans"),
            None,
        ),
        ("get" | "patch" | "delete", "/v1/plans/{id}")
        | ("get", "/v1/plans/{id}/versions")
        | ("post", "/v1/plans/{id}/sync")
            if !is_parent =>
        {
            return None;
        }
        ("get", "/v1/plans/{id}") | ("get", "/v1/plans/{id}/versions") => (
            Rule::Plan(Need::Read, 200),
            template.replace("{id}", &world.plans[t]),
            None,
        ),
        ("patch", "/v1/plans/{id}") => (
            Rule::Plan(Need::Admin, 200),
            format!("/v1/plans/{}", world.plans[t]),
            Some(json!({"description": world.unique("matrix ")})),
        ),
        ("delete", "/v1/plans/{id}") => {
            let body = json!({"code": world.unique("doomed-"), "name": "Doomed", "resources": {}});
            let created = world
                .admin
                .post_expect(&format!("/v1/nodes/{t}/plans"), &body, 201)
                .await;
            (
                Rule::Plan(Need::Admin, 204),
                format!("/v1/plans/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        // Any admin who reads the plan may sync it: its own customers below move (none here).
        ("post", "/v1/plans/{id}/sync") => (
            Rule::Plan(Need::AnyAdmin, 200),
            format!("/v1/plans/{}/sync", world.plans[t]),
            None,
        ),
        // Only the parent side puts a customer on a plan, as it grants its allocations.
        ("put", "/v1/nodes/{id}/plan") => (
            Rule::Node(Need::AdminAbove, if is_parent { 422 } else { 200 }),
            format!("/v1/nodes/{t}/plan"),
            Some(json!({"plan": world.empty_plan})),
        ),
        ("delete", "/v1/nodes/{id}/plan") => {
            if is_parent {
                return None;
            }
            let path = format!("/v1/nodes/{t}/plan");
            world
                .admin
                .put_expect(&path, &json!({"plan": world.empty_plan}), 200)
                .await;
            (Rule::Node(Need::AdminAbove, 204), path, None)
        }
        ("post", "/v1/nodes/{id}/accounts") => (
            Rule::Node(Need::Admin, 201),
            format!("/v1/nodes/{t}/accounts"),
            Some(
                json!({"username": world.unique("matrix-user-"), "email": "m@x.test", "role": "viewer", "password": "matrix password 1"}),
            ),
        ),
        ("get", "/v1/accounts/{id}") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/accounts/{}", world.accounts[t]),
            None,
        ),
        ("patch", "/v1/accounts/{id}") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/accounts/{}", world.accounts[t]),
            Some(json!({"email": "changed@x.test"})),
        ),
        ("delete", "/v1/accounts/{id}") => {
            let body = json!({"username": world.unique("doomed-"), "email": "d@x.test", "role": "viewer", "password": "doomed password 1"});
            let created = world
                .admin
                .post_expect(&format!("/v1/nodes/{t}/accounts"), &body, 201)
                .await;
            (
                Rule::Node(Need::Admin, 204),
                format!("/v1/accounts/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        ("post", "/v1/nodes/{id}/api-keys") => (
            Rule::Node(Need::Admin, 201),
            format!("/v1/nodes/{t}/api-keys"),
            Some(json!({"name": "matrix", "role": "check"})),
        ),
        ("get", "/v1/api-keys/{id}") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/api-keys/{}", world.api_keys[t]),
            None,
        ),
        ("patch", "/v1/api-keys/{id}") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/api-keys/{}", world.api_keys[t]),
            Some(json!({"name": world.unique("renamed key ")})),
        ),
        ("delete", "/v1/api-keys/{id}") => {
            let (_, created) = api_key(world.app, &world.admin, t, "check").await;
            (
                Rule::Node(Need::Admin, 204),
                format!("/v1/api-keys/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        ("post", "/v1/nodes/{id}/domains") => (
            Rule::Node(Need::Manage, if is_parent { 422 } else { 201 }),
            format!("/v1/nodes/{t}/domains"),
            Some(json!({"name": format!("{}.example", world.unique("m"))})),
        ),
        ("get", "/v1/nodes/{id}/domains") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/nodes/{t}/domains"),
            None,
        ),
        ("get", "/v1/domains/{id}") if !is_parent => (
            Rule::Node(Need::Read, 200),
            format!("/v1/domains/{}", world.domains[t]),
            None,
        ),
        ("patch", "/v1/domains/{id}") if !is_parent => (
            Rule::Node(Need::Manage, 200),
            format!("/v1/domains/{}", world.domains[t]),
            Some(json!({"description": "matrix"})),
        ),
        ("post", "/v1/domains/{id}/verify") if !is_parent => (
            // No TXT record is published: an allowed caller learns it is missing.
            Rule::Node(Need::Manage, 409),
            format!("/v1/domains/{}/verify", world.domains[t]),
            None,
        ),
        ("post", "/v1/domains/{id}/route/test") if !is_parent => (
            // The matrix's domains have no route: an allowed caller learns so, and nothing is
            // connected to.
            Rule::Node(Need::Manage, 409),
            format!("/v1/domains/{}/route/test", world.domains[t]),
            None,
        ),
        ("delete", "/v1/domains/{id}") if !is_parent => {
            let body = json!({"name": format!("{}.example", world.unique("doomed"))});
            let created = world
                .admin
                .post_expect(&format!("/v1/nodes/{t}/domains"), &body, 201)
                .await;
            (
                Rule::Node(Need::Manage, 204),
                format!("/v1/domains/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        ("get" | "patch" | "delete", "/v1/domains/{id}")
        | ("post", "/v1/domains/{id}/verify" | "/v1/domains/{id}/route/test") => {
            return None;
        }
        ("post", "/v1/nodes/{id}/mailboxes") => {
            let domain = world
                .domain_names
                .get(t)
                .map_or("nowhere.example", String::as_str);
            (
                Rule::Node(Need::Manage, if is_parent { 422 } else { 201 }),
                format!("/v1/nodes/{t}/mailboxes"),
                Some(json!({"address": format!("{}@{domain}", world.unique("user"))})),
            )
        }
        ("post", "/v1/nodes/{id}/mailboxes/import") => {
            let domain = world
                .domain_names
                .get(t)
                .map_or("nowhere.example", String::as_str);
            (
                Rule::Node(Need::Manage, if is_parent { 422 } else { 201 }),
                format!("/v1/nodes/{t}/mailboxes/import"),
                Some(json!([{"address": format!("{}@{domain}", world.unique("imported"))}])),
            )
        }
        ("get", "/v1/nodes/{id}/mailboxes") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/nodes/{t}/mailboxes"),
            None,
        ),
        ("get", "/v1/mailboxes/{id}") if !is_parent => (
            Rule::Node(Need::Read, 200),
            format!("/v1/mailboxes/{}", world.mailboxes[t]),
            None,
        ),
        ("patch", "/v1/mailboxes/{id}") if !is_parent => (
            Rule::Node(Need::Manage, 200),
            format!("/v1/mailboxes/{}", world.mailboxes[t]),
            Some(json!({"display_name": "Matrix"})),
        ),
        ("post", "/v1/mailboxes/{id}/disable") if !is_parent => (
            Rule::Node(Need::Manage, 200),
            format!("/v1/mailboxes/{}/disable", world.mailboxes[t]),
            None,
        ),
        ("post", "/v1/mailboxes/{id}/enable") if !is_parent => (
            Rule::Node(Need::Manage, 200),
            format!("/v1/mailboxes/{}/enable", world.mailboxes[t]),
            None,
        ),
        ("delete", "/v1/mailboxes/{id}") if !is_parent => {
            let body =
                json!({"address": format!("{}@{}", world.unique("doomed"), world.domain_names[t])});
            let created = world
                .admin
                .post_expect(&format!("/v1/nodes/{t}/mailboxes"), &body, 201)
                .await;
            let id = created["id"].as_str().unwrap().to_owned();
            world.admin.disable_mailbox(&id).await;
            (
                Rule::Node(Need::Manage, 204),
                format!("/v1/mailboxes/{id}"),
                None,
            )
        }
        ("post", "/v1/mailboxes/{id}/aliases") if !is_parent => (
            Rule::Node(Need::Manage, 201),
            format!("/v1/mailboxes/{}/aliases", world.mailboxes[t]),
            Some(
                json!({"address": format!("{}@{}", world.unique("alias"), world.domain_names[t])}),
            ),
        ),
        ("get", "/v1/mailboxes/{id}/aliases") if !is_parent => (
            Rule::Node(Need::Read, 200),
            format!("/v1/mailboxes/{}/aliases", world.mailboxes[t]),
            None,
        ),
        ("delete", "/v1/aliases/{id}") if !is_parent => {
            let body =
                json!({"address": format!("{}@{}", world.unique("gone"), world.domain_names[t])});
            let created = world
                .admin
                .post_expect(
                    &format!("/v1/mailboxes/{}/aliases", world.mailboxes[t]),
                    &body,
                    201,
                )
                .await;
            (
                Rule::Node(Need::Manage, 204),
                format!("/v1/aliases/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        ("post" | "get", "/v1/mailboxes/{id}/aliases") | ("delete", "/v1/aliases/{id}") => {
            return None;
        }
        ("post", "/v1/nodes/{id}/groups") => (
            Rule::Node(Need::Manage, if is_parent { 422 } else { 201 }),
            format!("/v1/nodes/{t}/groups"),
            Some(json!({"name": world.unique("Group ")})),
        ),
        ("get", "/v1/nodes/{id}/groups") => (
            Rule::Node(Need::Read, 200),
            format!("/v1/nodes/{t}/groups"),
            None,
        ),
        ("get", "/v1/groups/{id}") if !is_parent => (
            Rule::Node(Need::Read, 200),
            format!("/v1/groups/{}", world.groups[t]),
            None,
        ),
        ("delete", "/v1/groups/{id}") if !is_parent => {
            let created = world
                .admin
                .post_expect(
                    &format!("/v1/nodes/{t}/groups"),
                    &json!({"name": world.unique("Doomed ")}),
                    201,
                )
                .await;
            (
                Rule::Node(Need::Manage, 204),
                format!("/v1/groups/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        ("put" | "delete", "/v1/groups/{id}/members/{mailbox_id}") if !is_parent => (
            Rule::Node(Need::Manage, 200),
            format!(
                "/v1/groups/{}/members/{}",
                world.groups[t], world.mailboxes[t]
            ),
            None,
        ),
        ("post", "/v1/nodes/{id}/webhooks") => (
            Rule::Node(Need::Admin, 201),
            format!("/v1/nodes/{t}/webhooks"),
            Some(json!({"url": MATRIX_HOOK, "events": ["node.created"]})),
        ),
        ("get", "/v1/nodes/{id}/webhooks") | ("get", "/v1/nodes/{id}/outbox") => (
            Rule::Node(Need::Admin, 200),
            template.replace("{id}", t),
            None,
        ),
        ("get", "/v1/webhooks/{id}") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/webhooks/{}", world.webhooks[t]),
            None,
        ),
        ("patch", "/v1/webhooks/{id}") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/webhooks/{}", world.webhooks[t]),
            Some(json!({"description": world.unique("matrix ")})),
        ),
        ("post", "/v1/webhooks/{id}/rotate-secret") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/webhooks/{}/rotate-secret", world.webhooks[t]),
            None,
        ),
        ("delete", "/v1/webhooks/{id}") => {
            let created = world
                .admin
                .post_expect(
                    &format!("/v1/nodes/{t}/webhooks"),
                    &json!({"url": MATRIX_HOOK, "events": ["node.created"]}),
                    201,
                )
                .await;
            (
                Rule::Node(Need::Admin, 204),
                format!("/v1/webhooks/{}", created["id"].as_str().unwrap()),
                None,
            )
        }
        // The matrix's messages are pending (their target refuses connections, and the next
        // attempt is far off): an allowed caller learns only a failed message is sent again.
        ("post", "/v1/outbox/{id}/retry") => (
            Rule::Node(Need::Admin, 409),
            format!("/v1/outbox/{}/retry", world.messages[t]),
            None,
        ),
        ("get" | "delete", "/v1/groups/{id}")
        | ("put" | "delete", "/v1/groups/{id}/members/{mailbox_id}") => return None,
        ("get" | "patch" | "delete", "/v1/mailboxes/{id}")
        | ("post", "/v1/mailboxes/{id}/disable" | "/v1/mailboxes/{id}/enable") => return None,
        // Settings: admins and managers read them, admins change them.
        (
            "get",
            "/v1/nodes/{id}/settings/{group}" | "/v1/nodes/{id}/settings/{group}/effective",
        ) => (
            Rule::Node(Need::Manage, 200),
            template
                .replace("{id}", t)
                .replace("{group}", "mail_server"),
            None,
        ),
        ("put", "/v1/nodes/{id}/settings/{group}") => (
            Rule::Node(Need::Admin, 200),
            format!("/v1/nodes/{t}/settings/notifications"),
            Some(json!({"quota_thresholds": [50, 100]})),
        ),
        ("delete", "/v1/nodes/{id}/settings/{group}") => {
            // Something to clear, so that an allowed call changes something.
            let path = format!("/v1/nodes/{t}/settings/support");
            let set = json!({"attach_system_info": true});
            world.admin.put_expect(&path, &set, 200).await;
            (Rule::Node(Need::Admin, 204), path, None)
        }
        ("post", "/v1/nodes/{id}/settings/mail_server/test") => (
            // No mail server applies in the matrix: an allowed caller learns so, and nothing is
            // sent.
            Rule::Node(Need::Admin, 409),
            format!("/v1/nodes/{t}/settings/mail_server/test"),
            Some(json!({"to": "matrix@example.com"})),
        ),
        _ => panic!(
            "{} {template} has no row in the isolation matrix: add one",
            method.to_uppercase()
        ),
    };
    Some(entry)
}

/// How many audit events a successful call of the write route `method template` with `body`
/// leaves, and whether a success may leave none because it changed nothing (a repeat of what is
/// already so: disabling a disabled mailbox, moving a node under its own parent). Every change is
/// one event unless listed here; every refusal leaves none (the loop checks both).
fn audited(method: &str, template: &str, body: Option<&Value>) -> (i64, bool) {
    match (method, template) {
        // Not changes: a login, and checks (whose enrolments are each one `mailbox.enrol`; the
        // matrix's checks name nothing to enrol).
        ("post", "/v1/auth/token" | "/v1/check" | "/v1/check/batch") => (0, false),
        // The matrix's plans have no customers behind: a sync moves nobody.
        ("post", "/v1/plans/{id}/sync") => (0, false),
        // The licence is replaced whole: each line that counted is ended, each new one created.
        ("put", "/v1/licence") => (2 * LICENCE.len() as i64, false),
        // One `mailbox.create` per imported row.
        ("post", "/v1/nodes/{id}/mailboxes/import") => (
            body.and_then(Value::as_array)
                .map_or(0, |rows| rows.len() as i64),
            false,
        ),
        (
            "post",
            "/v1/mailboxes/{id}/disable" | "/v1/mailboxes/{id}/enable" | "/v1/nodes/{id}/move",
        )
        | ("put" | "delete", "/v1/groups/{id}/members/{mailbox_id}")
        | ("put", "/v1/mailboxes/{id}/modules/{code}" | "/v1/nodes/{id}/modules/{code}")
        // Setting a ratio a node has already changes nothing.
        | ("put", "/v1/nodes/{id}/oversell") => {
            (1, true)
        }
        _ => (1, false),
    }
}

/// The status the access rules give.
fn expected(identity: &Identity, rule: Rule, target: &Target, owner_path: &str) -> u16 {
    let principal = match (rule, &identity.principal) {
        (Rule::Public(status), _) => return status,
        (_, None) => return 401,
        (_, Some(principal)) => principal,
    };
    let (node_path, role) = principal;
    let (need, ok, visible, own) = match rule {
        Rule::Public(_) => unreachable!(),
        Rule::Authenticated(status) => return status,
        Rule::Licence(need, ok) => (need, ok, node_path == owner_path, true),
        Rule::Catalogue(ok) => (Need::Read, ok, true, true),
        Rule::Node(need, ok) => (
            need,
            ok,
            target.path.starts_with(node_path.as_str()),
            target.path == *node_path,
        ),
        Rule::Plan(need, ok) => {
            let above = target.path.starts_with(node_path.as_str());
            if !(above || node_path.starts_with(target.path.as_str())) {
                return 404;
            }
            if role == "check" {
                return 403;
            }
            return match need {
                Need::Read => ok,
                Need::Admin if role == "admin" && above => ok,
                Need::AnyAdmin if role == "admin" => ok,
                _ => 403,
            };
        }
    };
    if !visible {
        return 404;
    }
    if role == "check" {
        return 403;
    }
    match need {
        Need::Read => ok,
        Need::Manage if role == "admin" || role == "manager" => ok,
        Need::Admin if role == "admin" => ok,
        Need::AdminAbove if role == "admin" && !own => ok,
        Need::AnyAdmin if role == "admin" => ok,
        _ => 403,
    }
}

fn token(claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(Keys::from_secret(secret).kid().to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn every_route_answers_every_caller_exactly_as_the_rules_say() {
    let dns = crate::dns::DnsServer::start().await;
    let app = spawn_app_with(|config| {
        config.jwt_secret = Some(crate::helpers::secret_text(&SECRET));
        config.dns_resolver = dns.addr;
        // The outbox's messages stay pending while the matrix runs.
        config.outbox_backoff_ms = 3_600_000;
    })
    .await;
    let admin = app.as_admin().await;
    let tree = seed_tree(&admin).await;
    // Room for every domain the matrix registers, and for the module seats it assigns.
    admin.set_licence(licence()).await;
    for (node, units) in [
        (&tree.a, 200),
        (&tree.a1, 150),
        (&tree.c1, 100),
        (&tree.b, 200),
        (&tree.c2, 100),
    ] {
        for resource in ["domains", "module:lft", "module:branding"] {
            admin.grant(node, resource, units).await;
        }
    }

    // The targets, with their paths (a node's path is its ancestors' ids).
    let mut targets = Vec::new();
    let parents: HashMap<&str, Option<&str>> = HashMap::from([
        (tree.owner.as_str(), None),
        (tree.a.as_str(), Some(tree.owner.as_str())),
        (tree.b.as_str(), Some(tree.owner.as_str())),
        (tree.a1.as_str(), Some(tree.a.as_str())),
        (tree.c1.as_str(), Some(tree.a1.as_str())),
        (tree.c2.as_str(), Some(tree.b.as_str())),
    ]);
    let path_of = |id: &str| {
        let mut chain = vec![id.to_owned()];
        let mut at = id;
        while let Some(Some(parent)) = parents.get(at) {
            chain.push((*parent).to_owned());
            at = parent;
        }
        chain.reverse();
        format!("/{}/", chain.join("/"))
    };
    for (label, id, kind) in [
        ("owner", &tree.owner, "owner"),
        ("A", &tree.a, "reseller"),
        ("A1", &tree.a1, "reseller"),
        ("C1", &tree.c1, "customer"),
        ("B", &tree.b, "reseller"),
        ("C2", &tree.c2, "customer"),
    ] {
        let node = admin.get_ok(&format!("/v1/nodes/{id}")).await;
        targets.push(Target {
            label,
            id: id.clone(),
            path: path_of(id),
            name: node["name"].as_str().unwrap().to_owned(),
            kind,
        });
    }
    let owner_path = targets[0].path.clone();

    // Objects at every target: an allocation (the owner's: a licence line), an account, a key.
    let mut world = World {
        app: &app,
        admin,
        allocations: HashMap::new(),
        accounts: HashMap::new(),
        api_keys: HashMap::new(),
        domains: HashMap::new(),
        domain_names: HashMap::new(),
        mailboxes: HashMap::new(),
        groups: HashMap::new(),
        webhooks: HashMap::new(),
        plans: HashMap::new(),
        empty_plan: String::new(),
        messages: HashMap::new(),
        counter: Default::default(),
    };
    let licence = world.admin.get_ok("/v1/licence").await;
    world.allocations.insert(
        tree.owner.clone(),
        licence["resources"][0]["id"].as_str().unwrap().to_owned(),
    );
    for target in &targets[1..] {
        let listed = world
            .admin
            .get_ok(&format!("/v1/nodes/{}/allocations", target.id))
            .await;
        world.allocations.insert(
            target.id.clone(),
            listed["items"][0]["id"].as_str().unwrap().to_owned(),
        );
    }
    for target in &targets {
        let body = json!({"username": world.unique("dummy-"), "email": "dummy@x.test", "role": "viewer", "password": "dummy password 1"});
        let created = world
            .admin
            .post_expect(&format!("/v1/nodes/{}/accounts", target.id), &body, 201)
            .await;
        world.accounts.insert(
            target.id.clone(),
            created["id"].as_str().unwrap().to_owned(),
        );
        let (_, key) = api_key(&app, &world.admin, &target.id, "viewer").await;
        world
            .api_keys
            .insert(target.id.clone(), key["id"].as_str().unwrap().to_owned());
        if target.kind == "customer" {
            let body = json!({"name": format!("{}.example", world.unique("fixed"))});
            let created = world
                .admin
                .post_expect(&format!("/v1/nodes/{}/domains", target.id), &body, 201)
                .await;
            world.domains.insert(
                target.id.clone(),
                created["id"].as_str().unwrap().to_owned(),
            );
            let name = created["name"].as_str().unwrap().to_owned();
            let body = json!({"address": format!("fixed@{name}")});
            let mailbox = world
                .admin
                .post_expect(&format!("/v1/nodes/{}/mailboxes", target.id), &body, 201)
                .await;
            world.mailboxes.insert(
                target.id.clone(),
                mailbox["id"].as_str().unwrap().to_owned(),
            );
            world.domain_names.insert(target.id.clone(), name);
            let group = world
                .admin
                .post_expect(
                    &format!("/v1/nodes/{}/groups", target.id),
                    &json!({"name": "Fixed"}),
                    201,
                )
                .await;
            world
                .groups
                .insert(target.id.clone(), group["id"].as_str().unwrap().to_owned());
            // Room for every alias the matrix adds.
            let room = json!({"max_aliases_per_mailbox": 1000});
            world
                .admin
                .patch_ok(&format!("/v1/nodes/{}", target.id), &room)
                .await;
        }
    }
    // A plan at every target that sells, and an empty one of the owner's for customers.
    for target in targets.iter().filter(|t| t.kind != "customer") {
        let body = json!({"code": "fixed", "name": "Fixed", "resources": {"users": 1}});
        let created = world
            .admin
            .post_expect(&format!("/v1/nodes/{}/plans", target.id), &body, 201)
            .await;
        world.plans.insert(
            target.id.clone(),
            created["id"].as_str().unwrap().to_owned(),
        );
    }
    let empty = json!({"code": "empty", "name": "Empty", "resources": {}});
    let created = world
        .admin
        .post_expect(&format!("/v1/nodes/{}/plans", tree.owner), &empty, 201)
        .await;
    world.empty_plan = created["id"].as_str().unwrap().to_owned();

    // A subscription at every target, and a message to it.
    for target in &targets {
        let created = world
            .admin
            .post_expect(
                &format!("/v1/nodes/{}/webhooks", target.id),
                &json!({"url": MATRIX_HOOK, "events": ["node.updated"]}),
                201,
            )
            .await;
        world.webhooks.insert(
            target.id.clone(),
            created["id"].as_str().unwrap().to_owned(),
        );
    }
    for target in &targets {
        let path = format!("/v1/nodes/{}", target.id);
        world
            .admin
            .patch_ok(&path, &json!({"description": "queued"}))
            .await;
        let outbox = world
            .admin
            .get_ok(&format!("/v1/nodes/{}/outbox", target.id))
            .await;
        let own = outbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["node_id"] == target.id.as_str())
            .expect("a message to the target's own subscription");
        world
            .messages
            .insert(target.id.clone(), own["id"].as_str().unwrap().to_owned());
    }
    let login = json!({"username": "matrix-login", "email": "l@x.test", "role": "viewer", "password": "matrix login password"});
    world
        .admin
        .post_expect(&format!("/v1/nodes/{}/accounts", tree.c2), &login, 201)
        .await;

    // The callers.
    let mut identities = vec![
        Identity {
            label: "no credentials".into(),
            token: None,
            principal: None,
        },
        Identity {
            label: "malformed token".into(),
            token: Some("not.a.token".into()),
            principal: None,
        },
    ];
    let me = world.admin.get_ok("/v1/me").await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"iss": "allot", "aud": "allot", "sub": me["id"], "node": me["node_id"], "role": "admin",
                        "iat": now - 3600, "nbf": now - 3600, "exp": now - 1800});
    identities.push(Identity {
        label: "expired token".into(),
        token: Some(token(&claims, &SECRET)),
        principal: None,
    });
    let mut fresh = claims.clone();
    fresh["exp"] = json!(now + 600);
    identities.push(Identity {
        label: "token signed with another key".into(),
        token: Some(token(&fresh, &[1; 32])),
        principal: None,
    });
    let (revoked, revoked_key) = api_key(&app, &world.admin, &tree.a, "admin").await;
    world
        .admin
        .delete_expect(
            &format!("/v1/api-keys/{}", revoked_key["id"].as_str().unwrap()),
            204,
        )
        .await;
    identities.push(Identity {
        label: "revoked API key".into(),
        token: Some(revoked.token.clone()),
        principal: None,
    });

    let by_label: HashMap<&str, &Target> = targets.iter().map(|t| (t.label, t)).collect();
    identities.push(Identity {
        label: "admin@owner".into(),
        token: Some(world.admin.token.clone()),
        principal: Some((owner_path.clone(), "admin".into())),
    });
    for (node, role, username) in [
        ("A", "admin", "admin-a"),
        ("A", "manager", "manager-a"),
        ("A", "viewer", "viewer-a"),
        ("A1", "admin", "admin-a1"),
    ] {
        let target = by_label[node];
        let body = json!({"username": username, "email": "p@x.test", "role": role, "password": "principal password"});
        world
            .admin
            .post_expect(&format!("/v1/nodes/{}/accounts", target.id), &body, 201)
            .await;
        let response = app.login(username, "principal password").await;
        let token = response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        identities.push(Identity {
            label: format!("{role} account@{node}"),
            token: Some(token),
            principal: Some((target.path.clone(), role.into())),
        });
    }
    for (node, role) in [("A", "check"), ("C1", "viewer"), ("B", "admin")] {
        let target = by_label[node];
        let (key, _) = api_key(&app, &world.admin, &target.id, role).await;
        identities.push(Identity {
            label: format!("{role} key@{node}"),
            token: Some(key.token),
            principal: Some((target.path.clone(), role.into())),
        });
    }

    // Every route of the document, every target, every caller.
    let document: Value = app.get("/openapi.json").await.json().await.unwrap();
    let mut failures = Vec::new();
    let mut cells = 0;
    let pool = allot::store::connect(&app.database_url, 1).unwrap();
    let events = || {
        use allot::store::schema::audit_events;
        use diesel::prelude::*;
        audit_events::table
            .count()
            .get_result::<i64>(&mut *pool.get().unwrap())
            .unwrap()
    };
    for (template, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            for target in &targets {
                for identity in &identities {
                    let Some((rule, path, body)) = route(&world, method, template, target).await
                    else {
                        continue;
                    };
                    let mut request = app
                        .client
                        .request(method.to_uppercase().parse().unwrap(), app.url(&path));
                    if let Some(token) = &identity.token {
                        request = request.bearer_auth(token);
                    }
                    if let Some(body) = &body {
                        request = request.json(body);
                    }
                    let before = (method != "get").then(events);
                    let response = request.send().await.unwrap();
                    let status = response.status().as_u16();
                    if let Some(before) = before {
                        let added = events() - before;
                        let (change, may_change_nothing) = audited(method, template, body.as_ref());
                        let fine = if (200..300).contains(&status) {
                            added == change || (may_change_nothing && added == 0)
                        } else {
                            added == 0
                        };
                        if !fine {
                            failures.push(format!(
                                "{} {path} [{}] as {}: {status} left {added} audit event(s), want {}",
                                method.to_uppercase(),
                                target.label,
                                identity.label,
                                if (200..300).contains(&status) { change } else { 0 },
                            ));
                        }
                    }
                    let text = response.text().await.unwrap_or_default();
                    let want = expected(identity, rule, target, &owner_path);
                    cells += 1;
                    if status != want {
                        failures.push(format!(
                            "{} {path} [{}] as {}: got {status}, want {want}: {}",
                            method.to_uppercase(),
                            target.label,
                            identity.label,
                            &text[..text.len().min(200)]
                        ));
                    }
                    if want == 404 || want == 401 {
                        for secret in [&target.id, &target.name] {
                            if text.contains(secret.as_str()) {
                                failures.push(format!(
                                    "{} {path} [{}] as {} leaks {secret}",
                                    method.to_uppercase(),
                                    target.label,
                                    identity.label
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(cells > 1000, "only {cells} cells ran");
    app.assert_verified();
}
