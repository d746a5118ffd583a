//! The subcommands, one file each: each receives settings that
//! [`crate::config`] validated, calls the modules that do the work, and says
//! how it ended ([`exit`]). This module dispatches and holds what several
//! subcommands share: opening the database, finding a campaign, importing.
//! Nothing below this layer imports from it.

mod cancel;
mod check;
#[cfg(feature = "simulator")]
mod demo;
pub mod exit;
mod export;
mod import;
#[cfg(feature = "simulator")]
mod mock_server;
mod retry;
mod send;
mod status;

use std::sync::Arc;

use anyhow::{anyhow, Context};

use crate::cli::{Cli, Command, SuppressArgs};
use crate::clock::now_ms;
use crate::config::{Config, Content, RunSettings};
use crate::domain::ids::CampaignName;
use crate::domain::phone::Region;
use crate::import::{ImportError, ImportReport, ImportSpec};
use crate::store::{Campaign, Store, StoreError};
use crate::suppress::SuppressionList;
use exit::{Failure, Outcome};

/// Runs one command; returns how it ended or a failure to print.
pub async fn run(cli: Cli) -> Result<Outcome, Failure> {
    // Loaded only by the commands that read it: the simulator's run without.
    let config = || Config::load(&cli.global).map_err(Failure::usage);
    match cli.command {
        Command::Send(args) => send::send(&config()?, args).await,
        Command::Resume(args) => send::resume(&config()?, args).await,
        Command::Retry(args) => retry::run(&config()?, args).await,
        Command::Cancel(args) => cancel::run(&config()?, args).await,
        Command::Import(args) => import::run(&config()?, args).await,
        Command::Check(args) => {
            let config = config()?;
            let content = config.content(&args.content).map_err(Failure::usage)?;
            let run = crate::cli::RunArgs {
                suppress: args.suppress,
                schedule: args.schedule,
                rate: args.rate,
                ..Default::default()
            };
            check::run(&config, &content, &run, args.preview).await
        }
        Command::Status(args) => status::run(&config()?, args).await,
        Command::Export(args) => export::run(&config()?, args).await,
        #[cfg(feature = "simulator")]
        Command::MockServer(args) => mock_server::run(args).await,
        #[cfg(feature = "simulator")]
        Command::Demo(args) => demo::run(args).await,
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

/// The stored campaign `name`, or a usage error naming the database.
async fn find(store: &Store, config: &Config, name: &CampaignName) -> Result<Campaign, Failure> {
    store.find_campaign(name).await?.ok_or_else(|| {
        Failure::usage(anyhow!(
            "no campaign {:?} in {}; `bpsms status` lists the campaigns",
            name.as_str(),
            config.db.display()
        ))
    })
}

/// Imports the CSV of a new campaign.
async fn create_campaign(
    store: &Store,
    name: &CampaignName,
    content: &Content,
    suppress: &SuppressArgs,
    settings: &RunSettings,
) -> Result<ImportReport, Failure> {
    let spec = import_spec(name, content, suppress, true, settings)?;
    crate::import::import(store, &spec, now_ms())
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

/// Everything an import needs, from validated settings.
fn import_spec(
    campaign: &CampaignName,
    content: &Content,
    suppress: &SuppressArgs,
    needs_sender: bool,
    settings: &RunSettings,
) -> Result<ImportSpec, Failure> {
    let csv_path = content.csv.clone().ok_or_else(|| {
        Failure::usage(anyhow!(
            "campaign \"{campaign}\" does not exist yet; pass --csv FILE and --from E164 to create it"
        ))
    })?;
    let suppression = match &suppress.path {
        Some(path) => load_suppression(path, &content.region)?,
        None => SuppressionList::default(),
    };
    Ok(ImportSpec {
        campaign: campaign.clone(),
        csv_path,
        needs_sender,
        body_template: content.body.clone(),
        phone_column: content.phone_column.clone(),
        region: content.region,
        source: content.source,
        suppression: Arc::new(suppression),
        reject_over_length: content.reject_over_length,
        requirements: content.requirements.clone(),
        timezone_column: content.timezone_column.clone(),
        settings: settings.campaign.clone(),
        rules: settings.rules.clone(),
    })
}

fn load_suppression(path: &std::path::Path, region: &Region) -> Result<SuppressionList, Failure> {
    let list = SuppressionList::load(path, region).map_err(Failure::usage)?;
    crate::errln!(
        "Suppression list {}: {} number(s)",
        path.display(),
        list.len()
    );
    if let Some(warning) = list.warning() {
        crate::errln!("Warning: {warning}");
    }
    Ok(list)
}

fn print_import(name: &CampaignName, report: &ImportReport) {
    crate::errln!(
        "Imported campaign {name}: {} rows: {} to send ({} MMS), {} invalid, {} duplicate, {} suppressed",
        report.n_rows,
        report.n_pending,
        report.n_mms,
        report.n_invalid,
        report.n_duplicate,
        report.n_suppressed
    );
    if report.n_empty_placeholder > 0 {
        crate::errln!(
            "Warning: in {} message(s) a placeholder renders empty (first at row {}); give it a default, e.g. {{{{first_name|there}}}}",
            report.n_empty_placeholder,
            report.empty_placeholder_rows.first().copied().unwrap_or_default()
        );
    }
    if report.n_over_length > 0 {
        crate::errln!(
            "Warning: {} message(s) are over the length providers usually accept (1600 GSM-7 or 700 UCS-2 characters); they will be sent, unless you import with --over-length reject",
            report.n_over_length
        );
    }
}

/// Asks the operator a yes/no `question` on the terminal (no is the
/// default); without a terminal it refuses to guess and says `without`
/// and how to answer in advance.
fn ask(question: &str, without: &str) -> Result<bool, Failure> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(anyhow!("{without} (no terminal to ask on)")));
    }
    crate::err!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("failed to read the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
