//! `bpsms retry`: puts messages in one final state back to be sent, as a new
//! attempt, after asking the operator (or on `--yes`).

use super::exit::{Failure, Outcome};
use super::{ask, find, open_existing_store};
use crate::cli::{RetryArgs, RetryState};
use crate::clock::now_ms;
use crate::config::{self, Config};
use crate::domain::state::MessageState;
use crate::lease::Lease;
use crate::shell::shell_word;

pub(super) async fn run(config: &Config, args: RetryArgs) -> Result<Outcome, Failure> {
    let name = config::campaign_name(&args.campaign).map_err(Failure::usage)?;
    let store = open_existing_store(config).await?;
    let campaign = find(&store, config, &name).await?;
    let state = match args.state {
        RetryState::Unknown => MessageState::Unknown,
        RetryState::Failed => MessageState::Failed,
        RetryState::Rejected => MessageState::Rejected,
        RetryState::Expired => MessageState::Expired,
        RetryState::Cancelled => MessageState::Cancelled,
    };
    // No run may be sending this campaign while its messages change.
    let lease = Lease::acquire(&store, campaign.id, campaign.name.as_str()).await?;
    let requeued = async {
        let n = store.count_in_state(campaign.id, state).await?;
        if n == 0 {
            crate::outln!(
                "No message of campaign {} is {state}; nothing to re-queue.",
                campaign.name
            );
        } else if args.yes || confirm(n, state, campaign.name.as_str())? {
            let done = store.requeue(campaign.id, state, now_ms()).await?;
            crate::outln!(
                "Re-queued {done} message(s) that were {state}. Send them with:\n  bpsms send --campaign {}",
                shell_word(campaign.name.as_str())
            );
        } else {
            crate::outln!("Nothing re-queued.");
        }
        Ok::<_, Failure>(Outcome::Done)
    }
    .await;
    lease.release().await;
    store.close().await;
    requeued
}

/// Asks before re-queueing `n` messages in `state`.
fn confirm(n: i64, state: MessageState, campaign: &str) -> Result<bool, Failure> {
    let warning = if state == MessageState::Unknown {
        " Some of them may have been delivered already: their recipients would get the text twice."
    } else {
        ""
    };
    ask(
        &format!(
            "Re-queue {n} message(s) of campaign {campaign} that are {state}, to be sent again?{warning}"
        ),
        &format!("{n} message(s) of campaign {campaign:?} are {state}; pass --yes to re-queue them"),
    )
}
