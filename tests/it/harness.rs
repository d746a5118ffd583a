//! Shared test fixtures: a simulator on 127.0.0.1:0, a scratch directory, and
//! a way to run the real binary against them and read back the export and
//! the simulator's ledger.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpsms::mock::{Behaviour, LedgerEntry, RunningSimulator, Stats};

pub const CLIENT_ID: &str = "demo";
pub const CLIENT_SECRET: &str = "demo-secret";
pub const FROM: &str = "+16505550100";

/// One test's world: a simulator, a database path and a scratch directory.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sim: RunningSimulator,
    pub db: PathBuf,
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl World {
    pub async fn start(behaviour: Behaviour) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("bpsms.db");
        let sim = RunningSimulator::start(behaviour).await.expect("simulator");
        World { dir, sim, db }
    }

    /// The binary with the environment pointing at this world.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bpsms"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BPSMS_DB", &self.db)
            .env("BPSMS_BASE_URL", self.sim.base_url())
            .env("BPSMS_CLIENT_ID", CLIENT_ID)
            .env("BPSMS_CLIENT_SECRET", CLIENT_SECRET);
        command
    }

    /// Runs the binary to completion (off the async threads, so the
    /// in-process simulator keeps answering).
    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_command(self.command(args)).await
    }

    pub async fn run_command(&self, mut command: Command) -> Run {
        let output: Output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run bpsms");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write file");
        path
    }

    /// Imports `n` generated recipients as `campaign`, without sending.
    pub async fn import_recipients(&self, campaign: &str, n: usize) {
        let csv = self.write(&format!("{campaign}.csv"), &recipients(n));
        self.run(&[
            "import",
            "--campaign",
            campaign,
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi {{first_name}}",
        ])
        .await
        .assert_code(0);
    }

    /// `bpsms export --format csv`, parsed into one map per row.
    pub async fn export(&self, campaign: &str) -> Vec<HashMap<String, String>> {
        let run = self.run(&["export", "--campaign", campaign]).await;
        assert_eq!(run.code, 0, "export failed: {}", run.stderr);
        parse_csv(&run.stdout)
    }

    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.sim.state.ledger()
    }

    pub fn stats(&self) -> Stats {
        self.sim.state.stats()
    }
}

impl Run {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn parse_csv(text: &str) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("record");
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// A recipients CSV of `n` distinct valid US numbers in mixed formats.
pub fn recipients(n: usize) -> String {
    let mut csv = String::from("phone,first_name,city\n");
    for i in 0..n {
        let (area, rest) = (200 + (i / 10_000) % 700, i % 10_000);
        let phone = match i % 3 {
            0 => format!("(415) {area}-{rest:04}"),
            1 => format!("+1 415-{area}-{rest:04}"),
            _ => format!("415{area}{rest:04}"),
        };
        csv.push_str(&format!("{phone},Name {i},\"City, {i}\"\n"));
    }
    csv
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Counts how many times each recipient appears in the ledger.
pub fn sends_per_recipient(ledger: &[LedgerEntry]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for entry in ledger {
        *counts.entry(entry.to.clone()).or_insert(0) += 1;
    }
    counts
}

impl World {
    /// A connection to the database, for checks between runs. Read-write
    /// (never creating it): a kill while the database was being created can
    /// leave a hot rollback journal, which only a writer may roll back, as
    /// the next run of bpsms would.
    pub async fn read_db(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rw", self.db.display()))
            .await
            .expect("open the database")
    }
}

/// The arguments of `bpsms send` for a test campaign: the fixed sender and a
/// body template, then `extra`; a `--poll-delay` there replaces the default
/// 300ms.
pub fn send_args<'a>(campaign: &'a str, csv: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "send",
        "--campaign",
        campaign,
        "--csv",
        csv,
        "--from",
        FROM,
        "--body",
        "Hello {{first_name}}",
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--poll-delay") {
        args.extend(["--poll-delay", "300ms"]);
    }
    args
}

/// Says that the calling test cannot run on this machine and why, so it
/// does not pass in silence; with `CI=true` a missing prerequisite fails it.
#[track_caller]
pub fn cannot_run_here(what_is_missing: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} cannot run here: cannot {what_is_missing}",
        test_name()
    );
    skipped(&format!("cannot {what_is_missing}"));
}

/// Says that the calling test is skipped and why. Written to stderr
/// directly: libtest would hide an `eprintln!` of a test that passes.
pub fn skipped(why: &str) {
    let _ = writeln!(std::io::stderr(), "{} skipped: {why}", test_name());
}

/// libtest names each test's thread after the test.
fn test_name() -> String {
    let current = std::thread::current();
    current.name().unwrap_or("a test").to_string()
}

/// Sends SIGINT to a running bpsms, as Ctrl-C would, and waits for its
/// exit and its piped output.
pub async fn interrupt(child: std::process::Child) -> Output {
    let signal = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill -INT");
    assert!(signal.success(), "kill -INT failed");
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait for bpsms")
}
