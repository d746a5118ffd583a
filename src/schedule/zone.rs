//! Time zones: looking one up by its IANA name (`--timezone`, a recipient's
//! `timezone` column), the machine's own, and the calendar day in a zone
//! that `--max-per-day` counts in.

use jiff::civil::{Date, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// Why a time zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("no time zone given; use an IANA name such as America/New_York")]
    Empty,
    #[error("unknown time zone {name:?}; use an IANA name such as America/New_York")]
    Unknown {
        /// The name as given.
        name: String,
    },
}

/// The zone named `name` in the IANA database (any case, surrounding spaces
/// ignored), such as `America/New_York`, `Asia/Kolkata` or `UTC`.
/// `Etc/Unknown` is refused: it names no place.
pub fn parse_zone(name: &str) -> Result<TimeZone, ZoneError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ZoneError::Empty);
    }
    match jiff::tz::db().get(trimmed) {
        Ok(zone) if !zone.is_unknown() => Ok(zone),
        _ => Err(ZoneError::Unknown {
            name: name.to_owned(),
        }),
    }
}

/// The machine's time zone (the `TZ` variable when set, else the system's
/// setting; UTC when neither can be read) and its name for people: the IANA
/// name when known, `UTC` or `UTC+05:30` for a fixed offset, else the `TZ`
/// value (a POSIX rule such as `EST5EDT,M3.2.0,M11.1.0`).
pub fn machine_zone() -> (TimeZone, String) {
    let zone = TimeZone::system();
    let tz_variable = std::env::var("TZ").ok();
    let name = zone_name(&zone, tz_variable.as_deref());
    (zone, name)
}

/// The start of `now`'s calendar day in `zone` and the start of the next
/// one: 24 hours apart, or 23 and 25 on the days the clocks change. A day
/// whose midnight a clock change skips starts at the change.
pub fn day_bounds(now: Timestamp, zone: &TimeZone) -> (Timestamp, Timestamp) {
    let today = zone.to_datetime(now).date();
    // Checked rather than trusted: at the ends of jiff's range the day's
    // bounds may not exist, and then `now` itself and the end of time do.
    let start = start_of_day(today, zone)
        .filter(|&start| start <= now)
        .unwrap_or(now);
    let next = today
        .tomorrow()
        .ok()
        .and_then(|tomorrow| start_of_day(tomorrow, zone))
        .filter(|&next| next > now)
        .unwrap_or(Timestamp::MAX);
    (start, next)
}

/// The first instant of local `day` in `zone`: midnight, or when midnight
/// falls in a gap, the instant of the change (the "compatible" rule reads a
/// skipped time with the offset before the gap).
fn start_of_day(day: Date, zone: &TimeZone) -> Option<Timestamp> {
    zone.to_ambiguous_timestamp(day.to_datetime(Time::midnight()))
        .compatible()
        .ok()
}

/// A name for people: see [`machine_zone`].
fn zone_name(zone: &TimeZone, tz_variable: Option<&str>) -> String {
    if let Some(name) = zone.iana_name() {
        return name.to_owned();
    }
    if zone.is_unknown() {
        // jiff's fallback when the system's zone cannot be read acts as UTC.
        return "UTC".to_owned();
    }
    if let Ok(offset) = zone.to_fixed_offset() {
        return offset_name(offset);
    }
    match tz_variable.map(str::trim).filter(|value| !value.is_empty()) {
        Some(value) => value.to_owned(),
        None => "the system's time zone".to_owned(),
    }
}

/// `UTC`, `UTC+05:30`, `UTC-05:00` (seconds only when there are some).
fn offset_name(offset: Offset) -> String {
    let seconds = offset.seconds();
    if seconds == 0 {
        return "UTC".to_owned();
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let seconds = seconds.unsigned_abs();
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if rest == 0 {
        format!("UTC{sign}{hours:02}:{minutes:02}")
    } else {
        format!("UTC{sign}{hours:02}:{minutes:02}:{rest:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::at;

    #[track_caller]
    fn check_bounds(zone: &str, now: &str, start: &str, next: &str) {
        let zone = parse_zone(zone).expect("known zone");
        assert_eq!(day_bounds(at(now), &zone), (at(start), at(next)));
    }

    #[test]
    fn zones_are_found_by_their_iana_name() {
        let new_york = parse_zone("America/New_York").expect("known");
        assert_eq!(new_york.iana_name(), Some("America/New_York"));
        let any_case = parse_zone(" america/new_york ").expect("known");
        assert_eq!(any_case.iana_name(), Some("America/New_York"));
        assert_eq!(parse_zone("UTC").expect("known"), TimeZone::UTC);
        assert!(parse_zone("Australia/Lord_Howe").is_ok());
    }

    #[test]
    fn an_unknown_zone_is_refused_with_its_name() {
        let error = parse_zone("Mars/Base").expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "unknown time zone \"Mars/Base\"; use an IANA name such as America/New_York"
        );
        assert_eq!(parse_zone("  "), Err(ZoneError::Empty));
        assert!(parse_zone("Etc/Unknown").is_err());
        assert!(parse_zone("../../etc/passwd").is_err());
        assert!(parse_zone("-05:00").is_err());
    }

    #[test]
    fn names_for_people() {
        let new_york = parse_zone("America/New_York").expect("known");
        assert_eq!(zone_name(&new_york, None), "America/New_York");
        assert_eq!(zone_name(&TimeZone::UTC, None), "UTC");
        assert_eq!(zone_name(&TimeZone::unknown(), None), "UTC");
        let kolkata_offset = Offset::from_seconds(5 * 3600 + 30 * 60).expect("valid offset");
        assert_eq!(
            zone_name(&TimeZone::fixed(kolkata_offset), None),
            "UTC+05:30"
        );
        let eastern = Offset::from_seconds(-5 * 3600).expect("valid offset");
        assert_eq!(zone_name(&TimeZone::fixed(eastern), None), "UTC-05:00");
        let rule = "EST5EDT,M3.2.0,M11.1.0";
        let posix = TimeZone::posix(rule).expect("valid rule");
        assert_eq!(zone_name(&posix, Some(rule)), rule);
        assert_eq!(zone_name(&posix, None), "the system's time zone");
    }

    #[test]
    fn the_machine_zone_has_a_name() {
        let (_, name) = machine_zone();
        assert!(!name.is_empty());
    }

    #[test]
    fn an_ordinary_day_is_24_hours() {
        check_bounds(
            "America/New_York",
            "2026-06-01T16:00:00Z",
            "2026-06-01T04:00:00Z",
            "2026-06-02T04:00:00Z",
        );
        // Just before local midnight it is still the same day.
        check_bounds(
            "America/New_York",
            "2026-06-02T03:59:59Z",
            "2026-06-01T04:00:00Z",
            "2026-06-02T04:00:00Z",
        );
        // Midnight belongs to the day it starts.
        check_bounds(
            "Asia/Kathmandu",
            "2026-06-01T18:15:00Z",
            "2026-06-01T18:15:00Z",
            "2026-06-02T18:15:00Z",
        );
    }

    #[test]
    fn days_with_a_clock_change_are_23_or_25_hours() {
        check_bounds(
            "America/New_York",
            "2026-03-08T12:00:00Z",
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
        );
        check_bounds(
            "America/New_York",
            "2026-11-01T12:00:00Z",
            "2026-11-01T04:00:00Z",
            "2026-11-02T05:00:00Z",
        );
        check_bounds(
            "Europe/London",
            "2026-03-29T12:00:00Z",
            "2026-03-29T00:00:00Z",
            "2026-03-29T23:00:00Z",
        );
        check_bounds(
            "Europe/London",
            "2026-10-25T12:00:00Z",
            "2026-10-24T23:00:00Z",
            "2026-10-26T00:00:00Z",
        );
        // Lord Howe's change is half an hour: a 23.5-hour day.
        check_bounds(
            "Australia/Lord_Howe",
            "2026-10-04T06:00:00Z",
            "2026-10-03T13:30:00Z",
            "2026-10-04T13:00:00Z",
        );
    }

    #[test]
    fn a_day_whose_midnight_is_skipped_starts_at_the_change() {
        // Chile moves its clocks at midnight: some day starts at 01:00.
        let santiago = parse_zone("America/Santiago").expect("known");
        let mut now = at("2026-01-01T12:00:00Z");
        let mut short_days = 0;
        for _ in 0..365 {
            let (start, next) = day_bounds(now, &santiago);
            let today = santiago.to_datetime(now).date();
            assert!(start <= now && now < next);
            assert_eq!(santiago.to_datetime(start).date(), today);
            let just_before = start
                .checked_sub(jiff::SignedDuration::from_nanos(1))
                .expect("in range");
            assert!(santiago.to_datetime(just_before).date() < today);
            if next.duration_since(start) == jiff::SignedDuration::from_hours(23) {
                short_days += 1;
                assert_eq!(
                    santiago.to_datetime(start).time(),
                    Time::constant(1, 0, 0, 0)
                );
            }
            now = now
                .checked_add(jiff::SignedDuration::from_hours(24))
                .expect("in range");
        }
        assert_eq!(short_days, 1);
    }

    #[test]
    fn the_extremes_of_time_do_not_panic() {
        let zone = parse_zone("Pacific/Kiritimati").expect("known");
        for now in [Timestamp::MIN, Timestamp::MAX] {
            let (start, next) = day_bounds(now, &zone);
            assert!(start <= now && (now < next || next == Timestamp::MAX));
        }
    }
}
