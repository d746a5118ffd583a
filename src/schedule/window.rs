//! The send windows of `--window`: which local times of which weekdays a
//! recipient may be texted. This module parses the flag, holds the result,
//! and stores it as text. It knows nothing of zones or instants: the
//! [`Schedule`](super::Schedule) turns local times into instants, zone by
//! zone.
//!
//! The flag's forms: `HH:MM-HH:MM` (every day) or `DAYS=HH:MM-HH:MM`, where
//! DAYS is a comma-separated list of names (`mon` … `sun`, or full names, any
//! case) and ranges (`mon-fri`; `fri-mon` wraps over the week end). A window
//! whose end is before its start crosses midnight (`22:00-02:00` ends at
//! 02:00 the next day); `24:00` is accepted as an end. Several windows add
//! up: sending is allowed whenever any of them is open.

use std::fmt;

/// Minutes in a day: a time of day is a minute in `0..MINUTES_PER_DAY`, and
/// `MINUTES_PER_DAY` itself is `24:00`, the end of the day.
pub(super) const MINUTES_PER_DAY: u16 = 24 * 60;
/// Minutes in a week, Monday 00:00 to the next Monday 00:00.
const MINUTES_PER_WEEK: usize = 7 * MINUTES_PER_DAY as usize;
/// Days of the week by their index from Monday, as written on the command
/// line and in the stored form.
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// The same days' full names, also accepted.
const DAY_FULL_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
/// The stored form of "no `--window`": always open.
const STORED_ALWAYS_OPEN: &str = "always";

/// The send windows of a campaign. With no `--window` it is always open;
/// otherwise sending is allowed only inside one of its windows, in the local
/// time of the recipient.
///
/// The windows are kept in a canonical order (windows with the same times
/// share one entry whose days are merged), so two sets written differently
/// but meaning the same days and times compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SendWindows {
    /// Empty: no `--window` was given.
    windows: Vec<Window>,
    /// The windows leave no minute of the week closed (e.g. `00:00-24:00`),
    /// so the set never closes: the schedule treats it as always open.
    covers_whole_week: bool,
}

/// One window: its days and its local opening and closing times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Window {
    /// The days the window opens on. A window crossing midnight opens on
    /// these days and closes on the day after.
    pub(super) days: Days,
    /// The opening time, minutes after midnight, `0..MINUTES_PER_DAY`.
    pub(super) start: u16,
    /// The closing time, minutes after midnight, `1..=MINUTES_PER_DAY`;
    /// before `start` when the window crosses midnight. Never equal to
    /// `start`. `00:00` as an end is kept as `24:00` (the same instant).
    pub(super) end: u16,
}

impl Window {
    /// The window closes on the day after it opens.
    pub(super) fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }
}

/// A set of weekdays, Monday as bit 0 to Sunday as bit 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Days(u8);

impl Days {
    const EVERY_DAY: Days = Days(0b111_1111);

    /// The set holds the day `index` days after Monday (0 = Monday).
    pub(super) fn contains(self, index: usize) -> bool {
        index < 7 && self.0 & (1 << index) != 0
    }

    fn with(self, index: usize) -> Days {
        Days(self.0 | (1 << (index % 7)))
    }

    /// The days as written on the command line: runs of three or more
    /// days as ranges (`mon-fri`, `fri-mon`), shorter runs as names
    /// (`sat,sun`). A run over the week end is written from its first day.
    fn text(self) -> String {
        let first = if self.contains(0) && self.contains(6) {
            // Walk back from Sunday to where the run over the week end starts.
            (1..7)
                .rev()
                .take_while(|&day| self.contains(day))
                .last()
                .unwrap_or(0)
        } else {
            0
        };
        let mut runs: Vec<String> = Vec::new();
        let mut step = 0;
        while step < 7 {
            let day = (first + step) % 7;
            if !self.contains(day) {
                step += 1;
                continue;
            }
            let length = (step..7)
                .take_while(|&s| self.contains((first + s) % 7))
                .count();
            let last = (day + length - 1) % 7;
            runs.push(match length {
                1 => DAY_NAMES[day].to_owned(),
                2 => format!("{},{}", DAY_NAMES[day], DAY_NAMES[last]),
                _ => format!("{}-{}", DAY_NAMES[day], DAY_NAMES[last]),
            });
            step += length;
        }
        runs.join(",")
    }
}

/// Why a `--window` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--window {value:?}: {problem}")]
pub struct WindowError {
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: WindowProblem,
}

/// What is wrong with a `--window` value; every message says what is
/// accepted instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowProblem {
    #[error("the value is empty; write HH:MM-HH:MM such as 08:00-21:00, or DAYS=HH:MM-HH:MM such as mon-fri=09:00-17:00")]
    Empty,
    #[error("no days before \"=\"; write DAYS=HH:MM-HH:MM such as mon-fri=09:00-17:00, or leave out \"DAYS=\" for every day")]
    NoDays,
    #[error("a day is missing between commas; days are mon tue wed thu fri sat sun, or a range such as mon-fri")]
    MissingDay,
    #[error("unknown day {0:?}; days are mon tue wed thu fri sat sun, or a range such as mon-fri")]
    UnknownDay(String),
    #[error("no times after \"=\"; write DAYS=HH:MM-HH:MM such as mon-fri=09:00-17:00")]
    NoTimes,
    #[error("missing \"=\" between the days and the times; write DAYS=HH:MM-HH:MM such as mon-fri=09:00-17:00")]
    MissingEquals,
    #[error("missing \"-\" between the opening and closing times; write HH:MM-HH:MM such as 08:00-21:00")]
    MissingDash,
    #[error("{0:?} is not a time; write HH:MM with two digits each, from 00:00 to 23:59 (24:00 as a closing time)")]
    BadTime(String),
    #[error("24:00 is only a closing time; a window opens at 00:00 to 23:59")]
    OpensAtMidnightEnd,
    #[error("it opens and closes at the same time, so it is never open; a window such as 22:00-02:00 crosses midnight, 00:00-24:00 is the whole day")]
    OpensAndClosesAtOnce,
}

/// Why a stored set of send windows could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored send windows {stored:?} cannot be read ({reason}); the database was written by another version or edited by hand")]
pub struct StoredWindowsError {
    /// The stored text.
    pub stored: String,
    /// Why one of its windows was refused.
    pub reason: WindowError,
}

impl SendWindows {
    /// Parses the values of every `--window` flag, in any order. No value at
    /// all: always open. Each value is checked on its own; the first refused
    /// one is the error.
    pub fn parse(values: &[String]) -> Result<SendWindows, WindowError> {
        let windows = values
            .iter()
            .map(|value| {
                parse_window(value).map_err(|problem| WindowError {
                    value: value.clone(),
                    problem,
                })
            })
            .collect::<Result<Vec<Window>, WindowError>>()?;
        Ok(SendWindows::from_windows(windows))
    }

    /// Sending is allowed at any time: no `--window` was given, or the
    /// windows cover every minute of the week.
    pub fn is_always_open(&self) -> bool {
        self.windows.is_empty() || self.covers_whole_week
    }

    /// The canonical text to store in the database: the windows as
    /// `--window` values separated by spaces (`mon-fri=09:00-20:00
    /// sat=10:00-16:00`), or `always` when no window was given.
    /// [`SendWindows::from_stored`] reads it back into an equal value.
    pub fn to_stored(&self) -> String {
        if self.windows.is_empty() {
            return STORED_ALWAYS_OPEN.to_owned();
        }
        self.windows
            .iter()
            .map(|window| {
                let times = format!("{}-{}", clock_text(window.start), clock_text(window.end));
                if window.days == Days::EVERY_DAY {
                    times
                } else {
                    format!("{}={times}", window.days.text())
                }
            })
            .collect::<Vec<String>>()
            .join(" ")
    }

    /// Reads the text written by [`SendWindows::to_stored`].
    pub fn from_stored(stored: &str) -> Result<SendWindows, StoredWindowsError> {
        if stored.trim() == STORED_ALWAYS_OPEN {
            return Ok(SendWindows::default());
        }
        let values: Vec<String> = stored.split_whitespace().map(str::to_owned).collect();
        if values.is_empty() {
            // An empty text is not what to_stored writes: refuse it rather
            // than read it as "always open".
            return Err(StoredWindowsError {
                stored: stored.to_owned(),
                reason: WindowError {
                    value: stored.to_owned(),
                    problem: WindowProblem::Empty,
                },
            });
        }
        SendWindows::parse(&values).map_err(|reason| StoredWindowsError {
            stored: stored.to_owned(),
            reason,
        })
    }

    /// The windows, in canonical order; empty when always open by default.
    pub(super) fn windows(&self) -> &[Window] {
        &self.windows
    }

    fn from_windows(mut windows: Vec<Window>) -> SendWindows {
        // Windows with the same times become one entry with all their days.
        windows.sort_by_key(|window| (window.start, window.end));
        let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
        for window in windows {
            match merged.last_mut() {
                Some(last) if (last.start, last.end) == (window.start, window.end) => {
                    last.days = Days(last.days.0 | window.days.0);
                }
                _ => merged.push(window),
            }
        }
        // People read the week from Monday: the entry whose first day comes
        // first is written first.
        merged.sort_by_key(|window| {
            let first_day = (0..7).find(|&day| window.days.contains(day)).unwrap_or(7);
            (first_day, window.start, window.end, window.days)
        });
        let covers_whole_week = covers_whole_week(&merged);
        SendWindows {
            windows: merged,
            covers_whole_week,
        }
    }
}

impl fmt::Display for SendWindows {
    /// For people: `always open`, `every day 08:00-21:00`, or
    /// `mon-fri 09:00-20:00, sat 10:00-16:00`; a window crossing midnight
    /// says so (`fri 22:00-02:00 the next day`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.windows.is_empty() {
            return f.write_str("always open");
        }
        for (position, window) in self.windows.iter().enumerate() {
            if position > 0 {
                f.write_str(", ")?;
            }
            let days = if window.days == Days::EVERY_DAY {
                "every day".to_owned()
            } else {
                window.days.text()
            };
            write!(
                f,
                "{days} {}-{}",
                clock_text(window.start),
                clock_text(window.end)
            )?;
            if window.crosses_midnight() {
                f.write_str(" the next day")?;
            }
        }
        Ok(())
    }
}

/// Parses one `--window` value.
fn parse_window(value: &str) -> Result<Window, WindowProblem> {
    let text = value.trim();
    if text.is_empty() {
        return Err(WindowProblem::Empty);
    }
    let (days, times) = match text.split_once('=') {
        Some((days, times)) => (parse_days(days.trim())?, times.trim()),
        None => {
            if text.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(WindowProblem::MissingEquals);
            }
            (Days::EVERY_DAY, text)
        }
    };
    if times.is_empty() {
        return Err(WindowProblem::NoTimes);
    }
    let (start, end) = times.split_once('-').ok_or(WindowProblem::MissingDash)?;
    let start = parse_clock(start.trim())?;
    let end = parse_clock(end.trim())?;
    if start == MINUTES_PER_DAY {
        return Err(WindowProblem::OpensAtMidnightEnd);
    }
    if start == end {
        return Err(WindowProblem::OpensAndClosesAtOnce);
    }
    // 00:00 as an end is midnight after the opening: the same as 24:00.
    let end = if end == 0 { MINUTES_PER_DAY } else { end };
    Ok(Window { days, start, end })
}

/// Parses `mon-fri`, `sat,sun`, `fri-mon`, `Monday`, … into a set of days.
fn parse_days(text: &str) -> Result<Days, WindowProblem> {
    if text.is_empty() {
        return Err(WindowProblem::NoDays);
    }
    let mut days = Days(0);
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(WindowProblem::MissingDay);
        }
        match item.split_once('-') {
            Some((first, last)) => {
                let first = day_index(first.trim())?;
                let last = day_index(last.trim())?;
                // Walk forward from the first day, wrapping over Sunday.
                let length = (last + 7 - first) % 7 + 1;
                for step in 0..length {
                    days = days.with(first + step);
                }
            }
            None => days = days.with(day_index(item)?),
        }
    }
    Ok(days)
}

/// A day's index from Monday, from its short or full name in any case.
fn day_index(name: &str) -> Result<usize, WindowProblem> {
    if name.is_empty() {
        return Err(WindowProblem::MissingDay);
    }
    let lower = name.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|&short| short == lower)
        .or_else(|| DAY_FULL_NAMES.iter().position(|&full| full == lower))
        .ok_or_else(|| WindowProblem::UnknownDay(name.to_owned()))
}

/// Parses `HH:MM` (two digits each) into minutes after midnight; `24:00`
/// gives [`MINUTES_PER_DAY`].
fn parse_clock(text: &str) -> Result<u16, WindowProblem> {
    let bad = || WindowProblem::BadTime(text.to_owned());
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !well_formed {
        return Err(bad());
    }
    let digit = |i: usize| u16::from(bytes[i] - b'0');
    let hours = digit(0) * 10 + digit(1);
    let minutes = digit(3) * 10 + digit(4);
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// Minutes after midnight as `HH:MM` (`24:00` for the end of the day).
fn clock_text(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// The windows leave no minute of the week closed, counting the part of a
/// window crossing midnight that falls on the next day (Sunday's into
/// Monday's).
fn covers_whole_week(windows: &[Window]) -> bool {
    if windows.is_empty() {
        return false;
    }
    let mut open = vec![false; MINUTES_PER_WEEK];
    for window in windows {
        let end = if window.crosses_midnight() {
            window.end + MINUTES_PER_DAY
        } else {
            window.end
        };
        for day in (0..7).filter(|&day| window.days.contains(day)) {
            let day_start = day * usize::from(MINUTES_PER_DAY);
            for minute in usize::from(window.start)..usize::from(end) {
                open[(day_start + minute) % MINUTES_PER_WEEK] = true;
            }
        }
    }
    open.iter().all(|&minute_open| minute_open)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<SendWindows, WindowError> {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        SendWindows::parse(&values)
    }

    #[track_caller]
    fn check_stored(values: &[&str], stored: &str) {
        let windows = parse(values).expect("valid windows");
        assert_eq!(windows.to_stored(), stored);
        let back = SendWindows::from_stored(stored).expect("stored windows read back");
        assert_eq!(back, windows);
        assert_eq!(back.to_stored(), stored);
    }

    #[track_caller]
    fn check_refused(value: &str, problem: WindowProblem) {
        let error = parse(&[value]).expect_err("refused");
        assert_eq!(error.value, value);
        assert_eq!(error.problem, problem);
    }

    #[test]
    fn no_window_is_always_open() {
        let windows = parse(&[]).expect("no windows");
        assert!(windows.is_always_open());
        assert_eq!(windows, SendWindows::default());
        assert_eq!(windows.to_string(), "always open");
        check_stored(&[], "always");
    }

    #[test]
    fn an_everyday_window_applies_to_every_day() {
        let windows = parse(&["08:00-21:00"]).expect("valid");
        assert!(!windows.is_always_open());
        assert_eq!(windows.windows().len(), 1);
        let window = windows.windows()[0];
        assert_eq!(window.days, Days::EVERY_DAY);
        assert_eq!((window.start, window.end), (8 * 60, 21 * 60));
        assert_eq!(windows.to_string(), "every day 08:00-21:00");
    }

    #[test]
    fn days_take_names_full_names_ranges_and_any_case() {
        let named = parse(&["mon,tue,wed,thu,fri=09:00-17:00"]).expect("names");
        let ranged = parse(&["Mon-FRI=09:00-17:00"]).expect("range");
        let full = parse(&["monday-friday=09:00-17:00"]).expect("full names");
        assert_eq!(named, ranged);
        assert_eq!(named, full);
        assert_eq!(named.to_stored(), "mon-fri=09:00-17:00");
        let single = parse(&["wed-wed=09:00-17:00"]).expect("one-day range");
        assert_eq!(single.to_stored(), "wed=09:00-17:00");
    }

    #[test]
    fn a_range_wraps_over_the_week_end() {
        let windows = parse(&["fri-mon=10:00-16:00"]).expect("valid");
        let days = windows.windows()[0].days;
        let open: Vec<usize> = (0..7).filter(|&d| days.contains(d)).collect();
        assert_eq!(open, vec![0, 4, 5, 6]);
        assert_eq!(windows.to_stored(), "fri-mon=10:00-16:00");
    }

    #[test]
    fn windows_with_the_same_times_share_one_entry() {
        let windows =
            parse(&["sat=10:00-16:00", "mon-fri=09:00-20:00", "sun=10:00-16:00"]).expect("valid");
        assert_eq!(
            windows.to_stored(),
            "mon-fri=09:00-20:00 sat,sun=10:00-16:00"
        );
        assert_eq!(
            windows.to_string(),
            "mon-fri 09:00-20:00, sat,sun 10:00-16:00"
        );
        let same = parse(&["sat,sun=10:00-16:00", "mon-fri=09:00-20:00"]).expect("valid");
        assert_eq!(windows, same);
    }

    #[test]
    fn the_stored_form_round_trips() {
        check_stored(&["08:00-21:00"], "08:00-21:00");
        check_stored(
            &["mon-fri=09:00-20:00", "sat=10:00-16:00"],
            "mon-fri=09:00-20:00 sat=10:00-16:00",
        );
        check_stored(&["fri=22:00-02:00"], "fri=22:00-02:00");
        check_stored(&["mon,wed=09:00-24:00"], "mon,wed=09:00-24:00");
        check_stored(&["sat,sun,mon,wed=09:00-10:00"], "sat-mon,wed=09:00-10:00");
        check_stored(
            &["09:00-12:00", "mon=11:00-17:00"],
            "09:00-12:00 mon=11:00-17:00",
        );
    }

    #[test]
    fn unreadable_stored_text_is_refused_with_its_value() {
        let error = SendWindows::from_stored("mon-fry=09:00-17:00").expect_err("refused");
        assert_eq!(error.stored, "mon-fry=09:00-17:00");
        assert!(error.to_string().contains("unknown day \"fry\""), "{error}");
        assert!(SendWindows::from_stored("").is_err());
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let windows = parse(&["22:00-02:00"]).expect("valid");
        let window = windows.windows()[0];
        assert!(window.crosses_midnight());
        assert_eq!(windows.to_string(), "every day 22:00-02:00 the next day");
    }

    #[test]
    fn midnight_as_an_end_is_24_00() {
        let late = parse(&["22:00-00:00"]).expect("valid");
        let end_of_day = parse(&["22:00-24:00"]).expect("valid");
        assert_eq!(late, end_of_day);
        assert!(!late.windows()[0].crosses_midnight());
    }

    #[test]
    fn windows_covering_the_whole_week_are_always_open() {
        assert!(parse(&["00:00-24:00"]).expect("valid").is_always_open());
        assert!(parse(&["12:00-12:01", "12:01-12:00"])
            .expect("valid")
            .is_always_open());
        assert!(parse(&["mon-fri=00:00-24:00", "sat,sun=00:00-24:00"])
            .expect("valid")
            .is_always_open());
        assert!(!parse(&["mon-sat=00:00-24:00"])
            .expect("valid")
            .is_always_open());
        assert!(!parse(&["00:00-23:59"]).expect("valid").is_always_open());
        // Sunday's window ends on Monday: the week is covered.
        assert!(
            parse(&["mon-sat=00:00-24:00", "sun=00:00-00:30", "sun=00:30-00:00"])
                .expect("valid")
                .is_always_open()
        );
    }

    #[test]
    fn the_error_names_the_value_and_what_is_accepted() {
        let error = parse(&["mon-fry=09:00-17:00"]).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "--window \"mon-fry=09:00-17:00\": unknown day \"fry\"; days are mon tue wed thu \
             fri sat sun, or a range such as mon-fri"
        );
    }

    #[test]
    fn each_malformed_form_is_refused() {
        check_refused("", WindowProblem::Empty);
        check_refused("   ", WindowProblem::Empty);
        check_refused("9:5-17:00", WindowProblem::BadTime("9:5".into()));
        check_refused("9:00-17:00", WindowProblem::BadTime("9:00".into()));
        check_refused("25:00-26:00", WindowProblem::BadTime("25:00".into()));
        check_refused("12:60-13:00", WindowProblem::BadTime("12:60".into()));
        check_refused("09:00-24:01", WindowProblem::BadTime("24:01".into()));
        check_refused(
            "09:00-17:00-18:00",
            WindowProblem::BadTime("17:00-18:00".into()),
        );
        check_refused("0900-1700", WindowProblem::BadTime("0900".into()));
        check_refused("24:00-02:00", WindowProblem::OpensAtMidnightEnd);
        check_refused("09:00-09:00", WindowProblem::OpensAndClosesAtOnce);
        check_refused("00:00-00:00", WindowProblem::OpensAndClosesAtOnce);
        check_refused("09:00", WindowProblem::MissingDash);
        check_refused("09:00 17:00", WindowProblem::MissingDash);
        check_refused("mon-fri 09:00-17:00", WindowProblem::MissingEquals);
        check_refused("=09:00-17:00", WindowProblem::NoDays);
        check_refused("mon-fri=", WindowProblem::NoTimes);
        check_refused("mon,,fri=09:00-17:00", WindowProblem::MissingDay);
        check_refused("mon,=09:00-17:00", WindowProblem::MissingDay);
        check_refused("mon-=09:00-17:00", WindowProblem::MissingDay);
        check_refused(
            "mon-fry=09:00-17:00",
            WindowProblem::UnknownDay("fry".into()),
        );
        check_refused(
            "weekdays=09:00-17:00",
            WindowProblem::UnknownDay("weekdays".into()),
        );
    }

    #[test]
    fn the_first_refused_value_is_the_error() {
        let error = parse(&["08:00-21:00", "sat=25:00-26:00"]).expect_err("refused");
        assert_eq!(error.value, "sat=25:00-26:00");
    }
}
