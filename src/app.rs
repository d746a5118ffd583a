//! The subcommands: each validates its input into typed settings, calls the
//! modules that do the work, and says how the process should exit.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::campaign::{self, RunEnd, RunError};
use crate::cli::{
    CampaignArgs, Cli, Command, ContentArgs, ExportArgs, ExportFormat, ImportArgs, OverLength,
    RetryArgs, RetryState, SendArgs, StatusArgs, SuppressArgs,
};
use crate::clock::now_ms;
use crate::config::{Config, RunSettings, DEFAULT_SHUTDOWN_GRACE};
use crate::domain::ids::CampaignName;
use crate::domain::phone::{Region, E164};
use crate::domain::state::MessageState;
use crate::import::{self, ImportError, ImportReport, ImportSpec, SourceOptions};
use crate::lease::Lease;
use crate::report::{self, Summary};
use crate::store::{Campaign, Store, StoreError};
use crate::suppress::SuppressionList;

/// Exit codes, as documented in README.md.
pub mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 130;
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub(crate) fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: exit::USAGE,
            error: error.into(),
        }
    }

    pub(crate) fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: exit::RUNTIME,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::runtime(error)
    }
}

/// Runs one command; returns the exit code or a failure to print.
pub async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::MockServer(args) => mock_server(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
        command => {
            let config = Config::load(&cli.global).map_err(Failure::usage)?;
            match command {
                Command::Send(args) => send(&config, args).await,
                Command::Resume(args) => {
                    let args = SendArgs {
                        campaign: CampaignArgs {
                            campaign: args.campaign,
                            content: ContentArgs::default(),
                        },
                        run: args.run,
                        dry_run: false,
                    };
                    send(&config, args).await
                }
                Command::Retry(args) => retry(&config, args).await,
                Command::Import(args) => import_only(&config, args).await,
                Command::Check(args) => {
                    check(&config, &args.content, &args.suppress, args.preview).await
                }
                Command::Status(args) => status(&config, args).await,
                Command::Export(args) => export(&config, args).await,
                Command::MockServer(_) | Command::Demo(_) => Ok(exit::OK),
            }
        }
    }
}

/// Opens the database a previous command created; never creates one.
async fn open_existing_store(config: &Config) -> Result<Store, Failure> {
    if !config.db.exists() {
        return Err(Failure::usage(anyhow!(
            "no database at {}; pass --db PATH (or set BPSMS_DB) to the file a send created",
            config.db.display()
        )));
    }
    open_store(config).await
}

async fn open_store(config: &Config) -> Result<Store, Failure> {
    Store::open(&config.db).await.map_err(Failure::runtime)
}

async fn send(config: &Config, args: SendArgs) -> Result<u8, Failure> {
    if args.dry_run {
        return check(config, &args.campaign.content, &args.run.suppress, 5).await;
    }
    let store = open_store(config).await?;
    let existing = store
        .find_campaign(&campaign_name(&args.campaign.campaign)?)
        .await?;
    let run_settings = config
        .run_settings(&args.run, existing.as_ref().map(|c| &c.settings))
        .map_err(Failure::usage)?;
    // Check the API settings before importing: a typo in the environment
    // should not leave a half-configured campaign behind.
    let api_config = config.api(&args.run).map_err(Failure::usage)?;
    let campaign = match existing {
        Some(campaign) => {
            check_same_campaign(&campaign, &args.campaign.content)?;
            suppress_unsent(&store, &campaign, &args.run.suppress).await?;
            campaign
        }
        None => {
            let report = create_campaign(
                config,
                &store,
                &args.campaign,
                &args.run.suppress,
                &run_settings,
            )
            .await?;
            print_import(&args.campaign.campaign, &report);
            store
                .find_campaign(&campaign_name(&args.campaign.campaign)?)
                .await?
                .ok_or_else(|| Failure::runtime(anyhow!("the imported campaign vanished")))?
        }
    };
    let api = Arc::new(ApiClient::new(api_config).context("failed to set up the HTTP client")?);
    let lease = Lease::acquire(&store, campaign.id, campaign.name.as_str()).await?;
    let cancel = CancellationToken::new();
    let grace = args.run.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE);
    let signals = tokio::spawn(watch_signals(cancel.clone(), grace));
    let result = campaign::run(&store, api, &campaign, &run_settings, cancel, lease.lost()).await;
    signals.abort();
    lease.release().await;
    // A run stopped by a database error may leave the database unreadable
    // for now: its error is the one to report.
    let summary = match Summary::load(&store, &campaign).await {
        Ok(summary) => summary,
        Err(error) => {
            return Err(Failure::runtime(match result {
                Err(run_error) => anyhow::Error::from(run_error),
                Ok(_) => error.into(),
            }))
        }
    };
    print!("{}", summary.render());
    store.close().await;
    match result {
        Ok(RunEnd::Finished) if summary.all_final() => Ok(exit::OK),
        Ok(RunEnd::Finished) => Err(Failure::runtime(anyhow!(
            "the run ended with messages not yet final; run the same command again to continue"
        ))),
        Ok(RunEnd::Interrupted) => {
            eprintln!(
                "Interrupted. {} message(s) wait to be sent and {} to be tracked. Resume with:\n  bpsms send --campaign {}",
                summary.count(crate::domain::state::MessageState::Pending),
                summary.n_tracked,
                shell_word(campaign.name.as_str())
            );
            Ok(exit::INTERRUPTED)
        }
        Err(RunError::Config(fatal)) => Err(Failure::usage(anyhow!(
            "{fatal}\nThe campaign is saved; after fixing this, run the same command again to resume."
        ))),
        Err(error) => Err(Failure::runtime(error)),
    }
}

async fn import_only(config: &Config, args: ImportArgs) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    if store
        .find_campaign(&campaign_name(&args.campaign.campaign)?)
        .await?
        .is_some()
    {
        return Err(Failure::usage(anyhow!(
            "campaign {:?} already exists in {}; choose another name, or run `bpsms send --campaign {}` to send it",
            args.campaign.campaign,
            config.db.display(),
            shell_word(&args.campaign.campaign)
        )));
    }
    let run_settings = config
        .run_settings(&Default::default(), None)
        .map_err(Failure::usage)?;
    let report = create_campaign(
        config,
        &store,
        &args.campaign,
        &args.suppress,
        &run_settings,
    )
    .await?;
    print_import(&args.campaign.campaign, &report);
    store.close().await;
    Ok(exit::OK)
}

/// Validates the campaign flags and imports the CSV.
async fn create_campaign(
    config: &Config,
    store: &Store,
    args: &CampaignArgs,
    suppress: &SuppressArgs,
    settings: &RunSettings,
) -> Result<ImportReport, Failure> {
    let name = validate_name(&args.campaign)?;
    let from = parse_from(args.content.from.as_deref())?;
    let spec = import_spec(config, name, &args.content, suppress, Some(from), settings)?;
    import::import(store, &spec, now_ms())
        .await
        .map_err(import_failure)
}

/// A file the operator must fix is a usage error; a database or a machine
/// that fails is a runtime one.
fn import_failure(error: ImportError) -> Failure {
    match error {
        ImportError::Store(StoreError::CampaignExists(name)) => {
            Failure::usage(ImportError::CampaignExists(name))
        }
        ImportError::Store(_) | ImportError::NoMemory(_) => Failure::runtime(error),
        _ => Failure::usage(error),
    }
}

/// Everything an import needs, validated from the flags.
fn import_spec(
    config: &Config,
    campaign: String,
    content: &ContentArgs,
    suppress: &SuppressArgs,
    from: Option<E164>,
    settings: &RunSettings,
) -> Result<ImportSpec, Failure> {
    let csv_path = content.csv.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "campaign {campaign:?} does not exist yet; pass --csv FILE and --from E164 to create it"
        ))
    })?;
    if content
        .body
        .as_deref()
        .is_some_and(|body| body.trim().is_empty())
    {
        return Err(Failure::usage(anyhow!(
            "--body is empty; give the message text, e.g. --body 'Hi {{{{first_name}}}}'"
        )));
    }
    let region = Region::parse(&config.default_region(content.default_region.as_deref()))
        .map_err(|e| Failure::usage(anyhow!("--default-region: {e}")))?;
    let suppression = match &suppress.path {
        Some(path) => load_suppression(path, &region)?,
        None => SuppressionList::default(),
    };
    Ok(ImportSpec {
        campaign: campaign_name(&campaign)?,
        csv_path,
        from,
        body_template: content.body.clone(),
        phone_column: content.phone_column.clone(),
        region,
        source: SourceOptions {
            delimiter: content.delimiter,
            encoding: content.encoding.unwrap_or_default(),
        },
        suppression: Arc::new(suppression),
        reject_over_length: content.over_length == Some(OverLength::Reject),
        settings: settings.campaign.clone(),
    })
}

fn load_suppression(path: &std::path::Path, region: &Region) -> Result<SuppressionList, Failure> {
    let list = SuppressionList::load(path, region).map_err(Failure::usage)?;
    eprintln!(
        "Suppression list {}: {} number(s)",
        path.display(),
        list.len()
    );
    if let Some(warning) = list.warning() {
        eprintln!("Warning: {warning}");
    }
    Ok(list)
}

/// Applies `--suppress` to a stored campaign: messages not yet sent whose
/// number is on the list are never sent.
async fn suppress_unsent(
    store: &Store,
    campaign: &Campaign,
    suppress: &SuppressArgs,
) -> Result<(), Failure> {
    let Some(path) = &suppress.path else {
        return Ok(());
    };
    let region = Region::parse(&campaign.default_region).unwrap_or_default();
    let list = load_suppression(path, &region)?;
    let n = store.suppress_pending(campaign.id, list.entries()).await?;
    eprintln!("Suppressed {n} message(s) not yet sent");
    Ok(())
}

/// `bpsms check` and `send --dry-run`: imports into a scratch database that
/// is thrown away, then shows what would be sent.
async fn check(
    config: &Config,
    content: &ContentArgs,
    suppress: &SuppressArgs,
    preview: usize,
) -> Result<u8, Failure> {
    if content.csv.is_none() {
        return Err(Failure::usage(anyhow!(
            "pass --csv FILE: the recipients file to check (a campaign already imported is \
             shown by `bpsms status --campaign NAME`)"
        )));
    }
    let from = content
        .from
        .as_deref()
        .map(|raw| parse_from(Some(raw)))
        .transpose()?;
    let settings = config
        .run_settings(&Default::default(), None)
        .map_err(Failure::usage)?;
    let spec = import_spec(config, "check".into(), content, suppress, from, &settings)?;
    let report = crate::check::run(&spec, preview)
        .await
        .map_err(import_failure)?;
    print!("{report}");
    Ok(exit::OK)
}

/// Refuses a resume whose flags say something else than the stored campaign.
fn check_same_campaign(campaign: &Campaign, args: &ContentArgs) -> Result<(), Failure> {
    let refuse = |what: String| {
        Failure::usage(anyhow!(
            "campaign {:?} already exists with {what}; a campaign's recipients and text cannot change. \
             Drop the flag to resume it, or choose a new --campaign name",
            campaign.name
        ))
    };
    if let Some(path) = &args.csv {
        let sha = import::file_sha256(path).map_err(Failure::usage)?;
        if sha != campaign.csv_sha256 {
            return Err(refuse(format!(
                "a different file ({} was imported; {} differs)",
                campaign.csv_path,
                path.display()
            )));
        }
    }
    if let Some(raw) = &args.from {
        let from = parse_from(Some(raw))?;
        if from.as_str() != campaign.from_number {
            return Err(refuse(format!("sender {}", campaign.from_number)));
        }
    }
    if let Some(body) = &args.body {
        if campaign.body_template.as_deref() != Some(body.as_str()) {
            return Err(refuse(match &campaign.body_template {
                Some(stored) => format!("the body {stored:?}"),
                None => "each row's body column as its text".into(),
            }));
        }
    }
    if let Some(column) = &args.phone_column {
        if !column.trim().eq_ignore_ascii_case(&campaign.phone_column) {
            return Err(refuse(format!("phone column {:?}", campaign.phone_column)));
        }
    }
    if let Some(region) = &args.default_region {
        if !region.trim().eq_ignore_ascii_case(&campaign.default_region) {
            return Err(refuse(format!(
                "default region {}",
                campaign.default_region
            )));
        }
    }
    Ok(())
}

fn parse_from(raw: Option<&str>) -> Result<E164, Failure> {
    let raw = raw.ok_or_else(|| {
        Failure::usage(anyhow!(
            "--from is required for a new campaign: a Text Out access number of the tenant in E.164, e.g. +16505550100"
        ))
    })?;
    E164::parse_sender(raw).map_err(|e| Failure::usage(anyhow!("--from {raw:?}: {e}")))
}

fn validate_name(name: &str) -> Result<String, Failure> {
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed.len() > 200 || trimmed.chars().any(char::is_control) {
        return Err(Failure::usage(anyhow!(
            "--campaign {name:?}: give a name of 1 to 200 printable characters"
        )));
    }
    Ok(trimmed.to_string())
}

fn print_import(name: &str, report: &ImportReport) {
    eprintln!(
        "Imported campaign {name}: {} rows: {} to send ({} MMS), {} invalid, {} duplicate, {} suppressed",
        report.n_rows,
        report.n_pending,
        report.n_mms,
        report.n_invalid,
        report.n_duplicate,
        report.n_suppressed
    );
    if report.n_over_length > 0 {
        eprintln!(
            "Warning: {} message(s) are over the length providers usually accept (1600 GSM-7 or 700 UCS-2 characters); they will be sent, unless you import with --over-length reject",
            report.n_over_length
        );
    }
}

async fn status(config: &Config, args: StatusArgs) -> Result<u8, Failure> {
    let store = open_existing_store(config).await?;
    let campaigns = match &args.campaign {
        Some(name) => vec![find(&store, config, name).await?],
        None => store.list_campaigns().await?,
    };
    if campaigns.is_empty() {
        println!("No campaigns in {}", config.db.display());
    }
    for campaign in &campaigns {
        print!("{}", Summary::load(&store, campaign).await?.render());
    }
    store.close().await;
    Ok(exit::OK)
}

async fn export(config: &Config, args: ExportArgs) -> Result<u8, Failure> {
    let store = open_existing_store(config).await?;
    let campaign = find(&store, config, &args.campaign).await?;
    match &args.out {
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            write_export(&store, &campaign, args.format, BufWriter::new(file)).await?;
        }
        None => {
            let stdout = std::io::stdout();
            write_export(
                &store,
                &campaign,
                args.format,
                BufWriter::new(stdout.lock()),
            )
            .await?;
        }
    }
    store.close().await;
    Ok(exit::OK)
}

/// Writes an export of `campaign` in `format`.
pub async fn write_export(
    store: &Store,
    campaign: &Campaign,
    format: ExportFormat,
    out: impl Write,
) -> anyhow::Result<()> {
    match format {
        ExportFormat::Csv => report::export_csv(store, campaign, out).await,
        ExportFormat::Json => report::export_json(store, campaign, out).await,
    }
    .context("failed to write the export")
}

/// A campaign name from the command line; a bad one is a usage error.
fn campaign_name(raw: &str) -> Result<CampaignName, Failure> {
    CampaignName::parse(raw).map_err(Failure::usage)
}

async fn find(store: &Store, config: &Config, name: &str) -> Result<Campaign, Failure> {
    store
        .find_campaign(&campaign_name(name)?)
        .await?
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no campaign {name:?} in {}; `bpsms status` lists the campaigns",
                config.db.display()
            ))
        })
}

async fn mock_server(args: crate::mock::MockArgs) -> Result<u8, Failure> {
    let behaviour = args.behaviour().map_err(|e| Failure::usage(anyhow!(e)))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    eprintln!("BPCC simulator listening on http://{addr} (Ctrl-C to stop)");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    crate::mock::run(listener, behaviour, shutdown).await?;
    Ok(exit::OK)
}

/// First Ctrl-C or SIGTERM: stop claiming, let requests in flight finish
/// within `grace`. A second signal, or the end of the grace period: leave at
/// once (what was in flight is recovered at the next start).
async fn watch_signals(cancel: CancellationToken, grace: Duration) {
    wait_for_signal().await;
    eprintln!(
        "\nStopping: waiting up to {}s for requests in flight (press Ctrl-C again to leave at once)…",
        grace.as_secs()
    );
    cancel.cancel();
    tokio::select! {
        _ = wait_for_signal() => eprintln!("Leaving now."),
        _ = tokio::time::sleep(grace) => eprintln!("Requests still in flight after {}s; leaving now.", grace.as_secs()),
    }
    eprintln!("Messages still in flight become `unknown` at the next start; resume with the same command.");
    std::process::exit(i32::from(exit::INTERRUPTED));
}

async fn retry(config: &Config, args: RetryArgs) -> Result<u8, Failure> {
    let store = open_existing_store(config).await?;
    let campaign = find(&store, config, &args.campaign).await?;
    let state = match args.state {
        RetryState::Unknown => MessageState::Unknown,
        RetryState::Failed => MessageState::Failed,
        RetryState::Rejected => MessageState::Rejected,
        RetryState::Expired => MessageState::Expired,
    };
    // No run may be sending this campaign while its messages change.
    let lease = Lease::acquire(&store, campaign.id, campaign.name.as_str()).await?;
    let n = store.count_in_state(campaign.id, state).await?;
    let outcome = if n == 0 {
        println!(
            "No message of campaign {} is {state}; nothing to re-queue.",
            campaign.name
        );
        Ok(exit::OK)
    } else if args.yes || confirm(n, state, campaign.name.as_str())? {
        let done = store.requeue(campaign.id, state, now_ms()).await?;
        println!(
            "Re-queued {done} message(s) that were {state}. Send them with:\n  bpsms send --campaign {}",
            shell_word(campaign.name.as_str())
        );
        Ok(exit::OK)
    } else {
        println!("Nothing re-queued.");
        Ok(exit::OK)
    };
    lease.release().await;
    store.close().await;
    outcome
}

/// Asks the operator on the terminal; refuses to guess without one.
fn confirm(n: i64, state: MessageState, campaign: &str) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "{n} message(s) of campaign {campaign:?} are {state}; pass --yes to re-queue them \
             (no terminal to ask on)"
        )));
    }
    let warning = if state == MessageState::Unknown {
        " Some of them may have been delivered already: their recipients would get the text twice."
    } else {
        ""
    };
    eprint!("Re-queue {n} message(s) of campaign {campaign} that are {state}, to be sent again?{warning} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("failed to read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Quotes a word for a shell command line when it needs it.
pub fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
