//! A command refused for a reason the operator can fix says what to do, and
//! leaves nothing behind: no database, no campaign, no claim on one.

use std::process::Stdio;

use bpsms::mock::Behaviour;

use crate::harness::{path_str, recipients, World};

#[tokio::test(flavor = "multi_thread")]
async fn resume_of_an_unknown_campaign_points_to_status() {
    let world = World::start(Behaviour::fast()).await;
    // No database yet: the run must not create an empty one.
    let run = world.run(&["resume", "--campaign", "typo"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("no database at"), "{}", run.stderr);
    assert!(!world.db.exists(), "resume created a database");

    world.import_recipients("spring", 3).await;
    let run = world.run(&["resume", "--campaign", "sprnig"]).await;
    run.assert_code(2);
    assert!(
        run.stderr.contains("no campaign \"sprnig\"") && run.stderr.contains("bpsms status"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("--from"), "{}", run.stderr);
    assert_eq!(world.stats().send_requests, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_retry_leaves_no_claim_on_the_campaign() {
    let world = World::start(Behaviour {
        failure_ratio: 1.0,
        ..Behaviour::fast()
    })
    .await;
    let csv = world.write("r.csv", &recipients(3));
    world
        .run(&crate::harness::send_args("c", path_str(&csv), &[]))
        .await
        .assert_code(0);
    let pool = world.read_db().await;
    let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE state = 'failed'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(failed, 3, "the send left messages to retry");

    // No terminal and no --yes: refused.
    let mut retry = world.command(&["retry", "--campaign", "c", "--state", "failed"]);
    retry.stdin(Stdio::null());
    let refused = world.run_command(retry).await;
    refused.assert_code(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    let runners: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runners")
        .fetch_one(&pool)
        .await
        .expect("count runners");
    pool.close().await;
    assert_eq!(runners, 0, "the refused retry left its claim behind");

    let next = world.run(&["status", "--campaign", "c"]).await;
    assert!(!next.stderr.contains("gone"), "{}", next.stderr);
}
