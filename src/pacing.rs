//! How fast to send and poll: the even schedule, the hard ceiling of
//! `--rate`, the adaptive rate when the API pushes back (AIMD), the back-off
//! with full jitter, and the circuit breaker. Pure state machines: time comes in as an argument, so they are
//! tested without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::Rng;

/// The resolution of tokio's timers: a turn less than one tick away is
/// taken now (the turns still add up to the rate over any second).
const TIMER_TICK: Duration = Duration::from_millis(1);

/// An even schedule at a rate given turn by turn: each turn comes one
/// interval after the one before. A turn taken late pushes the schedule back
/// only beyond `max_lag`: a short stall is made up (within the ceiling, for
/// sends), a long one is not followed by a burst. With no lag allowed it is
/// a token bucket without bursts (polls).
#[derive(Debug, Clone)]
pub struct EvenSchedule {
    next: Instant,
    max_lag: Duration,
}

impl EvenSchedule {
    pub fn new(now: Instant, max_lag: Duration) -> EvenSchedule {
        EvenSchedule { next: now, max_lag }
    }

    fn turn(&self, now: Instant) -> Instant {
        self.next.max(now.checked_sub(self.max_lag).unwrap_or(now))
    }

    /// Until when the next turn waits, as seen at `now`; `None`: it is now.
    pub fn wait(&self, now: Instant) -> Option<Instant> {
        Some(self.turn(now)).filter(|&turn| turn > now + TIMER_TICK)
    }

    /// Takes the turn due at `now`; the next one comes one interval at
    /// `rate` per second later.
    pub fn take(&mut self, now: Instant, rate: f64) {
        self.next = self.turn(now) + Duration::from_secs_f64(1.0 / rate.max(0.001));
    }

    /// No turn comes before `until`.
    pub fn pause_until(&mut self, until: Instant) {
        self.next = self.next.max(until);
    }
}

/// Sends the ceiling remembers at most: rates above this many per second are
/// capped to it (far above what one process sends).
const CEILING_MAX_SENDS: usize = 100_000;
/// Room left for the time between a send leaving the loop and reaching the
/// provider, which varies by a few milliseconds on a busy machine (2 ms let
/// 501 sends into one second at `--rate 500`). It costs the mean rate
/// guard/1 s (0.5 %) when the ceiling binds.
const CEILING_GUARD: Duration = Duration::from_millis(5);

/// The hard ceiling of `--rate`, counted as a provider counts it: at most
/// `floor(rate)` sends (at least one) in any window of one second, or of
/// 1/rate seconds below one send per second. Unlike a token bucket, a send
/// that left late does not forfeit its share, so the mean rate holds while
/// no window ever exceeds the limit.
#[derive(Debug)]
pub struct RateCeiling {
    limit: usize,
    window: Duration,
    recent: VecDeque<Instant>,
}

impl RateCeiling {
    pub fn new(rate: f64) -> RateCeiling {
        let limit = if rate.is_finite() && rate >= 1.0 {
            (rate.floor() as usize).min(CEILING_MAX_SENDS)
        } else {
            1
        };
        let window = if rate >= 1.0 {
            Duration::from_secs(1)
        } else {
            Duration::from_secs_f64(1.0 / rate.max(0.001))
        };
        RateCeiling {
            limit,
            window,
            recent: VecDeque::with_capacity(limit.min(4096)),
        }
    }

    /// The earliest moment the next send may leave; `None`: now.
    pub fn earliest(&self) -> Option<Instant> {
        if self.recent.len() < self.limit {
            return None;
        }
        self.recent
            .front()
            .map(|&oldest| oldest + self.window + CEILING_GUARD)
    }

    /// Notes a send that left at `at`.
    pub fn record(&mut self, at: Instant) {
        if self.recent.len() == self.limit {
            self.recent.pop_front();
        }
        self.recent.push_back(at);
    }
}

/// Never slow below this share of `--rate` on 429s.
const FLOOR_SHARE: f64 = 0.02;
/// Each second without a 429 adds this share of `--rate` back.
const CLIMB_SHARE_PER_SECOND: f64 = 0.05;
/// 429s closer together than this count as one signal (answers to requests
/// that were already in flight when the first one came).
const DECREASE_SPACING: Duration = Duration::from_millis(500);

/// Additive-increase, multiplicative-decrease send rate, never above the
/// configured ceiling.
#[derive(Debug, Clone)]
pub struct AdaptiveRate {
    ceiling: f64,
    current: f64,
    last_change: Instant,
    last_decrease: Option<Instant>,
}

impl AdaptiveRate {
    pub fn new(ceiling: f64, now: Instant) -> Self {
        AdaptiveRate {
            ceiling,
            current: ceiling,
            last_change: now,
            last_decrease: None,
        }
    }

    /// Messages per second right now.
    pub fn current(&self) -> f64 {
        self.current
    }

    /// The API answered 429: halve the rate (once per burst). Returns the
    /// new rate when it changed.
    pub fn on_rate_limited(&mut self, now: Instant) -> Option<f64> {
        if self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < DECREASE_SPACING)
        {
            return None;
        }
        let floor = self.ceiling * FLOOR_SHARE;
        self.current = (self.current / 2.0).max(floor);
        self.last_decrease = Some(now);
        self.last_change = now;
        Some(self.current)
    }

    /// A message was accepted: climb back toward the ceiling, slowly.
    /// Returns the new rate when it changed.
    pub fn on_accepted(&mut self, now: Instant) -> Option<f64> {
        if self.current >= self.ceiling {
            self.last_change = now;
            return None;
        }
        let seconds = now
            .saturating_duration_since(self.last_change)
            .as_secs_f64();
        if seconds < 1.0 {
            return None;
        }
        self.current =
            (self.current + self.ceiling * CLIMB_SHARE_PER_SECOND * seconds).min(self.ceiling);
        self.last_change = now;
        Some(self.current)
    }
}

/// How often a run of 429s is summed up for people, and how long without
/// one ends the run: the next 429 then warns afresh.
const RATE_LIMIT_SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// The warnings a run of 429s earns: one when the first one lowers the rate,
/// then at most one summary per [`RATE_LIMIT_SUMMARY_EVERY`], however many
/// answers come (a storm answers every request in flight).
#[derive(Debug, Clone, Default)]
pub struct RateLimitNotices {
    episode: Option<RateLimitEpisode>,
}

#[derive(Debug, Clone)]
struct RateLimitEpisode {
    last_429: Instant,
    last_notice: Instant,
    unreported: u64,
}

impl RateLimitNotices {
    /// A 429 came at `now` and left the send rate at `rate`: the warning it
    /// earns, if any.
    pub fn on_rate_limited(&mut self, now: Instant, rate: f64) -> Option<String> {
        let episode = match &mut self.episode {
            Some(episode)
                if now.saturating_duration_since(episode.last_429) < RATE_LIMIT_SUMMARY_EVERY =>
            {
                episode
            }
            _ => {
                self.episode = Some(RateLimitEpisode {
                    last_429: now,
                    last_notice: now,
                    unreported: 0,
                });
                return Some(format!(
                    "the API answered HTTP 429 (too many requests): lowered the send rate to {}/s",
                    rate_text(rate)
                ));
            }
        };
        episode.last_429 = now;
        episode.unreported += 1;
        let since_notice = now.saturating_duration_since(episode.last_notice);
        if since_notice < RATE_LIMIT_SUMMARY_EVERY {
            return None;
        }
        let notice = format!(
            "{} more HTTP 429 answers in the last {}; the send rate is now {}/s",
            episode.unreported,
            crate::clock::rounded(since_notice),
            rate_text(rate)
        );
        episode.last_notice = now;
        episode.unreported = 0;
        Some(notice)
    }
}

/// A rate as people read it: three significant figures at most, no
/// trailing zeros (`40`, `12.5`, `0.78`).
pub fn rate_text(rate: f64) -> String {
    let text = if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Exponential back-off with full jitter: the n-th wait is uniform in
/// `0..=min(cap, base * 2^n)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The ceiling of the next wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        self.base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap)
    }

    /// The next wait, jittered; counts a failure.
    pub fn next_wait(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(rng.random::<f64>())
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Trips when too many of the recent sends failed.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    window: usize,
    threshold: f64,
    recent: VecDeque<bool>,
    errors: usize,
}

impl CircuitBreaker {
    /// `threshold` is a ratio (0.5 = half); it only trips once `window`
    /// sends have been seen.
    pub fn new(window: usize, threshold: f64) -> Self {
        CircuitBreaker {
            window: window.max(1),
            threshold,
            recent: VecDeque::with_capacity(window.max(1)),
            errors: 0,
        }
    }

    /// Records one send; returns the error ratio when the breaker trips.
    pub fn record(&mut self, is_error: bool) -> Option<f64> {
        if self.recent.len() == self.window && self.recent.pop_front() == Some(true) {
            self.errors -= 1;
        }
        self.recent.push_back(is_error);
        if is_error {
            self.errors += 1;
        }
        let ratio = self.errors as f64 / self.recent.len() as f64;
        (self.recent.len() == self.window && ratio >= self.threshold).then_some(ratio)
    }

    pub fn window(&self) -> usize {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_even_and_makes_up_only_a_short_stall() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut sends = EvenSchedule::new(start, ms(250));
        assert_eq!(sends.wait(start), None);
        sends.take(start, 10.0);
        assert_eq!(sends.wait(start), Some(start + ms(100)));
        // Taken 50 ms late: the next turn keeps the schedule.
        sends.take(start + ms(150), 10.0);
        assert_eq!(sends.wait(start + ms(150)), Some(start + ms(200)));
        // Less than a timer tick away is now.
        assert_eq!(sends.wait(start + ms(199)), None);
        // After a stall of a second only the last 250 ms are made up: two
        // turns at once, then the schedule again.
        let late = start + ms(1200);
        for _ in 0..3 {
            assert_eq!(sends.wait(late), None);
            sends.take(late, 10.0);
        }
        assert_eq!(sends.wait(late), Some(start + ms(1250)));
        sends.pause_until(start + ms(3000));
        assert_eq!(sends.wait(start + ms(1200)), Some(start + ms(3000)));
        let mut polls = EvenSchedule::new(start, Duration::ZERO);
        polls.take(start, 2.0);
        polls.take(start + ms(1200), 2.0);
        assert_eq!(polls.wait(start + ms(1200)), Some(start + ms(1700)));
    }

    #[test]
    fn the_ceiling_allows_the_rate_in_any_second_and_no_more() {
        let start = Instant::now();
        let mut ceiling = RateCeiling::new(50.0);
        // Late sends catch up: 50 at once are allowed…
        for _ in 0..50 {
            assert_eq!(ceiling.earliest(), None);
            ceiling.record(start);
        }
        // …and the 51st waits until a second after the first.
        assert_eq!(
            ceiling.earliest(),
            Some(start + Duration::from_secs(1) + CEILING_GUARD)
        );
        let slow = RateCeiling::new(0.5);
        assert_eq!(slow.window, Duration::from_secs(2));
        assert_eq!(RateCeiling::new(2.5).limit, 2);
        assert_eq!(RateCeiling::new(f64::INFINITY).limit, 1);
    }
    use rand::SeedableRng;

    #[test]
    fn rate_halves_on_429_once_per_burst_and_climbs_back_slowly() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut rate = AdaptiveRate::new(100.0, start);
        assert_eq!(rate.on_rate_limited(start), Some(50.0));
        // Answers of requests already in flight: one signal.
        assert_eq!(rate.on_rate_limited(start + ms(100)), None);
        assert_eq!(rate.on_rate_limited(start + ms(600)), Some(25.0));
        // Not within a second…
        assert_eq!(rate.on_accepted(start + ms(900)), None);
        // …then 5 % of the ceiling per second.
        assert_eq!(rate.on_accepted(start + ms(1600)), Some(30.0));
        let later = start + Duration::from_secs(100);
        assert_eq!(rate.on_accepted(later), Some(100.0));
        assert_eq!(rate.on_accepted(later + Duration::from_secs(5)), None);
        assert!(rate.current() <= rate.ceiling);
    }

    #[test]
    fn rate_never_falls_below_its_floor() {
        let start = Instant::now();
        let mut rate = AdaptiveRate::new(10.0, start);
        for i in 0..50 {
            rate.on_rate_limited(start + Duration::from_secs(i));
        }
        assert!((rate.current() - 0.2).abs() < 1e-9, "{}", rate.current());
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = backoff.ceiling();
            let wait = backoff.next_wait(&mut rng);
            assert!(wait <= ceiling);
            ceilings.push(ceiling.as_secs());
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn a_storm_of_429s_earns_one_warning_then_a_summary_every_few_seconds() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut notices = RateLimitNotices::default();
        let mut lines = Vec::new();
        // 429s every 10 ms for 12 s: 1,200 answers.
        for i in 0..1200u32 {
            let rate = 40.0 / f64::from(1 + i / 100);
            if let Some(line) = notices.on_rate_limited(start + ms(10 * u64::from(i)), rate) {
                lines.push(line);
            }
        }
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(
            lines[0],
            "the API answered HTTP 429 (too many requests): lowered the send rate to 40/s"
        );
        assert_eq!(
            lines[1],
            "500 more HTTP 429 answers in the last 5.0 s; the send rate is now 6.67/s"
        );
        // After a quiet spell the next 429 warns afresh.
        let later = start + Duration::from_secs(60);
        assert!(notices
            .on_rate_limited(later, 12.5)
            .is_some_and(|line| line.ends_with("lowered the send rate to 12.5/s")));
    }

    #[test]
    fn rates_for_people_have_three_figures_at_most() {
        assert_eq!(rate_text(40.0), "40");
        assert_eq!(rate_text(12.5), "12.5");
        assert_eq!(rate_text(1234.567), "1235");
        assert_eq!(rate_text(2.0 / 3.0), "0.67");
        assert_eq!(rate_text(0.2), "0.2");
    }

    #[test]
    fn breaker_trips_on_the_error_ratio_of_a_full_window() {
        let mut breaker = CircuitBreaker::new(10, 0.5);
        for _ in 0..4 {
            assert_eq!(breaker.record(true), None, "window not full yet");
        }
        for _ in 0..5 {
            assert_eq!(breaker.record(false), None);
        }
        assert_eq!(breaker.record(true), Some(0.5));
        // Old errors slide out of the window.
        let mut calm = CircuitBreaker::new(4, 0.5);
        for outcome in [true, true, false, false, false, false] {
            calm.record(outcome);
        }
        assert_eq!(calm.record(true), None);
    }
}
