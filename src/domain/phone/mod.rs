//! Phone numbers: the [`Region`] used to read national numbers and the
//! validated [`E164`] number that every module below the CSV and CLI edges
//! works with.
//!
//! This module owns the normalisation of the formats people export from
//! spreadsheets and CRMs (`(415) 555-0101`, `1-415-555-0101`, `00 44 …`,
//! `+44 (0)20 …`, `4155550101.0`, `tel:` URIs, non-breaking spaces …) and the
//! verdict on whether a number is valid, which is libphonenumber's as the
//! `phonenumber` crate reads its metadata. It does no I/O; its only state is
//! the regular expressions of the fast path, compiled once on first use and
//! never changed after. Every [`PhoneError`] message is written for people:
//! reports quote it verbatim, so it names the problem and never echoes more
//! than about 40 characters of the input.
//!
//! The fast path: `phonenumber` 0.3 spends microseconds per number (and up
//! to a millisecond in files with numbers of many countries) in its shared
//! cache of regular expressions, which hashes each pattern's text on every
//! match and, holding only 100 patterns, keeps compiling them again. So
//! `resolve` first tries `resolve_fast`, which repeats the crate's parse and
//! validity check for a string of digits step by step over patterns the
//! inner `fast` module compiles once from the same metadata, and writes the
//! E.164 form directly. Wherever `fast` cannot decide exactly as the crate
//! would, it says so and `resolve_full`, the crate itself, decides. The two
//! must agree on every input, error variant and message included: the test
//! `fast_path_agrees_with_full_path` compares them on 20,000 generated
//! numbers of many regions on every run, and the ignored
//! `fast_path_agrees_on_many_numbers` on 250,000. `fast` mirrors
//! `phonenumber` 0.3.10: before taking another version, re-read its
//! `validator.rs`, `parser/mod.rs` and `parser/helper.rs` and run both.
//!
//! Two workarounds for `phonenumber` 0.3 live here and nowhere else:
//!
//! - A number in international form is always parsed **without** a default
//!   region. With one, the crate strips the default region's national prefix
//!   from the other country's number (with region US, `+49 170 1234567`
//!   loses its `1` and becomes invalid).
//! - An international dialling prefix (`00`, or the region's own such as `011`
//!   for US) is turned into `+` here, for the same reason.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id as CountryId;
use phonenumber::metadata::{Metadata, DATABASE};
use phonenumber::{Mode, ParseError, PhoneNumber, Type};

/// How much of a raw input an error message shows, in characters.
const SHOWN_INPUT_CHARS: usize = 40;

/// E.164 allows at most 15 digits, country code included.
const E164_MAX_DIGITS: usize = 15;

/// A national number may carry a trunk prefix or a country code in front of
/// the at most 15 digits; anything longer is refused before the parser sees it.
const NATIONAL_MAX_DIGITS: usize = 17;

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
pub struct Region(CountryId);

impl Region {
    /// Reads a two-letter ISO 3166 code, case-insensitively (`US`, `gb`).
    /// `UK` is accepted as the everyday name for `GB`.
    pub fn parse(raw: &str) -> Result<Region, PhoneError> {
        let trimmed = raw.trim();
        let unknown = || PhoneError::UnknownRegion {
            input: shown(trimmed),
        };
        if trimmed.len() != 2 || !trimmed.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(unknown());
        }
        let mut code = trimmed.to_ascii_uppercase();
        if code == "UK" {
            code = "GB".to_owned();
        }
        let id = CountryId::from_str(&code).map_err(|_| unknown())?;
        // The parser unwraps the metadata of the default region, so a region
        // without metadata must never get past this point.
        if DATABASE.by_id(id.as_ref()).is_none() {
            return Err(unknown());
        }
        Ok(Region(id))
    }

    /// The upper-case two-letter code, e.g. `US`.
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl Default for Region {
    fn default() -> Self {
        Region(CountryId::US)
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

    /// [`E164::parse`] through the `phonenumber` crate alone, without the
    /// fast path: the reference the fast path must agree with, for the
    /// agreement tests and the fuzz target. Much slower; never used to send.
    pub fn parse_reference(raw: &str, region: &Region) -> Result<E164, PhoneError> {
        resolve_full(raw, clean(raw)?, Some(region))
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

    /// The number with its `+`, e.g. `+14155550101`: the form sent to BPCC.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number without its `+`, e.g. `14155550101`, for comparing with
    /// numbers that BPCC echoes without it.
    pub fn digits(&self) -> &str {
        self.0.strip_prefix('+').unwrap_or(&self.0)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

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
    // `+44 (0)20 …`: the bracketed national trunk prefix is not dialled from
    // abroad. In a national number the parser strips it itself.
    let text: Cow<'_, str> = if (plus || double_zero) && text.contains("(0)") {
        Cow::Owned(text.replacen("(0)", "", 1))
    } else {
        Cow::Borrowed(text)
    };

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

/// Turns cleaned digits into an [`E164`] or a [`PhoneError`], with exactly
/// the verdict of [`resolve_full`]. `region` is `None` for senders, which must
/// carry their country.
fn resolve(raw: &str, cleaned: Cleaned, region: Option<&Region>) -> Result<E164, PhoneError> {
    match resolve_fast(raw, &cleaned, region) {
        Some(verdict) => verdict,
        None => resolve_full(raw, cleaned, region),
    }
}

/// [`resolve_full`] step by step, with the crate's parse and validity check
/// replaced by their mirror in [`fast`]. `None` when [`fast`] cannot decide
/// as the crate would; the caller then takes the full path.
fn resolve_fast(
    raw: &str,
    cleaned: &Cleaned,
    region: Option<&Region>,
) -> Option<Result<E164, PhoneError>> {
    let tables = fast::tables();
    let mut digits = cleaned.digits.as_str();
    let mut international = cleaned.prefix != Prefix::None;
    let mut home = None;
    if !international {
        if let Some(region) = region {
            let compiled = tables.region(region)?;
            if let Some(end) = compiled.dialling_prefix_end(digits) {
                digits = digits.get(end..)?;
                international = true;
            }
            home = Some(compiled);
        }
    }

    let n_digits = digits.len();
    let too_long = if international {
        n_digits > E164_MAX_DIGITS
    } else {
        n_digits > NATIONAL_MAX_DIGITS
    };
    if too_long {
        return Some(Err(PhoneError::TooLong {
            input: shown(raw),
            n_digits,
        }));
    }

    let parsed = if international {
        // Never with a default region: see the module documentation.
        tables.parse_international(digits)?
    } else {
        let home = match home {
            Some(home) => home,
            None => tables.region(&region.copied().unwrap_or_default())?,
        };
        tables.parse_national(digits, home)?
    };
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(failure) => {
            return Some(Err(match failure {
                fast::ParseFailure::TooLong => PhoneError::TooLong {
                    input: shown(raw),
                    n_digits,
                },
                fast::ParseFailure::InvalidCountryCode => {
                    PhoneError::UnknownCountryCode { input: shown(raw) }
                }
                fast::ParseFailure::NoNumber
                | fast::ParseFailure::TooShortNsn
                | fast::ParseFailure::MalformedInteger => PhoneError::TooShort {
                    input: shown(raw),
                    n_digits,
                },
            }))
        }
    };

    // A string of digits never parses with an extension, so the full path's
    // extension check has nothing to find here.
    let code = parsed.code;
    let national = parsed.national.as_ref();
    let validity = tables.validity(code, national)?;
    if !validity.valid {
        let metadata = tables.metadata_for_errors(code, national, validity)?;
        return Some(Err(why_invalid_fast(
            raw,
            code,
            national.len(),
            metadata,
            international,
            region,
            n_digits,
        )));
    }

    // `Mode::E164` writes `+`, the code and the national number with its
    // leading zeros; that is all the formatter does in that mode.
    let formatted = format!("+{code}{national}");
    let well_formed = formatted.strip_prefix('+').is_some_and(|rest| {
        (2..=E164_MAX_DIGITS).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit())
    });
    if !well_formed {
        let metadata = tables.metadata_for_errors(code, national, validity)?;
        return Some(Err(PhoneError::Invalid {
            input: shown(raw),
            place: describe_place_fast(code, metadata, international, region),
        }));
    }
    Some(Ok(E164(formatted)))
}

/// [`why_invalid`] for a number parsed by [`fast`], given the metadata
/// [`number_metadata`] would find.
fn why_invalid_fast(
    raw: &str,
    code: u16,
    national_len: usize,
    metadata: Option<&Metadata>,
    international: bool,
    region: Option<&Region>,
    n_digits: usize,
) -> PhoneError {
    length_verdict(raw, metadata, national_len, international, n_digits).unwrap_or_else(|| {
        PhoneError::Invalid {
            input: shown(raw),
            place: describe_place_fast(code, metadata, international, region),
        }
    })
}

/// [`describe_place`] for a number parsed by [`fast`].
fn describe_place_fast(
    code: u16,
    metadata: Option<&Metadata>,
    international: bool,
    region: Option<&Region>,
) -> String {
    if let Some(region) = region.filter(|_| !international) {
        return format!("region {region}");
    }
    match metadata {
        Some(metadata) => format!("country code +{code} ({})", metadata.id()),
        None => format!("country code +{code}"),
    }
}

/// Parses cleaned digits with libphonenumber and turns its verdict into an
/// [`E164`] or a [`PhoneError`]. `region` is `None` for senders, which must
/// carry their country. This is the reference [`resolve_fast`] must agree
/// with, and the path taken whenever [`fast`] cannot decide.
fn resolve_full(raw: &str, cleaned: Cleaned, region: Option<&Region>) -> Result<E164, PhoneError> {
    let Cleaned { prefix, mut digits } = cleaned;
    let mut international = prefix != Prefix::None;
    if !international {
        if let Some(region) = region {
            if let Some(end) = region_dialling_prefix_end(region, &digits) {
                digits.replace_range(..end, "");
                international = true;
            }
        }
    }

    let n_digits = digits.len();
    let too_long = if international {
        n_digits > E164_MAX_DIGITS
    } else {
        n_digits > NATIONAL_MAX_DIGITS
    };
    if too_long {
        return Err(PhoneError::TooLong {
            input: shown(raw),
            n_digits,
        });
    }

    let parsed = if international {
        // Never with a default region: see the module documentation.
        phonenumber::parse(None, format!("+{digits}"))
    } else {
        let region = region.copied().unwrap_or_default();
        phonenumber::parse(Some(region.0), &digits)
    };
    let number = parsed.map_err(|error| match error {
        ParseError::TooLong => PhoneError::TooLong {
            input: shown(raw),
            n_digits,
        },
        ParseError::InvalidCountryCode => PhoneError::UnknownCountryCode { input: shown(raw) },
        ParseError::NoNumber
        | ParseError::TooShortNsn
        | ParseError::TooShortAfterIdd
        | ParseError::MalformedInteger(_) => PhoneError::TooShort {
            input: shown(raw),
            n_digits,
        },
    })?;

    if number.extension().is_some() {
        return Err(PhoneError::Extension { input: shown(raw) });
    }
    if !phonenumber::is_valid(&number) {
        return Err(why_invalid(raw, &number, international, region, n_digits));
    }

    let formatted = number.format().mode(Mode::E164).to_string();
    let well_formed = formatted.strip_prefix('+').is_some_and(|rest| {
        (2..=E164_MAX_DIGITS).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit())
    });
    if !well_formed {
        return Err(PhoneError::Invalid {
            input: shown(raw),
            place: describe_place(&number, international, region),
        });
    }
    Ok(E164(formatted))
}

/// Picks the most helpful reason for a number libphonenumber finds invalid:
/// its length compared with the lengths its country uses, or else the range.
fn why_invalid(
    raw: &str,
    number: &PhoneNumber,
    international: bool,
    region: Option<&Region>,
    n_digits: usize,
) -> PhoneError {
    let national_len = number.national().to_string().len();
    length_verdict(
        raw,
        number_metadata(number),
        national_len,
        international,
        n_digits,
    )
    .unwrap_or_else(|| PhoneError::Invalid {
        input: shown(raw),
        place: describe_place(number, international, region),
    })
}

/// "Too short" or "too long" when the number's length is outside every
/// length its country uses; `None` when the length is not the problem.
fn length_verdict(
    raw: &str,
    metadata: Option<&Metadata>,
    national_len: usize,
    international: bool,
    n_digits: usize,
) -> Option<PhoneError> {
    // For a national number the parser may have taken a leading 1 for the
    // country code (`(123) 555-0199`); the length as typed must agree before
    // the error blames the length.
    let typed_len = if international {
        national_len
    } else {
        n_digits
    };
    let (shortest, longest) = metadata.and_then(subscriber_lengths)?;
    if national_len < shortest && typed_len < shortest {
        return Some(PhoneError::TooShort {
            input: shown(raw),
            n_digits,
        });
    }
    if national_len > longest && typed_len > longest {
        return Some(PhoneError::TooLong {
            input: shown(raw),
            n_digits,
        });
    }
    None
}

/// The metadata of the number's country; for a number outside every known
/// range, that of the main country of its calling code.
fn number_metadata(number: &PhoneNumber) -> Option<&'static Metadata> {
    if let Some(metadata) = number.metadata(&DATABASE) {
        return Some(metadata);
    }
    let candidates = DATABASE.by_code(&number.code().value())?;
    candidates
        .iter()
        .find(|metadata| metadata.is_main_country_for_code())
        .or_else(|| candidates.first())
        .copied()
}

/// The shortest and longest national number a country gives subscribers,
/// across the number types (fixed line, mobile, toll free …). Lengths that
/// can only be dialled locally do not count: an SMS needs the full number.
fn subscriber_lengths(metadata: &Metadata) -> Option<(usize, usize)> {
    let descriptors = metadata.descriptors();
    let kinds = [
        Type::FixedLine,
        Type::Mobile,
        Type::TollFree,
        Type::PremiumRate,
        Type::SharedCost,
        Type::PersonalNumber,
        Type::Voip,
        Type::Pager,
        Type::Uan,
    ];
    let lengths = kinds
        .into_iter()
        .filter_map(|kind| descriptors.get(kind))
        .flat_map(|descriptor| descriptor.possible_length().iter().copied())
        .map(usize::from);
    let shortest = lengths.clone().min()?;
    let longest = lengths.max()?;
    Some((shortest, longest))
}

/// `region US` for a national number, `country code +44 (GB)` for one that
/// carried its country.
fn describe_place(number: &PhoneNumber, international: bool, region: Option<&Region>) -> String {
    if let Some(region) = region.filter(|_| !international) {
        return format!("region {region}");
    }
    let code = number.code().value();
    match number_metadata(number) {
        Some(metadata) => format!("country code +{code} ({})", metadata.id()),
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

/// Where the region's own international dialling prefix (`011` in US) ends,
/// when the digits start with it and a country code follows.
fn region_dialling_prefix_end(region: &Region, digits: &str) -> Option<usize> {
    let pattern = DATABASE.by_id(region.as_str())?.international_prefix()?;
    let found = pattern.find(digits)?;
    let end = found.end();
    let rest = digits.get(end..)?;
    if found.start() != 0 || end == 0 || rest.is_empty() || rest.starts_with('0') {
        return None;
    }
    Some(end)
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

/// An ASCII or full-width digit, as ASCII.
fn ascii_digit(character: char) -> Option<char> {
    match character {
        '0'..='9' => Some(character),
        '\u{FF10}'..='\u{FF19}' => char::from_u32(u32::from(character) - 0xFF10 + u32::from('0')),
        _ => None,
    }
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

mod fast;

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
        // libphonenumber 9.0.33 (phonenumber 0.3.10) accepts 555-01XX numbers
        // in every assigned area code tried, including 800.
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
            // With a default region of US the crate itself would drop the
            // leading 1 of these national numbers; they must survive here.
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
                "415-555-0101 x12",
                "phone number has an extension (\"415-555-0101 x12\"); an SMS cannot be sent to an extension",
            ),
            (
                "415-555-0101 ext. 12",
                "phone number has an extension (\"415-555-0101 ext. 12\"); an SMS cannot be sent to an extension",
            ),
            (
                "(415) 555-0101 Extension 7",
                "phone number has an extension (\"(415) 555-0101 Extension 7\"); an SMS cannot be sent to an extension",
            ),
            (
                "415-555-0101#12",
                "phone number has an extension (\"415-555-0101#12\"); an SMS cannot be sent to an extension",
            ),
            (
                "tel:+1-415-555-0101;ext=12",
                "phone number has an extension (\"tel:+1-415-555-0101;ext=12\"); an SMS cannot be sent to an extension",
            ),
            (
                "415*555*0101",
                "phone number \"415*555*0101\" contains an unexpected character '*'",
            ),
            (
                "415-555-0101, 415-555-0102",
                "phone number \"415-555-0101, 415-555-0102\" contains an unexpected character ','",
            ),
            (
                "415+555+0101",
                "phone number \"415+555+0101\" contains an unexpected character '+'",
            ),
            (
                "4.15556E+09",
                "phone number \"4.15556E+09\" was turned into a number by a spreadsheet and may have lost digits; format the column as text and export it again",
            ),
            ("555-0101", "phone number \"555-0101\" is too short (7 digits)"),
            ("415-555-010", "phone number \"415-555-010\" is too short (9 digits)"),
            ("12", "phone number \"12\" is too short (2 digits)"),
            ("+1", "phone number \"+1\" is too short (1 digit)"),
            ("+44 20", "phone number \"+44 20\" is too short (4 digits)"),
            ("415-555-01011", "phone number \"415-555-01011\" is too long (11 digits)"),
            (
                "+1 415 555 0101 0101",
                "phone number \"+1 415 555 0101 0101\" is too long (15 digits)",
            ),
            (
                "+44 20 7946 0958 1234 5678",
                "phone number \"+44 20 7946 0958 1234 5678\" is too long (20 digits)",
            ),
            (
                "123456789012345678901234567890",
                "phone number \"123456789012345678901234567890\" is too long (30 digits)",
            ),
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
        check_sender(
            "16505550100",
            Err("sender \"16505550100\" must be in international E.164 form with a leading +, e.g. +16505550100"),
        );
        check_sender(
            "0044 20 7946 0958",
            Err("sender \"0044 20 7946 0958\" must be in international E.164 form with a leading +, e.g. +16505550100"),
        );
        check_sender(
            "ACME",
            Err("sender \"ACME\" is not a phone number: alphanumeric sender IDs are not supported by the BPCC API; use a Text Out access number in E.164, e.g. +16505550100"),
        );
        check_sender(
            "AcmeCorp1",
            Err("sender \"AcmeCorp1\" is not a phone number: alphanumeric sender IDs are not supported by the BPCC API; use a Text Out access number in E.164, e.g. +16505550100"),
        );
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

    #[test]
    fn no_panic_on_arbitrary_input() {
        // A deterministic xorshift walk over characters that matter to the
        // parser, plus some that should not appear at all.
        const ALPHABET: &[char] = &[
            '0', '1', '2', '4', '5', '9', '+', '-', '(', ')', '.', ' ', 'x', 'e', 'E', '#', ';',
            '=', ':', '"', '\'', '*', '/', '\u{00A0}', '\u{FF10}', '\u{FF0B}', 'é', '王', '\0',
            't', 'l',
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

    /// The verdict of the full path alone: the reference for the fast path.
    fn parse_full(raw: &str, region: &Region) -> Result<E164, PhoneError> {
        E164::parse_reference(raw, region)
    }

    /// SplitMix64: deterministic, so a disagreement can be replayed from the
    /// seed, and independent of any `rand` version.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }

        fn digits(&mut self, len: usize) -> String {
            (0..len)
                .map(|_| char::from(b'0' + self.below(10) as u8))
                .collect()
        }
    }

    /// Default regions the agreement test reads national numbers in.
    const AGREEMENT_REGIONS: &[&str] = &[
        "US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "MX", "IT", "AR", "JP", "BS", "JM", "PR",
        "DO", "TT", "GG", "VA", "SM", "GA", "RU",
    ];

    /// Regions whose example numbers seed the generated inputs: the default
    /// regions, every +1 region, and regions with a national prefix
    /// transform rule or a calling code shared with others.
    const EXAMPLE_REGIONS: &[&str] = &[
        "US", "CA", "GB", "DE", "FR", "IN", "BR", "AU", "MX", "IT", "AR", "JP", "AG", "AI", "AS",
        "BB", "BM", "BS", "DM", "DO", "GD", "GU", "JM", "KN", "KY", "LC", "MP", "MS", "PR", "SX",
        "TC", "TT", "VC", "VG", "VI", "GG", "JE", "IM", "VA", "SM", "GA", "MG", "NF", "CC", "CX",
        "RU", "KZ", "CN", "SG", "NZ", "AT", "ES", "NL", "CH", "KR", "ZA", "NG",
    ];

    /// Area codes of the Caribbean and other +1 regions besides US and CA.
    const NANP_AREA_CODES: &[&str] = &[
        "242", "246", "264", "268", "284", "340", "345", "441", "473", "649", "658", "664", "670",
        "671", "684", "721", "758", "767", "784", "787", "809", "829", "849", "868", "869", "876",
        "939", "415", "212", "604", "416", "555", "123", "800", "900",
    ];

    /// A country of the generated inputs: its calling code, national prefix
    /// and the example national numbers of its metadata.
    struct Country {
        code: u16,
        national_prefix: Option<&'static str>,
        examples: Vec<&'static str>,
    }

    fn example_countries() -> Vec<Country> {
        let types = [
            Type::FixedLine,
            Type::Mobile,
            Type::TollFree,
            Type::PremiumRate,
            Type::SharedCost,
            Type::PersonalNumber,
            Type::Voip,
            Type::Pager,
            Type::Uan,
            Type::Voicemail,
            Type::Emergency,
            Type::ShortCode,
            Type::NoInternational,
        ];
        EXAMPLE_REGIONS
            .iter()
            .map(|id| {
                let metadata = DATABASE.by_id(*id).expect("example region has metadata");
                let descriptors = metadata.descriptors();
                let examples: Vec<&'static str> = types
                    .iter()
                    .filter_map(|kind| descriptors.get(*kind)?.example())
                    .collect();
                assert!(!examples.is_empty(), "{id} has no example numbers");
                Country {
                    code: metadata.country_code(),
                    national_prefix: metadata.national_prefix(),
                    examples,
                }
            })
            .collect()
    }

    /// An example number as is, or with a digit changed, dropped or added,
    /// or cut and completed with random digits.
    fn mutate(rng: &mut SplitMix, example: &str) -> String {
        let mut digits = example.to_owned();
        let at = rng.below(digits.len() + 1);
        match rng.below(8) {
            0..=2 => {}
            3 if at < digits.len() => {
                let digit = rng.digits(1);
                digits.replace_range(at..=at, &digit);
            }
            4 if at < digits.len() => {
                digits.remove(at);
            }
            5 => digits.insert_str(at, &rng.digits(1)),
            6 => {
                let tail = rng.digits(digits.len() - at);
                digits.replace_range(at.., &tail);
            }
            _ => {
                let len = rng.below(6);
                digits.truncate(at);
                digits.push_str(&rng.digits(len));
            }
        }
        digits
    }

    /// One input as a CSV cell might hold it.
    fn generate(rng: &mut SplitMix, countries: &[Country]) -> String {
        let raw = match rng.below(10) {
            0..=5 => {
                let country = rng.pick(countries);
                let example = *rng.pick(&country.examples);
                let nsn = mutate(rng, example);
                let code = country.code;
                let prefix = country.national_prefix.unwrap_or("");
                match rng.below(11) {
                    0 | 1 => nsn,
                    2 => format!("{prefix}{nsn}"),
                    3 => format!("+{code}{nsn}"),
                    4 => format!("+{code} {prefix}{nsn}"),
                    5 => format!("00{code}{nsn}"),
                    6 => format!("011{code}{nsn}"),
                    7 => format!("{code}{nsn}"),
                    8 => format!("+{code} (0){nsn}"),
                    9 => format!("00{code}{prefix}{nsn}"),
                    _ => format!("1{nsn}"),
                }
            }
            6 | 7 => {
                let prefix = *rng.pick(&[
                    "", "", "", "+", "+", "0", "00", "011", "1", "+1", "+0", "0011", "001", "01",
                    "10", "+44", "+39", "+54", "+55", "+81",
                ]);
                let len = 3 + rng.below(15);
                format!("{prefix}{}", rng.digits(len))
            }
            _ => {
                let prefix = *rng.pick(&["", "", "1", "+1", "001", "0111", "1 ", "+1 ("]);
                let area = *rng.pick(NANP_AREA_CODES);
                let len = 6 + rng.below(3);
                format!("{prefix}{area}{}", rng.digits(len))
            }
        };
        decorate(rng, raw)
    }

    /// Sometimes puts separators between the digits, as people write them.
    fn decorate(rng: &mut SplitMix, raw: String) -> String {
        if rng.below(5) != 0 {
            return raw;
        }
        let mut out = String::with_capacity(raw.len() * 2);
        for (index, character) in raw.chars().enumerate() {
            if index > 1 && character.is_ascii_digit() && rng.below(4) == 0 {
                out.push(*rng.pick(&[' ', '-', '.']));
            }
            out.push(character);
        }
        out
    }

    fn outcome_kind(outcome: &Result<E164, PhoneError>) -> &'static str {
        match outcome {
            Ok(_) => "valid",
            Err(PhoneError::Empty) => "Empty",
            Err(PhoneError::Letters { .. }) => "Letters",
            Err(PhoneError::Extension { .. }) => "Extension",
            Err(PhoneError::UnexpectedCharacter { .. }) => "UnexpectedCharacter",
            Err(PhoneError::SpreadsheetNumber { .. }) => "SpreadsheetNumber",
            Err(PhoneError::TooShort { .. }) => "TooShort",
            Err(PhoneError::TooLong { .. }) => "TooLong",
            Err(PhoneError::UnknownCountryCode { .. }) => "UnknownCountryCode",
            Err(PhoneError::Invalid { .. }) => "Invalid",
            Err(PhoneError::UnknownRegion { .. }) => "UnknownRegion",
            Err(PhoneError::AlphanumericSender { .. }) => "AlphanumericSender",
            Err(PhoneError::SenderNotInternational { .. }) => "SenderNotInternational",
        }
    }

    /// Compares the fast path with the full path on one input; the fast path
    /// must decide by itself (no fallback) and agree exactly.
    #[track_caller]
    fn check_agrees(
        raw: &str,
        region: Option<&Region>,
        outcomes: &mut HashMap<&'static str, usize>,
    ) {
        let Ok(cleaned) = clean(raw) else {
            *outcomes.entry("refused by clean").or_default() += 1;
            return;
        };
        let for_full = Cleaned {
            prefix: cleaned.prefix,
            digits: cleaned.digits.clone(),
        };
        let full = resolve_full(raw, for_full, region);
        let fast = resolve_fast(raw, &cleaned, region);
        assert_eq!(
            fast.as_ref(),
            Some(&full),
            "input {raw:?} region {region:?}: fast path disagrees with the full path"
        );
        *outcomes.entry(outcome_kind(&full)).or_default() += 1;
    }

    /// Runs `n_inputs` generated inputs through both paths, each in a random
    /// default region and, when it starts with `+`, as a sender too.
    fn check_agreement(n_inputs: usize, seed: u64) {
        let countries = example_countries();
        let regions: Vec<Region> = AGREEMENT_REGIONS.iter().map(|id| region(id)).collect();
        let mut rng = SplitMix(seed);
        let mut inputs: Vec<(usize, String)> = (0..n_inputs)
            .map(|_| {
                let raw = generate(&mut rng, &countries);
                (rng.below(regions.len()), raw)
            })
            .collect();
        // Grouped by region and leading digits, the full path's pattern cache
        // misses less, which keeps the test fast; the inputs are the same.
        inputs.sort_unstable();
        let mut outcomes: HashMap<&'static str, usize> = HashMap::new();
        for (region_index, raw) in &inputs {
            check_agrees(raw, Some(&regions[*region_index]), &mut outcomes);
            if raw.starts_with('+') {
                check_agrees(raw, None, &mut outcomes);
            }
        }
        let n_checked: usize = outcomes.values().sum();
        let mut outcomes: Vec<_> = outcomes.into_iter().collect();
        outcomes.sort();
        eprintln!("{n_inputs} inputs, {n_checked} comparisons: {outcomes:?}");
        let count = |kind: &str| {
            outcomes
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or(0, |(_, n)| *n)
        };
        // The generator must keep exercising every verdict digits can get:
        // each in at least 1% of the comparisons.
        for kind in [
            "valid",
            "Invalid",
            "TooShort",
            "TooLong",
            "UnknownCountryCode",
        ] {
            assert!(count(kind) * 100 >= n_checked, "too few {kind}");
        }
    }

    /// The fast path gives the verdict of the full path: 20,000 generated
    /// inputs by default; `fast_path_agrees_on_many_numbers` runs 250,000.
    #[test]
    fn fast_path_agrees_with_full_path() {
        check_agreement(20_000, 0x5EED_0001);
    }

    /// `BPSMS_AGREEMENT_INPUTS` and `BPSMS_AGREEMENT_SEED` run more inputs
    /// or other ones.
    #[test]
    #[ignore = "slow in debug builds: cargo test --release --lib domain::phone -- --ignored"]
    fn fast_path_agrees_on_many_numbers() {
        let setting = |name: &str, default: u64| {
            std::env::var(name)
                .map(|value| value.parse().expect("setting is a number"))
                .unwrap_or(default)
        };
        let n_inputs = setting("BPSMS_AGREEMENT_INPUTS", 250_000);
        let seed = setting("BPSMS_AGREEMENT_SEED", 0x5EED_0002);
        check_agreement(usize::try_from(n_inputs).expect("count fits"), seed);
    }

    #[test]
    fn fast_path_agrees_on_hand_picked_numbers() {
        let mut outcomes = HashMap::new();
        let raws = [
            "4155550101",
            "14155550101",
            "+14155550101",
            "+1 242 357 1234",
            "242 357 1234",
            "1 876 555 0101",
            "+1 876 5550101",
            "+1 787 555 0101",
            "+1 809 555 0101",
            "+44 1481 256789",
            "01481 256789",
            "+39 06 6989 1234",
            "06 6989 1234",
            "+39 06698 12345",
            "+54 9 11 1234 5678",
            "011 15 1234 5678",
            "+55 11 91234 5678",
            "0 21 11 91234 5678",
            "+81 3 1234 5678",
            "+378 0549 123456",
            "+241 06 03 12345",
            "+672 3 12345",
            "+800 1234 5678",
            "+979 1234 56789",
            "+882 1234 5678",
            "00",
            "000",
            "011",
            "0111",
            "01144",
            "+0",
            "+00",
            "+000",
            "+999 1234567",
            "0000000000",
            "+1 000 000 0000",
            "12345678901234567",
            "123456789012345678",
            "+123456789012345",
            "+1234567890123456",
        ];
        let regions: Vec<Region> = AGREEMENT_REGIONS.iter().map(|id| region(id)).collect();
        for raw in raws {
            for default_region in &regions {
                check_agrees(raw, Some(default_region), &mut outcomes);
            }
            check_agrees(raw, None, &mut outcomes);
        }
    }

    /// Times both paths on the same inputs. Run it with
    /// `cargo test --release --lib domain::phone::tests::bench_parse -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark, run by hand in release mode"]
    fn bench_parse() {
        use std::hint::black_box;
        use std::time::Instant;

        const AREA_CODES: &[&str] = &[
            "201", "212", "213", "305", "312", "404", "415", "503", "512", "602", "617", "646",
            "702", "713", "718", "773", "805", "818", "917", "954",
        ];
        let mut rng = SplitMix(42);
        let us_national: Vec<String> = (0..1000)
            .map(|_| {
                let area = rng.pick(AREA_CODES);
                let exchange = 200 + rng.below(800);
                let line = rng.digits(4);
                match rng.below(3) {
                    0 => format!("({area}) {exchange}-{line}"),
                    1 => format!("{area}-{exchange}-{line}"),
                    _ => format!("{area}{exchange}{line}"),
                }
            })
            .collect();
        let plus_one: Vec<String> = us_national.iter().map(|raw| format!("+1 {raw}")).collect();
        let countries = example_countries();
        let international: Vec<String> = (0..1000)
            .map(|_| {
                let country = rng.pick(&countries[..12]);
                let nsn = rng.pick(&country.examples);
                format!("+{} {nsn}", country.code)
            })
            .collect();
        let random: Vec<String> = (0..1000)
            .map(|_| {
                let len = 3 + rng.below(15);
                rng.digits(len)
            })
            .collect();
        let mixed: Vec<String> = (0..1000).map(|_| generate(&mut rng, &countries)).collect();

        let us = us();
        let time = |inputs: &[String], n_calls: usize, parse: &dyn Fn(&str) -> bool| {
            let start = Instant::now();
            let mut n_valid = 0usize;
            for raw in inputs.iter().cycle().take(n_calls) {
                n_valid += usize::from(parse(black_box(raw)));
            }
            let elapsed = start.elapsed();
            (elapsed.as_nanos() as f64 / n_calls as f64, n_valid)
        };
        let fast = |raw: &str| E164::parse(raw, &us).is_ok();
        let full = |raw: &str| parse_full(raw, &us).is_ok();
        // Compile the patterns every set of inputs needs before timing.
        for inputs in [&us_national, &plus_one, &international, &random, &mixed] {
            time(inputs, inputs.len(), &fast);
        }
        // The full path is slow enough on many countries (its pattern cache
        // thrashes) that it gets fewer calls there.
        for (name, inputs, n_fast, n_full) in [
            (
                "US national, (415) 555-0101 and the like",
                &us_national,
                1_000_000,
                1_000_000,
            ),
            (
                "+1 415 555 0101 and the like",
                &plus_one,
                1_000_000,
                200_000,
            ),
            (
                "+CC example numbers of 12 countries",
                &international,
                1_000_000,
                5_000,
            ),
            (
                "random digit strings of 3-17 digits",
                &random,
                1_000_000,
                200_000,
            ),
            ("agreement-test mix", &mixed, 1_000_000, 5_000),
        ] {
            let (fast_ns, fast_valid) = time(inputs, n_fast, &fast);
            let (full_ns, full_valid) = time(inputs, n_full, &full);
            // Both counts cover whole passes over the 1,000 inputs.
            assert_eq!(fast_valid / (n_fast / 1000), full_valid / (n_full / 1000));
            eprintln!(
                "{name}: fast {fast_ns:.0} ns/number ({n_fast} calls), full {full_ns:.0} \
                 ns/number ({n_full} calls), {:.0}x; {} of 1000 valid",
                full_ns / fast_ns,
                fast_valid / (n_fast / 1000)
            );
        }
    }
}
