//! A run stops when asked, whatever became of its output: Ctrl-C or SIGTERM
//! after the program reading stdout and stderr is gone (`bpsms send … 2>&1 |
//! tee run.log`, where the terminal's Ctrl-C ends `tee` too); an export into
//! a reader that leaves early (`| head`) ends quietly, and one onto a full
//! disk fails.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bpsms::mock::Behaviour;

use crate::harness::{path_str, recipients, send_args, World};

/// How long a stopped run may take to exit before the test gives up on it:
/// generous, so that a slow machine does not fail the test; a run that
/// ignores the signal runs for minutes.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// The sends a stopped run may still make are those in flight when the
/// signal arrived (the concurrency) and those started between the count and
/// the signal's delivery: at 50 per second, 10 in 200 ms, time enough for
/// a loaded machine to start `kill`. A run that ignores the signal sends
/// thousands more.
const CONCURRENCY: usize = 4;
const SENT_WHILE_SIGNALLING: usize = 10;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    fn flag(self) -> &'static str {
        match self {
            Stop::Interrupt => "-INT",
            Stop::Terminate => "-TERM",
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_run_whose_output_reader_is_gone() {
    stop_after_the_reader_left(Stop::Interrupt).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_run_whose_output_reader_is_gone() {
    stop_after_the_reader_left(Stop::Terminate).await;
}

/// Starts a long send whose stdout and stderr go to a reader that leaves
/// after the first byte, stops it with `stop`, and checks that it exits 130
/// having sent no more than what was in flight.
async fn stop_after_the_reader_left(stop: Stop) {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(20_000));
    let concurrency = CONCURRENCY.to_string();
    // Debug logging writes to stderr all along: the run writes into the
    // broken pipe while it sends, not only at the stop.
    let mut command = world.command(&send_args(
        "stop",
        path_str(&csv),
        &["--rate", "50", "--concurrency", &concurrency],
    ));
    command.env("RUST_LOG", "bpsms=debug");
    // A real reader that exits: `head -c 1` reads the first byte of the
    // run's output and leaves; every later write fails with EPIPE.
    let mut reader = Command::new("head")
        .args(["-c", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start head");
    let pipe = std::os::fd::OwnedFd::from(reader.stdin.take().expect("head's stdin"));
    command
        .stdout(pipe.try_clone().expect("dup the pipe"))
        .stderr(pipe);
    let mut child = command.spawn().expect("start bpsms send");
    // The parent's copies of the pipe go, or head would never see its end.
    drop(command);
    let status = tokio::task::spawn_blocking(move || reader.wait())
        .await
        .expect("join")
        .expect("wait for head");
    assert!(status.success(), "head read the first byte and left");
    wait_until(&mut child, "50 sends", || world.stats().send_requests >= 50).await;
    let sent_before = world.stats().send_requests as usize;
    let signal = Command::new("kill")
        .args([stop.flag(), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(signal.success(), "kill {} failed", stop.flag());
    let exited = wait_for_exit(child).await;
    let sent_after = world.ledger().len();
    let code = exited.map(|status| status.code());
    assert_eq!(
        code,
        Some(Some(130)),
        "{stop:?}: the run did not exit 130 within {EXIT_WITHIN:?} \
         ({sent_before} sends before the signal, {sent_after} by now)"
    );
    assert!(
        sent_after <= sent_before + CONCURRENCY + SENT_WHILE_SIGNALLING,
        "{stop:?}: {} sends after the signal",
        sent_after - sent_before
    );
}

/// Waits until `done` holds, failing if the run ends or takes a minute.
async fn wait_until(child: &mut Child, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + EXIT_WITHIN;
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the run ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The run's exit status, or `None` (and the run killed) if it is still
/// running after [`EXIT_WITHIN`].
async fn wait_for_exit(mut child: Child) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + EXIT_WITHIN;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_into_a_reader_that_leaves_early_ends_quietly() {
    let world = World::start(Behaviour::fast()).await;
    // Enough rows that the export outlives head's first line.
    world.import_recipients("big", 20_000).await;
    for format in ["csv", "json"] {
        let Output {
            status,
            stdout,
            stderr,
        } = shell(
            &world,
            &format!(
                "bpsms export --campaign big --format {format} | head -1; exit ${{PIPESTATUS[0]}}"
            ),
        )
        .await;
        let stderr = String::from_utf8_lossy(&stderr);
        assert_eq!(
            status.code(),
            Some(0),
            "{format} export's exit code; stderr: {stderr}"
        );
        assert!(
            stderr.is_empty(),
            "the {format} export said something: {stderr}"
        );
        assert_eq!(String::from_utf8_lossy(&stdout).lines().count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_onto_a_full_disk_fails() {
    if !std::path::Path::new("/dev/full").exists() {
        crate::harness::cannot_run_here("write to /dev/full (no such device)");
        return;
    }
    let world = World::start(Behaviour::fast()).await;
    world.import_recipients("c", 100).await;
    let out = shell(&world, "bpsms export --campaign c > /dev/full").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failed to write the export"), "{stderr}");
}

/// Runs `script` in bash, with the world's environment and `bpsms` on the
/// PATH.
async fn shell(world: &World, script: &str) -> Output {
    let bpsms = world.command(&[]);
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_bpsms"))
        .parent()
        .expect("the binary's directory");
    let mut bash = Command::new("bash");
    bash.args(["-c", script])
        .current_dir(world.dir.path())
        .env_clear();
    for (key, value) in bpsms.get_envs() {
        if let Some(value) = value {
            bash.env(key, value);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    bash.env("PATH", format!("{}:{path}", bin_dir.display()));
    tokio::task::spawn_blocking(move || bash.output())
        .await
        .expect("join")
        .expect("run bash")
}
