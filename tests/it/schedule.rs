//! When and from which number a campaign sends: windows in each
//! recipient's zone, the start and the deadline, `cancel`, sender pools and
//! their rates, segment-counted rates, the daily cap, and the flags that
//! are refused before anything is stored. The windows are built around the
//! real clock, so that a recipient's window is open or closed now.

use std::collections::HashMap;
use std::time::Duration;

use bpsms::mock::{Behaviour, LedgerEntry};
use jiff::{Timestamp, ToSpan};

use crate::harness::{cannot_run_here, path_str, recipients, send_args, World, FROM};

/// `HH:MM-HH:MM` around the current UTC time: open from an hour ago to
/// two hours ahead (it may cross midnight, which a window may).
fn window_around_now_utc() -> String {
    let now = Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let from = now.checked_sub(1.hour()).expect("an hour ago");
    let to = now.checked_add(2.hours()).expect("two hours ahead");
    format!("{}-{}", from.strftime("%H:%M"), to.strftime("%H:%M"))
}

/// RFC 3339 for `seconds` from now.
fn in_seconds(seconds: i64) -> String {
    Timestamp::now()
        .checked_add(seconds.seconds())
        .expect("a time ahead")
        .to_string()
}

/// Rows in two zones twelve hours apart: UTC (its window open now) and
/// UTC+12 (`Etc/GMT-12`: closed now).
fn two_zones(n_each: usize) -> String {
    let mut csv = String::from("phone,first_name,timezone\n");
    for i in 0..n_each {
        csv.push_str(&format!("+1415555{:04},Day {i},UTC\n", i));
        csv.push_str(&format!("+1415556{:04},Night {i},Etc/GMT-12\n", i));
    }
    csv
}

/// Recipients are texted only while their own window is open; when the
/// deadline comes, those still waiting become `cancelled` with a reason
/// that names it, and the run ends.
#[tokio::test(flavor = "multi_thread")]
async fn windows_follow_each_recipients_zone_and_the_deadline_cancels_the_rest() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &two_zones(5));
    let window = window_around_now_utc();
    let deadline = in_seconds(8);
    let run = world
        .run(&send_args(
            "zones",
            path_str(&csv),
            &[
                "--window",
                &window,
                "--not-after",
                &deadline,
                "--rate",
                "50",
            ],
        ))
        .await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("the next window opens")
            && run.stderr.contains("Etc/GMT-12 (5 recipient(s))"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("cancelled"), "{}", run.stdout);
    let ledger = world.ledger();
    let sent: Vec<&str> = ledger.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(sent.iter().all(|to| to.starts_with("+1415555")), "{sent:?}");
    let export = world.export("zones").await;
    for row in &export {
        if row["phone_e164"].starts_with("+1415556") {
            assert_eq!(row["state"], "cancelled", "{row:?}");
            assert!(row["reason"].contains("--not-after"), "{row:?}");
        } else {
            assert_eq!(row["state"], "delivered", "{row:?}");
        }
    }
}

/// A deadline that passed while nothing ran: the next run sends nothing
/// and cancels every message, however long after.
#[tokio::test(flavor = "multi_thread")]
async fn a_resume_after_the_deadline_sends_nothing() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(20));
    let deadline = in_seconds(1);
    world
        .run(&[
            "import",
            "--campaign",
            "late",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi {{first_name}}",
            "--not-after",
            &deadline,
        ])
        .await
        .assert_code(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = world.run(&["send", "--campaign", "late"]).await;
    run.assert_code(0);
    assert!(world.ledger().is_empty());
    let export = world.export("late").await;
    assert_eq!(export.len(), 20);
    assert!(export.iter().all(|row| row["state"] == "cancelled"));
}

/// `bpsms cancel` cancels what is not yet sent; `retry --state cancelled`
/// queues it again, and the next send delivers it.
#[tokio::test(flavor = "multi_thread")]
async fn cancel_and_retry_cancelled() {
    let world = World::start(Behaviour::fast()).await;
    world.import_recipients("c", 12).await;
    let refused = world.run(&["cancel", "--campaign", "c"]).await;
    refused.assert_code(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let run = world.run(&["cancel", "--campaign", "c", "--yes"]).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("Cancelled 12 message(s)"),
        "{}",
        run.stdout
    );
    let export = world.export("c").await;
    assert!(export
        .iter()
        .all(|row| row["state"] == "cancelled" && row["reason"].contains("bpsms cancel")));
    world
        .run(&["retry", "--campaign", "c", "--state", "cancelled", "--yes"])
        .await
        .assert_code(0);
    world
        .run(&["send", "--campaign", "c", "--poll-delay", "300ms"])
        .await
        .assert_code(0);
    assert_eq!(world.ledger().len(), 12);
    let history = world.read_db().await;
    let transitions: Vec<(String, String)> = sqlx::query_as(
        "SELECT from_state, to_state FROM events WHERE message_id = 1 ORDER BY seq LIMIT 2",
    )
    .fetch_all(&history)
    .await
    .expect("history");
    assert_eq!(
        transitions,
        vec![
            ("pending".to_owned(), "cancelled".to_owned()),
            ("cancelled".to_owned(), "pending".to_owned())
        ]
    );
}

/// A zone the database does not know makes its row invalid, naming the
/// value and the row; the zone of the number and of the column are shown
/// by check.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_zone_name_makes_its_row_invalid() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone,first_name,tz\n\
         +14155550101,Ann,America/Chicago\n\
         +14155550102,Bob,Mars/Olympus_Mons\n\
         +18005550103,Cy,\n",
    );
    let run = world
        .run(&[
            "check",
            "--csv",
            path_str(&csv),
            "--body",
            "Hi {{first_name}}",
            "--timezone-column",
            "tz",
            "--timezone",
            "America/New_York",
            "--window",
            "09:00-20:00",
        ])
        .await;
    run.assert_code(0);
    let out = &run.stdout;
    assert!(out.contains("Mars/Olympus_Mons"), "{out}");
    assert!(out.contains("row 2"), "{out}");
    // The toll-free number has no zone of its own.
    assert!(out.contains("no own zone         1 (toll-free"), "{out}");
    assert!(out.contains("America/New_York"), "{out}");
    assert!(out.contains("estimate"), "{out}");
}

/// Flags that cannot work are refused before anything is stored, with exit
/// 2, the flag and what is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn bad_schedule_flags_are_refused_before_anything_is_stored() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(3));
    let cases: [(&[&str], &str); 6] = [
        (&["--window", "09:00-25:00"], "--window"),
        (&["--window", "mon-fry=09:00-17:00"], "fry"),
        (&["--window", "12:00-12:00"], "--window"),
        (&["--timezone", "Mars/Base"], "Mars/Base"),
        (
            &[
                "--start-at",
                "2026-12-02T10:00:00Z",
                "--not-after",
                "2026-12-01T10:00:00Z",
            ],
            "--not-after",
        ),
        (
            &["--rate", "10", "--rate-per-from", "20"],
            "--rate-per-from",
        ),
    ];
    for (flags, named) in cases {
        let mut args = vec![
            "send",
            "--campaign",
            "bad",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi",
        ];
        args.extend_from_slice(flags);
        let run = world.run(&args).await;
        run.assert_code(2);
        assert!(run.stderr.contains(named), "{flags:?}: {}", run.stderr);
    }
    assert!(world.ledger().is_empty());
    // Nothing was stored: the campaign does not exist.
    let status = world.run(&["status", "--campaign", "bad"]).await;
    assert_ne!(status.code, 0, "{}", status.stdout);
}

/// The sends of each number, in time order, at the simulator.
fn sends_by_sender(ledger: &[LedgerEntry]) -> HashMap<String, Vec<i64>> {
    let mut by_sender: HashMap<String, Vec<i64>> = HashMap::new();
    for entry in ledger {
        by_sender
            .entry(entry.from.clone())
            .or_default()
            .push(entry.received_at_ms);
    }
    for times in by_sender.values_mut() {
        times.sort_unstable();
    }
    by_sender
}

/// Fails unless `times` (of sends weighing `weight` each, at the
/// simulator) span at least what `rate` units per second allow. Only a
/// lower bound is asserted: a loaded machine may send later, never earlier,
/// and it may shift an arrival by some milliseconds, which the 10 % margin
/// covers. The busiest second of each rate is measured by `benches/run.sh
/// pool` instead, as a figure.
#[track_caller]
fn assert_paced(times: &[i64], weight: u32, rate: f64, what: &str) {
    let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else {
        return;
    };
    let units_after_first = (times.len() as f64 - 1.0) * f64::from(weight);
    let floor_ms = 0.9 * units_after_first / rate * 1000.0;
    assert!(
        (last - first) as f64 >= floor_ms,
        "{what}: {} sends in {} ms, faster than {rate} units/s allows",
        times.len(),
        last - first
    );
}

/// A pool of three numbers: every recipient keeps its number in a second
/// campaign, the numbers share the recipients, and each number keeps to
/// its own rate (3 × 6/s, below the campaign's 30/s).
#[tokio::test(flavor = "multi_thread")]
async fn a_sender_pool_is_sticky_and_each_number_keeps_its_rate() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(150));
    let pool = ["+16505550100", "+16505550111", "+16505550122"];
    for campaign in ["first", "second"] {
        world
            .run(&[
                "send",
                "--campaign",
                campaign,
                "--csv",
                path_str(&csv),
                "--from",
                pool[0],
                "--from",
                pool[1],
                "--from",
                pool[2],
                "--body",
                "Hi {{first_name}}",
                "--rate",
                "30",
                "--rate-per-from",
                "6",
                "--poll-delay",
                "300ms",
            ])
            .await
            .assert_code(0);
    }
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 300);
    let mut sender_of: HashMap<&str, &str> = HashMap::new();
    for entry in &ledger {
        let first = sender_of.entry(&entry.to).or_insert(&entry.from);
        assert_eq!(*first, entry.from, "{} changed sender", entry.to);
    }
    let by_sender = sends_by_sender(&ledger);
    assert_eq!(by_sender.len(), 3, "{:?}", by_sender.keys());
    for (from, times) in &by_sender {
        assert!(times.len() >= 60, "{from} sent only {}", times.len());
    }
    // Each campaign on its own: the second starts after the first ended.
    for half in ledger.chunks(150) {
        let by_sender = sends_by_sender(half);
        for (from, times) in &by_sender {
            assert_paced(times, 1, 6.0, from);
        }
    }
}

/// Counted in segments, a rate of 9 lets three 3-segment messages through
/// per second, never more.
#[tokio::test(flavor = "multi_thread")]
async fn a_segment_counted_rate_counts_each_part() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(30));
    // 400 GSM-7 characters: three parts of 153.
    let body = "x".repeat(400);
    world
        .run(&[
            "send",
            "--campaign",
            "long",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            &body,
            "--rate",
            "9",
            "--rate-unit",
            "segments",
            "--poll-delay",
            "300ms",
        ])
        .await
        .assert_code(0);
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 30);
    let times: Vec<i64> = ledger.iter().map(|e| e.received_at_ms).collect();
    assert_paced(&times, 3, 9.0, "the campaign");
}

/// The daily cap stops the day's sends at N; with a deadline soon after,
/// the rest are cancelled rather than sent the next day.
#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_holds_the_rest_for_the_next_day() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(8));
    let deadline = in_seconds(6);
    let run = world
        .run(&send_args(
            "capped",
            path_str(&csv),
            &[
                "--timezone",
                "UTC",
                "--max-per-day",
                "5",
                "--not-after",
                &deadline,
            ],
        ))
        .await;
    run.assert_code(0);
    assert!(run.stderr.contains("daily cap of 5"), "{}", run.stderr);
    assert_eq!(world.ledger().len(), 5);
    let export = world.export("capped").await;
    let cancelled = export.iter().filter(|r| r["state"] == "cancelled").count();
    assert_eq!(cancelled, 3);
}

/// Nothing is sent before --start-at.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_leaves_before_the_start() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(5));
    let start = Timestamp::now().checked_add(2.seconds()).expect("later");
    let run = world
        .run(&send_args(
            "later",
            path_str(&csv),
            &["--start-at", &start.to_string()],
        ))
        .await;
    run.assert_code(0);
    assert!(run.stderr.contains("--start-at"), "{}", run.stderr);
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 5);
    let first = ledger
        .iter()
        .map(|e| e.received_at_ms)
        .min()
        .expect("sends");
    assert!(first >= start.as_millisecond(), "sent before the start");
}

/// Whether libfaketime runs here; if not, the calling test says so.
fn faketime_runs() -> bool {
    let runs = std::process::Command::new("faketime")
        .args(["2026-07-04 12:00:00", "true"])
        .env("TZ", "UTC")
        .status()
        .is_ok_and(|status| status.success());
    if !runs {
        cannot_run_here("fake the clock: `faketime` is missing (Debian: apt-get install faketime)");
    }
    runs
}

/// `command` run under libfaketime, its clock starting at `start` (UTC).
fn under_faketime(
    world: &World,
    start: &str,
    command: &std::process::Command,
) -> std::process::Command {
    let mut faked = std::process::Command::new("faketime");
    faked
        .arg(start)
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key, value?))),
        )
        .env("TZ", "UTC")
        .current_dir(world.dir.path());
    faked
}

/// The daily cap counts each calendar day of --timezone: two seconds
/// before midnight the first day's three go, the run waits for midnight,
/// and the next day's three follow.
#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_starts_afresh_at_midnight() {
    if !faketime_runs() {
        return;
    }
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(6));
    let send = world.command(&send_args(
        "days",
        path_str(&csv),
        &["--timezone", "UTC", "--max-per-day", "3", "--rate", "50"],
    ));
    let run = world
        .run_command(under_faketime(&world, "2026-12-03 23:59:58", &send))
        .await;
    run.assert_code(0);
    assert!(
        run.stderr.contains(
            "daily cap of 3 messages (--max-per-day) is reached; sending resumes at Fri 00:00 UTC"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(world.ledger().len(), 6);
    let days: Vec<(String, i64)> =
        sqlx::query_as("SELECT day, claimed FROM daily_sends ORDER BY day")
            .fetch_all(&world.read_db().await)
            .await
            .expect("days");
    assert_eq!(
        days,
        vec![("2026-12-03".to_owned(), 3), ("2026-12-04".to_owned(), 3)]
    );
}

/// A recipient's zones: the `timezone` column first, else the number's own
/// prefix (several zones where it spans them), else the campaign's zone.
#[tokio::test(flavor = "multi_thread")]
async fn the_zone_column_comes_first_then_the_numbers_own_zones() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone,first_name,timezone\n\
         +19075550101,Alaska,\n\
         +17015550102,North Dakota,\n\
         +19075550103,Alaska in Chicago,America/Chicago\n\
         +18005550104,Toll-free,\n\
         +33142685300,Paris,\n",
    );
    world
        .run(&[
            "import",
            "--campaign",
            "z",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi",
        ])
        .await
        .assert_code(0);
    let zones: Vec<(i64, String)> = sqlx::query_as(
        "SELECT m.row_number, z.zones FROM messages AS m
         JOIN zone_sets AS z ON z.campaign_id = m.campaign_id AND z.id = m.zone_set
         ORDER BY m.row_number",
    )
    .fetch_all(&world.read_db().await)
    .await
    .expect("zones");
    let expected = [
        (1, "America/Adak America/Anchorage"),
        (2, "America/Denver America/North_Dakota/Center"),
        (3, "America/Chicago"),
        (4, ""),
        (5, "Europe/Paris"),
    ];
    assert_eq!(
        zones,
        expected
            .map(|(row, zones)| (row, zones.to_owned()))
            .to_vec()
    );
}

/// The binary reads the wall clock from the system only (no cached offset,
/// no time from the network): under libfaketime, set to 12:00 UTC on
/// 4 July 2026, `check` plans the sends from that instant, for the first
/// window of the day of the recipients' own zone (San Francisco numbers:
/// 09:00 PDT, which is 12:00 in New York, the campaign's zone).
#[tokio::test(flavor = "multi_thread")]
async fn the_clock_is_the_systems_own() {
    if !faketime_runs() {
        return;
    }
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(10));
    let check = world.command(&[
        "check",
        "--csv",
        path_str(&csv),
        "--body",
        "Hi {{first_name}}",
        "--window",
        "09:00-17:00",
        "--timezone",
        "America/New_York",
    ]);
    let run = world
        .run_command(under_faketime(&world, "2026-07-04 12:00:00", &check))
        .await;
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("the last message is sent about Sat 2026-07-04 12:00:01 (in 4 h)"),
        "{}",
        run.stdout
    );
}
