//! `bpsms send` and `bpsms resume`: import a new campaign or pick up a stored
//! one, then send and track it until every message is final or the operator
//! stops the run. Owns the shutdown: the first Ctrl-C or SIGTERM stops
//! claiming, the second (or the end of the grace period) leaves without
//! waiting for requests in flight; either way the run returns, releases the
//! campaign and closes the database.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use tokio_util::sync::CancellationToken;

use super::exit::{Failure, Outcome};
use super::{
    check, create_campaign, find, load_suppression, open_existing_store, open_store, print_import,
};
use crate::api::ApiClient;
use crate::campaign::{self, RunEnd, RunError};
use crate::cli::{ContentArgs, ResumeArgs, RunArgs, SendArgs, SuppressArgs};
use crate::config::{self, Config, Content, DEFAULT_SHUTDOWN_GRACE};
use crate::domain::ids::CampaignName;
use crate::domain::phone::{Region, E164};
use crate::domain::state::MessageState;
use crate::import;
use crate::lease::Lease;
use crate::report::Summary;
use crate::shell::shell_word;
use crate::store::{Campaign, Store};

/// How long releasing the campaign and closing the database may take once
/// the operator asked to leave at once.
const LEAVING_CLEANUP_WITHIN: Duration = Duration::from_secs(2);

pub(super) async fn send(config: &Config, args: SendArgs) -> Result<Outcome, Failure> {
    let content = config
        .content(&args.campaign.content)
        .map_err(Failure::usage)?;
    if args.dry_run {
        return check::run(config, &content, &args.run, 5).await;
    }
    let name = config::campaign_name(&args.campaign.campaign).map_err(Failure::usage)?;
    let store = open_store(config).await?;
    let existing = store.find_campaign(&name).await?;
    send_campaign(config, store, &name, existing, &content, &args.run).await
}

/// `resume` is `send` without content flags.
pub(super) async fn resume(config: &Config, args: ResumeArgs) -> Result<Outcome, Failure> {
    let content = config
        .content(&ContentArgs::default())
        .map_err(Failure::usage)?;
    let name = config::campaign_name(&args.campaign).map_err(Failure::usage)?;
    // Nothing to import: a name that is not stored is a typo, not a new
    // campaign, and a wrong --db must not leave an empty database behind.
    let store = open_existing_store(config).await?;
    let campaign = find(&store, config, &name).await?;
    send_campaign(config, store, &name, Some(campaign), &content, &args.run).await
}

async fn send_campaign(
    config: &Config,
    store: Store,
    name: &CampaignName,
    existing: Option<Campaign>,
    content: &Content,
    run: &RunArgs,
) -> Result<Outcome, Failure> {
    let run_settings = config
        .run_settings(
            run,
            &content.from,
            existing.as_ref().map(|c| (&c.settings, &c.rules)),
        )
        .map_err(Failure::usage)?;
    // Check the API settings before importing: a typo in the environment
    // should not leave a half-configured campaign behind.
    let api_config = config.api(run).map_err(Failure::usage)?;
    let campaign = match existing {
        Some(campaign) => {
            check_same_campaign(&campaign, content)?;
            suppress_unsent(&store, &campaign, &run.suppress).await?;
            if run_settings.rules.senders != campaign.rules.senders {
                let list = |numbers: &[E164]| {
                    numbers
                        .iter()
                        .map(E164::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                crate::errln!(
                    "Sender pool of campaign {}: {} (was {}); only recipients that a new number \
                     takes change sender",
                    campaign.name,
                    list(&run_settings.rules.senders),
                    list(&campaign.rules.senders)
                );
            }
            campaign
        }
        None => {
            let report =
                create_campaign(&store, name, content, &run.suppress, &run_settings).await?;
            print_import(name, &report);
            store
                .find_campaign(name)
                .await?
                .ok_or_else(|| Failure::runtime(anyhow!("the imported campaign vanished")))?
        }
    };
    let api = Arc::new(ApiClient::new(api_config).context("failed to set up the HTTP client")?);
    let lease = Lease::acquire(&store, campaign.id, campaign.name.as_str()).await?;
    let cancel = CancellationToken::new();
    let grace = run.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE);
    let signals = StopSignals::listen().context("failed to listen for Ctrl-C and SIGTERM")?;
    let ended = tokio::select! {
        result = campaign::run(&store, api, &campaign, &run_settings, cancel.clone(), lease.lost()) => Some(result),
        () = stop_on_signals(signals, cancel, grace) => None,
    };
    let Some(result) = ended else {
        // The requests still in flight are abandoned with the run; what they
        // would have recorded is recovered at the next start.
        let cleanup = async {
            lease.release().await;
            store.close().await;
        };
        if tokio::time::timeout(LEAVING_CLEANUP_WITHIN, cleanup)
            .await
            .is_err()
        {
            tracing::warn!("the database was not closed in time; leaving anyway");
        }
        return Ok(Outcome::LeftAtOnce);
    };
    lease.release().await;
    // A run stopped by a database error may leave the database unreadable
    // for now: its error is the one to report.
    let summary = Summary::load(&store, &campaign).await;
    store.close().await;
    let summary = match summary {
        Ok(summary) => summary,
        Err(error) => {
            return Err(Failure::runtime(match result {
                Err(run_error) => anyhow::Error::from(run_error),
                Ok(_) => error.into(),
            }))
        }
    };
    crate::out!("{}", summary.render());
    match result {
        Ok(RunEnd::Finished) if summary.all_final() => Ok(Outcome::Done),
        Ok(RunEnd::Finished) => Err(Failure::runtime(anyhow!(
            "the run ended with messages not yet final; run the same command again to continue"
        ))),
        Ok(RunEnd::Interrupted) => {
            crate::errln!(
                "Interrupted. {} message(s) wait to be sent and {} to be tracked. Resume with:\n  bpsms send --campaign {}",
                summary.count(MessageState::Pending),
                summary.n_tracked,
                shell_word(campaign.name.as_str())
            );
            Ok(Outcome::Interrupted)
        }
        Err(RunError::Config(fatal)) => Err(Failure::usage(anyhow!(
            "{fatal}\nThe campaign is saved; after fixing this, run the same command again to resume."
        ))),
        Err(error) => Err(Failure::runtime(error)),
    }
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
    let region = stored_region(campaign)?;
    let list = load_suppression(path, &region)?;
    let n = store.suppress_pending(campaign.id, list.entries()).await?;
    crate::errln!("Suppressed {n} message(s) not yet sent");
    Ok(())
}

/// Refuses a resume whose flags say something else than the stored campaign.
/// Numbers and regions compare as values: `--default-region UK` is the `GB`
/// a campaign was imported with.
fn check_same_campaign(campaign: &Campaign, content: &Content) -> Result<(), Failure> {
    let refuse = |what: String| {
        Failure::usage(anyhow!(
            "campaign {:?} already exists with {what}; a campaign's recipients and text cannot change. \
             Drop the flag to resume it, or choose a new --campaign name",
            campaign.name
        ))
    };
    if let Some(path) = &content.csv {
        let sha = import::file_sha256(path).map_err(Failure::usage)?;
        if sha != campaign.csv_sha256 {
            return Err(refuse(format!(
                "a different file ({} was imported; {} differs)",
                campaign.csv_path,
                path.display()
            )));
        }
    }
    if let Some(body) = &content.body {
        if campaign.body_template.as_deref() != Some(body.as_str()) {
            return Err(refuse(match &campaign.body_template {
                Some(stored) => format!("the body {stored:?}"),
                None => "each row's body column as its text".into(),
            }));
        }
    }
    if let Some(column) = &content.phone_column {
        if !column.trim().eq_ignore_ascii_case(&campaign.phone_column) {
            return Err(refuse(format!("phone column {:?}", campaign.phone_column)));
        }
    }
    let requirements = import::consent::stored_form(&content.requirements);
    if !content.requirements.is_empty() && requirements != campaign.requirements {
        return Err(refuse(if campaign.requirements.is_empty() {
            "no --require".to_owned()
        } else {
            format!(
                "--require {}",
                campaign.requirements.replace('\n', " --require ")
            )
        }));
    }
    if let Some(region) = content.region_flag {
        let stored_region = stored_region(campaign)?;
        if region != stored_region {
            return Err(refuse(format!("default region {stored_region}")));
        }
    }
    Ok(())
}

/// A value the campaign was imported with, read back as the type it was
/// validated into. One that does not read was changed outside bpsms.
fn stored<T, E: Display>(
    campaign: &Campaign,
    what: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, Failure> {
    parse(raw).map_err(|error| {
        Failure::runtime(anyhow!(
            "campaign {:?} is stored with the {what} {raw:?}, which bpsms cannot read ({error}); \
             the database was changed outside bpsms: restore it from a backup, or import the CSV \
             again under a new --campaign name",
            campaign.name
        ))
    })
}

fn stored_region(campaign: &Campaign) -> Result<Region, Failure> {
    let region = &campaign.default_region;
    stored(campaign, "default region", region, Region::parse)
}

/// First Ctrl-C or SIGTERM: stop claiming, let requests in flight finish
/// within `grace`. Returns at a second signal, or at the end of the grace
/// period, when the run must be left at once. Cancels before it prints: the
/// stop must not wait on a stderr nobody reads.
async fn stop_on_signals(mut signals: StopSignals, cancel: CancellationToken, grace: Duration) {
    signals.next().await;
    cancel.cancel();
    crate::errln!(
        "\nStopping: waiting up to {}s for requests in flight (press Ctrl-C again to leave at once)…",
        grace.as_secs()
    );
    tokio::select! {
        () = signals.next() => crate::errln!("Leaving now."),
        () = tokio::time::sleep(grace) => crate::errln!("Requests still in flight after {}s; leaving now.", grace.as_secs()),
    }
    crate::errln!("Messages still in flight become `unknown` at the next start; resume with the same command.");
}

/// Ctrl-C and SIGTERM, listened to from the start of the run to its end. One
/// listener per signal for the whole run: a signal that arrives between two
/// waits is kept for the next wait instead of being lost, as it would be if
/// each wait registered its own listener.
struct StopSignals {
    interrupt: Signal,
    #[cfg(unix)]
    terminate: Signal,
}

#[cfg(unix)]
type Signal = tokio::signal::unix::Signal;
#[cfg(windows)]
type Signal = tokio::signal::windows::CtrlC;

impl StopSignals {
    #[cfg(unix)]
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(windows)]
    fn listen() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: tokio::signal::windows::ctrl_c()?,
        })
    }

    /// The next Ctrl-C or SIGTERM.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(windows)]
        self.interrupt.recv().await;
    }
}
