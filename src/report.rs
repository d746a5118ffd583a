//! What people read at the end: the summary table (counts per state,
//! delivery rate, time to final state) and the per-row export in CSV or JSON.

use std::io::Write;

use crate::domain::state::MessageState;
use crate::store::{Campaign, ExportRow, Store, StoreError};

/// The exact CSV export header; scripts depend on it.
pub const EXPORT_COLUMNS: [&str; 15] = [
    "row",
    "phone",
    "phone_e164",
    "kind",
    "state",
    "reason",
    "remote_status",
    "sid",
    "error_code",
    "error_message",
    "segments",
    "encoding",
    "attempts",
    "sent_at",
    "final_at",
];

/// Rows read from the database per page while exporting.
const EXPORT_PAGE: i64 = 2000;

/// A campaign's numbers, as the summary shows them.
#[derive(Debug, Clone)]
pub struct Summary {
    pub campaign: String,
    pub n_rows: i64,
    pub counts: Vec<(MessageState, i64)>,
    /// Accepted messages still waiting for a final status.
    pub n_tracked: i64,
    /// MMS that ended at `sent`: they cannot report delivery.
    pub n_mms_sent: i64,
    pub median_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

impl Summary {
    pub async fn load(store: &Store, campaign: &Campaign) -> Result<Summary, StoreError> {
        Ok(Summary {
            campaign: campaign.name.to_string(),
            n_rows: campaign.n_rows,
            counts: store.state_counts(campaign.id).await?,
            n_tracked: store.count_tracked(campaign.id).await?,
            n_mms_sent: store.count_mms_sent(campaign.id).await?,
            median_ms: store.delivery_time_quantile(campaign.id, 0.5).await?,
            p95_ms: store.delivery_time_quantile(campaign.id, 0.95).await?,
        })
    }

    pub fn count(&self, state: MessageState) -> i64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }

    /// Messages the API accepted (they have a sid).
    pub fn accepted(&self) -> i64 {
        use MessageState::*;
        [Queued, Sent, Delivered, Failed, Expired]
            .iter()
            .map(|s| self.count(*s))
            .sum()
    }

    /// True when nothing is waiting to be sent or tracked.
    pub fn all_final(&self) -> bool {
        self.count(MessageState::Pending) == 0
            && self.count(MessageState::Sending) == 0
            && self.n_tracked == 0
    }

    /// The summary table, for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let total: i64 = self.counts.iter().map(|(_, n)| n).sum();
        out.push_str(&format!(
            "Campaign {}: {} rows\n",
            self.campaign, self.n_rows
        ));
        out.push_str(&format!(
            "  {:<12} {:>9} {:>7}\n",
            "state", "messages", "share"
        ));
        for (state, n) in &self.counts {
            out.push_str(&format!(
                "  {:<12} {:>9} {:>6.1}%\n",
                state.as_str(),
                n,
                percent(*n, total)
            ));
        }
        out.push_str(&format!("  {:<12} {:>9}\n", "total", total));
        // MMS never report delivery, so they are left out of the rate.
        let accepted_sms = self.accepted() - self.n_mms_sent;
        let delivered = self.count(MessageState::Delivered);
        if accepted_sms > 0 {
            out.push_str(&format!(
                "Delivery rate: {:.1}% ({delivered} delivered of {accepted_sms} accepted SMS)\n",
                percent(delivered, accepted_sms),
            ));
        }
        if self.n_mms_sent > 0 {
            out.push_str(&format!(
                "MMS: {} handed to the provider (`sent` is final: the API reports no MMS delivery)\n",
                self.n_mms_sent
            ));
        }
        if let (Some(median), Some(p95)) = (self.median_ms, self.p95_ms) {
            out.push_str(&format!(
                "Send to final state: median {}, 95th percentile {}\n",
                seconds(median),
                seconds(p95)
            ));
        }
        if self.n_tracked > 0 {
            out.push_str(&format!(
                "Still tracking {} accepted message(s); run the same `bpsms send` again to follow them to a final status.\n",
                self.n_tracked
            ));
        }
        let cancelled = self.count(MessageState::Cancelled);
        if cancelled > 0 {
            out.push_str(&format!(
                "Cancelled: {cancelled} message(s) were never sent (the deadline passed, or `bpsms cancel`); \
                 `bpsms retry --state cancelled --campaign {}` queues them again.\n",
                self.campaign
            ));
        }
        let unknown = self.count(MessageState::Unknown);
        if unknown > 0 {
            out.push_str(&format!(
                "Attention: {unknown} message(s) are `unknown`: the API may or may not have sent them. \
                 Check `bpsms export --campaign {}` (state unknown) before deciding to send them again.\n",
                self.campaign
            ));
        }
        if total != self.n_rows {
            out.push_str(&format!(
                "Warning: the campaign has {total} messages for {} CSV rows\n",
                self.n_rows
            ));
        }
        out
    }
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn seconds(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Writes every row of a campaign as CSV, in row order.
pub async fn export_csv(store: &Store, campaign: &Campaign, out: impl Write) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(EXPORT_COLUMNS)?;
    let mut after = 0;
    loop {
        let page = store.export_page(campaign.id, after, EXPORT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.row;
        for row in &page {
            writer.write_record(csv_fields(row))?;
        }
    }
    writer.flush()?;
    Ok(())
}

/// Writes every row of a campaign as a JSON array, in row order.
pub async fn export_json(
    store: &Store,
    campaign: &Campaign,
    mut out: impl Write,
) -> anyhow::Result<()> {
    out.write_all(b"[")?;
    let mut after = 0;
    let mut first = true;
    loop {
        let page = store.export_page(campaign.id, after, EXPORT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.row;
        for row in &page {
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            serde_json::to_writer(&mut out, row)?;
        }
    }
    out.write_all(b"\n]\n")?;
    out.flush()?;
    Ok(())
}

fn csv_fields(row: &ExportRow) -> [String; 15] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        row.row.to_string(),
        neutralise(&row.phone),
        opt(&row.phone_e164),
        row.kind.clone(),
        row.state.clone(),
        neutralise(&opt(&row.reason)),
        opt(&row.remote_status),
        opt(&row.sid),
        neutralise(&opt(&row.error_code)),
        neutralise(&opt(&row.error_message)),
        row.segments.to_string(),
        row.encoding.clone(),
        row.attempts.to_string(),
        opt(&row.sent_at),
        opt(&row.final_at),
    ]
}

/// Keeps a spreadsheet from reading a cell as a formula (OWASP CSV
/// injection): a leading `=`, `+`, `-`, `@`, tab or carriage return gets a `'`.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(neutralise("+1 415-555-0101"), "'+1 415-555-0101");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("(415) 555-0101"), "(415) 555-0101");
        assert_eq!(neutralise(""), "");
    }

    #[test]
    fn summary_counts_and_rates() {
        let summary = Summary {
            campaign: "c".into(),
            n_rows: 10,
            counts: vec![
                (MessageState::Delivered, 6),
                (MessageState::Failed, 2),
                (MessageState::Unknown, 1),
                (MessageState::Invalid, 1),
            ],
            n_tracked: 0,
            n_mms_sent: 0,
            median_ms: Some(5_000),
            p95_ms: Some(7_500),
        };
        assert_eq!(summary.accepted(), 8);
        assert!(summary.all_final());
        let text = summary.render();
        assert!(text.contains("Delivery rate: 75.0%"), "{text}");
        assert!(text.contains("median 5.0s, 95th percentile 7.5s"), "{text}");
        assert!(text.contains("1 message(s) are `unknown`"), "{text}");
        assert!(!text.contains("Warning"), "{text}");
    }
}
