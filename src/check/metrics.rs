//! What the check tells `/metrics`: answers by listener, direction, verdict and reason;
//! enrolments; the index's size and how far it trails the change feed; the Postfix listeners'
//! connections.
//!
//! Every answer's counter exists from the start (3 listeners × 2 directions × 13 reasons), held
//! in a flat table indexed by the three: counting a check is one atomic add, with no label
//! hashing on the hot path, and a dashboard sees every series at zero instead of none.

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use super::reply::{LicenceRefusals, reply};
use super::verdict::{Direction, Reason};

/// Where a check came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    Http,
    Policy,
    Socketmap,
}

impl Listener {
    const ALL: [Listener; 3] = [Self::Http, Self::Policy, Self::Socketmap];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Policy => "policy",
            Self::Socketmap => "socketmap",
        }
    }
}

/// A Postfix listener's connections: how many were accepted, and how many are open now.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    pub accepted: IntCounter,
    pub open: IntGauge,
}

#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// `[listener][direction][reason]`, flattened.
    checks: Vec<IntCounter>,
    pub enrolments: IntCounter,
    pub mailboxes: IntGauge,
    pub domains: IntGauge,
    /// Seconds since the index last replayed the change feed successfully.
    pub feed_age: IntGauge,
    /// Sequence numbers the feed still waits for (transactions that may still commit).
    pub feed_gaps: IntGauge,
    pub policy: Connections,
    pub socketmap: Connections,
}

fn slot(listener: Listener, direction: Direction, reason: Reason) -> usize {
    let reasons = Reason::ALL.len();
    let l = Listener::ALL
        .iter()
        .position(|&x| x == listener)
        .unwrap_or(0);
    let d = Direction::ALL
        .iter()
        .position(|&x| x == direction)
        .unwrap_or(0);
    let r = Reason::ALL.iter().position(|&x| x == reason).unwrap_or(0);
    (l * Direction::ALL.len() + d) * reasons + r
}

fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> prometheus::Result<C> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}

impl Metrics {
    /// Registers every series on `registry`. The verdict label follows the reply map under the
    /// operator's `licence` choice, which does not change while the process lives.
    pub fn register(registry: &Registry, licence: LicenceRefusals) -> prometheus::Result<Self> {
        let mut checks = Vec::new();
        for listener in Listener::ALL {
            for &direction in Direction::ALL {
                for reason in Reason::ALL {
                    let opts = Opts::new("allot_checks_total", "Checks answered.")
                        .const_label("listener", listener.as_str())
                        .const_label("direction", direction.as_str())
                        .const_label("reason", reason.as_str())
                        .const_label(
                            "verdict",
                            format!("{:?}", reply(reason, direction, licence).verdict)
                                .to_lowercase(),
                        );
                    checks.push(register(registry, IntCounter::with_opts(opts)?)?);
                }
            }
        }
        let connections = |listener: &str| -> prometheus::Result<Connections> {
            Ok(Connections {
                accepted: register(
                    registry,
                    IntCounter::with_opts(
                        Opts::new(
                            "allot_postfix_connections_total",
                            "Connections accepted by a Postfix listener.",
                        )
                        .const_label("listener", listener),
                    )?,
                )?,
                open: register(
                    registry,
                    IntGauge::with_opts(
                        Opts::new(
                            "allot_postfix_connections_open",
                            "Connections open on a Postfix listener.",
                        )
                        .const_label("listener", listener),
                    )?,
                )?,
            })
        };
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help)?);
        Ok(Self {
            checks,
            enrolments: register(
                registry,
                IntCounter::new(
                    "allot_check_enrolments_total",
                    "Senders registered as mailboxes by a check.",
                )?,
            )?,
            mailboxes: gauge(
                "allot_check_index_mailboxes",
                "Mailboxes the check index holds.",
            )?,
            domains: gauge(
                "allot_check_index_domains",
                "Domains the check index holds.",
            )?,
            feed_age: gauge(
                "allot_check_feed_age_seconds",
                "Seconds since the check index last replayed the change feed.",
            )?,
            feed_gaps: gauge(
                "allot_check_feed_gaps",
                "Change feed sequence numbers the index still waits for.",
            )?,
            policy: connections(Listener::Policy.as_str())?,
            socketmap: connections(Listener::Socketmap.as_str())?,
        })
    }

    /// Series not registered anywhere, for the listeners' unit tests.
    #[cfg(test)]
    pub fn unregistered() -> Self {
        Self::register(&Registry::new(), LicenceRefusals::default())
            .expect("fresh series register on a fresh registry")
    }

    /// Counts one answer.
    pub fn count(&self, listener: Listener, direction: Direction, reason: Reason) {
        if let Some(counter) = self.checks.get(slot(listener, direction, reason)) {
            counter.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_has_its_own_counter() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry, LicenceRefusals::Temporary).unwrap();
        metrics.count(Listener::Policy, Direction::Inbound, Reason::UnknownMailbox);
        metrics.count(Listener::Policy, Direction::Inbound, Reason::UnknownMailbox);
        metrics.count(Listener::Http, Direction::Outbound, Reason::UsersExhausted);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains(
            r#"allot_checks_total{direction="inbound",listener="policy",reason="unknown_mailbox",verdict="reject"} 2"#
        ), "{text}");
        assert!(text.contains(
            r#"allot_checks_total{direction="outbound",listener="http",reason="users_exhausted",verdict="defer"} 1"#
        ));
        // Every reason, in each direction, on each of the three listeners.
        assert_eq!(
            text.matches("allot_checks_total{").count(),
            Reason::ALL.len() * 2 * 3
        );
    }
}
