//! When would the campaign's last send happen: a simulation of the sender
//! over the send windows, the start and the deadline, the rate and the
//! daily cap, for the messages still pending.
//!
//! The simulation moves from event to event (a group's window opening or
//! closing, the cap's day turning, the deadline) rather than in fixed
//! steps: between two events the open groups and the capacity do not
//! change, so sending is a steady flow at `rate` and each finish is placed
//! exactly (message `n` of a steady run is done `n / rate` seconds after it
//! starts). The capacity of each stretch goes first to the open group whose
//! window closes soonest. It gives up one year after the start.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::{day_bounds, OpenInterval, Schedule};

/// How far past its start the simulation goes before giving up.
const HORIZON: SignedDuration = SignedDuration::from_hours(366 * 24);
/// How far ahead a group's open intervals are worked out at once.
const LOOKAHEAD: SignedDuration = SignedDuration::from_hours(8 * 24);
/// A bound on the events simulated, far above what a year of windows,
/// cap days and a few hundred groups needs: past it the simulation gives up
/// as at its horizon.
const MAX_EVENTS: u32 = 5_000_000;
/// Below this many messages a group counts as done: the flow is in
/// floating point, and a millionth of a message is rounding.
const DONE_BELOW: f64 = 1e-6;

/// What to estimate: the pending messages and everything that paces them.
#[derive(Debug, Clone)]
pub struct EstimateInput {
    /// The instant the estimate is made at.
    pub now: Timestamp,
    /// `--start-at`: nothing is sent before it.
    pub start_at: Option<Timestamp>,
    /// `--not-after`: nothing is sent from it on.
    pub not_after: Option<Timestamp>,
    /// The send windows and `--stop-before`.
    pub schedule: Schedule,
    /// Messages per second the sender can sustain: the least of `--rate`
    /// and what the pool of sending numbers allows. Zero, negative or not
    /// finite: nothing is sent.
    pub rate: f64,
    /// `--max-per-day`: at most this many sends per calendar day of the
    /// zone.
    pub max_per_day: Option<(u64, TimeZone)>,
    /// The pending messages, grouped by the zones they are texted in.
    pub groups: Vec<PendingGroup>,
}

/// Pending messages whose recipients share a set of zones.
#[derive(Debug, Clone)]
pub struct PendingGroup {
    /// A message is sent only while the window is open in all of them.
    pub zones: Vec<TimeZone>,
    /// How many messages.
    pub count: u64,
}

/// The outcome of the simulation. Every pending message is either sent (by
/// `last_send`) or counted in exactly one of `unsent_at_deadline`,
/// `unsent_at_horizon` and `never_open`.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// When the last message that would be sent goes out; `None` when none
    /// would be.
    pub last_send: Option<Timestamp>,
    /// Messages still pending when `not_after` comes.
    pub unsent_at_deadline: u64,
    /// Messages still pending when the simulation gave up, a year after its
    /// start (no deadline came first): the campaign would take longer than
    /// that, and `last_send` is only how far it got.
    pub unsent_at_horizon: u64,
    /// Messages the simulation gave up on whose zones were never open
    /// together in that year (their windows never overlap): they would never
    /// be sent.
    pub never_open: u64,
    /// One entry for each input group, in the same order.
    pub groups: Vec<GroupEstimate>,
}

impl Estimate {
    /// The simulation stopped at its horizon with messages that do get open
    /// time still pending: the real finish is later than a year away.
    pub fn gave_up(&self) -> bool {
        self.unsent_at_horizon > 0
    }
}

/// How one group fares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEstimate {
    /// When its last message goes out; `None` when it does not finish or
    /// had nothing pending.
    pub done_at: Option<Timestamp>,
    /// Its messages never sent in the simulation.
    pub unsent: u64,
    /// Its zones were open together at some time in the simulation.
    pub ever_open: bool,
}

/// Simulates the sending of `input.groups` and says when the last send
/// would happen; see the module documentation for how.
pub fn estimate_finish(input: &EstimateInput) -> Estimate {
    let begin = input
        .start_at
        .map_or(input.now, |start| start.max(input.now));
    let horizon = begin.saturating_add(HORIZON).unwrap_or(Timestamp::MAX);
    let (stop, stops_at_deadline) = match input.not_after {
        Some(deadline) if deadline <= horizon => (deadline, true),
        _ => (horizon, false),
    };
    let rate = if input.rate.is_finite() && input.rate > 0.0 {
        input.rate
    } else {
        0.0
    };
    let mut groups: Vec<GroupState> = input
        .groups
        .iter()
        .map(|group| GroupState {
            zones: &group.zones,
            // Counts are far below 2^53, where f64 stays exact.
            remaining: group.count as f64,
            done_at: None,
            ever_open: false,
            known: Vec::new(),
            next_known: 0,
            known_until: Timestamp::MIN,
        })
        .collect();
    let mut cap = input.max_per_day.as_ref().map(|(limit, zone)| DailyCap {
        limit: *limit as f64,
        zone,
        day_end: Timestamp::MIN,
        sent: 0.0,
    });

    let mut last_send = None;
    let mut now = begin;
    let mut events = 0;
    while now < stop && groups.iter().any(GroupState::pending) && events < MAX_EVENTS {
        events += 1;
        let mut stretch_end = stop;
        let mut cap_left = f64::INFINITY;
        if let Some(cap) = cap.as_mut() {
            if now >= cap.day_end {
                cap.day_end = day_bounds(now, cap.zone).1;
                cap.sent = 0.0;
            }
            stretch_end = stretch_end.min(cap.day_end);
            cap_left = (cap.limit - cap.sent).max(0.0);
        }
        let mut open: Vec<(Timestamp, usize)> = Vec::new();
        for (index, group) in groups.iter_mut().enumerate() {
            if !group.pending() {
                continue;
            }
            match group.status(&input.schedule, now) {
                Status::Open { until } => {
                    group.ever_open = true;
                    open.push((until, index));
                    stretch_end = stretch_end.min(until);
                }
                Status::Closed { until } => stretch_end = stretch_end.min(until),
            }
        }
        if open.is_empty() || cap_left < DONE_BELOW || rate == 0.0 {
            now = stretch_end;
            continue;
        }

        // The soonest to close first; ties in input order.
        open.sort();
        let seconds = now.duration_until(stretch_end).as_secs_f64();
        let capacity = (rate * seconds).min(cap_left);
        let mut used = 0.0;
        for (_, index) in open {
            let Some(group) = groups.get_mut(index) else {
                continue;
            };
            let take = group.remaining.min(capacity - used);
            if take <= 0.0 {
                break;
            }
            used += take;
            group.remaining -= take;
            if group.remaining < DONE_BELOW {
                group.remaining = 0.0;
                group.done_at = Some(later(now, used / rate, stretch_end));
            }
        }
        if used > 0.0 {
            last_send = Some(later(now, used / rate, stretch_end));
        }
        if let Some(cap) = cap.as_mut() {
            cap.sent += used;
            if cap.limit - cap.sent < DONE_BELOW {
                // Nothing more today: on to the next day.
                now = cap.day_end.max(stretch_end);
                continue;
            }
        }
        now = stretch_end;
    }

    let at_deadline = stops_at_deadline && now >= stop;
    let mut estimate = Estimate {
        last_send,
        unsent_at_deadline: 0,
        unsent_at_horizon: 0,
        never_open: 0,
        groups: Vec::with_capacity(groups.len()),
    };
    for group in &groups {
        let unsent = whole_messages(group.remaining);
        if at_deadline {
            estimate.unsent_at_deadline += unsent;
        } else if group.ever_open {
            estimate.unsent_at_horizon += unsent;
        } else {
            estimate.never_open += unsent;
        }
        estimate.groups.push(GroupEstimate {
            done_at: group.done_at,
            unsent,
            ever_open: group.ever_open,
        });
    }
    estimate
}

/// One group's progress through the simulation.
struct GroupState<'a> {
    zones: &'a [TimeZone],
    /// Messages left, in the flow's fractions.
    remaining: f64,
    done_at: Option<Timestamp>,
    ever_open: bool,
    /// Its open intervals up to `known_until`, worked out `LOOKAHEAD` at a
    /// time; those before `next_known` have passed.
    known: Vec<OpenInterval>,
    next_known: usize,
    known_until: Timestamp,
}

/// Whether a group can send at an instant, and until when that holds.
enum Status {
    Open { until: Timestamp },
    Closed { until: Timestamp },
}

impl GroupState<'_> {
    fn pending(&self) -> bool {
        self.remaining > 0.0
    }

    /// Open or closed at `now`, and until when (always after `now`).
    fn status(&mut self, schedule: &Schedule, now: Timestamp) -> Status {
        if now >= self.known_until {
            self.known_until = now.saturating_add(LOOKAHEAD).unwrap_or(Timestamp::MAX);
            self.known = schedule.open_intervals(self.zones, now, self.known_until);
            self.next_known = 0;
        }
        while self
            .known
            .get(self.next_known)
            .is_some_and(|interval| interval.end <= now)
        {
            self.next_known += 1;
        }
        match self.known.get(self.next_known) {
            Some(interval) if interval.start <= now => Status::Open {
                until: interval.end,
            },
            Some(interval) => Status::Closed {
                until: interval.start.min(self.known_until),
            },
            None => Status::Closed {
                until: self.known_until,
            },
        }
    }
}

/// The daily cap's count for the day in progress.
struct DailyCap<'a> {
    limit: f64,
    zone: &'a TimeZone,
    /// When the day being counted ends (the start of the next).
    day_end: Timestamp,
    sent: f64,
}

/// `seconds` after `start`, kept no later than `bound` (the flow's rounding
/// must not carry a send past the end of its stretch).
fn later(start: Timestamp, seconds: f64, bound: Timestamp) -> Timestamp {
    SignedDuration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|elapsed| start.checked_add(elapsed).ok())
        .map_or(bound, |instant| instant.min(bound))
}

/// The messages left in `remaining`, counting a started one as whole.
fn whole_messages(remaining: f64) -> u64 {
    if remaining < DONE_BELOW {
        return 0;
    }
    // Saturating: `as` turns anything beyond u64 into u64::MAX.
    (remaining - DONE_BELOW).ceil() as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::schedule::testing::{at, schedule, zone};

    fn group(zones: &[&str], count: u64) -> PendingGroup {
        PendingGroup {
            zones: zones.iter().map(|name| zone(name)).collect(),
            count,
        }
    }

    /// Always open, one group in UTC, at `rate`.
    fn input(now: &str, rate: f64, count: u64) -> EstimateInput {
        EstimateInput {
            now: at(now),
            start_at: None,
            not_after: None,
            schedule: Schedule::default(),
            rate,
            max_per_day: None,
            groups: vec![group(&["UTC"], count)],
        }
    }

    #[test]
    fn without_windows_it_is_count_over_rate() {
        let estimate = estimate_finish(&input("2026-06-01T12:00:00Z", 1.0, 3_600));
        assert_eq!(estimate.last_send, Some(at("2026-06-01T13:00:00Z")));
        assert_eq!(estimate.unsent_at_deadline, 0);
        assert_eq!(estimate.unsent_at_horizon, 0);
        assert_eq!(estimate.never_open, 0);
        assert!(!estimate.gave_up());
        assert_eq!(
            estimate.groups,
            vec![GroupEstimate {
                done_at: Some(at("2026-06-01T13:00:00Z")),
                unsent: 0,
                ever_open: true,
            }]
        );
        let fast = estimate_finish(&input("2026-06-01T12:00:00Z", 50.0, 3_600));
        assert_eq!(fast.last_send, Some(at("2026-06-01T12:01:12Z")));
    }

    #[test]
    fn an_hour_long_window_takes_two_days_for_two_hours_of_sends() {
        let mut input = input("2026-06-01T09:00:00Z", 1.0, 7_200);
        input.schedule = schedule(&["09:00-10:00"]);
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.last_send, Some(at("2026-06-02T10:00:00Z")));
        // Started before the window: the same.
        input.now = at("2026-06-01T06:00:00Z");
        assert_eq!(
            estimate_finish(&input).last_send,
            Some(at("2026-06-02T10:00:00Z"))
        );
        // Started in the middle of the window: half an hour more.
        input.now = at("2026-06-01T09:30:00Z");
        assert_eq!(
            estimate_finish(&input).last_send,
            Some(at("2026-06-03T09:30:00Z"))
        );
    }

    #[test]
    fn stop_before_shortens_each_window() {
        let mut input = input("2026-06-01T09:00:00Z", 1.0, 3_600);
        input.schedule = schedule(&["09:00-10:00"]);
        input.schedule.stop_before = Duration::from_secs(30 * 60);
        assert_eq!(
            estimate_finish(&input).last_send,
            Some(at("2026-06-02T09:30:00Z"))
        );
    }

    #[test]
    fn the_start_time_delays_everything() {
        let mut input = input("2026-06-01T12:00:00Z", 1.0, 60);
        input.start_at = Some(at("2026-06-01T18:00:00Z"));
        assert_eq!(
            estimate_finish(&input).last_send,
            Some(at("2026-06-01T18:01:00Z"))
        );
        // A start in the past is now.
        input.start_at = Some(at("2026-05-01T00:00:00Z"));
        assert_eq!(
            estimate_finish(&input).last_send,
            Some(at("2026-06-01T12:01:00Z"))
        );
    }

    #[test]
    fn the_deadline_leaves_the_rest_unsent() {
        let mut input = input("2026-06-01T12:00:00Z", 1.0, 3_600);
        input.not_after = Some(at("2026-06-01T12:30:00Z"));
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.last_send, Some(at("2026-06-01T12:30:00Z")));
        assert_eq!(estimate.unsent_at_deadline, 1_800);
        assert_eq!(estimate.groups[0].unsent, 1_800);
        assert_eq!(estimate.groups[0].done_at, None);
        // With a window: 09:00-10:00 on two days, deadline the second day at
        // 09:15: 3,600 + 900 sent.
        let mut windowed = self::input("2026-06-01T09:00:00Z", 1.0, 7_200);
        windowed.schedule = schedule(&["09:00-10:00"]);
        windowed.not_after = Some(at("2026-06-02T09:15:00Z"));
        let estimate = estimate_finish(&windowed);
        assert_eq!(estimate.unsent_at_deadline, 2_700);
        assert_eq!(estimate.last_send, Some(at("2026-06-02T09:15:00Z")));
        // A deadline after the finish changes nothing.
        windowed.not_after = Some(at("2026-06-05T00:00:00Z"));
        let estimate = estimate_finish(&windowed);
        assert_eq!(estimate.unsent_at_deadline, 0);
        assert_eq!(estimate.last_send, Some(at("2026-06-02T10:00:00Z")));
    }

    #[test]
    fn a_start_after_the_deadline_sends_nothing() {
        let mut input = input("2026-06-01T12:00:00Z", 1.0, 100);
        input.start_at = Some(at("2026-06-02T00:00:00Z"));
        input.not_after = Some(at("2026-06-01T18:00:00Z"));
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.last_send, None);
        assert_eq!(estimate.unsent_at_deadline, 100);
    }

    #[test]
    fn the_daily_cap_moves_the_rest_to_the_next_day() {
        // Days of America/New_York, starting at midnight EDT (04:00Z).
        let mut input = input("2026-06-01T04:00:00Z", 1.0, 2_500);
        input.max_per_day = Some((1_000, zone("America/New_York")));
        let estimate = estimate_finish(&input);
        // 1,000 on June 1 and 2, 500 on June 3 from midnight: 00:08:20 EDT.
        assert_eq!(estimate.last_send, Some(at("2026-06-03T04:08:20Z")));
        // Started mid-day, the first day's cap is still whole.
        input.now = at("2026-06-01T20:00:00Z");
        assert_eq!(
            estimate_finish(&input).last_send,
            Some(at("2026-06-03T04:08:20Z"))
        );
        // A cap of zero sends nothing, and says the year ran out.
        input.max_per_day = Some((0, zone("America/New_York")));
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.last_send, None);
        assert_eq!(estimate.unsent_at_horizon, 2_500);
        assert!(estimate.gave_up());
    }

    #[test]
    fn the_daily_cap_and_a_window_together() {
        // 09:00-10:00 UTC, 1/s, 500 a day: 500 each day at 09:08:20.
        let mut input = input("2026-06-01T00:00:00Z", 1.0, 1_200);
        input.schedule = schedule(&["09:00-10:00"]);
        input.max_per_day = Some((500, TimeZone::UTC));
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.last_send, Some(at("2026-06-03T09:03:20Z")));
    }

    #[test]
    fn two_zones_three_hours_apart() {
        // 09:00-10:00 in New York (13:00Z in June) and in Los Angeles
        // (16:00Z): each group sends in its own hour.
        let input = EstimateInput {
            now: at("2026-06-01T13:00:00Z"),
            start_at: None,
            not_after: None,
            schedule: schedule(&["09:00-10:00"]),
            rate: 1.0,
            max_per_day: None,
            groups: vec![
                group(&["America/New_York"], 1_800),
                group(&["America/Los_Angeles"], 1_800),
            ],
        };
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.groups[0].done_at, Some(at("2026-06-01T13:30:00Z")));
        assert_eq!(estimate.groups[1].done_at, Some(at("2026-06-01T16:30:00Z")));
        assert_eq!(estimate.last_send, Some(at("2026-06-01T16:30:00Z")));
    }

    #[test]
    fn the_group_closing_soonest_goes_first() {
        // 08:00-21:00: at 16:00Z New York (12:00) closes at 01:00Z, Los
        // Angeles (09:00) at 04:00Z. Listed last, New York still goes first.
        let input = EstimateInput {
            now: at("2026-06-01T16:00:00Z"),
            start_at: None,
            not_after: None,
            schedule: schedule(&["08:00-21:00"]),
            rate: 1.0,
            max_per_day: None,
            groups: vec![
                group(&["America/Los_Angeles"], 3_600),
                group(&["America/New_York"], 3_600),
            ],
        };
        let estimate = estimate_finish(&input);
        assert_eq!(estimate.groups[1].done_at, Some(at("2026-06-01T17:00:00Z")));
        assert_eq!(estimate.groups[0].done_at, Some(at("2026-06-01T18:00:00Z")));
    }

    #[test]
    fn a_group_whose_zones_never_overlap_is_never_sent() {
        let input = EstimateInput {
            now: at("2026-06-01T00:00:00Z"),
            start_at: None,
            not_after: None,
            schedule: schedule(&["09:00-10:00"]),
            rate: 1.0,
            max_per_day: None,
            groups: vec![
                group(&["Asia/Tokyo", "America/New_York"], 10),
                group(&["Asia/Tokyo"], 60),
            ],
        };
        let estimate = estimate_finish(&input);
        // Tokyo's 09:00 is 00:00Z.
        assert_eq!(estimate.last_send, Some(at("2026-06-01T00:01:00Z")));
        assert_eq!(estimate.never_open, 10);
        assert_eq!(estimate.unsent_at_horizon, 0);
        assert!(!estimate.groups[0].ever_open);
        assert_eq!(estimate.groups[0].unsent, 10);
    }

    #[test]
    fn it_gives_up_after_a_year() {
        // One message a day for 1,000 messages.
        let estimate = estimate_finish(&input("2026-06-01T00:00:00Z", 1.0 / 86_400.0, 1_000));
        assert!(estimate.gave_up());
        assert_eq!(estimate.unsent_at_horizon, 1_000 - 366);
        assert_eq!(estimate.last_send, Some(at("2027-06-02T00:00:00Z")));
    }

    #[test]
    fn no_rate_sends_nothing() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let estimate = estimate_finish(&input("2026-06-01T00:00:00Z", rate, 10));
            assert_eq!(estimate.last_send, None, "{rate}");
            assert_eq!(estimate.unsent_at_horizon, 10, "{rate}");
        }
    }

    #[test]
    fn nothing_pending_sends_nothing() {
        let estimate = estimate_finish(&input("2026-06-01T00:00:00Z", 1.0, 0));
        assert_eq!(estimate.last_send, None);
        assert_eq!(estimate.groups[0].done_at, None);
        assert_eq!(estimate.groups[0].unsent, 0);
    }

    #[test]
    fn a_fractional_rate_counts_whole_messages() {
        // 0.3/s for 10 s at the deadline: 3 sent, 7 left.
        let mut input = input("2026-06-01T00:00:00Z", 0.3, 10);
        input.not_after = Some(at("2026-06-01T00:00:10Z"));
        assert_eq!(estimate_finish(&input).unsent_at_deadline, 7);
        // 0.3/s for 11 s: 3.3 sent, so 7 (one started) left.
        input.not_after = Some(at("2026-06-01T00:00:11Z"));
        assert_eq!(estimate_finish(&input).unsent_at_deadline, 7);
    }
}
