//! The one clock the service reads the day from: the day limits are judged on, usage is counted
//! on and the usage history is kept by, and the time a check last saw a mailbox. The login
//! throttle reads its window from it too (`crate::auth::throttle`).
//!
//! In a deployment it is the system clock and nothing can move it: [`Clock::system`] (the
//! configuration's default) holds no offset, and no setting, environment variable or route makes
//! one. The integration tests build their application with [`Clock::movable`] and keep a handle
//! to it, so they drive history across days by moving it ([`Clock::advance`]) instead of sleeping.
//! Sign-in tokens and key expiry stay on the system clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// The time as the service sees it. Cloning shares it: a moved clock is moved for every clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Seconds added to the system clock; `None` for the system clock itself, which cannot move.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { offset: None }
    }

    /// A clock that starts at the system time and that whoever holds a clone can move forward.
    /// For the test harness: nothing in the service builds one.
    pub fn movable() -> Self {
        Self {
            offset: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves the clock forward by `by`.
    ///
    /// # Panics
    /// On the system clock, which cannot move.
    pub fn advance(&self, by: TimeDelta) {
        let offset = self
            .offset
            .as_ref()
            .expect("only a movable clock (Clock::movable) can be moved");
        offset.fetch_add(by.num_seconds(), Ordering::SeqCst);
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.offset {
            None => now,
            Some(offset) => now + TimeDelta::seconds(offset.load(Ordering::SeqCst)),
        }
    }

    /// Today, in UTC.
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_movable_clock_moves_for_every_clone_and_the_system_clock_cannot() {
        let clock = Clock::movable();
        let handle = clock.clone();
        let before = clock.today();
        handle.advance(TimeDelta::days(3));
        assert_eq!(clock.today(), before + TimeDelta::days(3));
        let system = Clock::system();
        assert!(std::panic::catch_unwind(|| system.advance(TimeDelta::days(1))).is_err());
        assert!((Clock::default().now() - Utc::now()).num_seconds().abs() < 5);
    }
}
