//! `bpsms check` and `send --dry-run`: reads a CSV exactly as an import
//! would, into a scratch database that is thrown away, and shows what would
//! be sent: the first rendered messages with their encoding and segments,
//! the rows that would not be sent and why, and the totals. Nothing is sent
//! and the campaign database is not touched.

use std::fmt;

use anyhow::anyhow;

use super::exit::{Failure, Outcome};
use super::{import_failure, import_spec};
use crate::cli::SuppressArgs;
use crate::config::{Config, Content};
use crate::domain::ids::CampaignName;
use crate::domain::phone::E164;
use crate::domain::state::MessageState;
use crate::import::{self, ImportError, ImportReport, ImportSpec};
use crate::store::{SampleMessage, Store};

pub(super) async fn run(
    config: &Config,
    content: &Content,
    suppress: &SuppressArgs,
    preview: usize,
) -> Result<Outcome, Failure> {
    if content.csv.is_none() {
        return Err(Failure::usage(anyhow!(
            "pass --csv FILE: the recipients file to check (a campaign already imported is \
             shown by `bpsms status --campaign NAME`)"
        )));
    }
    let settings = config
        .run_settings(&Default::default(), None)
        .map_err(Failure::usage)?;
    let scratch = CampaignName::parse("check").map_err(Failure::runtime)?;
    let spec = import_spec(&scratch, content, suppress, content.from.clone(), &settings)?;
    let report = check(&spec, preview).await.map_err(import_failure)?;
    crate::out!("{report}");
    Ok(Outcome::Done)
}

/// How many rows that will not be sent are listed.
const PROBLEM_ROWS_SHOWN: i64 = 10;
/// How much of a body the preview shows, in characters.
const BODY_SHOWN_CHARS: usize = 320;

/// What a check found.
struct CheckReport {
    file: String,
    import: ImportReport,
    segments: i64,
    preview: Vec<SampleMessage>,
    problems: Vec<SampleMessage>,
}

/// Checks `spec`'s file, previewing the first `preview` messages.
async fn check(spec: &ImportSpec, preview: usize) -> Result<CheckReport, ImportError> {
    let scratch = tempfile::tempdir().map_err(|source| ImportError::Open {
        path: std::env::temp_dir(),
        source,
    })?;
    let store = Store::open(&scratch.path().join("check.db")).await?;
    let import = import::import(&store, spec, 0).await?;
    let id = import.campaign_id;
    let report = CheckReport {
        file: spec.csv_path.display().to_string(),
        segments: store.segments_in_state(id, MessageState::Pending).await?,
        preview: store
            .sample_messages(
                id,
                &[MessageState::Pending],
                i64::try_from(preview).unwrap_or(i64::MAX),
            )
            .await?,
        problems: store
            .sample_messages(
                id,
                &[
                    MessageState::Invalid,
                    MessageState::Duplicate,
                    MessageState::Suppressed,
                ],
                PROBLEM_ROWS_SHOWN,
            )
            .await?,
        import,
    };
    store.close().await;
    Ok(report)
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.import;
        writeln!(f, "Checked {}: {} rows", self.file, r.n_rows)?;
        writeln!(
            f,
            "  to send     {:>9} messages ({} MMS), {} SMS segments",
            r.n_pending, r.n_mms, self.segments
        )?;
        writeln!(f, "  invalid     {:>9}", r.n_invalid)?;
        writeln!(f, "  duplicate   {:>9}", r.n_duplicate)?;
        writeln!(f, "  suppressed  {:>9}", r.n_suppressed)?;
        if r.n_empty_placeholder > 0 {
            let rows: Vec<String> = r
                .empty_placeholder_rows
                .iter()
                .map(i64::to_string)
                .collect();
            let more = if r.n_empty_placeholder > rows.len() as i64 {
                ", …"
            } else {
                ""
            };
            writeln!(
                f,
                "  warning: in {} message(s) a placeholder renders empty (rows {}{more}); \
                 give it a default, e.g. {{{{first_name|there}}}}",
                r.n_empty_placeholder,
                rows.join(", ")
            )?;
        }
        if r.n_over_length > 0 {
            writeln!(
                f,
                "  over length {:>9} (over 1600 GSM-7 or 700 UCS-2 characters; sent with a warning)",
                r.n_over_length
            )?;
        }
        if !self.preview.is_empty() {
            writeln!(f, "\nFirst messages to send:")?;
            for m in &self.preview {
                writeln!(
                    f,
                    "  row {}  {}  {}  {}, {} segment(s)",
                    m.row,
                    m.phone_e164.as_ref().map_or("", E164::as_str),
                    m.kind.as_str(),
                    m.encoding,
                    m.segments
                )?;
                writeln!(f, "    {}", shown(&m.body, BODY_SHOWN_CHARS))?;
            }
        }
        if !self.problems.is_empty() {
            let n_problems = r.n_invalid + r.n_duplicate + r.n_suppressed;
            writeln!(
                f,
                "\nRows that will not be sent ({} of {n_problems}; `bpsms export` lists all after an import):",
                self.problems.len()
            )?;
            for m in &self.problems {
                writeln!(
                    f,
                    "  row {}  {}  {}: {}",
                    m.row,
                    if m.phone.trim().is_empty() {
                        "(no number)".to_string()
                    } else {
                        shown(&m.phone, 40)
                    },
                    m.state,
                    m.reason.as_deref().unwrap_or("")
                )?;
            }
        }
        writeln!(f, "\nNothing was sent.")
    }
}

/// Text safe to print on a terminal: control characters (newlines, escape
/// sequences) written as escapes, cut at `max` characters.
fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars().take(max) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_safe_to_print() {
        assert_eq!(shown("Hi\nthere\u{1b}[31m", 100), "Hi\\nthere\\u{1b}[31m");
        assert_eq!(shown("abcdef", 3), "abc…");
    }
}
