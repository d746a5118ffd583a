//! Turning a recipients file into a stream the CSV parser can read: its
//! character encoding, its delimiter, and the one malformation the parser
//! does not report (a quote that is never closed).
//!
//! Spreadsheets save "CSV" in several dialects. Excel in much of Europe uses
//! `;`, "Unicode Text" is tab-separated UTF-16, older exports are
//! Windows-1252. UTF-8 (with or without a BOM) and Windows-1252 are read;
//! UTF-16 is recognised and refused with the way to fix it.

use std::io::{self, Read};
use std::str::FromStr;

/// How the bytes of the file encode text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FileEncoding {
    #[default]
    Utf8,
    /// Windows-1252, a superset of the printable part of Latin-1
    /// (ISO-8859-1), which is how web standards read `latin1` too.
    Windows1252,
}

impl FromStr for FileEncoding {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "utf-8" | "utf8" => Ok(FileEncoding::Utf8),
            "windows-1252" | "cp1252" | "latin1" | "latin-1" | "iso-8859-1" => {
                Ok(FileEncoding::Windows1252)
            }
            _ => Err(format!(
                "unknown encoding {raw:?}; use utf-8 (the default) or windows-1252 (also read as latin1)"
            )),
        }
    }
}

/// Reads `--delimiter`: one ASCII character, or the word `tab`.
pub fn parse_delimiter(raw: &str) -> Result<u8, String> {
    let delimiter = match raw {
        "tab" | "TAB" | "\\t" => b'\t',
        _ if raw.len() == 1 && raw.is_ascii() && raw != "\"" && raw != "\n" && raw != "\r" => {
            raw.as_bytes()[0]
        }
        _ => {
            return Err(format!(
                "{raw:?} is not a delimiter; give one character such as , ; | or the word tab"
            ))
        }
    };
    Ok(delimiter)
}

/// The delimiters tried when none is given.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Picks the delimiter of a file from its header line: the candidate that
/// appears most often outside quotes, `,` when none appears (a one-column
/// file). The header names columns, so it rarely contains a delimiter by
/// accident.
pub fn detect_delimiter(header_line: &[u8]) -> u8 {
    let mut counts = [0usize; CANDIDATES.len()];
    let mut quoted = false;
    for &byte in header_line {
        match byte {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some(i) = CANDIDATES.iter().position(|&c| c == byte) {
                    counts[i] += 1;
                }
            }
            _ => {}
        }
    }
    let mut best = 0;
    for i in 1..CANDIDATES.len() {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    CANDIDATES[best]
}

/// Why the bytes at the start of a file say it is not a text file bpsms reads.
pub fn refuse_unreadable_start(start: &[u8]) -> Option<String> {
    // A workbook renamed, or "saved" with a .csv name but Excel's own format:
    // its bytes would otherwise be diagnosed as UTF-16 or binary text.
    if start.starts_with(ZIP_SIGNATURE) {
        return Some(workbook_advice("an Excel workbook (.xlsx, a ZIP archive)"));
    }
    if start.starts_with(OLE2_SIGNATURE) {
        return Some(workbook_advice("an Excel 97-2003 workbook (.xls)"));
    }
    if start.starts_with(&[0xFF, 0xFE]) || start.starts_with(&[0xFE, 0xFF]) {
        return Some(utf16_advice("starts with a UTF-16 byte order mark"));
    }
    let first_line = start.split(|&b| b == b'\n').next().unwrap_or_default();
    if first_line.contains(&0) {
        return Some(utf16_advice("has NUL bytes in its header line"));
    }
    None
}

/// The first bytes of a ZIP archive, as every .xlsx (and .ods) is.
const ZIP_SIGNATURE: &[u8] = b"PK\x03\x04";
/// The first bytes of an OLE2 compound file, as every .xls is.
const OLE2_SIGNATURE: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

fn workbook_advice(what: &str) -> String {
    format!(
        "this is {what}, not a CSV: open it in Excel and save it as \"CSV UTF-8 (Comma \
         delimited)\", then import that file"
    )
}

fn utf16_advice(evidence: &str) -> String {
    format!(
        "the file {evidence}: it looks like UTF-16 (Excel's \"Unicode Text\"), which bpsms does \
         not read; save it as \"CSV UTF-8 (Comma delimited)\" and try again"
    )
}

/// Yields UTF-8 whatever the file's encoding. The hash of a campaign is
/// taken over the file's own bytes, underneath this.
pub enum Decoded<R> {
    Utf8(R),
    Windows1252(Windows1252Reader<R>),
}

impl<R: Read> Decoded<R> {
    pub fn new(inner: R, encoding: FileEncoding) -> Self {
        match encoding {
            FileEncoding::Utf8 => Decoded::Utf8(inner),
            FileEncoding::Windows1252 => Decoded::Windows1252(Windows1252Reader::new(inner)),
        }
    }

    pub fn into_inner(self) -> R {
        match self {
            Decoded::Utf8(inner) => inner,
            Decoded::Windows1252(reader) => reader.inner,
        }
    }
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Utf8(inner) => inner.read(buf),
            Decoded::Windows1252(reader) => reader.read(buf),
        }
    }
}

/// Transcodes Windows-1252 into UTF-8, byte by byte: every byte is one
/// character, so there is nothing to get wrong at buffer boundaries except
/// a character's UTF-8 bytes not fitting the caller's buffer, which
/// `pending` carries over.
pub struct Windows1252Reader<R> {
    inner: R,
    raw: Vec<u8>,
    pending: Vec<u8>,
}

impl<R: Read> Windows1252Reader<R> {
    fn new(inner: R) -> Self {
        Windows1252Reader {
            inner,
            raw: vec![0; 8192],
            pending: Vec::with_capacity(8192 * 3),
        }
    }
}

impl<R: Read> Read for Windows1252Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            let n = self.inner.read(&mut self.raw)?;
            let mut utf8 = [0u8; 4];
            for &byte in &self.raw[..n] {
                let character = windows1252_char(byte);
                self.pending
                    .extend_from_slice(character.encode_utf8(&mut utf8).as_bytes());
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

/// The characters of Windows-1252's 0x80–0x9F range, where it differs from
/// Latin-1; the five unassigned bytes map to the C1 controls, as the WHATWG
/// Encoding Standard does.
const WINDOWS_1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
];

fn windows1252_char(byte: u8) -> char {
    match byte {
        0x80..=0x9F => WINDOWS_1252_HIGH[usize::from(byte - 0x80)],
        _ => char::from(byte),
    }
}

/// Watches the CSV text on its way to the parser for a quoted field that
/// never closes. The parser reads such a field to the end of the file
/// without complaint, silently swallowing every row after it, so this
/// follows the parser's own quoting rules (RFC 4180, `""` an escaped quote)
/// and remembers the line where the open field began.
pub struct QuoteTracker<R> {
    inner: R,
    delimiter: u8,
    state: QuoteState,
    line: u64,
    opened_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl<R: Read> QuoteTracker<R> {
    pub fn new(inner: R, delimiter: u8) -> Self {
        QuoteTracker {
            inner,
            delimiter,
            state: QuoteState::FieldStart,
            line: 1,
            opened_at: 1,
        }
    }

    /// At the end of the input: the line where a quoted field opened that
    /// never closed, if any.
    pub fn unclosed(&self) -> Option<u64> {
        (self.state == QuoteState::Quoted).then_some(self.opened_at)
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn observe(&mut self, bytes: &[u8]) {
        use QuoteState::*;
        for &byte in bytes {
            let at_boundary = byte == self.delimiter || byte == b'\n' || byte == b'\r';
            self.state = match self.state {
                FieldStart | Unquoted if at_boundary => FieldStart,
                FieldStart if byte == b'"' => {
                    self.opened_at = self.line;
                    Quoted
                }
                FieldStart | Unquoted => Unquoted,
                Quoted if byte == b'"' => QuoteInQuoted,
                Quoted => Quoted,
                QuoteInQuoted if byte == b'"' => Quoted,
                QuoteInQuoted if at_boundary => FieldStart,
                QuoteInQuoted => Unquoted,
            };
            if byte == b'\n' {
                self.line += 1;
            }
        }
    }
}

impl<R: Read> Read for QuoteTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_delimiter_of_the_header_line() {
        assert_eq!(detect_delimiter(b"phone,first_name,city\n1;2;3"), b',');
        assert_eq!(detect_delimiter(b"phone;first_name;city\r\n"), b';');
        assert_eq!(detect_delimiter(b"phone\tfirst_name\n"), b'\t');
        assert_eq!(detect_delimiter(b"phone|name\n"), b'|');
        assert_eq!(detect_delimiter(b"\"a;b\",c,d\n"), b',');
        assert_eq!(detect_delimiter(b"phone\n"), b',');
    }

    #[test]
    fn reads_delimiter_flags() {
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("\"").is_err());
        assert!(parse_delimiter("é").is_err());
    }

    #[test]
    fn transcodes_windows_1252() {
        let mut decoded = String::new();
        Decoded::new(&b"Jos\xe9 \x93hi\x94 \x80 5"[..], FileEncoding::Windows1252)
            .read_to_string(&mut decoded)
            .expect("decodes");
        assert_eq!(decoded, "José “hi” € 5");
        assert_eq!("latin1".parse(), Ok(FileEncoding::Windows1252));
        assert!("klingon".parse::<FileEncoding>().is_err());
    }

    #[test]
    fn transcodes_into_small_buffers() {
        let mut reader = Decoded::new(&b"\xe9\x80"[..], FileEncoding::Windows1252);
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while reader.read(&mut byte).expect("reads") == 1 {
            out.push(byte[0]);
        }
        assert_eq!(String::from_utf8(out).expect("utf-8"), "é€");
    }

    #[test]
    fn refuses_utf16() {
        assert!(refuse_unreadable_start(b"\xff\xfep\0h\0").is_some());
        assert!(refuse_unreadable_start(b"p\0h\0o\0").is_some());
        assert!(refuse_unreadable_start(b"phone\nx\0y").is_none());
        assert!(refuse_unreadable_start(b"\xef\xbb\xbfphone\n").is_none());
    }

    #[test]
    fn refuses_workbooks() {
        let xlsx = refuse_unreadable_start(b"PK\x03\x04\x14\0\x06\0").unwrap_or_default();
        assert!(
            xlsx.contains("Excel workbook") && xlsx.contains("CSV UTF-8"),
            "{xlsx}"
        );
        let xls = refuse_unreadable_start(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0])
            .unwrap_or_default();
        assert!(xls.contains(".xls") && xls.contains("CSV UTF-8"), "{xls}");
        // "PK" alone is a fine start for a header.
        assert!(refuse_unreadable_start(b"PK,phone\n1,+14155550101\n").is_none());
    }

    #[test]
    fn finds_a_quote_that_never_closes() {
        let scan = |text: &str| {
            let mut tracker = QuoteTracker::new(text.as_bytes(), b',');
            io::copy(&mut tracker, &mut io::sink()).expect("reads");
            tracker.unclosed()
        };
        assert_eq!(scan("h\n1,x\n1,\"Carol\n2,Bob\n3,Dan\n"), Some(3));
        assert_eq!(scan("1,\"two\nlines\",x\n2,\"open\n"), Some(3));
        assert_eq!(scan("1,\"closed \"\"quote\"\"\"\n"), None);
        assert_eq!(scan("1,5\" screen,x\n"), None);
        assert_eq!(scan("1,\"a\"b,c\n"), None);
        assert_eq!(scan(""), None);
    }
}
