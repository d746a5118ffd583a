//! Malformed and awkward recipient files: each file of `tests/data/` (its
//! README lists them with their decided outcomes) is imported with the real
//! binary, and the outcome is checked exactly. A file that cannot be imported
//! exits with 2, names the file and the problem on stderr and leaves no
//! campaign behind; otherwise every data record becomes a row whose state,
//! reason, number and text are checked.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bpsms::mock::Behaviour;

use crate::harness::{path_str, Run, World, FROM};

/// The campaign every case imports into.
const CAMPAIGN: &str = "c";
/// The `--body` of the cases whose file has no `body` column.
const BODY: &str = "Hi {{first_name}}";

/// One megabyte: the size of the field that must not trouble the reader.
const MEGABYTE: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Files that cannot be imported

#[tokio::test(flavor = "multi_thread")]
async fn empty_file() {
    check_refused("empty.csv", Some(BODY), &[], &["the file is empty"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn header_only() {
    check_refused("header_only.csv", Some(BODY), &[], &["no data rows"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_phone_column() {
    check_refused("no_phone_column.csv", Some(BODY), &[], &["no phone column"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unterminated_quote() {
    check_refused(
        "unterminated_quote.csv",
        Some(BODY),
        &[],
        &["line 3", "never closed"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn latin1_without_encoding() {
    check_refused(
        "latin1.csv",
        Some(BODY),
        &[],
        &["line 4", "not valid UTF-8", "--encoding windows-1252"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn windows1252_without_encoding() {
    check_refused("windows1252.csv", None, &[], &["not valid UTF-8"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn utf16() {
    check_refused("utf16.csv", Some(BODY), &[], &["UTF-16"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_column() {
    check_refused(
        "duplicate_column.csv",
        Some(BODY),
        &[],
        &["appears twice in the header"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn template_missing_column() {
    check_refused(
        "template_missing_column.csv",
        Some("Hi {{nickname}}"),
        &[],
        &["nickname"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_file() {
    let world = World::start(Behaviour::default()).await;
    let path = world.dir.path().join("no_such_file.csv");
    let run = import(&world, &path, Some(BODY), &[]).await;
    assert_refused(
        &world,
        &run,
        "missing file",
        &["cannot read", "no_such_file.csv"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_column_not_in_header() {
    check_refused(
        "plain.csv",
        Some(BODY),
        &["--phone-column", "cell"],
        &["is not in the header"],
    )
    .await;
}

/// A flag error is about the flag: the message need not name the file.
#[tokio::test(flavor = "multi_thread")]
async fn delimiter_of_two_characters() {
    let world = World::start(Behaviour::default()).await;
    let run = import(
        &world,
        &data("plain.csv"),
        Some(BODY),
        &["--delimiter", "ab"],
    )
    .await;
    assert_refused(&world, &run, "--delimiter ab", &["--delimiter"]).await;
    assert_flag_known(&run);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_encoding() {
    let world = World::start(Behaviour::default()).await;
    let run = import(
        &world,
        &data("plain.csv"),
        Some(BODY),
        &["--encoding", "klingon"],
    )
    .await;
    assert_refused(&world, &run, "--encoding klingon", &["--encoding"]).await;
    assert_flag_known(&run);
}

// ---------------------------------------------------------------------------
// Files that import, row by row

#[tokio::test(flavor = "multi_thread")]
async fn plain() {
    let world = check_imported(
        "plain.csv",
        Some(BODY),
        &[],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(bodies(&world).await, ["Hi Ann", "Hi Bob"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn latin1_with_windows_1252() {
    let world = check_imported(
        "latin1.csv",
        Some(BODY),
        &["--encoding", "windows-1252"],
        &[
            pending("+14155550101"),
            pending("+14155550102"),
            pending("+14155550103"),
            pending("+14155550104"),
        ],
    )
    .await;
    assert_eq!(bodies(&world).await[2], "Hi José");
}

#[tokio::test(flavor = "multi_thread")]
async fn windows1252_with_encoding() {
    let world = check_imported(
        "windows1252.csv",
        None,
        &["--encoding", "windows-1252"],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(
        bodies(&world).await,
        [
            "Hello \u{201c}friend\u{201d}: 5\u{20ac} off today",
            "Plain text"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bom() {
    let world = check_imported(
        "bom.csv",
        Some(BODY),
        &[],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(bodies(&world).await, ["Hi Ann", "Hi Bob"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn crlf() {
    let world = check_imported(
        "crlf.csv",
        Some(BODY),
        &[],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(bodies(&world).await, ["Hi Ann", "Hi Bob"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn semicolon_detected() {
    let world = check_imported(
        "semicolon.csv",
        Some("Hi {{first_name}} from {{city}}"),
        &[],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(
        bodies(&world).await,
        ["Hi Ann from Paris; FR", "Hi Bob from Lyon"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_detected() {
    let world = check_imported(
        "tab.tsv",
        Some("Hi {{first_name}} in {{city}}"),
        &[],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(
        bodies(&world).await,
        ["Hi Ann in San Francisco, CA", "Hi Bob in Reno, NV"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipe_with_delimiter_flag() {
    let world = check_imported(
        "pipe.csv",
        Some("Hi {{first_name}} in {{city}}"),
        &["--delimiter", "|"],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(
        bodies(&world).await,
        ["Hi Ann in Oakland, CA", "Hi Bob in Reno, NV"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pipe_detected() {
    let world = check_imported(
        "pipe.csv",
        Some("Hi {{first_name}} in {{city}}"),
        &[],
        &[pending("+14155550101"), pending("+14155550102")],
    )
    .await;
    assert_eq!(
        bodies(&world).await,
        ["Hi Ann in Oakland, CA", "Hi Bob in Reno, NV"]
    );
}

/// Rows are numbered by record: the quoted line breaks do not count.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_newlines() {
    let world = check_imported(
        "embedded_newlines.csv",
        None,
        &[],
        &[
            pending("+14155550101"),
            pending("+14155550102"),
            pending("+14155550103"),
            pending("+14155550104"),
        ],
    )
    .await;
    assert_eq!(
        bodies(&world).await,
        [
            "Line one\nLine two",
            "Second message",
            "Three\nshort\nlines",
            "Last message"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ragged() {
    check_imported(
        "ragged.csv",
        Some(BODY),
        &[],
        &[
            pending("+14155550101"),
            invalid("fields but the header has"),
            invalid("fields but the header has"),
            pending("+14155550104"),
        ],
    )
    .await;
}

/// A megabyte in a column the text does not use is only carried along; a
/// megabyte of text is over the length limit: a warning by default, a
/// refused row with `--over-length reject`.
#[tokio::test(flavor = "multi_thread")]
async fn big_fields_by_default() {
    let world = World::start(Behaviour::default()).await;
    let csv = write_big_fields(&world);
    let run = import(&world, &csv, None, &[]).await;
    run.assert_code(0);
    let output = format!("{}\n{}", run.stdout, run.stderr);
    assert!(
        output.to_lowercase().contains("over"),
        "big fields: no warning about the length:\n{output}"
    );
    let rows = world.export(CAMPAIGN).await;
    let over_length = Expected {
        // A pending row may carry a note about its length.
        reason: Reason::Any,
        ..pending("+14155550102")
    };
    assert_rows("big fields", &rows, &[pending("+14155550101"), over_length]);
    let bodies = bodies(&world).await;
    assert_eq!(bodies[0], "Hello Ann");
    assert_eq!(bodies[1].len(), MEGABYTE, "the long body is kept whole");
}

#[tokio::test(flavor = "multi_thread")]
async fn big_fields_with_over_length_reject() {
    let world = World::start(Behaviour::default()).await;
    let csv = write_big_fields(&world);
    let run = import(&world, &csv, None, &["--over-length", "reject"]).await;
    run.assert_code(0);
    let rows = world.export(CAMPAIGN).await;
    assert_rows(
        "big fields, --over-length reject",
        &rows,
        &[pending("+14155550101"), invalid("characters")],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nul_bytes() {
    check_imported(
        "nul_bytes.csv",
        Some(BODY),
        &[],
        &[
            pending("+14155550101"),
            invalid("NUL"),
            pending("+14155550103"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn letters() {
    check_imported(
        "letters.csv",
        Some(BODY),
        &[],
        &[
            invalid("letters"),
            invalid("letters"),
            invalid("letters"),
            pending("+14155550104"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn short_and_long() {
    check_imported(
        "short_long.csv",
        Some(BODY),
        &[],
        &[
            invalid("too short"),
            invalid("too long"),
            pending("+14155550103"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn extensions() {
    check_imported(
        "extensions.csv",
        Some(BODY),
        &[],
        &[
            invalid("extension"),
            invalid("extension"),
            pending("+14155550103"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn double_zero() {
    check_imported(
        "double_zero.csv",
        Some(BODY),
        &[],
        &[pending("+442079460958"), pending("+4915123456789")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn international() {
    let world = check_imported(
        "international.csv",
        Some(BODY),
        &[],
        &[
            pending("+447911123456"),
            pending("+4915123456789"),
            pending("+33612345678"),
            pending("+61412345678"),
            pending("+919876543210"),
            pending("+5511912345678"),
        ],
    )
    .await;
    assert_eq!(bodies(&world).await[2], "Hi Chloé");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates() {
    let first = "+14155550101";
    check_imported(
        "duplicates.csv",
        Some(BODY),
        &[],
        &[
            pending(first),
            duplicate_of_row_1(first),
            duplicate_of_row_1(first),
            duplicate_of_row_1(first),
            duplicate_of_row_1(first),
            pending("+14155550102"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn blank_lines() {
    check_imported(
        "blank_lines.csv",
        Some(BODY),
        &[],
        &[
            pending("+14155550101"),
            pending("+14155550102"),
            pending("+14155550103"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spreadsheet_float() {
    check_imported(
        "spreadsheet_float.csv",
        Some(BODY),
        &[],
        &[
            invalid("spreadsheet"),
            invalid("spreadsheet"),
            pending("+14155550103"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_body() {
    check_imported(
        "empty_body.csv",
        None,
        &[],
        &[
            pending("+14155550101"),
            invalid("empty"),
            invalid("empty"),
            pending("+14155550104"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_media() {
    let world = World::start(Behaviour::default()).await;
    let run = import(&world, &data("too_many_media.csv"), Some(BODY), &[]).await;
    run.assert_code(0);
    let rows = world.export(CAMPAIGN).await;
    assert_rows(
        "too_many_media.csv",
        &rows,
        &[invalid("at most 10"), pending("+14155550102")],
    );
    assert_eq!(rows[1]["kind"], "mms");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_media() {
    let world = World::start(Behaviour::default()).await;
    let run = import(&world, &data("bad_media.csv"), Some(BODY), &[]).await;
    run.assert_code(0);
    let rows = world.export(CAMPAIGN).await;
    let not_a_url = "not an absolute http(s) URL";
    assert_rows(
        "bad_media.csv",
        &rows,
        &[
            invalid(not_a_url),
            invalid(not_a_url),
            invalid(not_a_url),
            pending("+14155550104"),
        ],
    );
    assert_eq!(rows[3]["kind"], "mms");
}

/// The list is matched by number, whatever the spelling on either side.
#[tokio::test(flavor = "multi_thread")]
async fn suppression_list() {
    let stop = data("stop.txt");
    check_imported(
        "suppressed.csv",
        Some(BODY),
        &["--suppress", path_str(&stop)],
        &[
            suppressed("+14155550101"),
            pending("+14155550102"),
            suppressed("+14155550103"),
            pending("+14155550104"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_everything() {
    let world = check_imported(
        "mixed_everything.csv",
        Some("Hi {{First Name}} in {{City}}"),
        &[],
        &[
            pending("+14155550101"),
            pending("+14155550102"),
            invalid("letters"),
            duplicate_of_row_1("+14155550101"),
            pending("+447911123456"),
        ],
    )
    .await;
    let bodies = bodies(&world).await;
    assert_eq!(bodies[0], "Hi Ann in Paris; FR");
    assert_eq!(bodies[1], "Hi Bob in Oakland");
    assert_eq!(bodies[4], "Hi Dave in London");
    assert!(bodies.iter().all(|b| !b.contains('\r')), "{bodies:?}");
}

// ---------------------------------------------------------------------------
// Helpers

/// What one exported row must show; rows are numbered 1, 2, … in order.
struct Expected {
    state: &'static str,
    reason: Reason,
    /// The number in E.164 form; `None`: not checked (an invalid row).
    e164: Option<&'static str>,
}

enum Reason {
    /// The reason is empty.
    Empty,
    /// The reason contains this.
    Contains(&'static str),
    Any,
}

fn pending(e164: &'static str) -> Expected {
    Expected {
        state: "pending",
        reason: Reason::Empty,
        e164: Some(e164),
    }
}

fn invalid(reason: &'static str) -> Expected {
    Expected {
        state: "invalid",
        reason: Reason::Contains(reason),
        e164: None,
    }
}

fn duplicate_of_row_1(e164: &'static str) -> Expected {
    Expected {
        state: "duplicate",
        reason: Reason::Contains("duplicate of row 1"),
        e164: Some(e164),
    }
}

fn suppressed(e164: &'static str) -> Expected {
    Expected {
        state: "suppressed",
        reason: Reason::Contains("suppression list"),
        e164: Some(e164),
    }
}

/// A file of `tests/data/`.
fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// `bpsms import` of `csv` as the campaign `c`, with `--body` when given,
/// then `extra`.
async fn import(world: &World, csv: &Path, body: Option<&str>, extra: &[&str]) -> Run {
    let mut args = vec![
        "import",
        "--campaign",
        CAMPAIGN,
        "--csv",
        path_str(csv),
        "--from",
        FROM,
    ];
    if let Some(body) = body {
        args.extend(["--body", body]);
    }
    args.extend_from_slice(extra);
    world.run(&args).await
}

/// Imports the data file `file`, expecting it refused with all of `needles`
/// and the file's name on stderr.
async fn check_refused(file: &str, body: Option<&str>, extra: &[&str], needles: &[&str]) {
    let world = World::start(Behaviour::default()).await;
    let run = import(&world, &data(file), body, extra).await;
    let mut needles = needles.to_vec();
    needles.push(file);
    assert_refused(&world, &run, file, &needles).await;
}

/// Exit code 2, every needle on stderr, and no campaign in the database.
async fn assert_refused(world: &World, run: &Run, case: &str, needles: &[&str]) {
    run.assert_code(2);
    let missing: Vec<&&str> = needles
        .iter()
        .filter(|needle| !run.stderr.contains(**needle))
        .collect();
    assert!(
        missing.is_empty(),
        "{case}: stderr lacks {missing:?}:\n{}",
        run.stderr
    );
    assert_nothing_imported(world, case).await;
}

/// The value was refused, not the flag itself: clap's "unexpected argument"
/// also names the flag and exits with 2.
#[track_caller]
fn assert_flag_known(run: &Run) {
    assert!(
        !run.stderr.contains("unexpected argument"),
        "the flag is unknown:\n{}",
        run.stderr
    );
}

/// The database holds no campaign and no message, or does not exist at all.
async fn assert_nothing_imported(world: &World, case: &str) {
    if !world.db.exists() {
        return;
    }
    let pool = world.read_db().await;
    let n_tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('campaigns', 'messages')",
    )
    .fetch_one(&pool)
    .await
    .expect("list the tables");
    if n_tables == 2 {
        let counts: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM campaigns), (SELECT COUNT(*) FROM messages)",
        )
        .fetch_one(&pool)
        .await
        .expect("count campaigns and messages");
        assert_eq!(counts, (0, 0), "{case}: (campaigns, messages) left behind");
    }
    pool.close().await;
}

/// Imports the data file `file`, expecting success and `expected`, and
/// returns the world for further checks.
async fn check_imported(
    file: &str,
    body: Option<&str>,
    extra: &[&str],
    expected: &[Expected],
) -> World {
    let world = World::start(Behaviour::default()).await;
    let run = import(&world, &data(file), body, extra).await;
    run.assert_code(0);
    let rows = world.export(CAMPAIGN).await;
    assert_rows(file, &rows, expected);
    world
}

/// Checks every row and reports all the differences at once.
#[track_caller]
fn assert_rows(case: &str, rows: &[HashMap<String, String>], expected: &[Expected]) {
    let mut problems = Vec::new();
    if rows.len() != expected.len() {
        problems.push(format!(
            "{} rows exported, {} expected",
            rows.len(),
            expected.len()
        ));
    }
    for (i, (row, want)) in rows.iter().zip(expected).enumerate() {
        let n = i + 1;
        if row["row"] != n.to_string() {
            problems.push(format!("row {n}: numbered {}", row["row"]));
        }
        if row["state"] != want.state {
            problems.push(format!(
                "row {n}: state {} (reason {:?}), expected {}",
                row["state"], row["reason"], want.state
            ));
        }
        match want.reason {
            Reason::Empty if !row["reason"].is_empty() => {
                problems.push(format!("row {n}: unexpected reason {:?}", row["reason"]));
            }
            Reason::Contains(part) if !row["reason"].contains(part) => {
                problems.push(format!(
                    "row {n}: reason {:?} lacks {part:?}",
                    row["reason"]
                ));
            }
            _ => {}
        }
        if let Some(e164) = want.e164 {
            if row["phone_e164"] != e164 {
                problems.push(format!(
                    "row {n}: phone_e164 {:?}, expected {e164}",
                    row["phone_e164"]
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{case}:\n  {}\nexported: {rows:#?}",
        problems.join("\n  ")
    );
}

/// The stored text of each message of the campaign, in row order.
async fn bodies(world: &World) -> Vec<String> {
    let pool = world.read_db().await;
    let bodies = sqlx::query_scalar(
        "SELECT m.body FROM messages m JOIN campaigns c ON c.id = m.campaign_id \
         WHERE c.name = ? ORDER BY m.row_number",
    )
    .bind(CAMPAIGN)
    .fetch_all(&pool)
    .await
    .expect("read the bodies");
    pool.close().await;
    bodies
}

/// `big.csv` in the world's directory: row 1 carries a megabyte of notes
/// its text does not use, row 2 a megabyte of text.
fn write_big_fields(world: &World) -> PathBuf {
    let megabyte = "x".repeat(MEGABYTE);
    world.write(
        "big.csv",
        &format!(
            "phone,first_name,notes,body\n\
             +14155550101,Ann,{megabyte},Hello Ann\n\
             +14155550102,Bob,short note,{megabyte}\n"
        ),
    )
}
