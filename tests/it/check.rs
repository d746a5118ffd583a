//! `bpsms check`, `send --dry-run` and suppression lists on a stored
//! campaign: what is shown, and that nothing is sent or stored.

use bpsms::mock::Behaviour;

use crate::harness::{path_str, recipients, send_args, World};

#[tokio::test(flavor = "multi_thread")]
async fn check_previews_and_totals_without_sending_or_storing() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone;first_name\n\
         (415) 555-0101;Ann\n\
         +1 415 555 0101;Ann again\n\
         N/A;Nobody\n\
         415-555-0102;Zoë\n\
         415-555-0103;Cy\n",
    );
    let stop = world.write("stop.txt", "4155550103\n");
    let run = world
        .run(&[
            "check",
            "--csv",
            path_str(&csv),
            "--body",
            "Hi {{first_name}}, your order is ready",
            "--suppress",
            path_str(&stop),
            "--preview",
            "2",
        ])
        .await;
    run.assert_code(0);
    let out = &run.stdout;
    for expected in [
        "5 rows",
        "2 messages (0 MMS), 2 SMS segments",
        "row 1  +14155550101  sms  gsm7, 1 segment(s)",
        "Hi Ann, your order is ready",
        // `ë` is not in GSM-7: the second message needs UCS-2.
        "row 4  +14155550102  sms  ucs2, 1 segment(s)",
        "row 2  +1 415 555 0101  duplicate: duplicate of row 1",
        "row 3  N/A  invalid: phone number contains letters",
        "row 5  415-555-0103  suppressed: on the suppression list (stop.txt line 1)",
        "Nothing was sent.",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(world.ledger().is_empty());
    assert!(
        !world.db.exists(),
        "check must not create the campaign database"
    );

    // The same check through `send --dry-run`.
    let mut args = send_args("dry", path_str(&csv), &["--dry-run"]);
    args.extend(["--suppress", path_str(&stop)]);
    let run = world.run(&args).await;
    run.assert_code(0);
    assert!(run.stdout.contains("Nothing was sent."), "{}", run.stdout);
    assert!(world.ledger().is_empty());
    assert!(!world.db.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn check_stops_where_an_import_would() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone,first_name\n4155550101,\"Ann\n4155550102,Bob\n",
    );
    let run = world
        .run(&["check", "--csv", path_str(&csv), "--body", "Hi"])
        .await;
    run.assert_code(2);
    assert!(
        run.stderr
            .contains("r.csv: line 2: a quoted field starts here and is never closed"),
        "{}",
        run.stderr
    );
    let run = world.run(&["check", "--body", "Hi"]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("pass --csv FILE"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suppression_list_given_on_resume_stops_messages_not_yet_sent() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write("r.csv", &recipients(20));
    let run = world
        .run(&[
            "import",
            "--campaign",
            "c",
            "--csv",
            path_str(&csv),
            "--from",
            crate::harness::FROM,
            "--body",
            "Hello {{first_name}}",
        ])
        .await;
    run.assert_code(0);
    // Rows 1 and 2 of `recipients` in other spellings, a blank line, a
    // comment and a line that is no number.
    let stop = world.write(
        "stop.txt",
        "phone\n+1 (415) 200-0000\n\n# replied STOP\n14152000001\nnot a number\n",
    );
    let run = world
        .run(&[
            "send",
            "--campaign",
            "c",
            "--suppress",
            path_str(&stop),
            "--rate",
            "100000",
            "--poll-delay",
            "300ms",
        ])
        .await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("Suppressed 2 message(s)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("1 line(s) of the suppression list stop.txt hold no valid phone number")
            && run.stderr.contains("line 6"),
        "{}",
        run.stderr
    );
    let rows = world.export("c").await;
    for row in &rows[..2] {
        assert_eq!(row["state"], "suppressed", "{row:?}");
        assert!(row["reason"].starts_with("on the suppression list (stop.txt line "));
        assert!(row["sid"].is_empty());
    }
    let ledger = world.ledger();
    assert_eq!(ledger.len(), 18);
    assert!(ledger
        .iter()
        .all(|e| e.to != "+14152000000" && e.to != "+14152000001"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_warns_of_placeholders_that_render_empty_and_defaults_fill_them() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "r.csv",
        "phone,first_name\n\
         4155550101,Ann\n\
         4155550102,\n\
         4155550103,Cy\n\
         4155550104,  \n",
    );
    let check = |body: &'static str| {
        let csv = path_str(&csv).to_owned();
        let world = &world;
        async move {
            let run = world
                .run(&["check", "--csv", &csv, "--body", body, "--preview", "4"])
                .await;
            run.assert_code(0);
            run.stdout
        }
    };
    let plain = check("Hi {{first_name}}, your order is ready").await;
    assert!(
        plain.contains("in 2 message(s) a placeholder renders empty (rows 2, 4)")
            && plain.contains("{{first_name|there}}"),
        "{plain}"
    );
    assert!(plain.contains("Hi , your order is ready"), "{plain}");

    let defaulted = check("Hi {{first_name|there}}, your order is ready").await;
    assert!(!defaulted.contains("renders empty"), "{defaulted}");
    assert!(
        defaulted.contains("Hi there, your order is ready"),
        "{defaulted}"
    );
    assert!(
        defaulted.contains("Hi Ann, your order is ready"),
        "{defaulted}"
    );

    // The import says so too.
    let import = world
        .run(&[
            "import",
            "--campaign",
            "c",
            "--csv",
            path_str(&csv),
            "--from",
            crate::harness::FROM,
            "--body",
            "Hi {{first_name}}",
        ])
        .await;
    import.assert_code(0);
    assert!(
        import
            .stderr
            .contains("in 2 message(s) a placeholder renders empty (first at row 2)"),
        "{}",
        import.stderr
    );

    // A column the file does not have, with a default, is the default.
    let absent = check("Hi {{nickname|friend}}").await;
    assert_eq!(absent.matches("Hi friend").count(), 4, "{absent}");
    assert!(world.ledger().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn require_texts_only_rows_that_consent_and_a_resume_keeps_the_rule() {
    let world = World::start(Behaviour::fast()).await;
    let csv = world.write(
        "crm.csv",
        "Phone,first_name,SMS Opt In\n\
         4155550101,Ann,Yes\n\
         4155550102,Bob,no\n\
         4155550103,Cy,\n\
         4155550104,Di, YES \n",
    );
    let send = |extra: &'static [&'static str]| {
        let mut args = send_args("crm", path_str(&csv), &[]);
        args.extend(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let world = &world;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            world.run(&args).await
        }
    };

    // A column the file does not have: refused before anything is stored.
    let missing = run(send(&["--require", "Opt In=yes"])).await;
    missing.assert_code(2);
    assert!(
        missing
            .stderr
            .contains("--require \"Opt In\": no such column")
            && missing.stderr.contains("SMS Opt In"),
        "{}",
        missing.stderr
    );
    assert!(world.ledger().is_empty());
    let malformed = run(send(&["--require", "SMS Opt In"])).await;
    malformed.assert_code(2);
    assert!(
        malformed.stderr.contains("COLUMN=VALUE"),
        "{}",
        malformed.stderr
    );

    run(send(&["--require", "sms opt in=yes"]))
        .await
        .assert_code(0);
    let rows = world.export("crm").await;
    let by_phone = |phone: &str| {
        rows.iter()
            .find(|r| r["phone"] == phone)
            .unwrap_or_else(|| panic!("row {phone}"))
    };
    assert_eq!(by_phone("4155550101")["state"], "delivered");
    assert_eq!(by_phone("4155550104")["state"], "delivered");
    for (phone, cell) in [("4155550102", "is \"no\""), ("4155550103", "is empty")] {
        let row = by_phone(phone);
        assert_eq!(row["state"], "suppressed");
        assert!(
            row["reason"].contains("\"sms opt in\"") && row["reason"].contains(cell),
            "{row:?}"
        );
    }
    let texted: Vec<String> = world.ledger().iter().map(|e| e.to.clone()).collect();
    assert_eq!(texted.len(), 2, "{texted:?}");

    // The same command resumes; another rule is refused.
    run(send(&["--require", "sms opt in=yes"]))
        .await
        .assert_code(0);
    let changed = run(send(&["--require", "SMS Opt In=no"])).await;
    changed.assert_code(2);
    assert!(
        changed.stderr.contains("--require sms opt in=yes"),
        "{}",
        changed.stderr
    );
    assert_eq!(world.ledger().len(), 2);
}
