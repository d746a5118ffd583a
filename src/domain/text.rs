//! SMS text: which encoding a body needs (GSM-7 or UCS-2), how many units and
//! segments it takes, and whether it is over the length bpsms accepts.
//!
//! This module owns the GSM 03.38 character tables and the segment
//! arithmetic (160/153 septets, 70/67 UTF-16 code units, never splitting an
//! escape pair or a surrogate pair across parts). BPCC reports
//! `num_segments` as `"1"` whatever the length (API spec §11, gap 13), so
//! these numbers are computed here and reported as ours. [`analyse`] runs
//! once per CSV row: it is one pass over the characters and never allocates.

use std::fmt;
use std::str::FromStr;

/// The most characters bpsms accepts in a GSM-7 body (a typical provider limit).
pub const SMS_MAX_GSM7_CHARS: u32 = 1600;

/// The most characters bpsms accepts in a UCS-2 body.
pub const SMS_MAX_UCS2_CHARS: u32 = 700;

/// Septets in a single-part GSM-7 message.
const GSM7_SINGLE: u32 = 160;
/// Septets per part of a multi-part GSM-7 message (the rest holds the UDH).
const GSM7_PER_PART: u32 = 153;
/// UTF-16 code units in a single-part UCS-2 message.
const UCS2_SINGLE: u32 = 70;
/// UTF-16 code units per part of a multi-part UCS-2 message.
const UCS2_PER_PART: u32 = 67;

/// The most parts one concatenated SMS can have (its header counts them in
/// one byte).
pub const MAX_SEGMENTS: u32 = 255;

/// What `--rate` and `--rate-per-from` count. Carriers count segments:
/// a three-part SMS costs three. The API reports one segment whatever the
/// length (spec §11, gap 13), so bpsms counts them itself ([`analyse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateUnit {
    #[default]
    Messages,
    Segments,
}

impl RateUnit {
    /// The name stored in the database: `messages` or `segments`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Messages => "messages",
            RateUnit::Segments => "segments",
        }
    }

    /// What one message of `segments` parts weighs against the rates: at
    /// least 1, and at most 255, the most parts a concatenated SMS has.
    pub fn weight(self, segments: u32) -> u32 {
        match self {
            RateUnit::Messages => 1,
            RateUnit::Segments => segments.clamp(1, MAX_SEGMENTS),
        }
    }
}

impl std::str::FromStr for RateUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "messages" => Ok(RateUnit::Messages),
            "segments" => Ok(RateUnit::Segments),
            other => Err(format!("expected messages or segments, got {other:?}")),
        }
    }
}

/// The character encoding a message body travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The GSM 03.38 default alphabet with its extension table, 7 bits a character.
    Gsm7,
    /// UTF-16 (UCS-2 on the air): needed as soon as one character is outside GSM-7.
    Ucs2,
}

impl Encoding {
    /// The name stored in the database and shown in reports: `gsm7` or `ucs2`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An encoding name that is neither `gsm7` nor `ucs2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown encoding {input:?}: expected gsm7 or ucs2")]
pub struct ParseEncodingError {
    input: String,
}

impl FromStr for Encoding {
    type Err = ParseEncodingError;

    /// Reads `gsm7` or `ucs2`, case-insensitively and with or without a dash
    /// (`GSM-7`, `UCS-2`).
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        if trimmed.eq_ignore_ascii_case("gsm7") || trimmed.eq_ignore_ascii_case("gsm-7") {
            return Ok(Encoding::Gsm7);
        }
        if trimmed.eq_ignore_ascii_case("ucs2") || trimmed.eq_ignore_ascii_case("ucs-2") {
            return Ok(Encoding::Ucs2);
        }
        Err(ParseEncodingError {
            input: raw.chars().take(40).collect(),
        })
    }
}

/// What [`analyse`] found out about one message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextInfo {
    /// The encoding the body needs.
    pub encoding: Encoding,
    /// How many SMS parts the body is sent as; 0 for an empty body.
    pub segments: u32,
    /// Septets for GSM-7 (an extension character such as `€` counts 2),
    /// UTF-16 code units for UCS-2 (a character outside the BMP counts 2).
    pub units: u32,
    /// Unicode scalar values (what people call characters).
    pub chars: u32,
}

impl TextInfo {
    /// The most characters bpsms accepts in this encoding.
    pub fn max_chars(&self) -> u32 {
        match self.encoding {
            Encoding::Gsm7 => SMS_MAX_GSM7_CHARS,
            Encoding::Ucs2 => SMS_MAX_UCS2_CHARS,
        }
    }

    /// True when the body has more characters than [`TextInfo::max_chars`].
    pub fn over_limit(&self) -> bool {
        self.chars > self.max_chars()
    }

    /// True for an empty body, which cannot be sent as an SMS.
    pub fn is_empty(&self) -> bool {
        self.chars == 0
    }
}

/// Works out the encoding, length and segment count of a message body.
pub fn analyse(body: &str) -> TextInfo {
    let mut chars: u32 = 0;
    let mut is_gsm7 = true;
    let mut gsm7 = Packer::new(GSM7_PER_PART);
    let mut ucs2 = Packer::new(UCS2_PER_PART);
    for character in body.chars() {
        chars = chars.saturating_add(1);
        // `len_utf16` is 1 or 2, so the cast cannot truncate.
        ucs2.push(character.len_utf16() as u32);
        if is_gsm7 {
            match gsm7_septets(character) {
                Some(septets) => gsm7.push(septets),
                None => is_gsm7 = false,
            }
        }
    }
    let (encoding, packer, single) = if is_gsm7 {
        (Encoding::Gsm7, gsm7, GSM7_SINGLE)
    } else {
        (Encoding::Ucs2, ucs2, UCS2_SINGLE)
    };
    let segments = if packer.units == 0 {
        0
    } else if packer.units <= single {
        1
    } else {
        packer.parts
    };
    TextInfo {
        encoding,
        segments,
        units: packer.units,
        chars,
    }
}

/// Fills the parts of a multi-part message one character at a time, so that
/// a character that does not fit whole (an escape pair, a surrogate pair)
/// starts the next part instead of being split.
#[derive(Debug, Clone, Copy)]
struct Packer {
    per_part: u32,
    units: u32,
    parts: u32,
    used_in_part: u32,
}

impl Packer {
    fn new(per_part: u32) -> Packer {
        Packer {
            per_part,
            units: 0,
            parts: 1,
            used_in_part: 0,
        }
    }

    fn push(&mut self, width: u32) {
        self.units = self.units.saturating_add(width);
        if self.used_in_part.saturating_add(width) > self.per_part {
            self.parts = self.parts.saturating_add(1);
            self.used_in_part = width;
        } else {
            self.used_in_part += width;
        }
    }
}

/// Septets a character takes in GSM 03.38: 1 in the basic set, 2 in the
/// extension table (escape + code), `None` when GSM-7 cannot carry it.
fn gsm7_septets(character: char) -> Option<u32> {
    match character {
        // Basic character set, in table order.
        '@'
        | '£'
        | '$'
        | '¥'
        | 'è'
        | 'é'
        | 'ù'
        | 'ì'
        | 'ò'
        | 'Ç'
        | '\n'
        | 'Ø'
        | 'ø'
        | '\r'
        | 'Å'
        | 'å'
        | 'Δ'
        | '_'
        | 'Φ'
        | 'Γ'
        | 'Λ'
        | 'Ω'
        | 'Π'
        | 'Ψ'
        | 'Σ'
        | 'Θ'
        | 'Ξ'
        | 'Æ'
        | 'æ'
        | 'ß'
        | 'É'
        | ' '
        | '!'
        | '"'
        | '#'
        | '¤'
        | '%'
        | '&'
        | '\''
        | '('
        | ')'
        | '*'
        | '+'
        | ','
        | '-'
        | '.'
        | '/'
        | '0'..='9'
        | ':'
        | ';'
        | '<'
        | '='
        | '>'
        | '?'
        | '¡'
        | 'A'..='Z'
        | 'Ä'
        | 'Ö'
        | 'Ñ'
        | 'Ü'
        | '§'
        | '¿'
        | 'a'..='z'
        | 'ä'
        | 'ö'
        | 'ñ'
        | 'ü'
        | 'à' => Some(1),
        // Extension table: sent as ESC followed by a code.
        '\u{000C}' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_units_weigh_messages_or_segments() {
        assert_eq!(RateUnit::default(), RateUnit::Messages);
        assert_eq!(RateUnit::Messages.weight(3), 1);
        assert_eq!(RateUnit::Segments.weight(3), 3);
        assert_eq!(RateUnit::Segments.weight(0), 1);
        assert_eq!(RateUnit::Segments.weight(1000), MAX_SEGMENTS);
        for unit in [RateUnit::Messages, RateUnit::Segments] {
            assert_eq!(unit.as_str().parse::<RateUnit>(), Ok(unit));
        }
    }

    #[track_caller]
    fn check(body: &str, encoding: Encoding, segments: u32, units: u32, chars: u32) {
        let expected = TextInfo {
            encoding,
            segments,
            units,
            chars,
        };
        assert_eq!(analyse(body), expected, "body {body:?}");
    }

    #[test]
    fn short_bodies() {
        use Encoding::{Gsm7, Ucs2};
        check("", Gsm7, 0, 0, 0);
        check("Hi", Gsm7, 1, 2, 2);
        check("Hi José, see you at 9:30 @ Main St.", Gsm7, 1, 35, 35);
        check("Grüße aus Köln", Gsm7, 1, 14, 14);
        check("ΔΦΓΛΩΠΨΣΘΞ", Gsm7, 1, 10, 10);
        check("Price: 5€", Gsm7, 1, 10, 9);
        check("{}[]~|^\\", Gsm7, 1, 16, 8);
        check("page\u{000C}break", Gsm7, 1, 11, 10);
        check("line\r\nbreak", Gsm7, 1, 11, 11);
        check("Hi Zoë", Ucs2, 1, 6, 6);
        check("Cześć Łukasz", Ucs2, 1, 12, 12);
        check("王芳您好", Ucs2, 1, 4, 4);
        check("ça va", Ucs2, 1, 5, 5);
        check("non\u{00A0}breaking", Ucs2, 1, 12, 12);
        check("tab\there", Ucs2, 1, 8, 8);
        check("smart “quotes”", Ucs2, 1, 14, 14);
        check("👍", Ucs2, 1, 2, 1);
        check("Ok 👍", Ucs2, 1, 5, 4);
    }

    #[test]
    fn gsm7_segment_boundaries() {
        use Encoding::Gsm7;
        check(&"a".repeat(160), Gsm7, 1, 160, 160);
        check(&"a".repeat(161), Gsm7, 2, 161, 161);
        check(&"a".repeat(306), Gsm7, 2, 306, 306);
        check(&"a".repeat(307), Gsm7, 3, 307, 307);
        check(&"a".repeat(1530), Gsm7, 10, 1530, 1530);
        check(&"€".repeat(80), Gsm7, 1, 160, 80);
        check(&"€".repeat(81), Gsm7, 2, 162, 81);
        // 159 + 2 septets: over 160, so multi-part.
        check(&format!("{}€", "a".repeat(159)), Gsm7, 2, 161, 160);
        // 306 septets would fit two parts, but the escape pair cannot
        // straddle the first boundary: the € opens part two.
        let straddling = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        check(&straddling, Gsm7, 3, 306, 305);
        let fitting = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        check(&fitting, Gsm7, 2, 306, 305);
    }

    #[test]
    fn ucs2_segment_boundaries() {
        use Encoding::Ucs2;
        check(&"王".repeat(70), Ucs2, 1, 70, 70);
        check(&"王".repeat(71), Ucs2, 2, 71, 71);
        check(&"王".repeat(134), Ucs2, 2, 134, 134);
        check(&"王".repeat(135), Ucs2, 3, 135, 135);
        check(&"😀".repeat(35), Ucs2, 1, 70, 35);
        check(&"😀".repeat(36), Ucs2, 2, 72, 36);
        // 134 units would fit two parts, but a surrogate pair cannot be split.
        let straddling = format!("王王{}", "😀".repeat(66));
        check(&straddling, Ucs2, 3, 134, 68);
        // One non-GSM character turns a long GSM text into UCS-2.
        check(&format!("{}ë", "a".repeat(150)), Ucs2, 3, 151, 151);
    }

    #[test]
    fn limits() {
        #[track_caller]
        fn check_limit(body: &str, max_chars: u32, over: bool) {
            let info = analyse(body);
            assert_eq!(info.max_chars(), max_chars, "body of {} chars", info.chars);
            assert_eq!(info.over_limit(), over, "body of {} chars", info.chars);
        }
        check_limit("", SMS_MAX_GSM7_CHARS, false);
        check_limit(&"a".repeat(1600), SMS_MAX_GSM7_CHARS, false);
        check_limit(&"a".repeat(1601), SMS_MAX_GSM7_CHARS, true);
        check_limit(&"€".repeat(1600), SMS_MAX_GSM7_CHARS, false);
        check_limit(&"王".repeat(700), SMS_MAX_UCS2_CHARS, false);
        check_limit(&"王".repeat(701), SMS_MAX_UCS2_CHARS, true);
        assert!(analyse("").is_empty());
        assert!(!analyse(" ").is_empty());
    }

    #[test]
    fn every_gsm7_character_is_recognised() {
        // The basic set as printed in GSM 03.38, ESC (0x1B) left out.
        let basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
        assert_eq!(basic.chars().count(), 127);
        for character in basic.chars() {
            assert_eq!(gsm7_septets(character), Some(1), "{character:?}");
        }
        for character in "\u{000C}^{}\\[~]|€".chars() {
            assert_eq!(gsm7_septets(character), Some(2), "{character:?}");
        }
        for character in "\u{001B}\t`çÀÁÂÃÈÊËÍÎÏÓÔÕÚÛâãêëíîïóôõúûÿŁ‘’“”…–—·°©®™¢".chars()
        {
            assert_eq!(gsm7_septets(character), None, "{character:?}");
        }
    }

    #[test]
    fn encoding_names() {
        #[track_caller]
        fn check_name(raw: &str, expected: Result<Encoding, &str>) {
            let actual = raw.parse::<Encoding>().map_err(|error| error.to_string());
            assert_eq!(actual, expected.map_err(str::to_owned), "input {raw:?}");
        }
        check_name("gsm7", Ok(Encoding::Gsm7));
        check_name("GSM-7", Ok(Encoding::Gsm7));
        check_name(" ucs2 ", Ok(Encoding::Ucs2));
        check_name("UCS-2", Ok(Encoding::Ucs2));
        check_name(
            "utf8",
            Err("unknown encoding \"utf8\": expected gsm7 or ucs2"),
        );
        check_name("", Err("unknown encoding \"\": expected gsm7 or ucs2"));
        for encoding in [Encoding::Gsm7, Encoding::Ucs2] {
            assert_eq!(encoding.as_str().parse::<Encoding>(), Ok(encoding));
            assert_eq!(encoding.to_string(), encoding.as_str());
        }
    }
}
