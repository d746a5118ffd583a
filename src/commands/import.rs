//! `bpsms import`: creates a campaign from a CSV without sending anything.

use anyhow::anyhow;

use super::exit::{Failure, Outcome};
use super::{create_campaign, open_store, print_import};
use crate::cli::{ImportArgs, RunArgs};
use crate::config::{self, Config};
use crate::shell::shell_word;

pub(super) async fn run(config: &Config, args: ImportArgs) -> Result<Outcome, Failure> {
    let name = config::campaign_name(&args.campaign.campaign).map_err(Failure::usage)?;
    let content = config
        .content(&args.campaign.content)
        .map_err(Failure::usage)?;
    let store = open_store(config).await?;
    if store.find_campaign(&name).await?.is_some() {
        return Err(Failure::usage(anyhow!(
            "campaign {:?} already exists in {}; choose another name, or run `bpsms send --campaign {}` to send it",
            name.as_str(),
            config.db.display(),
            shell_word(name.as_str())
        )));
    }
    let run = RunArgs {
        schedule: args.schedule.clone(),
        ..Default::default()
    };
    let run_settings = config
        .run_settings(&run, &content.from, None)
        .map_err(Failure::usage)?;
    let report = create_campaign(&store, &name, &content, &args.suppress, &run_settings).await?;
    print_import(&name, &report);
    store.close().await;
    Ok(Outcome::Done)
}
