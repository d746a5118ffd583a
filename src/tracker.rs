//! The tracker: calls Get Message for every accepted message when its poll
//! is due (the schedule is `next_poll_at` in the database), until the
//! message reaches a final status or its tracking window closes.
//!
//! The first poll waits `--poll-delay` after the accepted send (the API
//! answers `queued` at first); later polls back off, doubling up to
//! [`MAX_POLL_INTERVAL`], and never go past the end of the window, so the last
//! poll happens right when the window closes. Polls have their own rate
//! budget, separate from sends. It is a [`Worker`]: its step polls one
//! message, or claims the due ones, at a `now` it is given.
//!
//! A Get that learns nothing (404 "not visible yet", a 5xx, a 429, a broken
//! connection) does not advance that status schedule: it has a back-off of
//! its own, [`MISS_BACKOFF_START`] doubling per such Get in a row up to
//! [`MISS_BACKOFF_CAP`]. Short, so that a message becomes visible, or the API
//! comes back, at most half a minute before it is polled again and the tail
//! of a campaign stays short; growing, so that a flaky API is not hammered.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, FatalError, PollOutcome};
use crate::clock::{duration_ms, now_ms, Now};
use crate::domain::state::{transition, Event, RemoteStatus};
use crate::pacing::EvenSchedule;
use crate::progress::Counters;
use crate::recorder::Recorder;
use crate::store::{Change, DueClaim, DueMessage, Store, StoreError};
use crate::worker::{self, Harness, Step, Worker};

/// The longest wait between two polls of one message.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// How long to sleep at most before looking at the schedule again.
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// The wait after the first Get in a row that learnt nothing.
pub const MISS_BACKOFF_START: Duration = Duration::from_secs(2);
/// The longest wait after a Get that learnt nothing.
pub const MISS_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Messages whose Gets in a row that learnt nothing are remembered (in
/// memory: a restart only starts their back-off afresh). A message beyond
/// them waits [`MISS_BACKOFF_CAP`], so memory stays bounded however much of
/// a campaign is not visible at once.
const MISS_STREAKS_KEPT: usize = 100_000;

/// What the tracker needs.
pub struct TrackContext {
    pub store: Store,
    pub api: Arc<ApiClient>,
    pub recorder: Recorder<DueClaim>,
    pub counters: Arc<Counters>,
    pub campaign_id: i64,
    /// Get Message calls per second.
    pub poll_rate: f64,
    pub concurrency: u32,
    pub poll_delay: Duration,
    /// Undocumented statuses already warned about.
    pub unexpected_statuses: std::sync::Mutex<std::collections::HashSet<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(transparent)]
    Fatal(#[from] FatalError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Polls until no message is tracked and `sending_done` is set, or until
/// `cancel` fires. Polls in flight are awaited before returning.
pub async fn run_until_done(
    ctx: TrackContext,
    sending_done: Arc<AtomicBool>,
    cancel: CancellationToken,
) -> Result<(), TrackError> {
    let mut tracker = Tracker::new(ctx, sending_done, Now::read());
    let result = worker::run(&mut tracker, &cancel).await;
    tracker.shared.harness.finish(result).await
}

/// The tracker's state between steps.
struct Tracker {
    shared: Arc<Shared>,
    /// Claimed polls not yet made. A stop leaves them claimed; the next
    /// run's recovery frees them.
    due: VecDeque<DueMessage>,
    /// Polls leave evenly at `rate`, without bursts.
    schedule: EvenSchedule,
    rate: f64,
    batch: usize,
    /// Set once the sender's last answer is written.
    sending_done: Arc<AtomicBool>,
}

/// Shared between the tracker and its poll tasks.
struct Shared {
    ctx: TrackContext,
    harness: Harness<TrackError>,
    /// Per message, the Gets in a row that learnt nothing. Held only to
    /// read or change one entry, never across an await.
    miss_streaks: Mutex<HashMap<i64, u32>>,
}

impl Shared {
    /// Notes that the Get of `message_id` just answered learnt nothing;
    /// returns how many Gets in a row before it learnt nothing.
    fn note_miss(&self, message_id: i64) -> u32 {
        // A panic while it was held leaves plain counts behind.
        let mut streaks = self
            .miss_streaks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let kept = streaks.len();
        match streaks.get_mut(&message_id) {
            Some(streak) => {
                let before = *streak;
                *streak = streak.saturating_add(1);
                before
            }
            None if kept < MISS_STREAKS_KEPT => {
                streaks.insert(message_id, 1);
                0
            }
            None => u32::MAX,
        }
    }

    /// Forgets the streak of a message whose Get learnt something, or that
    /// is no longer polled.
    fn forget_misses(&self, message_id: i64) {
        self.miss_streaks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&message_id);
    }
}

impl Tracker {
    fn new(ctx: TrackContext, sending_done: Arc<AtomicBool>, now: Now) -> Tracker {
        let rate = ctx.poll_rate.max(0.001);
        Tracker {
            shared: Arc::new(Shared {
                harness: Harness::new(ctx.concurrency),
                ctx,
                miss_streaks: Mutex::new(HashMap::new()),
            }),
            due: VecDeque::new(),
            schedule: EvenSchedule::new(now.instant, Duration::ZERO),
            rate,
            batch: ((rate * 0.25).ceil() as usize).clamp(1, 512),
            sending_done,
        }
    }

    /// Claims the polls due at `now`, in the recorder's next transaction.
    async fn claim_due(&mut self, now: Now) -> Result<Step, TrackError> {
        let ctx = &self.shared.ctx;
        let claimed = ctx
            .recorder
            .claim(DueClaim {
                campaign_id: ctx.campaign_id,
                now: now.unix_ms,
                limit: self.batch,
            })
            .await?;
        if !claimed.is_empty() {
            self.due.extend(claimed);
            return Ok(Step::Worked);
        }
        self.idle(now).await
    }

    /// Nothing is due at `now`: done when nothing is tracked, else idle
    /// until the next poll is due (or a batch is written, or a short while).
    async fn idle(&self, now: Now) -> Result<Step, TrackError> {
        let ctx = &self.shared.ctx;
        // Read the flag before the schedule: the sender sets it only after
        // its last accepted message is written, so nothing can slip between.
        let done_sending = self.sending_done.load(Ordering::Acquire);
        // Decide on one reading of "no poll in flight": a poll finishing
        // after it must not be mistaken for one whose answer is written.
        let no_polls_in_flight = self.shared.harness.in_flight() == 0;
        if no_polls_in_flight {
            ctx.recorder.flush().await;
        }
        let next = ctx.store.next_poll_at(ctx.campaign_id).await?;
        if next.is_none() && no_polls_in_flight && done_sending {
            return Ok(Step::Done);
        }
        let until_next = |at: i64| u64::try_from(at.saturating_sub(now.unix_ms)).unwrap_or(0);
        let wait = next.map_or(IDLE_WAKE, |at| {
            Duration::from_millis(until_next(at)).min(IDLE_WAKE)
        });
        Ok(Step::Idle {
            until: now.instant + wait,
        })
    }
}

impl Worker for Tracker {
    type Error = TrackError;

    /// Polls the next claimed message when its turn has come at `now`;
    /// claims the due ones when none is left.
    async fn step(&mut self, slot: OwnedSemaphorePermit, now: Now) -> Result<Step, TrackError> {
        if self.due.is_empty() {
            return self.claim_due(now).await;
        }
        if let Some(until) = self.schedule.wait(now.instant) {
            return Ok(Step::Paced { until });
        }
        if let Some(message) = self.due.pop_front() {
            self.schedule.take(now.instant, self.rate);
            let shared = self.shared.clone();
            self.shared
                .harness
                .spawn(async move { poll_one(shared, message, slot).await });
        }
        Ok(Step::Worked)
    }

    fn woken(&self) -> impl Future<Output = ()> + Send {
        self.shared.ctx.recorder.applied()
    }

    fn harness(&self) -> &Harness<TrackError> {
        &self.shared.harness
    }
}

/// Polls one message and records what the answer means.
async fn poll_one(shared: Arc<Shared>, message: DueMessage, slot: OwnedSemaphorePermit) {
    let ctx = &shared.ctx;
    let outcome = ctx.api.poll(message.sid.as_str()).await;
    drop(slot);
    if let PollOutcome::Fatal(error) = &outcome {
        // The message keeps its claim; the next run polls it again.
        shared.harness.stop_with(TrackError::Fatal(error.clone()));
        return;
    }
    warn_on_new_status(ctx, &outcome);
    let misses_before = match outcome {
        PollOutcome::Status(_) => 0,
        _ => shared.note_miss(message.message_id),
    };
    let change = decide(&message, outcome, now_ms(), ctx.poll_delay, misses_before);
    if !matches!(change, Change::PollDeferred { .. }) {
        shared.forget_misses(message.message_id);
    }
    ctx.counters.record_poll(&change);
    ctx.recorder.record(change);
}

/// Warns once per campaign run about each status the spec does not list.
fn warn_on_new_status(ctx: &TrackContext, outcome: &PollOutcome) {
    let PollOutcome::Status(answer) = outcome else {
        return;
    };
    let raw = answer.status.as_deref().unwrap_or_default();
    if let RemoteStatus::Other(other) = RemoteStatus::parse(raw) {
        let first_time = ctx
            .unexpected_statuses
            .lock()
            .map(|mut seen| seen.insert(other.clone()))
            .unwrap_or(false);
        if first_time {
            tracing::warn!(
                "the API reported status {other:?}, which it does not document; \
                 such messages are polled until their tracking window ends"
            );
        }
    }
}

/// The change a Get answer makes (pure, so it is tested alone), after
/// `misses_before` Gets of the message in a row that learnt nothing.
pub fn decide(
    message: &DueMessage,
    outcome: PollOutcome,
    now: i64,
    poll_delay: Duration,
    misses_before: u32,
) -> Change {
    let polls_done = message.polls + 1;
    let window_closed = now >= message.track_until;
    let next_poll_at = next_poll(now, polls_done, poll_delay, message.track_until);
    let after_miss = now
        .saturating_add(duration_ms(miss_backoff(misses_before)))
        .min(message.track_until);
    let expired = |remote_status: Option<String>| Change::Expired {
        message_id: message.message_id,
        from: message.state,
        remote_status,
    };
    match outcome {
        PollOutcome::Status(answer) => {
            let raw = answer
                .status
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let status = RemoteStatus::parse(&raw);
            let to = transition(message.state, message.kind, &Event::Observed(status))
                .unwrap_or(message.state);
            let is_final = to.is_final(message.kind);
            if !is_final && window_closed {
                return expired(Some(raw));
            }
            Change::Polled {
                message_id: message.message_id,
                from: message.state,
                to,
                remote_status: raw,
                error_code: answer.error_code,
                error_message: answer.error_message,
                next_poll_at: (!is_final).then_some(next_poll_at),
            }
        }
        PollOutcome::NotFound | PollOutcome::RetryLater { .. } if window_closed => expired(None),
        // A fatal outcome is handled by the caller and never reaches here.
        PollOutcome::NotFound | PollOutcome::Fatal(_) => Change::PollDeferred {
            message_id: message.message_id,
            from: message.state,
            next_poll_at: after_miss,
        },
        PollOutcome::RetryLater {
            retry_after,
            detail,
        } => {
            tracing::debug!(sid = %message.sid, "poll deferred: {detail}");
            let asked = retry_after.map_or(now, |wait| now.saturating_add(duration_ms(wait)));
            Change::PollDeferred {
                message_id: message.message_id,
                from: message.state,
                next_poll_at: after_miss.max(asked.min(message.track_until)),
            }
        }
    }
}

/// The wait after a Get that learnt nothing, the last of `misses_before` +
/// 1 in a row: [`MISS_BACKOFF_START`], doubling, up to [`MISS_BACKOFF_CAP`].
pub fn miss_backoff(misses_before: u32) -> Duration {
    MISS_BACKOFF_START
        .saturating_mul(1 << misses_before.min(16))
        .min(MISS_BACKOFF_CAP)
}

/// When to poll next after `polls_done` polls: the delay doubles per poll up
/// to [`MAX_POLL_INTERVAL`] (never below `poll_delay`), and the last poll is
/// at the end of the window.
pub fn next_poll(now: i64, polls_done: i64, poll_delay: Duration, track_until: i64) -> i64 {
    let doublings = u32::try_from(polls_done.clamp(0, 16)).unwrap_or(16);
    let interval = poll_delay
        .saturating_mul(1 << doublings)
        .min(MAX_POLL_INTERVAL.max(poll_delay));
    now.saturating_add(duration_ms(interval)).min(track_until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::MessageAnswer;
    use crate::domain::ids::MessageSid;
    use crate::domain::state::MessageKind::{self, Mms, Sms};
    use crate::domain::state::MessageState;
    use crate::worker::testing::rig;

    fn due(state: MessageState, kind: MessageKind, polls: i64, track_until: i64) -> DueMessage {
        DueMessage {
            message_id: 3,
            sid: MessageSid::parse("abc").expect("sid"),
            kind,
            state,
            polls,
            track_until,
        }
    }

    fn status(s: &str) -> PollOutcome {
        PollOutcome::Status(Box::new(MessageAnswer {
            status: Some(s.into()),
            ..Default::default()
        }))
    }

    const DELAY: Duration = Duration::from_secs(1);

    /// What a poll answering `outcome` at `now` decides for a message.
    fn decided(
        state: MessageState,
        kind: MessageKind,
        polls: i64,
        outcome: PollOutcome,
        now: i64,
    ) -> Change {
        decide(&due(state, kind, polls, 100_000), outcome, now, DELAY, 0)
    }

    #[test]
    fn schedule_backs_off_and_stops_at_the_window() {
        assert_eq!(next_poll(0, 1, DELAY, 1_000_000), 2_000);
        assert_eq!(next_poll(0, 2, DELAY, 1_000_000), 4_000);
        assert_eq!(next_poll(0, 16, DELAY, 1_000_000), 300_000);
        assert_eq!(next_poll(0, 3, DELAY, 5_000), 5_000);
        // A poll delay above the cap is still honoured.
        assert_eq!(next_poll(0, 1, Duration::from_secs(600), i64::MAX), 600_000);
    }

    #[test]
    fn delivered_is_final() {
        let change = decided(MessageState::Queued, Sms, 0, status("Delivered"), 10);
        assert!(matches!(
            change,
            Change::Polled {
                to: MessageState::Delivered,
                next_poll_at: None,
                ..
            }
        ));
    }

    #[test]
    fn sent_is_final_for_mms_only() {
        let sms = decided(MessageState::Queued, Sms, 0, status("sent"), 10);
        assert!(matches!(
            sms,
            Change::Polled {
                to: MessageState::Sent,
                next_poll_at: Some(2_010),
                ..
            }
        ));
        let mms = decided(MessageState::Queued, Mms, 0, status("sent"), 10);
        assert!(matches!(
            mms,
            Change::Polled {
                to: MessageState::Sent,
                next_poll_at: None,
                ..
            }
        ));
    }

    #[test]
    fn window_end_expires_and_keeps_the_last_status() {
        let change = decided(MessageState::Sent, Sms, 4, status("sent"), 100_000);
        assert!(matches!(
            change,
            Change::Expired { from: MessageState::Sent, remote_status: Some(ref s), .. } if s == "sent"
        ));
        let not_found = decided(MessageState::Queued, Sms, 1, PollOutcome::NotFound, 200_000);
        assert!(matches!(
            not_found,
            Change::Expired {
                remote_status: None,
                ..
            }
        ));
    }

    /// A Get that learnt nothing waits 2 s, doubling per such Get in a row
    /// up to 30 s, whatever the status schedule has reached: 404s early on
    /// are retried soon, a flaky API is not hammered, and a message that
    /// turns visible late is polled within half a minute, not five.
    #[test]
    fn gets_that_learn_nothing_back_off_on_their_own_bounded_schedule() {
        let late = due(MessageState::Queued, Sms, 12, 10_000_000);
        let busy = || PollOutcome::RetryLater {
            detail: "HTTP 500".into(),
            retry_after: None,
        };
        let waits: Vec<i64> = (0..7)
            .map(|misses_before| {
                let outcome = if misses_before % 2 == 0 {
                    PollOutcome::NotFound
                } else {
                    busy()
                };
                match decide(&late, outcome, 0, DELAY, misses_before) {
                    Change::PollDeferred { next_poll_at, .. } => next_poll_at,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(waits, [2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        assert_eq!(miss_backoff(u32::MAX), MISS_BACKOFF_CAP);
        // Never past the end of the window.
        let ending = due(MessageState::Queued, Sms, 0, 1_000);
        assert!(matches!(
            decide(&ending, PollOutcome::NotFound, 0, DELAY, 3),
            Change::PollDeferred {
                next_poll_at: 1_000,
                ..
            }
        ));
    }

    #[test]
    fn faults_never_give_a_verdict() {
        let early_404 = decided(MessageState::Queued, Sms, 0, PollOutcome::NotFound, 10);
        assert!(matches!(
            early_404,
            Change::PollDeferred {
                next_poll_at: 2_010,
                ..
            }
        ));
        let busy = PollOutcome::RetryLater {
            detail: "HTTP 503".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        let change = decided(MessageState::Queued, Sms, 0, busy, 10);
        assert!(matches!(
            change,
            Change::PollDeferred {
                next_poll_at: 30_010,
                ..
            }
        ));
        let odd = decided(MessageState::Queued, Sms, 0, status("undelivered"), 10);
        assert!(matches!(
            odd,
            Change::Polled {
                to: MessageState::Queued,
                next_poll_at: Some(_),
                ..
            }
        ));
    }

    async fn tracker(poll_rate: f64) -> (Tracker, tempfile::TempDir) {
        let rig = rig().await;
        let ctx = TrackContext {
            store: rig.store,
            api: rig.api,
            recorder: rig.recorder,
            counters: Arc::new(Counters::default()),
            campaign_id: 1,
            poll_rate,
            concurrency: 2,
            poll_delay: DELAY,
            unexpected_statuses: Default::default(),
        };
        let sending_done = Arc::new(AtomicBool::new(false));
        (Tracker::new(ctx, sending_done, Now::read()), rig.dir)
    }

    #[tokio::test]
    async fn a_step_idles_while_sends_may_come_and_ends_after() {
        let (mut tracker, _dir) = tracker(10.0).await;
        let now = Now::read();
        let slot = tracker.shared.harness.free_slot().expect("a free slot");
        assert_eq!(
            tracker.step(slot, now).await.expect("step"),
            Step::Idle {
                until: now.instant + IDLE_WAKE
            }
        );
        tracker.sending_done.store(true, Ordering::Release);
        let slot = tracker.shared.harness.free_slot().expect("a free slot");
        assert_eq!(tracker.step(slot, now).await.expect("step"), Step::Done);
    }

    #[tokio::test]
    async fn polls_leave_evenly_at_the_poll_rate() {
        let (mut tracker, _dir) = tracker(2.0).await;
        let now = Now::read();
        // A poll just left; the next claimed one waits half a second.
        tracker.schedule.take(now.instant, tracker.rate);
        tracker
            .due
            .push_back(due(MessageState::Queued, Sms, 0, 100_000));
        let slot = tracker.shared.harness.free_slot().expect("a free slot");
        assert_eq!(
            tracker.step(slot, now).await.expect("step"),
            Step::Paced {
                until: now.instant + Duration::from_millis(500)
            }
        );
    }
}
