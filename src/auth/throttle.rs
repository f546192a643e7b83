//! Failed-login throttling: after 5 failures in 15 minutes for a username, or from a client
//! address, further attempts answer 429 with `Retry-After` until the oldest failure ages out.
//! The same for usernames that exist and those that do not, and decided before any password is
//! checked, so the answer tells nothing. Kept in memory per instance: a restart forgives, and
//! several instances each allow their own five, which still bounds guessing to a handful a minute.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Throttle {
    /// How long `keys` must wait, if any of them has used up its failures.
    pub fn wait(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| {
                let times = failures.get_mut(key)?;
                prune(times, now);
                (times.len() >= MAX_FAILURES)
                    .then(|| {
                        times
                            .front()
                            .map(|oldest| WINDOW.saturating_sub(now - *oldest))
                    })
                    .flatten()
            })
            .max()
    }

    pub fn fail(&self, keys: &[String], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            prune(times, now);
            times.push_back(now);
        }
        // Forget keys whose failures all aged out, so the map stays small.
        if failures.len() > 10_000 {
            failures.retain(|_, times| {
                prune(times, now);
                !times.is_empty()
            });
        }
    }

    /// A successful login clears the username's failures (not the address's).
    pub fn succeed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_for_the_rest_of_the_window() {
        let throttle = Throttle::default();
        let keys = vec!["user:bob".to_owned(), "ip:10.0.0.1".to_owned()];
        let start = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(throttle.wait(&keys, start), None, "attempt {i}");
            throttle.fail(&keys, start);
        }
        let later = start + Duration::from_secs(60);
        assert_eq!(
            throttle.wait(&keys, later),
            Some(WINDOW - Duration::from_secs(60))
        );
        assert_eq!(throttle.wait(&["user:alice".to_owned()], later), None);
        assert_eq!(throttle.wait(&keys, start + WINDOW), None, "aged out");
        throttle.succeed("user:bob");
        assert!(throttle.wait(&["user:bob".to_owned()], later).is_none());
    }
}
