//! Secrets and hostile input: the client secret and the access tokens never
//! reach the output, the database or an export, even at `RUST_LOG=trace`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bpsms::mock::Behaviour;
use bpsms::secret::SecretString;

use crate::harness::{parse_csv, path_str, recipients, send_args, Run, World, FROM};

/// A value no program output could contain by chance: `prefix` and 32
/// random hex digits.
fn distinctive(prefix: &str) -> String {
    // RandomState's keys come from the OS (once per thread, then varied per
    // instance): random enough for a marker, without a dependency.
    let half = || RandomState::new().build_hasher().finish();
    format!("{prefix}{:016x}{:016x}", half(), half())
}

/// Everything a run left behind that a person or another program may read,
/// as raw bytes, each with a label saying where it came from.
#[derive(Default)]
struct Evidence {
    places: Vec<(String, Vec<u8>)>,
}

impl Evidence {
    fn run(&mut self, label: &str, run: &Run) {
        self.places
            .push((format!("{label}: stdout"), run.stdout.clone().into_bytes()));
        self.places
            .push((format!("{label}: stderr"), run.stderr.clone().into_bytes()));
    }

    /// A file, if it exists (SQLite removes `-wal` and `-shm` when the last
    /// connection closes).
    fn file(&mut self, path: &Path) {
        if let Ok(bytes) = std::fs::read(path) {
            self.places.push((path.display().to_string(), bytes));
        }
    }

    /// The database file and its WAL and shared-memory files.
    fn database(&mut self, db: &Path) {
        self.file(db);
        for suffix in ["-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            self.file(Path::new(&name));
        }
    }

    #[track_caller]
    fn assert_absent(&self, needle: &str, what: &str) {
        assert!(!needle.is_empty(), "an empty {what} proves nothing");
        for (place, bytes) in &self.places {
            assert!(
                !contains(bytes, needle.as_bytes()),
                "the {what} leaked into {place}"
            );
        }
    }

    fn has(&self, label: &str) -> bool {
        self.places.iter().any(|(place, _)| place == label)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The binary with `secret` as client secret and every trace line on.
fn traced(world: &World, args: &[&str], secret: &str) -> Command {
    let mut command = world.command(args);
    command
        .env("BPSMS_CLIENT_SECRET", secret)
        .env("RUST_LOG", "trace");
    command
}

/// Imports `n` recipients as campaign `name`, then opens a connection of our
/// own that stays open: SQLite then keeps the `-wal` and `-shm` files after
/// each run instead of checkpointing and deleting them, so they can be read.
async fn import_and_hold_wal(
    world: &World,
    name: &str,
    n: usize,
    secret: &str,
    evidence: &mut Evidence,
) -> sqlx::SqlitePool {
    let csv = world.write(&format!("{name}.csv"), &recipients(n));
    let import = world
        .run_command(traced(
            world,
            &[
                "import",
                "--campaign",
                name,
                "--csv",
                path_str(&csv),
                "--from",
                FROM,
                "--body",
                "Hello {{first_name}}",
            ],
            secret,
        ))
        .await;
    import.assert_code(0);
    evidence.run("import", &import);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", world.db.display()))
        .await
        .expect("open the database");
    sqlx::query("SELECT COUNT(*) FROM messages")
        .fetch_one(&pool)
        .await
        .expect("read the database");
    pool
}

#[tokio::test(flavor = "multi_thread")]
async fn neither_the_secret_nor_any_token_leaks_even_at_trace_level() {
    let secret = distinctive("s3cr3t-");
    let world = World::start(Behaviour {
        client_secret: SecretString::new(secret.clone()),
        // Refreshed at half-life: several tokens in a two-second campaign.
        token_lifetime: Duration::from_secs(1),
        ..Behaviour::fast()
    })
    .await;
    let mut evidence = Evidence::default();
    let reader = import_and_hold_wal(&world, "leak", 40, &secret, &mut evidence).await;

    let send = world
        .run_command(traced(
            &world,
            &[
                "send",
                "--campaign",
                "leak",
                "--rate",
                "20",
                "--poll-delay",
                "300ms",
            ],
            &secret,
        ))
        .await;
    send.assert_code(0);
    evidence.run("send", &send);

    let csv_out = world.dir.path().join("leak.csv");
    let json_out = world.dir.path().join("leak.json");
    let reports: [(&str, Vec<&str>); 6] = [
        ("status", vec!["status"]),
        ("status --campaign", vec!["status", "--campaign", "leak"]),
        (
            "export csv",
            vec!["export", "--campaign", "leak", "--format", "csv"],
        ),
        (
            "export json",
            vec!["export", "--campaign", "leak", "--format", "json"],
        ),
        (
            "export csv --out",
            vec![
                "export",
                "--campaign",
                "leak",
                "--format",
                "csv",
                "--out",
                path_str(&csv_out),
            ],
        ),
        (
            "export json --out",
            vec![
                "export",
                "--campaign",
                "leak",
                "--format",
                "json",
                "--out",
                path_str(&json_out),
            ],
        ),
    ];
    for (label, args) in &reports {
        let run = world.run_command(traced(&world, args, &secret)).await;
        run.assert_code(0);
        evidence.run(label, &run);
    }
    evidence.file(&csv_out);
    evidence.file(&json_out);
    assert!(evidence.has(path_str(&csv_out)) && evidence.has(path_str(&json_out)));

    // A refused secret is a secret too.
    let wrong = distinctive("wr0ng-");
    let refused_csv = world.write("refused.csv", &recipients(3));
    let refused = world
        .run_command(traced(
            &world,
            &[
                "send",
                "--campaign",
                "refused",
                "--csv",
                path_str(&refused_csv),
                "--from",
                FROM,
                "--body",
                "Hi",
            ],
            &wrong,
        ))
        .await;
    refused.assert_code(2);
    evidence.run("send with a wrong secret", &refused);

    evidence.database(&world.db);
    let wal = format!("{}-wal", world.db.display());
    assert!(evidence.has(&wal), "the WAL was kept for inspection");

    // The test proves something only if tracing really was at trace level
    // and tokens really changed hands.
    assert!(send.stderr.contains("TRACE"), "{}", send.stderr);
    assert!(
        send.stderr.matches("access token obtained").count() >= 2,
        "{}",
        send.stderr
    );
    let stats = world.stats();
    let tokens = world.sim.state.issued_tokens();
    assert!(stats.token_requests >= 2, "{stats:?}");
    assert!(tokens.len() >= 2, "{} tokens issued", tokens.len());

    evidence.assert_absent(&secret, "client secret");
    evidence.assert_absent(&wrong, "refused client secret");
    for token in &tokens {
        evidence.assert_absent(token, "access token");
    }
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_refused_with_401_do_not_leak_either() {
    let secret = distinctive("s3cr3t-");
    // Every token is dead before it is used: the latency, added before any
    // handler runs, outlasts its lifetime, so every Send is answered 401.
    let world = World::start(Behaviour {
        client_secret: SecretString::new(secret.clone()),
        token_lifetime: Duration::from_millis(1),
        latency: Duration::from_millis(50),
        ..Behaviour::fast()
    })
    .await;
    let mut evidence = Evidence::default();
    let reader = import_and_hold_wal(&world, "expired", 5, &secret, &mut evidence).await;
    let send = world
        .run_command(traced(&world, &["send", "--campaign", "expired"], &secret))
        .await;
    send.assert_code(2);
    evidence.run("send with tokens refused", &send);
    evidence.database(&world.db);

    assert!(send.stderr.contains("TRACE"), "{}", send.stderr);
    let stats = world.stats();
    assert!(stats.unauthorized >= 2, "{stats:?}");
    let tokens = world.sim.state.issued_tokens();
    assert!(tokens.len() >= 2, "{} tokens issued", tokens.len());
    evidence.assert_absent(&secret, "client secret");
    for token in &tokens {
        evidence.assert_absent(token, "access token");
    }
    reader.close().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_holding_the_secret_must_be_private() {
    use std::os::unix::fs::PermissionsExt;

    let secret = distinctive("s3cr3t-");
    let world = World::start(Behaviour {
        client_secret: SecretString::new(secret.clone()),
        ..Behaviour::fast()
    })
    .await;
    let config = world.write("bpsms.toml", &format!("client_secret = \"{secret}\"\n"));
    let set_mode = |mode: u32| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode))
            .expect("chmod the config file");
    };
    // The secret comes from the file only.
    let with_file = |args: &[&str]| {
        let mut command = world.command(args);
        command
            .env_remove("BPSMS_CLIENT_SECRET")
            .env("BPSMS_CONFIG", &config);
        command
    };

    set_mode(0o644);
    let csv = world.write("r.csv", &recipients(3));
    let open = world
        .run_command(with_file(&send_args(
            "private",
            path_str(&csv),
            &["--rate", "1000"],
        )))
        .await;
    open.assert_code(0);
    assert_eq!(world.ledger().len(), 3, "the file's secret was used");
    let warning = open
        .stderr
        .lines()
        .find(|line| line.contains("chmod 600"))
        .unwrap_or_else(|| panic!("no permission warning:\n{}", open.stderr));
    assert!(warning.starts_with("Warning: "), "{warning}");
    assert!(warning.contains(path_str(&config)), "{warning}");
    assert!(warning.contains("mode 644"), "{warning}");
    for output in [&open.stdout, &open.stderr] {
        assert!(!output.contains(&secret), "the secret was printed");
    }

    set_mode(0o600);
    let private = world.run_command(with_file(&["status"])).await;
    private.assert_code(0);
    assert!(
        !private.stderr.contains("chmod") && !private.stderr.contains(path_str(&config)),
        "no warning for a private file:\n{}",
        private.stderr
    );
}

/// The first characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

#[tokio::test(flavor = "multi_thread")]
async fn formula_cells_are_neutralised_in_the_csv_export_after_a_real_run() {
    let hostile_error = "=HYPERLINK(\"http://x.example/\",\"details\")";
    let world = World::start(Behaviour {
        // Every SMS fails, and the API's error text is a formula.
        failure_ratio: 1.0,
        failure_message: hostile_error.to_owned(),
        ..Behaviour::fast()
    })
    .await;
    // The raw phone cells, in row order; the tab- and CR-led ones are valid
    // numbers once the whitespace is gone, so they are sent too.
    let phones = [
        "=HYPERLINK(\"http://x\")",
        "+1 415 555 0101",
        "-2+3",
        "@SUM(A1)",
        "\t4152000002",
        "\r4152000003",
        "=1+2",
    ];
    let mut csv = String::from("phone,first_name\n");
    for (i, phone) in phones.iter().enumerate() {
        csv.push_str(&format!("\"{}\",Name {i}\n", phone.replace('"', "\"\"")));
    }
    let csv = world.write("hostile.csv", &csv);
    world
        .run(&send_args("hostile", path_str(&csv), &["--rate", "1000"]))
        .await
        .assert_code(0);

    let out = world.dir.path().join("hostile-export.csv");
    world
        .run(&["export", "--campaign", "hostile", "--out", path_str(&out)])
        .await
        .assert_code(0);
    let text = std::fs::read_to_string(&out).expect("read the export");
    let rows = parse_csv(&text);
    assert_eq!(rows.len(), phones.len());

    for row in &rows {
        for column in ["phone", "reason", "error_code", "error_message"] {
            let cell = &row[column];
            assert!(
                !cell.starts_with(FORMULA_STARTS),
                "row {} {column} {cell:?} would run as a formula",
                row["row"]
            );
        }
    }
    // Each hostile value did reach the export, behind a quote.
    for (row, phone) in rows.iter().zip(phones) {
        assert_eq!(row["phone"], format!("'{phone}"), "row {}", row["row"]);
    }
    let by_phone = |raw: &str| {
        rows.iter()
            .find(|row| row["phone"] == format!("'{raw}"))
            .unwrap_or_else(|| panic!("no row for {raw:?}"))
    };
    // A valid number that starts with + is sent; its E.164 form is data for
    // other programs and stays as it is.
    let plus = by_phone("+1 415 555 0101");
    assert_eq!(plus["phone_e164"], "+14155550101");
    assert_eq!(plus["state"], "failed");
    assert_eq!(plus["error_message"], format!("'{hostile_error}"));
    assert_eq!(by_phone("\t4152000002")["phone_e164"], "+14152000002");
    assert_eq!(by_phone("\r4152000003")["phone_e164"], "+14152000003");
    for raw in ["=HYPERLINK(\"http://x\")", "-2+3", "@SUM(A1)", "=1+2"] {
        let row = by_phone(raw);
        assert_eq!(row["state"], "invalid", "{raw}");
        assert!(!row["reason"].is_empty(), "{raw}");
        assert_eq!(row["phone_e164"], "", "{raw}");
    }
    let failed = rows.iter().filter(|row| row["state"] == "failed").count();
    assert_eq!(failed, 3, "the three valid numbers were sent and failed");
}
