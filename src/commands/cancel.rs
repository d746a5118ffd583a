//! `bpsms cancel`: every message of a campaign not yet sent becomes
//! `cancelled`, after asking the operator (or on `--yes`). Messages already
//! sent are tracked as before; `bpsms retry --state cancelled` undoes it.

use super::exit::{Failure, Outcome};
use super::{ask, find, open_existing_store};
use crate::cli::CancelArgs;
use crate::clock::now_ms;
use crate::config::{self, Config};
use crate::domain::state::MessageState;
use crate::lease::Lease;
use crate::shell::shell_word;

/// The reason a cancelled message carries.
const CANCELLED_BY_OPERATOR: &str = "cancelled by the operator (bpsms cancel) before it was sent";

pub(super) async fn run(config: &Config, args: CancelArgs) -> Result<Outcome, Failure> {
    let name = config::campaign_name(&args.campaign).map_err(Failure::usage)?;
    let store = open_existing_store(config).await?;
    let campaign = find(&store, config, &name).await?;
    // A running send must stop first: it holds messages it is about to send.
    let lease = Lease::acquire(&store, campaign.id, campaign.name.as_str()).await?;
    let cancelled = async {
        let n = store
            .count_in_state(campaign.id, MessageState::Pending)
            .await?;
        if n == 0 {
            crate::outln!(
                "No message of campaign {} waits to be sent; nothing to cancel.",
                campaign.name
            );
        } else if args.yes
            || ask(
                &format!(
                    "Cancel the {n} message(s) of campaign {} not yet sent? They will never be sent.",
                    campaign.name
                ),
                &format!(
                    "{n} message(s) of campaign {:?} wait to be sent; pass --yes to cancel them",
                    campaign.name.as_str()
                ),
            )?
        {
            let done = store
                .cancel_pending(campaign.id, CANCELLED_BY_OPERATOR, now_ms())
                .await?;
            crate::outln!(
                "Cancelled {done} message(s). Messages already sent are still tracked by \
                 `bpsms send --campaign {name}`; `bpsms retry --state cancelled --campaign {name}` \
                 queues the cancelled ones again.",
                name = shell_word(campaign.name.as_str())
            );
        } else {
            crate::outln!("Nothing cancelled.");
        }
        Ok::<_, Failure>(Outcome::Done)
    }
    .await;
    lease.release().await;
    store.close().await;
    cancelled
}
