//! Helpers the calendar's tests share: zones by name, instants in RFC 3339,
//! and schedules from `--window` values.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::window::SendWindows;
use super::Schedule;

pub fn zone(name: &str) -> TimeZone {
    jiff::tz::db().get(name).expect("known zone")
}

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("RFC 3339 instant")
}

/// The schedule of these `--window` values, closing on time.
pub fn schedule(values: &[&str]) -> Schedule {
    let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
    Schedule {
        windows: SendWindows::parse(&values).expect("valid windows"),
        stop_before: Duration::ZERO,
    }
}
