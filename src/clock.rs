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

    /// This reading as a point in time for the calendar (`crate::schedule`).
    pub fn timestamp(&self) -> jiff::Timestamp {
        timestamp(self.unix_ms)
    }

    /// The instant of this clock at which the calendar reads `at`: how long
    /// to wait for a window, the start or the next day. A moment already
    /// past is now.
    pub fn instant_at(&self, at: jiff::Timestamp) -> Instant {
        let ahead = at.as_millisecond().saturating_sub(self.unix_ms);
        self.instant + Duration::from_millis(u64::try_from(ahead).unwrap_or(0))
    }
}

/// Unix milliseconds as a point in time; the range jiff knows covers every
/// time bpsms stores, and anything beyond it is clamped.
pub fn timestamp(unix_ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(unix_ms).unwrap_or(if unix_ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    })
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
    timestamp(ms).to_string()
}

/// A duration in whole milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A duration as people read it: milliseconds below a second, tenths of a
/// second below ten, whole seconds below a minute, minutes and seconds below
/// an hour, then hours and minutes (`250 ms`, `1.5 s`, `42 s`, `2 min 5 s`,
/// `4 h 10 min`).
pub fn rounded(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=9_949 => format!("{:.1} s", d.as_secs_f64()),
        9_950..=59_499 => format!("{} s", (ms + 500) / 1000),
        59_500..=3_569_999 => {
            let seconds = (ms + 500) / 1000;
            match seconds % 60 {
                0 => format!("{} min", seconds / 60),
                rest => format!("{} min {rest} s", seconds / 60),
            }
        }
        _ => {
            let minutes = (ms + 30_000) / 60_000;
            match minutes % 60 {
                0 => format!("{} h", minutes / 60),
                rest => format!("{} h {rest} min", minutes / 60),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people_are_rounded() {
        let ms = Duration::from_millis;
        assert_eq!(rounded(ms(0)), "0 ms");
        assert_eq!(rounded(ms(437)), "437 ms");
        assert_eq!(rounded(Duration::from_nanos(1_543_210_987)), "1.5 s");
        assert_eq!(rounded(ms(9_960)), "10 s");
        assert_eq!(rounded(ms(42_400)), "42 s");
        assert_eq!(rounded(ms(59_600)), "1 min");
        assert_eq!(rounded(ms(125_000)), "2 min 5 s");
        assert_eq!(rounded(ms(3_569_000)), "59 min 29 s");
        assert_eq!(rounded(ms(3_600_000)), "1 h");
        assert_eq!(rounded(ms(14_400_900)), "4 h");
        assert_eq!(rounded(ms(90_000_000)), "25 h");
        assert_eq!(rounded(ms(5_430_000)), "1 h 31 min");
    }
}
