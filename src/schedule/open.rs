//! The send windows as instants: for a set of zones, when sending is open.
//!
//! Each zone's local windows become absolute intervals, day by day, with
//! jiff; a zone's intervals are united, each closes `stop_before` early, and
//! the zones' intervals are intersected: a recipient whose number spans
//! several zones is texted only while every one of them is open.
//!
//! # Daylight saving time
//!
//! A local time that a clock change skips (a gap) or repeats (a fold) is
//! placed with jiff's "compatible" rule, the one RFC 5545 and JavaScript's
//! Temporal use:
//!
//! - in a gap, the time is read with the offset in force before the change,
//!   which lands it as far after the gap's start as it was written: in
//!   America/New_York on 2026-03-08 the clocks jump from 02:00 to 03:00, so
//!   a window opening at 02:30 opens at 03:30 EDT, and one closing at 02:30
//!   closes at 03:30 EDT (a window 02:10-02:50 is open 03:10-03:50);
//! - in a fold, the time is its first occurrence: in America/New_York on
//!   2026-11-01 01:00-02:00 happens twice, so a window opening at 01:30 opens
//!   at the first 01:30 (EDT) and stays open through the repeated hour, and
//!   one closing at 01:30 closes at the first 01:30, before the repeat.
//!
//! A window's opening and closing are placed each on its own, so on a day
//! with a clock change a window lasts an hour more or less than written,
//! as the local clock says it should.

use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::window::{SendWindows, Window, MINUTES_PER_DAY};

/// How far ahead [`Schedule::next_open`] looks. Windows repeat every week in
/// local time, so eight days find every opening unless the zones' offsets
/// to each other change (a clock change in one of them only).
const NEXT_OPEN_SEARCH: SignedDuration = SignedDuration::from_hours(8 * 24);
/// Local days after the last day asked about for which a zone's windows are
/// still placed: a run of windows can keep a zone open for up to a week
/// less a minute (`mon-sat=00:00-24:00`), and the end of the interval open
/// at the last instant asked about must be right.
const DAYS_AFTER: i32 = 9;

/// When a campaign may send: its windows, and how long before each window
/// closes sending stops (`--stop-before`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// The local times of each weekday sending is allowed in.
    pub windows: SendWindows,
    /// Every window closes this much earlier; a window shorter than this
    /// never opens. Ignored when the windows are always open (they never
    /// close).
    pub stop_before: Duration,
}

/// A span in which sending is open: from `start` (included) to `end`
/// (excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInterval {
    /// The first instant sending is open.
    pub start: Timestamp,
    /// The first instant sending is closed again; [`Timestamp::MAX`] when it
    /// never closes.
    pub end: Timestamp,
}

impl Schedule {
    /// `Some(end)` when sending is open at `now` in every one of `zones`:
    /// `end` is when the first of them closes ([`Timestamp::MAX`] when the
    /// windows are always open). `None` when closed.
    ///
    /// With windows, an empty `zones` is never open: a recipient must be
    /// placed in a zone (the caller's default) to be texted.
    pub fn open_until(&self, zones: &[TimeZone], now: Timestamp) -> Option<Timestamp> {
        self.open_intervals(zones, now, now)
            .first()
            .filter(|interval| interval.start <= now)
            .map(|interval| interval.end)
    }

    /// The first instant at or after `now` at which sending is open in every
    /// one of `zones` (`now` itself when open). Looks eight days ahead:
    /// `None` when the zones' windows do not overlap in that time, which
    /// for zones whose offsets do not change means never.
    pub fn next_open(&self, zones: &[TimeZone], now: Timestamp) -> Option<Timestamp> {
        let horizon = now
            .saturating_add(NEXT_OPEN_SEARCH)
            .unwrap_or(Timestamp::MAX);
        self.open_intervals(zones, now, horizon)
            .first()
            .map(|interval| interval.start)
    }

    /// Every interval in which sending is open in all of `zones` and that
    /// holds at least one instant from `from` to `to` (both included), in
    /// order. The first starts no earlier than `from` (one open at `from`
    /// is cut there); each `end` is exact, even past `to`. The work grows
    /// with the local days from `from` to `to`: ask for days, not years.
    pub fn open_intervals(
        &self,
        zones: &[TimeZone],
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<OpenInterval> {
        let to = to.max(from);
        if self.windows.is_always_open() {
            return vec![OpenInterval {
                start: from,
                end: Timestamp::MAX,
            }];
        }
        let Some((first_zone, other_zones)) = zones.split_first() else {
            return Vec::new();
        };
        let mut open = self.zone_intervals(first_zone, from, to);
        for zone in other_zones {
            if open.is_empty() {
                break;
            }
            open = intersect(&open, &self.zone_intervals(zone, from, to));
        }
        open.into_iter()
            .filter(|interval| interval.end > from && interval.start <= to)
            .map(|interval| OpenInterval {
                start: interval.start.max(from),
                end: interval.end,
            })
            .collect()
    }

    /// One zone's open intervals for the local days around `from` to `to`:
    /// the windows placed on each day, united, each closing `stop_before`
    /// early.
    fn zone_intervals(&self, zone: &TimeZone, from: Timestamp, to: Timestamp) -> Vec<OpenInterval> {
        let first_day = zone.to_datetime(from).date();
        // The day before: a window crossing midnight opened then.
        let first_day = first_day.yesterday().unwrap_or(first_day);
        let last_day = zone.to_datetime(to).date();
        let last_day = last_day
            .checked_add(jiff::Span::new().days(DAYS_AFTER))
            .unwrap_or(Date::MAX);

        let mut placed: Vec<OpenInterval> = Vec::new();
        let mut day = first_day;
        loop {
            let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0);
            for window in self.windows.windows() {
                if window.days.contains(weekday) {
                    placed.extend(place(window, day, zone));
                }
            }
            if day >= last_day {
                break;
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        placed.sort_by_key(|interval| interval.start);

        let stop_before = SignedDuration::try_from(self.stop_before).unwrap_or(SignedDuration::MAX);
        unite(placed)
            .into_iter()
            .filter_map(|interval| {
                let end = interval.end.checked_sub(stop_before).ok()?;
                (end > interval.start).then_some(OpenInterval {
                    start: interval.start,
                    end,
                })
            })
            .collect()
    }
}

/// A window opening on local `day` in `zone`, as instants; `None` when it is
/// empty there (a clock change can swallow a short window) or out of range.
fn place(window: &Window, day: Date, zone: &TimeZone) -> Option<OpenInterval> {
    let start = instant(zone, day, window.start)?;
    let end_day = if window.crosses_midnight() || window.end == MINUTES_PER_DAY {
        day.tomorrow().ok()?
    } else {
        day
    };
    let end = instant(zone, end_day, window.end % MINUTES_PER_DAY)?;
    (end > start).then_some(OpenInterval { start, end })
}

/// The local time `minutes` after midnight of `day` in `zone`, placed with
/// the "compatible" rule (see the module documentation).
fn instant(zone: &TimeZone, day: Date, minutes: u16) -> Option<Timestamp> {
    let hour = i8::try_from(minutes / 60).ok()?;
    let minute = i8::try_from(minutes % 60).ok()?;
    let time = Time::new(hour, minute, 0, 0).ok()?;
    let local: DateTime = day.to_datetime(time);
    zone.to_ambiguous_timestamp(local).compatible().ok()
}

/// Unites intervals sorted by start: overlapping or touching ones merge.
fn unite(sorted: Vec<OpenInterval>) -> Vec<OpenInterval> {
    let mut united: Vec<OpenInterval> = Vec::with_capacity(sorted.len());
    for interval in sorted {
        match united.last_mut() {
            Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
            _ => united.push(interval),
        }
    }
    united
}

/// The instants in both lists of sorted, disjoint intervals.
fn intersect(left: &[OpenInterval], right: &[OpenInterval]) -> Vec<OpenInterval> {
    let mut both = Vec::new();
    let (mut l, mut r) = (0, 0);
    while let (Some(a), Some(b)) = (left.get(l), right.get(r)) {
        let start = a.start.max(b.start);
        let end = a.end.min(b.end);
        if start < end {
            both.push(OpenInterval { start, end });
        }
        if a.end <= b.end {
            l += 1;
        } else {
            r += 1;
        }
    }
    both
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::{at, schedule, zone};

    /// The open intervals from `from` over the next `days` days, as RFC 3339
    /// pairs.
    fn intervals(schedule: &Schedule, zones: &[TimeZone], from: &str, days: i64) -> Vec<String> {
        let from = at(from);
        let to = from
            .checked_add(SignedDuration::from_hours(24 * days))
            .expect("in range");
        schedule
            .open_intervals(zones, from, to)
            .iter()
            .map(|i| format!("{} {}", i.start, i.end))
            .collect()
    }

    #[test]
    fn always_open_never_closes() {
        let always = Schedule::default();
        let now = at("2026-06-01T12:00:00Z");
        assert_eq!(
            always.open_until(&[zone("America/New_York")], now),
            Some(Timestamp::MAX)
        );
        assert_eq!(always.next_open(&[], now), Some(now));
        let whole_day = schedule(&["00:00-24:00"]);
        assert_eq!(
            whole_day.open_until(&[zone("America/New_York")], now),
            Some(Timestamp::MAX)
        );
    }

    #[test]
    fn a_window_is_open_in_local_time() {
        let tcpa = schedule(&["08:00-21:00"]);
        let new_york = [zone("America/New_York")];
        // 12:00 EDT.
        assert_eq!(
            tcpa.open_until(&new_york, at("2026-06-01T16:00:00Z")),
            Some(at("2026-06-02T01:00:00Z"))
        );
        // 07:59 EDT: closed; opens at 08:00.
        let early = at("2026-06-01T11:59:00Z");
        assert_eq!(tcpa.open_until(&new_york, early), None);
        assert_eq!(
            tcpa.next_open(&new_york, early),
            Some(at("2026-06-01T12:00:00Z"))
        );
        // The opening instant is open, the closing instant closed.
        assert!(tcpa
            .open_until(&new_york, at("2026-06-01T12:00:00Z"))
            .is_some());
        assert_eq!(tcpa.open_until(&new_york, at("2026-06-02T01:00:00Z")), None);
        assert_eq!(
            tcpa.next_open(&new_york, at("2026-06-02T01:00:00Z")),
            Some(at("2026-06-02T12:00:00Z"))
        );
    }

    #[test]
    fn days_not_named_are_closed() {
        let weekdays = schedule(&["mon-fri=09:00-20:00", "sat=10:00-16:00"]);
        let chicago = [zone("America/Chicago")];
        // Saturday 2026-06-06 09:30 CDT: closed until 10:00.
        let saturday = at("2026-06-06T14:30:00Z");
        assert_eq!(weekdays.open_until(&chicago, saturday), None);
        assert_eq!(
            weekdays.next_open(&chicago, saturday),
            Some(at("2026-06-06T15:00:00Z"))
        );
        // Saturday 17:00 CDT: closed over Sunday until Monday 09:00.
        let evening = at("2026-06-06T22:00:00Z");
        assert_eq!(
            weekdays.next_open(&chicago, evening),
            Some(at("2026-06-08T14:00:00Z"))
        );
        assert_eq!(
            intervals(&weekdays, &chicago, "2026-06-05T00:00:00Z", 4),
            vec![
                "2026-06-05T00:00:00Z 2026-06-05T01:00:00Z",
                "2026-06-05T14:00:00Z 2026-06-06T01:00:00Z",
                "2026-06-06T15:00:00Z 2026-06-06T21:00:00Z",
                "2026-06-08T14:00:00Z 2026-06-09T01:00:00Z",
            ]
        );
    }

    #[test]
    fn a_window_crossing_midnight_closes_the_next_day() {
        let night = schedule(&["fri=22:00-02:00"]);
        let utc = [TimeZone::UTC];
        // Friday 2026-06-05 23:00: open until Saturday 02:00.
        assert_eq!(
            night.open_until(&utc, at("2026-06-05T23:00:00Z")),
            Some(at("2026-06-06T02:00:00Z"))
        );
        // Saturday 01:00 is still Friday's window.
        assert!(night.open_until(&utc, at("2026-06-06T01:00:00Z")).is_some());
        // Saturday 23:00 is not: Saturday is not named.
        assert_eq!(night.open_until(&utc, at("2026-06-06T23:00:00Z")), None);
        assert_eq!(
            night.next_open(&utc, at("2026-06-06T23:00:00Z")),
            Some(at("2026-06-12T22:00:00Z"))
        );
    }

    #[test]
    fn overlapping_and_touching_windows_add_up() {
        let split = schedule(&["09:00-12:00", "11:00-17:00", "17:00-18:00"]);
        assert_eq!(
            split.open_until(&[TimeZone::UTC], at("2026-06-01T10:00:00Z")),
            Some(at("2026-06-01T18:00:00Z"))
        );
        // A window crossing midnight runs into the next day's morning window.
        let late = schedule(&["mon=20:00-02:00", "tue=01:00-06:00"]);
        assert_eq!(
            late.open_until(&[TimeZone::UTC], at("2026-06-01T21:00:00Z")),
            Some(at("2026-06-02T06:00:00Z"))
        );
    }

    #[test]
    fn stop_before_closes_every_window_early() {
        let mut evening = schedule(&["08:00-21:00", "sat=10:00-10:20"]);
        evening.stop_before = Duration::from_secs(30 * 60);
        let utc = [TimeZone::UTC];
        assert_eq!(
            evening.open_until(&utc, at("2026-06-01T12:00:00Z")),
            Some(at("2026-06-01T20:30:00Z"))
        );
        assert_eq!(evening.open_until(&utc, at("2026-06-01T20:45:00Z")), None);
        // Saturday 2026-06-06: 08:00-21:00 and 10:00-10:20 unite first, so
        // the short window does not close anything early on its own.
        assert_eq!(
            intervals(&evening, &utc, "2026-06-06T00:00:00Z", 1),
            vec!["2026-06-06T08:00:00Z 2026-06-06T20:30:00Z"]
        );
        // A window shorter than stop_before never opens.
        let mut short = schedule(&["sat=10:00-10:20"]);
        short.stop_before = Duration::from_secs(30 * 60);
        assert_eq!(short.next_open(&utc, at("2026-06-01T00:00:00Z")), None);
        // A stop_before beyond any window closes everything.
        short.stop_before = Duration::MAX;
        assert_eq!(short.next_open(&utc, at("2026-06-01T00:00:00Z")), None);
    }

    #[test]
    fn zones_off_the_hour() {
        let tcpa = schedule(&["08:00-21:00"]);
        let kolkata = zone("Asia/Kolkata");
        let kathmandu = zone("Asia/Kathmandu");
        assert_eq!(
            intervals(
                &tcpa,
                std::slice::from_ref(&kolkata),
                "2026-06-01T00:00:00Z",
                1
            ),
            vec!["2026-06-01T02:30:00Z 2026-06-01T15:30:00Z"]
        );
        assert_eq!(
            intervals(
                &tcpa,
                std::slice::from_ref(&kathmandu),
                "2026-06-01T00:00:00Z",
                1
            ),
            vec!["2026-06-01T02:15:00Z 2026-06-01T15:15:00Z"]
        );
        // Both: from Kolkata's opening to Kathmandu's closing.
        assert_eq!(
            intervals(&tcpa, &[kolkata, kathmandu], "2026-06-01T00:00:00Z", 1),
            vec!["2026-06-01T02:30:00Z 2026-06-01T15:15:00Z"]
        );
    }

    #[test]
    fn lord_howe_moves_its_clocks_by_half_an_hour() {
        let lord_howe = [zone("Australia/Lord_Howe")];
        let tcpa = schedule(&["08:00-21:00"]);
        // Standard time +10:30 in June, daylight time +11 in December.
        assert_eq!(
            intervals(&tcpa, &lord_howe, "2026-06-01T12:00:00Z", 1)[0],
            "2026-06-01T21:30:00Z 2026-06-02T10:30:00Z"
        );
        assert_eq!(
            intervals(&tcpa, &lord_howe, "2026-12-01T12:00:00Z", 1)[0],
            "2026-12-01T21:00:00Z 2026-12-02T10:00:00Z"
        );
        // 2026-10-04: 02:00 +10:30 jumps to 02:30 +11. A window 02:00-03:00
        // opens at 02:30 (read with the offset before the gap) and is open
        // half an hour.
        let small_hours = schedule(&["sun=02:00-03:00"]);
        assert_eq!(
            intervals(&small_hours, &lord_howe, "2026-10-03T12:00:00Z", 1),
            vec!["2026-10-03T15:30:00Z 2026-10-03T16:00:00Z"]
        );
        // 2026-04-05: 02:00 +11 goes back to 01:30 +10:30. A window
        // 01:00-02:00 runs from the first 01:00 (+11) through the repeated
        // half hour: ninety minutes.
        let fold = schedule(&["sun=01:00-02:00"]);
        assert_eq!(
            intervals(&fold, &lord_howe, "2026-04-04T12:00:00Z", 1),
            vec!["2026-04-04T14:00:00Z 2026-04-04T15:30:00Z"]
        );
    }

    #[test]
    fn new_york_spring_forward() {
        let new_york = [zone("America/New_York")];
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT. The TCPA window is
        // unaffected: 08:00 EDT to 21:00 EDT.
        let tcpa = schedule(&["08:00-21:00"]);
        assert_eq!(
            intervals(&tcpa, &new_york, "2026-03-08T05:00:00Z", 1)[0],
            "2026-03-08T12:00:00Z 2026-03-09T01:00:00Z"
        );
        // A window opening in the gap opens as late after 03:00 as it was
        // written after 02:00.
        let opens_in_gap = schedule(&["sun=02:30-05:00"]);
        assert_eq!(
            intervals(&opens_in_gap, &new_york, "2026-03-08T05:00:00Z", 1),
            vec!["2026-03-08T07:30:00Z 2026-03-08T09:00:00Z"]
        );
        // A window closing in the gap closes at 03:30 EDT: 01:00 EST to
        // 03:30 EDT is an hour and a half.
        let closes_in_gap = schedule(&["sun=01:00-02:30"]);
        assert_eq!(
            intervals(&closes_in_gap, &new_york, "2026-03-08T05:00:00Z", 1),
            vec!["2026-03-08T06:00:00Z 2026-03-08T07:30:00Z"]
        );
        // A window across the change lasts an hour less than written.
        let across = schedule(&["sun=00:00-06:00"]);
        assert_eq!(
            intervals(&across, &new_york, "2026-03-08T05:00:00Z", 1),
            vec!["2026-03-08T05:00:00Z 2026-03-08T10:00:00Z"]
        );
    }

    #[test]
    fn new_york_fall_back() {
        let new_york = [zone("America/New_York")];
        // 2026-11-01: 02:00 EDT goes back to 01:00 EST.
        let tcpa = schedule(&["08:00-21:00"]);
        assert_eq!(
            intervals(&tcpa, &new_york, "2026-11-01T04:00:00Z", 1)[0],
            "2026-11-01T13:00:00Z 2026-11-02T02:00:00Z"
        );
        // A window opening in the fold opens at the first 01:30 (EDT) and
        // stays open through the repeated hour.
        let opens_in_fold = schedule(&["sun=01:30-03:00"]);
        assert_eq!(
            intervals(&opens_in_fold, &new_york, "2026-11-01T04:00:00Z", 1),
            vec!["2026-11-01T05:30:00Z 2026-11-01T08:00:00Z"]
        );
        // A window closing in the fold closes at the first 01:30.
        let closes_in_fold = schedule(&["sun=00:00-01:30"]);
        assert_eq!(
            intervals(&closes_in_fold, &new_york, "2026-11-01T04:00:00Z", 1),
            vec!["2026-11-01T04:00:00Z 2026-11-01T05:30:00Z"]
        );
        // A whole-day window on a Sunday alone lasts 25 hours.
        let sunday = schedule(&["sun=00:00-24:00"]);
        assert_eq!(
            intervals(&sunday, &new_york, "2026-11-01T04:00:00Z", 1),
            vec!["2026-11-01T04:00:00Z 2026-11-02T05:00:00Z"]
        );
    }

    #[test]
    fn london_clock_changes() {
        let london = [zone("Europe/London")];
        // 2026-03-29: 01:00 GMT jumps to 02:00 BST.
        let opens_in_gap = schedule(&["sun=01:15-03:00"]);
        assert_eq!(
            intervals(&opens_in_gap, &london, "2026-03-29T00:00:00Z", 1),
            vec!["2026-03-29T01:15:00Z 2026-03-29T02:00:00Z"]
        );
        // 2026-10-25: 02:00 BST goes back to 01:00 GMT.
        let closes_in_fold = schedule(&["sun=00:30-01:30"]);
        assert_eq!(
            intervals(&closes_in_fold, &london, "2026-10-24T23:00:00Z", 1),
            vec!["2026-10-24T23:30:00Z 2026-10-25T00:30:00Z"]
        );
        let tcpa = schedule(&["08:00-21:00"]);
        assert_eq!(
            intervals(&tcpa, &london, "2026-10-25T00:00:00Z", 1)[0],
            "2026-10-25T08:00:00Z 2026-10-25T21:00:00Z"
        );
        assert_eq!(
            intervals(&tcpa, &london, "2026-10-24T00:00:00Z", 1)[0],
            "2026-10-24T07:00:00Z 2026-10-24T20:00:00Z"
        );
    }

    #[test]
    fn a_number_in_two_zones_is_open_only_when_both_are() {
        let tcpa = schedule(&["08:00-21:00"]);
        // Mountain and Central time: 08:00 MST is 09:00 CST; 21:00 CST is
        // 20:00 MST.
        let dakota = [zone("America/Denver"), zone("America/North_Dakota/Center")];
        assert_eq!(
            intervals(&tcpa, &dakota, "2026-01-15T00:00:00Z", 1),
            vec![
                "2026-01-15T00:00:00Z 2026-01-15T03:00:00Z",
                "2026-01-15T15:00:00Z 2026-01-16T03:00:00Z",
            ]
        );
        // 07:30 MST / 08:30 CST: closed until Denver opens.
        let morning = at("2026-01-15T14:30:00Z");
        assert_eq!(tcpa.open_until(&dakota, morning), None);
        assert_eq!(
            tcpa.next_open(&dakota, morning),
            Some(at("2026-01-15T15:00:00Z"))
        );
        // Alaska: Adak (HST, -10) is an hour behind Anchorage (AKST, -9).
        let alaska = [zone("America/Adak"), zone("America/Anchorage")];
        assert_eq!(
            tcpa.open_until(&alaska, at("2026-01-15T20:00:00Z")),
            Some(at("2026-01-16T06:00:00Z"))
        );
        assert_eq!(
            tcpa.next_open(&alaska, at("2026-01-16T06:00:00Z")),
            Some(at("2026-01-16T18:00:00Z"))
        );
        // In summer both are an hour later in UTC.
        assert_eq!(
            tcpa.next_open(&alaska, at("2026-07-15T12:00:00Z")),
            Some(at("2026-07-15T17:00:00Z"))
        );
    }

    #[test]
    fn zones_whose_windows_never_overlap_never_open() {
        let early = schedule(&["09:00-10:00"]);
        let apart = [zone("Asia/Tokyo"), zone("America/New_York")];
        assert_eq!(early.open_until(&apart, at("2026-06-01T00:00:00Z")), None);
        assert_eq!(early.next_open(&apart, at("2026-06-01T00:00:00Z")), None);
    }

    #[test]
    fn no_zone_is_never_open_unless_always_open() {
        let tcpa = schedule(&["08:00-21:00"]);
        assert_eq!(tcpa.next_open(&[], at("2026-06-01T00:00:00Z")), None);
    }

    #[test]
    fn a_week_long_run_of_windows_ends_where_it_should() {
        let workweek = schedule(&["mon-sat=00:00-24:00"]);
        // Monday 2026-06-01 00:00 UTC: open until Sunday 00:00.
        assert_eq!(
            workweek.open_until(&[TimeZone::UTC], at("2026-06-01T00:00:00Z")),
            Some(at("2026-06-07T00:00:00Z"))
        );
    }

    #[test]
    fn the_extremes_of_time_do_not_panic() {
        let tcpa = schedule(&["08:00-21:00"]);
        let zones = [zone("America/New_York"), zone("Pacific/Kiritimati")];
        for now in [Timestamp::MIN, Timestamp::MAX] {
            let _ = tcpa.open_until(&zones, now);
            let _ = tcpa.next_open(&zones, now);
        }
    }
}
