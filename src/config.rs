//! Settings from three layers: flags override the environment, which
//! overrides the TOML config file, which overrides the defaults. Everything
//! is validated here, once, into typed values.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::api::wire::MediaKey;
use crate::api::ApiConfig;
use crate::cli::{parse_duration, GlobalArgs, OnAmbiguous, RunArgs};
use crate::domain::state::AmbiguousPolicy;
use crate::secret::SecretString;
use crate::store::CampaignSettings;

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
}

/// The layered configuration.
pub struct Config {
    pub db: PathBuf,
    base_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    tenant: Option<String>,
    pub file: FileConfig,
}

/// Send settings for one run, with where they came from resolved.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub campaign: CampaignSettings,
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
        let base = normalise_base_url(raw)?;
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
            connect_timeout: positive(
                "connect-timeout",
                pick_duration(
                    run.connect_timeout,
                    &self.file.connect_timeout,
                    "connect_timeout",
                    DEFAULT_CONNECT_TIMEOUT,
                )?,
            )?,
            request_timeout: positive(
                "request-timeout",
                pick_duration(
                    run.request_timeout,
                    &self.file.request_timeout,
                    "request_timeout",
                    DEFAULT_REQUEST_TIMEOUT,
                )?,
            )?,
        })
    }

    /// The send settings of a run: flags first, then what the campaign stored
    /// (on resume), then the config file, then the defaults.
    pub fn run_settings(
        &self,
        run: &RunArgs,
        stored: Option<&CampaignSettings>,
    ) -> Result<RunSettings, ConfigError> {
        let file = &self.file;
        let rate = run
            .rate
            .or(stored.map(|s| s.rate))
            .or(file.rate)
            .unwrap_or(DEFAULT_RATE);
        if !(rate.is_finite() && rate > 0.0) {
            return Err(ConfigError(format!(
                "--rate {rate}: give a number of messages per second above 0, e.g. --rate 10"
            )));
        }
        let concurrency = run
            .concurrency
            .or(stored.map(|s| s.concurrency))
            .or(file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=1024).contains(&concurrency) {
            return Err(ConfigError(format!(
                "--concurrency {concurrency}: give a number from 1 to 1024"
            )));
        }
        let poll_delay = match run.poll_delay.or(stored.map(|s| s.poll_delay)) {
            Some(d) => d,
            None => pick_duration(None, &file.poll_delay, "poll_delay", DEFAULT_POLL_DELAY)?,
        };
        let track_for = match run.track_for.or(stored.map(|s| s.track_for)) {
            Some(d) => d,
            None => pick_duration(None, &file.track_for, "track_for", DEFAULT_TRACK_FOR)?,
        };
        if track_for.is_zero() {
            return Err(ConfigError(
                "--track-for 0s: the tracking window must be longer than zero, e.g. --track-for 4h"
                    .into(),
            ));
        }
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
        if !(poll_rate.is_finite() && poll_rate > 0.0) {
            return Err(ConfigError(format!(
                "--poll-rate {poll_rate}: give a number of polls per second above 0"
            )));
        }
        let max_attempts = run
            .max_attempts
            .or(file.max_attempts)
            .unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 {
            return Err(ConfigError("--max-attempts 0: give at least 1".into()));
        }
        let breaker_window = run
            .breaker_window
            .or(file.breaker_window)
            .unwrap_or(DEFAULT_BREAKER_WINDOW);
        if breaker_window == 0 {
            return Err(ConfigError("--breaker-window 0: give at least 1".into()));
        }
        let breaker_threshold = run
            .breaker_threshold
            .or(file.breaker_threshold)
            .unwrap_or(DEFAULT_BREAKER_THRESHOLD);
        if !(breaker_threshold > 0.0 && breaker_threshold <= 1.0) {
            return Err(ConfigError(format!(
                "--breaker-threshold {breaker_threshold}: give a ratio above 0 and at most 1, e.g. 0.5"
            )));
        }
        Ok(RunSettings {
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

    /// `--default-region`, else the file's, else US.
    pub fn default_region(&self, flag: Option<&str>) -> String {
        flag.map(str::to_string)
            .or_else(|| self.file.default_region.clone())
            .unwrap_or_else(|| "US".into())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

/// A timeout of zero would fail every request; refuse it by name.
fn positive(flag: &str, duration: Duration) -> Result<Duration, ConfigError> {
    if duration.is_zero() {
        return Err(ConfigError(format!(
            "--{flag} 0s: every request would time out at once; give a duration such as 10s"
        )));
    }
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
/// `http://127.0.0.1:8080`; plain http only for loopback addresses.
pub fn normalise_base_url(raw: &str) -> Result<Url, ConfigError> {
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
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(ConfigError(format!(
            "--base-url {raw:?}: plain http would send the secret unencrypted; use https \
             (http is accepted only for loopback addresses such as the simulator's)"
        ))),
        other => Err(ConfigError(format!(
            "--base-url {raw:?}: unsupported scheme {other:?}; use https"
        ))),
    }
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
        let got = normalise_base_url(raw)
            .ok()
            .map(|u| u.as_str().trim_end_matches('/').to_string());
        assert_eq!(got.as_deref(), expected, "{raw}");
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

    fn global(base: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            db: None,
            base_url: base.map(str::to_string),
            config: None,
        }
    }

    #[test]
    fn tenant_defaults_to_the_host_and_secret_stays_hidden() {
        let env = |key: &str| match key {
            "BPSMS_CLIENT_ID" => Some("sms.robot".to_string()),
            "BPSMS_CLIENT_SECRET" => Some("s3cret".to_string()),
            _ => None,
        };
        let config = Config::load_with(&global(Some("https://acme.brightpattern.com")), &env)
            .expect("config");
        let api = config.api(&RunArgs::default()).expect("api config");
        assert_eq!(api.scope, "acme.brightpattern.com");
        assert_eq!(api.base_url, "https://acme.brightpattern.com");
        assert!(!format!("{api:?}").contains("s3cret"));
    }

    #[test]
    fn missing_credentials_say_what_to_set() {
        let config =
            Config::load_with(&global(Some("acme.brightpattern.com")), &|_| None).expect("config");
        let error = config
            .api(&RunArgs::default())
            .expect_err("missing credentials")
            .to_string();
        assert!(error.contains("BPSMS_CLIENT_ID"), "{error}");
    }

    #[test]
    fn the_sample_config_file_reads_and_layers_under_the_environment() {
        let global = GlobalArgs {
            db: None,
            base_url: None,
            config: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/bpsms.toml").into()),
        };
        let env = |key: &str| (key == "BPSMS_CLIENT_SECRET").then(|| "from-env".to_string());
        let config = Config::load_with(&global, &env).expect("sample config");
        let api = config.api(&RunArgs::default()).expect("api settings");
        assert_eq!(api.client_secret.expose(), "from-env");
        assert!(api.base_url.starts_with("https://"), "{}", api.base_url);
        let settings = config
            .run_settings(&RunArgs::default(), None)
            .expect("settings");
        assert!(settings.campaign.rate > 0.0);
    }

    #[test]
    fn flags_override_stored_settings_which_override_defaults() {
        let config = Config::load_with(&global(None), &|_| None).expect("config");
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
        let settings = config.run_settings(&run, Some(&stored)).expect("settings");
        assert_eq!(settings.campaign.rate, 20.0);
        assert_eq!(settings.campaign.concurrency, 2);
        assert_eq!(settings.campaign.on_ambiguous, AmbiguousPolicy::Retry);
        let fresh = config
            .run_settings(&RunArgs::default(), None)
            .expect("defaults");
        assert_eq!(fresh.campaign.rate, DEFAULT_RATE);
        assert_eq!(fresh.campaign.track_for, DEFAULT_TRACK_FOR);
        let bad = RunArgs {
            rate: Some(0.0),
            ..Default::default()
        };
        assert!(config.run_settings(&bad, None).is_err());
    }
}
