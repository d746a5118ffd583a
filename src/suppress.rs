//! The suppression list: numbers that must never be texted (people who
//! replied STOP, staff, complaints). It is a plain file, one number per
//! line in any format people write numbers in; a CSV export works too, as
//! only the first field of each line is read. Numbers are compared in E.164,
//! so `(415) 555-0101` in the list suppresses `+1 415 555 0101` in the CSV.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::domain::phone::{Region, E164};

/// How many unreadable lines a warning names.
const NAMED_BAD_LINES: usize = 5;

#[derive(Debug, thiserror::Error)]
#[error("cannot read the suppression list {path} (check the --suppress path)")]
pub struct SuppressError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The numbers of one suppression file, with the line each came from.
#[derive(Debug, Clone, Default)]
pub struct SuppressionList {
    file_name: String,
    lines: HashMap<String, u64>,
    /// Lines that hold no readable number, after a header line.
    pub unreadable: Vec<u64>,
}

impl SuppressionList {
    /// Reads the list, reading national numbers in `region`. Blank lines,
    /// `#` comments and a header line are skipped; any other line that is
    /// not a number is kept in [`SuppressionList::unreadable`], because
    /// nobody should believe a number is suppressed when it is not.
    pub fn load(path: &Path, region: &Region) -> Result<SuppressionList, SuppressError> {
        let error = |source| SuppressError {
            path: path.to_path_buf(),
            source,
        };
        let reader = BufReader::new(File::open(path).map_err(error)?);
        let mut list = SuppressionList {
            file_name: path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            ..Default::default()
        };
        let mut line_number = 0u64;
        for line in reader.split(b'\n') {
            let line = line.map_err(error)?;
            line_number += 1;
            let text = String::from_utf8_lossy(&line);
            let field = first_field(&text);
            if field.is_empty() || field.starts_with('#') {
                continue;
            }
            match E164::parse(field, region) {
                Ok(number) => {
                    list.lines
                        .entry(number.as_str().to_string())
                        .or_insert(line_number);
                }
                Err(_) if line_number == 1 && field.chars().any(char::is_alphabetic) => {}
                Err(_) => list.unreadable.push(line_number),
            }
        }
        Ok(list)
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Why `number` must not be texted, if it is on the list.
    pub fn reason(&self, number: &str) -> Option<String> {
        self.lines.get(number).map(|&line| self.reason_for(line))
    }

    /// Every number on the list (E.164) with its reason.
    pub fn entries(&self) -> impl Iterator<Item = (&str, String)> {
        self.lines
            .iter()
            .map(|(number, &line)| (number.as_str(), self.reason_for(line)))
    }

    fn reason_for(&self, line: u64) -> String {
        format!("on the suppression list ({} line {line})", self.file_name)
    }

    /// A warning about unreadable lines, naming the first few.
    pub fn warning(&self) -> Option<String> {
        if self.unreadable.is_empty() {
            return None;
        }
        let named: Vec<String> = self
            .unreadable
            .iter()
            .take(NAMED_BAD_LINES)
            .map(u64::to_string)
            .collect();
        Some(format!(
            "{} line(s) of the suppression list {} hold no valid phone number and suppress \
             nobody (line {}{}); fix them if they were meant to",
            self.unreadable.len(),
            self.file_name,
            named.join(", "),
            if self.unreadable.len() > NAMED_BAD_LINES {
                ", …"
            } else {
                ""
            }
        ))
    }
}

/// The first field of a line of a list or CSV export, without quotes.
fn first_field(line: &str) -> &str {
    let line = line.trim_start_matches('\u{feff}');
    let end = line.find([',', ';', '\t']).unwrap_or(line.len());
    line[..end].trim().trim_matches('"').trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_in_any_format() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stop.txt");
        std::fs::write(
            &path,
            "phone,name\r\n(415) 555-0101,Ann\n\n# replied STOP\n+1 415 555 0102\n\"14155550103\"\nnot a number\n",
        )
        .expect("write");
        let list = SuppressionList::load(&path, &Region::default()).expect("loads");
        assert_eq!(list.len(), 3);
        assert_eq!(
            list.reason("+14155550101").as_deref(),
            Some("on the suppression list (stop.txt line 2)")
        );
        assert!(list.reason("+14155550102").is_some());
        assert!(list.reason("+14155550199").is_none());
        assert_eq!(list.unreadable, [7]);
        assert!(list.warning().expect("warns").contains("line 7"));
    }

    #[test]
    fn a_missing_file_says_which() {
        let error = SuppressionList::load(Path::new("/nonexistent/stop.txt"), &Region::default())
            .expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/stop.txt"));
    }
}
