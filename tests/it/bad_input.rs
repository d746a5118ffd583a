//! Malformed and awkward recipient files: each file of `tests/data/` (its
//! README lists them with their decided outcomes) is imported with the real
//! binary, and the outcome is checked exactly. A file that cannot be imported
//! exits with 2, names the file and the problem on stderr and leaves no
//! campaign behind; otherwise every data record becomes a row whose state,
//! reason, number and text are checked.
//!
//! The cases are data: one table per group, each case with its input, its
//! flags and what must come out, all checked by [`check_cases`], which runs
//! every case of its group and reports every difference at once.

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

#[tokio::test(flavor = "multi_thread")]
async fn files_that_cannot_be_imported() {
    check_cases(&[
        refused("empty.csv", &["the file is empty"]),
        refused("header_only.csv", &["no data rows"]),
        refused("no_phone_column.csv", &["no phone column"]),
        refused("unterminated_quote.csv", &["line 3", "never closed"]),
        refused(
            "latin1.csv",
            &["line 4", "not valid UTF-8", "--encoding windows-1252"],
        ),
        Case {
            body: None,
            ..refused("windows1252.csv", &["not valid UTF-8"])
        },
        refused("utf16.csv", &["UTF-16"]),
        refused(
            "xlsx_saved_as.csv",
            &["Excel workbook", "not a CSV", "CSV UTF-8"],
        ),
        refused("xls_saved_as.csv", &["Excel 97-2003 workbook", "CSV UTF-8"]),
        refused("duplicate_column.csv", &["appears twice in the header"]),
        Case {
            body: Some("Hi {{nickname}}"),
            ..refused("template_missing_column.csv", &["nickname"])
        },
        Case {
            input: Input::Missing,
            ..refused("no_such_file.csv", &["cannot read"])
        },
        Case {
            flags: &["--phone-column", "cell"],
            ..refused("plain.csv", &["is not in the header"])
        },
        // A flag error is about the flag: the message need not name the file.
        refused_flag(&["--delimiter", "ab"]),
        refused_flag(&["--encoding", "klingon"]),
    ])
    .await;
}

/// Encodings, byte order marks, line ends and delimiters, detected or named.
#[tokio::test(flavor = "multi_thread")]
async fn files_that_import_whatever_their_format() {
    let ann_and_bob = || {
        vec![
            pending("+14155550101").body("Hi Ann"),
            pending("+14155550102").body("Hi Bob"),
        ]
    };
    let pipe = || {
        vec![
            pending("+14155550101").body("Hi Ann in Oakland, CA"),
            pending("+14155550102").body("Hi Bob in Reno, NV"),
        ]
    };
    check_cases(&[
        imported("plain.csv", ann_and_bob()),
        Case {
            flags: &["--encoding", "windows-1252"],
            ..imported(
                "latin1.csv",
                vec![
                    pending("+14155550101"),
                    pending("+14155550102"),
                    pending("+14155550103").body("Hi José"),
                    pending("+14155550104"),
                ],
            )
        },
        Case {
            body: None,
            flags: &["--encoding", "windows-1252"],
            ..imported(
                "windows1252.csv",
                vec![
                    pending("+14155550101")
                        .body("Hello \u{201c}friend\u{201d}: 5\u{20ac} off today"),
                    pending("+14155550102").body("Plain text"),
                ],
            )
        },
        imported("bom.csv", ann_and_bob()),
        imported("crlf.csv", ann_and_bob()),
        Case {
            body: Some("Hi {{first_name}} from {{city}}"),
            ..imported(
                "semicolon.csv",
                vec![
                    pending("+14155550101").body("Hi Ann from Paris; FR"),
                    pending("+14155550102").body("Hi Bob from Lyon"),
                ],
            )
        },
        Case {
            body: Some("Hi {{first_name}} in {{city}}"),
            ..imported(
                "tab.tsv",
                vec![
                    pending("+14155550101").body("Hi Ann in San Francisco, CA"),
                    pending("+14155550102").body("Hi Bob in Reno, NV"),
                ],
            )
        },
        Case {
            body: Some("Hi {{first_name}} in {{city}}"),
            flags: &["--delimiter", "|"],
            ..imported("pipe.csv", pipe())
        },
        Case {
            body: Some("Hi {{first_name}} in {{city}}"),
            ..imported("pipe.csv", pipe())
        },
        // Rows are numbered by record: the quoted line breaks do not count.
        Case {
            body: None,
            ..imported(
                "embedded_newlines.csv",
                vec![
                    pending("+14155550101").body("Line one\nLine two"),
                    pending("+14155550102").body("Second message"),
                    pending("+14155550103").body("Three\nshort\nlines"),
                    pending("+14155550104").body("Last message"),
                ],
            )
        },
        // A megabyte in a column the text does not use is only carried
        // along; a megabyte of text is over the length limit: a warning by
        // default, a refused row with `--over-length reject`.
        Case {
            input: Input::Written(big_fields),
            body: None,
            warns: Some("over"),
            ..imported(
                "big.csv",
                vec![
                    pending("+14155550101").body("Hello Ann"),
                    Expected {
                        // A pending row may carry a note about its length.
                        reason: Reason::Any,
                        // The long body is kept whole.
                        body: Body::Length(MEGABYTE),
                        ..pending("+14155550102")
                    },
                ],
            )
        },
        Case {
            input: Input::Written(big_fields),
            body: None,
            flags: &["--over-length", "reject"],
            ..imported(
                "big.csv",
                vec![pending("+14155550101"), invalid("characters")],
            )
        },
    ])
    .await;
}

/// Numbers, texts and media, row by row.
#[tokio::test(flavor = "multi_thread")]
async fn rows_that_import_each_with_its_own_outcome() {
    let first = "+14155550101";
    let not_a_url = "not an absolute http(s) URL";
    check_cases(&[
        imported(
            "ragged.csv",
            vec![
                pending("+14155550101"),
                invalid("fields but the header has"),
                invalid("fields but the header has"),
                pending("+14155550104"),
            ],
        ),
        imported(
            "nul_bytes.csv",
            vec![
                pending("+14155550101"),
                invalid("NUL"),
                pending("+14155550103"),
            ],
        ),
        imported(
            "letters.csv",
            vec![
                invalid("letters"),
                invalid("letters"),
                invalid("letters"),
                pending("+14155550104"),
            ],
        ),
        imported(
            "short_long.csv",
            vec![
                invalid("too short"),
                invalid("too long"),
                pending("+14155550103"),
            ],
        ),
        imported(
            "extensions.csv",
            vec![
                invalid("extension"),
                invalid("extension"),
                pending("+14155550103"),
            ],
        ),
        imported(
            "double_zero.csv",
            vec![pending("+442079460958"), pending("+4915123456789")],
        ),
        imported(
            "international.csv",
            vec![
                pending("+447911123456"),
                pending("+4915123456789"),
                pending("+33612345678").body("Hi Chloé"),
                pending("+61412345678"),
                pending("+919876543210"),
                pending("+5511912345678"),
            ],
        ),
        // Every script's decimal digits are digits: row 5 is row 1 again.
        imported(
            "other_scripts.csv",
            vec![
                pending("+14155550101"),
                pending("+442079460958"),
                pending("+919876543210"),
                pending("+14155550102"),
                duplicate_of_row_1("+14155550101"),
            ],
        ),
        imported(
            "duplicates.csv",
            vec![
                pending(first),
                duplicate_of_row_1(first),
                duplicate_of_row_1(first),
                duplicate_of_row_1(first),
                duplicate_of_row_1(first),
                pending("+14155550102"),
            ],
        ),
        imported(
            "blank_lines.csv",
            vec![
                pending("+14155550101"),
                pending("+14155550102"),
                pending("+14155550103"),
            ],
        ),
        imported(
            "spreadsheet_float.csv",
            vec![
                invalid("spreadsheet"),
                invalid("spreadsheet"),
                pending("+14155550103"),
            ],
        ),
        Case {
            body: None,
            ..imported(
                "empty_body.csv",
                vec![
                    pending("+14155550101"),
                    invalid("empty"),
                    invalid("empty"),
                    pending("+14155550104"),
                ],
            )
        },
        imported(
            "too_many_media.csv",
            vec![invalid("at most 10"), pending("+14155550102").kind("mms")],
        ),
        imported(
            "bad_media.csv",
            vec![
                invalid(not_a_url),
                invalid(not_a_url),
                invalid(not_a_url),
                pending("+14155550104").kind("mms"),
            ],
        ),
        // The list is matched by number, whatever the spelling on either side.
        Case {
            flags: &["--suppress", "{data}/stop.txt"],
            ..imported(
                "suppressed.csv",
                vec![
                    suppressed("+14155550101"),
                    pending("+14155550102"),
                    suppressed("+14155550103"),
                    pending("+14155550104"),
                ],
            )
        },
        Case {
            body: Some("Hi {{First Name}} in {{City}}"),
            ..imported(
                "mixed_everything.csv",
                vec![
                    pending("+14155550101").body("Hi Ann in Paris; FR"),
                    pending("+14155550102").body("Hi Bob in Oakland"),
                    Expected {
                        body: Body::Lacks("\r"),
                        ..invalid("letters")
                    },
                    Expected {
                        body: Body::Lacks("\r"),
                        ..duplicate_of_row_1("+14155550101")
                    },
                    pending("+447911123456").body("Hi Dave in London"),
                ],
            )
        },
    ])
    .await;
}

// ---------------------------------------------------------------------------
// The table's vocabulary

/// One import and what must come of it.
struct Case {
    /// Names the case in a failure; the file's name, which a refusal must
    /// mention unless a flag is to blame.
    file: &'static str,
    input: Input,
    /// The `--body`; `None` for a file with a `body` column.
    body: Option<&'static str>,
    /// Further flags; `{data}` stands for the directory `tests/data`.
    flags: &'static [&'static str],
    /// A word the output (stdout and stderr, in lower case) must contain.
    warns: Option<&'static str>,
    expect: Outcome,
}

/// Where the file named by the case comes from.
enum Input {
    /// `tests/data/`.
    Data,
    /// Nowhere: the file does not exist.
    Missing,
    /// The world's directory, written with this content: too big to keep in
    /// the repository.
    Written(fn() -> String),
}

enum Outcome {
    /// Exit code 2, every needle on stderr, and no campaign in the database.
    Refused {
        stderr: &'static [&'static str],
        blames: Blame,
    },
    /// Exit code 0 and exactly these rows in the export, in order.
    Imported(Vec<Expected>),
}

/// What a refusal is about, and so what its message must name.
enum Blame {
    /// The file's name is on stderr.
    File,
    /// The value was refused, not the flag itself: clap's "unexpected
    /// argument" also names the flag and exits with 2.
    Flag,
}

/// What one exported row must show; rows are numbered 1, 2, … in order.
struct Expected {
    state: &'static str,
    reason: Reason,
    /// The number in E.164 form; `None`: not checked (an invalid row).
    e164: Option<&'static str>,
    body: Body,
    /// The `kind` column; `None`: not checked.
    kind: Option<&'static str>,
}

enum Reason {
    /// The reason is empty.
    Empty,
    /// The reason contains this.
    Contains(&'static str),
    Any,
}

/// The stored text of the row's message.
#[derive(Debug)]
enum Body {
    Any,
    Is(&'static str),
    Length(usize),
    Lacks(&'static str),
}

/// A data file imported with [`BODY`] and no flags, refused with `needles`
/// on stderr along with the file's name.
fn refused(file: &'static str, needles: &'static [&'static str]) -> Case {
    Case {
        expect: Outcome::Refused {
            stderr: needles,
            blames: Blame::File,
        },
        ..imported(file, vec![])
    }
}

/// `plain.csv` imported with `flags`, whose value is refused with a message
/// that names the flag.
fn refused_flag(flags: &'static [&'static str]) -> Case {
    Case {
        flags,
        expect: Outcome::Refused {
            stderr: &flags[..1],
            blames: Blame::Flag,
        },
        ..imported("plain.csv", vec![])
    }
}

/// A data file imported with [`BODY`] and no flags into `rows`.
fn imported(file: &'static str, rows: Vec<Expected>) -> Case {
    Case {
        file,
        input: Input::Data,
        body: Some(BODY),
        flags: &[],
        warns: None,
        expect: Outcome::Imported(rows),
    }
}

fn pending(e164: &'static str) -> Expected {
    Expected {
        state: "pending",
        reason: Reason::Empty,
        e164: Some(e164),
        body: Body::Any,
        kind: None,
    }
}

fn invalid(reason: &'static str) -> Expected {
    Expected {
        state: "invalid",
        reason: Reason::Contains(reason),
        e164: None,
        body: Body::Any,
        kind: None,
    }
}

fn duplicate_of_row_1(e164: &'static str) -> Expected {
    Expected {
        state: "duplicate",
        reason: Reason::Contains("duplicate of row 1"),
        ..pending(e164)
    }
}

fn suppressed(e164: &'static str) -> Expected {
    Expected {
        state: "suppressed",
        reason: Reason::Contains("suppression list"),
        ..pending(e164)
    }
}

impl Expected {
    fn body(self, body: &'static str) -> Expected {
        Expected {
            body: Body::Is(body),
            ..self
        }
    }

    fn kind(self, kind: &'static str) -> Expected {
        Expected {
            kind: Some(kind),
            ..self
        }
    }
}

// ---------------------------------------------------------------------------
// The driver

/// Runs every case, each in a world of its own, and fails with every
/// difference found.
async fn check_cases(cases: &[Case]) {
    let mut problems = Vec::new();
    for case in cases {
        let world = World::start(Behaviour::default()).await;
        for problem in check(&world, case).await {
            problems.push(format!("{} {:?}: {problem}", case.file, case.flags));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The differences between what `case` must give and what it gave.
async fn check(world: &World, case: &Case) -> Vec<String> {
    let run = import(world, case).await;
    let mut problems = Vec::new();
    if let Some(warning) = case.warns {
        let output = format!("{}\n{}", run.stdout, run.stderr).to_lowercase();
        if !output.contains(warning) {
            problems.push(format!("no warning with {warning:?}:\n{output}"));
        }
    }
    match &case.expect {
        Outcome::Refused { stderr, blames } => {
            if run.code != 2 {
                problems.push(unexpected_exit(&run, 2));
                return problems;
            }
            let mut needles = stderr.to_vec();
            match blames {
                Blame::File => needles.push(case.file),
                Blame::Flag if run.stderr.contains("unexpected argument") => {
                    problems.push(format!("the flag is unknown:\n{}", run.stderr));
                }
                Blame::Flag => {}
            }
            let missing: Vec<&str> = needles
                .into_iter()
                .filter(|needle| !run.stderr.contains(needle))
                .collect();
            if !missing.is_empty() {
                problems.push(format!("stderr lacks {missing:?}:\n{}", run.stderr));
            }
            problems.extend(left_behind(world).await);
        }
        Outcome::Imported(expected) => {
            if run.code != 0 {
                problems.push(unexpected_exit(&run, 0));
                return problems;
            }
            let rows = world.export(CAMPAIGN).await;
            problems.extend(row_differences(&rows, expected, &bodies(world).await));
        }
    }
    problems
}

/// `bpsms import` of the case's file as the campaign `c`, with `--body` when
/// given, then the case's flags.
async fn import(world: &World, case: &Case) -> Run {
    let csv = match case.input {
        Input::Data => data().join(case.file),
        Input::Missing => world.dir.path().join(case.file),
        Input::Written(content) => world.write(case.file, &content()),
    };
    let data = data();
    let flags: Vec<String> = case
        .flags
        .iter()
        .map(|flag| flag.replace("{data}", path_str(&data)))
        .collect();
    let mut args = vec![
        "import",
        "--campaign",
        CAMPAIGN,
        "--csv",
        path_str(&csv),
        "--from",
        FROM,
    ];
    if let Some(body) = case.body {
        args.extend(["--body", body]);
    }
    args.extend(flags.iter().map(String::as_str));
    world.run(&args).await
}

fn unexpected_exit(run: &Run, expected: i32) -> String {
    format!(
        "exit code {}, expected {expected}\n--- stdout\n{}\n--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

/// A campaign or a message in the database, which a refused import must
/// not leave; none when the database does not exist at all.
async fn left_behind(world: &World) -> Option<String> {
    if !world.db.exists() {
        return None;
    }
    let pool = world.read_db().await;
    let n_tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('campaigns', 'messages')",
    )
    .fetch_one(&pool)
    .await
    .expect("list the tables");
    let mut counts = (0, 0);
    if n_tables == 2 {
        counts = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM campaigns), (SELECT COUNT(*) FROM messages)",
        )
        .fetch_one(&pool)
        .await
        .expect("count campaigns and messages");
    }
    pool.close().await;
    let (n_campaigns, n_messages): (i64, i64) = counts;
    (counts != (0, 0))
        .then(|| format!("{n_campaigns} campaigns and {n_messages} messages left behind"))
}

/// Every difference between the exported rows (and their stored texts) and
/// `expected`.
fn row_differences(
    rows: &[HashMap<String, String>],
    expected: &[Expected],
    bodies: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    if rows.len() != expected.len() {
        problems.push(format!(
            "{} rows exported, {} expected: {rows:#?}",
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
        if let Some(kind) = want.kind {
            if row["kind"] != kind {
                problems.push(format!("row {n}: kind {:?}, expected {kind}", row["kind"]));
            }
        }
        let body = bodies.get(i).map_or("(no message)", String::as_str);
        let body_fits = match want.body {
            Body::Any => true,
            Body::Is(text) => body == text,
            Body::Length(length) => body.len() == length,
            Body::Lacks(part) => !body.contains(part),
        };
        if !body_fits {
            let shown: String = body.chars().take(200).collect();
            problems.push(format!("row {n}: body {shown:?} is not {:?}", want.body));
        }
    }
    problems
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

/// The directory of the data files.
fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// `big.csv`: row 1 carries a megabyte of notes its text does not use, row
/// 2 a megabyte of text.
fn big_fields() -> String {
    let megabyte = "x".repeat(MEGABYTE);
    format!(
        "phone,first_name,notes,body\n\
         +14155550101,Ann,{megabyte},Hello Ann\n\
         +14155550102,Bob,short note,{megabyte}\n"
    )
}
