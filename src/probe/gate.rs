//! How many route tests may run: the brake that keeps the endpoint from being a port scanner.
//! The same brake, keyed by node, keeps a mail server's test message from being a mail cannon.
//!
//! Per domain, one test at a time and at most [`PER_DOMAIN_PER_MINUTE`] started in any minute;
//! per allot process, at most [`MAX_RUNNING`] at once. Keyed by domain, not by caller: a caller
//! can mint more API keys or accounts at will, but every domain costs a `domains` unit of a
//! licence, so the volume anyone can reach is bounded by what they bought (ten ports a minute per
//! domain), and each test is in the audit trail. Kept in memory per process, like the login
//! throttle: a restart forgets, and each instance behind a load balancer keeps its own counts.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::ids::DomainId;

pub(crate) const PER_DOMAIN_PER_MINUTE: usize = 10;
pub(crate) const MAX_RUNNING: usize = 16;
const WINDOW: Duration = Duration::from_secs(60);

/// Why a test may not start now, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Busy {
    /// A test of this domain is running.
    Running,
    /// This domain used its tests for the minute; the next may start after the duration.
    Spent(Duration),
    /// The process runs its maximum of tests.
    Full,
}

/// The tests running and started, per key: a domain (route tests) or a node (test messages).
#[derive(Debug)]
pub(crate) struct Gate<K = DomainId> {
    state: Mutex<State<K>>,
}

impl<K> Default for Gate<K> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                running: HashSet::new(),
                started: HashMap::new(),
            }),
        }
    }
}

#[derive(Debug)]
struct State<K> {
    running: HashSet<K>,
    started: HashMap<K, VecDeque<Instant>>,
}

/// A running test's place; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Permit<'a, K: Hash + Eq + Copy = DomainId> {
    gate: &'a Gate<K>,
    domain: K,
}

impl<K: Hash + Eq + Copy> Drop for Permit<'_, K> {
    fn drop(&mut self) {
        self.gate.lock().running.remove(&self.domain);
    }
}

impl<K: Hash + Eq + Copy> Gate<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a test of `domain` starting at `now`, or why there is none.
    pub fn admit(&self, domain: K, now: Instant) -> Result<Permit<'_, K>, Busy> {
        let mut state = self.lock();
        if state.running.contains(&domain) {
            return Err(Busy::Running);
        }
        if state.running.len() >= MAX_RUNNING {
            return Err(Busy::Full);
        }
        let starts = state.started.entry(domain).or_default();
        while starts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            starts.pop_front();
        }
        if starts.len() >= PER_DOMAIN_PER_MINUTE {
            let oldest = *starts.front().expect("a full window has an oldest start");
            return Err(Busy::Spent(
                WINDOW.saturating_sub(now.duration_since(oldest)),
            ));
        }
        starts.push_back(now);
        state.running.insert(domain);
        // Forget domains whose starts all aged out, so the map stays small.
        if state.started.len() > 10_000 {
            state.started.retain(|_, starts| {
                starts
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < WINDOW)
            });
        }
        Ok(Permit { gate: self, domain })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_test_per_domain_runs_at_a_time() {
        let gate = Gate::default();
        let (a, b) = (DomainId::generate(), DomainId::generate());
        let now = Instant::now();
        let first = gate.admit(a, now).unwrap();
        assert_eq!(gate.admit(a, now).unwrap_err(), Busy::Running);
        let other = gate.admit(b, now).unwrap();
        drop(first);
        assert!(gate.admit(a, now).is_ok());
        drop(other);
    }

    #[test]
    fn a_domain_starts_at_most_ten_tests_a_minute() {
        let gate = Gate::default();
        let domain = DomainId::generate();
        let start = Instant::now();
        for i in 0..PER_DOMAIN_PER_MINUTE {
            let at = start + Duration::from_secs(i as u64);
            drop(gate.admit(domain, at).unwrap());
        }
        let later = start + Duration::from_secs(20);
        assert_eq!(
            gate.admit(domain, later).unwrap_err(),
            Busy::Spent(Duration::from_secs(40))
        );
        assert!(
            gate.admit(domain, start + WINDOW).is_ok(),
            "the first start aged out"
        );
    }

    #[test]
    fn the_process_runs_at_most_its_maximum() {
        let gate = Gate::default();
        let now = Instant::now();
        let permits: Vec<_> = (0..MAX_RUNNING)
            .map(|_| gate.admit(DomainId::generate(), now).unwrap())
            .collect();
        assert_eq!(
            gate.admit(DomainId::generate(), now).unwrap_err(),
            Busy::Full
        );
        drop(permits);
        assert!(gate.admit(DomainId::generate(), now).is_ok());
    }
}
