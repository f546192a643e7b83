//! Login throttling: at most 5 attempts per username, and per client address, are being verified or
//! have failed within 15 minutes; a further attempt answers 429 with `Retry-After`. The same for
//! usernames that exist and those that do not, and decided before any password is checked, so the
//! answer tells nothing. Kept in memory per instance: a restart forgives, and several instances
//! each allow their own five, which still bounds guessing to a handful a minute.
//!
//! An attempt takes its place *before* its password is verified ([`Throttle::reserve`], under one
//! lock for all its keys at once), not after: counting only finished failures let 40 simultaneous
//! guesses all pass the check while none had failed yet. The [`Reservation`] then becomes a
//! failure, or gives its place back on success. A reservation dropped without an outcome (the
//! client hung up during the verification) counts as a failure: hanging up must not buy a free
//! guess.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) const MAX_FAILURES: usize = 5;
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The wait a 429 names when the places are held by attempts still being verified: those end
/// within milliseconds, as failures (then the next answer names the rest of the window) or not.
pub(crate) const BUSY_WAIT: Duration = Duration::from_secs(1);

/// One key's attempts: failures within the window, oldest first, and those being verified.
#[derive(Debug, Default)]
struct Attempts {
    failed: VecDeque<Instant>,
    pending: usize,
}

impl Attempts {
    fn prune(&mut self, now: Instant) {
        while self
            .failed
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.failed.pop_front();
        }
    }

    /// How long until a place frees, if none is free.
    fn wait(&self, now: Instant) -> Option<Duration> {
        if self.failed.len() + self.pending < MAX_FAILURES {
            return None;
        }
        // Reservations never let the failures exceed the maximum, so when they fill every place
        // the oldest one frees the next.
        Some(match self.failed.len().checked_sub(MAX_FAILURES) {
            Some(oldest) => WINDOW.saturating_sub(now.duration_since(self.failed[oldest])),
            None => BUSY_WAIT,
        })
    }
}

#[derive(Debug, Default)]
pub(crate) struct Throttle {
    attempts: Mutex<HashMap<String, Attempts>>,
}

impl Throttle {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Attempts>> {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for one attempt under every one of `keys`, or, if any of them has none left,
    /// takes none and says how long to wait.
    pub fn reserve(&self, keys: Vec<String>, now: Instant) -> Result<Reservation<'_>, Duration> {
        let mut attempts = self.lock();
        let wait = keys
            .iter()
            .filter_map(|key| {
                let entry = attempts.get_mut(key)?;
                entry.prune(now);
                entry.wait(now)
            })
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for key in &keys {
            attempts.entry(key.clone()).or_default().pending += 1;
        }
        // Forget keys whose failures all aged out, so the map stays small.
        if attempts.len() > 10_000 {
            attempts.retain(|_, entry| {
                entry.prune(now);
                entry.pending > 0 || !entry.failed.is_empty()
            });
        }
        Ok(Reservation {
            throttle: self,
            keys,
            settled: false,
        })
    }
}

/// One attempt's place under each of its keys, held while its password is verified.
#[derive(Debug)]
#[must_use = "dropping a reservation counts it as a failure"]
pub(crate) struct Reservation<'a> {
    throttle: &'a Throttle,
    keys: Vec<String>,
    settled: bool,
}

impl Reservation<'_> {
    /// The password was wrong: the place stays taken, as a failure, until the window passes.
    pub fn fail(mut self, now: Instant) {
        self.settle(Some(now));
    }

    /// The password was right: the place is given back, and `forgive`'s failures (the
    /// username's, not the address's) are forgotten.
    pub fn succeed(mut self, forgive: &str) {
        self.settle(None);
        if let Some(entry) = self.throttle.lock().get_mut(forgive) {
            entry.failed.clear();
        }
    }

    /// Nothing was verified (the database could not be asked): the place is given back.
    pub fn release(mut self) {
        self.settle(None);
    }

    fn settle(&mut self, failed_at: Option<Instant>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut attempts = self.throttle.lock();
        for key in &self.keys {
            if let Some(entry) = attempts.get_mut(key) {
                entry.pending = entry.pending.saturating_sub(1);
                if let Some(at) = failed_at {
                    entry.failed.push_back(at);
                }
            }
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.settle(Some(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(user: &str, address: &str) -> Vec<String> {
        vec![format!("user:{user}"), format!("ip:{address}")]
    }

    #[test]
    fn five_attempts_at_once_take_every_place_before_any_has_failed() {
        let throttle = Throttle::default();
        let start = Instant::now();
        let held: Vec<_> = (0..MAX_FAILURES)
            .map(|i| {
                throttle
                    .reserve(keys("bob", "10.0.0.1"), start)
                    .unwrap_or_else(|_| panic!("attempt {i}"))
            })
            .collect();
        assert_eq!(
            throttle.reserve(keys("bob", "10.0.0.1"), start).err(),
            Some(BUSY_WAIT),
            "all five are being verified"
        );
        // The address's places are taken whatever the username.
        assert!(throttle.reserve(keys("alice", "10.0.0.1"), start).is_err());
        for reservation in held {
            reservation.fail(start);
        }
        let later = start + Duration::from_secs(60);
        assert_eq!(
            throttle.reserve(keys("bob", "10.0.0.2"), later).err(),
            Some(WINDOW - Duration::from_secs(60))
        );
        assert!(throttle.reserve(keys("alice", "10.0.0.2"), later).is_ok());
    }

    #[test]
    fn failures_age_out_after_the_window() {
        let throttle = Throttle::default();
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            let at = start + Duration::from_secs(i as u64);
            throttle.reserve(keys("bob", "a"), at).unwrap().fail(at);
        }
        let end = start + WINDOW;
        assert_eq!(
            throttle
                .reserve(keys("bob", "a"), end - Duration::from_secs(1))
                .err(),
            Some(Duration::from_secs(1))
        );
        // The oldest failure has aged out: one place, and only one, is free again.
        let one = throttle.reserve(keys("bob", "a"), end).expect("aged out");
        assert_eq!(
            throttle.reserve(keys("bob", "a"), end).err(),
            Some(BUSY_WAIT)
        );
        one.release();
        let all = start + WINDOW * 2;
        let places: Vec<_> = (0..MAX_FAILURES)
            .map(|_| {
                throttle
                    .reserve(keys("bob", "a"), all)
                    .expect("all aged out")
            })
            .collect();
        drop(places);
    }

    #[test]
    fn a_success_gives_its_place_back_and_forgives_the_username_only() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            throttle.reserve(keys("bob", "a"), now).unwrap().fail(now);
        }
        throttle
            .reserve(keys("bob", "a"), now)
            .unwrap()
            .succeed("user:bob");
        // The address keeps its four failures: one place is left there...
        let last = throttle.reserve(keys("carol", "a"), now).unwrap();
        assert!(throttle.reserve(keys("dave", "a"), now).is_err());
        last.release();
        // ...while the username has all five again, from another address.
        let places: Vec<_> = (0..MAX_FAILURES)
            .map(|_| throttle.reserve(keys("bob", "b"), now).unwrap())
            .collect();
        drop(places);
    }

    #[test]
    fn an_abandoned_attempt_counts_as_a_failure_and_a_refused_one_takes_no_place() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            drop(throttle.reserve(keys("bob", "a"), now).unwrap());
        }
        let wait = throttle.reserve(keys("bob", "b"), now).unwrap_err();
        assert!(wait > WINDOW - Duration::from_secs(5), "{wait:?}");
        // The refusal above took no place under address b.
        let places: Vec<_> = (0..MAX_FAILURES)
            .map(|_| throttle.reserve(keys("carol", "b"), now).unwrap())
            .collect();
        for place in places {
            place.release();
        }
        assert!(throttle.reserve(keys("carol", "b"), now).is_ok());
    }
}
