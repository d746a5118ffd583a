//! What the sender may send at a given moment: the campaign's start and
//! deadline, the send windows of each zone set, and the daily cap. Pure
//! state: the time comes in as an argument, so it is tested without
//! sleeping, including on the days clocks change.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::schedule::window::SendWindows;
use crate::schedule::{day_bounds, parse_zone, Schedule};
use crate::store::DailyCap;

/// How long a verdict is kept at most before it is worked out again, so
/// that a wait announced for hours still notices a change of the clock.
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// A campaign's zone set: the zones its recipients are texted in.
#[derive(Debug, Clone)]
pub struct ZoneSet {
    pub id: i64,
    pub zones: Vec<TimeZone>,
    /// The zones' names for people, e.g. "America/Adak + America/Anchorage".
    pub label: String,
}

/// The rules the gate applies.
#[derive(Debug, Clone)]
pub struct GateRules {
    pub schedule: Schedule,
    /// The campaign's zone (`--timezone`) and its name.
    pub zone: TimeZone,
    pub zone_name: String,
    pub start_at: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    pub max_per_day: Option<u64>,
}

/// What may be sent now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Claim from these zone sets, the one whose window closes soonest
    /// first, until `until` at the latest (then ask again).
    Open {
        zone_sets: Arc<[i64]>,
        until: Timestamp,
        daily_cap: Option<DailyCap>,
    },
    /// Nothing may be sent before `until` (`--start-at`).
    NotYet { until: Timestamp },
    /// The deadline (`--not-after`) has passed: nothing is sent any more.
    Deadline { at: Timestamp },
}

/// Works verdicts out, and keeps the last one while it holds.
#[derive(Debug)]
pub struct Gate {
    rules: GateRules,
    zone_sets: Vec<ZoneSet>,
    last: Option<Verdict>,
}

impl Gate {
    pub fn new(rules: GateRules, zone_sets: Vec<ZoneSet>) -> Gate {
        Gate {
            rules,
            zone_sets,
            last: None,
        }
    }

    pub fn rules(&self) -> &GateRules {
        &self.rules
    }

    /// The verdict at `now`.
    pub fn at(&mut self, now: Timestamp) -> Verdict {
        if let Some(last) = &self.last {
            let holds = match last {
                Verdict::Open { until, .. } | Verdict::NotYet { until } => now < *until,
                Verdict::Deadline { .. } => true,
            };
            if holds {
                return last.clone();
            }
        }
        let verdict = self.work_out(now);
        self.last = Some(verdict.clone());
        verdict
    }

    fn work_out(&self, now: Timestamp) -> Verdict {
        let rules = &self.rules;
        if let Some(at) = rules.not_after.filter(|&at| now >= at) {
            return Verdict::Deadline { at };
        }
        let recheck = now
            .checked_add(RECHECK_EVERY)
            .unwrap_or(Timestamp::MAX)
            .min(rules.not_after.unwrap_or(Timestamp::MAX));
        if let Some(start) = rules.start_at.filter(|&start| now < start) {
            return Verdict::NotYet {
                until: start.min(recheck),
            };
        }
        let mut until = recheck;
        let mut open: Vec<(Timestamp, i64)> = Vec::new();
        for set in &self.zone_sets {
            let zones = self.zones_of(set);
            match rules.schedule.open_until(zones, now) {
                Some(closes) => {
                    until = until.min(closes);
                    open.push((closes, set.id));
                }
                None => {
                    if let Some(opens) = rules.schedule.next_open(zones, now) {
                        until = until.min(opens);
                    }
                }
            }
        }
        open.sort();
        let daily_cap = rules.max_per_day.map(|cap| {
            let (start, next) = day_bounds(now, &rules.zone);
            until = until.min(next);
            DailyCap {
                day: start.to_zoned(rules.zone.clone()).date().to_string(),
                cap,
            }
        });
        Verdict::Open {
            zone_sets: open.into_iter().map(|(_, id)| id).collect(),
            until,
            daily_cap,
        }
    }

    /// Whether a message of `zone_set`, claimed a moment ago, may still
    /// leave at `now`: its window may have closed or the deadline passed
    /// in between.
    pub fn may_send(&mut self, zone_set: i64, now: Timestamp) -> bool {
        match self.at(now) {
            Verdict::Open { zone_sets, .. } => zone_sets.contains(&zone_set),
            Verdict::NotYet { .. } | Verdict::Deadline { .. } => false,
        }
    }

    /// The next window to open for the zone sets that still have messages
    /// (`pending`: zone set and count), after `now`: when, the set's zones
    /// and how many recipients wait for it. `None` when no window of those
    /// sets opens within the schedule's horizon.
    pub fn next_opening(
        &self,
        pending: &[(i64, i64)],
        now: Timestamp,
    ) -> Option<(Timestamp, &ZoneSet, i64)> {
        pending
            .iter()
            .filter_map(|&(id, count)| {
                let set = self.zone_sets.iter().find(|set| set.id == id)?;
                let opens = self.rules.schedule.next_open(self.zones_of(set), now)?;
                Some((opens, set, count))
            })
            .min_by_key(|(opens, _, _)| *opens)
    }

    /// The set's zones; set 0 is the campaign's own zone.
    fn zones_of<'a>(&'a self, set: &'a ZoneSet) -> &'a [TimeZone] {
        if set.zones.is_empty() {
            std::slice::from_ref(&self.rules.zone)
        } else {
            &set.zones
        }
    }

    /// The name of `set`'s zones for people.
    pub fn label<'a>(&'a self, set: &'a ZoneSet) -> &'a str {
        if set.zones.is_empty() {
            &self.rules.zone_name
        } else {
            &set.label
        }
    }
}

/// The zone sets as the store lists them (id, zone names joined by spaces),
/// resolved. A name the time zone database does not know (only a database
/// edited by hand, or a zone removed from a newer database) falls back to
/// the campaign's zone, with a warning.
pub fn resolve_zone_sets(stored: Vec<(i64, String)>) -> Vec<ZoneSet> {
    stored
        .into_iter()
        .map(|(id, names)| {
            let zones = names
                .split(' ')
                .filter(|name| !name.is_empty())
                .filter_map(|name| match parse_zone(name) {
                    Ok(zone) => Some(zone),
                    Err(error) => {
                        tracing::warn!("zone set {id}: {error}; its recipients are texted in the campaign's zone");
                        None
                    }
                })
                .collect();
            ZoneSet {
                id,
                zones,
                label: names.replace(' ', " + "),
            }
        })
        .collect()
}

/// The stored windows read back; validated when stored, so a failure means
/// the database was edited by hand.
pub fn stored_windows(stored: &str) -> Result<SendWindows, String> {
    if stored.is_empty() {
        return SendWindows::parse(&[]).map_err(|error| error.to_string());
    }
    SendWindows::from_stored(stored).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::testing::{at, zone};

    fn gate(windows: &[&str], rules: impl FnOnce(&mut GateRules)) -> Gate {
        let values: Vec<String> = windows.iter().map(|w| (*w).to_owned()).collect();
        let mut gate_rules = GateRules {
            schedule: Schedule {
                windows: SendWindows::parse(&values).expect("windows"),
                stop_before: Duration::ZERO,
            },
            zone: zone("America/New_York"),
            zone_name: "America/New_York".into(),
            start_at: None,
            not_after: None,
            max_per_day: None,
        };
        rules(&mut gate_rules);
        let sets = resolve_zone_sets(vec![
            (0, String::new()),
            (1, "America/Los_Angeles".into()),
            (2, "America/Adak America/Anchorage".into()),
        ]);
        Gate::new(gate_rules, sets)
    }

    fn open_sets(verdict: &Verdict) -> Vec<i64> {
        match verdict {
            Verdict::Open { zone_sets, .. } => zone_sets.to_vec(),
            other => panic!("not open: {other:?}"),
        }
    }

    /// Each set is open while its own local time is in the window; set 0
    /// follows the campaign's zone; the set that closes first comes first.
    #[test]
    fn each_zone_set_opens_in_its_own_local_hours() {
        let mut gate = gate(&["09:00-20:00"], |_| {});
        // 14:00 UTC: 09:00 in New York, 06:00 in Los Angeles, 04:00 in Anchorage.
        assert_eq!(open_sets(&gate.at(at("2026-12-03T14:00:00Z"))), vec![0]);
        // 18:30 UTC: 13:30, 10:30, 09:30 (Anchorage) and 08:30 (Adak).
        assert_eq!(open_sets(&gate.at(at("2026-12-03T18:30:00Z"))), vec![0, 1]);
        // 19:30 UTC: Adak reaches 09:30 too, so the pair of zones opens.
        assert_eq!(
            open_sets(&gate.at(at("2026-12-03T19:30:00Z"))),
            vec![0, 1, 2]
        );
        // 01:30 UTC: New York is closed (20:30); the others are open and
        // Los Angeles (17:30) closes before Anchorage (16:30) and Adak.
        assert_eq!(open_sets(&gate.at(at("2026-12-04T01:30:00Z"))), vec![1, 2]);
    }

    /// A verdict is kept until the next window opens or closes, and worked
    /// out again then.
    #[test]
    fn a_verdict_holds_until_a_window_changes() {
        let mut gate = gate(&["09:00-20:00"], |_| {});
        match gate.at(at("2026-12-03T13:00:00Z")) {
            Verdict::Open {
                zone_sets, until, ..
            } => {
                assert!(zone_sets.is_empty());
                // Checked again within a minute at the latest.
                assert_eq!(until, at("2026-12-03T13:01:00Z"));
            }
            other => panic!("{other:?}"),
        }
        // New York opens at 14:00 UTC, before the minute is out.
        let mut gate = self::gate(&["09:00-20:00"], |_| {});
        match gate.at(at("2026-12-03T13:59:30Z")) {
            Verdict::Open { until, .. } => assert_eq!(until, at("2026-12-03T14:00:00Z")),
            other => panic!("{other:?}"),
        }
    }

    /// Before the start nothing is sent; at and after the deadline nothing
    /// ever is, whatever the windows.
    #[test]
    fn start_and_deadline_bound_every_window() {
        let mut gate = gate(&[], |rules| {
            rules.start_at = Some(at("2026-12-03T15:00:00Z"));
            rules.not_after = Some(at("2026-12-03T18:00:00Z"));
        });
        assert_eq!(
            gate.at(at("2026-12-03T14:59:50Z")),
            Verdict::NotYet {
                until: at("2026-12-03T15:00:00Z")
            }
        );
        assert_eq!(
            open_sets(&gate.at(at("2026-12-03T15:00:00Z"))),
            vec![0, 1, 2]
        );
        assert!(gate.may_send(1, at("2026-12-03T17:59:59Z")));
        assert!(!gate.may_send(1, at("2026-12-03T18:00:00Z")));
        assert_eq!(
            gate.at(at("2026-12-05T00:00:00Z")),
            Verdict::Deadline {
                at: at("2026-12-03T18:00:00Z")
            }
        );
    }

    /// The daily cap counts the calendar day of the campaign's zone, and the
    /// verdict ends with that day.
    #[test]
    fn the_daily_cap_follows_the_campaigns_calendar_day() {
        let mut gate = gate(&[], |rules| rules.max_per_day = Some(100));
        // 03:00 UTC is still 22:00 on the 2nd in New York.
        match gate.at(at("2026-12-03T03:00:00Z")) {
            Verdict::Open { daily_cap, .. } => assert_eq!(
                daily_cap,
                Some(DailyCap {
                    day: "2026-12-02".into(),
                    cap: 100
                })
            ),
            other => panic!("{other:?}"),
        }
        match gate.at(at("2026-12-03T05:00:30Z")) {
            Verdict::Open { daily_cap, .. } => {
                assert_eq!(daily_cap.map(|cap| cap.day), Some("2026-12-03".into()))
            }
            other => panic!("{other:?}"),
        }
    }

    /// The wait names the next window of the sets that still have
    /// messages, with its zones and how many recipients wait for it.
    #[test]
    fn the_next_opening_names_its_zones_and_recipients() {
        let gate = gate(&["09:00-20:00"], |_| {});
        let now = at("2026-12-03T13:00:00Z");
        let (opens, set, count) = gate.next_opening(&[(1, 7), (2, 3)], now).expect("opens");
        assert_eq!(opens, at("2026-12-03T17:00:00Z"));
        assert_eq!(gate.label(set), "America/Los_Angeles");
        assert_eq!(count, 7);
        let (opens, set, _) = gate.next_opening(&[(2, 3)], now).expect("opens");
        // Both Adak (09:00 = 19:00 UTC) and Anchorage must be open.
        assert_eq!(opens, at("2026-12-03T19:00:00Z"));
        assert_eq!(gate.label(set), "America/Adak + America/Anchorage");
    }
}
