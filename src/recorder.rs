//! Group commit: workers hand their [`Change`]s to one recorder task, which
//! writes whatever has queued up in one transaction. One commit then covers
//! many answers, which is what lets a campaign go faster than the disk's
//! fsync rate. The workers' claims ride in the same transactions, so a
//! claim never waits for the database behind the answers.
//!
//! Both workers claim this way, each through its own recorder: the sender
//! needs it (a claim made beside the recorder would wait for the one
//! connection behind its transactions, which costs the send rate), and the
//! tracker then follows the same path rather than a second one.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::store::{Change, ClaimKind, Store, StoreError};

/// Most changes written in one transaction.
const MAX_BATCH: usize = 1024;

/// The workers' side of one recorder, whose claims are `C`.
pub struct Recorder<C: ClaimKind> {
    tx: mpsc::UnboundedSender<Item<C>>,
    applied: Arc<Notify>,
}

enum Item<C: ClaimKind> {
    Change(Change),
    Claim(C, oneshot::Sender<Vec<C::Claimed>>),
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The running recorder task; [`RecorderTask::finish`] flushes and stops it.
pub struct RecorderTask {
    handle: JoinHandle<Result<(), StoreError>>,
}

impl<C: ClaimKind> Recorder<C> {
    /// Starts the recorder task; a failed write cancels `stop_on_error`, so
    /// the workers stop instead of sending what can no longer be recorded.
    pub fn start(store: Store, stop_on_error: CancellationToken) -> (Recorder<C>, RecorderTask) {
        let (tx, rx) = mpsc::unbounded_channel();
        let applied = Arc::new(Notify::new());
        let handle = tokio::spawn(record(store, rx, applied.clone(), stop_on_error));
        (Recorder { tx, applied }, RecorderTask { handle })
    }

    /// Queues a change. If the recorder died (a database error), the change
    /// is dropped here and the error surfaces from [`RecorderTask::finish`];
    /// the message stays in its previous state in the database.
    pub fn record(&self, change: Change) {
        let _ = self.tx.send(Item::Change(change));
    }

    /// Claims in the next transaction, after the changes queued before this
    /// call. Resolves to what was claimed, or to an error when the recorder
    /// died (its own error, the cause, comes from [`RecorderTask::finish`]).
    pub fn claim(
        &self,
        claim: C,
    ) -> impl Future<Output = Result<Vec<C::Claimed>, StoreError>> + Send + Sync + 'static {
        let (reply, claimed) = oneshot::channel();
        let _ = self.tx.send(Item::Claim(claim, reply));
        async move {
            claimed.await.map_err(|_| {
                StoreError::Corrupt("the recorder stopped before the claim was made".into())
            })
        }
    }

    /// Waits until every change queued before this call is written (or the
    /// recorder died).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }

    /// Resolves after the next batch has been written.
    pub async fn applied(&self) {
        self.applied.notified().await;
    }
}

impl RecorderTask {
    /// Waits until every change sent so far is written. All [`Recorder`]
    /// handles must have been dropped first.
    pub async fn finish(self) -> Result<(), StoreError> {
        match self.handle.await {
            Ok(result) => result,
            Err(join_error) => Err(StoreError::Corrupt(format!(
                "the recorder task stopped: {join_error}"
            ))),
        }
    }
}

async fn record<C: ClaimKind>(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<Item<C>>,
    applied: Arc<Notify>,
    stop_on_error: CancellationToken,
) -> Result<(), StoreError> {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut changes = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    let (mut claims, mut replies) = (Vec::new(), Vec::new());
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        for item in items.drain(..) {
            match item {
                Item::Change(change) => changes.push(change),
                Item::Claim(claim, reply) => {
                    claims.push(claim);
                    replies.push(reply);
                }
                Item::Flush(done) => flushes.push(done),
            }
        }
        let wrote = !changes.is_empty();
        let result = store.apply_and_claim(&changes, &claims, now_ms()).await;
        changes.clear();
        claims.clear();
        let result = result.map(|claimed| {
            for (reply, messages) in replies.drain(..).zip(claimed) {
                let _ = reply.send(messages);
            }
        });
        // Only real writes wake the workers: a flush alone must not, or an
        // idle loop that flushes would spin.
        if wrote {
            applied.notify_one();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if let Err(error) = result {
            stop_on_error.cancel();
            rx.close();
            return Err(error);
        }
    }
    Ok(())
}
