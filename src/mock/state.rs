//! The simulator's memory: issued tokens, accepted messages (the ledger), the
//! seeded random generators and the request counters.
//!
//! Everything mutable sits behind one `std::sync::Mutex` that is held only
//! for map and vector operations, never across an `.await`. Counters are
//! atomics so that reading [`Stats`] never contends with sends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::api::wire::{MessageResource, MESSAGES_PATH};
use crate::clock::{duration_ms, now_ms, timestamp};
use crate::mock::behaviour::Behaviour;

/// The fixed tenant identifier the simulator answers with.
pub const ACCOUNT_SID: &str = "7C1E5A0B-3D2F-4E6A-9B8C-0F1D2E3A4B5C";
/// `error_code` of a failed message.
pub const FAILED_ERROR_CODE: &str = "30003";
/// `error_message` of a failed message, unless the behaviour says otherwise.
pub const FAILED_ERROR_MESSAGE: &str = "Unreachable destination handset";
/// Issued tokens held before expired ones are forgotten, so that a client
/// fetching a token per request cannot grow the map without bound.
const TOKENS_KEPT: usize = 10_000;

/// One accepted Send, as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The sid the Send answer carried.
    pub sid: String,
    /// `To` exactly as sent.
    pub to: String,
    /// `From` exactly as sent.
    pub from: String,
    /// `Body`, if any.
    pub body: Option<String>,
    /// Media URLs in the order given (empty for an SMS).
    pub media_urls: Vec<String>,
    /// When the Send was accepted, in Unix milliseconds.
    pub received_at_ms: i64,
    /// Gets of this message answered 404 because it was not visible yet.
    #[serde(default)]
    pub not_visible_answers: u32,
}

/// Request counters since the simulator started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Requests to Send Message, whatever their answer.
    pub send_requests: u64,
    /// Sends answered 200 (or, for a slow fault, accepted and answered late).
    pub sends_accepted: u64,
    /// Requests to Get Message, whatever their answer.
    pub get_requests: u64,
    /// Requests answered with an injected fault (5xx, 429, 403, slow).
    pub faults_injected: u64,
    /// Requests answered 401 (token endpoint included).
    pub unauthorized: u64,
}

/// Shared state of one simulator; cheap to clone.
#[derive(Clone)]
pub struct SimState {
    shared: Arc<Shared>,
}

struct Shared {
    behaviour: Behaviour,
    /// Monotonic clock at start; message times are offsets from it.
    started_at: Instant,
    /// Wall clock at start, in Unix milliseconds.
    started_unix_ms: i64,
    inner: Mutex<Inner>,
    counters: Counters,
    /// Cancelled at shutdown so that slow answers stop waiting.
    shutdown: CancellationToken,
}

#[derive(Default)]
struct Counters {
    token_requests: AtomicU64,
    send_requests: AtomicU64,
    sends_accepted: AtomicU64,
    get_requests: AtomicU64,
    faults_injected: AtomicU64,
    unauthorized: AtomicU64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    TokenRequests,
    SendsAccepted,
    GetRequests,
    FaultsInjected,
    Unauthorized,
}

struct Inner {
    /// Accepted messages in acceptance order: the ledger. A sid encodes its
    /// position here (see [`sid_for`]), so no index map is needed.
    messages: Vec<Record>,
    /// Issued tokens and when each expires.
    tokens: HashMap<String, Instant>,
    /// sids and tokens.
    id_rng: StdRng,
    /// Per-message failure decisions.
    fate_rng: StdRng,
    /// Per-request fault draws.
    fault_rng: StdRng,
}

/// One accepted message, kept small: a million of them must fit easily.
struct Record {
    sid: u128,
    /// Microseconds after `started_at` at which the Send was accepted.
    accepted_offset_us: u64,
    to: Box<str>,
    /// Shared with the previous message when equal: campaigns use one sender.
    from: Arc<str>,
    body: Option<Box<str>>,
    media_urls: Box<[String]>,
    fails: bool,
    /// Gets answered 404 because the message was not visible yet.
    not_visible_answers: u32,
}

/// A message to record, already validated.
pub(crate) struct NewMessage {
    pub to: String,
    pub from: String,
    pub body: Option<String>,
    pub media_urls: Vec<String>,
}

/// What a token check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid,
    Expired,
    Unknown,
}

/// What a Get found.
pub(crate) enum Lookup {
    Found(Box<MessageResource>),
    NotVisibleYet,
    NotFound,
}

impl SimState {
    /// Fresh state for `behaviour`; the generators are seeded from
    /// `behaviour.seed`.
    pub fn new(behaviour: Behaviour) -> Self {
        let seed = behaviour.seed;
        let inner = Inner {
            messages: Vec::new(),
            tokens: HashMap::new(),
            id_rng: StdRng::seed_from_u64(seed),
            fate_rng: StdRng::seed_from_u64(seed.wrapping_add(0x9E37_79B9_7F4A_7C15)),
            fault_rng: StdRng::seed_from_u64(seed.wrapping_add(0x3C6E_F372_FE94_F82A)),
        };
        SimState {
            shared: Arc::new(Shared {
                behaviour,
                started_at: Instant::now(),
                started_unix_ms: now_ms(),
                inner: Mutex::new(inner),
                counters: Counters::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// The knobs this simulator runs with.
    pub fn behaviour(&self) -> &Behaviour {
        &self.shared.behaviour
    }

    /// Every accepted Send, in acceptance order.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        let inner = self.lock();
        let started_unix_ms = self.shared.started_unix_ms;
        inner
            .messages
            .iter()
            .map(|record| record.ledger_entry(started_unix_ms))
            .collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            token_requests: c.token_requests.load(Ordering::Relaxed),
            send_requests: c.send_requests.load(Ordering::Relaxed),
            sends_accepted: c.sends_accepted.load(Ordering::Relaxed),
            get_requests: c.get_requests.load(Ordering::Relaxed),
            faults_injected: c.faults_injected.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
        }
    }

    /// The access tokens issued so far, in no particular order, so that a
    /// test can search for them where they must never appear (logs, the
    /// database, exports). Complete unless more than 10 000 were issued:
    /// then expired ones may have been forgotten.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().tokens.keys().cloned().collect()
    }

    /// The ledger serialised as a JSON array, built under the lock without
    /// copying the entries first.
    pub(crate) fn ledger_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let inner = self.lock();
        let started_unix_ms = self.shared.started_unix_ms;
        let entries: Vec<LedgerEntryRef<'_>> = inner
            .messages
            .iter()
            .map(|record| record.ledger_ref(started_unix_ms))
            .collect();
        serde_json::to_vec(&entries)
    }

    /// Counts a Send request and returns its number (1 for the first).
    pub(crate) fn count_send_request(&self) -> u64 {
        self.shared
            .counters
            .send_requests
            .fetch_add(1, Ordering::Relaxed)
            + 1
    }

    pub(crate) fn count(&self, counter: Counter) {
        let c = &self.shared.counters;
        let atomic = match counter {
            Counter::TokenRequests => &c.token_requests,
            Counter::SendsAccepted => &c.sends_accepted,
            Counter::GetRequests => &c.get_requests,
            Counter::FaultsInjected => &c.faults_injected,
            Counter::Unauthorized => &c.unauthorized,
        };
        atomic.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shared.shutdown
    }

    /// One uniform draw in `[0, 1)` for a fault decision.
    pub(crate) fn fault_draw(&self) -> f64 {
        self.lock().fault_rng.random::<f64>()
    }

    /// Issues a token valid for the configured lifetime.
    pub(crate) fn issue_token(&self) -> String {
        let now = Instant::now();
        let expires_at = now + self.shared.behaviour.token_lifetime;
        let mut inner = self.lock();
        if inner.tokens.len() >= TOKENS_KEPT {
            inner.tokens.retain(|_, expiry| *expiry > now);
        }
        loop {
            let mut bytes = [0u8; 32];
            inner.id_rng.fill_bytes(&mut bytes);
            let token = upper_hex(&bytes);
            if !inner.tokens.contains_key(&token) {
                inner.tokens.insert(token.clone(), expires_at);
                return token;
            }
        }
    }

    pub(crate) fn check_token(&self, token: &str) -> TokenCheck {
        let inner = self.lock();
        match inner.tokens.get(token) {
            None => TokenCheck::Unknown,
            Some(expiry) if *expiry <= Instant::now() => TokenCheck::Expired,
            Some(_) => TokenCheck::Valid,
        }
    }

    /// Records an accepted message and returns its Send answer.
    pub(crate) fn accept(&self, message: NewMessage) -> MessageResource {
        let behaviour = &self.shared.behaviour;
        let started_unix_ms = self.shared.started_unix_ms;
        let is_mms = !message.media_urls.is_empty();
        let mut inner = self.lock();
        // Taken under the lock so that acceptance times follow ledger order.
        let accepted_offset_us = duration_us(self.shared.started_at.elapsed());
        let fails = !is_mms && inner.fate_rng.random::<f64>() < behaviour.failure_ratio;
        let position = inner.messages.len() as u64;
        let sid = sid_for(inner.id_rng.random::<u128>(), position);
        let from = match inner.messages.last() {
            Some(previous) if *previous.from == *message.from => Arc::clone(&previous.from),
            _ => Arc::from(message.from),
        };
        let record = Record {
            sid,
            accepted_offset_us,
            to: message.to.into_boxed_str(),
            from,
            body: message.body.map(String::into_boxed_str),
            media_urls: message.media_urls.into_boxed_slice(),
            fails,
            not_visible_answers: 0,
        };
        let resource = record.resource(Progress::Queued, behaviour, started_unix_ms);
        inner.messages.push(record);
        resource
    }

    /// The Get answer for `sid` at this moment.
    pub(crate) fn lookup(&self, sid: &str) -> Lookup {
        let Some(key) = parse_sid(sid) else {
            return Lookup::NotFound;
        };
        let behaviour = &self.shared.behaviour;
        let now_us = duration_us(self.shared.started_at.elapsed());
        let mut inner = self.lock();
        let Some(record) = usize::try_from(position_of(key))
            .ok()
            .and_then(|position| inner.messages.get_mut(position))
            .filter(|record| record.sid == key)
        else {
            return Lookup::NotFound;
        };
        let age = Duration::from_micros(now_us.saturating_sub(record.accepted_offset_us));
        if age < behaviour.not_found_for {
            record.not_visible_answers = record.not_visible_answers.saturating_add(1);
            return Lookup::NotVisibleYet;
        }
        let progress = if age >= behaviour.delivered_after {
            Progress::Final
        } else if age >= behaviour.sent_after {
            Progress::Sent
        } else {
            Progress::Queued
        };
        Lookup::Found(Box::new(record.resource(
            progress,
            behaviour,
            self.shared.started_unix_ms,
        )))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters to a simulator, so poisoning is ignored.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How far a message has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    Queued,
    Sent,
    /// `delivered` or `failed` for an SMS; an MMS stays `sent`.
    Final,
}

#[derive(Serialize)]
struct LedgerEntryRef<'a> {
    sid: String,
    to: &'a str,
    from: &'a str,
    body: Option<&'a str>,
    media_urls: &'a [String],
    received_at_ms: i64,
    not_visible_answers: u32,
}

impl Record {
    fn received_at_ms(&self, started_unix_ms: i64) -> i64 {
        let offset_ms = i64::try_from(self.accepted_offset_us / 1000).unwrap_or(i64::MAX);
        started_unix_ms.saturating_add(offset_ms)
    }

    fn ledger_entry(&self, started_unix_ms: i64) -> LedgerEntry {
        LedgerEntry {
            sid: format_sid(self.sid),
            to: self.to.to_string(),
            from: self.from.to_string(),
            body: self.body.as_deref().map(str::to_owned),
            media_urls: self.media_urls.to_vec(),
            received_at_ms: self.received_at_ms(started_unix_ms),
            not_visible_answers: self.not_visible_answers,
        }
    }

    fn ledger_ref(&self, started_unix_ms: i64) -> LedgerEntryRef<'_> {
        LedgerEntryRef {
            sid: format_sid(self.sid),
            to: &self.to,
            from: &self.from,
            body: self.body.as_deref(),
            media_urls: &self.media_urls,
            received_at_ms: self.received_at_ms(started_unix_ms),
            not_visible_answers: self.not_visible_answers,
        }
    }

    /// The message object as the vendor would show it at `progress`, before
    /// any quirk is applied.
    fn resource(
        &self,
        progress: Progress,
        behaviour: &Behaviour,
        started_unix_ms: i64,
    ) -> MessageResource {
        let is_mms = !self.media_urls.is_empty();
        let created_ms = self.received_at_ms(started_unix_ms);
        let sent_ms = created_ms.saturating_add(duration_ms(behaviour.sent_after));
        let final_ms = created_ms.saturating_add(duration_ms(behaviour.delivered_after));
        let (status, date_sent, date_updated) = match progress {
            Progress::Queued => ("queued", None, created_ms),
            Progress::Sent => ("sent", Some(sent_ms), sent_ms),
            Progress::Final if is_mms => ("sent", Some(sent_ms), sent_ms),
            Progress::Final if self.fails => ("failed", Some(sent_ms), final_ms),
            Progress::Final => ("delivered", Some(sent_ms), final_ms),
        };
        let failed = status == "failed";
        let sid = format_sid(self.sid);
        MessageResource {
            account_sid: Some(ACCOUNT_SID.to_owned()),
            api_version: Some("1".to_owned()),
            body: self.body.as_deref().map(str::to_owned),
            num_segments: Some("1".to_owned()),
            num_media: Some(self.media_urls.len().to_string()),
            subresource_uris: subresource_uris(&self.media_urls),
            date_created: Some(rfc2822(created_ms)),
            date_sent: date_sent.map(rfc2822),
            date_updated: Some(rfc2822(date_updated)),
            direction: Some("outbound-api".to_owned()),
            error_code: failed.then(|| FAILED_ERROR_CODE.to_owned()),
            error_message: failed.then(|| behaviour.failure_message.clone()),
            from: Some(self.from.trim_start_matches('+').to_owned()),
            price: None,
            uri: Some(format!("{MESSAGES_PATH}/{sid}")),
            sid: Some(sid),
            status: Some(status.to_owned()),
            to: Some(self.to.to_string()),
        }
    }
}

/// The [5.2] `subresource_uris` shape: `media` for one item, `media0…` for more.
fn subresource_uris(media_urls: &[String]) -> Option<serde_json::Value> {
    match media_urls {
        [] => None,
        [only] => Some(serde_json::json!({ "media": only })),
        many => Some(serde_json::Value::Object(
            many.iter()
                .enumerate()
                .map(|(i, url)| (format!("media{i}"), serde_json::Value::from(url.as_str())))
                .collect(),
        )),
    }
}

/// Low 48 bits of a sid: the UUID's last group.
const POSITION_MASK: u128 = (1 << 48) - 1;

/// The sid of the message at `position` in the ledger.
///
/// The upper 80 bits are random, with the version (4) and variant (10xx)
/// bits forced so the sid reads as a v4 UUID. The last group carries the
/// ledger position, scrambled with a hash of the random bits, so a Get finds
/// its message without an index map (a million messages must stay cheap) and
/// two sids can never collide. Lookups check the whole sid, so a guessed or
/// altered sid still answers 404.
fn sid_for(random: u128, position: u64) -> u128 {
    let version_mask: u128 = 0xF << 76;
    let variant_mask: u128 = 0x3 << 62;
    let upper =
        (random & !POSITION_MASK & !version_mask & !variant_mask) | (0x4 << 76) | (0x2 << 62);
    upper | ((u128::from(position) ^ scramble(upper)) & POSITION_MASK)
}

/// The ledger position a sid claims (only meaningful if the sid is ours).
fn position_of(sid: u128) -> u64 {
    let upper = sid & !POSITION_MASK;
    ((sid ^ scramble(upper)) & POSITION_MASK) as u64
}

/// SplitMix64's finaliser over the random part of a sid.
fn scramble(upper: u128) -> u128 {
    let mut z = ((upper >> 64) as u64) ^ (upper as u64);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    u128::from(z ^ (z >> 31))
}

/// `5f0c2d9e-8a41-4c3b-9e1f-2b7d6a1c0e93`.
pub(crate) fn format_sid(sid: u128) -> String {
    let hex = format!("{sid:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The inverse of [`format_sid`]; `None` for anything that is not a UUID.
pub(crate) fn parse_sid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut value: u128 = 0;
    for (position, &byte) in bytes.iter().enumerate() {
        if matches!(position, 8 | 13 | 18 | 23) {
            if byte != b'-' {
                return None;
            }
            continue;
        }
        let digit = char::from(byte).to_digit(16)?;
        value = (value << 4) | u128::from(digit);
    }
    Some(value)
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    out
}

/// `Tue, 14 May 2024 09:15:02 +0000`.
pub(crate) fn rfc2822(unix_ms: i64) -> String {
    let zoned = timestamp(unix_ms).to_zoned(jiff::tz::TimeZone::UTC);
    jiff::fmt::rfc2822::to_string(&zoned).unwrap_or_default()
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_round_trips_and_looks_like_a_v4_uuid() {
        let sid = sid_for(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef, 12_345);
        assert_eq!(position_of(sid), 12_345);
        let text = format_sid(sid);
        assert!(text.starts_with("01234567-89ab-4def-8123-"), "{text}");
        assert_eq!(parse_sid(&text), Some(sid));
        assert_eq!(parse_sid(&text.to_ascii_uppercase()), Some(sid));
        assert_eq!(parse_sid("0123456789ab4def8123456789abcdef"), None);
        assert_eq!(parse_sid("+1234567-89ab-4def-8123-456789abcdef"), None);
        assert_eq!(parse_sid("01234567-89ab-4def-8123-456789abcdeé"), None);
        assert_eq!(parse_sid(""), None);
    }

    #[test]
    fn dates_are_rfc2822_with_numeric_zone() {
        // 2024-05-14T09:15:02Z
        assert_eq!(
            rfc2822(1_715_678_102_000),
            "Tue, 14 May 2024 09:15:02 +0000"
        );
    }

    #[test]
    fn tokens_are_64_upper_hex() {
        let state = SimState::new(Behaviour::default());
        let token = state.issue_token();
        assert_eq!(token.len(), 64);
        assert!(token
            .chars()
            .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
        assert_eq!(state.check_token(&token), TokenCheck::Valid);
        assert_eq!(state.check_token("nope"), TokenCheck::Unknown);
        let second = state.issue_token();
        let mut issued = state.issued_tokens();
        issued.sort_unstable();
        let mut expected = vec![token, second];
        expected.sort_unstable();
        assert_eq!(issued, expected);
    }

    #[test]
    fn same_seed_gives_same_sids() {
        let message = || NewMessage {
            to: "+14155550123".into(),
            from: "+16505550100".into(),
            body: Some("hi".into()),
            media_urls: vec![],
        };
        let a = SimState::new(Behaviour::default());
        let b = SimState::new(Behaviour::default());
        for _ in 0..3 {
            assert_eq!(a.accept(message()).sid, b.accept(message()).sid);
        }
    }
}
