//! One run of `bpsms send` on a stored campaign: recover what a dead run left
//! in flight, then send and track side by side until every message is final,
//! the operator interrupts, or an error stops the run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{ApiClient, FatalError};
use crate::clock::{duration_ms, now_ms};
use crate::config::RunSettings;
use crate::gate::{resolve_zone_sets, stored_windows, Gate, GateRules};
use crate::pool::SenderPool;
use crate::progress::{self, Counters};
use crate::recorder::{Recorder, RecorderTask};
use crate::schedule::Schedule;
use crate::sender::{SendContext, SendError, Sender};
use crate::store::{Campaign, SendRules, Store, StoreError};
use crate::tracker::{self, TrackContext, TrackError};

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Nothing left to send or track.
    Finished,
    /// The operator interrupted; the campaign can be resumed.
    Interrupted,
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is wrong (credentials, privilege, address).
    #[error(transparent)]
    Config(FatalError),
    /// The API stayed unreachable or the circuit breaker tripped.
    #[error(transparent)]
    Stopped(SendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another process took this campaign over while this run's heartbeat stalled; this run stopped")]
    LeaseLost,
    /// The stored schedule does not read (a database edited by hand).
    #[error("the campaign's stored send windows do not read ({0}); set them again with --window")]
    Rules(String),
}

/// The gate's rules from a campaign's stored rules.
pub fn gate_rules(rules: &SendRules) -> Result<GateRules, String> {
    let zone = crate::config::campaign_zone(&rules.timezone);
    let zone_name = match rules.timezone.as_str() {
        "" => crate::schedule::machine_zone().1,
        name => name.to_owned(),
    };
    Ok(GateRules {
        schedule: Schedule {
            windows: stored_windows(&rules.windows)?,
            stop_before: rules.stop_before,
        },
        zone,
        zone_name,
        start_at: rules.start_at.map(crate::clock::timestamp),
        not_after: rules.not_after.map(crate::clock::timestamp),
        max_per_day: rules.max_per_day,
    })
}

/// Runs the campaign until it is finished, interrupted or stopped.
pub async fn run(
    store: &Store,
    api: Arc<ApiClient>,
    campaign: &Campaign,
    settings: &RunSettings,
    cancel: CancellationToken,
    lease_lost: CancellationToken,
) -> Result<RunEnd, RunError> {
    let policy = settings.campaign.on_ambiguous;
    store.recover_polls(campaign.id).await?;
    let recovered = store
        .recover_sending(
            campaign.id,
            policy,
            i64::from(settings.max_attempts),
            now_ms(),
        )
        .await?;
    if recovered.requeued > 0 {
        crate::errln!(
            "{} message(s) were in flight when the previous run stopped; they are queued to be \
             sent again",
            recovered.requeued
        );
    }
    if recovered.held > 0 {
        crate::errln!(
            "{} message(s) were in flight when the previous run stopped; they are now `unknown` \
             (not sent again{}; `bpsms retry --state unknown` sends them)",
            recovered.held,
            match policy {
                crate::domain::state::AmbiguousPolicy::Hold => "",
                crate::domain::state::AmbiguousPolicy::Retry => ": that was their last attempt",
            }
        );
    }
    if settings.campaign.track_for != campaign.settings.track_for {
        store
            .retrack(campaign.id, duration_ms(settings.campaign.track_for))
            .await?;
    }
    store
        .update_settings(campaign.id, &settings.campaign, &settings.rules)
        .await?;
    let gate = Gate::new(
        gate_rules(&settings.rules).map_err(RunError::Rules)?,
        resolve_zone_sets(store.zone_sets(campaign.id).await?),
    );
    if store.has_pending(campaign.id).await? {
        // Bad credentials stop here, before any message is claimed.
        api.check_credentials().await.map_err(RunError::Config)?;
    }

    let counters = Arc::new(Counters::default());
    // Stops both loops when either meets an error the other cannot outlive.
    let stop = cancel.child_token();
    let drawing = CancellationToken::new();
    let drawer = tokio::spawn(progress::draw(counters.clone(), drawing.clone()));

    let (send_recorder, send_recording) = Recorder::start(store.clone(), stop.clone());
    let sender = Sender::new(
        SendContext {
            store: store.clone(),
            api: api.clone(),
            recorder: send_recorder,
            counters: counters.clone(),
            campaign_id: campaign.id,
            pool: SenderPool::new(settings.rules.senders.iter().cloned()).ok(),
            rate: settings.campaign.rate,
            rate_per_from: settings.rules.rate_per_from,
            rate_unit: settings.rules.rate_unit,
            concurrency: settings.campaign.concurrency,
            poll_delay: settings.campaign.poll_delay,
            track_for: settings.campaign.track_for,
            on_ambiguous: policy,
            max_attempts: i64::from(settings.max_attempts),
            breaker_window: settings.breaker_window as usize,
            breaker_threshold: settings.breaker_threshold,
        },
        gate,
    );
    let sending_done = Arc::new(AtomicBool::new(false));
    let sending = {
        let (stop, sending_done) = (stop.clone(), sending_done.clone());
        let counters = counters.clone();
        async move {
            let started = std::time::Instant::now();
            let result = sender.run_until_stopped(stop.clone()).await;
            // Every answer is written before the tracker may conclude that
            // nothing is left to track.
            let result = settle(result, send_recording, &stop).await;
            sending_done.store(true, Ordering::Release);
            let answered = counters.answered_sends();
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(
                "sending finished: {answered} send answers recorded in {seconds:.3} s ({:.0}/s)",
                answered as f64 / seconds.max(1e-9)
            );
            result
        }
    };

    let (track_recorder, track_recording) = Recorder::start(store.clone(), stop.clone());
    let tracking = {
        let ctx = TrackContext {
            store: store.clone(),
            api,
            recorder: track_recorder,
            counters,
            campaign_id: campaign.id,
            poll_rate: settings.poll_rate,
            concurrency: settings.campaign.concurrency,
            poll_delay: settings.campaign.poll_delay,
            unexpected_statuses: Default::default(),
        };
        let stop = stop.clone();
        async move {
            let result = tracker::run_until_done(ctx, sending_done, stop.clone()).await;
            settle(result, track_recording, &stop).await
        }
    };

    // Losing the campaign to another process stops both loops.
    let forward_lease_loss = {
        let (stop, lease_lost) = (stop.clone(), lease_lost.clone());
        tokio::spawn(async move {
            lease_lost.cancelled().await;
            stop.cancel()
        })
    };
    // On the runtime's workers, not on the thread that waits for the run:
    // there every wake-up of the send loop (an answer freeing a slot) and
    // every request it hands over would cross threads.
    let loops = tokio::spawn(async move { tokio::join!(sending, tracking) }).await;
    let (sent, tracked) = match loops {
        Ok(results) => results,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only a runtime shutting down cancels it, after the run ended.
            Err(_) => return Ok(RunEnd::Interrupted),
        },
    };
    forward_lease_loss.abort();
    drawing.cancel();
    let _ = drawer.await;
    if lease_lost.is_cancelled() {
        return Err(RunError::LeaseLost);
    }
    sent?;
    tracked?;
    Ok(if cancel.is_cancelled() {
        RunEnd::Interrupted
    } else {
        RunEnd::Finished
    })
}

/// Ends one loop: waits until its answers are written, and stops the other
/// loop when this one failed.
async fn settle(
    result: Result<(), impl Into<RunError>>,
    recording: RecorderTask,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    let recorded = recording.finish().await;
    if result.is_err() || recorded.is_err() {
        stop.cancel();
    }
    // A failed write is the root cause of whatever followed it.
    recorded
        .map_err(RunError::from)
        .and(result.map_err(Into::into))
}

impl From<SendError> for RunError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Fatal(fatal) => RunError::Config(fatal),
            SendError::Store(store) => RunError::Store(store),
            stopped @ (SendError::Unreachable { .. } | SendError::CircuitOpen { .. }) => {
                RunError::Stopped(stopped)
            }
        }
    }
}

impl From<TrackError> for RunError {
    fn from(error: TrackError) -> Self {
        match error {
            TrackError::Fatal(fatal) => RunError::Config(fatal),
            TrackError::Store(store) => RunError::Store(store),
        }
    }
}
