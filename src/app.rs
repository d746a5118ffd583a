//! The subcommands: each validates its input into typed settings, calls the
//! modules that do the work, and says how the process should exit.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio_util::sync::CancellationToken;

use crate::api::ApiClient;
use crate::campaign::{self, RunEnd, RunError};
use crate::cli::{
    CampaignArgs, Cli, Command, ExportArgs, ExportFormat, ImportArgs, SendArgs, StatusArgs,
};
use crate::clock::now_ms;
use crate::config::{Config, RunSettings};
use crate::domain::phone::{Region, E164};
use crate::import::{self, ImportError, ImportReport, ImportSpec};
use crate::report::{self, Summary};
use crate::store::{Campaign, Store};

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
                Command::Import(args) => import_only(&config, args).await,
                Command::Status(args) => status(&config, args).await,
                Command::Export(args) => export(&config, args).await,
                Command::MockServer(_) | Command::Demo(_) => Ok(exit::OK),
            }
        }
    }
}

async fn open_store(config: &Config) -> Result<Store, Failure> {
    Store::open(&config.db)
        .await
        .with_context(|| format!("failed to open database {}", config.db.display()))
        .map_err(Failure::runtime)
}

async fn send(config: &Config, args: SendArgs) -> Result<u8, Failure> {
    let store = open_store(config).await?;
    let existing = store.find_campaign(&args.campaign.campaign).await?;
    let run_settings = config
        .run_settings(&args.run, existing.as_ref().map(|c| &c.settings))
        .map_err(Failure::usage)?;
    // Check the API settings before importing: a typo in the environment
    // should not leave a half-configured campaign behind.
    let api_config = config.api(&args.run).map_err(Failure::usage)?;
    let campaign = match existing {
        Some(campaign) => {
            check_same_campaign(&campaign, &args.campaign)?;
            campaign
        }
        None => {
            let report = create_campaign(config, &store, &args.campaign, &run_settings).await?;
            print_import(&args.campaign.campaign, &report);
            store
                .find_campaign(&args.campaign.campaign)
                .await?
                .ok_or_else(|| Failure::runtime(anyhow!("the imported campaign vanished")))?
        }
    };
    let api = Arc::new(ApiClient::new(api_config).context("failed to set up the HTTP client")?);
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(cancel.clone()));
    let result = campaign::run(&store, api, &campaign, &run_settings, cancel).await;
    signals.abort();
    let summary = Summary::load(&store, &campaign).await?;
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
                shell_word(&campaign.name)
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
        .find_campaign(&args.campaign.campaign)
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
    let report = create_campaign(config, &store, &args.campaign, &run_settings).await?;
    print_import(&args.campaign.campaign, &report);
    store.close().await;
    Ok(exit::OK)
}

/// Validates the campaign flags and imports the CSV.
async fn create_campaign(
    config: &Config,
    store: &Store,
    args: &CampaignArgs,
    settings: &RunSettings,
) -> Result<ImportReport, Failure> {
    let name = validate_name(&args.campaign)?;
    let csv_path = args.csv.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "campaign {name:?} does not exist yet; pass --csv FILE and --from E164 to create it"
        ))
    })?;
    let from = parse_from(args.from.as_deref())?;
    let region = Region::parse(&config.default_region(args.default_region.as_deref()))
        .map_err(|e| Failure::usage(anyhow!("--default-region: {e}")))?;
    let spec = ImportSpec {
        campaign: name,
        csv_path,
        from,
        body_template: args.body.clone(),
        phone_column: args.phone_column.clone(),
        region,
        settings: settings.campaign.clone(),
    };
    import::import(store, &spec, now_ms())
        .await
        .map_err(|error| match error {
            ImportError::Store(_) => Failure::runtime(error),
            _ => Failure::usage(error),
        })
}

/// Refuses a resume whose flags say something else than the stored campaign.
fn check_same_campaign(campaign: &Campaign, args: &CampaignArgs) -> Result<(), Failure> {
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
        "Imported campaign {name}: {} rows: {} to send ({} MMS), {} invalid, {} duplicate",
        report.n_rows, report.n_pending, report.n_mms, report.n_invalid, report.n_duplicate
    );
    if report.n_over_length > 0 {
        eprintln!(
            "Warning: {} message(s) are longer than providers usually accept (1600 GSM-7 or 700 UCS-2 characters)",
            report.n_over_length
        );
    }
}

async fn status(config: &Config, args: StatusArgs) -> Result<u8, Failure> {
    if !config.db.exists() {
        return Err(Failure::usage(anyhow!(
            "no database at {}; pass --db PATH (or set BPSMS_DB) to the file a send created",
            config.db.display()
        )));
    }
    let store = open_store(config).await?;
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
    if !config.db.exists() {
        return Err(Failure::usage(anyhow!(
            "no database at {}; pass --db PATH (or set BPSMS_DB)",
            config.db.display()
        )));
    }
    let store = open_store(config).await?;
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

async fn find(store: &Store, config: &Config, name: &str) -> Result<Campaign, Failure> {
    store.find_campaign(name).await?.ok_or_else(|| {
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

/// First Ctrl-C or SIGTERM: stop claiming, let requests in flight finish.
/// Second: leave at once (what was in flight is recovered at the next start).
async fn watch_signals(cancel: CancellationToken) {
    wait_for_signal().await;
    eprintln!("\nStopping: waiting for requests in flight (press Ctrl-C again to leave at once)…");
    cancel.cancel();
    wait_for_signal().await;
    eprintln!("Leaving now; messages in flight become `unknown` at the next start.");
    std::process::exit(i32::from(exit::INTERRUPTED));
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
