//! How the simulator behaves: the `bpsms mock-server` flags ([`MockArgs`]) and
//! the validated knobs they turn into ([`Behaviour`]).
//!
//! Flags are raw values; [`MockArgs::behaviour`] checks them once (ratios in
//! `0..=1`, fault ratios summing to at most 1, `delivered_after` not before
//! `sent_after`) so that the handlers never have to.

use std::time::Duration;

use crate::mock::state::FAILED_ERROR_MESSAGE;
use crate::secret::SecretString;

/// CLI flags of `bpsms mock-server` (flattened into the subcommand by `src/cli.rs`).
///
/// Every default reproduces the documented vendor behaviour; quirks and faults
/// are off unless asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,

    /// The client_id the token endpoint accepts.
    #[arg(long, default_value = "demo")]
    pub client_id: String,

    /// The client_secret the token endpoint accepts.
    #[arg(
        long,
        env = "BPSMS_MOCK_CLIENT_SECRET",
        default_value = "demo-secret",
        hide_env_values = true,
        value_parser = secret
    )]
    pub client_secret: SecretString,

    /// Lifetime of an issued token; afterwards every call with it answers 401.
    #[arg(long, default_value = "3600s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub token_lifetime: Duration,

    /// Quirk: send the token's `expires_in` as a JSON number instead of a string.
    #[arg(long)]
    pub expires_in_number: bool,

    /// Time after acceptance at which a message turns from `queued` to `sent`.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub sent_after: Duration,

    /// Time after acceptance at which an SMS turns `delivered` (or `failed`).
    /// MMS never leaves `sent`.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub delivered_after: Duration,

    /// Fraction (0..1) of SMS that end `failed` (error 30003) instead of `delivered`.
    #[arg(long, default_value_t = 0.05, value_name = "RATIO", value_parser = parse_ratio)]
    pub failure_ratio: f64,

    /// Seed of the random generator behind sids, tokens, failures and faults.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Get answers 404 ("not visible yet") for this long after acceptance.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub not_found_for: Duration,

    /// Quirk: Get bodies carry `"sid": null`.
    #[arg(long)]
    pub quirk_null_sid: bool,

    /// Quirk: `to` is echoed without its leading `+`.
    #[arg(long)]
    pub quirk_no_plus: bool,

    /// Quirk: `error_code` is a JSON number instead of a string.
    #[arg(long)]
    pub quirk_numeric_error_code: bool,

    /// Quirk: message objects carry extra, undocumented fields.
    #[arg(long)]
    pub quirk_extra_fields: bool,

    /// Fraction (0..1) of Sends answered 500 with an nginx HTML page (not accepted).
    /// The Send fault ratios (500, 502, 503, 429, 403, slow) are exclusive
    /// shares of one draw per request and must sum to at most 1.
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub fault_500: f64,

    /// Fraction (0..1) of Sends answered 502 with an nginx HTML page (not accepted).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub fault_502: f64,

    /// Fraction (0..1) of Sends answered 503 with an nginx HTML page (not accepted).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub fault_503: f64,

    /// Fraction (0..1) of Sends answered 429 (not accepted).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub fault_429: f64,

    /// Fraction (0..1) of Sends answered 403 "privilege not granted" (not accepted).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub fault_403: f64,

    /// Answer the first N Send requests with 429 (a burst of rate limiting).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fault_429_first: u64,

    /// Fraction (0..1) of Sends that are accepted and recorded but answered
    /// only after --slow-delay (longer than a client's request timeout).
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub fault_slow: f64,

    /// Delay of a --fault-slow answer.
    #[arg(long, default_value = "35s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub slow_delay: Duration,

    /// Seconds in the `Retry-After` header of a 429.
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    pub retry_after: u64,

    /// Send `Retry-After` as an HTTP-date instead of delta-seconds.
    #[arg(long, conflicts_with = "no_retry_after")]
    pub retry_after_date: bool,

    /// Leave `Retry-After` out of 429 answers.
    #[arg(long)]
    pub no_retry_after: bool,

    /// Fraction (0..1) of Gets answered 500 with an nginx HTML page.
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub get_fault_500: f64,

    /// Fraction (0..1) of Gets answered 429.
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = parse_ratio)]
    pub get_fault_429: f64,

    /// Extra delay added to every answer.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub latency: Duration,
}

impl MockArgs {
    /// Validates the flags into a [`Behaviour`].
    pub fn behaviour(&self) -> Result<Behaviour, String> {
        let retry_after = match (self.no_retry_after, self.retry_after_date) {
            (true, _) => RetryAfter::Omitted,
            (false, true) => RetryAfter::HttpDate(Duration::from_secs(self.retry_after)),
            (false, false) => RetryAfter::Seconds(self.retry_after),
        };
        let behaviour = Behaviour {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            token_lifetime: self.token_lifetime,
            expires_in_number: self.expires_in_number,
            sent_after: self.sent_after,
            delivered_after: self.delivered_after,
            failure_ratio: self.failure_ratio,
            failure_message: FAILED_ERROR_MESSAGE.to_owned(),
            seed: self.seed,
            not_found_for: self.not_found_for,
            quirk_null_sid: self.quirk_null_sid,
            quirk_no_plus: self.quirk_no_plus,
            quirk_numeric_error_code: self.quirk_numeric_error_code,
            quirk_extra_fields: self.quirk_extra_fields,
            fault_500: self.fault_500,
            fault_502: self.fault_502,
            fault_503: self.fault_503,
            fault_429: self.fault_429,
            fault_403: self.fault_403,
            fault_429_first: self.fault_429_first,
            fault_slow: self.fault_slow,
            slow_delay: self.slow_delay,
            retry_after,
            get_fault_500: self.get_fault_500,
            get_fault_429: self.get_fault_429,
            latency: self.latency,
        };
        behaviour.validate()?;
        Ok(behaviour)
    }
}

/// What a 429 answer says in its `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delta-seconds, e.g. `Retry-After: 1`.
    Seconds(u64),
    /// An HTTP-date this far in the future.
    HttpDate(Duration),
    /// No header at all.
    Omitted,
}

/// Every knob of the simulator. Construct it from [`Behaviour::default`] or
/// [`Behaviour::fast`] and override fields; [`Behaviour::validate`] checks it.
///
/// Fault ratios of one endpoint are exclusive slices of a single draw per
/// request, so `fault_500 = 0.1, fault_429 = 0.1` answers 10 % of Sends with
/// 500 and another 10 % with 429; each endpoint's ratios must sum to at most 1.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The only `client_id` the token endpoint accepts.
    pub client_id: String,
    /// The only `client_secret` the token endpoint accepts.
    pub client_secret: SecretString,
    /// How long an issued token stays valid; also its `expires_in`.
    pub token_lifetime: Duration,
    /// Quirk: `expires_in` as a JSON number instead of a string.
    pub expires_in_number: bool,
    /// Time after acceptance at which a message is `sent`.
    pub sent_after: Duration,
    /// Time after acceptance at which an SMS is `delivered` or `failed`.
    pub delivered_after: Duration,
    /// Fraction of SMS that end `failed` with error 30003; decided at Send.
    pub failure_ratio: f64,
    /// The `error_message` of a failed SMS. No flag sets it: tests use it to
    /// hand the client text of their choosing, hostile text included.
    pub failure_message: String,
    /// Seed of every random choice the simulator makes.
    pub seed: u64,
    /// Get answers 404 for this long after acceptance.
    pub not_found_for: Duration,
    /// Quirk: Get bodies carry `"sid": null`.
    pub quirk_null_sid: bool,
    /// Quirk: `to` echoed without `+`.
    pub quirk_no_plus: bool,
    /// Quirk: `error_code` as a JSON number.
    pub quirk_numeric_error_code: bool,
    /// Quirk: extra undocumented fields in message objects.
    pub quirk_extra_fields: bool,
    /// Fraction of Sends answered 500 (HTML, not accepted).
    pub fault_500: f64,
    /// Fraction of Sends answered 502 (HTML, not accepted).
    pub fault_502: f64,
    /// Fraction of Sends answered 503 (HTML, not accepted).
    pub fault_503: f64,
    /// Fraction of Sends answered 429 (not accepted).
    pub fault_429: f64,
    /// Fraction of Sends answered 403 "privilege not granted" (not accepted).
    pub fault_403: f64,
    /// The first this many Sends are answered 429.
    pub fault_429_first: u64,
    /// Fraction of Sends accepted but answered only after `slow_delay`.
    pub fault_slow: f64,
    /// Delay of a slow answer.
    pub slow_delay: Duration,
    /// The `Retry-After` of 429 answers.
    pub retry_after: RetryAfter,
    /// Fraction of Gets answered 500 (HTML).
    pub get_fault_500: f64,
    /// Fraction of Gets answered 429.
    pub get_fault_429: f64,
    /// Delay added to every answer.
    pub latency: Duration,
}

impl Default for Behaviour {
    /// The documented behaviour, identical to the flag defaults: credentials
    /// `demo` / `demo-secret`, one-hour tokens with a string `expires_in`,
    /// `sent` after 2 s, `delivered` after 5 s, 5 % of SMS `failed`, seed 42,
    /// no quirks, no faults, no latency.
    fn default() -> Self {
        Behaviour {
            client_id: "demo".to_owned(),
            client_secret: SecretString::new("demo-secret".to_owned()),
            token_lifetime: Duration::from_secs(3600),
            expires_in_number: false,
            sent_after: Duration::from_secs(2),
            delivered_after: Duration::from_secs(5),
            failure_ratio: 0.05,
            failure_message: FAILED_ERROR_MESSAGE.to_owned(),
            seed: 42,
            not_found_for: Duration::ZERO,
            quirk_null_sid: false,
            quirk_no_plus: false,
            quirk_numeric_error_code: false,
            quirk_extra_fields: false,
            fault_500: 0.0,
            fault_502: 0.0,
            fault_503: 0.0,
            fault_429: 0.0,
            fault_403: 0.0,
            fault_429_first: 0,
            fault_slow: 0.0,
            slow_delay: Duration::from_secs(35),
            retry_after: RetryAfter::Seconds(1),
            get_fault_500: 0.0,
            get_fault_429: 0.0,
            latency: Duration::ZERO,
        }
    }
}

impl Behaviour {
    /// [`Behaviour::default`] with a quick lifecycle for tests and the demo:
    /// `sent` after 200 ms and `delivered` (or, for the default 5 %, `failed`)
    /// after 500 ms. No faults, no quirks.
    pub fn fast() -> Self {
        Behaviour {
            sent_after: Duration::from_millis(200),
            delivered_after: Duration::from_millis(500),
            ..Behaviour::default()
        }
    }

    /// Checks the knobs: ratios in `0..=1`, each endpoint's fault ratios
    /// summing to at most 1, `delivered_after >= sent_after`, non-empty
    /// credentials and a non-zero token lifetime.
    pub fn validate(&self) -> Result<(), String> {
        let ratios = [
            ("failure-ratio", self.failure_ratio),
            ("fault-500", self.fault_500),
            ("fault-502", self.fault_502),
            ("fault-503", self.fault_503),
            ("fault-429", self.fault_429),
            ("fault-403", self.fault_403),
            ("fault-slow", self.fault_slow),
            ("get-fault-500", self.get_fault_500),
            ("get-fault-429", self.get_fault_429),
        ];
        for (name, value) in ratios {
            check_ratio(value).map_err(|e| format!("--{name}: {e}"))?;
        }
        let send_total = self.fault_500
            + self.fault_502
            + self.fault_503
            + self.fault_429
            + self.fault_403
            + self.fault_slow;
        if send_total > 1.0 + 1e-9 {
            return Err(format!(
                "the Send fault ratios (--fault-500/502/503/429/403/slow) sum to {send_total}, more than 1"
            ));
        }
        let get_total = self.get_fault_500 + self.get_fault_429;
        if get_total > 1.0 + 1e-9 {
            return Err(format!(
                "the Get fault ratios (--get-fault-500/429) sum to {get_total}, more than 1"
            ));
        }
        if self.delivered_after < self.sent_after {
            return Err("--delivered-after must not be shorter than --sent-after".to_owned());
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err("--client-id and --client-secret must not be empty".to_owned());
        }
        if self.token_lifetime.is_zero() {
            return Err("--token-lifetime must be longer than zero".to_owned());
        }
        Ok(())
    }
}

/// clap value parser for the secret flag: kept out of `Debug` from the start.
fn secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::new(text.to_owned()))
}

/// clap value parser for a ratio flag.
fn parse_ratio(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    check_ratio(value)?;
    Ok(value)
}

fn check_ratio(value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(format!("{value} is not a ratio between 0 and 1"))
    }
}
