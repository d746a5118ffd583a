//! The send loop: claims pending messages (durably `sending`), paces the
//! requests on an even schedule under the hard ceiling of `--rate`, caps
//! those in flight, and turns each answer into a [`Change`] for the
//! recorder.
//!
//! The loop is [`try_send_next`] (one message) inside [`run_until_stopped`].
//! A stop cuts only waits short: a claimed message is either sent or put
//! back in the queue, and a request that left is always answered and
//! recorded.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{ApiClient, FatalError, SendOutcome};
use crate::clock::{duration_ms, now_ms};
use crate::domain::ids::MessageSid;
use crate::domain::state::{transition, AmbiguousPolicy, Event, MessageState, RemoteStatus};
use crate::pacing::{AdaptiveRate, Backoff, CircuitBreaker, RateCeiling};
use crate::progress::Counters;
use crate::recorder::Recorder;
use crate::store::{Change, Claim, ClaimedMessage, Store, StoreError};

/// Consecutive "could not connect" answers after which the run stops.
const MAX_CONSECUTIVE_UNREACHABLE: u32 = 8;
/// The resolution of tokio's timers.
const TIMER_TICK: Duration = Duration::from_millis(1);
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
/// Back-off after a 429 without `Retry-After` or a failed connection, and its
/// cap.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// What the send loop needs.
pub struct SendContext {
    pub store: Store,
    pub api: Arc<ApiClient>,
    pub recorder: Recorder,
    pub counters: Arc<Counters>,
    pub campaign_id: i64,
    pub from: String,
    pub rate: f64,
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

/// Why the send loop stopped early.
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

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A message was handed to a worker.
    Dispatched,
    /// Nothing is pending and nothing is in flight.
    Idle,
    /// The run was cancelled or stopped while waiting.
    Halted,
}

/// Resolves when the run is cancelled from outside or stopped from inside.
async fn halted(cancel: &CancellationToken, stopped: &CancellationToken) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = stopped.cancelled() => {}
    }
}

/// Shared between the loop and its request tasks.
struct Shared {
    ctx: SendContext,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Pacing state shared by the loop and the request tasks. Held for a
    /// few instructions and never across an await: a plain mutex.
    pacing: std::sync::Mutex<Pacing>,
    /// The first error that must stop the run.
    stop: std::sync::Mutex<Option<SendError>>,
    stopped: CancellationToken,
}

struct Pacing {
    /// No request leaves before this instant (429, unreachable API).
    pause_until: Instant,
    /// The next slot of the even schedule at the adaptive rate.
    next_slot: Instant,
    /// The hard ceiling: the configured rate, whatever the adaptive one.
    ceiling: RateCeiling,
    rate: AdaptiveRate,
    backoff: Backoff,
    breaker: CircuitBreaker,
    unreachable_in_a_row: u32,
    /// What the last failed send said, for the breaker's message (the send
    /// that trips it may be a success among too many failures).
    last_failure: String,
    rng: SmallRng,
}

/// The loop's private state between steps.
pub struct Sender {
    shared: Arc<Shared>,
    claimed: std::collections::VecDeque<ClaimedMessage>,
    /// The next batch, being claimed while the current one is sent, so the
    /// loop does not wait for the database between batches.
    next_claim: Option<ClaimFuture>,
    batch: usize,
}

impl Sender {
    pub fn new(ctx: SendContext) -> Sender {
        let rate = ctx.rate.max(0.001);
        // Claim about 10 ms worth of messages at a time, so a claimed message
        // waits little for its turn: one message at rates up to 100/s, more
        // only where a claim per message would hold the sender back. Capped
        // by --concurrency, so what a crash can leave `unknown` stays
        // proportional to it.
        let batch = ((rate * 0.01).ceil() as usize)
            .clamp(1, MAX_CLAIM)
            .min(CLAIM_PER_SLOT * ctx.concurrency.max(1) as usize);
        let permits = Arc::new(Semaphore::new(ctx.concurrency.max(1) as usize));
        let breaker = CircuitBreaker::new(ctx.breaker_window, ctx.breaker_threshold);
        Sender {
            shared: Arc::new(Shared {
                ctx,
                permits,
                tasks: TaskTracker::new(),
                pacing: std::sync::Mutex::new(Pacing {
                    pause_until: Instant::now(),
                    next_slot: Instant::now(),
                    ceiling: RateCeiling::new(rate),
                    rate: AdaptiveRate::new(rate, std::time::Instant::now()),
                    backoff: Backoff::new(BACKOFF_START, BACKOFF_CAP),
                    breaker,
                    unreachable_in_a_row: 0,
                    last_failure: String::new(),
                    rng: SmallRng::from_os_rng(),
                }),
                stop: std::sync::Mutex::new(None),
                stopped: CancellationToken::new(),
            }),
            claimed: Default::default(),
            next_claim: None,
            batch,
        }
    }

    /// Hands one message to a request task, waiting for the rate limiter and
    /// a free in-flight slot.
    pub async fn try_send_next(&mut self, cancel: &CancellationToken) -> Result<Step, SendError> {
        let shared = &self.shared;
        // Only waits are cut short by a stop: a claim that committed, or a
        // message taken from `claimed`, must reach a request or the queue.
        let halt = || halted(cancel, &shared.stopped);
        let permit = tokio::select! {
            permit = shared.permits.clone().acquire_owned() => permit
                .map_err(|_| StoreError::Corrupt("send permits closed".into()))?,
            _ = halt() => return Ok(Step::Halted),
        };
        // Wait for our turn before claiming: at modest rates a message is
        // `sending` only for the moment before its request leaves, which
        // keeps the window of messages a crash leaves `unknown` close to
        // those in flight (at high rates, see `MAX_CLAIM`).
        let turn = shared.next_turn();
        // Timers tick in milliseconds: a turn less than one tick away is
        // taken now (the slots still add up to the rate over any second).
        if turn > Instant::now() + TIMER_TICK {
            tokio::select! {
                _ = tokio::time::sleep_until(turn) => {}
                _ = halt() => return Ok(Step::Halted),
            }
        }
        if self.claimed.is_empty() {
            // The batch claimed ahead, or, when none is on its way (the
            // start, or the end of the queue), one claimed now.
            let claimed = match self.next_claim.take() {
                Some(next) => next.await?,
                None => Vec::new(),
            };
            let claimed = if claimed.is_empty() {
                self.claim().await?
            } else {
                claimed
            };
            self.claimed.extend(claimed);
            // A full batch says more may wait: claim the next one ahead.
            if self.claimed.len() == self.batch && self.batch > 1 {
                self.next_claim = Some(Box::pin(self.claim()));
            }
        }
        if self.claimed.is_empty() {
            drop(permit);
            return Ok(tokio::select! {
                step = self.wait_for_work() => step,
                _ = halt() => Step::Halted,
            });
        }
        // Checked after the claim, right before the request leaves, so the
        // claim's own time cannot squeeze two sends closer than allowed.
        let earliest = shared.pacing().ceiling.earliest();
        if let Some(earliest) = earliest {
            tokio::select! {
                _ = tokio::time::sleep_until(Instant::from_std(earliest)) => {}
                _ = halt() => return Ok(Step::Halted),
            }
        }
        if let Some(message) = self.claimed.pop_front() {
            shared.pacing().ceiling.record(std::time::Instant::now());
            let task_shared = shared.clone();
            shared
                .tasks
                .spawn(async move { send_one(task_shared, message, permit).await });
        }
        Ok(Step::Dispatched)
    }

    /// Claims the next batch, in the recorder's next transaction.
    fn claim(&self) -> impl std::future::Future<Output = Result<Vec<ClaimedMessage>, StoreError>> {
        self.shared.ctx.recorder.claim(Claim {
            campaign_id: self.shared.ctx.campaign_id,
            limit: self.batch,
        })
    }

    /// Nothing claimable: either all is done, or requests in flight may still
    /// put messages back to `pending`.
    async fn wait_for_work(&self) -> Step {
        let in_flight = self.in_flight();
        if in_flight == 0 {
            return Step::Idle;
        }
        tokio::select! {
            _ = self.shared.ctx.recorder.applied() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        Step::Dispatched
    }

    fn in_flight(&self) -> usize {
        self.shared.tasks.len()
    }

    /// Sends until nothing is pending, `cancel` fires, or an error stops the
    /// run; then waits for the requests in flight and returns.
    pub async fn run_until_stopped(mut self, cancel: CancellationToken) -> Result<(), SendError> {
        let stopped = self.shared.stopped.clone();
        let result = loop {
            if cancel.is_cancelled() || stopped.is_cancelled() {
                break Ok(());
            }
            match self.try_send_next(&cancel).await {
                Ok(Step::Dispatched) => {}
                Ok(Step::Halted) => break Ok(()),
                Ok(Step::Idle) => {
                    // Claims saw nothing and nothing is in flight; once the
                    // last answers are written, a last look catches messages
                    // they put back in the queue.
                    self.shared.ctx.recorder.flush().await;
                    match self
                        .shared
                        .ctx
                        .store
                        .has_pending(self.shared.ctx.campaign_id)
                        .await
                    {
                        Ok(true) => continue,
                        Ok(false) => break Ok(()),
                        Err(error) => break Err(error.into()),
                    }
                }
                Err(error) => break Err(error),
            }
        };
        // Messages claimed but not yet sent go back to the queue: their
        // request never left.
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
        for message in self.claimed.drain(..) {
            self.shared.ctx.recorder.record(Change::Unsent {
                message_id: message.message_id,
                to: MessageState::Pending,
                detail: "claimed but not sent before the run stopped".into(),
                count_attempt: false,
            });
        }
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        let stop = self
            .shared
            .stop
            .lock()
            .map(|mut s| s.take())
            .unwrap_or(None);
        match (result, stop) {
            (Err(error), _) => Err(error),
            (Ok(()), Some(error)) => Err(error),
            (Ok(()), None) => Ok(()),
        }
    }
}

/// A claim on its way through the recorder.
type ClaimFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<ClaimedMessage>, StoreError>> + Send + Sync>,
>;

/// Sends one message and records what the answer means.
async fn send_one(shared: Arc<Shared>, message: ClaimedMessage, permit: OwnedSemaphorePermit) {
    let ctx = &shared.ctx;
    let outcome = ctx
        .api
        .send(
            message.phone_e164.as_str(),
            &ctx.from,
            &message.body,
            &message.media_urls,
        )
        .await;
    drop(permit);
    shared.after_answer(&outcome);
    let change = decide(ctx, &message, outcome, now_ms());
    ctx.counters.record_send(&change);
    ctx.recorder.record(change);
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
            unsent(to, format!("ambiguous answer: {detail}"), true)
        }
        SendOutcome::Fatal(error) => unsent(MessageState::Pending, error.to_string(), false),
    }
}

impl Shared {
    fn pacing(&self) -> std::sync::MutexGuard<'_, Pacing> {
        // A panic while pacing was held leaves plain numbers behind; they
        // are still usable.
        self.pacing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the next request may leave: the next slot of an even schedule
    /// at the adaptive rate, after any pause. A request that left late does
    /// not push the schedule back (up to [`MAX_SCHEDULE_LAG`]), so the mean
    /// rate holds; the ceiling keeps the catching up within the limit.
    fn next_turn(&self) -> Instant {
        let mut pacing = self.pacing();
        let interval = Duration::from_secs_f64(1.0 / pacing.rate.current());
        let now = Instant::now();
        let earliest_slot = now.checked_sub(MAX_SCHEDULE_LAG).unwrap_or(now);
        let turn = pacing.next_slot.max(earliest_slot).max(pacing.pause_until);
        pacing.next_slot = turn + interval;
        turn
    }

    /// Adjusts pacing after an answer, and stops the run when it must.
    fn after_answer(&self, outcome: &SendOutcome) {
        let mut pacing = self.pacing();
        let now = Instant::now();
        match outcome {
            SendOutcome::NotAccepted {
                rate_limited,
                retry_after,
                detail,
            } => {
                let Pacing { backoff, rng, .. } = &mut *pacing;
                let wait = retry_after.unwrap_or_else(|| backoff.next_wait(rng));
                if *rate_limited {
                    if let Some(rate) = pacing.rate.on_rate_limited(now.into_std()) {
                        self.ctx.counters.set_rate(rate);
                        tracing::warn!("HTTP 429: send rate lowered to {rate:.1}/s");
                    }
                } else {
                    pacing.unreachable_in_a_row += 1;
                    if pacing.unreachable_in_a_row >= MAX_CONSECUTIVE_UNREACHABLE {
                        self.stop_with(SendError::Unreachable {
                            detail: detail.clone(),
                        });
                    }
                }
                tracing::warn!("not accepted ({detail}); pausing sends for {wait:?}");
                pacing.pause_until = pacing.pause_until.max(now + wait);
            }
            SendOutcome::Fatal(error) => self.stop_with(SendError::Fatal(error.clone())),
            SendOutcome::Accepted { .. } => {
                pacing.backoff.reset();
                pacing.unreachable_in_a_row = 0;
                if let Some(rate) = pacing.rate.on_accepted(now.into_std()) {
                    self.ctx.counters.set_rate(rate);
                    tracing::info!("send rate back up to {rate:.1}/s");
                }
            }
            SendOutcome::Rejected { .. } | SendOutcome::Ambiguous { .. } => {
                pacing.unreachable_in_a_row = 0;
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
                pacing.last_failure.clone_from(detail);
            }
            if let Some(ratio) = pacing.breaker.record(failure.is_some()) {
                self.stop_with(SendError::CircuitOpen {
                    percent: ratio * 100.0,
                    window: pacing.breaker.window(),
                    detail: pacing.last_failure.clone(),
                });
            }
        }
    }

    fn stop_with(&self, error: SendError) {
        if let Ok(mut stop) = self.stop.lock() {
            stop.get_or_insert(error);
        }
        self.stopped.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::MessageAnswer;
    use crate::domain::phone::E164;
    use crate::domain::state::MessageKind;

    fn message(kind: MessageKind) -> ClaimedMessage {
        ClaimedMessage {
            message_id: 7,
            row_number: 1,
            phone_e164: E164::from_stored("+14155550101").expect("number"),
            kind,
            body: "hi".into(),
            media_urls: vec![],
            attempts: 1,
        }
    }

    async fn ctx(policy: AmbiguousPolicy) -> (SendContext, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("store");
        let (recorder, _task) = Recorder::start(store.clone(), CancellationToken::new());
        let api = ApiClient::new(crate::api::ApiConfig {
            base_url: "http://127.0.0.1:9".into(),
            client_id: "x".into(),
            client_secret: crate::secret::SecretString::new("y".into()),
            scope: "127.0.0.1".into(),
            send_tenant_field: false,
            media_key: Default::default(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        })
        .expect("client");
        let ctx = SendContext {
            store,
            api: Arc::new(api),
            recorder,
            counters: Arc::new(Counters::default()),
            campaign_id: 1,
            from: "+16505550100".into(),
            rate: 10.0,
            concurrency: 2,
            poll_delay: Duration::from_secs(15),
            track_for: Duration::from_secs(3600),
            on_ambiguous: policy,
            max_attempts: 5,
            breaker_window: 100,
            breaker_threshold: 0.5,
        };
        (ctx, dir)
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
        assert_eq!(to, MessageState::Queued);
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
                to: MessageState::Failed,
                next_poll_at: None,
                ..
            }
        ));
        let mms = decide(&ctx, &message(MessageKind::Mms), accepted("sent"), 0);
        assert!(matches!(
            mms,
            Change::Accepted {
                to: MessageState::Sent,
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
                to: MessageState::Unknown,
                count_attempt: true,
                ..
            }
        ));
        let (retry, _b) = ctx(AmbiguousPolicy::Retry).await;
        assert!(matches!(
            decide(&retry, &message(MessageKind::Sms), ambiguous(), 0),
            Change::Unsent {
                to: MessageState::Pending,
                ..
            }
        ));
        let worn_out = ClaimedMessage {
            attempts: 5,
            ..message(MessageKind::Sms)
        };
        assert!(matches!(
            decide(&retry, &worn_out, ambiguous(), 0),
            Change::Unsent {
                to: MessageState::Unknown,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_429_goes_back_without_counting_an_attempt() {
        let (ctx, _dir) = ctx(AmbiguousPolicy::Hold).await;
        let outcome = SendOutcome::NotAccepted {
            detail: "HTTP 429".into(),
            rate_limited: true,
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(matches!(
            decide(&ctx, &message(MessageKind::Sms), outcome, 0),
            Change::Unsent {
                to: MessageState::Pending,
                count_attempt: false,
                ..
            }
        ));
    }
}
