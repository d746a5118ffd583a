//! `bpsms mock-server`: the BPCC simulator on a port of the operator's
//! choosing, until Ctrl-C.

use anyhow::{anyhow, Context};

use super::exit::{Failure, Outcome};
use crate::mock::{self, MockArgs};

pub(super) async fn run(args: MockArgs) -> Result<Outcome, Failure> {
    let behaviour = args.behaviour().map_err(|e| Failure::usage(anyhow!(e)))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    crate::errln!("BPCC simulator listening on http://{addr} (Ctrl-C to stop)");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    mock::run(listener, behaviour, shutdown).await?;
    Ok(Outcome::Done)
}
