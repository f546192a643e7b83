//! Who is an active user, the figure providers bill by: a mailbox that an outbound check saw (it
//! sent mail) within the 30 days up to a day, that day included. Role addresses (postmaster@,
//! abuse@) take no seat and are never counted. The usage history and the statistics both count by
//! this window.

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

/// How many days, up to and including a day, a sighting makes a mailbox active.
pub(crate) const WINDOW_DAYS: i64 = 30;

/// The sightings that make a mailbox active on `day`: from the start of the 30th day back to the
/// end of `day` (`start <= seen < end`).
pub(crate) fn window(day: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
    let start = day - TimeDelta::days(WINDOW_DAYS - 1);
    let end = day + TimeDelta::days(1);
    (
        start.and_hms_opt(0, 0, 0).unwrap_or_default(),
        end.and_hms_opt(0, 0, 0).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_of_a_day_is_the_thirty_days_up_to_its_end() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let (start, end) = window(day);
        assert_eq!(start.to_string(), "2026-03-02 00:00:00");
        assert_eq!(end.to_string(), "2026-04-01 00:00:00");
    }
}
