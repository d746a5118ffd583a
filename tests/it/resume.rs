//! One runner per campaign, the operator's `retry`, and database faults.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bpsms::mock::Behaviour;

use crate::harness::{
    cannot_run_here, interrupt, path_str, recipients, send_args, sends_per_recipient, World, FROM,
};

/// Waits (with a deadline, never a fixed sleep) until `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_is_refused_then_takes_over_when_the_first_dies() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(200));
    let mut first = world
        .command(&send_args("two", path_str(&csv), &["--rate", "20"]))
        .spawn()
        .expect("start the first runner");
    wait_until("the first runner to send", || !world.ledger().is_empty()).await;

    let refused = world
        .run(&send_args("two", path_str(&csv), &["--rate", "20"]))
        .await;
    refused.assert_code(1);
    let pid = first.id().to_string();
    assert!(
        refused
            .stderr
            .contains(&format!("is being run by process {pid}")),
        "{}",
        refused.stderr
    );

    first.kill().expect("kill the first runner");
    tokio::task::spawn_blocking(move || first.wait())
        .await
        .expect("join")
        .expect("wait");
    // Same host, process gone: the next run takes over at once.
    world
        .run(&send_args("two", path_str(&csv), &["--rate", "100000"]))
        .await
        .assert_code(0);
    let rows = world.export("two").await;
    assert_eq!(rows.len(), 200);
    assert!(rows
        .iter()
        .all(|r| matches!(r["state"].as_str(), "delivered" | "failed" | "unknown")));
    assert!(sends_per_recipient(&world.ledger())
        .values()
        .all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_requeues_a_final_state_as_a_new_attempt() {
    let world = World::start(Behaviour {
        failure_ratio: 1.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(20));
    world
        .run(&send_args("again", path_str(&csv), &["--rate", "100000"]))
        .await
        .assert_code(0);
    let first = world.export("again").await;
    assert!(first.iter().all(|r| r["state"] == "failed"));

    // Without a terminal to ask on, --yes is required and nothing changes.
    let unconfirmed = world
        .run(&["retry", "--campaign", "again", "--state", "failed"])
        .await;
    unconfirmed.assert_code(2);
    assert!(
        unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert!(world
        .export("again")
        .await
        .iter()
        .all(|r| r["state"] == "failed"));

    let retried = world
        .run(&["retry", "--campaign", "again", "--state", "failed", "--yes"])
        .await;
    retried.assert_code(0);
    assert!(
        retried.stdout.contains("Re-queued 20"),
        "{}",
        retried.stdout
    );
    let pending = world.export("again").await;
    assert!(pending
        .iter()
        .all(|r| r["state"] == "pending" && r["sid"].is_empty()));

    world
        .run(&["resume", "--campaign", "again"])
        .await
        .assert_code(0);
    let second = world.export("again").await;
    assert!(second
        .iter()
        .all(|r| r["state"] == "failed" && r["attempts"] == "2"));
    for (before, after) in first.iter().zip(&second) {
        assert_ne!(before["sid"], after["sid"], "a new attempt gets a new sid");
    }
    assert!(sends_per_recipient(&world.ledger())
        .values()
        .all(|&n| n == 2));

    // The history keeps the first attempt's sid.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", world.db.display()))
        .await
        .expect("open the database");
    let retries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE from_state = 'failed' AND to_state = 'pending'
         AND detail LIKE 'operator retry (previous sid %'",
    )
    .fetch_one(&pool)
    .await
    .expect("count retry events");
    assert_eq!(retries, 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_database_files_give_clear_errors_not_panics() {
    let world = World::start(Behaviour::fast()).await;
    let garbage = world.write("garbage.db", &"this is not a database\n".repeat(200));
    let run = world.run(&["--db", path_str(&garbage), "status"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("not a bpsms database"),
        "{}",
        run.stderr
    );

    let missing = world.dir.path().join("missing.db");
    let run = world
        .run(&["--db", path_str(&missing), "export", "--campaign", "x"])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("no database at"), "{}", run.stderr);

    let no_folder = world.dir.path().join("no/such/folder/x.db");
    let csv = world.write("r.csv", &recipients(3));
    let mut args = vec!["--db", path_str(&no_folder)];
    args.extend(send_args("x", path_str(&csv), &["--rate", "100"]));
    let run = world.run(&args).await;
    run.assert_code(1);
    assert!(run.stderr.contains("folder exists"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_is_reported_and_nothing_is_sent() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(5));
    world
        .run(&[
            "import",
            "--campaign",
            "locked",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi",
        ])
        .await
        .assert_code(0);
    // Another program holds the write lock for the whole run.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", world.db.display()))
        .await
        .expect("open the database");
    let mut holder = pool.acquire().await.expect("connection");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut *holder)
        .await
        .expect("lock");
    let run = world.run(&["send", "--campaign", "locked"]).await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("locked by another process"),
        "{}",
        run.stderr
    );
    assert_eq!(world.stats().send_requests, 0);
    sqlx::query("ROLLBACK")
        .execute(&mut *holder)
        .await
        .expect("unlock");
}

/// A tmpfs mounted for one test. Dropping it unmounts it, also when the test
/// fails, lazily if a process still holds a file there.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB at `dir`; `None` after saying that this
    /// machine cannot (no root, no `mount`), which fails the test in CI.
    fn mount(dir: &Path, kib: u64) -> Option<Tmpfs> {
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs {
                dir: dir.to_path_buf(),
            }),
            Ok(out) => {
                let why = String::from_utf8_lossy(&out.stderr);
                cannot_run_here(&format!("mount a tmpfs: {}", why.trim()));
                None
            }
            Err(error) => {
                cannot_run_here(&format!("run `mount`: {error}"));
                None
            }
        }
    }

    /// Changes the size of the filesystem, for a test to fill it or free it.
    fn resize(&self, kib: u64) -> bool {
        self.remount(&format!("remount,size={kib}k"))
    }

    fn remount_read_only(&self) -> bool {
        self.remount("remount,ro")
    }

    fn remount(&self, options: &str) -> bool {
        Command::new("mount")
            .args(["-o", options])
            .arg(&self.dir)
            .output()
            .is_ok_and(|out| out.status.success())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .output()
            .is_ok_and(|out| out.status.success());
        if !unmounted {
            // Busy: detached now, gone once its last file is closed.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_the_run_cleanly_and_resume_finishes_once_space_is_back() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(3000));
    // A small filesystem, shrunk below what the run needs.
    let mount_dir = world.dir.path().join("small");
    std::fs::create_dir(&mount_dir).expect("mount point");
    let Some(tmpfs) = Tmpfs::mount(&mount_dir, 64 * 1024) else {
        return;
    };
    let db = mount_dir.join("bpsms.db");
    world
        .run(&[
            "--db",
            path_str(&db),
            "import",
            "--campaign",
            "full",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hello {{first_name}}, your order is on its way",
        ])
        .await
        .assert_code(0);
    let folder = db.parent().expect("database folder");
    let size_kib = std::fs::read_dir(folder)
        .expect("list the database folder")
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|meta| meta.len() / 1024 + 4)
        .sum::<u64>();
    assert!(tmpfs.resize(size_kib + 96), "shrink the filesystem");
    let send = [
        "--db",
        path_str(&db),
        "send",
        "--campaign",
        "full",
        "--rate",
        "100000",
        "--poll-delay",
        "300ms",
    ];
    let run = world.run(&send).await;
    run.assert_code(1);
    assert!(run.stderr.contains("disk is full"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let sent_before = world.ledger().len();
    assert!(sent_before < 3000, "the run stopped before the end");

    assert!(tmpfs.resize(64 * 1024), "grow the filesystem");
    let resumed = world.run(&send).await;
    resumed.assert_code(0);
    let export = world
        .run(&["--db", path_str(&db), "export", "--campaign", "full"])
        .await;
    export.assert_code(0);
    let rows = crate::harness::parse_csv(&export.stdout);
    assert_eq!(rows.len(), 3000);
    assert!(rows
        .iter()
        .all(|r| matches!(r["state"].as_str(), "delivered" | "failed" | "unknown")));
    assert!(sends_per_recipient(&world.ledger())
        .values()
        .all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_database_is_reported_and_nothing_is_sent() {
    let world = World::start(Behaviour::fast()).await;
    let mount_dir = world.dir.path().join("ro");
    std::fs::create_dir(&mount_dir).expect("mount point");
    // Root ignores file permissions; a read-only mount stops even root.
    let Some(tmpfs) = Tmpfs::mount(&mount_dir, 8 * 1024) else {
        return;
    };
    let db = mount_dir.join("bpsms.db");
    let csv = world.write("r.csv", &recipients(5));
    world
        .run(&[
            "--db",
            path_str(&db),
            "import",
            "--campaign",
            "ro",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi",
        ])
        .await
        .assert_code(0);
    assert!(tmpfs.remount_read_only(), "remount read-only");
    let run = world
        .run(&["--db", path_str(&db), "send", "--campaign", "ro"])
        .await;
    run.assert_code(1);
    assert!(run.stderr.contains("writable"), "{}", run.stderr);
    assert_eq!(world.stats().send_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_compares_regions_as_regions_and_refuses_a_stored_one_it_cannot_read() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("gb.csv", "phone\n07700 900123\n07700 900124\n");
    let import = |region| {
        [
            "import",
            "--campaign",
            "gb",
            "--csv",
            path_str(&csv),
            "--from",
            FROM,
            "--body",
            "Hi",
            "--default-region",
            region,
        ]
    };
    world.run(&import("GB")).await.assert_code(0);

    // `UK` is the everyday name of `GB`: the same campaign, resumed.
    let same = world
        .run(&[
            "send",
            "--campaign",
            "gb",
            "--default-region",
            "UK",
            "--poll-delay",
            "300ms",
        ])
        .await;
    same.assert_code(0);
    let other = world
        .run(&["send", "--campaign", "gb", "--default-region", "US"])
        .await;
    other.assert_code(2);
    assert!(
        other
            .stderr
            .contains("already exists with default region GB"),
        "{}",
        other.stderr
    );

    // A region changed outside bpsms is an error that says what to do, not
    // a silent fallback to US.
    let pool = world.read_db().await;
    sqlx::query("UPDATE campaigns SET default_region = 'ZZ' WHERE name = 'gb'")
        .execute(&pool)
        .await
        .expect("change the stored region");
    pool.close().await;
    let stop = world.write("stop.txt", "07700 900124\n");
    let unreadable = world
        .run(&["send", "--campaign", "gb", "--suppress", path_str(&stop)])
        .await;
    unreadable.assert_code(1);
    assert!(
        unreadable
            .stderr
            .contains("stored with the default region \"ZZ\""),
        "{}",
        unreadable.stderr
    );
    assert!(
        unreadable.stderr.contains("restore it from a backup"),
        "{}",
        unreadable.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_at_once_exits_130_and_releases_the_campaign() {
    // Every send is accepted but answered only long after the grace period.
    let world = World::start(Behaviour {
        fault_slow: 1.0,
        slow_delay: Duration::from_secs(30),
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(20));
    let mut command = world.command(&send_args(
        "left",
        path_str(&csv),
        &["--shutdown-grace", "0s"],
    ));
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().expect("start bpsms send");
    wait_until("a send in flight", || world.stats().send_requests > 0).await;
    let output = interrupt(child).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("leaving now"), "{stderr}");

    let pool = world.read_db().await;
    let n_runners: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runners")
        .fetch_one(&pool)
        .await
        .expect("count runners");
    pool.close().await;
    assert_eq!(n_runners, 0, "the campaign was not released: {stderr}");
}
