//! `bpsms status`: counts per state for one campaign, or for all.

use super::exit::{Failure, Outcome};
use super::{find, open_existing_store};
use crate::cli::StatusArgs;
use crate::config::{self, Config};
use crate::report::Summary;

pub(super) async fn run(config: &Config, args: StatusArgs) -> Result<Outcome, Failure> {
    let name = args
        .campaign
        .as_deref()
        .map(config::campaign_name)
        .transpose()
        .map_err(Failure::usage)?;
    let store = open_existing_store(config).await?;
    let campaigns = match &name {
        Some(name) => vec![find(&store, config, name).await?],
        None => store.list_campaigns().await?,
    };
    if campaigns.is_empty() {
        crate::outln!("No campaigns in {}", config.db.display());
    }
    for campaign in &campaigns {
        crate::out!("{}", Summary::load(&store, campaign).await?.render());
    }
    store.close().await;
    Ok(Outcome::Done)
}
