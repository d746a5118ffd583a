//! Phone numbers: the [`Region`] used to read national numbers and the
//! validated [`E164`] number that every module below the CSV and CLI edges
//! works with.
//!
//! This module owns the normalisation of the formats people export from
//! spreadsheets and CRMs (`(415) 555-0101`, `1-415-555-0101`, `00 44 …`,
//! `+44 (0)20 …`, `4155550101.0`, `tel:` URIs, non-breaking spaces …) and the
//! verdict on whether a number is valid, which is Google's libphonenumber's as
//! the `rlibphonenumber` crate ports its rules and metadata. It does no I/O
//! and holds no state of its own. Every [`PhoneError`] message is written for
//! people: reports quote it verbatim, so it names the problem and never
//! echoes more than about 40 characters of the input.
//!
//! Before the library sees a number, `clean` refuses what is not a number
//! to text, with a better reason than libphonenumber would give: letters
//! (libphonenumber reads `1-800-FLOWERS` as a vanity number), extensions
//! (which it accepts), stray characters, and spreadsheet floats that lost
//! digits. It also reads `00` as the international prefix in every region,
//! where libphonenumber reads it so only in regions that dial abroad with it.
//! The unit test `agrees_with_libphonenumber` checks every row of
//! `tests/data/phone/agreement.csv`, Google's verdicts written by
//! `tests/data/phone/generate.py`, and the fixture says per row where bpsms
//! differs on purpose.

pub mod zones;

use std::fmt;

use rlibphonenumber::{
    NumberLengthType, ParseError, PhoneNumber, PhoneNumberFormat, PhoneNumberUtil, ValidationError,
    PHONE_NUMBER_UTIL,
};

thread_local! {
    /// Each thread that reads numbers has its own libphonenumber. The regex
    /// crate gives the fast path of a compiled pattern to the first thread
    /// that matches with it and sends every other thread through a locked
    /// pool: with one shared instance, the import's reader (the sender was
    /// read first, on another thread) spent about 15 % of its time in that
    /// pool. Building one costs a few milliseconds per thread.
    static UTIL: Option<PhoneNumberUtil> = PhoneNumberUtil::new().ok();
}

/// Runs `f` with this thread's libphonenumber (the shared one should this
/// thread's fail to build, which only a broken build of the crate could do).
fn with_util<T>(f: impl FnOnce(&PhoneNumberUtil) -> T) -> T {
    UTIL.with(|util| f(util.as_ref().unwrap_or(&PHONE_NUMBER_UTIL)))
}

/// How much of a raw input an error message shows, in characters.
const SHOWN_INPUT_CHARS: usize = 40;

/// E.164 allows at most 15 digits, country code included.
const E164_MAX_DIGITS: usize = 15;

/// Why a phone number (or a region) was refused. The `Display` text is meant
/// for people and is copied verbatim into reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Nothing but whitespace or separators.
    #[error("phone number is empty")]
    Empty,
    /// Letters that are not an extension marker (`N/A`, `call me`, `1-800-FLOWERS`).
    #[error("phone number contains letters: {input:?}")]
    Letters { input: String },
    /// An extension (`x12`, `ext. 12`, `;ext=12`): nobody can text an extension.
    #[error("phone number has an extension ({input:?}); an SMS cannot be sent to an extension")]
    Extension { input: String },
    /// A character that has no place in a phone number (`*`, `@`, `,` …).
    #[error("phone number {input:?} contains an unexpected character {character:?}")]
    UnexpectedCharacter { input: String, character: char },
    /// A spreadsheet stored the number as a float in scientific notation, so
    /// digits may have been lost.
    #[error(
        "phone number {input:?} was turned into a number by a spreadsheet and may have lost \
         digits; format the column as text and export it again"
    )]
    SpreadsheetNumber { input: String },
    /// Fewer digits than any number of its country has.
    #[error("phone number {input:?} is too short ({})", count_digits(*n_digits))]
    TooShort { input: String, n_digits: usize },
    /// More digits than any number of its country has.
    #[error("phone number {input:?} is too long ({})", count_digits(*n_digits))]
    TooLong { input: String, n_digits: usize },
    /// A `+` number whose country calling code does not exist.
    #[error("phone number {input:?} starts with an unknown country calling code")]
    UnknownCountryCode { input: String },
    /// Right length, but libphonenumber does not know the number range.
    /// `place` reads `region US` or `country code +44 (GB)`.
    #[error("{input:?} is not a valid phone number for {place}")]
    Invalid { input: String, place: String },
    /// A default region that is not a two-letter ISO 3166 code known to libphonenumber.
    #[error(
        "unknown region {input:?}: expected a two-letter ISO 3166 country code such as US, GB or DE"
    )]
    UnknownRegion { input: String },
    /// A sender given as a name instead of a number.
    #[error(
        "sender {input:?} is not a phone number: alphanumeric sender IDs are not supported by \
         the BPCC API; use a Text Out access number in E.164, e.g. +16505550100"
    )]
    AlphanumericSender { input: String },
    /// A sender without the leading `+` of the international form.
    #[error(
        "sender {input:?} must be in international E.164 form with a leading +, e.g. +16505550100"
    )]
    SenderNotInternational { input: String },
}

/// The country whose numbering plan reads numbers written without a country
/// code (`(415) 555-0101` is a US number only because the region says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    id: rlibphonenumber::Region,
    /// The upper-case ASCII letters of `id`, kept so [`Region::as_str`] can
    /// lend them.
    code: [u8; 2],
}

impl Region {
    /// Reads a two-letter ISO 3166 code, case-insensitively (`US`, `gb`).
    /// `UK` is accepted as the everyday name for `GB`.
    pub fn parse(raw: &str) -> Result<Region, PhoneError> {
        let trimmed = raw.trim();
        let unknown = || PhoneError::UnknownRegion {
            input: shown(trimmed),
        };
        let code = match trimmed.to_ascii_uppercase().as_bytes() {
            b"UK" => *b"GB",
            &[first, second] if first.is_ascii_uppercase() && second.is_ascii_uppercase() => {
                [first, second]
            }
            _ => return Err(unknown()),
        };
        let id = std::str::from_utf8(&code)
            .ok()
            .and_then(|code| rlibphonenumber::Region::from_code(code).ok())
            .ok_or_else(unknown)?;
        // Every two letters name a variant; only those with metadata are regions.
        if PHONE_NUMBER_UTIL.get_country_code_for_region(id).is_none() {
            return Err(unknown());
        }
        Ok(Region { id, code })
    }

    /// The upper-case two-letter code, e.g. `US`.
    pub fn as_str(&self) -> &str {
        // Two ASCII letters are always UTF-8; the fallback is never taken.
        std::str::from_utf8(&self.code).unwrap_or_default()
    }
}

impl Default for Region {
    fn default() -> Self {
        Region {
            id: rlibphonenumber::Region::US,
            code: *b"US",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid phone number in E.164 form: `+` followed by 2 to 15 digits, the
/// country code first. The only way to get one is [`E164::parse`] or
/// [`E164::parse_sender`], so holding one means the number was validated.
/// Its text ([`E164::as_str`]) is the number with its `+`, e.g.
/// `+14155550101`: the form sent to BPCC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Normalises a recipient number as people type or export it and checks it
    /// against libphonenumber. Numbers without a country code are read in
    /// `region`; numbers starting with `+`, `00` or the region's international
    /// dialling prefix (`011` in US) carry their own country.
    pub fn parse(raw: &str, region: &Region) -> Result<E164, PhoneError> {
        let cleaned = clean(raw)?;
        resolve(raw, cleaned, Some(region))
    }

    /// Validates the `From` number of a campaign. It must already be in
    /// international form (a leading `+`), because BPCC matches it against a
    /// Text Out access number; alphanumeric sender IDs are refused.
    pub fn parse_sender(raw: &str) -> Result<E164, PhoneError> {
        let cleaned = match clean(raw) {
            Ok(cleaned) => cleaned,
            Err(PhoneError::Letters { input }) => {
                return Err(PhoneError::AlphanumericSender { input })
            }
            Err(other) => return Err(other),
        };
        if cleaned.prefix != Prefix::Plus {
            return Err(PhoneError::SenderNotInternational { input: shown(raw) });
        }
        resolve(raw, cleaned, None)
    }

    /// A number the store wrote after [`E164::parse`] accepted it, checked
    /// for its shape only (`+` and 2 to 15 digits): a later change in a
    /// numbering plan must not make a stored campaign unreadable.
    pub fn from_stored(stored: &str) -> Option<E164> {
        let digits = stored.strip_prefix('+')?;
        let shaped = (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        shaped.then(|| E164(stored.to_owned()))
    }

    /// The number without its `+`, e.g. `14155550101`, for comparing with
    /// numbers that BPCC echoes without it.
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }
}

crate::domain::ids::text_id!(E164);

/// How a cleaned number announced its country.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    /// A leading `+`.
    Plus,
    /// A leading `00`, the international dialling prefix of most of the world.
    DoubleZero,
    /// None: a national number, or one with the region's own dialling prefix.
    None,
}

/// A number stripped of formatting: only its digits and how it began.
#[derive(Debug)]
struct Cleaned {
    prefix: Prefix,
    /// ASCII digits only, without the `+` or `00`.
    digits: String,
}

/// Turns the spreadsheet and CRM spellings of a number into its digits, or
/// says why the input is not a phone number at all. It does not judge the
/// digits; [`resolve`] does.
fn clean(raw: &str) -> Result<Cleaned, PhoneError> {
    let mut text = trim_invisible(raw);
    text = unwrap_spreadsheet_text(text);
    if let Some(rest) = strip_prefix_ignore_case(text, "tel:") {
        text = trim_invisible(rest);
    }
    if text.is_empty() {
        return Err(PhoneError::Empty);
    }
    if let Some(digits) = spreadsheet_float(raw, text)? {
        return Ok(Cleaned {
            prefix: Prefix::None,
            digits,
        });
    }
    if has_extension(text) {
        return Err(PhoneError::Extension { input: shown(raw) });
    }
    if text.chars().any(char::is_alphabetic) {
        return Err(PhoneError::Letters { input: shown(raw) });
    }

    // `+44 …` and `(+44) …` both carry their country.
    let plus = text
        .chars()
        .find(|&c| !is_separator(c))
        .is_some_and(|c| matches!(c, '+' | '\u{FF0B}'));
    let double_zero = !plus && text.chars().filter_map(ascii_digit).take(2).eq(['0', '0']);

    let mut digits = String::with_capacity(text.len());
    let mut seen_plus = false;
    for character in text.chars() {
        if let Some(digit) = ascii_digit(character) {
            digits.push(digit);
        } else if matches!(character, '+' | '\u{FF0B}') {
            // Only one `+`, and only before the first digit.
            if seen_plus || !digits.is_empty() {
                return Err(PhoneError::UnexpectedCharacter {
                    input: shown(raw),
                    character,
                });
            }
            seen_plus = true;
        } else if !is_separator(character) {
            return Err(PhoneError::UnexpectedCharacter {
                input: shown(raw),
                character,
            });
        }
    }
    if digits.is_empty() {
        return Err(PhoneError::Empty);
    }
    let prefix = if plus {
        Prefix::Plus
    } else if double_zero {
        digits.replace_range(..2, "");
        Prefix::DoubleZero
    } else {
        Prefix::None
    };
    Ok(Cleaned { prefix, digits })
}

/// Parses cleaned digits with libphonenumber and turns its verdict into an
/// [`E164`] or a [`PhoneError`]. `region` is `None` for senders, which carry
/// their country.
fn resolve(raw: &str, cleaned: Cleaned, region: Option<&Region>) -> Result<E164, PhoneError> {
    let Cleaned { prefix, digits } = cleaned;
    with_util(|util| resolve_with(util, raw, prefix, &digits, region))
}

fn resolve_with(
    util: &PhoneNumberUtil,
    raw: &str,
    prefix: Prefix,
    digits: &str,
    region: Option<&Region>,
) -> Result<E164, PhoneError> {
    let n_digits = digits.len();
    let parsed = if prefix == Prefix::None {
        // The library strips the region's own international dialling prefix
        // (`011` in US) and reads the country code after it.
        let region = region.copied().unwrap_or_default();
        util.parse(digits, Some(region.id))
    } else {
        util.parse(format!("+{digits}"), None)
    };
    let number = parsed.map_err(|error| match error {
        ParseError::InvalidCountryCode => PhoneError::UnknownCountryCode { input: shown(raw) },
        ParseError::TooLongNsn => PhoneError::TooLong {
            input: shown(raw),
            n_digits,
        },
        // The input is digits only, so "not a number" means too few of them.
        ParseError::NotANumber(_) | ParseError::TooShortAfterIdd | ParseError::TooShortNsn => {
            PhoneError::TooShort {
                input: shown(raw),
                n_digits,
            }
        }
    })?;
    if !util.is_valid_number(&number) {
        let international = prefix != Prefix::None
            || region.is_some_and(|region| {
                util.get_country_code_for_region(region.id) != Some(number.country_code)
            });
        return Err(why_invalid(
            util,
            raw,
            &number,
            international,
            region,
            n_digits,
        ));
    }
    let formatted = number.format_as(PhoneNumberFormat::E164);
    // libphonenumber accepts a few numbers longer than E.164 allows (German
    // toll-free ones); the API takes E.164 only.
    let n_e164_digits = formatted.len().saturating_sub(1);
    if n_e164_digits > E164_MAX_DIGITS {
        return Err(PhoneError::TooLong {
            input: shown(raw),
            n_digits: n_e164_digits,
        });
    }
    Ok(E164(formatted.into_owned()))
}

/// Picks the most helpful reason for a number libphonenumber finds invalid:
/// its length compared with the lengths its country uses, or else the range.
fn why_invalid(
    util: &PhoneNumberUtil,
    raw: &str,
    number: &PhoneNumber,
    international: bool,
    region: Option<&Region>,
    n_digits: usize,
) -> PhoneError {
    match util.is_possible_number_with_reason(number) {
        // A length only dialled inside an area is too short for an SMS,
        // which needs the full number.
        Err(ValidationError::TooShort) | Ok(NumberLengthType::IsPossibleLocalOnly) => {
            PhoneError::TooShort {
                input: shown(raw),
                n_digits,
            }
        }
        Err(ValidationError::TooLong) => PhoneError::TooLong {
            input: shown(raw),
            n_digits,
        },
        Err(ValidationError::InvalidCountryCode) => {
            PhoneError::UnknownCountryCode { input: shown(raw) }
        }
        Err(ValidationError::InvalidLength) | Ok(NumberLengthType::IsPossible) => {
            PhoneError::Invalid {
                input: shown(raw),
                place: describe_place(number, international, region),
            }
        }
    }
}

/// `region US` for a national number, `country code +44 (GB)` for one that
/// carried its country.
fn describe_place(number: &PhoneNumber, international: bool, region: Option<&Region>) -> String {
    if let Some(region) = region.filter(|_| !international) {
        return format!("region {region}");
    }
    let code = number.country_code;
    match PHONE_NUMBER_UTIL.get_region_for_country_code(code) {
        Some(main_region) => format!("country code +{code} ({main_region})"),
        None => format!("country code +{code}"),
    }
}

/// `1 digit`, `7 digits`.
fn count_digits(n_digits: usize) -> String {
    if n_digits == 1 {
        "1 digit".to_owned()
    } else {
        format!("{n_digits} digits")
    }
}

/// Strips whitespace (including non-breaking and other Unicode spaces) and
/// the invisible characters that copy-and-paste leaves behind.
fn trim_invisible(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || is_invisible(c))
}

fn is_invisible(character: char) -> bool {
    matches!(
        character,
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// Characters people put between digits.
fn is_separator(character: char) -> bool {
    character.is_whitespace()
        || is_invisible(character)
        || matches!(
            character,
            '-' | '.' | '(' | ')' | '/' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FF0D}'
        )
}

/// Any Unicode decimal digit (general category Nd: ASCII, full-width,
/// Arabic-Indic, Devanagari …) as its ASCII digit, read as libphonenumber
/// reads it. ASCII stays on a fast path: the import reads every character.
fn ascii_digit(character: char) -> Option<char> {
    if character.is_ascii_digit() {
        return Some(character);
    }
    if character.is_ascii() {
        return None;
    }
    let mut utf8 = [0; 4];
    let digit = with_util(|util| util.normalize_digits_only(character.encode_utf8(&mut utf8)));
    digit.chars().next()
}

/// Removes the ways spreadsheets are told to keep a cell as text: `="…"` and
/// a leading apostrophe.
fn unwrap_spreadsheet_text(text: &str) -> &str {
    if let Some(inner) = text
        .strip_prefix("=\"")
        .and_then(|rest| rest.strip_suffix('"'))
    {
        return trim_invisible(inner);
    }
    if let Some(rest) = text.strip_prefix('\'') {
        return trim_invisible(rest);
    }
    text
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Recognises a number a spreadsheet stored as a float: `4155550101.0` (safe:
/// the digits are all there) or `4.155550101E+09` (safe only when the
/// mantissa holds every digit). Returns `Ok(None)` for anything else.
fn spreadsheet_float(raw: &str, text: &str) -> Result<Option<String>, PhoneError> {
    // `4155550101.0`, `4155550101.00`
    if let Some((whole, fraction)) = text.split_once('.') {
        let is_float = whole.len() >= 7
            && whole.bytes().all(|b| b.is_ascii_digit())
            && !fraction.is_empty()
            && fraction.bytes().all(|b| b == b'0');
        if is_float {
            return Ok(Some(whole.to_owned()));
        }
    }

    // `1.4155550101E+10`
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return Ok(None);
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
    let is_scientific = integer.len() == 1
        && integer.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
        && (1..=2).contains(&exponent.len())
        && exponent.bytes().all(|b| b.is_ascii_digit());
    if !is_scientific {
        return Ok(None);
    }
    // Only when the exponent uses exactly the digits shown is nothing lost;
    // `4.15556E+09` could have been any of a hundred thousand numbers.
    if exponent.parse::<usize>().ok() != Some(fraction.len()) {
        return Err(PhoneError::SpreadsheetNumber { input: shown(raw) });
    }
    Ok(Some(format!("{integer}{fraction}")))
}

/// True for `415-555-0101 x12`, `… ext. 12`, `… extension 12`, `… #12` and
/// the RFC 3966 `;ext=12`: a marker after some digits, followed by digits only.
fn has_extension(text: &str) -> bool {
    const MARKERS: [&str; 6] = [";ext=", "extension", "ext", "ex", "x", "#"];
    if !text.contains(|c: char| c.is_alphabetic() || matches!(c, '#' | ';')) {
        return false;
    }
    let lower = text.to_lowercase();
    for (index, _) in lower.char_indices() {
        let Some(before) = lower.get(..index) else {
            continue;
        };
        if !before.bytes().any(|b| b.is_ascii_digit()) {
            continue;
        }
        let Some(at) = lower.get(index..) else {
            continue;
        };
        for marker in MARKERS {
            let Some(after) = at.strip_prefix(marker) else {
                continue;
            };
            let extension = after.trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, '.' | ':' | '=' | '-' | '#')
            });
            let extension = extension.trim_end();
            if !extension.is_empty() && extension.bytes().all(|b| b.is_ascii_digit()) {
                return true;
            }
        }
    }
    false
}

/// The input as an error message shows it: trimmed and cut to about 40
/// characters, so a stray paragraph in the phone column stays readable.
fn shown(raw: &str) -> String {
    let trimmed = trim_invisible(raw);
    let mut chars = trimmed.chars();
    let mut out: String = chars.by_ref().take(SHOWN_INPUT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn us() -> Region {
        Region::default()
    }

    fn region(code: &str) -> Region {
        Region::parse(code).expect("test region is valid")
    }

    #[track_caller]
    fn check(raw: &str, region: &Region, expected: Result<&str, &str>) {
        let actual = E164::parse(raw, region);
        match (&actual, expected) {
            (Ok(number), Ok(want)) => assert_eq!(number.as_str(), want, "input {raw:?}"),
            (Err(error), Err(want)) => assert_eq!(error.to_string(), want, "input {raw:?}"),
            _ => panic!("input {raw:?}: expected {expected:?}, got {actual:?}"),
        }
    }

    #[track_caller]
    fn check_valid(raw: &str, region: &Region, want: &str) {
        check(raw, region, Ok(want));
    }

    #[track_caller]
    fn check_sender(raw: &str, expected: Result<&str, &str>) {
        let actual = E164::parse_sender(raw);
        match (&actual, expected) {
            (Ok(number), Ok(want)) => assert_eq!(number.as_str(), want, "input {raw:?}"),
            (Err(error), Err(want)) => assert_eq!(error.to_string(), want, "input {raw:?}"),
            _ => panic!("input {raw:?}: expected {expected:?}, got {actual:?}"),
        }
    }

    #[test]
    fn spreadsheet_formats_of_one_us_number() {
        let us = us();
        for raw in [
            "(415) 555-0101",
            "+1 415-555-0101",
            "+1 (415) 555-0101",
            "4155550101",
            "14155550101",
            "1-415-555-0101",
            "1 (415) 555-0101",
            "415.555.0101",
            "415 555 0101",
            "415/555-0101",
            "  415-555-0101\t",
            "\u{00A0}415\u{00A0}555\u{00A0}0101\u{00A0}",
            "\u{FEFF}415-555-0101",
            "415\u{2013}555\u{2013}0101",
            "4155550101.0",
            "4155550101.00",
            "14155550101.0",
            "4.155550101E+09",
            "1.4155550101E+10",
            "1.4155550101e10",
            "tel:+1-415-555-0101",
            "TEL:4155550101",
            "=\"4155550101\"",
            "'4155550101",
            "011 1 415 555 0101",
            "001 415 555 0101",
            "+１ ４１５ ５５５ ０１０１",
        ] {
            check_valid(raw, &us, "+14155550101");
        }
    }

    #[test]
    fn north_american_test_numbers_are_valid() {
        // libphonenumber's metadata 9.0.42 accepts 555-01XX numbers in every
        // assigned area code tried, including 800.
        let us = us();
        for (raw, want) in [
            ("201-555-0123", "+12015550123"),
            ("(212) 555-0100", "+12125550100"),
            ("310.555.0199", "+13105550199"),
            ("415-555-2671", "+14155552671"),
            ("650 555 0100", "+16505550100"),
            ("917-555-0150", "+19175550150"),
            ("1-800-555-0199", "+18005550199"),
            ("+1 416 555 0199", "+14165550199"),
            ("604-555-0143", "+16045550143"),
        ] {
            check_valid(raw, &us, want);
        }
    }

    #[test]
    fn international_numbers_keep_their_country() {
        let us = us();
        for (raw, want) in [
            ("+44 20 7946 0958", "+442079460958"),
            ("(+44) 20 7946 0958", "+442079460958"),
            ("00 44 20 7946 0958", "+442079460958"),
            ("0044 20 7946 0958", "+442079460958"),
            ("+44 (0)20 7946 0958", "+442079460958"),
            ("00 44 (0)20 7946 0958", "+442079460958"),
            ("011 44 20 7946 0958", "+442079460958"),
            ("+44 7400 123456", "+447400123456"),
            // The leading 1 of these national numbers is not the trunk
            // prefix of the default region US.
            ("+49 170 1234567", "+491701234567"),
            ("0049 170 1234567", "+491701234567"),
            ("011 49 170 1234567", "+491701234567"),
            ("+49 151 23456789", "+4915123456789"),
            ("+86 138 0013 8000", "+8613800138000"),
            ("+55 11 91234 5678", "+5511912345678"),
            ("+49 30 12345678", "+493012345678"),
            ("+33 6 12 34 56 78", "+33612345678"),
            ("+61 491 570 156", "+61491570156"),
            ("+34 612 34 56 78", "+34612345678"),
            ("+48 512 345 678", "+48512345678"),
            ("+353 85 123 4567", "+353851234567"),
        ] {
            check_valid(raw, &us, want);
        }
    }

    #[test]
    fn national_numbers_of_other_regions() {
        check_valid("020 7946 0958", &region("GB"), "+442079460958");
        check_valid("020 7946 0958", &region("uk"), "+442079460958");
        check_valid("030 12345678", &region("de"), "+493012345678");
        check_valid("0170 1234567", &region("DE"), "+491701234567");
        check_valid("06 12 34 56 78", &region("FR"), "+33612345678");
        // A US number written with +1 is read the same in any region.
        check_valid("+1 415 555 0101", &region("GB"), "+14155550101");
    }

    #[test]
    fn refusals_name_the_problem() {
        let us = us();
        for (raw, want) in [
            ("", "phone number is empty"),
            ("   ", "phone number is empty"),
            ("\u{00A0}", "phone number is empty"),
            ("-", "phone number is empty"),
            ("( )", "phone number is empty"),
            ("+", "phone number is empty"),
            ("tel:", "phone number is empty"),
            ("N/A", "phone number contains letters: \"N/A\""),
            ("call me", "phone number contains letters: \"call me\""),
            ("1-800-FLOWERS", "phone number contains letters: \"1-800-FLOWERS\""),
            ("415-555-01O1", "phone number contains letters: \"415-555-01O1\""),
            (
                "4.15556E+09",
                "phone number \"4.15556E+09\" was turned into a number by a spreadsheet and may have lost digits; format the column as text and export it again",
            ),
            ("555-0101", "phone number \"555-0101\" is too short (7 digits)"),
            ("415-555-010", "phone number \"415-555-010\" is too short (9 digits)"),
            ("12", "phone number \"12\" is too short (2 digits)"),
            ("+1", "phone number \"+1\" is too short (1 digit)"),
            ("+44 20", "phone number \"+44 20\" is too short (4 digits)"),
            (
                "+999 1234567",
                "phone number \"+999 1234567\" starts with an unknown country calling code",
            ),
            ("(555) 555-0199", "\"(555) 555-0199\" is not a valid phone number for region US"),
            ("(123) 555-0199", "\"(123) 555-0199\" is not a valid phone number for region US"),
            ("999-555-0101", "\"999-555-0101\" is not a valid phone number for region US"),
            (
                "+44 7700 900123",
                "\"+44 7700 900123\" is not a valid phone number for country code +44 (GB)",
            ),
        ] {
            check(raw, &us, Err(want));
        }
        for raw in [
            "415-555-0101 x12",
            "415-555-0101 ext. 12",
            "(415) 555-0101 Extension 7",
            "415-555-0101#12",
            "tel:+1-415-555-0101;ext=12",
        ] {
            let want = format!(
                "phone number has an extension ({raw:?}); an SMS cannot be sent to an extension"
            );
            check(raw, &us, Err(&want));
        }
        for (raw, character) in [
            ("415*555*0101", '*'),
            ("415-555-0101, 415-555-0102", ','),
            ("415+555+0101", '+'),
        ] {
            let want =
                format!("phone number {raw:?} contains an unexpected character {character:?}");
            check(raw, &us, Err(&want));
        }
        for (raw, n_digits) in [
            ("415-555-01011", 11),
            ("+1 415 555 0101 0101", 15),
            ("+44 20 7946 0958 1234 5678", 20),
            ("123456789012345678901234567890", 30),
        ] {
            let want = format!("phone number {raw:?} is too long ({n_digits} digits)");
            check(raw, &us, Err(&want));
        }
    }

    #[test]
    fn long_inputs_are_cut_in_messages() {
        let raw = "please call my assistant between nine and five on weekdays";
        let error = E164::parse(raw, &us()).expect_err("letters are refused");
        assert_eq!(
            error.to_string(),
            "phone number contains letters: \"please call my assistant between nine an…\""
        );
    }

    #[test]
    fn senders_must_be_international() {
        check_sender("+16505550100", Ok("+16505550100"));
        check_sender(" +1 (650) 555-0100 ", Ok("+16505550100"));
        check_sender("tel:+16505550100", Ok("+16505550100"));
        check_sender("+44 20 7946 0958", Ok("+442079460958"));
        check_sender("", Err("phone number is empty"));
        for raw in ["16505550100", "0044 20 7946 0958"] {
            let want = format!(
                "sender {raw:?} must be in international E.164 form with a leading +, e.g. +16505550100"
            );
            check_sender(raw, Err(&want));
        }
        for raw in ["ACME", "AcmeCorp1"] {
            let want = format!(
                "sender {raw:?} is not a phone number: alphanumeric sender IDs are not supported by \
                 the BPCC API; use a Text Out access number in E.164, e.g. +16505550100"
            );
            check_sender(raw, Err(&want));
        }
        check_sender(
            "+1 555 555 0100",
            Err("\"+1 555 555 0100\" is not a valid phone number for country code +1 (US)"),
        );
    }

    #[test]
    fn e164_accessors() {
        let number = E164::parse("(415) 555-0101", &us()).expect("valid number");
        assert_eq!(number.as_str(), "+14155550101");
        assert_eq!(number.digits(), "14155550101");
        assert_eq!(number.to_string(), "+14155550101");
        assert_eq!(number.as_ref(), "+14155550101");
        let same = E164::parse("+1 415-555-0101", &us()).expect("valid number");
        assert_eq!(number, same);
    }

    #[test]
    fn regions() {
        #[track_caller]
        fn check_region(raw: &str, expected: Result<&str, &str>) {
            match (Region::parse(raw), expected) {
                (Ok(region), Ok(want)) => {
                    assert_eq!(region.as_str(), want, "input {raw:?}");
                    assert_eq!(region.to_string(), want, "input {raw:?}");
                }
                (Err(error), Err(want)) => assert_eq!(error.to_string(), want, "input {raw:?}"),
                (actual, _) => panic!("input {raw:?}: expected {expected:?}, got {actual:?}"),
            }
        }
        check_region("US", Ok("US"));
        check_region("us", Ok("US"));
        check_region(" gb ", Ok("GB"));
        check_region("UK", Ok("GB"));
        check_region("De", Ok("DE"));
        let unknown = |raw: &str| {
            format!(
                "unknown region {raw:?}: expected a two-letter ISO 3166 country code such as US, GB or DE"
            )
        };
        for raw in ["", "U", "USA", "ZZ", "XX", "1", "U1", "ÜS", "+1", "001"] {
            check_region(raw, Err(&unknown(raw)));
        }
        assert_eq!(Region::default().as_str(), "US");
    }

    /// libphonenumber reads every Unicode decimal digit (Nd) as its digit,
    /// whatever the script; other numerals (superscripts, fractions, Roman)
    /// are not digits.
    #[test]
    fn decimal_digits_of_every_script_are_digits() {
        let us = us();
        for raw in [
            "٤١٥-٥٥٥-٠١٠١",           // Arabic-Indic
            "۴۱۵ ۵۵۵ ۰۱۰۱",           // Extended Arabic-Indic
            "४१५ ५५५ ०१०१",           // Devanagari
            "৪১৫ ৫৫৫ ০১০১",           // Bengali
            "๔๑๕ ๕๕๕ ๐๑๐๑",           // Thai
            "４１５ ５５５ ０１０１", // full-width
            "𝟒𝟏𝟓 𝟓𝟓𝟓 𝟎𝟏𝟎𝟏",           // mathematical bold
            "+١ 415 ٥٥٥ 0101",        // scripts mixed in one number
            "٠٠١ ٤١٥ ٥٥٥ ٠١٠١",       // 00 in Arabic-Indic digits
        ] {
            check_valid(raw, &us, "+14155550101");
        }
        check_valid("+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨", &us, "+442079460958");
        check_valid("۰۰۴۹ ۳۰ ۹۰۱۸۲۰", &region("GB"), "+4930901820");
        for (raw, character) in [("415 555 010²", '²'), ("415 555 010½", '½')] {
            let error = E164::parse(raw, &us).expect_err("not a digit");
            assert!(
                matches!(error, PhoneError::UnexpectedCharacter { character: c, .. } if c == character),
                "{raw:?}: {error}"
            );
        }
    }

    #[test]
    fn no_panic_on_arbitrary_input() {
        // A deterministic xorshift walk over characters that matter to the
        // parser, plus some that should not appear at all.
        const ALPHABET: &[char] = &[
            '0', '1', '2', '4', '5', '9', '+', '-', '(', ')', '.', ' ', 'x', 'e', 'E', '#', ';',
            '=', ':', '"', '\'', '*', '/', '\u{00A0}', '\u{FF10}', '\u{FF0B}', '\u{0660}',
            '\u{0969}', 'é', '王', '\0', 't', 'l',
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let regions = [us(), region("GB"), region("DE"), region("RU"), region("AU")];
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let raw: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            for region in &regions {
                let _ = E164::parse(&raw, region);
            }
            let _ = E164::parse_sender(&raw);
        }
        for raw in [
            "00",
            "000",
            "0000000000",
            "+0",
            "+00",
            "011",
            "0110",
            "+1+1",
            ".0",
            "e+1",
            "1e",
            "0.0",
        ] {
            let _ = E164::parse(raw, &us());
            let _ = E164::parse_sender(raw);
        }
    }

    /// The sample recipients file shipped in `samples/` must keep showing
    /// every case the importer handles.
    #[test]
    fn sample_recipients_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/recipients.csv");
        let mut reader = csv::Reader::from_path(path).expect("sample file opens");
        let headers = reader.headers().expect("sample file has headers").clone();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [
                "phone",
                "first_name",
                "last_name",
                "city",
                "appointment",
                "media_urls"
            ]
        );
        // Exactly these rows are meant to be refused.
        let expected_invalid = [
            "",
            "call me",
            "555-0142",
            "415-555-0188 x204",
            "(555) 555-0123",
            "N/A",
        ];
        let region = us();
        let mut n_rows = 0;
        let mut invalid = Vec::new();
        let mut seen: HashMap<E164, usize> = HashMap::new();
        for record in reader.records() {
            let record = record.expect("sample row parses");
            n_rows += 1;
            let raw = record.get(0).expect("row has a phone column");
            match E164::parse(raw, &region) {
                Ok(number) => *seen.entry(number).or_default() += 1,
                Err(_) => invalid.push(raw.to_owned()),
            }
        }
        let n_duplicates: usize = seen.values().map(|count| count - 1).sum();
        assert!(n_rows >= 60, "only {n_rows} rows");
        assert_eq!(invalid, expected_invalid);
        assert!(n_duplicates >= 3, "only {n_duplicates} duplicates");
        let international = seen
            .keys()
            .filter(|n| !n.as_str().starts_with("+1"))
            .count();
        assert!(
            international >= 3,
            "only {international} international numbers"
        );
    }

    /// One row of `tests/data/phone/agreement.csv`.
    #[derive(serde::Deserialize)]
    struct Case {
        input: String,
        region: String,
        /// An E.164 number, or `invalid`.
        expected: String,
        /// libphonenumber's own verdict, the same unless `note` says why not.
        google: String,
        note: String,
    }

    /// Google's verdicts on thousands of numbers of many countries in many
    /// spellings, written by `tests/data/phone/generate.py` with the
    /// `phonenumbers` release that carries this crate's metadata.
    #[test]
    fn agrees_with_libphonenumber() {
        let fixture = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/phone/agreement.csv"
        ));
        let mut reader = csv::ReaderBuilder::new()
            .comment(Some(b'#'))
            .from_reader(fixture.as_bytes());
        let mut n_cases = 0;
        let mut disagreements = Vec::new();
        for case in reader.deserialize::<Case>() {
            let case = case.expect("fixture row parses");
            n_cases += 1;
            assert!(
                case.expected == case.google || !case.note.is_empty(),
                "{:?} in {}: the fixture differs from libphonenumber without saying why",
                case.input,
                case.region
            );
            let actual = match E164::parse(&case.input, &region(&case.region)) {
                Ok(number) => number.as_str().to_owned(),
                Err(error) => format!("invalid ({error})"),
            };
            let agrees = match case.expected.as_str() {
                "invalid" => actual.starts_with("invalid"),
                expected => actual == expected,
            };
            if !agrees {
                disagreements.push(format!(
                    "{:?} in {}: expected {}, got {actual}",
                    case.input, case.region, case.expected
                ));
            }
        }
        assert!(n_cases >= 5000, "only {n_cases} cases in the fixture");
        assert!(
            disagreements.is_empty(),
            "{} of {n_cases} cases disagree with the fixture:\n{}",
            disagreements.len(),
            disagreements.join("\n")
        );
    }
}
