//! How fast to send and poll: the even schedule, the hard ceilings of
//! `--rate` and `--rate-per-from` (in messages or in segments), the adaptive
//! rate when the API pushes back (AIMD), the back-off with full jitter, and
//! the circuit breaker. Pure state machines: time comes in as an argument, so
//! they are tested without sleeping.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::domain::phone::E164;

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

/// Units the ceiling counts in one window at most: rates above this many
/// per second are capped to it (far above what one process sends).
const CEILING_MAX_UNITS: u32 = 100_000;
/// Room left for the time between a send leaving the loop and reaching the
/// provider, which varies by a few milliseconds on a busy machine (2 ms let
/// 501 sends into one second at `--rate 500`). It costs the mean rate
/// guard/1 s (0.5 %) when the ceiling binds.
const CEILING_GUARD: Duration = Duration::from_millis(5);
/// The heaviest message the ceiling weighs: a concatenated SMS has at most
/// 255 segments (its header counts them in one byte). Anything heavier is
/// weighed as 255, which keeps the arithmetic of [`RateCeiling`] in range.
pub const MAX_MESSAGE_WEIGHT: u32 = crate::domain::text::MAX_SEGMENTS;

/// The hard ceiling of `--rate`, counted as a provider counts it: at most
/// `floor(rate)` units (at least one) in any window of one second, or of
/// 1/rate seconds below one unit per second. A message weighs one unit, or
/// its segment count when the rate counts segments ([`crate::domain::text::RateUnit`]). Unlike a
/// token bucket, a send that left late does not forfeit its share, so the
/// mean rate holds while no window ever exceeds the limit.
///
/// A message heavier than the whole limit (5 segments at a rate of 3) could
/// never fit in a window beside anything else: it goes when the window is
/// empty, and its excess is carried into the windows after it as though it
/// had been split (5 at a limit of 3 counts 3 in its own window and 2 in the
/// next), so the mean rate stays under the limit: a stream of them goes one
/// per `ceil(weight / limit)` windows. Its own window exceeds the limit; no
/// pacing can avoid that short of refusing the message.
#[derive(Debug)]
pub struct RateCeiling {
    /// Units allowed in one window, at least one.
    limit: u32,
    window: Duration,
    /// The newest sends as (when, units), oldest first, each of at most
    /// `limit` units (the carried part of a heavy message is dated in a later
    /// window). Only the newest that add up to `limit` are kept: older ones
    /// can no longer decide when a send may leave, so at most `limit`
    /// entries.
    recent: VecDeque<(Instant, u32)>,
    /// The units in `recent`.
    units: u32,
}

impl RateCeiling {
    pub fn new(rate: f64) -> RateCeiling {
        let limit = if rate.is_finite() && rate >= 1.0 {
            (rate.floor() as u32).min(CEILING_MAX_UNITS)
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
            recent: VecDeque::with_capacity(limit.min(4096) as usize),
            units: 0,
        }
    }

    /// The earliest moment the next one-unit send may leave; `None`: now.
    pub fn earliest(&self) -> Option<Instant> {
        self.earliest_for(1)
    }

    /// The earliest moment a send of `weight` units may leave; `None`: now.
    /// A weight of 0 counts as 1 (every request is a message); one above
    /// the limit waits for an empty window.
    pub fn earliest_for(&self, weight: u32) -> Option<Instant> {
        let weight = weight.clamp(1, self.limit);
        if self.units + weight <= self.limit {
            return None;
        }
        // Walk from the oldest: each send that, with the newer ones, leaves
        // no room for `weight` must have left the window first.
        let room = self.limit - weight;
        let mut newer_units = self.units;
        let mut must_leave: Option<Instant> = None;
        for &(at, units) in &self.recent {
            must_leave = Some(must_leave.map_or(at, |latest| latest.max(at)));
            newer_units -= units;
            if newer_units <= room {
                break;
            }
        }
        must_leave.map(|at| at + self.window + CEILING_GUARD)
    }

    /// Notes a one-unit send that left at `at`.
    pub fn record(&mut self, at: Instant) {
        self.record_weighted(at, 1);
    }

    /// Notes a send of `weight` units that left at `at` (0 counts as 1,
    /// more than [`MAX_MESSAGE_WEIGHT`] as that).
    pub fn record_weighted(&mut self, at: Instant, weight: u32) {
        let weight = weight.clamp(1, MAX_MESSAGE_WEIGHT);
        let (whole_windows, rest) = (weight / self.limit, weight % self.limit);
        // A heavy message counts `limit` in each of `whole_windows` windows
        // from `at` on, then `rest` in the next. Of those, only the last
        // full window and the rest can matter (they already add up to the
        // limit), so only they are noted.
        if whole_windows > 0 {
            self.note(self.windows_after(at, whole_windows - 1), self.limit);
        }
        if rest > 0 {
            self.note(self.windows_after(at, whole_windows), rest);
        }
    }

    /// `count` windows after `at`: at most 255 windows of at most 1,000 s.
    fn windows_after(&self, at: Instant, count: u32) -> Instant {
        self.window
            .checked_mul(count)
            .and_then(|offset| at.checked_add(offset))
            .unwrap_or(at)
    }

    fn note(&mut self, at: Instant, units: u32) {
        self.recent.push_back((at, units));
        self.units += units;
        while let Some(&(_, oldest)) = self.recent.front() {
            if self.units - oldest < self.limit {
                break;
            }
            self.recent.pop_front();
            self.units -= oldest;
        }
    }
}

/// The ceiling of `--rate-per-from`: one [`RateCeiling`] per sending
/// number, made when the number first sends. A carrier throttles each
/// number apart, beside the campaign's own `--rate`.
#[derive(Debug)]
pub struct PerSenderCeilings {
    rate: f64,
    ceilings: HashMap<E164, RateCeiling>,
}

impl PerSenderCeilings {
    /// Each number may send `rate` units per second.
    pub fn new(rate: f64) -> PerSenderCeilings {
        PerSenderCeilings {
            rate,
            ceilings: HashMap::new(),
        }
    }

    /// The earliest moment `sender` may send `weight` units; `None`: now.
    pub fn earliest(&self, sender: &E164, weight: u32) -> Option<Instant> {
        self.ceilings
            .get(sender)
            .and_then(|ceiling| ceiling.earliest_for(weight))
    }

    /// Notes that `sender` sent `weight` units at `at`.
    pub fn record(&mut self, sender: &E164, at: Instant, weight: u32) {
        if let Some(ceiling) = self.ceilings.get_mut(sender) {
            ceiling.record_weighted(at, weight);
            return;
        }
        let mut ceiling = RateCeiling::new(self.rate);
        ceiling.record_weighted(at, weight);
        self.ceilings.insert(sender.clone(), ceiling);
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
    use rand::SeedableRng;

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
    #[test]
    fn weighted_sends_fill_the_window_and_no_more() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let second = Duration::from_secs(1) + CEILING_GUARD;
        let mut ceiling = RateCeiling::new(10.0);
        for offset in [0, 100, 200] {
            assert_eq!(ceiling.earliest_for(3), None);
            ceiling.record_weighted(start + ms(offset), 3);
        }
        // 9 of 10 units used: one more fits, two wait for the first send
        // to leave the window.
        assert_eq!(ceiling.earliest_for(1), None);
        assert_eq!(ceiling.earliest_for(2), Some(start + second));
        ceiling.record_weighted(start + ms(300), 1);
        assert_eq!(ceiling.earliest(), Some(start + second));
        // 4 units need the first two sends gone.
        assert_eq!(ceiling.earliest_for(4), Some(start + ms(100) + second));
        // A weight of 0 is a message all the same.
        assert_eq!(ceiling.earliest_for(0), ceiling.earliest_for(1));
    }

    #[test]
    fn one_unit_sends_wait_exactly_as_they_did_before_weights() {
        // The ceiling before weights: the last `limit` sends, and the next
        // one waits a window after the oldest of them.
        let start = Instant::now();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut ceiling = RateCeiling::new(7.0);
        let mut last_seven: VecDeque<Instant> = VecDeque::new();
        let mut now = start;
        for _ in 0..5000 {
            let expected = (last_seven.len() == 7)
                .then(|| {
                    last_seven
                        .front()
                        .map(|&oldest| oldest + Duration::from_secs(1) + CEILING_GUARD)
                })
                .flatten();
            assert_eq!(ceiling.earliest(), expected);
            // Sometimes on time, sometimes late.
            now = expected.unwrap_or(now).max(now)
                + Duration::from_millis(rng.random_range(0..=150) * rng.random_range(0..=1));
            ceiling.record(now);
            if last_seven.len() == 7 {
                last_seven.pop_front();
            }
            last_seven.push_back(now);
        }
    }

    #[test]
    fn a_message_heavier_than_the_limit_waits_for_an_empty_window_and_carries_its_excess() {
        let start = Instant::now();
        let second = Duration::from_secs(1) + CEILING_GUARD;
        let mut ceiling = RateCeiling::new(3.0);
        ceiling.record_weighted(start, 1);
        // 5 segments at 3 per second: it goes once the window is empty…
        assert_eq!(ceiling.earliest_for(5), Some(start + second));
        let heavy = start + second;
        ceiling.record_weighted(heavy, 5);
        // …counts 3 in its own second and 2 in the next: one more segment
        // fits a second later, 2 or 3 only two seconds later.
        assert_eq!(ceiling.earliest_for(1), Some(heavy + second));
        assert_eq!(
            ceiling.earliest_for(2),
            Some(heavy + Duration::from_secs(1) + second)
        );
        assert_eq!(
            ceiling.earliest_for(3),
            Some(heavy + Duration::from_secs(1) + second)
        );
        // A stream of them never blocks.
        let mut stream = RateCeiling::new(3.0);
        let mut now = start;
        for _ in 0..30 {
            now = stream.earliest_for(5).unwrap_or(now).max(now);
            stream.record_weighted(now, 5);
        }
        // Each waits for its own window and the one its excess took: 2.5
        // segments a second, under the rate.
        assert_eq!(
            now,
            start + 29 * (2 * Duration::from_secs(1) + CEILING_GUARD)
        );
        // Below one unit per second: 3 segments at 0.5/s take 6 s.
        let mut slow = RateCeiling::new(0.5);
        slow.record_weighted(start, 3);
        assert_eq!(
            slow.earliest_for(1),
            Some(start + Duration::from_secs(6) + CEILING_GUARD)
        );
        // Absurd weights are weighed as the heaviest SMS, and do not panic.
        let mut absurd = RateCeiling::new(1.0);
        absurd.record_weighted(start, u32::MAX);
        assert_eq!(
            absurd.earliest(),
            Some(start + Duration::from_secs(255) + CEILING_GUARD)
        );
    }

    #[test]
    fn the_ceiling_remembers_no_more_sends_than_its_limit() {
        let start = Instant::now();
        let mut ceiling = RateCeiling::new(40.0);
        let mut now = start;
        for i in 0..100_000u32 {
            let weight = 1 + i % 7;
            now = ceiling.earliest_for(weight).unwrap_or(now).max(now);
            ceiling.record_weighted(now, weight);
            assert!(ceiling.recent.len() <= 40);
            assert_eq!(
                ceiling.units,
                ceiling.recent.iter().map(|&(_, units)| units).sum::<u32>()
            );
        }
    }

    #[test]
    fn each_sender_has_its_own_ceiling() {
        let start = Instant::now();
        let first = E164::from_stored("+16505550100").expect("a test number");
        let second = E164::from_stored("+16505550101").expect("a test number");
        let mut ceilings = PerSenderCeilings::new(2.0);
        assert_eq!(ceilings.earliest(&first, 2), None);
        ceilings.record(&first, start, 2);
        let next_second = start + Duration::from_secs(1) + CEILING_GUARD;
        assert_eq!(ceilings.earliest(&first, 1), Some(next_second));
        assert_eq!(ceilings.earliest(&second, 2), None);
        ceilings.record(&second, start, 1);
        assert_eq!(ceilings.earliest(&second, 1), None);
        assert_eq!(ceilings.earliest(&second, 2), Some(next_second));
    }

    /// One send as the provider saw it.
    #[derive(Debug, Clone, Copy)]
    struct Sent {
        at: Instant,
        sender: usize,
        weight: u32,
    }

    /// The most units any one-second window `[t, t + 1 s)` holds. `sends`
    /// are in time order; the fullest window starts at a send.
    fn fullest_second<'a>(sends: impl Iterator<Item = &'a Sent>) -> u32 {
        let sends: Vec<&Sent> = sends.collect();
        let (mut fullest, mut in_window, mut end) = (0, 0, 0);
        for send in &sends {
            while end < sends.len() && sends[end].at < send.at + Duration::from_secs(1) {
                in_window += sends[end].weight;
                end += 1;
            }
            fullest = fullest.max(in_window);
            in_window -= send.weight;
        }
        fullest
    }

    /// Units per second from the first send to the last. The sends at the
    /// last moment are left out: their units take their share of a window
    /// after it.
    fn mean_rate<'a>(sends: impl Iterator<Item = &'a Sent>) -> f64 {
        let sends: Vec<&Sent> = sends.collect();
        let (Some(first), Some(last)) = (sends.first(), sends.last()) else {
            return 0.0;
        };
        let units: u32 = sends
            .iter()
            .filter(|send| send.at < last.at)
            .map(|send| send.weight)
            .sum();
        f64::from(units) / last.at.duration_since(first.at).as_secs_f64()
    }

    /// Sends `messages` (sender, weight), each number's in their order, each
    /// as early as both ceilings allow; of the numbers that may send at the
    /// same moment, the one whose message came first.
    fn simulate(rate: f64, rate_per_from: f64, messages: &[(usize, u32)]) -> Vec<Sent> {
        let start = Instant::now();
        let numbers: Vec<E164> = (0..3)
            .map(|i| E164::from_stored(&format!("+1650555010{i}")).expect("a test number"))
            .collect();
        let mut queues: Vec<VecDeque<(usize, u32)>> = vec![VecDeque::new(); numbers.len()];
        for (arrival, &(sender, weight)) in messages.iter().enumerate() {
            queues[sender].push_back((arrival, weight));
        }
        let mut campaign = RateCeiling::new(rate);
        let mut per_sender = PerSenderCeilings::new(rate_per_from);
        let mut now = start;
        let mut sent = Vec::new();
        loop {
            let next = queues
                .iter()
                .enumerate()
                .filter_map(|(sender, queue)| Some((sender, *queue.front()?)))
                .map(|(sender, (arrival, weight))| {
                    let at = [
                        campaign.earliest_for(weight),
                        per_sender.earliest(&numbers[sender], weight),
                    ]
                    .into_iter()
                    .flatten()
                    .fold(now, Instant::max);
                    (at, arrival, sender, weight)
                })
                .min();
            let Some((at, _, sender, weight)) = next else {
                return sent;
            };
            now = at;
            campaign.record_weighted(at, weight);
            per_sender.record(&numbers[sender], at, weight);
            queues[sender].pop_front();
            sent.push(Sent { at, sender, weight });
        }
    }

    /// 3,000 messages of 1 to 4 segments over 3 numbers, as a pool spreads
    /// recipients.
    fn mixed_stream() -> Vec<(usize, u32)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        (0..3000)
            .map(|_| (rng.random_range(0..3), rng.random_range(1..=4)))
            .collect()
    }

    #[test]
    fn the_checker_sees_a_crowded_second() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let sends =
            [(0, 2), (400, 3), (999, 1), (1000, 4), (1500, 1)].map(|(offset, weight)| Sent {
                at: start + ms(offset),
                sender: 0,
                weight,
            });
        // [400 ms, 1.4 s) holds 3 + 1 + 4.
        assert_eq!(fullest_second(sends.iter()), 8);
        assert_eq!(fullest_second(sends[..2].iter()), 5);
        // 10 units before the last send, over 1.5 s.
        assert!((mean_rate(sends.iter()) - 10.0 / 1.5).abs() < 1e-9);
    }

    // Whole messages fill a window only so far: a window can end up to 3
    // units short of the limit when the next message weighs 4, and each
    // window costs the guard. The mean rate bounds below allow for that.

    #[test]
    fn simulated_sends_keep_both_ceilings_and_the_campaign_rate() {
        // The campaign binds: 3 numbers could send 90 units a second.
        let sent = simulate(50.0, 30.0, &mixed_stream());
        assert_eq!(sent.len(), 3000);
        assert!(fullest_second(sent.iter()) <= 50);
        for sender in 0..3 {
            let own = || sent.iter().filter(move |send| send.sender == sender);
            assert!(fullest_second(own()) <= 30, "number {sender}");
        }
        let rate = mean_rate(sent.iter());
        assert!((48.0..=50.0).contains(&rate), "{rate} units/s");
    }

    #[test]
    fn simulated_sends_keep_both_ceilings_and_each_numbers_rate() {
        // The numbers bind: 3 × 30 units a second under a campaign rate of
        // 200.
        let sent = simulate(200.0, 30.0, &mixed_stream());
        assert_eq!(sent.len(), 3000);
        assert!(fullest_second(sent.iter()) <= 200);
        for sender in 0..3 {
            let own = || sent.iter().filter(move |send| send.sender == sender);
            assert!(fullest_second(own()) <= 30, "number {sender}");
            let rate = mean_rate(own());
            assert!(
                (28.0..=30.0).contains(&rate),
                "number {sender}: {rate} units/s"
            );
        }
    }

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
