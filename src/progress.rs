//! Live progress: workers bump [`Counters`]; one task draws a status line on
//! stderr, only when stderr is a terminal. Nothing here writes to stdout.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::domain::state::MessageState;
use crate::store::Change;

/// What the workers have done in this run.
#[derive(Debug, Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub unknown: AtomicU64,
    pub not_accepted: AtomicU64,
    pub polls: AtomicU64,
    pub finished: AtomicU64,
    /// The adaptive send rate in milli-messages per second; 0 until the
    /// first change (then the line shows it).
    rate_milli: AtomicU64,
}

impl Counters {
    /// Send requests that got an answer: accepted, rejected or unknown.
    pub fn answered_sends(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
            + self.unknown.load(Ordering::Relaxed)
    }

    pub fn record_send(&self, change: &Change) {
        let counter = match change {
            Change::Accepted { .. } => &self.accepted,
            Change::Rejected { .. } => &self.rejected,
            Change::Unsent {
                to: MessageState::Unknown,
                ..
            } => &self.unknown,
            _ => &self.not_accepted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Change::Accepted {
            next_poll_at: None, ..
        } = change
        {
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records the current adaptive send rate, for the progress line.
    pub fn set_rate(&self, rate: f64) {
        self.rate_milli
            .store((rate * 1000.0) as u64, Ordering::Relaxed);
    }

    pub fn record_poll(&self, change: &Change) {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let finished = matches!(
            change,
            Change::Polled {
                next_poll_at: None,
                ..
            } | Change::Expired { .. }
        );
        if finished {
            self.finished.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn line(&self, started: Instant) -> String {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64().max(0.001);
        let rate = match self.rate_milli.load(Ordering::Relaxed) {
            0 => String::new(),
            milli => format!("  rate limit {:.1}/s", milli as f64 / 1000.0),
        };
        format!(
            "sent {accepted} ({:.0}/s)  rejected {}  unknown {}  retried {}  polls {}  tracked to final {}{rate}",
            accepted as f64 / elapsed,
            self.rejected.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.not_accepted.load(Ordering::Relaxed),
            self.polls.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }
}

/// Draws the progress line every 500 ms until `stop` fires, then clears it.
/// Does nothing when stderr is not a terminal.
pub async fn draw(counters: Arc<Counters>, stop: CancellationToken) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{}", counters.line(started));
                let _ = err.flush();
            }
            _ = stop.cancelled() => break,
        }
    }
    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
}
