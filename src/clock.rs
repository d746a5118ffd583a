//! Wall-clock time as Unix milliseconds. Only the edges of the program call
//! [`now_ms`] or [`Now::read`]; everything below takes `now` as an argument
//! so tests control it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One reading of the clock, in both forms the workers need: an instant to
/// pace and wait by, and Unix milliseconds to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub unix_ms: i64,
}

impl Now {
    pub fn read() -> Now {
        Now {
            instant: Instant::now(),
            unix_ms: now_ms(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 in UTC, e.g. `2026-11-29T06:30:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    format_ms(ms, &time::format_description::well_known::Rfc3339)
}

/// Formats Unix milliseconds in UTC with `format`; empty when out of range.
pub fn format_ms(ms: i64, format: &impl time::formatting::Formattable) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
