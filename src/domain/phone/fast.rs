//! libphonenumber's parse and validity check for digit strings, re-done over
//! regular expressions compiled once per region.
//!
//! `phonenumber` 0.3 keeps its patterns in a `regex_cache` LRU of 100 entries
//! behind one global mutex, keyed by the pattern text: every match hashes the
//! (often kilobyte-long) pattern, and numbers of more than a few countries
//! need more patterns than the cache holds, so patterns are compiled again
//! and again. This module reads the same metadata
//! (`phonenumber::metadata::DATABASE`) and compiles each pattern once, with
//! the options `regex_cache` uses for the crate (`ignore_whitespace`,
//! Unicode, the same size limits).
//!
//! Each function mirrors one function of `phonenumber` 0.3.10 step by step;
//! the comments name it. A pattern `p` that the crate only ever uses as "the
//! leftmost match starts at 0" is compiled as `^(?:p)`: a match starting at
//! 0 exists exactly when the leftmost match starts there. Patterns whose
//! match end or captures the crate uses are compiled unchanged and used
//! through the same `regex` calls.
//!
//! Every function returns `None` when it cannot decide as the crate would (a
//! pattern that does not compile, a metadata shape the crate would panic
//! on); the caller then takes the full path through the crate itself.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{LazyLock, OnceLock};

use phonenumber::country::Id as CountryId;
use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use phonenumber::Type;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use super::Region;

/// `phonenumber::consts::MIN_LENGTH_FOR_NSN`.
const MIN_LENGTH_FOR_NSN: usize = 2;
/// `phonenumber::consts::MAX_LENGTH_FOR_NSN`.
const MAX_LENGTH_FOR_NSN: usize = 17;
/// `phonenumber::consts::MAX_LENGTH_FOR_COUNTRY_CODE`.
const MAX_LENGTH_FOR_COUNTRY_CODE: usize = 3;
/// `NationalNumber::new` refuses values from 2^56 on.
const NATIONAL_NUMBER_LIMIT: u64 = 1 << 56;

/// The types `validator::number_type` tries after the general descriptor.
/// A number is valid when the general descriptor and any of these match;
/// which one matched decides only the type, not validity.
const VALID_TYPES: [Type; 10] = [
    Type::PremiumRate,
    Type::TollFree,
    Type::SharedCost,
    Type::Voip,
    Type::PersonalNumber,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
    Type::FixedLine,
    Type::Mobile,
];

/// The metadata tables, built on first use. Regular expressions are
/// compiled later, per region, when a number first needs them.
static TABLES: LazyLock<Tables> = LazyLock::new(Tables::build);

pub(super) fn tables() -> &'static Tables {
    &TABLES
}

/// Why the crate's `parse` refused a number: the variants of
/// `phonenumber::ParseError` it can return for a digit string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParseFailure {
    NoNumber,
    TooShortNsn,
    InvalidCountryCode,
    TooLong,
    MalformedInteger,
}

/// What the crate's `parse` returns for a digit string, reduced to what
/// validity and the E.164 form depend on.
#[derive(Debug)]
pub(super) struct Parsed<'a> {
    pub(super) code: u16,
    /// The national significant number with its leading zeros, exactly
    /// as `NationalNumber`'s `Display` writes it.
    pub(super) national: Cow<'a, str>,
}

/// The verdict of `validator::is_valid` and the metadata entry
/// `source_for` chose for the number, which error messages reuse.
#[derive(Debug, Clone, Copy)]
pub(super) struct Validity {
    pub(super) valid: bool,
    source: Option<usize>,
}

pub(super) struct Tables {
    /// One per metadata entry of the database, in `by_code` order.
    entries: Vec<Entry>,
    /// `Database::by_id` for two-letter ids, indexed by
    /// [`two_letter_index`]: region id to entry.
    by_region: Vec<Option<usize>>,
    /// Indexed by country calling code; `None` where `by_code` has none.
    codes: Vec<Option<CodeEntry>>,
}

struct Entry {
    metadata: &'static Metadata,
    /// `None` inside when a pattern did not compile.
    compiled: OnceLock<Option<Compiled>>,
}

struct CodeEntry {
    /// How `validator::source_for` picks the metadata for this code.
    source: Source,
    /// The main country of the code, else its first entry: what
    /// `number_metadata` falls back to.
    main: usize,
}

enum Source {
    /// One region: `Left(region)`, looked up with `by_id`; `None` when
    /// the lookup finds nothing (or the id is not a country id).
    Region(Option<usize>),
    /// Only `001` (non-geographic): `Right(code)`, the first entry.
    NonGeographic(usize),
    /// Several regions, tried in order by leading digits or by type.
    Several(Several),
    /// A shape on which the crate would panic: leave it to the crate.
    Unsupported,
}

struct Several {
    /// In the crate's order: the entry tested and the entry returned
    /// (the same one, looked up by the id parsed from the region string).
    candidates: Vec<(usize, Option<usize>)>,
    /// The leading digits of the candidates that have them, as one set,
    /// so a number is matched against all of them in one pass.
    leading_digits: OnceLock<Option<LeadingDigits>>,
}

struct LeadingDigits {
    /// Anchored patterns.
    set: RegexSet,
    /// Per candidate, its pattern's index in `set`; `None` for a region
    /// without leading digits, which the crate tests by number type.
    slot: Vec<Option<usize>>,
}

/// One region's compiled patterns and the metadata values parsing uses.
pub(super) struct Compiled {
    code: u16,
    code_text: String,
    general: Pattern,
    general_possible_local_length: &'static [u16],
    /// Indexed by the length of the national number: the anchored union
    /// of the patterns of the `VALID_TYPES` descriptors that allow that
    /// length; `None` where none does.
    types_by_length: Vec<Option<Regex>>,
    /// As the crate compiles it: its match end is used.
    international_prefix: Option<Regex>,
    /// As the crate compiles it: its captures and `replace` are used.
    national_prefix_for_parsing: Option<Regex>,
    national_prefix_transform_rule: Option<&'static str>,
    national_prefix: Option<&'static str>,
}

/// A `Descriptor`: its pattern, anchored, and its possible lengths.
struct Pattern {
    regex: Regex,
    possible_length: &'static [u16],
}

/// Result of `validator::length` for `Type::Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Possible,
    PossibleLocalOnly,
    TooShort,
    TooLong,
    Invalid,
}

/// The metadata `source_for` picked and whether it already found that
/// `number_type` is not `Unknown` for the same digits.
#[derive(Debug, Clone, Copy)]
struct Chosen {
    entry: usize,
    known_valid: bool,
}

impl Tables {
    fn build() -> Tables {
        let mut entries = Vec::new();
        // `by_id` keeps only one of the non-geographic `001` entries, so
        // the codes are found by asking for every three-digit code too.
        let mut all_codes: Vec<u16> = (1..1000).collect();
        all_codes.extend(DATABASE.iter().map(Metadata::country_code));
        all_codes.sort_unstable();
        all_codes.dedup();

        let mut regions_of_code = Vec::new();
        for code in all_codes {
            let (Some(metadata), Some(regions)) = (DATABASE.by_code(&code), DATABASE.region(&code))
            else {
                continue;
            };
            let first = entries.len();
            let main = metadata
                .iter()
                .position(|m| m.is_main_country_for_code())
                .unwrap_or(0);
            entries.extend(metadata.into_iter().map(|metadata| Entry {
                metadata,
                compiled: OnceLock::new(),
            }));
            regions_of_code.push((code, first, first + main, regions));
        }

        let mut by_id = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            let id = entry.metadata.id();
            if DATABASE
                .by_id(id)
                .is_some_and(|found| std::ptr::eq(found, entry.metadata))
            {
                by_id.insert(id, index);
            }
        }

        let mut codes: Vec<Option<CodeEntry>> = Vec::new();
        for (code, first, main, regions) in regions_of_code {
            let source = source_of_code(&regions, first, &by_id);
            let index = usize::from(code);
            if codes.len() <= index {
                codes.resize_with(index + 1, || None);
            }
            codes[index] = Some(CodeEntry { source, main });
        }

        let mut by_region = vec![None; 26 * 26];
        for (id, index) in by_id {
            if let Some(slot) = two_letter_index(id).and_then(|at| by_region.get_mut(at)) {
                *slot = Some(index);
            }
        }
        Tables {
            entries,
            by_region,
            codes,
        }
    }

    /// The compiled patterns of a default region, `None` if it has no
    /// metadata (which `Region::parse` rules out) or a pattern failed.
    pub(super) fn region(&self, region: &Region) -> Option<&Compiled> {
        let index = (*self.by_region.get(two_letter_index(region.as_str())?)?)?;
        self.compiled(index)
    }

    fn compiled(&self, index: usize) -> Option<&Compiled> {
        let entry = self.entries.get(index)?;
        entry
            .compiled
            .get_or_init(|| Compiled::build(entry.metadata))
            .as_ref()
    }

    fn code(&self, code: u16) -> Option<&CodeEntry> {
        self.codes.get(usize::from(code))?.as_ref()
    }

    /// `parser::parse(None, "+{digits}")` for ASCII digits.
    pub(super) fn parse_international<'a>(
        &self,
        digits: &'a str,
    ) -> Option<Result<Parsed<'a>, ParseFailure>> {
        // `is_viable("+…")`: `+` and at least three digits. RFC 3966
        // parsing fails on `+digits` (the country code swallows every
        // digit), so the natural-language parser reads the whole string.
        if digits.len() < 3 {
            return Some(Err(ParseFailure::NoNumber));
        }
        // `helper::country_code`, source `Plus`.
        let (code, national) = match self.split_country_code(digits) {
            Ok(split) => split,
            Err(failure) => return Some(Err(failure)),
        };
        // No default region: the metadata comes from `source_for` on
        // the national number without its leading zeros.
        let without_zeros = national.trim_start_matches('0');
        let metadata = match self.source_for(code, without_zeros)? {
            Some(chosen) => Some(self.compiled(chosen.entry)?),
            None => None,
        };
        finish_parse(code, Cow::Borrowed(national), metadata)
    }

    /// `parser::parse(Some(region), digits)` for ASCII digits.
    pub(super) fn parse_national<'a>(
        &self,
        digits: &'a str,
        region: &Compiled,
    ) -> Option<Result<Parsed<'a>, ParseFailure>> {
        // RFC 3966 parsing takes a bare digit string whole; `is_viable`
        // then wants at least two digits.
        if digits.len() < MIN_LENGTH_FOR_NSN {
            return Some(Err(ParseFailure::NoNumber));
        }
        // `helper::international_prefix`: the region's dialling prefix,
        // when the leftmost match starts at 0 and no 0 follows it.
        let after_idd = region.international_prefix.as_ref().and_then(|idd| {
            let found = idd.find(digits)?;
            let rest = digits.get(found.end()..)?;
            (found.start() == 0 && !rest.starts_with('0')).then_some(rest)
        });
        let (code, national) = match after_idd {
            // `helper::country_code`, source `Idd`.
            Some(rest) => match self.split_country_code(rest) {
                Ok(split) => split,
                Err(failure) => return Some(Err(failure)),
            },
            // `helper::country_code`, source `Default`: a national number
            // that starts with the region's own country code loses it
            // unless it is a possible national number as it stands.
            None => {
                let possible_as_is = || {
                    region.general.is_match(digits)
                        && matches!(
                            region.length(digits.len()),
                            Length::Possible | Length::PossibleLocalOnly
                        )
                };
                let national = match digits.strip_prefix(region.code_text.as_str()) {
                    Some(rest) if !possible_as_is() => rest,
                    _ => digits,
                };
                (region.code, national)
            }
        };
        // With a default region the metadata is the region's own, even
        // after a dialling prefix.
        finish_parse(code, Cow::Borrowed(national), Some(region))
    }

    /// `helper::country_code` for a number whose country code is still in
    /// its digits (after `+` or a dialling prefix).
    fn split_country_code<'a>(&self, digits: &'a str) -> Result<(u16, &'a str), ParseFailure> {
        if digits.len() <= MIN_LENGTH_FOR_NSN {
            return Err(ParseFailure::TooShortNsn);
        }
        if digits.starts_with('0') {
            return Err(ParseFailure::InvalidCountryCode);
        }
        for len in 1..=MAX_LENGTH_FOR_COUNTRY_CODE {
            let (Some(head), Some(rest)) = (digits.get(..len), digits.get(len..)) else {
                break;
            };
            let Ok(code) = head.parse::<u16>() else {
                break;
            };
            if self.code(code).is_some() {
                return Ok((code, rest));
            }
        }
        Err(ParseFailure::InvalidCountryCode)
    }

    /// `validator::source_for`: the metadata that reads `national`.
    /// `Some(None)` when the crate finds none.
    fn source_for(&self, code: u16, national: &str) -> Option<Option<Chosen>> {
        let Some(entry) = self.code(code) else {
            return Some(None);
        };
        let chosen = |entry| Chosen {
            entry,
            known_valid: false,
        };
        let several = match &entry.source {
            Source::Region(index) => return Some(index.map(chosen)),
            Source::NonGeographic(index) => return Some(Some(chosen(*index))),
            Source::Unsupported => return None,
            Source::Several(several) => several,
        };
        let leading_digits = several
            .leading_digits
            .get_or_init(|| LeadingDigits::build(&self.entries, &several.candidates))
            .as_ref()?;
        // Matched only when a candidate with leading digits comes up:
        // most numbers are decided by the main region, which has none.
        let mut matches = None;
        for (position, &(tested, returned)) in several.candidates.iter().enumerate() {
            let (found, known_valid) = match leading_digits.slot.get(position)? {
                Some(slot) => {
                    let matches =
                        matches.get_or_insert_with(|| leading_digits.set.matches(national));
                    (matches.matched(*slot), false)
                }
                None => {
                    let valid = self.compiled(tested)?.is_valid_number(national)?;
                    (valid, valid)
                }
            };
            if found {
                // `known_valid` speaks of the entry tested; it only
                // carries over when the same one is returned.
                return Some(returned.map(|entry| Chosen {
                    entry,
                    known_valid: known_valid && entry == tested,
                }));
            }
        }
        Some(None)
    }

    /// `validator::is_valid` for a parsed number.
    pub(super) fn validity(&self, code: u16, national: &str) -> Option<Validity> {
        let Some(chosen) = self.source_for(code, national)? else {
            return Some(Validity {
                valid: false,
                source: None,
            });
        };
        let valid = chosen.known_valid || self.compiled(chosen.entry)?.is_valid_number(national)?;
        Some(Validity {
            valid,
            source: Some(chosen.entry),
        })
    }

    /// `PhoneNumber::metadata`, else the main country of the code: the
    /// metadata the full path's error messages describe. The crate looks
    /// it up by the national number without its leading zeros; without
    /// any, that is the lookup `validity` already made.
    pub(super) fn metadata_for_errors(
        &self,
        code: u16,
        national: &str,
        validity: Validity,
    ) -> Option<Option<&'static Metadata>> {
        let value = national.trim_start_matches('0');
        let source = if value.len() == national.len() {
            validity.source
        } else {
            self.source_for(code, value)?.map(|chosen| chosen.entry)
        };
        let entry = match source {
            Some(entry) => Some(entry),
            None => self.code(code).map(|entry| entry.main),
        };
        match entry {
            Some(entry) => Some(Some(self.entries.get(entry)?.metadata)),
            None => Some(None),
        }
    }
}

/// The index of an upper-case two-letter region id in a 26 × 26 table.
fn two_letter_index(id: &str) -> Option<usize> {
    match id.as_bytes() {
        &[first @ b'A'..=b'Z', second @ b'A'..=b'Z'] => {
            Some(usize::from(first - b'A') * 26 + usize::from(second - b'A'))
        }
        _ => None,
    }
}

/// Precomputes `validator::source_for` for the regions of one code.
fn source_of_code(regions: &[&str], first: usize, by_id: &HashMap<&'static str, usize>) -> Source {
    // The crate looks a region up by the id it parsed from the string.
    let returned = |region: &str| -> Option<Option<usize>> {
        let id = CountryId::from_str(region).ok()?;
        Some(by_id.get(id.as_ref()).copied())
    };
    match regions {
        [] => Source::Region(None),
        ["001"] => Source::NonGeographic(first),
        [region] => Source::Region(returned(region).flatten()),
        several => {
            let mut candidates = Vec::with_capacity(several.len());
            for region in several {
                // The crate unwraps both lookups here.
                let (Some(&tested), Some(returned)) = (by_id.get(region), returned(region)) else {
                    return Source::Unsupported;
                };
                candidates.push((tested, returned));
            }
            Source::Several(Several {
                candidates,
                leading_digits: OnceLock::new(),
            })
        }
    }
}

impl LeadingDigits {
    fn build(entries: &[Entry], candidates: &[(usize, Option<usize>)]) -> Option<LeadingDigits> {
        let mut patterns = Vec::new();
        let mut slot = Vec::with_capacity(candidates.len());
        for &(tested, _) in candidates {
            match entries.get(tested)?.metadata.leading_digits() {
                Some(pattern) => {
                    slot.push(Some(patterns.len()));
                    patterns.push(anchored(pattern.as_str()));
                }
                None => slot.push(None),
            }
        }
        let set = RegexSetBuilder::new(patterns)
            .ignore_whitespace(true)
            .unicode(true)
            .size_limit(10 * (1 << 20))
            .dfa_size_limit(2 * (1 << 20))
            .build()
            .ok()?;
        Some(LeadingDigits { set, slot })
    }
}

/// The rest of `parser::parse_with` once the country code is known:
/// strip the national prefix where the crate does, then its length
/// checks and the conversion into a `NationalNumber`.
fn finish_parse<'a>(
    code: u16,
    mut national: Cow<'a, str>,
    metadata: Option<&Compiled>,
) -> Option<Result<Parsed<'a>, ParseFailure>> {
    if let Some(metadata) = metadata {
        let mut potential = metadata.strip_prefix_for_parsing(national.clone())?;
        // The crate strips the national prefix once more after
        // `helper::national_number`, so `00…` can lose both zeros.
        if let Some(prefix) = metadata.national_prefix {
            if potential.starts_with(prefix) {
                potential = trim(potential, prefix.len())?;
            }
        }
        if metadata.length(potential.len()) != Length::TooShort {
            national = potential;
        }
    }
    if national.len() < MIN_LENGTH_FOR_NSN {
        return Some(Err(ParseFailure::TooShortNsn));
    }
    if national.len() > MAX_LENGTH_FOR_NSN {
        return Some(Err(ParseFailure::TooLong));
    }
    // `NationalNumber::from_str`: leading zeros apart, then a u64.
    let Ok(value) = national.trim_start_matches('0').parse::<u64>() else {
        return Some(Err(ParseFailure::MalformedInteger));
    };
    if value >= NATIONAL_NUMBER_LIMIT {
        return Some(Err(ParseFailure::TooLong));
    }
    Some(Ok(Parsed { code, national }))
}

/// `helper::trim`.
fn trim(text: Cow<'_, str>, start: usize) -> Option<Cow<'_, str>> {
    match text {
        Cow::Borrowed(text) => text.get(start..).map(Cow::Borrowed),
        Cow::Owned(text) => text.get(start..).map(|rest| Cow::Owned(rest.to_owned())),
    }
}

impl Compiled {
    fn build(metadata: &'static Metadata) -> Option<Compiled> {
        let descriptors = metadata.descriptors();
        let general = descriptors.general();
        let types: Vec<&Descriptor> = VALID_TYPES
            .into_iter()
            .filter_map(|kind| descriptors.get(kind))
            .collect();
        let mut types_by_length = Vec::with_capacity(MAX_LENGTH_FOR_NSN + 1);
        for length in 0..=MAX_LENGTH_FOR_NSN {
            types_by_length.push(union_for_length(&types, length)?);
        }
        let international_prefix = match metadata.international_prefix() {
            Some(pattern) => Some(crate_regex(pattern.as_str())?),
            None => None,
        };
        let national_prefix_for_parsing = match metadata.national_prefix_for_parsing() {
            Some(pattern) => Some(crate_regex(pattern.as_str())?),
            None => None,
        };
        Some(Compiled {
            code: metadata.country_code(),
            code_text: metadata.country_code().to_string(),
            general: Pattern {
                regex: crate_regex(&anchored(general.national_number().as_str()))?,
                possible_length: general.possible_length(),
            },
            general_possible_local_length: general.possible_local_length(),
            types_by_length,
            international_prefix,
            national_prefix_for_parsing,
            national_prefix_transform_rule: metadata.national_prefix_transform_rule(),
            national_prefix: metadata.national_prefix(),
        })
    }

    /// Where the region's own international dialling prefix ends: the
    /// parent module's `region_dialling_prefix_end` over this pattern.
    pub(super) fn dialling_prefix_end(&self, digits: &str) -> Option<usize> {
        let found = self.international_prefix.as_ref()?.find(digits)?;
        let end = found.end();
        let rest = digits.get(end..)?;
        if found.start() != 0 || end == 0 || rest.is_empty() || rest.starts_with('0') {
            return None;
        }
        Some(end)
    }

    /// `validator::number_type(..) != Type::Unknown`: the general
    /// descriptor and any of the others match. `None` for a number longer
    /// than any national number the crate parses.
    fn is_valid_number(&self, national: &str) -> Option<bool> {
        let types = self.types_by_length.get(national.len())?;
        Some(
            self.general.is_match(national)
                && types.as_ref().is_some_and(|types| types.is_match(national)),
        )
    }

    /// `validator::length(meta, number, Type::Unknown)`. The crate takes
    /// the general descriptor's possible lengths on both branches of its
    /// choice, so they are the ones used here.
    fn length(&self, length: usize) -> Length {
        let possible = self.general.possible_length;
        let local = self.general_possible_local_length;
        let Ok(length) = u16::try_from(length) else {
            return Length::TooLong;
        };
        let (Some(&minimum), Some(&maximum)) = (possible.first(), possible.last()) else {
            return Length::Invalid;
        };
        if local.contains(&length) {
            Length::PossibleLocalOnly
        } else if length == minimum {
            Length::Possible
        } else if length < minimum {
            Length::TooShort
        } else if length > maximum {
            Length::TooLong
        } else if possible.contains(&length) {
            Length::Possible
        } else {
            Length::Invalid
        }
    }

    /// `helper::national_number`: the national prefix (and carrier code)
    /// as `national_prefix_for_parsing` and the transform rule say.
    /// `None` where the crate would panic.
    fn strip_prefix_for_parsing<'a>(&self, national: Cow<'a, str>) -> Option<Cow<'a, str>> {
        let Some(parsing) = &self.national_prefix_for_parsing else {
            if let Some(prefix) = self.national_prefix {
                if national.starts_with(prefix) {
                    return trim(national, prefix.len());
                }
            }
            return Some(national);
        };
        let Some(found) = parsing.find(&national) else {
            return Some(national);
        };
        if found.start() != 0 {
            return Some(national);
        }
        let end = found.end();
        let viable = self.general.is_match(&national);
        // The crate unwraps these captures; they exist since `find` matched.
        let captures = parsing.captures(&national)?;
        let first_group = captures.get(1).is_some();
        let last_group = captures.get(captures.len() - 1).is_some();
        match self.national_prefix_transform_rule {
            Some(transform) if last_group => {
                let transformed = parsing.replace(&national, transform).into_owned();
                if viable && !self.general.is_match(&transformed) {
                    return Some(national);
                }
                // The crate unwraps the first group here.
                if !first_group {
                    return None;
                }
                Some(Cow::Owned(transformed))
            }
            // The crate re-checks the number from the match start, which
            // is 0, so that check never differs from `viable`.
            _ => trim(national, end),
        }
    }
}

impl Pattern {
    /// `Descriptor::is_match`: a possible length (when any are listed)
    /// and a match of the pattern that starts at 0.
    fn is_match(&self, value: &str) -> bool {
        // The crate casts the length with `as u16`; national numbers are
        // never near 65536 digits.
        let length = u16::try_from(value.len()).unwrap_or(u16::MAX);
        if !self.possible_length.is_empty() && !self.possible_length.contains(&length) {
            return false;
        }
        self.regex.is_match(value)
    }
}

/// The descriptors whose `is_match` would look at a number of `length`
/// digits, as one anchored alternation: it matches exactly when one of
/// them does. `Some(None)` when no descriptor allows the length.
fn union_for_length(types: &[&Descriptor], length: usize) -> Option<Option<Regex>> {
    let allows = |descriptor: &&&Descriptor| {
        let possible = descriptor.possible_length();
        possible.is_empty() || possible.iter().any(|&n| usize::from(n) == length)
    };
    let alternatives: Vec<String> = types
        .iter()
        .filter(allows)
        .map(|descriptor| anchored(descriptor.national_number().as_str()))
        .collect();
    if alternatives.is_empty() {
        return Some(None);
    }
    crate_regex(&alternatives.join("|")).map(Some)
}

/// A pattern compiled as `regex_cache` compiles the crate's metadata.
fn crate_regex(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(pattern)
        .ignore_whitespace(true)
        .unicode(true)
        .size_limit(10 * (1 << 20))
        .dfa_size_limit(2 * (1 << 20))
        .build()
        .ok()
}

/// `^(?:pattern)`. The newline ends a `#` comment, which
/// whitespace-insensitive mode would otherwise extend over the `)`.
fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern}\n)")
}
