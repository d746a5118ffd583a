//! The records the store reads and writes, decoded from rows into domain types.

use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{parse_column, Result, StoreError};
use crate::domain::ids::{CampaignName, MessageSid};
use crate::domain::phone::E164;
use crate::domain::state::{AmbiguousPolicy, MessageKind, MessageState};
use crate::domain::text::RateUnit;

/// The settings a run uses and stores for the next run.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignSettings {
    /// Messages per second.
    pub rate: f64,
    /// Most requests in flight at once.
    pub concurrency: u32,
    /// Wait between an accepted send and its first Get Message.
    pub poll_delay: Duration,
    /// How long after its accepted send a message is tracked.
    pub track_for: Duration,
    pub on_ambiguous: AmbiguousPolicy,
}

/// When and from which numbers a campaign sends, as stored. Like
/// [`CampaignSettings`], a flag on a later run changes it. The values were
/// validated before they were stored (`crate::config`); the store keeps
/// windows and zones as text, which `crate::schedule` reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SendRules {
    /// `--window`, in the form `SendWindows::to_stored` writes; empty:
    /// always open.
    pub windows: String,
    /// `--timezone`: an IANA name; empty (a campaign made before it
    /// existed): the machine's zone.
    pub timezone: String,
    /// `--stop-before`: every window closes this much earlier.
    pub stop_before: Duration,
    /// `--start-at` and `--not-after`, Unix milliseconds.
    pub start_at: Option<i64>,
    pub not_after: Option<i64>,
    /// `--from`: the sender pool, in the order given; empty when every row
    /// names its sender in a `from` column.
    pub senders: Vec<E164>,
    /// `--rate-per-from`: the ceiling of each sending number.
    pub rate_per_from: Option<f64>,
    /// `--rate-unit`: what the rates count.
    pub rate_unit: RateUnit,
    /// `--max-per-day`: claims per calendar day of `timezone`.
    pub max_per_day: Option<u64>,
}

/// A campaign as stored.
#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: i64,
    pub name: CampaignName,
    pub csv_path: String,
    pub csv_sha256: String,
    pub body_template: Option<String>,
    pub default_region: String,
    pub phone_column: String,
    /// `--require` rules, one `column=value` per line; empty: none.
    pub requirements: String,
    pub settings: CampaignSettings,
    pub rules: SendRules,
    pub n_rows: i64,
    pub created_at: i64,
}

/// What an import writes about a new campaign.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: CampaignName,
    pub csv_path: String,
    pub csv_sha256: String,
    pub body_template: Option<String>,
    pub default_region: String,
    pub phone_column: String,
    /// `--require` rules, one `column=value` per line; empty: none.
    pub requirements: String,
    pub settings: CampaignSettings,
    pub rules: SendRules,
}

/// One imported CSV row.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub row_number: i64,
    pub phone_raw: String,
    pub phone_e164: Option<E164>,
    pub kind: MessageKind,
    pub body: String,
    /// JSON array of media URLs, for an MMS.
    pub media_urls: Option<String>,
    pub segments: u32,
    pub encoding: &'static str,
    pub state: MessageState,
    pub reason: Option<String>,
    /// Longer than providers usually accept; sent anyway, reported at import.
    pub over_length: bool,
    /// A placeholder without a default rendered empty; `check` warns of it.
    pub empty_placeholder: bool,
    /// The zone(s) the recipient is texted in: IANA names, sorted, joined
    /// by spaces; empty for the campaign's own zone.
    pub zones: String,
    /// The sender the row's `from` column names; `None`: the pool's pick.
    pub from_number: Option<E164>,
}

/// The process running a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// Unique per process start: host, pid and start time.
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

impl Runner {
    pub(super) fn from_row(row: &SqliteRow) -> Result<Runner> {
        let pid: i64 = row.try_get("pid")?;
        Ok(Runner {
            owner: row.try_get("owner")?,
            host: row.try_get("host")?,
            pid: u32::try_from(pid).map_err(|_| StoreError::Corrupt(format!("pid {pid}")))?,
            started_at: row.try_get("started_at")?,
            heartbeat_at: row.try_get("heartbeat_at")?,
        })
    }
}

/// A message claimed for sending (now in state `sending`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedMessage {
    pub message_id: i64,
    pub row_number: i64,
    pub phone_e164: E164,
    pub kind: MessageKind,
    pub body: String,
    pub media_urls: Vec<String>,
    /// Send attempts, this one included.
    pub attempts: i64,
    /// Its zone set (see [`crate::store::ZoneSet`]).
    pub zone_set: i64,
    /// The sender its row named; `None`: the pool's pick.
    pub from_number: Option<E164>,
    pub segments: u32,
}

/// A message whose next Get Message is due.
#[derive(Debug, Clone)]
pub struct DueMessage {
    pub message_id: i64,
    pub sid: MessageSid,
    pub kind: MessageKind,
    pub state: MessageState,
    pub polls: i64,
    pub track_until: i64,
}

/// One line of an export: one CSV data row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportRow {
    pub row: i64,
    pub phone: String,
    pub phone_e164: Option<String>,
    pub kind: String,
    pub state: String,
    pub reason: Option<String>,
    pub remote_status: Option<String>,
    pub sid: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub segments: i64,
    pub encoding: String,
    pub attempts: i64,
    pub sent_at: Option<String>,
    pub final_at: Option<String>,
}

/// A message as a check previews it.
#[derive(Debug, Clone)]
pub struct SampleMessage {
    pub row: i64,
    pub phone: String,
    pub phone_e164: Option<E164>,
    pub kind: MessageKind,
    pub state: MessageState,
    pub reason: Option<String>,
    pub body: String,
    pub segments: i64,
    pub encoding: String,
}

impl SampleMessage {
    pub(super) fn from_row(row: &SqliteRow) -> Result<SampleMessage> {
        let row_number: i64 = row.try_get("row_number")?;
        let phone_e164: Option<String> = row.try_get("phone_e164")?;
        Ok(SampleMessage {
            row: row_number,
            phone: row.try_get("phone_raw")?,
            phone_e164: match phone_e164 {
                Some(stored) => Some(E164::from_stored(&stored).ok_or_else(|| {
                    StoreError::Corrupt(format!("row {row_number}: number {stored:?}"))
                })?),
                None => None,
            },
            kind: parse_column(row, "kind")?,
            state: parse_column(row, "state")?,
            reason: row.try_get("reason")?,
            body: row.try_get("body")?,
            segments: row.try_get("segments")?,
            encoding: row.try_get("encoding")?,
        })
    }
}

impl Campaign {
    pub(super) fn from_row(row: &SqliteRow) -> Result<Campaign> {
        let id: i64 = row.try_get("id")?;
        let concurrency: i64 = row.try_get("concurrency")?;
        Ok(Campaign {
            id,
            name: CampaignName::parse(row.try_get("name")?)
                .map_err(|e| StoreError::Corrupt(format!("campaign {id}: {e}")))?,
            csv_path: row.try_get("csv_path")?,
            csv_sha256: row.try_get("csv_sha256")?,
            body_template: row.try_get("body_template")?,
            default_region: row.try_get("default_region")?,
            phone_column: row.try_get("phone_column")?,
            requirements: row.try_get("requirements")?,
            settings: CampaignSettings {
                rate: row.try_get("rate")?,
                concurrency: u32::try_from(concurrency)
                    .map_err(|_| StoreError::Corrupt(format!("concurrency {concurrency}")))?,
                poll_delay: ms_duration(row.try_get("poll_delay_ms")?),
                track_for: ms_duration(row.try_get("track_for_ms")?),
                on_ambiguous: parse_column(row, "on_ambiguous")?,
            },
            rules: SendRules::from_row(id, row)?,
            n_rows: row.try_get("n_rows")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

impl SendRules {
    fn from_row(campaign_id: i64, row: &SqliteRow) -> Result<SendRules> {
        let pool: String = row.try_get("from_number")?;
        let senders = pool
            .split(',')
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                E164::from_stored(raw).ok_or_else(|| {
                    StoreError::Corrupt(format!("campaign {campaign_id}: sender {raw:?}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let max_per_day: Option<i64> = row.try_get("max_per_day")?;
        Ok(SendRules {
            windows: row.try_get("windows")?,
            timezone: row.try_get("timezone")?,
            stop_before: ms_duration(row.try_get("stop_before_ms")?),
            start_at: row.try_get("start_at")?,
            not_after: row.try_get("not_after")?,
            senders,
            rate_per_from: row.try_get("rate_per_from")?,
            rate_unit: parse_column(row, "rate_unit")?,
            max_per_day: max_per_day.and_then(|n| u64::try_from(n).ok()),
        })
    }

    /// The sender pool as the `from_number` column holds it.
    pub(super) fn stored_senders(&self) -> String {
        let numbers: Vec<&str> = self.senders.iter().map(E164::as_str).collect();
        numbers.join(",")
    }
}

/// A claimed message as the claim's JSON array carries it: id, row number,
/// number, kind, body, media (a JSON array, or null), attempts, zone set,
/// the row's sender (or null), segments.
pub(super) type ClaimedJson = (
    i64,
    i64,
    Option<String>,
    String,
    String,
    Option<String>,
    i64,
    i64,
    Option<String>,
    u32,
);

impl ClaimedMessage {
    pub(super) fn from_json(
        (message_id, row_number, phone, kind, body, media, attempts, zone_set, from, segments): ClaimedJson,
    ) -> Result<ClaimedMessage> {
        let media_urls = match media {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| StoreError::Corrupt(format!("media of message {message_id}: {e}")))?,
            None => Vec::new(),
        };
        Ok(ClaimedMessage {
            message_id,
            row_number,
            phone_e164: phone
                .as_deref()
                .and_then(E164::from_stored)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "message {message_id} to send has no E.164 number but {phone:?}"
                    ))
                })?,
            kind: kind
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("kind of message {message_id}: {e}")))?,
            body,
            media_urls,
            attempts,
            zone_set,
            from_number: match from {
                Some(raw) => Some(E164::from_stored(&raw).ok_or_else(|| {
                    StoreError::Corrupt(format!("message {message_id}: sender {raw:?}"))
                })?),
                None => None,
            },
            segments,
        })
    }
}

impl DueMessage {
    pub(super) fn from_row(row: &SqliteRow) -> Result<DueMessage> {
        let message_id: i64 = row.try_get("id")?;
        let sid: Option<String> = row.try_get("sid")?;
        Ok(DueMessage {
            message_id,
            sid: sid
                .as_deref()
                .map(MessageSid::parse)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("tracked message {message_id} has no sid"))
                })?
                .map_err(|e| StoreError::Corrupt(format!("message {message_id}: {e}")))?,
            kind: parse_column(row, "kind")?,
            state: parse_column(row, "state")?,
            polls: row.try_get("polls")?,
            track_until: row.try_get::<Option<i64>, _>("track_until")?.unwrap_or(0),
        })
    }
}

impl ExportRow {
    pub(super) fn from_row(row: &SqliteRow) -> Result<ExportRow> {
        let time = |column: &str| -> Result<Option<String>> {
            Ok(row
                .try_get::<Option<i64>, _>(column)?
                .map(crate::clock::rfc3339))
        };
        Ok(ExportRow {
            row: row.try_get("row_number")?,
            phone: row.try_get("phone_raw")?,
            phone_e164: row.try_get("phone_e164")?,
            kind: row.try_get("kind")?,
            state: row.try_get("state")?,
            reason: row.try_get("reason")?,
            remote_status: row.try_get("remote_status")?,
            sid: row.try_get("sid")?,
            error_code: row.try_get("error_code")?,
            error_message: row.try_get("error_message")?,
            segments: row.try_get("segments")?,
            encoding: row.try_get("encoding")?,
            attempts: row.try_get("attempts")?,
            sent_at: time("sent_at")?,
            final_at: time("final_at")?,
        })
    }
}

fn ms_duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
