//! The command line as parsed, before validation: raw values only. The
//! [`crate::config`] module turns them into checked settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::import::consent::Requirement;
use crate::import::{parse_delimiter, FileEncoding};
#[cfg(feature = "simulator")]
use crate::mock::MockArgs;

/// Send a bulk SMS/MMS campaign through the Bright Pattern Contact Center
/// SMS/MMS API and track every message to its final delivery status.
///
/// Credentials come from the environment (BPSMS_CLIENT_ID,
/// BPSMS_CLIENT_SECRET, BPSMS_TENANT) or the config file, never from a flag.
#[derive(Debug, Parser)]
#[command(name = "bpsms", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// SQLite database holding campaigns and messages [default: bpsms.db].
    #[arg(long, global = true, env = "BPSMS_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The tenant, e.g. https://acme.brightpattern.com (plain http only for
    /// loopback addresses such as the simulator's).
    #[arg(long, global = true, env = "BPSMS_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// TOML file with the same keys as the flags and environment variables.
    #[arg(long, global = true, env = "BPSMS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Accept a plain http:// base URL for a host that is not loopback. The
    /// client secret and the access tokens then cross the network
    /// unencrypted: only for a network you trust end to end.
    // `=false` (or the variable set to 0) overrides `allow_insecure_http` in
    // the config file; `require_equals` keeps a following subcommand name
    // from being read as the value.
    #[arg(
        long,
        global = true,
        env = "BPSMS_ALLOW_INSECURE_HTTP",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = parse_switch
    )]
    pub allow_insecure_http: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import the CSV (for a new campaign), send, and track every message to a
    /// final state. Run it again to resume.
    Send(SendArgs),
    /// Continue a stored campaign where it stopped (same as `send` without
    /// a CSV).
    Resume(ResumeArgs),
    /// Create a campaign from a CSV without sending anything.
    Import(ImportArgs),
    /// Read a CSV as `send` would and show what would be sent, sending
    /// nothing and writing no database.
    Check(CheckArgs),
    /// Put messages in a final state back to be sent, as a new attempt.
    Retry(RetryArgs),
    /// Cancel every message of a campaign not yet sent: they become
    /// `cancelled` and are never sent (`bpsms retry --state cancelled`
    /// queues them again).
    Cancel(CancelArgs),
    /// Counts per state for one campaign, or for all.
    Status(StatusArgs),
    /// One record per CSV data row, in row order.
    Export(ExportArgs),
    /// Run the built-in BPCC API simulator.
    #[cfg(feature = "simulator")]
    MockServer(MockArgs),
    /// Send samples/recipients.csv through the built-in simulator and report.
    #[cfg(feature = "simulator")]
    Demo(DemoArgs),
}

/// What defines a campaign's content: fixed once imported.
#[derive(Debug, Clone, Args)]
pub struct CampaignArgs {
    /// Campaign name; a later run with the same name resumes it.
    #[arg(long, value_name = "NAME")]
    pub campaign: String,
    #[command(flatten)]
    pub content: ContentArgs,
}

/// The recipients file, how to read it and what to send to each row.
#[derive(Debug, Clone, Default, Args)]
pub struct ContentArgs {
    /// Recipients CSV with a header row.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Sender: a Text Out access number of the tenant, in E.164 (+16505550100).
    /// Repeat it for a pool: each recipient sticks to one number of the pool
    /// across retries, resumes and campaigns. A `from` column in the CSV
    /// chooses the sender of its row.
    #[arg(long, value_name = "E164")]
    pub from: Vec<String>,
    /// Message text with {{column}} placeholders; without it, each row's
    /// `body` column is sent.
    #[arg(long, value_name = "TEMPLATE")]
    pub body: Option<String>,
    /// Column holding the phone number [default: the first of phone, to,
    /// mobile, msisdn, phone_number].
    #[arg(long, value_name = "NAME")]
    pub phone_column: Option<String>,
    /// Region for numbers written without a country code (ISO 3166, e.g. US,
    /// GB) [default: US].
    #[arg(long, value_name = "CC")]
    pub default_region: Option<String>,
    /// Field separator of the CSV: one character such as , ; | or the word
    /// tab [default: detected from the header line].
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Character encoding of the CSV: utf-8 or windows-1252 (older Excel and
    /// CRM exports; also accepts latin1) [default: utf-8].
    #[arg(long, value_name = "NAME", value_parser = clap::value_parser!(FileEncoding))]
    pub encoding: Option<FileEncoding>,
    /// An SMS longer than providers usually accept (1600 GSM-7 or 700 UCS-2
    /// characters): send it with a warning, or make the row invalid
    /// [default: warn].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub over_length: Option<OverLength>,
    /// Consent: text only rows whose COLUMN holds VALUE (ignoring case and
    /// spaces), e.g. --require "SMS Opt In=yes"; other rows are suppressed.
    /// Repeatable: every one must hold.
    #[arg(long = "require", value_name = "COLUMN=VALUE")]
    pub require: Vec<Requirement>,
    /// Column holding each recipient's time zone, an IANA name such as
    /// America/Chicago [default: timezone]. Rows without one use their
    /// number's zone, else --timezone.
    #[arg(long, value_name = "NAME")]
    pub timezone_column: Option<String>,
}

/// When and how fast a campaign sends. Stored with the campaign: a flag on
/// a later run changes it, like --rate.
#[derive(Debug, Clone, Default, Args)]
pub struct ScheduleArgs {
    /// Hours in which a recipient may be texted, in the recipient's own
    /// time: HH:MM-HH:MM every day, or DAYS=HH:MM-HH:MM with days such as
    /// mon-fri or sat,sun. Repeatable; days not named get no texts; a window
    /// may cross midnight (22:00-02:00). `always` removes the windows
    /// [default: always].
    #[arg(long = "window", value_name = "[DAYS=]HH:MM-HH:MM")]
    pub windows: Vec<String>,
    /// Time zone (IANA, e.g. America/New_York) for recipients whose own zone
    /// is not known, for --start-at and --not-after written without an
    /// offset, and for the days of --max-per-day [default: the machine's].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Close every window this much earlier (30m), so that replies reach
    /// the chat service while it is open [default: 0s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub stop_before: Option<Duration>,
    /// Send nothing before this time: RFC 3339 (2026-12-01T09:00:00-05:00)
    /// or a local date and time in --timezone (2026-12-01 09:00). `now`
    /// removes it.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Send nothing at or after this time, ever, even on a resume days
    /// later; what is left becomes `cancelled`. Same forms as --start-at;
    /// `never` removes it.
    #[arg(long, value_name = "TIME")]
    pub not_after: Option<String>,
    /// The ceiling of each sending number, beside --rate for the campaign.
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub rate_per_from: Option<f64>,
    /// What the rates count: messages, or segments as carriers do (a
    /// three-part SMS counts three) [default: messages].
    #[arg(long, value_enum, value_name = "UNIT")]
    pub rate_unit: Option<RateUnitArg>,
    /// At most N messages per calendar day of --timezone; the rest wait for
    /// the next day.
    #[arg(long, value_name = "N")]
    pub max_per_day: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RateUnitArg {
    Messages,
    Segments,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OverLength {
    Warn,
    Reject,
}

/// Numbers that must never be texted.
#[derive(Debug, Clone, Default, Args)]
pub struct SuppressArgs {
    /// File of numbers never to text (one per line, any format, e.g. people
    /// who replied STOP); matching rows become `suppressed`. On a resume,
    /// matching messages not yet sent are suppressed.
    #[arg(long = "suppress", value_name = "FILE")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub campaign: CampaignArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Only check the CSV and show what would be sent (as `bpsms check`).
    #[arg(long)]
    pub dry_run: bool,
}

/// Settings that may change between runs of one campaign.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub suppress: SuppressArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Messages per second, never exceeded [default: 10].
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub rate: Option<f64>,
    /// Most Send requests in flight at once [default: 4].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u32>,
    /// Wait after an accepted send before the first Get Message (500ms, 15s…)
    /// [default: 15s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub poll_delay: Option<Duration>,
    /// Get Message calls per second [default: the send rate].
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub poll_rate: Option<f64>,
    /// How long after its accepted send a message is tracked before it
    /// becomes `expired` [default: 4h].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub track_for: Option<Duration>,
    /// What to do when it is unclear whether the API accepted a message:
    /// hold it as `unknown` (never texts anyone twice) or retry it (at least
    /// once) [default: hold].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub on_ambiguous: Option<OnAmbiguous>,
    /// Time allowed to establish a connection [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Time allowed for a whole request [default: 30s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Send attempts of one message after which an ambiguous answer leaves
    /// it `unknown`, even under --on-ambiguous retry [default: 5].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Stop the run when this share of the recent sends failed (0.5 = half)
    /// [default: 0.5].
    #[arg(long, allow_negative_numbers = true, value_name = "RATIO")]
    pub breaker_threshold: Option<f64>,
    /// How many recent sends the breaker looks at [default: 100].
    #[arg(long, value_name = "N")]
    pub breaker_window: Option<u32>,
    /// After Ctrl-C or SIGTERM, how long requests in flight may take to
    /// finish before the process leaves anyway [default: 10s].
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnAmbiguous {
    Hold,
    Retry,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    #[arg(long, value_name = "NAME")]
    pub campaign: String,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RetryArgs {
    #[arg(long, value_name = "NAME")]
    pub campaign: String,
    /// Which messages to send again.
    #[arg(long, value_enum)]
    pub state: RetryState,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CancelArgs {
    #[arg(long, value_name = "NAME")]
    pub campaign: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// The final states an operator may send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RetryState {
    Unknown,
    Failed,
    Rejected,
    Expired,
    Cancelled,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub campaign: CampaignArgs,
    #[command(flatten)]
    pub suppress: SuppressArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub content: ContentArgs,
    #[command(flatten)]
    pub suppress: SuppressArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Messages per second, for the estimate of when the campaign finishes
    /// [default: 10].
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub rate: Option<f64>,
    /// How many of the messages to be sent to show.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub preview: usize,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this campaign.
    #[arg(long, value_name = "NAME")]
    pub campaign: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[arg(long, value_name = "NAME")]
    pub campaign: String,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

#[cfg(feature = "simulator")]
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where to write the report.
    #[arg(long, value_name = "FILE", default_value = "bpsms-demo-report.csv")]
    pub out: PathBuf,
    /// Messages per second.
    #[arg(long, value_name = "N", default_value_t = 50.0)]
    pub rate: f64,
}

/// Reads a yes/no value: `true`, `yes`, `on`, `1` or `false`, `no`, `off`,
/// `0`. Empty reads as no, so that an empty variable never relaxes a check.
pub fn parse_switch(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" | "" => Ok(false),
        _ => Err("write true or false (or yes/no, on/off, 1/0)".into()),
    }
}

/// Reads `500ms`, `15s`, `4h`, `1h30m`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    humantime::parse_duration(raw.trim())
        .map_err(|e| format!("{e}; write a duration such as 500ms, 15s, 10m or 4h"))
}
