//! The BPCC SMS/MMS API simulator behind `bpsms mock-server` and `bpsms demo`.
//!
//! It owns a faithful, seeded imitation of the three vendor endpoints (token,
//! Send Message, Get Message) as the spec's §12 describes them: documented
//! behaviour by default, plus switchable quirks and fault injection. It also
//! keeps a ledger of every accepted Send, so that tests can prove a message
//! was never sent twice, and serves it with counters at the simulator-only
//! paths `/_mock/ledger` and `/_mock/stats`.
//!
//! Error bodies, validation rules and fault pages are our inventions for
//! testing (spec §11 gap 1): the client must not depend on their shape.
//!
//! The sending path never imports this module; the simulator only shares the
//! wire types of [`crate::api::wire`] with it.
//!
//! - [`behaviour`]: the CLI flags and the validated knobs.
//! - `state`: tokens, messages, ledger, seeded generators, counters.
//! - `handlers`: the routes, fault injection and quirks.

pub mod behaviour;
mod handlers;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use behaviour::{Behaviour, MockArgs, RetryAfter};
pub use handlers::{router, LEDGER_PATH, STATS_PATH};
pub use state::{LedgerEntry, SimState, Stats, ACCOUNT_SID};

/// Serves the simulator on `listener` until `shutdown` resolves.
///
/// Requests in flight finish (slow answers are cut short) before it returns.
pub async fn run(
    listener: TcpListener,
    behaviour: Behaviour,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, SimState::new(behaviour), shutdown).await
}

async fn serve(
    listener: TcpListener,
    state: SimState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cancel = state.shutdown_token().clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "mock BPCC server listening");
    }
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                () = shutdown => {}
                () = cancel.cancelled() => {}
            }
            // Wake any answer that is sleeping on a slow fault or latency.
            cancel.cancel();
        })
        .await
}

/// A simulator running in the background on `127.0.0.1` and a free port.
///
/// Used by `bpsms demo` and the tests. Dropping it stops the server too;
/// [`RunningSimulator::shutdown`] also waits for it to finish.
pub struct RunningSimulator {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, for reading the ledger and counters in-process.
    pub state: SimState,
    /// The server task, until `shutdown` takes it.
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSimulator {
    /// Binds `127.0.0.1:0` and serves `behaviour` in a background task.
    pub async fn start(behaviour: Behaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = SimState::new(behaviour);
        let task = tokio::spawn(serve(listener, state.clone(), std::future::pending()));
        Ok(RunningSimulator {
            addr,
            state,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, to use as the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits (at most a few seconds) for it to finish.
    pub async fn shutdown(mut self) {
        self.state.shutdown_token().cancel();
        let Some(mut task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "mock server stopped with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "mock server task failed"),
            Err(_) => {
                tracing::warn!("mock server did not stop within 5 s; aborting it");
                task.abort();
            }
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.state.shutdown_token().cancel();
    }
}

#[cfg(test)]
mod tests;
