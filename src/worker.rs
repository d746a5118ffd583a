//! The scaffolding both worker loops share: the cap on requests in flight,
//! the tasks that carry them, the first error that stops the run, and the
//! loop that calls a worker's step and waits, without spinning, while it
//! is idle.
//!
//! A worker ([`crate::sender`], [`crate::tracker`]) is a [`Worker::step`]
//! that is given a free request slot and the time, and says what it did.
//! Only the loop waits: a stop cuts its waits short, never a step, so a
//! claimed message always reaches a request or goes back to the queue.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Now;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Something was done (a request started, a batch claimed): step again.
    Worked,
    /// Pacing holds the next request until `until`.
    Paced { until: Instant },
    /// Nothing to do before `until`, unless the worker is woken sooner.
    Idle { until: Instant },
    /// Nothing is left to do.
    Done,
}

/// One worker loop's step, and what wakes it when it is idle.
pub trait Worker {
    type Error: Send;

    /// Does the next piece of work at `now`, holding one free request slot
    /// (`slot`), which a started request keeps until it is answered.
    fn step(
        &mut self,
        slot: OwnedSemaphorePermit,
        now: Now,
    ) -> impl Future<Output = Result<Step, Self::Error>> + Send;

    /// Resolves when new work may have appeared before an idle deadline.
    fn woken(&self) -> impl Future<Output = ()> + Send;

    /// The harness this worker's requests run on.
    fn harness(&self) -> &Harness<Self::Error>;
}

/// Requests in flight, their cap, and the first error that stops the run.
pub struct Harness<E> {
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    /// The first error that must stop the run; later ones are its echoes.
    first_error: Mutex<Option<E>>,
    stopped: CancellationToken,
}

impl<E> Harness<E> {
    /// A harness that lets at most `concurrency` requests be in flight.
    pub fn new(concurrency: u32) -> Harness<E> {
        Harness {
            slots: Arc::new(Semaphore::new(concurrency.max(1) as usize)),
            tasks: TaskTracker::new(),
            first_error: Mutex::new(None),
            stopped: CancellationToken::new(),
        }
    }

    /// Runs a request; it holds its slot until the task drops it.
    pub fn spawn(&self, request: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(request);
    }

    /// Requests still running.
    pub fn in_flight(&self) -> usize {
        self.tasks.len()
    }

    /// Stops the run: the loop leaves at its next wait, and `error` is what
    /// the run returns unless an earlier error came first.
    pub fn stop_with(&self, error: E) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
        self.stopped.cancel();
    }

    /// A free request slot, for a test that drives a step by hand.
    #[cfg(test)]
    pub fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Waits for the requests in flight, then returns the run's result: the
    /// loop's own error first, else the first one a request stopped it with.
    pub async fn finish(&self, result: Result<(), E>) -> Result<(), E> {
        self.tasks.close();
        self.tasks.wait().await;
        let first = self
            .first_error
            .lock()
            .map(|mut e| e.take())
            .unwrap_or(None);
        match (result, first) {
            (Err(error), _) | (Ok(()), Some(error)) => Err(error),
            (Ok(()), None) => Ok(()),
        }
    }
}

/// Steps `worker` until it is done, `cancel` fires, or an error stops the
/// run. Requests still in flight are left to [`Harness::finish`].
pub async fn run<W: Worker>(worker: &mut W, cancel: &CancellationToken) -> Result<(), W::Error> {
    let stopped = worker.harness().stopped.clone();
    let halt = || async {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = stopped.cancelled() => {}
        }
    };
    loop {
        if cancel.is_cancelled() || stopped.is_cancelled() {
            return Ok(());
        }
        let slots = worker.harness().slots.clone();
        let slot = tokio::select! {
            // The semaphore is never closed.
            slot = slots.acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
            _ = halt() => return Ok(()),
        };
        match worker.step(slot, Now::read()).await? {
            Step::Worked => {}
            Step::Done => return Ok(()),
            // A paced wait does not listen for new work: it would only wake
            // the loop to find the turn still ahead.
            Step::Paced { until } => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = halt() => return Ok(()),
                }
            }
            Step::Idle { until } => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = worker.woken() => {}
                    _ = halt() => return Ok(()),
                }
            }
        }
    }
}

/// What the workers' tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    use crate::api::{ApiClient, ApiConfig};
    use crate::recorder::Recorder;
    use crate::store::ClaimKind;
    use crate::store::Store;

    /// A worker's surroundings: an empty store in a scratch directory (kept
    /// as long as `dir` lives), a recorder on it, and a client for an
    /// address where nothing listens.
    pub struct Rig<C: ClaimKind> {
        pub store: Store,
        pub recorder: Recorder<C>,
        pub api: Arc<ApiClient>,
        pub dir: tempfile::TempDir,
    }

    pub async fn rig<C: ClaimKind>() -> Rig<C> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("store");
        let (recorder, _task) = Recorder::start(store.clone(), CancellationToken::new());
        let api = ApiClient::new(ApiConfig {
            base_url: "http://127.0.0.1:9".into(),
            client_id: "x".into(),
            client_secret: crate::secret::SecretString::new("y".into()),
            scope: "127.0.0.1".into(),
            send_tenant_field: false,
            media_key: Default::default(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        })
        .expect("client");
        Rig {
            store,
            recorder,
            api: Arc::new(api),
            dir,
        }
    }
}
