//! Live progress: workers bump [`Counters`]; one task draws them as a status
//! line on stderr with indicatif, only when stderr is a terminal, and
//! tracing's log lines are printed above it. Nothing here writes to stdout.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    /// Why nothing is being sent now (a window closed, the daily cap, the
    /// start time), while that lasts.
    waiting: Mutex<Option<String>>,
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

    /// Says why sending waits, for the status line; `None` once it sends
    /// again.
    pub fn set_waiting(&self, why: Option<String>) {
        *self.waiting.lock().unwrap_or_else(PoisonError::into_inner) = why;
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
        let waiting = match &*self.waiting.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(why) => format!("  waiting: {why}"),
            None => String::new(),
        };
        format!(
            "sent {accepted} ({:.0}/s)  rejected {}  unknown {}  retried {}  polls {}  tracked to final {}{rate}{waiting}",
            accepted as f64 / elapsed,
            self.rejected.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.not_accepted.load(Ordering::Relaxed),
            self.polls.load(Ordering::Relaxed),
            self.finished.load(Ordering::Relaxed),
        )
    }
}

/// The bar on screen, if any, so that log lines can be printed above it.
static BAR_ON_SCREEN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Draws the progress line twice a second until `stop` fires, then clears
/// it. Does nothing when stderr is not a terminal; indicatif ignores a
/// closed or full stderr, so drawing never stops a run.
pub async fn draw(counters: Arc<Counters>, stop: CancellationToken) {
    // Only the message: the run has no total to measure yet.
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if bar.is_hidden() {
        return;
    }
    bar.set_style(
        ProgressStyle::with_template("{msg}").expect("a template of one known key parses"),
    );
    *bar_on_screen() = Some(bar.clone());
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => bar.set_message(counters.line(started)),
            _ = stop.cancelled() => break,
        }
    }
    *bar_on_screen() = None;
    bar.finish_and_clear();
}

/// Stderr for tracing's log lines: each line is printed above the progress
/// line instead of through it. A line that stderr refuses (full, or a broken
/// pipe) is dropped, not returned: tracing would report the error with
/// its own `eprintln!`, which panics on that same stderr.
pub struct StderrAboveProgress;

impl Write for StderrAboveProgress {
    fn write(&mut self, text: &[u8]) -> io::Result<usize> {
        // Cloned out so the lock is not held while the bar is redrawn.
        let bar = bar_on_screen().clone();
        let write = || std::io::stderr().lock().write_all(text);
        let _ = match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        };
        Ok(text.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = std::io::stderr().lock().flush();
        Ok(())
    }
}

fn bar_on_screen() -> MutexGuard<'static, Option<ProgressBar>> {
    // The slot holds no invariant a panic elsewhere could break.
    BAR_ON_SCREEN.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_shows_every_counter_and_the_rate_limit() {
        let counters = Counters::default();
        counters.accepted.store(7, Ordering::Relaxed);
        counters.rejected.store(2, Ordering::Relaxed);
        counters.unknown.store(1, Ordering::Relaxed);
        counters.not_accepted.store(3, Ordering::Relaxed);
        counters.polls.store(11, Ordering::Relaxed);
        counters.finished.store(5, Ordering::Relaxed);
        counters.set_rate(12.5);

        let line = counters.line(Instant::now());

        assert!(line.starts_with("sent 7 ("), "{line}");
        assert!(
            line.ends_with(
                "  rejected 2  unknown 1  retried 3  polls 11  tracked to final 5  rate limit 12.5/s"
            ),
            "{line}"
        );
    }
}
