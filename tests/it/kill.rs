//! Design guarantees 1, 2 and 6 under abuse: the real binary is killed with
//! SIGKILL at seeded random moments (during import, sending and tracking) and
//! resumed after each kill; at the end the export and the database are
//! reconciled with the simulator's ledger. Also Ctrl-C mid-send.
//!
//! The kill moments are drawn from a seeded generator. Most of them are
//! counted in the simulator's requests ("after the 137th Send of this run"),
//! not in milliseconds, so that they land in the phase they aim at on a slow
//! machine as on a fast one; a random 0–3 ms jitter follows, so the kill
//! falls anywhere between a request and the commit of its answer. Set
//! `BPSMS_KILL_SEED` to replay other moments; `BPSMS_LONG_KILL_TEST=1` runs
//! the long variant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bpsms::mock::{Behaviour, LedgerEntry};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::SqlitePool;

use crate::harness::{interrupt, path_str, recipients, sends_per_recipient, skipped, World, FROM};

const CAMPAIGN: &str = "kill";
const RATE: &str = "5000";
/// A run that neither reaches its kill moment nor exits within this long is hung.
const HUNG_AFTER: Duration = Duration::from_secs(150);
const RECOVERED_DETAIL: &str = "recovered after the previous run stopped mid-send";

/// What a restarted run does with the messages a kill left in `sending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hold,
    Retry,
}

impl Mode {
    fn flag(self) -> &'static str {
        match self {
            Mode::Hold => "hold",
            Mode::Retry => "retry",
        }
    }
}

/// One kill, as seen in the database right after it.
#[derive(Debug)]
pub struct Kill {
    /// `start-up` (no tables yet), `import` (tables but no campaign: the
    /// import transaction was open or about to be), `sending` (messages wait to be sent or
    /// are in flight) or `tracking` (only polls were left).
    pub phase: &'static str,
    /// Milliseconds from the spawn to the kill.
    pub after_ms: u128,
    /// Messages in `sending` at the kill: the in-flight window.
    pub in_flight: usize,
    /// Of those, the ones not already counted at the previous kill (a kill
    /// before the next run recovered them sees them again).
    pub new_in_flight: usize,
    /// Sends the simulator had accepted when the kill landed.
    pub accepted: usize,
    /// Ids of the messages counted in `new_in_flight`.
    pub new_ids: Vec<i64>,
}

/// The figures of one `kill_and_resume`.
#[derive(Debug)]
pub struct KillReport {
    pub mode: Mode,
    pub n_recipients: usize,
    pub concurrency: u32,
    pub seed: u64,
    pub kills: Vec<Kill>,
    pub state_counts: BTreeMap<String, usize>,
    /// Rows not final, or final without a trace (no sid in the ledger and not `unknown`).
    pub lost: usize,
    /// Ledger entries beyond the first for their recipient.
    pub duplicates: usize,
    /// `unknown` messages whose Send had in fact been accepted.
    pub unknown_accepted: usize,
    /// Recovery events written by the restarted runs.
    pub recovered: usize,
    /// Per kill, how many of its new `sending` messages the simulator had
    /// accepted by the end (in hold mode: whose request had left before the
    /// kill); the rest were claimed but never sent.
    pub new_accepted: Vec<usize>,
}

impl KillReport {
    fn print(&self) {
        let unknown = self.state_counts.get("unknown").copied().unwrap_or(0);
        let windows: Vec<usize> = self.kills.iter().map(|k| k.new_in_flight).collect();
        let max_window = windows.iter().copied().max().unwrap_or(0);
        let mean_window = windows.iter().sum::<usize>() as f64 / windows.len().max(1) as f64;
        let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
        for kill in &self.kills {
            *phases.entry(kill.phase).or_insert(0) += 1;
        }
        eprintln!(
            "kill test: mode {}, {} recipients, --rate {RATE}, --concurrency {}, seed {}",
            self.mode.flag(),
            self.n_recipients,
            self.concurrency,
            self.seed
        );
        eprintln!("  kills survived: {} {phases:?}", self.kills.len());
        eprintln!("  messages lost: {}", self.lost);
        eprintln!("  duplicates in the ledger: {}", self.duplicates);
        let in_sending: Vec<usize> = self.kills.iter().map(|k| k.in_flight).collect();
        eprintln!("  in `sending` at each kill: {in_sending:?}");
        eprintln!(
            "  of which new since the previous kill (`unknown` per kill): {windows:?}; max {max_window}, mean {mean_window:.1}"
        );
        if self.mode == Mode::Hold {
            eprintln!(
                "  of those, accepted by the API before the kill: {:?} (the rest never left)",
                self.new_accepted
            );
        }
        eprintln!(
            "  recovered at restart: {}; `unknown` at the end: {unknown} ({} of them had been accepted)",
            self.recovered, self.unknown_accepted
        );
        eprintln!("  final states: {:?}", self.state_counts);
        let moments: Vec<String> = self
            .kills
            .iter()
            .map(|k| format!("{}@{}ms/{}", k.phase, k.after_ms, k.accepted))
            .collect();
        eprintln!("  kills (phase@ms after spawn/accepted so far): {moments:?}");
    }
}

/// Imports and sends `n_recipients` under `n_kills` SIGKILLs, resuming after
/// each, then runs to completion and checks every guarantee against the
/// export, the database and the simulator's ledger.
pub async fn kill_and_resume(
    world: &World,
    mode: Mode,
    n_recipients: usize,
    n_kills: usize,
    concurrency: u32,
    seed: u64,
) -> KillReport {
    let csv = world.write("kill.csv", &recipients(n_recipients));
    let concurrency_flag = concurrency.to_string();
    let args = [
        "send",
        "--campaign",
        CAMPAIGN,
        "--csv",
        path_str(&csv),
        "--from",
        FROM,
        "--body",
        "Hi {{first_name}}",
        "--rate",
        RATE,
        "--concurrency",
        &concurrency_flag,
        "--poll-delay",
        "300ms",
        "--on-ambiguous",
        mode.flag(),
    ];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut planner = Planner::new(n_recipients, n_kills, mode);
    let mut kills = Vec::new();
    // Every claim of a message caught in `sending` at a kill, by message id.
    let mut caught: HashMap<i64, HashSet<i64>> = HashMap::new();
    let mut previous: HashSet<(i64, i64)> = HashSet::new();
    let mut snapshot = Snapshot::read(world).await;

    for index in 0..n_kills {
        let trigger = planner.next(&mut rng, index, &snapshot);
        let jitter = Duration::from_millis(rng.random_range(0..=3));
        let stderr = world.dir.path().join(format!("run-{index}.stderr"));
        let mut command = world.command(&args);
        command
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("create the stderr file"));
        let base = world.stats();
        let started = Instant::now();
        let mut child = command.spawn().expect("start bpsms send");
        if let Some(status) = wait_for(world, &mut child, trigger, base).await {
            // The campaign finished before this kill could land: the plan
            // ran out of work, which the caller sees as fewer kills.
            assert!(
                status.success(),
                "run {index} failed: {status}\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
            eprintln!("run {index} finished before its kill ({trigger:?})");
            break;
        }
        tokio::time::sleep(jitter).await;
        child.kill().expect("SIGKILL bpsms");
        let after_ms = started.elapsed().as_millis();
        if wait_child(child).await.success() {
            // It exited on its own between the last look and the signal.
            eprintln!("run {index} finished before its kill ({trigger:?})");
            break;
        }

        snapshot = Snapshot::read(world).await;
        let now_in_flight: HashSet<(i64, i64)> = snapshot.in_flight.iter().copied().collect();
        let mut new_ids = Vec::new();
        for &(message_id, claim) in &snapshot.in_flight {
            caught.entry(message_id).or_default().insert(claim);
            if !previous.contains(&(message_id, claim)) {
                new_ids.push(message_id);
            }
        }
        kills.push(Kill {
            phase: snapshot.phase(),
            after_ms,
            in_flight: now_in_flight.len(),
            new_in_flight: new_ids.len(),
            accepted: world.ledger().len(),
            new_ids,
        });
        previous = now_in_flight;
    }

    let finish = world.run(&args).await;
    finish.assert_code(0);
    let total = ["total".to_string(), n_recipients.to_string()];
    assert!(
        finish
            .stdout
            .lines()
            .any(|line| line.split_whitespace().eq(total.iter().map(String::as_str))),
        "the summary counts every row: {}",
        finish.stdout
    );
    check_outcome(world, mode, n_recipients, &caught, kills, concurrency, seed).await
}

/// When to kill the next run.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// This long after the spawn: start-up and import.
    After(Duration),
    /// After this run's `n`-th Send request.
    Sends(u64),
    /// Once this run has made `sends` Send requests (all it had to send),
    /// after `polls` more Get requests.
    Polls { sends: u64, polls: u64 },
}

/// Spreads the kills: two early ones at the import, about two thirds of the
/// rest while sending, the others while tracking. Each budget is a share of
/// the work left, so the campaign never finishes before the last kill.
struct Planner {
    n_recipients: usize,
    import_ms: u64,
    sending_kills_left: usize,
    kills_left: usize,
    mode: Mode,
}

impl Planner {
    fn new(n_recipients: usize, n_kills: usize, mode: Mode) -> Planner {
        let after_import = n_kills.saturating_sub(2);
        Planner {
            n_recipients,
            // A debug build imports about 50 rows per millisecond.
            import_ms: (n_recipients as u64 / 50).max(20),
            sending_kills_left: after_import * 2 / 3,
            kills_left: n_kills,
            mode,
        }
    }

    fn next(&mut self, rng: &mut StdRng, index: usize, snapshot: &Snapshot) -> Trigger {
        self.kills_left -= 1;
        if index == 0 {
            return Trigger::After(Duration::from_millis(rng.random_range(1..=5)));
        }
        if index == 1 {
            return Trigger::After(Duration::from_millis(rng.random_range(5..=self.import_ms)));
        }
        let to_send = match (snapshot.campaign_exists, self.mode) {
            (false, _) => self.n_recipients,
            (true, Mode::Hold) => snapshot.count("pending"),
            (true, Mode::Retry) => snapshot.count("pending") + snapshot.count("sending"),
        };
        if to_send > 0 && self.sending_kills_left > 0 {
            let budget = (to_send / self.sending_kills_left).max(1);
            self.sending_kills_left -= 1;
            return Trigger::Sends(rng.random_range(1..=budget) as u64);
        }
        let to_track = to_send + snapshot.count("queued") + snapshot.count("sent");
        let budget = (to_track / (self.kills_left + 1)).max(1);
        Trigger::Polls {
            sends: to_send as u64,
            polls: rng.random_range(1..=budget) as u64,
        }
    }
}

/// Waits until `trigger` is reached (`None`) or the run exits by itself.
async fn wait_for(
    world: &World,
    child: &mut Child,
    trigger: Trigger,
    base: bpsms::mock::Stats,
) -> Option<ExitStatus> {
    let started = Instant::now();
    let mut gets_after_sends: Option<u64> = None;
    loop {
        if let Some(status) = child.try_wait().expect("check on bpsms") {
            return Some(status);
        }
        let stats = world.stats();
        let sends = stats.send_requests - base.send_requests;
        let gets = stats.get_requests - base.get_requests;
        let reached = match trigger {
            Trigger::After(delay) => started.elapsed() >= delay,
            Trigger::Sends(n) => sends >= n,
            Trigger::Polls { sends: n, polls } => {
                if sends >= n && gets_after_sends.is_none() {
                    gets_after_sends = Some(gets);
                }
                gets_after_sends.is_some_and(|at| gets - at >= polls)
            }
        };
        if reached {
            return None;
        }
        if started.elapsed() > HUNG_AFTER {
            let _ = child.kill();
            panic!(
                "bpsms made no progress towards {trigger:?} in {HUNG_AFTER:?} \
                 ({sends} sends, {gets} gets since the spawn)"
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_child(mut child: Child) -> ExitStatus {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait for bpsms")
}

/// The campaign as the database holds it between two runs.
struct Snapshot {
    /// The database and its tables exist (the migrations ran).
    schema_exists: bool,
    campaign_exists: bool,
    counts: HashMap<String, usize>,
    /// (message id, `seq` of the event that claimed it) of every `sending` row.
    in_flight: Vec<(i64, i64)>,
}

impl Snapshot {
    async fn read(world: &World) -> Snapshot {
        let mut absent = Snapshot {
            schema_exists: false,
            campaign_exists: false,
            counts: HashMap::new(),
            in_flight: Vec::new(),
        };
        if !world.db.exists() {
            return absent;
        }
        let pool = world.read_db().await;
        let schema: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'campaigns'",
        )
        .fetch_one(&pool)
        .await
        .expect("read the schema");
        let campaign: Option<i64> = if schema == 0 {
            None
        } else {
            sqlx::query_scalar("SELECT id FROM campaigns WHERE name = ?")
                .bind(CAMPAIGN)
                .fetch_optional(&pool)
                .await
                .expect("find the campaign")
        };
        let Some(campaign_id) = campaign else {
            pool.close().await;
            absent.schema_exists = schema > 0;
            return absent;
        };
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM messages WHERE campaign_id = ? GROUP BY state",
        )
        .bind(campaign_id)
        .fetch_all(&pool)
        .await
        .expect("count states");
        let in_flight: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT m.id, MAX(e.seq) FROM messages m
             JOIN events e ON e.message_id = m.id AND e.to_state = 'sending'
             WHERE m.campaign_id = ? AND m.state = 'sending' GROUP BY m.id",
        )
        .bind(campaign_id)
        .fetch_all(&pool)
        .await
        .expect("list the messages in flight");
        pool.close().await;
        Snapshot {
            schema_exists: true,
            campaign_exists: true,
            counts: counts
                .into_iter()
                .map(|(state, n)| (state, usize::try_from(n).expect("count")))
                .collect(),
            in_flight,
        }
    }

    fn count(&self, state: &str) -> usize {
        self.counts.get(state).copied().unwrap_or(0)
    }

    fn phase(&self) -> &'static str {
        if !self.schema_exists {
            "start-up"
        } else if !self.campaign_exists {
            "import"
        } else if self.count("pending") + self.count("sending") > 0 {
            "sending"
        } else {
            "tracking"
        }
    }
}

/// Checks the end state of a killed-and-resumed campaign and measures it.
async fn check_outcome(
    world: &World,
    mode: Mode,
    n_recipients: usize,
    caught: &HashMap<i64, HashSet<i64>>,
    kills: Vec<Kill>,
    concurrency: u32,
    seed: u64,
) -> KillReport {
    let rows = world.export(CAMPAIGN).await;
    let ledger = world.ledger();
    let per_recipient = sends_per_recipient(&ledger);
    let pool = world.read_db().await;
    let ids = message_ids(&pool).await;
    let (recovered, recovered_ids) = recovery_events(&pool).await;
    let campaigns: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM campaigns")
        .fetch_one(&pool)
        .await
        .expect("count campaigns");
    let (n_messages, n_rows): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT campaign_id || ':' || row_number) FROM messages",
    )
    .fetch_one(&pool)
    .await
    .expect("count messages");
    pool.close().await;

    // One campaign (an import killed halfway left nothing behind), one
    // message per CSV data row, each in a final state.
    assert_eq!(campaigns, 1, "exactly one campaign was imported");
    assert_eq!(rows.len(), n_recipients, "one export row per CSV data row");
    assert_eq!(ids.len(), n_recipients, "one message per CSV data row");
    assert_eq!(
        (n_messages, n_rows),
        (n_recipients as i64, n_recipients as i64),
        "one message per (campaign, row_number)"
    );
    let row_numbers: HashSet<&str> = rows.iter().map(|r| r["row"].as_str()).collect();
    assert_eq!(row_numbers.len(), n_recipients, "distinct row numbers");
    let mut state_counts: BTreeMap<String, usize> = BTreeMap::new();
    for row in &rows {
        *state_counts.entry(row["state"].clone()).or_insert(0) += 1;
        let is_final = match row["state"].as_str() {
            "pending" | "sending" | "queued" => false,
            "sent" => row["kind"] == "mms",
            _ => true,
        };
        assert!(is_final, "row {} is not final: {:?}", row["row"], row);
    }
    assert_eq!(
        state_counts.values().sum::<usize>(),
        n_recipients,
        "the counts per state add up to the rows of the CSV"
    );

    // Every ledger entry is a recipient of the campaign.
    let by_phone: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["phone_e164"].as_str(), r)).collect();
    for entry in &ledger {
        assert!(
            by_phone.contains_key(entry.to.as_str()),
            "{} was sent but is not in the campaign",
            entry.to
        );
    }
    let sids_of = sids_by_recipient(&ledger);
    // Lost: not final, or final with no trace of its send and not `unknown`.
    let lost = rows
        .iter()
        .filter(|row| {
            let accepted = sids_of
                .get(row["phone_e164"].as_str())
                .is_some_and(|sids| sids.contains(row["sid"].as_str()));
            let traced = matches!(row["state"].as_str(), "delivered" | "failed") && accepted;
            !(traced || row["state"] == "unknown")
        })
        .count();
    let duplicates: usize = per_recipient.values().map(|&n| n - 1).sum();
    let unknown: Vec<&HashMap<String, String>> =
        rows.iter().filter(|r| r["state"] == "unknown").collect();
    let unknown_accepted = unknown
        .iter()
        .filter(|r| per_recipient.contains_key(r["phone_e164"].as_str()))
        .count();

    let accepted_ids: HashSet<i64> = per_recipient
        .keys()
        .filter_map(|phone| ids.get(phone.as_str()).copied())
        .collect();
    let new_accepted = kills
        .iter()
        .map(|kill| {
            kill.new_ids
                .iter()
                .filter(|id| accepted_ids.contains(id))
                .count()
        })
        .collect();
    let report = KillReport {
        mode,
        n_recipients,
        concurrency,
        seed,
        kills,
        state_counts,
        lost,
        duplicates,
        unknown_accepted,
        recovered,
        new_accepted,
    };
    report.print();

    // Each claim caught in `sending` by a kill was recovered exactly once.
    assert_eq!(
        report.recovered,
        report.kills.iter().map(|k| k.new_in_flight).sum::<usize>(),
        "one recovery event per claim caught in flight"
    );
    assert_eq!(report.lost, 0, "messages lost");
    // Every accepted message has its sid and was tracked to the end.
    for row in rows.iter().filter(|r| !r["sid"].is_empty()) {
        assert!(
            matches!(row["state"].as_str(), "delivered" | "failed"),
            "row {} has a sid but ended {}",
            row["row"],
            row["state"]
        );
    }
    match mode {
        Mode::Hold => check_hold(&rows, &ledger, &ids, caught, &recovered_ids),
        Mode::Retry => check_retry(&rows, &ledger, &ids, caught, &recovered_ids),
    }
    report
}

/// `hold`: at most once. Nobody twice in the ledger; every ledger entry is
/// the sid of its message or belongs to a message now `unknown`; the
/// `unknown` messages are exactly the ones a kill caught in `sending`.
fn check_hold(
    rows: &[HashMap<String, String>],
    ledger: &[LedgerEntry],
    ids: &HashMap<String, i64>,
    caught: &HashMap<i64, HashSet<i64>>,
    recovered_ids: &HashSet<i64>,
) {
    let by_phone: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["phone_e164"].as_str(), r)).collect();
    let per_recipient = sends_per_recipient(ledger);
    let twice: Vec<(&String, &usize)> = per_recipient.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "sent more than once in hold mode: {twice:?}"
    );
    for entry in ledger {
        let row = by_phone[entry.to.as_str()];
        assert!(
            row["sid"] == entry.sid || row["state"] == "unknown",
            "ledger sid {} of {} is neither the sid of row {} nor is the row unknown ({})",
            entry.sid,
            entry.to,
            row["row"],
            row["state"]
        );
    }
    let unknown_ids: HashSet<i64> = rows
        .iter()
        .filter(|r| r["state"] == "unknown")
        .map(|r| ids[&r["phone_e164"]])
        .collect();
    for row in rows.iter().filter(|r| r["state"] == "unknown") {
        assert!(
            row["reason"].contains("in flight"),
            "row {}: {}",
            row["row"],
            row["reason"]
        );
    }
    let caught_ids: HashSet<i64> = caught.keys().copied().collect();
    assert_eq!(
        unknown_ids, caught_ids,
        "`unknown` are exactly the messages a kill caught in `sending`"
    );
    assert_eq!(
        &unknown_ids, recovered_ids,
        "every `unknown` has its recovery event"
    );
}

/// `retry`: at least once. Everybody was accepted at least once, each row's
/// sid is one of its recipient's ledger sids, nothing ends `unknown`, and a
/// recipient is sent more than once only if its message was caught in
/// `sending` by a kill, at most once more per kill that caught it.
fn check_retry(
    rows: &[HashMap<String, String>],
    ledger: &[LedgerEntry],
    ids: &HashMap<String, i64>,
    caught: &HashMap<i64, HashSet<i64>>,
    recovered_ids: &HashSet<i64>,
) {
    let per_recipient = sends_per_recipient(ledger);
    let sids_of = sids_by_recipient(ledger);
    for row in rows {
        let phone = row["phone_e164"].as_str();
        assert!(
            per_recipient.get(phone).is_some_and(|&n| n >= 1),
            "row {} ({phone}) was never accepted",
            row["row"]
        );
        assert_ne!(row["state"], "unknown", "row {}", row["row"]);
        assert!(
            sids_of[phone].contains(row["sid"].as_str()),
            "row {}: its sid {} is not in the ledger",
            row["row"],
            row["sid"]
        );
    }
    for (phone, &n) in per_recipient.iter().filter(|(_, &n)| n > 1) {
        let message_id = ids[phone];
        let claims_caught = caught.get(&message_id).map_or(0, HashSet::len);
        assert!(
            n <= 1 + claims_caught,
            "{phone} was sent {n} times but a kill caught its message in flight only {claims_caught} time(s)"
        );
        assert!(
            recovered_ids.contains(&message_id),
            "{phone} was sent {n} times without a recovery event"
        );
    }
}

fn sids_by_recipient(ledger: &[LedgerEntry]) -> HashMap<&str, HashSet<&str>> {
    let mut sids: HashMap<&str, HashSet<&str>> = HashMap::new();
    for entry in ledger {
        sids.entry(entry.to.as_str())
            .or_default()
            .insert(entry.sid.as_str());
    }
    sids
}

/// Message id by recipient (E.164).
async fn message_ids(pool: &SqlitePool) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.phone_e164, m.id FROM messages m JOIN campaigns c ON c.id = m.campaign_id
         WHERE c.name = ? AND m.phone_e164 IS NOT NULL",
    )
    .bind(CAMPAIGN)
    .fetch_all(pool)
    .await
    .expect("list messages");
    rows.into_iter().collect()
}

/// How many recovery events the restarted runs wrote, and for which messages.
async fn recovery_events(pool: &SqlitePool) -> (usize, HashSet<i64>) {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT message_id FROM events WHERE from_state = 'sending' AND detail = ?",
    )
    .bind(RECOVERED_DETAIL)
    .fetch_all(pool)
    .await
    .expect("list recovery events");
    (ids.len(), ids.into_iter().collect())
}

/// The seed of a test, unless `BPSMS_KILL_SEED` replays another.
fn seed(default: u64) -> u64 {
    std::env::var("BPSMS_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_twenty_times_in_hold_mode_loses_nothing_and_sends_nobody_twice() {
    let world = World::start(Behaviour::fast()).await;
    let report = kill_and_resume(&world, Mode::Hold, 5000, 20, 8, seed(1)).await;
    assert_eq!(report.kills.len(), 20, "every planned kill landed");
    assert_eq!(report.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_in_hold_mode_at_high_concurrency_loses_nothing_and_sends_nobody_twice() {
    // The same abuse with eight times as many requests in flight: the
    // printed window shows how --concurrency sizes the `unknown` per kill.
    let world = World::start(Behaviour::fast()).await;
    let report = kill_and_resume(&world, Mode::Hold, 5000, 20, 64, seed(1)).await;
    assert_eq!(report.kills.len(), 20, "every planned kill landed");
    assert_eq!(report.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_in_retry_mode_sends_everyone_at_least_once_and_duplicates_only_in_flight() {
    let world = World::start(Behaviour::fast()).await;
    let report = kill_and_resume(&world, Mode::Retry, 5000, 20, 8, seed(2)).await;
    assert_eq!(report.kills.len(), 20, "every planned kill landed");
    assert_eq!(report.state_counts.get("unknown"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_test_long() {
    if std::env::var("BPSMS_LONG_KILL_TEST").as_deref() != Ok("1") {
        skipped("set BPSMS_LONG_KILL_TEST=1 to run it");
        return;
    }
    for (mode, seed_default) in [(Mode::Hold, 3), (Mode::Retry, 4)] {
        let world = World::start(Behaviour::fast()).await;
        let report = kill_and_resume(&world, mode, 50_000, 100, 16, seed(seed_default)).await;
        assert_eq!(report.kills.len(), 100, "every planned kill landed");
        if mode == Mode::Hold {
            assert_eq!(report.duplicates, 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_send_exits_130_and_resume_completes_without_duplicates() {
    let world = World::start(Behaviour::fast()).await;
    let n_recipients = 2000;
    let csv = world.write("ctrl-c.csv", &recipients(n_recipients));
    let args = [
        "send",
        "--campaign",
        "ctrl-c",
        "--csv",
        path_str(&csv),
        "--from",
        FROM,
        "--body",
        "Hi {{first_name}}",
        "--rate",
        "200",
        "--concurrency",
        "8",
        "--poll-delay",
        "300ms",
    ];
    let mut command = world.command(&args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().expect("start bpsms send");
    // About one second of sending at 200 per second.
    let deadline = Instant::now() + Duration::from_secs(60);
    while world.stats().send_requests < 200 {
        assert!(Instant::now() < deadline, "timed out waiting for sends");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let output = interrupt(child).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(130),
        "exit code; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("Interrupted.")
            && stderr.contains("Resume with")
            && stderr.contains("bpsms send --campaign ctrl-c"),
        "{stderr}"
    );
    let sent_at_interrupt = world.ledger().len();
    assert!(
        sent_at_interrupt < n_recipients,
        "interrupted before the end"
    );
    // A graceful stop records every answer: nothing is left in flight.
    let pool = world.read_db().await;
    let left: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM messages WHERE state IN ('sending', 'unknown') GROUP BY state",
    )
    .fetch_all(&pool)
    .await
    .expect("count states");
    pool.close().await;
    assert!(left.is_empty(), "after Ctrl-C: {left:?}");

    world.run(&args).await.assert_code(0);
    let rows = world.export("ctrl-c").await;
    assert_eq!(rows.len(), n_recipients);
    assert!(
        rows.iter()
            .all(|r| matches!(r["state"].as_str(), "delivered" | "failed")),
        "every row final and tracked"
    );
    let ledger = world.ledger();
    let duplicates: usize = sends_per_recipient(&ledger).values().map(|&n| n - 1).sum();
    eprintln!(
        "ctrl-c test: {sent_at_interrupt} accepted before the interrupt, {} in all, {duplicates} duplicates",
        ledger.len()
    );
    assert_eq!(duplicates, 0, "nobody sent twice");
    assert_eq!(ledger.len(), n_recipients);
}

/// `--on-ambiguous retry` counts the attempt a crash interrupted: killed
/// again and again while the same messages are in flight, no recipient gets
/// more Send requests than `--max-attempts`, and a message caught at its
/// last attempt ends `unknown`, saying so, instead of being sent again.
#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_in_retry_mode_never_sends_anyone_more_than_max_attempts() {
    const MAX_ATTEMPTS: usize = 2;
    const CONCURRENCY: u64 = 4;
    const KILLS: usize = 5;
    // Every Send is accepted at once but answered late, so each kill lands
    // while the run's first requests are in flight, and the next run claims
    // the same recovered messages first.
    let world = World::start(Behaviour {
        fault_slow: 1.0,
        slow_delay: Duration::from_millis(500),
        ..Behaviour::fast()
    })
    .await;
    let n_recipients = 24;
    let csv = world.write("attempts.csv", &recipients(n_recipients));
    let (concurrency, max_attempts) = (CONCURRENCY.to_string(), MAX_ATTEMPTS.to_string());
    let args = [
        "send",
        "--campaign",
        CAMPAIGN,
        "--csv",
        path_str(&csv),
        "--from",
        FROM,
        "--body",
        "Hi {{first_name}}",
        // One message per claim, so only the requests in flight are caught.
        "--rate",
        "100",
        "--concurrency",
        &concurrency,
        "--poll-delay",
        "300ms",
        "--request-timeout",
        "10s",
        "--on-ambiguous",
        "retry",
        "--max-attempts",
        &max_attempts,
    ];
    for index in 0..KILLS {
        let mut command = world.command(&args);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let base = world.stats();
        let mut child = command.spawn().expect("start bpsms send");
        let exited = wait_for(&world, &mut child, Trigger::Sends(CONCURRENCY), base).await;
        assert!(exited.is_none(), "run {index} ended before its kill");
        child.kill().expect("SIGKILL bpsms");
        wait_child(child).await;
    }
    world.run(&args).await.assert_code(0);

    let ledger = world.ledger();
    let per_recipient = sends_per_recipient(&ledger);
    let too_many: Vec<(&String, &usize)> = per_recipient
        .iter()
        .filter(|(_, &n)| n > MAX_ATTEMPTS)
        .collect();
    assert!(
        too_many.is_empty(),
        "sent more than --max-attempts {MAX_ATTEMPTS} times: {too_many:?}"
    );
    let rows = world.export(CAMPAIGN).await;
    assert_eq!(rows.len(), n_recipients, "one export row per CSV data row");
    let unknown: Vec<&HashMap<String, String>> =
        rows.iter().filter(|r| r["state"] == "unknown").collect();
    assert!(
        !unknown.is_empty(),
        "the kills caught some message at its last attempt"
    );
    for row in &rows {
        match row["state"].as_str() {
            "unknown" => assert!(
                row["reason"].contains("last attempt")
                    && row["reason"].contains("bpsms retry --state unknown"),
                "row {}: {}",
                row["row"],
                row["reason"]
            ),
            "delivered" | "failed" => assert!(
                ledger
                    .iter()
                    .any(|entry| entry.sid == row["sid"] && entry.to == row["phone_e164"]),
                "row {}: its sid {} is not in the ledger",
                row["row"],
                row["sid"]
            ),
            state => panic!("row {} ended {state}", row["row"]),
        }
    }
    eprintln!(
        "max-attempts kill test: {} Sends for {n_recipients} recipients, {} `unknown` at their last attempt, most Sends to one recipient {}",
        ledger.len(),
        unknown.len(),
        per_recipient.values().max().copied().unwrap_or(0)
    );
}
