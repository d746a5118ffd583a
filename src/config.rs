//! Settings from three layers: flags override the environment, which
//! overrides the TOML config file, which overrides the defaults. Everything
//! is validated here, once, into typed values.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::api::wire::MediaKey;
use crate::api::ApiConfig;
use crate::cli::{
    parse_duration, ContentArgs, GlobalArgs, OnAmbiguous, OverLength, RateUnitArg, RunArgs,
    ScheduleArgs,
};
use crate::domain::ids::CampaignName;
use crate::domain::phone::{Region, E164};
use crate::domain::state::AmbiguousPolicy;
use crate::domain::text::RateUnit;
use crate::import::consent::Requirement;
use crate::import::SourceOptions;
use crate::schedule::window::SendWindows;
use crate::schedule::{self, deadline};
use crate::secret::SecretString;
use crate::shell::shell_word;
use crate::store::{CampaignSettings, SendRules};

pub const DEFAULT_DB: &str = "bpsms.db";
pub const DEFAULT_RATE: f64 = 10.0;
pub const DEFAULT_CONCURRENCY: u32 = 4;
pub const DEFAULT_POLL_DELAY: Duration = Duration::from_secs(15);
/// The API's default validity period (spec §4.2, `ValidityPeriod`).
pub const DEFAULT_TRACK_FOR: Duration = Duration::from_secs(4 * 3600);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A configuration problem: the run cannot start until the operator fixes it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The keys of the TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub base_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub tenant: Option<String>,
    pub db: Option<PathBuf>,
    pub rate: Option<f64>,
    pub concurrency: Option<u32>,
    pub poll_delay: Option<String>,
    pub poll_rate: Option<f64>,
    pub track_for: Option<String>,
    pub default_region: Option<String>,
    pub on_ambiguous: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub breaker_window: Option<u32>,
    pub breaker_threshold: Option<f64>,
    /// `MediaUrls` (default) or `MediaURLs` (spec §11 gap 11).
    pub media_key: Option<String>,
    /// Also send `tenant=<host>` in the token request (spec §3.2).
    pub send_tenant_field: Option<bool>,
    /// Accept plain http for a host that is not loopback.
    pub allow_insecure_http: Option<bool>,
    /// The zone of `--timezone` (IANA name).
    pub timezone: Option<String>,
}

/// The layered configuration.
pub struct Config {
    pub db: PathBuf,
    base_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    tenant: Option<String>,
    http_policy: HttpPolicy,
    /// The file's `default_region`, checked when the file is read.
    default_region: Option<Region>,
    pub file: FileConfig,
}

/// The flags that say what a campaign sends, validated: its file, sender,
/// text and how to read its numbers.
#[derive(Debug, Clone)]
pub struct Content {
    pub csv: Option<PathBuf>,
    /// `--from`: the sender pool, in the order given, without repeats.
    pub from: Vec<E164>,
    /// `--body`, when given; never blank.
    pub body: Option<String>,
    pub phone_column: Option<String>,
    /// `--default-region`, when given: a resume compares it with the region
    /// the campaign was imported with.
    pub region_flag: Option<Region>,
    /// Where numbers without a country code are read: the flag, else the
    /// config file's, else US.
    pub region: Region,
    pub source: SourceOptions,
    pub reject_over_length: bool,
    /// `--require COLUMN=VALUE`, in the order given.
    pub requirements: Vec<Requirement>,
    /// `--timezone-column`, when given.
    pub timezone_column: Option<String>,
}

/// `--campaign`, checked.
pub fn campaign_name(raw: &str) -> Result<CampaignName, ConfigError> {
    CampaignName::parse(raw).map_err(|e| ConfigError(format!("--campaign: {e}")))
}

/// Which base URLs may use plain http.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPolicy {
    /// https, or http to a loopback address (the simulator).
    RequireHttps,
    /// Also http to any host: `--allow-insecure-http`.
    AllowInsecure,
}

/// Send settings for one run, with where they came from resolved.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub campaign: CampaignSettings,
    pub rules: SendRules,
    pub poll_rate: f64,
    pub max_attempts: u32,
    pub breaker_window: u32,
    pub breaker_threshold: f64,
}

pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_BREAKER_WINDOW: u32 = 100;
pub const DEFAULT_BREAKER_THRESHOLD: f64 = 0.5;

impl Config {
    /// Reads the config file (if any) and the environment.
    pub fn load(global: &GlobalArgs) -> Result<Config, ConfigError> {
        Config::load_with(global, &|key| std::env::var(key).ok())
    }

    /// As [`Config::load`], with the environment as a function (for tests).
    pub fn load_with(
        global: &GlobalArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = match &global.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        let default_region = file
            .default_region
            .as_deref()
            .map(Region::parse)
            .transpose()
            .map_err(|e| ConfigError(format!("default_region in the config file: {e}")))?;
        Ok(Config {
            db: global
                .db
                .clone()
                .or_else(|| file.db.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
            base_url: non_empty(global.base_url.clone()).or_else(|| file.base_url.clone()),
            client_id: non_empty(env("BPSMS_CLIENT_ID")).or_else(|| file.client_id.clone()),
            client_secret: non_empty(env("BPSMS_CLIENT_SECRET"))
                .map(SecretString::new)
                .or_else(|| file.client_secret.clone()),
            tenant: non_empty(env("BPSMS_TENANT")).or_else(|| file.tenant.clone()),
            // The flag and its variable come as one value from clap.
            http_policy: match global.allow_insecure_http.or(file.allow_insecure_http) {
                Some(true) => HttpPolicy::AllowInsecure,
                Some(false) | None => HttpPolicy::RequireHttps,
            },
            default_region,
            file,
        })
    }

    /// What the API client needs; fails when the tenant or credentials are
    /// not configured.
    pub fn api(&self, run: &RunArgs) -> Result<ApiConfig, ConfigError> {
        let raw = self.base_url.as_deref().ok_or_else(|| {
            ConfigError(
                "no tenant configured; pass --base-url https://<tenant host> or set BPSMS_BASE_URL"
                    .into(),
            )
        })?;
        let base = normalise_base_url(raw, self.http_policy)?;
        if is_plain_http_to_remote(&base) {
            // On stderr, not through tracing: RUST_LOG must not silence it.
            crate::errln!("{}", insecure_http_warning(&base));
        }
        let client_id = self.client_id.clone().ok_or_else(|| {
            ConfigError(
                "no client id; set BPSMS_CLIENT_ID to the BPCC username of the API user".into(),
            )
        })?;
        let client_secret = self.client_secret.clone().ok_or_else(|| {
            ConfigError(
                "no client secret; set BPSMS_CLIENT_SECRET to the API secret generated for the \
                 user (Users & Teams > Users > API secret)"
                    .into(),
            )
        })?;
        let scope = self
            .tenant
            .clone()
            .or_else(|| base.host_str().map(str::to_string))
            .unwrap_or_default();
        let media_key = match self.file.media_key.as_deref() {
            None | Some("MediaUrls") => MediaKey::MediaUrls,
            Some("MediaURLs") => MediaKey::MediaURLs,
            Some(other) => {
                return Err(ConfigError(format!(
                    "media_key {other:?} in the config file: use MediaUrls or MediaURLs"
                )))
            }
        };
        Ok(ApiConfig {
            base_url: base.as_str().trim_end_matches('/').to_string(),
            client_id,
            client_secret,
            scope,
            send_tenant_field: self.file.send_tenant_field.unwrap_or(false),
            media_key,
            connect_timeout: timeout(
                run.connect_timeout,
                &self.file.connect_timeout,
                "connect-timeout",
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            request_timeout: timeout(
                run.request_timeout,
                &self.file.request_timeout,
                "request-timeout",
                DEFAULT_REQUEST_TIMEOUT,
            )?,
        })
    }

    /// The send settings of a run: flags first, then what the campaign stored
    /// (on resume), then the config file, then the defaults.
    pub fn run_settings(
        &self,
        run: &RunArgs,
        senders: &[E164],
        stored: Option<(&CampaignSettings, &SendRules)>,
    ) -> Result<RunSettings, ConfigError> {
        let file = &self.file;
        let (stored, stored_rules) = (stored.map(|s| s.0), stored.map(|s| s.1));
        let rate = run
            .rate
            .or(stored.map(|s| s.rate))
            .or(file.rate)
            .unwrap_or(DEFAULT_RATE);
        ensure(
            rate.is_finite() && rate > 0.0,
            format!("--rate {rate}: give a number of messages per second above 0, e.g. --rate 10"),
        )?;
        let concurrency = run
            .concurrency
            .or(stored.map(|s| s.concurrency))
            .or(file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        ensure(
            (1..=1024).contains(&concurrency),
            format!("--concurrency {concurrency}: give a number from 1 to 1024"),
        )?;
        let poll_delay = pick_duration(
            run.poll_delay.or(stored.map(|s| s.poll_delay)),
            &file.poll_delay,
            "poll_delay",
            DEFAULT_POLL_DELAY,
        )?;
        let track_for = pick_duration(
            run.track_for.or(stored.map(|s| s.track_for)),
            &file.track_for,
            "track_for",
            DEFAULT_TRACK_FOR,
        )?;
        ensure(
            !track_for.is_zero(),
            "--track-for 0s: the tracking window must be longer than zero, e.g. --track-for 4h",
        )?;
        let on_ambiguous = match run.on_ambiguous {
            Some(OnAmbiguous::Hold) => AmbiguousPolicy::Hold,
            Some(OnAmbiguous::Retry) => AmbiguousPolicy::Retry,
            None => match (stored, &file.on_ambiguous) {
                (Some(s), _) => s.on_ambiguous,
                (None, Some(raw)) => raw
                    .parse()
                    .map_err(|e| ConfigError(format!("on_ambiguous in the config file: {e}")))?,
                (None, None) => AmbiguousPolicy::Hold,
            },
        };
        let poll_rate = run.poll_rate.or(file.poll_rate).unwrap_or(rate);
        ensure(
            poll_rate.is_finite() && poll_rate > 0.0,
            format!("--poll-rate {poll_rate}: give a number of polls per second above 0"),
        )?;
        let max_attempts = run
            .max_attempts
            .or(file.max_attempts)
            .unwrap_or(DEFAULT_MAX_ATTEMPTS);
        ensure(max_attempts > 0, "--max-attempts 0: give at least 1")?;
        let breaker_window = run
            .breaker_window
            .or(file.breaker_window)
            .unwrap_or(DEFAULT_BREAKER_WINDOW);
        ensure(breaker_window > 0, "--breaker-window 0: give at least 1")?;
        let breaker_threshold = run
            .breaker_threshold
            .or(file.breaker_threshold)
            .unwrap_or(DEFAULT_BREAKER_THRESHOLD);
        ensure(breaker_threshold > 0.0 && breaker_threshold <= 1.0, format!(
                "--breaker-threshold {breaker_threshold}: give a ratio above 0 and at most 1, e.g. 0.5"
            ))?;
        let rules = self.send_rules(&run.schedule, senders, stored_rules, rate)?;
        Ok(RunSettings {
            rules,
            campaign: CampaignSettings {
                rate,
                concurrency,
                poll_delay,
                track_for,
                on_ambiguous,
            },
            poll_rate,
            max_attempts,
            breaker_window,
            breaker_threshold,
        })
    }

    /// When, from which numbers and how fast a campaign sends: flags first,
    /// then what the campaign stored, then the config file, then the
    /// defaults. Everything a flag can get wrong is refused here, before
    /// anything is stored.
    fn send_rules(
        &self,
        args: &ScheduleArgs,
        senders: &[E164],
        stored: Option<&SendRules>,
        rate: f64,
    ) -> Result<SendRules, ConfigError> {
        let windows = match args.windows.as_slice() {
            [] => stored.map(|s| s.windows.clone()).unwrap_or_default(),
            [always] if always.trim().eq_ignore_ascii_case("always") => String::new(),
            values => SendWindows::parse(values)
                .map_err(|e| ConfigError(e.to_string()))?
                .to_stored(),
        };
        let timezone = match (&args.timezone, stored, &self.file.timezone) {
            (Some(name), _, _) => {
                schedule::parse_zone(name.trim())
                    .map_err(|e| ConfigError(format!("--timezone: {e}")))?;
                name.trim().to_owned()
            }
            (None, Some(stored), _) => stored.timezone.clone(),
            (None, None, Some(name)) => {
                schedule::parse_zone(name.trim())
                    .map_err(|e| ConfigError(format!("timezone in the config file: {e}")))?;
                name.trim().to_owned()
            }
            // The machine's zone, by name, so that a resume on another
            // machine keeps it; a zone without a name stays the machine's.
            (None, None, None) => schedule::machine_zone().1,
        };
        let zone = campaign_zone(&timezone);
        let instant = |flag: &str, raw: &Option<String>, clear: &str, stored: Option<i64>| match raw
            .as_deref()
            .map(str::trim)
        {
            None => Ok(stored),
            Some(word) if word.eq_ignore_ascii_case(clear) => Ok(None),
            Some(raw) => deadline::parse_instant(raw, &zone)
                .map(|at| Some(at.as_millisecond()))
                .map_err(|e| ConfigError(format!("--{flag}: {e}"))),
        };
        let start_at = instant(
            "start-at",
            &args.start_at,
            "now",
            stored.and_then(|s| s.start_at),
        )?;
        let not_after = instant(
            "not-after",
            &args.not_after,
            "never",
            stored.and_then(|s| s.not_after),
        )?;
        if let (Some(start), Some(end)) = (start_at, not_after) {
            ensure(
                end > start,
                format!(
                    "--not-after {} is not after --start-at {}: nothing could be sent; move the \
                     deadline later or the start earlier",
                    crate::clock::rfc3339(end),
                    crate::clock::rfc3339(start)
                ),
            )?;
        }
        let rate_per_from = args.rate_per_from.or(stored.and_then(|s| s.rate_per_from));
        if let Some(per_from) = rate_per_from {
            ensure(
                per_from.is_finite() && per_from > 0.0,
                format!("--rate-per-from {per_from}: give a number per second above 0, e.g. 1"),
            )?;
            ensure(
                per_from <= rate,
                format!(
                    "--rate-per-from {per_from} is above --rate {rate}: one number can never send \
                     faster than the whole campaign; lower --rate-per-from or raise --rate"
                ),
            )?;
        }
        let max_per_day = args.max_per_day.or(stored.and_then(|s| s.max_per_day));
        ensure(
            max_per_day != Some(0),
            "--max-per-day 0: nothing could ever be sent; give at least 1",
        )?;
        Ok(SendRules {
            windows,
            timezone,
            stop_before: args
                .stop_before
                .or(stored.map(|s| s.stop_before))
                .unwrap_or_default(),
            start_at,
            not_after,
            senders: if senders.is_empty() {
                stored.map(|s| s.senders.clone()).unwrap_or_default()
            } else {
                senders.to_vec()
            },
            rate_per_from,
            rate_unit: match args.rate_unit {
                Some(RateUnitArg::Messages) => RateUnit::Messages,
                Some(RateUnitArg::Segments) => RateUnit::Segments,
                None => stored.map(|s| s.rate_unit).unwrap_or_default(),
            },
            max_per_day,
        })
    }

    /// Validates a campaign's content flags; the region falls back to the
    /// config file's, then to US.
    pub fn content(&self, args: &ContentArgs) -> Result<Content, ConfigError> {
        let mut from: Vec<E164> = Vec::with_capacity(args.from.len());
        for raw in &args.from {
            let number =
                E164::parse_sender(raw).map_err(|e| ConfigError(format!("--from {raw:?}: {e}")))?;
            if !from.contains(&number) {
                from.push(number);
            }
        }
        ensure(
            !args.body.as_deref().is_some_and(|b| b.trim().is_empty()),
            "--body is empty; give the message text, e.g. --body 'Hi {{first_name}}'",
        )?;
        let region_flag = args
            .default_region
            .as_deref()
            .map(Region::parse)
            .transpose()
            .map_err(|e| ConfigError(format!("--default-region: {e}")))?;
        Ok(Content {
            csv: args.csv.clone(),
            from,
            body: args.body.clone(),
            phone_column: args.phone_column.clone(),
            region_flag,
            region: region_flag.or(self.default_region).unwrap_or_default(),
            source: SourceOptions {
                delimiter: args.delimiter,
                encoding: args.encoding.unwrap_or_default(),
            },
            reject_over_length: args.over_length == Some(OverLength::Reject),
            requirements: args.require.clone(),
            timezone_column: args
                .timezone_column
                .as_deref()
                .map(|name| name.trim().to_owned()),
        })
    }
}

/// The zone a campaign's stored `timezone` names: the machine's when it
/// names none (a campaign made before zones existed) or one this machine
/// does not know (validated when stored, so only a database edited by hand).
pub fn campaign_zone(name: &str) -> jiff::tz::TimeZone {
    if name.is_empty() {
        return schedule::machine_zone().0;
    }
    schedule::parse_zone(name).unwrap_or_else(|_| schedule::machine_zone().0)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let cannot_read =
        |e: std::io::Error| ConfigError(format!("cannot read config file {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(cannot_read)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(cannot_read)?;
    let config: FileConfig = toml::from_str(&text)
        .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
    if config.client_secret.as_ref().is_some_and(|s| !s.is_empty()) {
        warn_if_not_private(path, &file);
    }
    Ok(config)
}

/// Warns when the config file holding the secret is open to other users.
#[cfg(unix)]
fn warn_if_not_private(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    // The mode of the file just read, not of whatever the path names now.
    // fstat of an open file does not fail in practice; if it does, the run
    // goes on without the warning rather than stopping over it.
    let Ok(metadata) = file.metadata() else {
        return;
    };
    if let Some(warning) = secret_file_mode_warning(path, metadata.permissions().mode()) {
        // On stderr, not through tracing: RUST_LOG must not silence it.
        crate::errln!("{warning}");
    }
}

/// Elsewhere the permissions are ACLs that a mode cannot describe.
#[cfg(not(unix))]
fn warn_if_not_private(_path: &Path, _file: &std::fs::File) {}

/// Permission bits that make a file holding the secret worth a warning: any
/// for group or others, as OpenSSH judges private keys. Read exposes the
/// secret; write lets another user point `base_url` at a host of theirs,
/// which then receives the secret with the next token request.
const SECRET_FILE_FORBIDDEN_BITS: u32 = 0o077;

/// The warning for a config file that holds the client secret and has
/// permission bits `mode` (as `st_mode`), or `None` when only its owner may
/// use it. Names the file, its mode and the fix; never the secret.
pub fn secret_file_mode_warning(path: &Path, mode: u32) -> Option<String> {
    let permissions = mode & 0o777;
    if permissions & SECRET_FILE_FORBIDDEN_BITS == 0 {
        return None;
    }
    Some(format!(
        "Warning: config file {} holds client_secret but has mode {permissions:03o}, so other \
         users on this machine can read or change it; make it private with: chmod 600 {}",
        path.display(),
        shell_word(&path.display().to_string())
    ))
}

/// The warning printed before any request when `--allow-insecure-http` lets
/// the client talk plain http to a host that is not loopback.
fn insecure_http_warning(url: &Url) -> String {
    format!(
        "Warning: --allow-insecure-http: {} is plain http. The client secret, every access \
         token and every message travel UNENCRYPTED: anyone on the network path can read them \
         and use the API as you. Use https unless you trust every hop to the tenant.",
        url.as_str().trim_end_matches('/')
    )
}

/// Fails with `problem` unless `valid`.
fn ensure(valid: bool, problem: impl Into<String>) -> Result<(), ConfigError> {
    if valid {
        Ok(())
    } else {
        Err(ConfigError(problem.into()))
    }
}

/// A request timeout from `--flag`, else the file's key of the same name,
/// else `default`. Zero would fail every request, so it is refused by name.
fn timeout(
    flag: Option<Duration>,
    file: &Option<String>,
    name: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let duration = pick_duration(flag, file, &name.replace('-', "_"), default)?;
    ensure(
        !duration.is_zero(),
        format!("--{name} 0s: every request would time out at once; give a duration such as 10s"),
    )?;
    Ok(duration)
}

fn pick_duration(
    flag: Option<Duration>,
    file: &Option<String>,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match (flag, file) {
        (Some(d), _) => Ok(d),
        (None, Some(raw)) => {
            parse_duration(raw).map_err(|e| ConfigError(format!("{key} in the config file: {e}")))
        }
        (None, None) => Ok(default),
    }
}

/// Accepts `acme.brightpattern.com`, `https://acme.brightpattern.com/` or
/// `http://127.0.0.1:8080`; plain http only for loopback addresses, unless
/// `policy` allows it for any host.
pub fn normalise_base_url(raw: &str, policy: HttpPolicy) -> Result<Url, ConfigError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| {
        ConfigError(format!(
            "--base-url {raw:?} is not a URL ({e}); give the tenant host, e.g. https://acme.brightpattern.com"
        ))
    })?;
    if url.query().is_some() || url.fragment().is_some() || !url.path().trim_matches('/').is_empty()
    {
        return Err(ConfigError(format!(
            "--base-url {raw:?}: give only the scheme and host (https://acme.brightpattern.com); \
             bpsms adds the API paths itself"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError(
            "--base-url must not carry credentials; use BPSMS_CLIENT_ID and BPSMS_CLIENT_SECRET"
                .into(),
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) || policy == HttpPolicy::AllowInsecure => Ok(url),
        "http" => Err(ConfigError(format!(
            "--base-url {raw:?}: plain http would send the secret unencrypted; use https \
             (http is accepted for loopback addresses such as the simulator's; for another \
             host only with --allow-insecure-http, which sends the secret in clear text)"
        ))),
        other => Err(ConfigError(format!(
            "--base-url {raw:?}: unsupported scheme {other:?}; use https"
        ))),
    }
}

fn is_plain_http_to_remote(url: &Url) -> bool {
    url.scheme() == "http" && !is_loopback(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_url(raw: &str, expected: Option<&str>) {
        check_url_with(raw, HttpPolicy::RequireHttps, expected);
    }

    #[track_caller]
    fn check_url_with(raw: &str, policy: HttpPolicy, expected: Option<&str>) {
        let got = normalise_base_url(raw, policy)
            .ok()
            .map(|u| u.as_str().trim_end_matches('/').to_string());
        assert_eq!(got.as_deref(), expected, "{raw} {policy:?}");
    }

    #[test]
    fn base_urls() {
        check_url(
            "acme.brightpattern.com",
            Some("https://acme.brightpattern.com"),
        );
        check_url(
            "https://acme.brightpattern.com/",
            Some("https://acme.brightpattern.com"),
        );
        check_url(
            " https://acme.brightpattern.com:8443 ",
            Some("https://acme.brightpattern.com:8443"),
        );
        check_url("http://127.0.0.1:8080", Some("http://127.0.0.1:8080"));
        check_url("http://localhost:9", Some("http://localhost:9"));
        check_url("http://[::1]:9", Some("http://[::1]:9"));
        check_url("http://acme.brightpattern.com", None);
        check_url("https://acme.brightpattern.com/clientweb", None);
        check_url("https://acme.brightpattern.com/?x=1", None);
        check_url("https://user:pw@acme.brightpattern.com", None);
        check_url("ftp://acme", None);
        check_url("", None);
    }

    #[test]
    fn plain_http_to_another_host_only_with_the_flag() {
        let allow = HttpPolicy::AllowInsecure;
        check_url_with(
            "http://acme.brightpattern.com",
            allow,
            Some("http://acme.brightpattern.com"),
        );
        check_url_with("http://10.0.0.7:8080/", allow, Some("http://10.0.0.7:8080"));
        check_url_with(
            "http://127.0.0.1:8080",
            allow,
            Some("http://127.0.0.1:8080"),
        );
        // The flag relaxes the scheme only: the other rules still hold.
        check_url_with("ftp://acme", allow, None);
        check_url_with("http://acme.brightpattern.com/clientweb", allow, None);
        check_url_with("http://user:pw@acme.brightpattern.com", allow, None);
        // A bare host still gets https.
        check_url_with(
            "acme.brightpattern.com",
            allow,
            Some("https://acme.brightpattern.com"),
        );

        let error = normalise_base_url("http://acme.brightpattern.com", HttpPolicy::RequireHttps)
            .expect_err("plain http refused")
            .to_string();
        assert!(error.contains("--allow-insecure-http"), "{error}");
        assert!(error.contains("use https"), "{error}");
    }

    #[test]
    fn only_plain_http_to_another_host_is_warned_about() {
        let url = |raw| normalise_base_url(raw, HttpPolicy::AllowInsecure).expect("url");
        assert!(is_plain_http_to_remote(&url(
            "http://acme.brightpattern.com"
        )));
        assert!(!is_plain_http_to_remote(&url("http://localhost:9")));
        assert!(!is_plain_http_to_remote(&url(
            "https://acme.brightpattern.com"
        )));
        let warning = insecure_http_warning(&url("http://acme.brightpattern.com"));
        assert!(
            warning.contains("http://acme.brightpattern.com"),
            "{warning}"
        );
        assert!(warning.contains("UNENCRYPTED"), "{warning}");
    }

    #[test]
    fn allow_insecure_http_layers_flag_over_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bpsms.toml");
        std::fs::write(
            &path,
            "base_url = \"http://sms-gateway.internal\"\nallow_insecure_http = true\n",
        )
        .expect("write config");
        let with_flag = |flag: Option<bool>| GlobalArgs {
            allow_insecure_http: flag,
            ..global(None, Some(path.clone()))
        };
        let api = |global: GlobalArgs| {
            Config::load_with(&global, &robot_env)
                .expect("config")
                .api(&RunArgs::default())
        };
        let from_file = api(with_flag(None)).expect("the file allows it");
        assert_eq!(from_file.base_url, "http://sms-gateway.internal");
        assert!(api(with_flag(Some(true))).is_ok());
        assert!(
            api(with_flag(Some(false))).is_err(),
            "--allow-insecure-http=false (or the variable at 0) overrides the file"
        );
        let no_file = global(Some("http://sms-gateway.internal"), None);
        assert!(api(no_file).is_err(), "refused by default");
    }

    #[test]
    fn switch_values() {
        for yes in ["true", "YES", " on ", "1"] {
            assert_eq!(crate::cli::parse_switch(yes), Ok(true), "{yes}");
        }
        for no in ["false", "No", "off", "0", ""] {
            assert_eq!(crate::cli::parse_switch(no), Ok(false), "{no}");
        }
        assert!(crate::cli::parse_switch("sure").is_err());
    }

    #[track_caller]
    fn check_mode(mode: u32, warned: bool) {
        let warning = secret_file_mode_warning(Path::new("/etc/bpsms.toml"), mode);
        assert_eq!(warning.is_some(), warned, "mode {mode:o}: {warning:?}");
    }

    #[test]
    fn a_secret_file_must_be_private_to_its_owner() {
        check_mode(0o600, false);
        check_mode(0o400, false);
        check_mode(0o700, false);
        // st_mode carries the file type too: a regular file 0600.
        check_mode(0o100_600, false);
        check_mode(0o100_644, true);
        check_mode(0o640, true);
        check_mode(0o604, true);
        // Write alone is enough: another user could point base_url elsewhere.
        check_mode(0o620, true);
        check_mode(0o602, true);
        check_mode(0o610, true);
        let warning = secret_file_mode_warning(Path::new("/home/ann/my bpsms.toml"), 0o100_644)
            .expect("warned");
        assert!(warning.contains("/home/ann/my bpsms.toml"), "{warning}");
        assert!(warning.contains("mode 644"), "{warning}");
        assert!(
            warning.contains("chmod 600 '/home/ann/my bpsms.toml'"),
            "{warning}"
        );
    }

    /// An environment with the API user's credentials.
    fn robot_env(key: &str) -> Option<String> {
        match key {
            "BPSMS_CLIENT_ID" => Some("sms.robot".to_string()),
            "BPSMS_CLIENT_SECRET" => Some("s3cret".to_string()),
            _ => None,
        }
    }

    fn global(base: Option<&str>, config: Option<PathBuf>) -> GlobalArgs {
        GlobalArgs {
            db: None,
            base_url: base.map(str::to_string),
            config,
            allow_insecure_http: None,
        }
    }

    #[test]
    fn tenant_defaults_to_the_host_and_secret_stays_hidden() {
        let config = Config::load_with(
            &global(Some("https://acme.brightpattern.com"), None),
            &robot_env,
        )
        .expect("config");
        let api = config.api(&RunArgs::default()).expect("api config");
        assert_eq!(api.scope, "acme.brightpattern.com");
        assert_eq!(api.base_url, "https://acme.brightpattern.com");
        assert!(!format!("{api:?}").contains("s3cret"));
    }

    #[test]
    fn missing_credentials_say_what_to_set() {
        let config = Config::load_with(&global(Some("acme.brightpattern.com"), None), &|_| None)
            .expect("config");
        let error = config
            .api(&RunArgs::default())
            .expect_err("missing credentials")
            .to_string();
        assert!(error.contains("BPSMS_CLIENT_ID"), "{error}");
    }

    #[test]
    fn the_sample_config_file_reads_and_layers_under_the_environment() {
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/bpsms.toml");
        let global = global(None, Some(sample.into()));
        let env = |key: &str| (key == "BPSMS_CLIENT_SECRET").then(|| "from-env".to_string());
        let config = Config::load_with(&global, &env).expect("sample config");
        let api = config.api(&RunArgs::default()).expect("api settings");
        assert_eq!(api.client_secret.expose(), "from-env");
        assert!(api.base_url.starts_with("https://"), "{}", api.base_url);
        let settings = config
            .run_settings(&RunArgs::default(), &[], None)
            .expect("settings");
        assert!(settings.campaign.rate > 0.0);
    }

    #[test]
    fn content_flags_become_domain_values_once() {
        let config = Config::load_with(&global(None, None), &|_| None).expect("config");
        let uk = ContentArgs {
            default_region: Some("uk".into()),
            from: vec![" +1 650 555 0100 ".into(), "+16505550100".into()],
            ..Default::default()
        };
        let content = config.content(&uk).expect("valid flags");
        assert_eq!(content.region_flag, Some(Region::parse("GB").expect("GB")));
        let from: Vec<&str> = content.from.iter().map(E164::as_str).collect();
        assert_eq!(from, vec!["+16505550100"]);
        let defaults = config.content(&ContentArgs::default()).expect("no flags");
        assert_eq!(
            (defaults.region_flag, defaults.region),
            (None, Region::default())
        );
        assert!(defaults.from.is_empty());
    }

    #[test]
    fn the_config_files_region_is_the_fallback_and_is_checked_when_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bpsms.toml");
        let load = |region: &str| {
            std::fs::write(&path, format!("default_region = \"{region}\"\n")).expect("write");
            Config::load_with(&global(None, Some(path.clone())), &|_| None)
        };
        let content = load("gb").expect("config").content(&ContentArgs::default());
        assert_eq!(
            content.expect("content").region,
            Region::parse("GB").expect("GB")
        );
        let error = load("Mars").err().expect("refused").to_string();
        assert!(
            error.contains("default_region in the config file"),
            "{error}"
        );
    }

    #[test]
    fn flags_override_stored_settings_which_override_defaults() {
        let config = Config::load_with(&global(None, None), &|_| None).expect("config");
        let stored = CampaignSettings {
            rate: 5.0,
            concurrency: 2,
            poll_delay: Duration::from_secs(3),
            track_for: Duration::from_secs(60),
            on_ambiguous: AmbiguousPolicy::Retry,
        };
        let run = RunArgs {
            rate: Some(20.0),
            ..Default::default()
        };
        let rules = SendRules::default();
        let settings = config
            .run_settings(&run, &[], Some((&stored, &rules)))
            .expect("settings");
        assert_eq!(settings.campaign.rate, 20.0);
        assert_eq!(settings.campaign.concurrency, 2);
        assert_eq!(settings.campaign.on_ambiguous, AmbiguousPolicy::Retry);
        let fresh = config
            .run_settings(&RunArgs::default(), &[], None)
            .expect("defaults");
        assert_eq!(fresh.campaign.rate, DEFAULT_RATE);
        assert_eq!(fresh.campaign.track_for, DEFAULT_TRACK_FOR);
        let bad = RunArgs {
            rate: Some(0.0),
            ..Default::default()
        };
        assert!(config.run_settings(&bad, &[], None).is_err());
    }
}
