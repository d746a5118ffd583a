//! `bpsms check` and `send --dry-run`: reads a CSV exactly as an import
//! would, into a scratch database that is thrown away, and shows what would
//! be sent: the first rendered messages with their encoding and segments,
//! the rows that would not be sent and why, and the totals. Nothing is sent
//! and the campaign database is not touched.

use std::fmt;

use anyhow::anyhow;

use super::exit::{Failure, Outcome};
use super::{import_failure, import_spec};
use crate::campaign::gate_rules;
use crate::cli::RunArgs;
use crate::clock::Now;
use crate::config::{Config, Content, RunSettings};
use crate::domain::ids::CampaignName;
use crate::domain::phone::E164;
use crate::domain::state::MessageState;
use crate::gate::{resolve_zone_sets, GateRules};
use crate::import::{self, ImportError, ImportReport, ImportSpec};
use crate::schedule::estimate::{estimate_finish, Estimate, EstimateInput, PendingGroup};
use crate::store::{SampleMessage, Store};

pub(super) async fn run(
    config: &Config,
    content: &Content,
    run: &RunArgs,
    preview: usize,
) -> Result<Outcome, Failure> {
    if content.csv.is_none() {
        return Err(Failure::usage(anyhow!(
            "pass --csv FILE: the recipients file to check (a campaign already imported is \
             shown by `bpsms status --campaign NAME`)"
        )));
    }
    let settings = config
        .run_settings(run, &content.from, None)
        .map_err(Failure::usage)?;
    let scratch = CampaignName::parse("check").map_err(Failure::runtime)?;
    let spec = import_spec(&scratch, content, &run.suppress, false, &settings)?;
    let report = check(&spec, &settings, preview, Now::read())
        .await
        .map_err(import_failure)?;
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
    /// When the sends are expected to end, from the counts, the rates and
    /// the windows; `None` when the stored windows do not read.
    schedule: Option<ScheduleReport>,
}

/// The schedule part of a check: the rules, and what they make of the
/// campaign's timing.
struct ScheduleReport {
    rules: GateRules,
    windows: String,
    /// Messages per second the estimate assumes, and why.
    rate: f64,
    rate_note: String,
    now: jiff::Timestamp,
    estimate: Estimate,
}

/// Checks `spec`'s file, previewing the first `preview` messages, and
/// estimates when a send started at `now` would finish.
async fn check(
    spec: &ImportSpec,
    settings: &RunSettings,
    preview: usize,
    now: Now,
) -> Result<CheckReport, ImportError> {
    let scratch = tempfile::tempdir().map_err(|source| ImportError::Open {
        path: std::env::temp_dir(),
        source,
    })?;
    let store = Store::open(&scratch.path().join("check.db")).await?;
    let import = import::import(&store, spec, 0).await?;
    let id = import.campaign_id;
    let segments = store.segments_in_state(id, MessageState::Pending).await?;
    let report = CheckReport {
        file: spec.csv_path.display().to_string(),
        segments,
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
        schedule: match gate_rules(&settings.rules) {
            Ok(rules) => {
                let pending = (import.n_pending, segments);
                Some(estimate(&store, id, settings, rules, pending, now).await?)
            }
            Err(_) => None,
        },
        import,
    };
    store.close().await;
    Ok(report)
}

/// When the messages to send (`messages`, of `segments` parts in all)
/// would all be sent, zone set by zone set.
async fn estimate(
    store: &Store,
    campaign_id: i64,
    settings: &RunSettings,
    rules: GateRules,
    (messages, segments): (i64, i64),
    now: Now,
) -> Result<ScheduleReport, ImportError> {
    let zone_sets = resolve_zone_sets(store.zone_sets(campaign_id).await?);
    let groups = store
        .pending_by_zone_set(campaign_id)
        .await?
        .into_iter()
        .filter_map(|(id, count)| {
            let set = zone_sets.iter().find(|set| set.id == id)?;
            let zones = if set.zones.is_empty() {
                vec![rules.zone.clone()]
            } else {
                set.zones.clone()
            };
            Some(PendingGroup {
                zones,
                count: u64::try_from(count).unwrap_or(0),
            })
        })
        .collect();
    let send_rules = &settings.rules;
    let mut rate = settings.campaign.rate;
    let mut rate_note = "--rate".to_owned();
    if let Some(per_from) = send_rules.rate_per_from {
        let pool = per_from * send_rules.senders.len().max(1) as f64;
        if pool < rate {
            rate = pool;
            rate_note = format!(
                "--rate-per-from {per_from} × {} sending number(s)",
                send_rules.senders.len().max(1)
            );
        }
    }
    if send_rules.rate_unit == crate::domain::text::RateUnit::Segments
        && messages > 0
        && segments > messages
    {
        rate *= messages as f64 / segments as f64;
        rate_note.push_str(", counted in segments");
    }
    let at = now.timestamp();
    let estimate = estimate_finish(&EstimateInput {
        now: at,
        start_at: rules.start_at,
        not_after: rules.not_after,
        schedule: rules.schedule.clone(),
        rate,
        max_per_day: rules.max_per_day.map(|cap| (cap, rules.zone.clone())),
        groups,
    });
    Ok(ScheduleReport {
        windows: rules.schedule.windows.to_string(),
        rules,
        rate,
        rate_note,
        now: at,
        estimate,
    })
}

impl fmt::Display for ScheduleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let zone = &self.rules.zone;
        let local =
            |at: jiff::Timestamp| at.to_zoned(zone.clone()).strftime("%a %Y-%m-%d %H:%M:%S");
        writeln!(f, "\nSchedule (times in {}):", self.rules.zone_name)?;
        writeln!(f, "  windows     {}", self.windows)?;
        if let Some(start) = self.rules.start_at {
            writeln!(f, "  start at    {}", local(start))?;
        }
        if let Some(deadline) = self.rules.not_after {
            writeln!(f, "  not after   {}", local(deadline))?;
        }
        if let Some(cap) = self.rules.max_per_day {
            writeln!(f, "  per day     at most {cap} messages")?;
        }
        let e = &self.estimate;
        match e.last_send {
            Some(last) => writeln!(
                f,
                "  estimate    the last message is sent about {} (in {}), at {:.1} messages/s \
                 ({})",
                local(last),
                crate::clock::rounded(
                    std::time::Duration::try_from(last.duration_since(self.now))
                        .unwrap_or_default()
                ),
                self.rate,
                self.rate_note
            )?,
            None => writeln!(f, "  estimate    no message would be sent")?,
        }
        if e.gave_up() {
            writeln!(
                f,
                "  warning: about {} message(s) would still wait a year from now: raise the rate \
                 or widen the windows",
                e.unsent_at_horizon
            )?;
        }
        if e.never_open > 0 {
            writeln!(
                f,
                "  warning: {} message(s) would never be sent: their zones' windows never \
                 overlap",
                e.never_open
            )?;
        }
        if e.unsent_at_deadline > 0 {
            writeln!(
                f,
                "  warning: about {} message(s) would still wait at the deadline and be cancelled",
                e.unsent_at_deadline
            )?;
        }
        Ok(())
    }
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
        if r.n_campaign_zone > 0 {
            writeln!(
                f,
                "  no own zone {:>9} (toll-free, non-geographic, or a country with several zones: \
                 texted in the hours of --timezone{})",
                r.n_campaign_zone,
                self.schedule
                    .as_ref()
                    .map(|s| format!(", {}", s.rules.zone_name))
                    .unwrap_or_default()
            )?;
        }
        if let Some(schedule) = &self.schedule {
            write!(f, "{schedule}")?;
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
