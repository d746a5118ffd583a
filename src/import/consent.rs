//! Consent: `--require COLUMN=VALUE` sends only to rows whose column holds
//! that value, compared ignoring case and surrounding spaces; every other
//! row is `suppressed` with a reason naming the column. A CRM export with an
//! `SMS Opt In` column is then safe to load as it is.

use std::fmt;
use std::str::FromStr;

/// One `--require COLUMN=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub column: String,
    pub value: String,
}

impl FromStr for Requirement {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let refuse = || {
            format!(
                "--require {raw:?}: write COLUMN=VALUE, e.g. --require \"SMS Opt In=yes\" \
                 (rows whose column does not hold the value are not texted)"
            )
        };
        let (column, value) = raw.split_once('=').ok_or_else(refuse)?;
        let (column, value) = (column.trim(), value.trim());
        if column.is_empty() || value.is_empty() {
            return Err(refuse());
        }
        Ok(Requirement {
            column: column.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.column, self.value)
    }
}

/// The requirements as a campaign stores them, to compare on a resume: one
/// `column=value` per line, in the order given.
pub fn stored_form(requirements: &[Requirement]) -> String {
    requirements
        .iter()
        .map(Requirement::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A requirement tied to the column of the header it reads.
#[derive(Debug, Clone)]
pub struct BoundRequirement {
    index: usize,
    column: String,
    value: String,
}

impl BoundRequirement {
    pub fn new(requirement: &Requirement, index: usize) -> Self {
        BoundRequirement {
            index,
            column: requirement.column.clone(),
            value: requirement.value.clone(),
        }
    }

    /// Why `record` may not be texted, if it may not.
    pub fn refusal(&self, record: &csv::StringRecord) -> Option<String> {
        let cell = record.get(self.index).unwrap_or_default().trim();
        if cell.to_lowercase() == self.value.to_lowercase() {
            return None;
        }
        Some(if cell.is_empty() {
            format!(
                "no consent: column {:?} is empty, --require wants {:?}",
                self.column, self.value
            )
        } else {
            format!(
                "no consent: column {:?} is {cell:?}, --require wants {:?}",
                self.column, self.value
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_column_equals_value() {
        let parsed: Requirement = " SMS Opt In = Yes ".parse().expect("parses");
        assert_eq!(parsed.column, "SMS Opt In");
        assert_eq!(parsed.value, "Yes");
        assert_eq!(parsed.to_string(), "SMS Opt In=Yes");
        for bad in ["opt_in", "=yes", "opt_in=", " = "] {
            let error = bad.parse::<Requirement>().expect_err(bad);
            assert!(error.contains("COLUMN=VALUE"), "{error}");
        }
    }

    #[test]
    fn a_row_passes_when_its_cell_holds_the_value_ignoring_case_and_spaces() {
        let requirement = BoundRequirement::new(&"opt_in=Yes".parse().expect("parses"), 1);
        let row = |cell: &str| csv::StringRecord::from(vec!["+14155550101", cell]);
        assert_eq!(requirement.refusal(&row("yes")), None);
        assert_eq!(requirement.refusal(&row("  YES ")), None);
        let no = requirement.refusal(&row("No")).expect("refused");
        assert!(no.contains("\"opt_in\"") && no.contains("\"No\""), "{no}");
        let empty = requirement.refusal(&row("")).expect("refused");
        assert!(empty.contains("is empty"), "{empty}");
        // A short row has no cell: no consent either.
        let short = csv::StringRecord::from(vec!["+14155550101"]);
        assert!(requirement.refusal(&short).is_some());
    }
}
