//! Errors that say what to do: a wrong address, plain HTTP where TLS was
//! asked for, a web server that is not a tenant, a storm of 429s, a message
//! left `unknown`, and Gets of messages not visible yet.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bpsms::mock::{Behaviour, RetryAfter};

use crate::harness::{path_str, recipients, send_args, Run, World};

/// Longer than any of these runs takes, so a hang fails instead of blocking
/// the suite (not a measure of speed).
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Runs `command` to its end, or kills it after [`HANG_GUARD`] and fails.
async fn run_guarded(mut command: Command) -> Run {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run bpsms");
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if child.try_wait().expect("wait for bpsms").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("wait for bpsms");
                panic!(
                    "bpsms still ran after {HANG_GUARD:?}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("read bpsms's output");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("join")
}

/// A send of a small campaign to `base_url` instead of the simulator.
async fn send_to(world: &World, base_url: &str) -> Run {
    let csv = world.write("r.csv", &recipients(5));
    let mut command = world.command(&send_args("wrong-address", path_str(&csv), &[]));
    command.env("BPSMS_BASE_URL", base_url);
    run_guarded(command).await
}

/// A web server on loopback that answers every request with `answer` and
/// closes the connection: something that is not a tenant.
fn web_server(answer: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // Read the whole request first: closing with unread bytes would
            // reset the connection before the answer is read.
            if read_request(&mut stream).is_some() {
                let _ = stream.write_all(answer.as_bytes());
            }
        }
    });
    format!("http://{address}")
}

/// Reads one request with a Content-Length body; `None` if it breaks off.
fn read_request(stream: &mut std::net::TcpStream) -> Option<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return Some(());
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Nothing listens at the address: the first token request says where it
/// tried and what happened, and the run ends with a configuration error
/// at once instead of retrying as if the API were briefly away.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_is_named_and_ends_the_run_at_once() {
    let world = World::start(Behaviour::fast()).await;
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let run = send_to(&world, &format!("http://{address}")).await;
    run.assert_code(2);
    let tried = format!("could not connect to http://{address}/configapi/v2/oauth/token");
    assert!(run.stderr.contains(&tried), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("the connection to {address} was refused")),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("pausing sends"),
        "no retries first: {}",
        run.stderr
    );
}

/// `https://` to the plain-HTTP simulator: said in so many words.
#[tokio::test(flavor = "multi_thread")]
async fn https_to_a_plain_http_server_says_so() {
    let world = World::start(Behaviour::fast()).await;
    let https = world.sim.base_url().replacen("http://", "https://", 1);
    let run = send_to(&world, &https).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains(&format!(
            "the server at {https}/configapi/v2/oauth/token answered in plain HTTP"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("use http:// only for a loopback simulator"),
        "{}",
        run.stderr
    );
    assert_eq!(world.stats().send_requests, 0);
}

/// A web server that answers, but not as a tenant's token endpoint does:
/// "reachable, but not a tenant", never "unreachable" nor "credentials".
#[tokio::test(flavor = "multi_thread")]
async fn a_web_server_that_is_not_a_tenant_is_named_as_such() {
    let world = World::start(Behaviour::fast()).await;
    let answers = [
        (
            404,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 48\r\n\
             Connection: close\r\n\r\n<html><body><h1>Not Found</h1></body></html>\r\n\r\n",
        ),
        (
            501,
            "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        (
            200,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 29\r\n\
             Connection: close\r\n\r\n<!DOCTYPE html><p>Welcome</p>",
        ),
    ];
    for (status, answer) in answers {
        let base_url = web_server(answer);
        let run = send_to(&world, &base_url).await;
        run.assert_code(2);
        let expected = format!(
            "{base_url}/configapi/v2/oauth/token is reachable, but not a BPCC tenant at this \
             address: its token endpoint answered HTTP {status}"
        );
        assert!(run.stderr.contains(&expected), "{}", run.stderr);
        assert!(!run.stderr.contains("credentials"), "{}", run.stderr);
    }
}

/// A run of 429s earns one warning with the lowered rate, not a warning or
/// two per answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_storm_of_429s_earns_one_warning_not_one_per_answer() {
    let world = World::start(Behaviour {
        fault_429_first: 60,
        retry_after: RetryAfter::Seconds(0),
        failure_ratio: 0.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(100));
    let run = run_guarded(world.command(&send_args(
        "storm",
        path_str(&csv),
        &["--rate", "100", "--concurrency", "8"],
    )))
    .await;
    run.assert_code(0);
    assert!(world.stats().faults_injected >= 60);
    let lowered: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("lowered the send rate to"))
        .collect();
    assert_eq!(lowered.len(), 1, "{}", run.stderr);
    assert!(
        lowered[0].contains("HTTP 429") && lowered[0].ends_with("lowered the send rate to 50/s"),
        "{}",
        lowered[0]
    );
    let about_429 = run
        .stderr
        .lines()
        .filter(|line| line.contains("429"))
        .count();
    assert!(about_429 <= 3, "{about_429} lines:\n{}", run.stderr);
}

/// An `unknown` message's reason says what the answer did tell, and what
/// the operator can do.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_reason_says_what_is_known_and_what_to_do() {
    let world = World::start(Behaviour {
        fault_502: 0.2,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(50));
    world
        .run(&send_args("gateway", path_str(&csv), &["--rate", "500"]))
        .await
        .assert_code(0);
    let rows = world.export("gateway").await;
    let unknown: Vec<_> = rows.iter().filter(|r| r["state"] == "unknown").collect();
    assert!(!unknown.is_empty(), "some 502s were drawn");
    for row in unknown {
        let reason = &row["reason"];
        assert!(
            reason.contains("HTTP 502 from the tenant's web server, not from the API"),
            "{reason}"
        );
        assert!(reason.contains("may or may not have been sent"), "{reason}");
        assert!(
            reason.ends_with("`bpsms retry --state unknown --campaign NAME` sends the campaign's unknown messages again"),
            "{reason}"
        );
    }
}

/// Gets of a message not visible yet back off from 2 s on their own
/// schedule: a few per message during a 404 phase of 5 s, not one per
/// doubling of a 100 ms poll delay.
#[tokio::test(flavor = "multi_thread")]
async fn gets_of_a_message_not_visible_yet_back_off() {
    let world = World::start(Behaviour {
        not_found_for: Duration::from_secs(5),
        sent_after: Duration::from_secs(5),
        delivered_after: Duration::from_millis(5500),
        failure_ratio: 0.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(20));
    let run = run_guarded(world.command(&send_args(
        "hidden",
        path_str(&csv),
        &["--rate", "1000", "--poll-delay", "100ms"],
    )))
    .await;
    run.assert_code(0);
    let rows = world.export("hidden").await;
    assert!(rows.iter().all(|r| r["state"] == "delivered"));
    for entry in world.ledger() {
        // 100 ms after the send, then 2 s later; 4 s later it is visible.
        // Doubling from the poll delay would have asked 5 times or more.
        assert!(
            (1..=3).contains(&entry.not_visible_answers),
            "{} answered 404 {} times",
            entry.to,
            entry.not_visible_answers
        );
    }
}
