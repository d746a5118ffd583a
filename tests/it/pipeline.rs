//! The campaign pipeline end to end: import, send, track, export, against
//! the simulator's ledger.

use std::collections::HashSet;
use std::time::Duration;

use bpsms::mock::Behaviour;

use crate::harness::{path_str, recipients, send_args, sends_per_recipient, World, FROM};

/// Flags that make a campaign run fast against `Behaviour::fast()`.
const FAST: [&str; 6] = [
    "--rate",
    "100000",
    "--concurrency",
    "32",
    "--poll-delay",
    "300ms",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_recipients_reconcile_one_for_one_with_the_ledger() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(1000));
    let run = world.run(&send_args("big", path_str(&csv), &FAST)).await;
    run.assert_code(0);
    assert!(run.stdout.contains("Delivery rate"), "{}", run.stdout);

    let rows = world.export("big").await;
    assert_eq!(rows.len(), 1000);
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 1000, "every recipient sent exactly once");
    assert!(sends_per_recipient(&ledger).values().all(|&n| n == 1));
    let ledger_sids: HashSet<&str> = ledger.iter().map(|e| e.sid.as_str()).collect();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["row"], (i + 1).to_string(), "row order");
        assert!(
            matches!(row["state"].as_str(), "delivered" | "failed"),
            "row {}: {}",
            row["row"],
            row["state"]
        );
        assert!(
            ledger_sids.contains(row["sid"].as_str()),
            "sid of row {} in ledger",
            row["row"]
        );
        assert_eq!(row["attempts"], "1");
        assert!(!row["sent_at"].is_empty() && !row["final_at"].is_empty());
    }
    let to: HashSet<&str> = ledger.iter().map(|e| e.to.as_str()).collect();
    let exported: HashSet<&str> = rows.iter().map(|r| r["phone_e164"].as_str()).collect();
    assert_eq!(to, exported);
    assert!(ledger.iter().all(|e| e.from == FROM
        && e.body
            .as_deref()
            .is_some_and(|b| b.starts_with("Hello Name "))));
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_and_duplicate_rows_are_reported_and_never_sent() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone,first_name\n\
         (415) 200-0001,Ann\n\
         not a number,Bob\n\
         +1 415-200-0001,Ann again\n\
         12,Short\n\
         4152000002,Cy\n\
         ,Empty\n",
    );
    world
        .run(&send_args("mixed", path_str(&csv), &FAST))
        .await
        .assert_code(0);
    let rows = world.export("mixed").await;
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str()).collect();
    assert_eq!(states[1], "invalid");
    assert_eq!(states[2], "duplicate");
    assert_eq!(rows[2]["reason"], "duplicate of row 1");
    assert_eq!(states[3], "invalid");
    assert_eq!(states[5], "invalid");
    assert!(rows
        .iter()
        .filter(|r| r["state"] == "invalid")
        .all(|r| !r["reason"].is_empty()));
    let ledger = world.ledger();
    let sent: HashSet<&str> = ledger.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(sent, HashSet::from(["+14152000001", "+14152000002"]));
}

/// Repeats far apart (across the import's batches of 1,024 rows), chains
/// of repeats and an MMS repeat: each names the first row of its number,
/// the import's totals count them, and every number is texted once.
#[tokio::test(flavor = "multi_thread")]
async fn duplicates_across_batches_name_the_first_row_and_are_never_sent() {
    let world = World::start(Behaviour::fast()).await;
    let mut csv = String::from("phone,first_name,media_urls\n");
    for row in 1..=3000 {
        let phone = match row {
            1500 | 2600 => "(415) 300-0003".to_string(),
            2700 => "+1 415-300-1500".to_string(),
            2800 => "4153000007".to_string(),
            _ => format!("415-300-{row:04}"),
        };
        let media = if row == 7 || row == 2800 {
            "https://example.com/a.png"
        } else {
            ""
        };
        csv.push_str(&format!("{phone},Name {row},{media}\n"));
    }
    let csv = world.write("far.csv", &csv);
    let run = world.run(&send_args("far", path_str(&csv), &FAST)).await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("3000 rows: 2997 to send (1 MMS), 0 invalid, 3 duplicate"),
        "{}",
        run.stderr
    );
    let rows = world.export("far").await;
    let reason = |row: usize| rows[row - 1]["reason"].as_str();
    assert_eq!(reason(1500), "duplicate of row 3");
    assert_eq!(reason(2600), "duplicate of row 3");
    // Row 2700 spells the number row 1500 would have had; row 1500 texts
    // row 3's number, so nobody texted this one before.
    assert_ne!(rows[2699]["state"], "duplicate");
    assert_eq!(reason(2800), "duplicate of row 7");
    let duplicates: Vec<usize> = rows
        .iter()
        .filter(|r| r["state"] == "duplicate")
        .map(|r| r["row"].parse().expect("row number"))
        .collect();
    assert_eq!(duplicates, vec![1500, 2600, 2800]);
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 2997);
    assert!(sends_per_recipient(&ledger).values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn mms_ends_at_sent() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone,first_name,media_urls\n\
         4152000001,Ann,https://media.example.org/a.png\n\
         4152000002,Bob,\n",
    );
    world
        .run(&send_args("mms", path_str(&csv), &FAST))
        .await
        .assert_code(0);
    let rows = world.export("mms").await;
    assert_eq!(rows[0]["kind"], "mms");
    assert_eq!(rows[0]["state"], "sent");
    assert_eq!(rows[1]["kind"], "sms");
    assert!(matches!(rows[1]["state"].as_str(), "delivered" | "failed"));
    let ledger = world.ledger();
    let mms = ledger
        .iter()
        .find(|e| e.to == "+14152000001")
        .expect("mms in ledger");
    assert_eq!(mms.media_urls, ["https://media.example.org/a.png"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_refreshed_when_its_lifetime_ends_mid_campaign() {
    let world = World::start(Behaviour {
        token_lifetime: Duration::from_secs(1),
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(300));
    let args = send_args(
        "tokens",
        path_str(&csv),
        &[
            "--rate",
            "150",
            "--concurrency",
            "8",
            "--poll-delay",
            "300ms",
        ],
    );
    world.run(&args).await.assert_code(0);
    let stats = world.stats();
    assert!(stats.token_requests >= 2, "token refreshed: {stats:?}");
    let rows = world.export("tokens").await;
    assert!(rows
        .iter()
        .all(|r| matches!(r["state"].as_str(), "delivered" | "failed")));
    assert_eq!(world.ledger().len(), 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_send_of_a_finished_campaign_sends_nothing_more() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(50));
    let args = send_args("again", path_str(&csv), &FAST);
    world.run(&args).await.assert_code(0);
    let before = world.stats();
    let run = world.run(&args).await;
    run.assert_code(0);
    let after = world.stats();
    assert_eq!(world.ledger().len(), 50);
    assert_eq!(after.send_requests, before.send_requests);
    assert_eq!(after.get_requests, before.get_requests);
    // Without the CSV, the same campaign resumes too.
    world
        .run(&["send", "--campaign", "again"])
        .await
        .assert_code(0);
    assert_eq!(world.ledger().len(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn tracking_window_expiry_keeps_the_last_status() {
    let world = World::start(Behaviour {
        sent_after: Duration::from_millis(100),
        delivered_after: Duration::from_secs(3600),
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(20));
    let args = send_args(
        "expiry",
        path_str(&csv),
        &[
            "--rate",
            "1000",
            "--poll-delay",
            "200ms",
            "--track-for",
            "1s",
        ],
    );
    world.run(&args).await.assert_code(0);
    let rows = world.export("expiry").await;
    for row in &rows {
        assert_eq!(row["state"], "expired", "row {}", row["row"]);
        assert_eq!(row["remote_status"], "sent");
        assert!(row["reason"].contains("tracking window"));
    }
    assert!(
        world.stats().get_requests >= 20,
        "every message polled at least once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_polled_before_it_can_expire() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(5));
    // The window is shorter than the first poll delay: the first Get still happens.
    let args = send_args(
        "short",
        path_str(&csv),
        &[
            "--rate",
            "1000",
            "--poll-delay",
            "800ms",
            "--track-for",
            "100ms",
        ],
    );
    world.run(&args).await.assert_code(0);
    let stats = world.stats();
    assert!(stats.get_requests >= 5, "{stats:?}");
    let rows = world.export("short").await;
    assert!(rows
        .iter()
        .all(|r| r["state"] == "expired" || r["state"] == "delivered" || r["state"] == "failed"));
    assert!(rows.iter().all(
        |r| !r["remote_status"].is_empty() && r["remote_status"] != "queued"
            || r["state"] == "expired"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_leave_messages_unknown_and_never_resend_them() {
    let world = World::start(Behaviour {
        fault_500: 1.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(10));
    let run = world.run(&send_args("errors", path_str(&csv), &FAST)).await;
    run.assert_code(0);
    assert!(
        run.stdout.contains("10 message(s) are `unknown`"),
        "{}",
        run.stdout
    );
    let rows = world.export("errors").await;
    assert!(rows
        .iter()
        .all(|r| r["state"] == "unknown" && r["reason"].contains("HTTP 500")));
    assert_eq!(
        world.stats().send_requests,
        10,
        "each sent once, none retried"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_stop_before_any_send() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(10));
    let mut command = world.command(&send_args("creds", path_str(&csv), &FAST));
    command.env("BPSMS_CLIENT_SECRET", "wrong-secret");
    let run = world.run_command(command).await;
    run.assert_code(2);
    assert!(run.stderr.contains("BPSMS_CLIENT_SECRET"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("wrong-secret"),
        "the secret never printed"
    );
    assert_eq!(world.stats().send_requests, 0);
    // The campaign is kept, untouched, for a resume once fixed.
    world
        .run(&["send", "--campaign", "creds"])
        .await
        .assert_code(0);
    assert_eq!(world.ledger().len(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn resuming_with_a_different_file_is_refused_and_a_new_sender_pool_is_announced() {
    let world = World::start(Behaviour::fast()).await;
    let first = world.write("a.csv", &recipients(3));
    let second = world.write("b.csv", &recipients(4));
    world
        .run(&[
            "import",
            "--campaign",
            "c",
            "--csv",
            path_str(&first),
            "--from",
            FROM,
            "--body",
            "Hi",
        ])
        .await
        .assert_code(0);
    assert_eq!(world.stats().send_requests, 0, "import sends nothing");
    let run = world
        .run(&["send", "--campaign", "c", "--csv", path_str(&second)])
        .await;
    run.assert_code(2);
    assert!(run.stderr.contains("different file"), "{}", run.stderr);
    // The sender pool is a setting, like the rate: a new one is said and
    // used.
    let run = world
        .run(&[
            "send",
            "--campaign",
            "c",
            "--csv",
            path_str(&first),
            "--from",
            "+16505550199",
            "--rate",
            "1000",
            "--poll-delay",
            "300ms",
        ])
        .await;
    run.assert_code(0);
    assert!(
        run.stderr
            .contains("Sender pool of campaign c: +16505550199 (was +16505550100)"),
        "{}",
        run.stderr
    );
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|entry| entry.from == "+16505550199"));
}

#[tokio::test(flavor = "multi_thread")]
async fn export_json_and_status_agree_with_the_csv_export() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(12));
    world
        .run(&send_args("report", path_str(&csv), &FAST))
        .await
        .assert_code(0);
    let out = world.dir.path().join("out.json");
    world
        .run(&[
            "export",
            "--campaign",
            "report",
            "--format",
            "json",
            "--out",
            path_str(&out),
        ])
        .await
        .assert_code(0);
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("json file")).expect("json");
    assert_eq!(json.len(), 12);
    let mut keys: Vec<&str> = json[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = bpsms::report::EXPORT_COLUMNS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    let status = world.run(&["status"]).await;
    status.assert_code(0);
    assert!(
        status.stdout.contains("Campaign report: 12 rows"),
        "{}",
        status.stdout
    );
    let missing = world.run(&["export", "--campaign", "nope"]).await;
    missing.assert_code(2);
}

/// With a proxy in the environment, every call goes through it, sends
/// included (they otherwise take their own connections): here the tenant
/// address leads nowhere and only the proxy, the simulator, answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_configured_proxy_carries_every_call() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(20));
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let tenant = format!("http://{}", nowhere.local_addr().expect("address"));
    drop(nowhere);
    let mut command = world.command(&send_args("proxied", path_str(&csv), &FAST));
    command
        .env("BPSMS_BASE_URL", &tenant)
        .env("BPSMS_TENANT", "acme.example")
        .env("HTTP_PROXY", world.sim.base_url());
    let run = world.run_command(command).await;
    run.assert_code(0);
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 20, "{}", run.stderr);
    assert!(sends_per_recipient(&ledger).values().all(|&n| n == 1));
    let rows = world.export("proxied").await;
    assert!(rows
        .iter()
        .all(|row| matches!(row["state"].as_str(), "delivered" | "failed")));
}
