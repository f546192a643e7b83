//! Workflows: every write the service performs, once, whoever asks for it (an HTTP handler, the
//! check's enrolment, the command line, an expiry).
//!
//! One module per aggregate. A workflow is a function that runs inside the caller's write
//! transaction (`store::write_tx`; the handler wraps idempotency around it), takes the node the
//! guard let through ([`Authorised`](crate::auth::guard::Authorised), so it cannot be reached
//! without authorisation) and a [`Ctx`] saying who acts, asks [`domain`](crate::domain) to decide,
//! writes through [`store`](crate::store), appends the audit record, and returns what it made or a
//! typed refusal ([`ApiError`](crate::error::ApiError)'s variants: `QuotaExceeded`, `AddressTaken`,
//! `NotEmpty`, …). Nothing here knows HTTP: no views, no headers, no status codes.
//!
//! Dependencies point down only: `api`, `check` and `main` call services; services call `store`
//! and `domain`, never `api`.

pub(crate) mod aliases;
pub(crate) mod allocations;
pub mod domains;
pub(crate) mod groups;
pub(crate) mod history;
pub mod licence;
pub(crate) mod mailboxes;
pub(crate) mod modules;
pub(crate) mod nodes;
pub(crate) mod notices;
pub(crate) mod outbox;
pub(crate) mod oversell;
pub(crate) mod plans;
pub(crate) mod principals;
pub(crate) mod retention;
pub(crate) mod seats;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod webhooks;

use chrono::NaiveDate;

use crate::auth::Principal;
use crate::domain::audit::Action;
use crate::domain::ids::NodeId;
use crate::store::DbConnection;
use crate::store::audit::{self, Actor};

/// Who acts, for the audit trail, and the day limits are judged on.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub actor: &'a Actor,
    /// The request's id, recorded with every audit record it causes.
    pub request_id: Option<&'a str>,
    /// The request's client (`edge::client`), recorded likewise.
    pub client_address: Option<std::net::IpAddr>,
    /// The day limits are judged on: today, in UTC.
    pub today: NaiveDate,
}

impl<'a> Ctx<'a> {
    /// A principal's request, judged today.
    pub fn of(principal: &'a Principal) -> Self {
        Self {
            actor: &principal.actor,
            request_id: principal.request_id.as_deref(),
            client_address: principal.client_address,
            today: principal.today,
        }
    }

    /// The service itself (first start, the command line, expiries), judged on `today`.
    pub fn system(today: NaiveDate) -> Ctx<'static> {
        Ctx {
            actor: &Actor::System,
            request_id: None,
            client_address: None,
            today,
        }
    }

    /// Appends the audit record of a change to `target` (`(kind, id)`) at `node_id`, and the
    /// webhook deliveries of the event the change is, if it is one (`outbox::emit`): one place
    /// for both, so no change is audited without its event or sent without its record.
    pub fn record(
        &self,
        conn: &mut DbConnection,
        node_id: NodeId,
        action: Action,
        target: (&str, String),
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> diesel::QueryResult<()> {
        if crate::domain::outbox::EventType::of(action).is_some() {
            outbox::emit(
                conn,
                action,
                outbox::Subject {
                    node_id,
                    kind: target.0,
                    id: &target.1,
                    // The object as it is now; for a deletion, as it was.
                    view: after.as_ref().or(before.as_ref()),
                },
            )?;
        }
        audit::record(
            conn,
            audit::Event {
                actor: self.actor,
                node_id,
                action,
                target_kind: target.0,
                target_id: target.1,
                before,
                after,
                request_id: self.request_id,
                client_address: self.client_address,
            },
        )
    }
}

/// An audit record's `before` or `after`: `view`'s fields as a JSON object (keys sorted, as
/// `serde_json` keeps them).
fn audit_json(view: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(view).expect("an audit view is plain data and always serialises")
}
