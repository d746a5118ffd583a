//! The instants of `--start-at` and `--not-after`: RFC 3339 with its offset,
//! or a local date and time read in the campaign's zone.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;

/// What every refusal says is accepted.
const ACCEPTED: &str = "write RFC 3339 such as 2026-12-01T18:00:00-05:00 or \
    2026-12-01T23:00:00Z, or a local date and time such as 2026-12-01T18:00 or \
    \"2026-12-01 18:00\" (seconds optional) read in the campaign's time zone";

/// Why a `--start-at` or `--not-after` value was refused. The messages name
/// the value but not the flag: the caller adds which flag it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstantError {
    #[error("{value:?} is not a date and time; {ACCEPTED}")]
    Malformed {
        /// The value as given.
        value: String,
    },
    #[error("{value:?} names a day that does not exist (months 01-12, days within the month)")]
    NoSuchDay {
        /// The value as given.
        value: String,
    },
    #[error("{value:?} names a time that does not exist (hours 00-23, minutes and seconds 00-59)")]
    NoSuchTime {
        /// The value as given.
        value: String,
    },
    #[error("{value:?} has an offset beyond ±25:59; write Z or ±HH:MM such as -05:00")]
    NoSuchOffset {
        /// The value as given.
        value: String,
    },
    #[error("{value:?} is outside the range of instants this program handles")]
    OutOfRange {
        /// The value as given.
        value: String,
    },
}

/// Reads `raw` as an instant. Accepted (surrounding spaces ignored):
///
/// - RFC 3339: `2026-12-01T18:00:00-05:00`, `2026-12-01T23:00:00Z`, with
///   optional fractional seconds, `T` or a space between date and time, and
///   seconds optional (`2026-12-01T18:00Z`);
/// - a local date and time without offset, `2026-12-01T18:00`,
///   `2026-12-01 18:00`, `2026-12-01 18:00:30`, read in `zone`. A local time
///   that a clock change skips or repeats is placed with jiff's
///   "compatible" rule: a skipped time as far after the change as it was
///   written after its start, a repeated time at its first occurrence.
///
/// A date alone is refused: whether it means the start or the end of the
/// day is a guess.
pub fn parse_instant(raw: &str, zone: &TimeZone) -> Result<Timestamp, InstantError> {
    let value = raw.trim();
    let parts = split(value).ok_or_else(|| InstantError::Malformed {
        value: raw.to_owned(),
    })?;
    let day =
        Date::new(parts.year, parts.month, parts.day).map_err(|_| InstantError::NoSuchDay {
            value: raw.to_owned(),
        })?;
    let time =
        Time::new(parts.hour, parts.minute, parts.second, parts.nanosecond).map_err(|_| {
            InstantError::NoSuchTime {
                value: raw.to_owned(),
            }
        })?;
    let local = DateTime::from_parts(day, time);
    let out_of_range = |_| InstantError::OutOfRange {
        value: raw.to_owned(),
    };
    match parts.offset_seconds {
        Some(seconds) => {
            let offset = Offset::from_seconds(seconds).map_err(|_| InstantError::NoSuchOffset {
                value: raw.to_owned(),
            })?;
            offset.to_timestamp(local).map_err(out_of_range)
        }
        None => zone
            .to_ambiguous_timestamp(local)
            .compatible()
            .map_err(out_of_range),
    }
}

/// The fields of a well-formed value, not yet checked against the calendar.
struct Parts {
    year: i16,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    nanosecond: i32,
    /// `None`: a local time.
    offset_seconds: Option<i32>,
}

/// Splits `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|±HH:MM]` into its fields;
/// `None` when the text has another shape.
fn split(text: &str) -> Option<Parts> {
    let mut cursor = Cursor { rest: text };
    let year = cursor.digits(4)?;
    cursor.expect(|c| c == '-')?;
    let month = cursor.digits(2)?;
    cursor.expect(|c| c == '-')?;
    let day = cursor.digits(2)?;
    cursor.expect(|c| matches!(c, 'T' | 't' | ' '))?;
    let hour = cursor.digits(2)?;
    cursor.expect(|c| c == ':')?;
    let minute = cursor.digits(2)?;
    let mut second = 0;
    let mut nanosecond = 0;
    if cursor.take(|c| c == ':').is_some() {
        second = cursor.digits(2)?;
        if cursor.take(|c| c == '.' || c == ',').is_some() {
            nanosecond = cursor.fraction()?;
        }
    }
    let offset_seconds = match cursor.take(|c| matches!(c, 'Z' | 'z' | '+' | '-')) {
        None => None,
        Some('Z' | 'z') => Some(0),
        Some(sign) => {
            let hours = cursor.digits(2)?;
            cursor.expect(|c| c == ':')?;
            let minutes = cursor.digits(2)?;
            if minutes > 59 {
                return None;
            }
            let magnitude = i32::try_from(hours * 3600 + minutes * 60).ok()?;
            Some(if sign == '-' { -magnitude } else { magnitude })
        }
    };
    if !cursor.rest.is_empty() {
        return None;
    }
    Some(Parts {
        year: i16::try_from(year).ok()?,
        month: i8::try_from(month).ok()?,
        day: i8::try_from(day).ok()?,
        hour: i8::try_from(hour).ok()?,
        minute: i8::try_from(minute).ok()?,
        second: i8::try_from(second).ok()?,
        nanosecond,
        offset_seconds,
    })
}

/// What is left of the text being split.
struct Cursor<'a> {
    rest: &'a str,
}

impl Cursor<'_> {
    /// Exactly `count` ASCII digits, as a number.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let digits = self.rest.get(..count)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.rest = &self.rest[count..];
        digits.parse().ok()
    }

    /// The next character, if `wanted` accepts it.
    fn take(&mut self, wanted: impl Fn(char) -> bool) -> Option<char> {
        let next = self.rest.chars().next().filter(|&c| wanted(c))?;
        self.rest = &self.rest[next.len_utf8()..];
        Some(next)
    }

    fn expect(&mut self, wanted: impl Fn(char) -> bool) -> Option<()> {
        self.take(wanted).map(|_| ())
    }

    /// One to nine digits after the decimal point, as nanoseconds.
    fn fraction(&mut self) -> Option<i32> {
        let length = self.rest.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&length) {
            return None;
        }
        let digits = &self.rest[..length];
        self.rest = &self.rest[length..];
        let value: i32 = digits.parse().ok()?;
        let scale = 10_i32.checked_pow(u32::try_from(9 - length).ok()?)?;
        value.checked_mul(scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::zone;

    #[track_caller]
    fn check(raw: &str, zone_name: &str, expected: &str) {
        let parsed = parse_instant(raw, &zone(zone_name)).expect("accepted");
        assert_eq!(parsed.to_string(), expected);
    }

    #[test]
    fn rfc_3339_keeps_its_own_offset() {
        check(
            "2026-12-01T18:00:00-05:00",
            "Asia/Tokyo",
            "2026-12-01T23:00:00Z",
        );
        check(
            "2026-12-01T23:00:00Z",
            "America/New_York",
            "2026-12-01T23:00:00Z",
        );
        check(
            "2026-12-01t23:00:00z",
            "America/New_York",
            "2026-12-01T23:00:00Z",
        );
        check("2026-12-01 18:00:00+05:45", "UTC", "2026-12-01T12:15:00Z");
        check("2026-12-01T18:00-05:00", "UTC", "2026-12-01T23:00:00Z");
        check("2026-12-01T18:00:00.250Z", "UTC", "2026-12-01T18:00:00.25Z");
        check("  2026-12-01T18:00:00Z  ", "UTC", "2026-12-01T18:00:00Z");
    }

    #[test]
    fn a_local_time_is_read_in_the_campaign_zone() {
        check(
            "2026-12-01T18:00",
            "America/New_York",
            "2026-12-01T23:00:00Z",
        );
        check(
            "2026-12-01 18:00",
            "America/New_York",
            "2026-12-01T23:00:00Z",
        );
        check(
            "2026-12-01 18:00:30",
            "America/New_York",
            "2026-12-01T23:00:30Z",
        );
        check(
            "2026-07-01T18:00",
            "America/New_York",
            "2026-07-01T22:00:00Z",
        );
        check("2026-12-01T18:00", "Asia/Kathmandu", "2026-12-01T12:15:00Z");
    }

    #[test]
    fn a_local_time_in_a_clock_change_is_compatible() {
        // Skipped: 02:30 on 2026-03-08 is read as 03:30 EDT.
        check(
            "2026-03-08 02:30",
            "America/New_York",
            "2026-03-08T07:30:00Z",
        );
        // Repeated: 01:30 on 2026-11-01 is the first one, EDT.
        check(
            "2026-11-01 01:30",
            "America/New_York",
            "2026-11-01T05:30:00Z",
        );
    }

    #[test]
    fn each_malformed_form_is_refused() {
        let utc = TimeZone::UTC;
        let malformed = [
            "",
            "tomorrow",
            "2026-12-01",
            "2026-12-01T18",
            "2026-12-1 18:00",
            "26-12-01 18:00",
            "2026/12/01 18:00",
            "2026-12-01 8:00",
            "2026-12-01  18:00",
            "2026-12-01T18:00:00-0500",
            "2026-12-01T18:00:00 -05:00",
            "2026-12-01T18:00:00-05",
            "2026-12-01T18:00:00Zjunk",
            "2026-12-01T18:00:00.",
            "2026-12-01T18:00:00.1234567890Z",
            "2026-12-01T18:00:00-05:60",
            "2026-12-01T18:00:00[America/New_York]",
            "２０２６-12-01T18:00",
        ];
        for raw in malformed {
            let error = parse_instant(raw, &utc).expect_err(raw);
            assert_eq!(
                error,
                InstantError::Malformed { value: raw.into() },
                "{raw}"
            );
        }
        let error = parse_instant("tomorrow", &utc).expect_err("malformed");
        assert!(error
            .to_string()
            .starts_with("\"tomorrow\" is not a date and time; write RFC 3339"));
    }

    #[test]
    fn values_beyond_the_calendar_are_refused() {
        let utc = TimeZone::UTC;
        for raw in [
            "2026-13-01 18:00",
            "2026-02-29 18:00",
            "2026-04-31T18:00Z",
            "2026-00-10 18:00",
        ] {
            assert_eq!(
                parse_instant(raw, &utc),
                Err(InstantError::NoSuchDay { value: raw.into() }),
                "{raw}"
            );
        }
        for raw in [
            "2026-12-01 24:00",
            "2026-12-01 18:60",
            "2026-12-01 18:00:60",
        ] {
            assert_eq!(
                parse_instant(raw, &utc),
                Err(InstantError::NoSuchTime { value: raw.into() }),
                "{raw}"
            );
        }
        assert_eq!(
            parse_instant("2026-12-01T18:00+26:00", &utc),
            Err(InstantError::NoSuchOffset {
                value: "2026-12-01T18:00+26:00".into()
            })
        );
        assert!(parse_instant("0000-01-01T00:00:00Z", &utc).is_ok());
        assert!(parse_instant("9999-12-30T00:00:00Z", &utc).is_ok());
        // The last instant jiff handles is 9999-12-30T22:00Z.
        assert_eq!(
            parse_instant("9999-12-31T23:59:59-20:00", &utc),
            Err(InstantError::OutOfRange {
                value: "9999-12-31T23:59:59-20:00".into()
            })
        );
    }
}
