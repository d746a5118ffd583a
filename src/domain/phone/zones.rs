//! The time zone(s) of a phone number, read from its prefix, for recipients
//! whose CSV row names no zone: bpsms texts each recipient only within a
//! window of hours in the recipient's local time.
//!
//! The data is libphonenumber's prefix-to-time-zone map (Apache-2.0), as the
//! Python `phonenumbers` release named by [`TIMEZONE_METADATA`] carries it,
//! written to `timezones.txt` beside this file by `scripts/timezones.py` and
//! embedded in the binary. libphonenumber answers a number that it does not
//! tie to a place (toll-free, premium rate, most mobile ranges…) with the
//! zones of its whole calling code, whatever longer prefix its map has; the
//! script marks the ranges that hold only such numbers, so that a lookup by
//! prefix alone gives libphonenumber's answer without working out the number
//! type. The unit test `agrees_with_libphonenumber` checks every number of
//! `tests/data/phone/timezones.csv`, whose `note` column says where bpsms
//! differs and why.
//!
//! This module only names zones: resolving them (with jiff) and deciding
//! when a window is open belong to its callers. It does no I/O.

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::domain::phone::E164;

/// Where the zone data comes from: the `phonenumbers` release that
/// `scripts/timezones.py` read libphonenumber's map from.
pub const TIMEZONE_METADATA: &str = "phonenumbers 9.0.43";

/// What the prefix of a phone number says about the recipient's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberZones {
    /// The IANA zone(s) of the number's own prefix: sorted, each once, never
    /// empty. Several when the prefix spans several zones (the number is
    /// texted only while the window is open in all of them). The names are
    /// tzdb's current ones, all known to jiff's bundled database.
    Local(&'static [&'static str]),
    /// Only the country is known and it spans several zones (toll-free,
    /// non-geographic and many mobile ranges): the campaign's default zone
    /// applies.
    CountryWide,
    /// No zone known for the number (international networks such as +800,
    /// +870, +882).
    Unknown,
}

/// The zone(s) of `number`, from the longest prefix of its digits that the
/// table knows. A match on the country calling code alone, or on a range
/// that holds only numbers not tied to a place, is country-level: several
/// zones make it [`NumberZones::CountryWide`], one zone makes it
/// [`NumberZones::Local`]. It costs at most a dozen hash lookups and does
/// not check the number again: a number that [`E164::from_stored`] accepted
/// but that is no longer valid gets the zones of its prefix.
pub fn zones_for(number: &E164) -> NumberZones {
    TABLE.zones_for_digits(number.digits())
}

/// The table as `scripts/timezones.py` wrote it.
const TABLE_TEXT: &str = include_str!("timezones.txt");

/// The table, parsed on first use. A line that does not parse is left out:
/// the unit test `table_parses_without_problems` fails on any, so a
/// released binary has none, and a table that lost lines would make some
/// numbers `Unknown` or country-level rather than stop a send.
static TABLE: LazyLock<Table> = LazyLock::new(|| parse_table(TABLE_TEXT).0);

/// ICU's name for "no zone known", which libphonenumber uses in its map.
const UNKNOWN_ZONE: &str = "Etc/Unknown";

/// The country calling code is the first 1 to 3 digits of a number.
const LONGEST_CALLING_CODE: usize = 3;

/// E.164 numbers have at most 15 digits, so no longer prefix is useful.
const LONGEST_PREFIX: usize = 15;

/// What the table says of the numbers whose longest prefix is a line's.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// These zones, sorted, each once, without `Etc/Unknown`; empty when
    /// libphonenumber knows no zone.
    Zones(Vec<&'static str>),
    /// `*`: the zones of the number's calling code line. Only numbers that
    /// libphonenumber does not tie to a place start with this prefix.
    CallingCode,
}

/// The parsed `timezones.txt`.
#[derive(Debug, Default)]
struct Table {
    /// Each line's prefix (digits, calling code included) and what it says.
    lines: HashMap<&'static str, Line>,
    /// The number of digits of the longest prefix, so that a lookup starts
    /// there rather than at the 15th digit.
    longest_prefix: usize,
}

impl Table {
    fn zones_for_digits(&'static self, digits: &str) -> NumberZones {
        let prefix = |length: usize| digits.get(..length);
        let line_of = |length: usize| prefix(length).and_then(|p| self.lines.get(p));
        // Calling codes are prefix-free, so the shortest line is the code's.
        let Some((code_length, code_line)) = (1..=LONGEST_CALLING_CODE)
            .find_map(|length| line_of(length).map(|line| (length, line)))
        else {
            return NumberZones::Unknown;
        };
        let longest = self.longest_prefix.min(digits.len());
        let (length, line) = (code_length + 1..=longest)
            .rev()
            .find_map(|length| line_of(length).map(|line| (length, line)))
            .unwrap_or((code_length, code_line));
        match (line, code_line) {
            (Line::Zones(zones), _) if length == code_length => country_level(zones),
            (Line::Zones(zones), _) => local(zones),
            (Line::CallingCode, Line::Zones(zones)) => country_level(zones),
            // A `*` calling code line is refused by the parser's checks.
            (Line::CallingCode, Line::CallingCode) => NumberZones::Unknown,
        }
    }
}

/// The zones of a whole calling code: its country when it has one zone.
fn country_level(zones: &'static [&'static str]) -> NumberZones {
    if zones.len() > 1 {
        NumberZones::CountryWide
    } else {
        local(zones)
    }
}

fn local(zones: &'static [&'static str]) -> NumberZones {
    if zones.is_empty() {
        NumberZones::Unknown
    } else {
        NumberZones::Local(zones)
    }
}

/// Reads the table: `#` comments, `zone INDEX NAME` lines numbering the
/// zones from 0, then `DIGITS INDEX,INDEX…` or `DIGITS *` lines. Returns
/// the table made of the lines that parse and one sentence per problem
/// (naming the line), which only the unit tests look at.
fn parse_table(text: &'static str) -> (Table, Vec<String>) {
    let mut zones: Vec<&'static str> = Vec::new();
    let mut table = Table::default();
    let mut problems = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let result = match line.strip_prefix("zone ") {
            Some(zone) => parse_zone(zone, zones.len()).map(|name| zones.push(name)),
            None => parse_prefix(line, &zones).and_then(|(prefix, parsed)| {
                if table.lines.insert(prefix, parsed).is_some() {
                    return Err(format!("prefix {prefix} appears twice"));
                }
                table.longest_prefix = table.longest_prefix.max(prefix.len());
                Ok(())
            }),
        };
        if let Err(problem) = result {
            problems.push(format!("line {line_number} {raw:?}: {problem}"));
        }
    }
    problems.extend(check_calling_codes(&table));
    (table, problems)
}

/// Reads `INDEX NAME` (after `zone `); zones are numbered in order from 0.
fn parse_zone(text: &'static str, expected_index: usize) -> Result<&'static str, String> {
    let (index, name) = text.split_once(' ').ok_or("expected `zone INDEX NAME`")?;
    if index != expected_index.to_string() {
        return Err(format!("zone index {index:?}, expected {expected_index}"));
    }
    let plausible = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-+".contains(&b));
    if !plausible {
        return Err(format!(
            "zone name {name:?} is not an IANA name (letters, digits, / _ - +)"
        ));
    }
    Ok(name)
}

/// Reads `DIGITS INDEX,INDEX…` or `DIGITS *`.
fn parse_prefix(
    line: &'static str,
    zones: &[&'static str],
) -> Result<(&'static str, Line), String> {
    let (prefix, value) = line
        .split_once(' ')
        .ok_or("expected `DIGITS INDEX,INDEX…` or `DIGITS *`")?;
    let digits_only = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || prefix.len() > LONGEST_PREFIX {
        return Err(format!(
            "prefix {prefix:?} is not 1 to {LONGEST_PREFIX} digits"
        ));
    }
    if value == "*" {
        return Ok((prefix, Line::CallingCode));
    }
    let mut names = Vec::new();
    for index in value.split(',') {
        let name = index
            .parse::<usize>()
            .ok()
            .and_then(|index| zones.get(index))
            .ok_or_else(|| {
                format!(
                    "zone {index:?} is not the index of a zone line above (0 to {})",
                    zones.len().saturating_sub(1)
                )
            })?;
        if *name != UNKNOWN_ZONE {
            names.push(*name);
        }
    }
    if !names.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err("zones are not sorted by name, each once".to_owned());
    }
    Ok((prefix, Line::Zones(names)))
}

/// The lookup reads a number's shortest line, among its first 1 to 3 digits,
/// as its calling code's: every prefix must have such a line and it must not
/// be `*`. (That such a line is a real calling code is the script's check,
/// which knows the codes.)
fn check_calling_codes(table: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    for prefix in table.lines.keys() {
        let code_line = (1..=LONGEST_CALLING_CODE.min(prefix.len()))
            .find_map(|length| prefix.get(..length).and_then(|code| table.lines.get(code)));
        match code_line {
            None => problems.push(format!("prefix {prefix} has no calling code line")),
            Some(Line::CallingCode) => {
                problems.push(format!("prefix {prefix}: its calling code line is `*`"))
            }
            Some(Line::Zones(_)) => {}
        }
    }
    problems.sort();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::phone::Region;

    fn parse_clean(text: &'static str) -> &'static Table {
        let (table, problems) = parse_table(text);
        assert!(problems.is_empty(), "{problems:#?}");
        Box::leak(Box::new(table))
    }

    fn number(raw: &str) -> E164 {
        E164::parse(raw, &Region::default()).expect("a valid number")
    }

    /// How the fixture writes an answer.
    fn shown(zones: NumberZones) -> String {
        match zones {
            NumberZones::Local(names) => format!("local:{}", names.join(" ")),
            NumberZones::CountryWide => "country-wide".to_owned(),
            NumberZones::Unknown => "unknown".to_owned(),
        }
    }

    #[test]
    fn table_parses_without_problems() {
        let (table, problems) = parse_table(TABLE_TEXT);
        assert!(
            problems.is_empty(),
            "{} problems in timezones.txt:\n{}",
            problems.len(),
            problems.join("\n")
        );
        assert!(table.lines.len() > 3000, "only {} lines", table.lines.len());
        assert!(TABLE_TEXT.contains(TIMEZONE_METADATA));
    }

    #[test]
    fn every_zone_is_known_to_jiff() {
        let mut unknown = Vec::new();
        let mut n_zones = 0;
        for line in TABLE_TEXT.lines() {
            let Some((_, name)) = line
                .strip_prefix("zone ")
                .and_then(|zone| zone.split_once(' '))
            else {
                continue;
            };
            n_zones += 1;
            if name != UNKNOWN_ZONE && jiff::tz::db().get(name).is_err() {
                unknown.push(name);
            }
        }
        assert!(n_zones > 200, "only {n_zones} zones");
        assert!(unknown.is_empty(), "unknown to jiff: {unknown:?}");
    }

    #[test]
    fn named_examples() {
        let local = |raw: &str| match zones_for(&number(raw)) {
            NumberZones::Local(names) => names.to_vec(),
            other => panic!("{raw}: {other:?}"),
        };
        // A North Dakota area code that straddles two zones.
        assert_eq!(
            local("+1 701 302 0000"),
            ["America/Denver", "America/North_Dakota/Center"]
        );
        // Alaska: Anchorage and the Aleutians.
        assert_eq!(
            local("+1 907 555 0123"),
            ["America/Adak", "America/Anchorage"]
        );
        assert_eq!(local("+1 212 555 0123"), ["America/New_York"]);
        assert_eq!(local("+33 1 23 45 67 89"), ["Europe/Paris"]);
        // libphonenumber's map says Asia/Calcutta, tzdb's old name.
        assert_eq!(local("+91 98765 43210"), ["Asia/Kolkata"]);
        assert_eq!(local("+7 495 123 45 67"), ["Europe/Moscow"]);
        assert_eq!(local("+61 2 1234 5678"), ["Australia/Sydney"]);
        for country_wide in [
            "+1 800 555 0123",
            "+1 888 234 5678",
            // Mobile ranges that libphonenumber's map files under the
            // capital's zone, although their numbers are anywhere.
            "+7 912 345 67 89",
            "+61 412 345 678",
            "+44 7400 123456",
        ] {
            assert_eq!(
                zones_for(&number(country_wide)),
                NumberZones::CountryWide,
                "{country_wide}"
            );
        }
        let international_freephone = E164::parse_sender("+800 1234 5678").expect("valid");
        assert_eq!(zones_for(&international_freephone), NumberZones::Unknown);
    }

    /// One row of `tests/data/phone/timezones.csv`.
    #[derive(serde::Deserialize)]
    struct Case {
        number: String,
        /// libphonenumber's answer in bpsms's terms.
        libphonenumber: String,
        /// What `zones_for` must answer: the same unless `note` says why not.
        expected: String,
        note: String,
    }

    /// libphonenumber's `time_zones_for_number` on thousands of numbers,
    /// written by `scripts/timezones.py`.
    #[test]
    fn agrees_with_libphonenumber() {
        let fixture = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/phone/timezones.csv"
        ));
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(fixture.as_bytes());
        let mut n_cases = 0;
        let mut mismatches = Vec::new();
        for case in reader.deserialize::<Case>() {
            let case = case.expect("fixture row parses");
            n_cases += 1;
            assert!(
                case.expected == case.libphonenumber || !case.note.is_empty(),
                "{}: the fixture differs from libphonenumber without saying why",
                case.number
            );
            // The fixture's numbers are valid for the metadata of the
            // `phonenumbers` release, which may be a release ahead of the
            // crate that `E164::parse` uses: only their shape is checked.
            let number = E164::from_stored(&case.number).expect("an E.164 number");
            let actual = shown(zones_for(&number));
            if actual != case.expected {
                mismatches.push(format!(
                    "{}: expected {}, got {actual}",
                    case.number, case.expected
                ));
            }
        }
        assert!(n_cases >= 300, "only {n_cases} numbers in the fixture");
        assert!(
            mismatches.is_empty(),
            "{} of {n_cases} numbers classify differently:\n{}",
            mismatches.len(),
            mismatches.join("\n")
        );
    }

    const SMALL_TABLE: &str = "\
# comment
zone 0 America/Chicago
zone 1 America/New_York
zone 2 Etc/Unknown
zone 3 Europe/Paris
1 0,1
1212 1
1800 *
12125 0
33 3
339 *
99 2
";

    #[test]
    fn the_longest_prefix_decides() {
        let table = parse_clean(SMALL_TABLE);
        let zones = |digits: &str| shown(table.zones_for_digits(digits));
        assert_eq!(zones("12125550123"), "local:America/Chicago");
        assert_eq!(zones("12124550123"), "local:America/New_York");
        // The calling code alone, with several zones; a `*` range.
        assert_eq!(zones("14155550123"), "country-wide");
        assert_eq!(zones("18005550123"), "country-wide");
        // A calling code with one zone is that zone, `*` or not.
        assert_eq!(zones("33123456789"), "local:Europe/Paris");
        assert_eq!(zones("33912345678"), "local:Europe/Paris");
        // Only Etc/Unknown, or no line at all.
        assert_eq!(zones("99123456"), "unknown");
        assert_eq!(zones("44123456"), "unknown");
        // Fewer digits than the longest prefix, or none.
        assert_eq!(zones("1212"), "local:America/New_York");
        assert_eq!(zones("1"), "country-wide");
        assert_eq!(zones(""), "unknown");
    }

    #[track_caller]
    fn check_problem(text: &'static str, expected: &str) {
        let (_, problems) = parse_table(text);
        assert!(
            problems.iter().any(|problem| problem.contains(expected)),
            "expected a problem with {expected:?}, got {problems:#?}"
        );
    }

    #[test]
    fn a_bad_line_is_a_problem() {
        check_problem("zone 1 Europe/Paris\n", "zone index \"1\", expected 0");
        check_problem("zone 0 Europe Paris\n", "not an IANA name");
        check_problem("zone 0\n", "expected `zone INDEX NAME`");
        check_problem("zone 0 Europe/Paris\n33 1\n", "not the index of a zone");
        check_problem("zone 0 Europe/Paris\n33 x\n", "not the index of a zone");
        check_problem("zone 0 Europe/Paris\n3a 0\n", "is not 1 to 15 digits");
        check_problem("zone 0 Europe/Paris\n33\n", "expected `DIGITS");
        check_problem("zone 0 Europe/Paris\n33 0\n33 0\n", "appears twice");
        check_problem(
            "zone 0 Europe/Paris\nzone 1 Africa/Abidjan\n33 0,1\n",
            "not sorted",
        );
        check_problem(
            "zone 0 Europe/Paris\n3391 0\n",
            "3391 has no calling code line",
        );
        check_problem("zone 0 Europe/Paris\n33 *\n", "calling code line is `*`");
        // A bad line is left out, the others still count.
        let (table, problems) = parse_table("zone 0 Europe/Paris\n33 0\n34 9\n");
        assert_eq!(problems.len(), 1);
        let table: &'static Table = Box::leak(Box::new(table));
        assert_eq!(
            table.zones_for_digits("33123"),
            NumberZones::Local(&["Europe/Paris"])
        );
    }

    #[test]
    fn no_panic_on_arbitrary_digits() {
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let length = (next() % 17) as usize;
            let digits: String = (0..length)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let _ = TABLE.zones_for_digits(&digits);
        }
    }
}
