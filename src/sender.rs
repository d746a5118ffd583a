//! The sender: claims pending messages (durably `sending`), paces the
//! requests on an even schedule under the hard ceiling of `--rate`, caps
//! those in flight, and turns each answer into a [`Change`] for the
//! recorder.
//!
//! It is a [`Worker`]: its step sends one message, or claims the next
//! batch, at a `now` it is given; [`crate::worker`] runs the loop. A stop
//! cuts only waits short: a claimed message is either sent or put back in
//! the queue, and a request that left is always answered and recorded.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, FatalError, SendOutcome};
use crate::clock::{duration_ms, rounded, Now};
use crate::domain::ids::MessageSid;
use crate::domain::phone::E164;
use crate::domain::state::{
    transition, AmbiguousPolicy, Event, MessageState, RemoteStatus, UNKNOWN_ADVICE,
};
use crate::domain::text::RateUnit;
use crate::gate::{Gate, Verdict};
use crate::pacing::{
    rate_text, AdaptiveRate, Backoff, CircuitBreaker, EvenSchedule, PerSenderCeilings, RateCeiling,
    RateLimitNotices,
};
use crate::pool::SenderPool;
use crate::progress::Counters;
use crate::recorder::Recorder;
use crate::store::{Change, Claim, ClaimedMessage, Store, StoreError};
use crate::worker::{self, Harness, Step, Worker};

/// Consecutive "could not connect" answers after which the run stops.
const MAX_CONSECUTIVE_UNREACHABLE: u32 = 8;
/// Most messages claimed (durably `sending`) in one transaction. With the
/// next batch claimed ahead, at most two batches wait unsent at any moment:
/// what a crash can leave `unknown` beyond the requests in flight.
const MAX_CLAIM: usize = 256;
/// A batch holds at most this many times `--concurrency` messages.
const CLAIM_PER_SLOT: usize = 4;
/// How far the send schedule may fall behind before the lost time is given
/// up: a short stall is made up (within the ceiling), a long one is not
/// followed by a burst.
const MAX_SCHEDULE_LAG: Duration = Duration::from_millis(250);
/// How long to wait, when nothing is claimable, for the answers in flight
/// to put messages back in the queue (an applied batch wakes it sooner).
const IDLE_WAKE: Duration = Duration::from_millis(200);
/// How many claimed messages the sender looks through for one whose
/// number may send now.
const LOOK_AHEAD: usize = 64;
/// How long a wait for a window, the start or the next day lasts at most
/// before the sender looks again: a clock set forward, or messages put
/// back, are noticed within it.
const WAIT_RECHECK: Duration = Duration::from_secs(30);
/// Back-off after a 429 without `Retry-After` or a failed connection, and its
/// cap.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What the sender needs.
pub struct SendContext {
    pub store: Store,
    pub api: Arc<ApiClient>,
    pub recorder: Recorder<Claim>,
    pub counters: Arc<Counters>,
    pub campaign_id: i64,
    /// The sender pool; a message whose row names its sender uses that.
    /// `None` when every row names its own.
    pub pool: Option<SenderPool>,
    pub rate: f64,
    /// `--rate-per-from`: each number's ceiling.
    pub rate_per_from: Option<f64>,
    /// What the rates count.
    pub rate_unit: RateUnit,
    pub concurrency: u32,
    pub poll_delay: Duration,
    pub track_for: Duration,
    pub on_ambiguous: AmbiguousPolicy,
    /// Send attempts after which an ambiguous answer leaves a message
    /// `unknown` even under `--on-ambiguous retry`.
    pub max_attempts: i64,
    /// Recent sends the circuit breaker looks at, and the error ratio that
    /// trips it.
    pub breaker_window: usize,
    pub breaker_threshold: f64,
}

/// Why the sender stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Fatal(#[from] FatalError),
    #[error("the API is unreachable ({detail}); the campaign is saved, run the same command again to resume")]
    Unreachable { detail: String },
    #[error(
        "stopped: {percent:.0}% of the last {window} sends failed (last: {detail}); the campaign is \
         saved. Check the tenant's status, then run the same command again to resume"
    )]
    CircuitOpen {
        percent: f64,
        window: usize,
        detail: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The sender's state between steps.
pub struct Sender {
    shared: Arc<Shared>,
    /// What may be sent when: start, deadline, windows, daily cap.
    gate: Gate,
    claimed: VecDeque<ClaimedMessage>,
    /// The next batch, being claimed while the current one is sent, so the
    /// sender does not wait for the database between batches.
    next_claim: Option<ClaimFuture>,
    batch: usize,
    /// Why sending waits now, as last told; a wait is told once.
    waiting: Option<String>,
}

/// Shared between the sender and its request tasks.
struct Shared {
    ctx: SendContext,
    harness: Harness<SendError>,
    /// Held for a few instructions and never across an await: a plain
    /// mutex.
    pacing: Mutex<Pacing>,
}

/// A claim on its way through the recorder.
type ClaimFuture =
    Pin<Box<dyn Future<Output = Result<Vec<ClaimedMessage>, StoreError>> + Send + Sync>>;

impl Sender {
    pub fn new(ctx: SendContext, gate: Gate) -> Sender {
        let rate = ctx.rate.max(0.001);
        // Claim about 10 ms worth of messages at a time, so a claimed message
        // waits little for its turn: one message at rates up to 100/s, more
        // only where a claim per message would hold the sender back. Capped
        // by --concurrency, so what a crash can leave `unknown` stays
        // proportional to it.
        let batch = ((rate * 0.01).ceil() as usize)
            .clamp(1, MAX_CLAIM)
            .min(CLAIM_PER_SLOT * ctx.concurrency.max(1) as usize);
        let breaker = CircuitBreaker::new(ctx.breaker_window, ctx.breaker_threshold);
        let pacing = Pacing::new(
            rate,
            ctx.rate_per_from,
            breaker,
            Instant::now(),
            SmallRng::from_os_rng(),
        );
        Sender {
            shared: Arc::new(Shared {
                harness: Harness::new(ctx.concurrency),
                ctx,
                pacing: Mutex::new(pacing),
            }),
            gate,
            claimed: VecDeque::new(),
            next_claim: None,
            batch,
            waiting: None,
        }
    }

    /// Sends until nothing is pending, `cancel` fires, or an error stops the
    /// run; then waits for the requests in flight and returns.
    pub async fn run_until_stopped(mut self, cancel: CancellationToken) -> Result<(), SendError> {
        let result = worker::run(&mut self, &cancel).await;
        let result = self.put_back_unsent(result).await;
        self.shared.harness.finish(result).await
    }

    /// Refills the claimed messages: the batch claimed ahead, or, when none
    /// is on its way (the start, or the end of the queue), one claimed now.
    async fn claim_next(&mut self, now: Now, open: &Claim) -> Result<Step, SendError> {
        let claimed = match self.next_claim.take() {
            Some(next) => next.await?,
            None => Vec::new(),
        };
        let claimed = if claimed.is_empty() {
            self.claim(open).await?
        } else {
            claimed
        };
        self.claimed.extend(claimed);
        // A full batch says more may wait: claim the next one ahead.
        if self.claimed.len() == self.batch && self.batch > 1 {
            self.next_claim = Some(Box::pin(self.claim(open)));
        }
        if !self.claimed.is_empty() {
            self.wait_over();
            return Ok(Step::Worked);
        }
        // Nothing claimable, but requests in flight may still put messages
        // back to `pending`.
        if self.shared.harness.in_flight() > 0 {
            return Ok(Step::Idle {
                until: now.instant + IDLE_WAKE,
            });
        }
        // Once the last answers are written, a last look catches messages
        // they put back in the queue.
        let ctx = &self.shared.ctx;
        ctx.recorder.flush().await;
        if !ctx.store.has_pending(ctx.campaign_id).await? {
            return Ok(Step::Done);
        }
        let claimed = self.claim(open).await?;
        if !claimed.is_empty() {
            self.claimed.extend(claimed);
            self.wait_over();
            return Ok(Step::Worked);
        }
        // Messages wait, but none may be sent now: say why, and until when.
        let (why, until) = self.why_nothing_is_sendable(now, open).await?;
        self.wait_for(why);
        Ok(Step::Idle {
            until: now.instant_at(until).min(now.instant + WAIT_RECHECK),
        })
    }

    /// Why no pending message may be sent at `now` (the daily cap, or the
    /// windows of the zones that still have messages), and when that may
    /// change.
    async fn why_nothing_is_sendable(
        &self,
        now: Now,
        open: &Claim,
    ) -> Result<(String, jiff::Timestamp), SendError> {
        let ctx = &self.shared.ctx;
        let at = now.timestamp();
        let rules = self.gate.rules();
        if let Some(cap) = &open.daily_cap {
            if ctx.store.claimed_on(ctx.campaign_id, &cap.day).await? >= cap.cap {
                let (_, next_day) = crate::schedule::day_bounds(at, &rules.zone);
                return Ok((
                    format!(
                        "the daily cap of {} messages (--max-per-day) is reached; sending resumes \
                         at {} {}",
                        cap.cap,
                        local_time(next_day, &rules.zone),
                        rules.zone_name
                    ),
                    next_day,
                ));
            }
        }
        let pending = ctx.store.pending_by_zone_set(ctx.campaign_id).await?;
        Ok(match self.gate.next_opening(&pending, at) {
            Some((opens, set, count)) => {
                let zone = set.zones.first().unwrap_or(&rules.zone);
                (
                    format!(
                        "outside the send window; the next window opens {} {} ({count} \
                         recipient(s))",
                        local_time(opens, zone),
                        self.gate.label(set)
                    ),
                    opens,
                )
            }
            None => {
                let count: i64 = pending.iter().map(|&(_, n)| n).sum();
                (
                    format!(
                        "{count} recipient(s) wait for a send window that does not open in the \
                         coming week in all of their zones; change --window, or `bpsms cancel` \
                         them"
                    ),
                    at.checked_add(WAIT_RECHECK).unwrap_or(jiff::Timestamp::MAX),
                )
            }
        })
    }

    /// Tells the operator why sending waits, once per reason.
    fn wait_for(&mut self, why: String) {
        if self.waiting.as_ref() != Some(&why) {
            // Not through tracing: a wait of hours must be explained
            // whatever RUST_LOG says.
            crate::errln!("Waiting: {why}");
            self.shared.ctx.counters.set_waiting(Some(why.clone()));
            self.waiting = Some(why);
        }
    }

    /// Sending goes on after a wait.
    fn wait_over(&mut self) {
        if self.waiting.take().is_some() {
            crate::errln!("Sending again");
            self.shared.ctx.counters.set_waiting(None);
        }
    }

    /// The deadline passed: nothing more is sent. Once the requests in
    /// flight are answered (a refusal may put a message back), every
    /// message not sent becomes `cancelled`.
    async fn reach_deadline(
        &mut self,
        now: Now,
        deadline: jiff::Timestamp,
    ) -> Result<Step, SendError> {
        self.put_back_unsent(Ok(())).await?;
        if self.shared.harness.in_flight() > 0 {
            return Ok(Step::Idle {
                until: now.instant + IDLE_WAKE,
            });
        }
        let ctx = &self.shared.ctx;
        ctx.recorder.flush().await;
        let reason = format!(
            "not sent: the deadline --not-after {} passed first",
            crate::clock::rfc3339(deadline.as_millisecond())
        );
        let n = ctx
            .store
            .cancel_pending(ctx.campaign_id, &reason, now.unix_ms)
            .await?;
        if n > 0 {
            tracing::warn!(
                "the deadline (--not-after) passed: {n} message(s) not sent are now `cancelled`"
            );
        }
        self.wait_over();
        Ok(Step::Done)
    }

    /// Claims the next batch from the open zone sets, in the recorder's
    /// next transaction.
    fn claim(&self, open: &Claim) -> impl Future<Output = Result<Vec<ClaimedMessage>, StoreError>> {
        self.shared.ctx.recorder.claim(Claim {
            limit: self.batch,
            ..open.clone()
        })
    }

    /// Messages claimed but not yet sent go back to the queue: their request
    /// never left.
    async fn put_back_unsent(&mut self, result: Result<(), SendError>) -> Result<(), SendError> {
        let result = match self.next_claim.take() {
            Some(next) => match next.await {
                Ok(claimed) => {
                    self.claimed.extend(claimed);
                    result
                }
                Err(error) => result.and(Err(error.into())),
            },
            None => result,
        };
        for message in std::mem::take(&mut self.claimed) {
            self.put_back(message, "claimed but not sent before the run stopped");
        }
        result
    }

    /// Which claimed message leaves next, and from which number: the first
    /// whose number's ceiling (`--rate-per-from`) and the campaign's let it
    /// leave now, so that one busy number does not hold the others back.
    /// Otherwise, when the first of them may leave.
    fn next_to_leave(&self, now: Instant) -> Result<Result<(usize, E164), Instant>, SendError> {
        let ctx = &self.shared.ctx;
        let pacing = self.shared.pacing();
        let mut soonest: Option<Instant> = None;
        for (index, message) in self.claimed.iter().enumerate().take(LOOK_AHEAD) {
            let from = sender_of(ctx, message).ok_or_else(|| {
                SendError::Store(StoreError::Corrupt(format!(
                    "message {} has no sender: its row names none and the campaign has no --from",
                    message.message_id
                )))
            })?;
            match pacing.wait_for(now, from, ctx.rate_unit.weight(message.segments)) {
                None => return Ok(Ok((index, from.clone()))),
                Some(until) => soonest = Some(soonest.map_or(until, |s| s.min(until))),
            }
        }
        Ok(Err(soonest.unwrap_or(now + IDLE_WAKE)))
    }

    /// A claimed message goes back to the queue, its attempt not counted:
    /// its request never left.
    fn put_back(&self, message: ClaimedMessage, why: &str) {
        self.shared.ctx.recorder.record(Change::Unsent {
            message_id: message.message_id,
            to: MessageState::Pending,
            detail: why.into(),
            count_attempt: false,
        });
    }
}

impl Worker for Sender {
    type Error = SendError;

    /// Sends the next claimed message when pacing allows it at `now`;
    /// claims a batch when none is left. Pacing is checked before the claim
    /// (at modest rates a message is then `sending` only for the moment
    /// before its request leaves, which keeps what a crash leaves `unknown`
    /// close to the requests in flight) and again after it, right before the
    /// request leaves, so the claim's own time cannot squeeze two sends
    /// closer than allowed.
    async fn step(&mut self, slot: OwnedSemaphorePermit, now: Now) -> Result<Step, SendError> {
        let wait = self.shared.pacing().wait(now.instant, 1);
        if let Some(until) = wait {
            return Ok(Step::Paced { until });
        }
        let at = now.timestamp();
        let open = match self.gate.at(at) {
            Verdict::Deadline { at: deadline } => return self.reach_deadline(now, deadline).await,
            Verdict::NotYet { until } => {
                self.put_back_unsent(Ok(())).await?;
                self.wait_for(format!(
                    "nothing is sent before --start-at {}",
                    crate::clock::rfc3339(until.as_millisecond())
                ));
                return Ok(Step::Idle {
                    until: now.instant_at(until).min(now.instant + WAIT_RECHECK),
                });
            }
            Verdict::Open {
                zone_sets,
                daily_cap,
                ..
            } => Claim {
                campaign_id: self.shared.ctx.campaign_id,
                limit: self.batch,
                zone_sets,
                daily_cap,
            },
        };
        if self.claimed.is_empty() {
            return self.claim_next(now, &open).await;
        }
        let (index, from) = match self.next_to_leave(now.instant)? {
            Ok(next) => next,
            Err(until) => return Ok(Step::Paced { until }),
        };
        let Some(message) = self.claimed.remove(index) else {
            return Ok(Step::Worked);
        };
        // Claimed a moment ago: its window may have closed since.
        if !self.gate.may_send(message.zone_set, at) {
            self.put_back(message, "its send window closed before it was sent");
            return Ok(Step::Worked);
        }
        let cost = self.shared.ctx.rate_unit.weight(message.segments);
        // Noted as leaving now, not at the step's start: the ceiling then
        // counts the request from the moment closest to its departure, so
        // the step's own work cannot bring two sends closer at the API.
        self.shared.pacing().sent(Instant::now(), &from, cost);
        let shared = self.shared.clone();
        self.shared
            .harness
            .spawn(async move { send_one(shared, message, from, slot).await });
        Ok(Step::Worked)
    }

    fn woken(&self) -> impl Future<Output = ()> + Send {
        self.shared.ctx.recorder.applied()
    }

    fn harness(&self) -> &Harness<SendError> {
        &self.shared.harness
    }
}

/// Sends one message from `from` and records what the answer means.
async fn send_one(
    shared: Arc<Shared>,
    message: ClaimedMessage,
    from: E164,
    slot: OwnedSemaphorePermit,
) {
    let ctx = &shared.ctx;
    let outcome = ctx
        .api
        .send(
            message.phone_e164.as_str(),
            from.as_str(),
            &message.body,
            &message.media_urls,
        )
        .await;
    drop(slot);
    let now = Now::read();
    let answered = shared.pacing().after_answer(&outcome, now.instant);
    if let Some(rate) = answered.new_rate {
        ctx.counters.set_rate(rate);
    }
    if let Some(error) = answered.stop {
        shared.harness.stop_with(error);
    }
    let change = decide(ctx, &message, outcome, now.unix_ms);
    ctx.counters.record_send(&change);
    ctx.recorder.record(change);
}

/// The number a message is sent from: the one its row names, else the
/// pool's pick for its recipient. The import makes a row without either
/// `invalid`, so `None` means a database changed by hand.
fn sender_of<'a>(ctx: &'a SendContext, message: &'a ClaimedMessage) -> Option<&'a E164> {
    match (&message.from_number, &ctx.pool) {
        (Some(from), _) => Some(from),
        (None, Some(pool)) => Some(pool.pick(&message.phone_e164)),
        (None, None) => None,
    }
}

/// The day and time `at` reads in `zone`, e.g. `Thu 09:00`.
fn local_time(at: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> String {
    at.to_zoned(zone.clone()).strftime("%a %H:%M").to_string()
}

/// The change an answer makes to a message (pure, so it is tested alone).
fn decide(ctx: &SendContext, message: &ClaimedMessage, outcome: SendOutcome, now: i64) -> Change {
    let unsent = |to: MessageState, detail: String, count_attempt: bool| Change::Unsent {
        message_id: message.message_id,
        to,
        detail,
        count_attempt,
    };
    match outcome {
        SendOutcome::Accepted {
            sid,
            message: answer,
        } => {
            // A sid the store cannot keep (control characters) cannot be
            // polled: whether the message went out is then unclear.
            let sid = match MessageSid::parse(&sid) {
                Ok(sid) => sid,
                Err(error) => {
                    let detail = error.to_string();
                    return decide(ctx, message, SendOutcome::Ambiguous { detail }, now);
                }
            };
            let raw_status = answer
                .status
                .clone()
                .unwrap_or_else(|| "queued".into())
                .trim()
                .to_ascii_lowercase();
            let event = Event::Accepted(RemoteStatus::parse(&raw_status));
            let to = transition(MessageState::Sending, message.kind, &event)
                .unwrap_or(MessageState::Queued);
            let track_until = now.saturating_add(duration_ms(ctx.track_for));
            let next_poll_at = (!to.is_final(message.kind)).then(|| {
                now.saturating_add(duration_ms(ctx.poll_delay))
                    .min(track_until)
            });
            Change::Accepted {
                message_id: message.message_id,
                to,
                sid,
                remote_status: raw_status,
                error_code: answer.error_code,
                error_message: answer.error_message,
                sent_at: now,
                track_until,
                next_poll_at,
            }
        }
        SendOutcome::Rejected { code, text } => {
            debug_assert!(
                transition(MessageState::Sending, message.kind, &Event::Rejected).is_ok()
            );
            Change::Rejected {
                message_id: message.message_id,
                error_code: code,
                error_message: text,
            }
        }
        SendOutcome::NotAccepted {
            detail,
            rate_limited,
            ..
        } => unsent(MessageState::Pending, detail, !rate_limited),
        SendOutcome::Ambiguous { detail } => {
            // At least once, but not forever: after MAX_ATTEMPTS the operator
            // decides, as under `hold`.
            let policy = if message.attempts >= ctx.max_attempts {
                AmbiguousPolicy::Hold
            } else {
                ctx.on_ambiguous
            };
            let to = transition(
                MessageState::Sending,
                message.kind,
                &Event::Ambiguous(policy),
            )
            .unwrap_or(MessageState::Unknown);
            let reason = match to {
                MessageState::Unknown => format!("ambiguous answer: {detail}; {UNKNOWN_ADVICE}"),
                _ => format!("ambiguous answer: {detail}"),
            };
            unsent(to, reason, true)
        }
        SendOutcome::Fatal(error) => unsent(MessageState::Pending, error.to_string(), false),
    }
}

impl Shared {
    fn pacing(&self) -> MutexGuard<'_, Pacing> {
        // A panic while pacing was held leaves plain numbers behind; they
        // are still usable.
        self.pacing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When requests may leave, and what the answers say about the API: pure
/// state, given the time.
struct Pacing {
    /// The even schedule at the adaptive rate, paused by a 429 or an
    /// unreachable API.
    schedule: EvenSchedule,
    /// The hard ceiling: the configured rate, whatever the adaptive one.
    ceiling: RateCeiling,
    /// Each number's ceiling (`--rate-per-from`), if any.
    per_sender: Option<PerSenderCeilings>,
    rate: AdaptiveRate,
    /// What 429s have been told to people so far.
    rate_limit_notices: RateLimitNotices,
    backoff: Backoff,
    breaker: CircuitBreaker,
    unreachable_in_a_row: u32,
    /// What the last failed send said, for the breaker's message (the send
    /// that trips it may be a success among too many failures).
    last_failure: String,
    rng: SmallRng,
}

/// What an answer changed in pacing.
#[derive(Debug, Default)]
struct Answered {
    /// The adaptive rate moved to this.
    new_rate: Option<f64>,
    /// The run must stop.
    stop: Option<SendError>,
}

impl Pacing {
    fn new(
        rate: f64,
        rate_per_from: Option<f64>,
        breaker: CircuitBreaker,
        now: Instant,
        rng: SmallRng,
    ) -> Pacing {
        Pacing {
            schedule: EvenSchedule::new(now, MAX_SCHEDULE_LAG),
            ceiling: RateCeiling::new(rate),
            per_sender: rate_per_from.map(PerSenderCeilings::new),
            rate: AdaptiveRate::new(rate, now),
            rate_limit_notices: RateLimitNotices::default(),
            backoff: Backoff::new(BACKOFF_START, BACKOFF_CAP),
            breaker,
            unreachable_in_a_row: 0,
            last_failure: String::new(),
            rng,
        }
    }

    /// Until when the next request, costing `cost` (1, or its segments),
    /// must wait, as seen at `now`; `None`: it may leave now.
    fn wait(&self, now: Instant, cost: u32) -> Option<Instant> {
        self.schedule.wait(now).or_else(|| {
            self.ceiling
                .earliest_for(cost)
                .filter(|&earliest| earliest > now)
        })
    }

    /// As [`Pacing::wait`], for a request from `from`: its number's ceiling
    /// counts too.
    fn wait_for(&self, now: Instant, from: &E164, cost: u32) -> Option<Instant> {
        let own = self
            .per_sender
            .as_ref()
            .and_then(|ceilings| ceilings.earliest(from, cost))
            .filter(|&earliest| earliest > now);
        match (self.wait(now, cost), own) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Notes a request from `from`, costing `cost`, that left at `now`: the
    /// schedule's next turn comes `cost` intervals later.
    fn sent(&mut self, now: Instant, from: &E164, cost: u32) {
        let cost = cost.max(1);
        self.schedule
            .take(now, self.rate.current() / f64::from(cost));
        self.ceiling.record_weighted(now, cost);
        if let Some(ceilings) = &mut self.per_sender {
            ceilings.record(from, now, cost);
        }
    }

    /// Adjusts pacing to an answer that came at `now`.
    fn after_answer(&mut self, outcome: &SendOutcome, now: Instant) -> Answered {
        let mut answered = Answered::default();
        match outcome {
            SendOutcome::NotAccepted {
                rate_limited,
                retry_after,
                detail,
            } => {
                let wait = retry_after.unwrap_or_else(|| self.backoff.next_wait(&mut self.rng));
                if *rate_limited {
                    answered.new_rate = self.rate.on_rate_limited(now);
                    let rate = self.rate.current();
                    if let Some(notice) = self.rate_limit_notices.on_rate_limited(now, rate) {
                        tracing::warn!("{notice}");
                    }
                } else {
                    self.unreachable_in_a_row += 1;
                    if self.unreachable_in_a_row >= MAX_CONSECUTIVE_UNREACHABLE {
                        answered.stop = Some(SendError::Unreachable {
                            detail: detail.clone(),
                        });
                    }
                    tracing::warn!(
                        "not accepted ({detail}); pausing sends for {}",
                        rounded(wait)
                    );
                }
                self.schedule.pause_until(now + wait);
            }
            SendOutcome::Fatal(error) => answered.stop = Some(SendError::Fatal(error.clone())),
            SendOutcome::Accepted { .. } => {
                self.backoff.reset();
                self.unreachable_in_a_row = 0;
                answered.new_rate = self.rate.on_accepted(now);
                if let Some(rate) = answered.new_rate {
                    tracing::info!("send rate back up to {}/s", rate_text(rate));
                }
            }
            SendOutcome::Rejected { .. } | SendOutcome::Ambiguous { .. } => {
                self.unreachable_in_a_row = 0;
            }
        }
        // The breaker counts failed sends among answered ones; a 429 is flow
        // control and a fatal answer stops the run anyway.
        let sample = match outcome {
            SendOutcome::Ambiguous { detail }
            | SendOutcome::NotAccepted {
                rate_limited: false,
                detail,
                ..
            } => Some(Some(detail)),
            SendOutcome::Accepted { .. } | SendOutcome::Rejected { .. } => Some(None),
            SendOutcome::NotAccepted { .. } | SendOutcome::Fatal(_) => None,
        };
        if let Some(failure) = sample {
            if let Some(detail) = failure {
                self.last_failure.clone_from(detail);
            }
            if let Some(ratio) = self.breaker.record(failure.is_some()) {
                answered.stop.get_or_insert(SendError::CircuitOpen {
                    percent: ratio * 100.0,
                    window: self.breaker.window(),
                    detail: self.last_failure.clone(),
                });
            }
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::MessageAnswer;
    use crate::domain::phone::E164;
    use crate::domain::state::MessageKind;
    use crate::domain::state::MessageState as S;
    use crate::worker::testing::rig;

    fn message(kind: MessageKind) -> ClaimedMessage {
        ClaimedMessage {
            message_id: 7,
            row_number: 1,
            phone_e164: E164::from_stored("+14155550101").expect("number"),
            kind,
            body: "hi".into(),
            media_urls: vec![],
            attempts: 1,
            zone_set: 0,
            from_number: None,
            segments: 1,
        }
    }

    async fn ctx(policy: AmbiguousPolicy) -> (SendContext, tempfile::TempDir) {
        let rig = rig().await;
        let ctx = SendContext {
            store: rig.store,
            api: rig.api,
            recorder: rig.recorder,
            counters: Arc::new(Counters::default()),
            campaign_id: 1,
            rate_per_from: None,
            rate_unit: RateUnit::Messages,
            pool: Some(SenderPool::single(
                E164::from_stored("+16505550100").expect("sender"),
            )),
            rate: 10.0,
            concurrency: 2,
            poll_delay: Duration::from_secs(15),
            track_for: Duration::from_secs(3600),
            on_ambiguous: policy,
            max_attempts: 5,
            breaker_window: 100,
            breaker_threshold: 0.5,
        };
        (ctx, rig.dir)
    }

    fn accepted(status: &str) -> SendOutcome {
        SendOutcome::Accepted {
            sid: "abc".into(),
            message: Box::new(MessageAnswer {
                status: Some(status.into()),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn accepted_sms_is_scheduled_for_its_first_poll() {
        let (ctx, _dir) = ctx(AmbiguousPolicy::Hold).await;
        let change = decide(&ctx, &message(MessageKind::Sms), accepted("Queued"), 1_000);
        let Change::Accepted {
            to,
            next_poll_at,
            track_until,
            remote_status,
            ..
        } = change
        else {
            panic!("expected accepted: {change:?}");
        };
        assert_eq!(to, S::Queued);
        assert_eq!(remote_status, "queued");
        assert_eq!(next_poll_at, Some(16_000));
        assert_eq!(track_until, 3_601_000);
    }

    #[tokio::test]
    async fn accepted_as_failed_is_final_at_once() {
        let (ctx, _dir) = ctx(AmbiguousPolicy::Hold).await;
        let change = decide(&ctx, &message(MessageKind::Sms), accepted("failed"), 0);
        assert!(matches!(
            change,
            Change::Accepted {
                to: S::Failed,
                next_poll_at: None,
                ..
            }
        ));
        let mms = decide(&ctx, &message(MessageKind::Mms), accepted("sent"), 0);
        assert!(matches!(
            mms,
            Change::Accepted {
                to: S::Sent,
                next_poll_at: None,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn ambiguous_follows_the_policy() {
        let ambiguous = || SendOutcome::Ambiguous {
            detail: "HTTP 502".into(),
        };
        let (hold, _a) = ctx(AmbiguousPolicy::Hold).await;
        assert!(matches!(
            decide(&hold, &message(MessageKind::Sms), ambiguous(), 0),
            Change::Unsent {
                to: S::Unknown,
                count_attempt: true,
                ..
            }
        ));
        let (retry, _b) = ctx(AmbiguousPolicy::Retry).await;
        assert!(matches!(
            decide(&retry, &message(MessageKind::Sms), ambiguous(), 0),
            Change::Unsent { to: S::Pending, .. }
        ));
        let worn_out = ClaimedMessage {
            attempts: 5,
            ..message(MessageKind::Sms)
        };
        assert!(matches!(
            decide(&retry, &worn_out, ambiguous(), 0),
            Change::Unsent { to: S::Unknown, .. }
        ));
    }

    #[tokio::test]
    async fn a_429_goes_back_without_counting_an_attempt() {
        let (ctx, _dir) = ctx(AmbiguousPolicy::Hold).await;
        let outcome = rate_limited(Some(Duration::from_secs(1)));
        assert!(matches!(
            decide(&ctx, &message(MessageKind::Sms), outcome, 0),
            Change::Unsent {
                to: S::Pending,
                count_attempt: false,
                ..
            }
        ));
    }

    const MS: Duration = Duration::from_millis(1);

    fn sender() -> E164 {
        E164::from_stored("+16505550100").expect("sender")
    }

    fn pacing(rate: f64, start: Instant) -> Pacing {
        let breaker = CircuitBreaker::new(100, 0.5);
        Pacing::new(rate, None, breaker, start, SmallRng::seed_from_u64(7))
    }

    fn rate_limited(retry_after: Option<Duration>) -> SendOutcome {
        SendOutcome::NotAccepted {
            detail: "HTTP 429".into(),
            rate_limited: true,
            retry_after,
        }
    }

    #[test]
    fn sends_leave_on_an_even_schedule_under_the_ceiling() {
        let start = Instant::now();
        let mut pacing = pacing(2.0, start);
        assert_eq!(pacing.wait(start, 1), None);
        pacing.sent(start, &sender(), 1);
        assert_eq!(pacing.wait(start, 1), Some(start + 500 * MS));
        pacing.sent(start + 500 * MS, &sender(), 1);
        // The third send's turn comes at one second, but two sends already
        // left in the second before it: the ceiling holds it a little.
        let third = start + 1000 * MS;
        let held = pacing.wait(third, 1).expect("held by the ceiling");
        assert!(held > third && held <= third + 10 * MS, "{held:?}");
        assert_eq!(pacing.wait(held, 1), None);
    }

    #[test]
    fn a_429_pauses_sends_and_halves_the_rate() {
        let start = Instant::now();
        let mut pacing = pacing(10.0, start);
        pacing.sent(start, &sender(), 1);
        let answered = pacing.after_answer(&rate_limited(Some(2000 * MS)), start + 50 * MS);
        assert_eq!(answered.new_rate, Some(5.0));
        assert!(answered.stop.is_none());
        assert_eq!(pacing.wait(start + 100 * MS, 1), Some(start + 2050 * MS));
        // After the pause, turns come at the halved rate.
        pacing.sent(start + 2050 * MS, &sender(), 1);
        assert_eq!(pacing.wait(start + 2050 * MS, 1), Some(start + 2250 * MS));
        // Without Retry-After the pause is a jittered back-off.
        let answered = pacing.after_answer(&rate_limited(None), start + 2100 * MS);
        assert_eq!(answered.new_rate, Some(2.5));
        let resumes = pacing.wait(start + 2100 * MS, 1).expect("paused");
        assert!(resumes <= start + 3100 * MS, "{resumes:?}");
    }

    #[test]
    fn an_unreachable_api_stops_the_run() {
        let now = Instant::now();
        let mut pacing = pacing(10.0, now);
        let unreachable = SendOutcome::NotAccepted {
            detail: "connection refused".into(),
            rate_limited: false,
            retry_after: None,
        };
        for _ in 1..MAX_CONSECUTIVE_UNREACHABLE {
            assert!(pacing.after_answer(&unreachable, now).stop.is_none());
        }
        assert!(matches!(
            pacing.after_answer(&unreachable, now).stop,
            Some(SendError::Unreachable { .. })
        ));
    }

    #[tokio::test]
    async fn a_step_waits_for_its_turn_and_ends_on_an_empty_queue() {
        let (ctx, _dir) = ctx(AmbiguousPolicy::Hold).await;
        let gate = Gate::new(
            crate::campaign::gate_rules(&crate::store::SendRules::default()).expect("rules"),
            crate::gate::resolve_zone_sets(vec![(0, String::new())]),
        );
        let mut sender = Sender::new(ctx, gate);
        let now = Now::read();
        sender
            .shared
            .pacing()
            .after_answer(&rate_limited(Some(1000 * MS)), now.instant);
        let slot = sender.shared.harness.free_slot().expect("a free slot");
        let paused = sender.step(slot, now).await.expect("step");
        assert_eq!(
            paused,
            Step::Paced {
                until: now.instant + 1000 * MS
            }
        );
        let later = Now {
            instant: now.instant + 1000 * MS,
            unix_ms: now.unix_ms + 1000,
        };
        let slot = sender.shared.harness.free_slot().expect("a free slot");
        assert_eq!(sender.step(slot, later).await.expect("step"), Step::Done);
    }
}
