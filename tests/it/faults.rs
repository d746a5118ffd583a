//! A flaky API: server errors, 429s, slow answers, short-lived tokens,
//! configuration errors and the circuit breaker, reconciled with the ledger.

use std::collections::HashMap;
use std::time::Duration;

use bpsms::mock::{Behaviour, RetryAfter};

use crate::harness::{path_str, recipients, send_args, sends_per_recipient, World};

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_mix_campaign_completes_and_reconciles_exactly_with_the_ledger() {
    let world = World::start(Behaviour {
        fault_500: 0.10,
        fault_429: 0.05,
        retry_after: RetryAfter::Seconds(0),
        fault_slow: 0.02,
        slow_delay: Duration::from_secs(3),
        token_lifetime: Duration::from_secs(3),
        ..Behaviour::fast()
    })
    .await;
    let n = 2000;
    let csv = world.write("r.csv", &recipients(n));
    let run = world
        .run(&send_args(
            "mix",
            path_str(&csv),
            &[
                "--rate",
                "2000",
                "--concurrency",
                "32",
                "--request-timeout",
                "1s",
            ],
        ))
        .await;
    run.assert_code(0);

    let rows = world.export("mix").await;
    assert_eq!(rows.len(), n);
    let ledger = world.ledger();
    let per_recipient = sends_per_recipient(&ledger);
    let sid_of: HashMap<&str, &str> = ledger
        .iter()
        .map(|e| (e.to.as_str(), e.sid.as_str()))
        .collect();
    let mut unknown = 0;
    for row in &rows {
        let phone = row["phone_e164"].as_str();
        let sent = per_recipient.get(phone).copied().unwrap_or(0);
        match row["state"].as_str() {
            // Unknown: the API may or may not have it; never sent twice.
            "unknown" => {
                unknown += 1;
                assert!(sent <= 1, "row {} sent {sent} times", row["row"]);
            }
            "delivered" | "failed" => {
                assert_eq!(sent, 1, "row {}", row["row"]);
                assert_eq!(
                    row["sid"], sid_of[phone],
                    "row {}: the sid the API gave",
                    row["row"]
                );
            }
            other => panic!("row {} ended {other}", row["row"]),
        }
    }
    let stats = world.stats();
    let calls = stats.send_requests + stats.get_requests + stats.token_requests;
    eprintln!(
        "fault mix: {n} recipients, {unknown} unknown, {} accepted, {} API calls ({:.2} per message), {} tokens, {} faults",
        ledger.len(),
        calls,
        calls as f64 / n as f64,
        stats.token_requests,
        stats.faults_injected
    );
    assert!(unknown > 0 && unknown < n / 4, "{unknown} unknown");
    assert!(stats.token_requests >= 2, "the 3 s token was refreshed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_403_stops_the_campaign_after_the_first_sends() {
    let world = World::start(Behaviour {
        fault_403: 1.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(500));
    let run = world
        .run(&send_args(
            "forbidden",
            path_str(&csv),
            &["--rate", "1000", "--concurrency", "4"],
        ))
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("Use SMS/MMS API"), "{}", run.stderr);
    assert!(run.stderr.contains("Text Out"), "{}", run.stderr);
    let stats = world.stats();
    assert!(
        stats.send_requests <= 8,
        "stopped after a few sends: {stats:?}"
    );
    let rows = world.export("forbidden").await;
    assert!(
        rows.iter().all(|r| r["state"] == "pending"),
        "nothing was sent, all resumable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_circuit_breaker_pauses_a_failing_campaign() {
    let world = World::start(Behaviour {
        fault_502: 0.8,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(1000));
    let run = world
        .run(&send_args(
            "breaker",
            path_str(&csv),
            &[
                "--rate",
                "5000",
                "--concurrency",
                "4",
                "--breaker-window",
                "50",
            ],
        ))
        .await;
    run.assert_code(1);
    assert!(
        run.stderr.contains("of the last 50 sends failed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("502"), "{}", run.stderr);
    let rows = world.export("breaker").await;
    let pending = rows.iter().filter(|r| r["state"] == "pending").count();
    assert!(
        pending > 500,
        "the run stopped early: {pending} still pending"
    );
    assert!(world.stats().send_requests < 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_429s_lowers_the_rate_which_then_recovers() {
    let world = World::start(Behaviour {
        fault_429_first: 30,
        retry_after: RetryAfter::Seconds(0),
        failure_ratio: 0.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(150));
    let mut command = world.command(&send_args(
        "burst",
        path_str(&csv),
        &["--rate", "40", "--concurrency", "4"],
    ));
    command.env("RUST_LOG", "bpsms=info");
    let run = world.run_command(command).await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("lowered the send rate to"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("send rate back up to"),
        "{}",
        run.stderr
    );
    assert_eq!(world.ledger().len(), 150);
    assert!(sends_per_recipient(&world.ledger())
        .values()
        .all(|&n| n == 1));

    // At the simulator: right after the burst the sends arrive well below
    // the configured 40/s (a lower bound on the gaps, which a slow machine
    // only widens).
    let mut times: Vec<i64> = world.ledger().iter().map(|e| e.received_at_ms).collect();
    times.sort_unstable();
    let first_gaps = (times[10] - times[0]) as f64 / 10.0;
    assert!(
        first_gaps >= 1000.0 / 20.0,
        "mean gap after the burst {first_gaps} ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_faults_never_produce_a_wrong_final_state() {
    let world = World::start(Behaviour {
        get_fault_500: 0.1,
        get_fault_429: 0.05,
        retry_after: RetryAfter::Seconds(0),
        not_found_for: Duration::from_millis(200),
        quirk_null_sid: true,
        quirk_numeric_error_code: true,
        failure_ratio: 0.2,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(300));
    world
        .run(&send_args(
            "gets",
            path_str(&csv),
            &["--rate", "2000", "--poll-delay", "150ms"],
        ))
        .await
        .assert_code(0);
    let rows = world.export("gets").await;
    let failed = rows.iter().filter(|r| r["state"] == "failed").count();
    let delivered = rows.iter().filter(|r| r["state"] == "delivered").count();
    assert_eq!(
        failed + delivered,
        300,
        "every message reached the simulator's own verdict"
    );
    for row in rows.iter().filter(|r| r["state"] == "failed") {
        assert_eq!(
            row["error_code"], "30003",
            "numeric error_code kept as text"
        );
        assert!(!row["error_message"].is_empty());
    }
    assert!(failed > 20 && delivered > 150);
}
