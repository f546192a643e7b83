//! Login throttling: at most 5 attempts per username, and per client address, are being verified or
//! have failed within 15 minutes; a further attempt answers 429 with `Retry-After`. The same for
//! usernames that exist and those that do not, and decided before any password is checked, so the
//! answer tells nothing.
//!
//! The counts are kept in the database (`login_attempts`), so the limit holds for the installation:
//! kept in each instance's memory, N instances behind a load balancer allowed N times the guesses.
//! SQLite keeps them there too — one code path, and a restart no longer forgives.
//!
//! An attempt takes its place *before* its password is verified ([`Throttle::reserve`], in one
//! transaction for all its keys at once), not after: counting only finished failures let 40
//! simultaneous guesses all pass the check while none had failed yet. Two instances must not both
//! see the fifth place free, so the count and the insert run under a lock on the keys
//! (`store::login_attempts::lock`: an advisory lock per key on PostgreSQL, the write lock on
//! SQLite). The [`Reservation`] then becomes a failure, or gives its place back on success. A
//! reservation never settled (the client hung up during the verification, or the instance died)
//! keeps its place until the window has passed, as the failure it may have been: hanging up must
//! not buy a free guess. A refusal is first looked for without the lock: places seen taken by a
//! plain read are taken (the refusal is the one an attempt a moment earlier would have got), so a
//! flood of refused guesses reads and never queues for the lock.
//!
//! The keys are stored as their SHA-256: people type passwords into the username field. Rows past
//! the window are deleted when their key is next tried and by [`spawn_sweep`] in every instance.
//! Time is the service's clock (`crate::clock`), so the tests age attempts without waiting; the
//! instances of an installation are assumed to agree on the time (NTP), as their tokens already are.

use std::time::Duration;

use chrono::{NaiveDateTime, SubsecRound, TimeDelta};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::store::login_attempts::{self, Attempt};
use crate::store::{self, Pool};

pub(crate) const MAX_FAILURES: usize = 5;
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The wait a 429 names when the places are held by attempts still being verified: those end
/// within milliseconds, as failures (then the next answer names the rest of the window) or not.
pub(crate) const BUSY_WAIT: Duration = Duration::from_secs(1);
/// How long an attempt may be verified before its place counts as the failure it may have been
/// (for the wait a refusal names; it holds the place either way). A verification takes tens of
/// milliseconds, or seconds in a queue of hundreds.
pub(crate) const ABANDONED_AFTER: Duration = Duration::from_secs(60);
/// How often each instance deletes the attempts past the window.
const SWEEP_EVERY: Duration = Duration::from_secs(5 * 60);

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).expect("a throttle duration fits a TimeDelta")
}

/// How long until one of a key's places frees, if none is free. `attempts` are the key's within
/// the window, oldest first.
fn wait(attempts: &[&Attempt], now: NaiveDateTime) -> Option<Duration> {
    if attempts.len() < MAX_FAILURES {
        return None;
    }
    let abandoned = now - delta(ABANDONED_AFTER);
    let failed: Vec<NaiveDateTime> = attempts
        .iter()
        .filter(|a| !a.pending || a.at <= abandoned)
        .map(|a| a.at)
        .collect();
    // Reservations never let the places taken exceed the maximum, so when failures fill every
    // place the oldest one frees the next.
    Some(match failed.len().checked_sub(MAX_FAILURES) {
        Some(oldest) => (delta(WINDOW) - (now - failed[oldest]))
            .to_std()
            .unwrap_or_default(),
        None => BUSY_WAIT,
    })
}

/// The longest wait any of `key_hashes` names, if one has no place free.
fn judge(attempts: &[Attempt], key_hashes: &[String], now: NaiveDateTime) -> Option<Duration> {
    key_hashes
        .iter()
        .filter_map(|key| {
            let of_key: Vec<&Attempt> = attempts.iter().filter(|a| &a.key_hash == key).collect();
            wait(&of_key, now)
        })
        .max()
}

/// A throttle key as stored.
fn key_hash(key: &str) -> String {
    crate::auth::api_key::hash(key)
}

fn too_many(wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

pub(crate) struct Throttle {
    pool: Pool,
    clock: Clock,
}

impl Throttle {
    pub fn new(pool: Pool, clock: Clock) -> Self {
        Self { pool, clock }
    }

    fn now(clock: &Clock) -> NaiveDateTime {
        // As stored: both backends keep microseconds.
        clock.now().naive_utc().trunc_subsecs(6)
    }

    /// Takes a place for one attempt under every one of `keys`, or, if any of them has none left,
    /// takes none and answers `TooManyRequests` naming the wait. `Unavailable` when the database
    /// cannot be asked: nothing is verified then.
    pub async fn reserve(&self, keys: Vec<String>) -> Result<Reservation, ApiError> {
        let hashes: Vec<String> = keys.iter().map(|k| key_hash(k)).collect();
        let now = Self::now(&self.clock);
        let since = now - delta(WINDOW);
        let attempt = uuid::Uuid::new_v4().to_string();
        let taken = attempt.clone();
        let refused = store::run(&self.pool, move |conn| {
            if let Some(wait) = judge(&login_attempts::since(conn, &hashes, since)?, &hashes, now) {
                return Ok::<_, ApiError>(Some(wait));
            }
            store::write_tx(conn, |conn| {
                login_attempts::lock(conn, &hashes)?;
                login_attempts::expire(conn, Some(&hashes), since)?;
                let attempts = login_attempts::since(conn, &hashes, since)?;
                if let Some(wait) = judge(&attempts, &hashes, now) {
                    return Ok(Some(wait));
                }
                login_attempts::insert(conn, &taken, &hashes, now)?;
                Ok(None)
            })
        })
        .await?;
        if let Some(wait) = refused {
            return Err(too_many(wait));
        }
        Ok(Reservation {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            attempt,
        })
    }
}

/// One attempt's place under each of its keys, held while its password is verified. Dropped
/// without an outcome, it keeps its places until the window has passed.
#[must_use = "an attempt never settled keeps its places for the whole window"]
pub(crate) struct Reservation {
    pool: Pool,
    clock: Clock,
    attempt: String,
}

impl Reservation {
    /// The password was wrong: the places stay taken, as failures, until the window passes.
    pub async fn fail(self) {
        let at = Throttle::now(&self.clock);
        self.settle("fail", move |conn, attempt| {
            login_attempts::fail(conn, attempt, at)
        })
        .await;
    }

    /// The password was right: the places are given back, and `forgive`'s failures (the
    /// username's, not the address's) are forgotten.
    pub async fn succeed(self, forgive: &str) {
        let forgive = key_hash(forgive);
        let abandoned = Throttle::now(&self.clock) - delta(ABANDONED_AFTER);
        self.settle("succeed", move |conn, attempt| {
            login_attempts::delete(conn, attempt)?;
            login_attempts::forgive(conn, &forgive, abandoned)
        })
        .await;
    }

    /// Nothing was verified (the database could not be asked): the places are given back.
    pub async fn release(self) {
        self.settle("release", login_attempts::delete).await;
    }

    /// Writes the outcome. If the database cannot take it, the places stay taken until the window
    /// passes, as for an attempt never settled: an outage must not free a guess.
    async fn settle(
        self,
        outcome: &'static str,
        write: impl FnOnce(&mut store::DbConnection, &str) -> diesel::QueryResult<()> + Send + 'static,
    ) {
        let attempt = self.attempt;
        let written = store::run(&self.pool, move |conn| {
            store::write_tx(conn, |conn| write(conn, &attempt)).map_err(ApiError::from)
        })
        .await;
        if let Err(err) = written {
            tracing::warn!(error = %err, outcome, "a login attempt's outcome could not be recorded");
        }
    }
}

/// Deletes the attempts past the window now and every [`SWEEP_EVERY`], on the runtime it is
/// spawned on (so it stops with the server).
pub(crate) fn spawn_sweep(pool: Pool, clock: Clock) {
    tokio::spawn(async move {
        loop {
            let cutoff = Throttle::now(&clock) - delta(WINDOW);
            let swept = store::run(&pool, move |conn| {
                store::write_tx(conn, |conn| login_attempts::expire(conn, None, cutoff))
                    .map_err(ApiError::from)
            })
            .await;
            match swept {
                Ok(0) => {}
                Ok(deleted) => tracing::debug!(deleted, "expired login attempts deleted"),
                Err(err) => tracing::warn!(error = %err, "expired login attempts were not deleted"),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: NaiveDateTime, seconds: i64) -> NaiveDateTime {
        start + TimeDelta::seconds(seconds)
    }

    fn attempts(key: &str, rows: &[(NaiveDateTime, bool)]) -> Vec<Attempt> {
        rows.iter()
            .map(|&(at, pending)| Attempt {
                key_hash: key.to_owned(),
                at,
                pending,
            })
            .collect()
    }

    fn start() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn five_attempts_being_verified_take_every_place_and_name_the_busy_wait() {
        let now = start();
        let rows = attempts("bob", &[(now, true); MAX_FAILURES]);
        let keys = ["bob".to_owned(), "10.0.0.1".to_owned()];
        assert_eq!(judge(&rows, &keys, now), Some(BUSY_WAIT));
        assert_eq!(judge(&rows[1..], &keys, now), None, "four leave one place");
        assert_eq!(judge(&rows, &["alice".to_owned()], now), None);
    }

    #[test]
    fn failures_name_the_wait_until_the_oldest_is_out_of_the_window() {
        let start = start();
        let rows: Vec<_> = (0..MAX_FAILURES as i64)
            .map(|i| (at(start, i), false))
            .collect();
        let rows = attempts("bob", &rows);
        let keys = ["bob".to_owned()];
        let later = at(start, 60);
        assert_eq!(
            judge(&rows, &keys, later),
            Some(WINDOW - Duration::from_secs(60))
        );
        // Four failures and one still being verified: that one may succeed, so the wait is short.
        let mut busy = rows.clone();
        busy[4].pending = true;
        busy[4].at = later;
        assert_eq!(judge(&busy, &keys, later), Some(BUSY_WAIT));
    }

    #[test]
    fn an_attempt_verified_for_too_long_counts_as_the_failure_it_may_have_been() {
        let start = start();
        let rows = attempts("bob", &[(start, true); MAX_FAILURES]);
        let keys = ["bob".to_owned()];
        let after = start + delta(ABANDONED_AFTER);
        assert_eq!(
            judge(&rows, &keys, after),
            Some(WINDOW - ABANDONED_AFTER),
            "abandoned attempts hold their places for the whole window"
        );
    }

    #[test]
    fn the_longest_wait_of_the_keys_is_named() {
        let start = start();
        let mut rows = attempts("bob", &[(start, false); MAX_FAILURES]);
        rows.extend(attempts(
            "10.0.0.1",
            &[(at(start, 30), false); MAX_FAILURES],
        ));
        let keys = ["bob".to_owned(), "10.0.0.1".to_owned()];
        assert_eq!(
            judge(&rows, &keys, at(start, 60)),
            Some(WINDOW - Duration::from_secs(30))
        );
    }
}
