//! One runner per campaign. A run records itself (host, pid) in the
//! `runners` table and refreshes a heartbeat while it works. A second process
//! is refused, naming the first, unless the first is gone: at once when it
//! ran on this host and its pid no longer runs bpsms, otherwise once its
//! heartbeat is older than [`STALE_AFTER`].

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::store::{Runner, Store, StoreError};

/// How often a runner refreshes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A heartbeat older than this means the runner is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "campaign {campaign:?} is being run by process {pid} on {host} (last heartbeat {age_s} s ago); \
         wait for it to finish or stop it. If that process is gone, bpsms takes over once its \
         heartbeat is {stale_s} s old",
        stale_s = STALE_AFTER.as_secs()
    )]
    Busy {
        campaign: String,
        pid: u32,
        host: String,
        age_s: i64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// This process's claim on a campaign, kept alive by a heartbeat task.
pub struct Lease {
    store: Store,
    campaign_id: i64,
    owner: String,
    stop_heartbeat: CancellationToken,
    lost: CancellationToken,
    heartbeat: JoinHandle<()>,
}

/// What to do about a recorded runner.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    TakeOver,
    Refuse,
}

/// Decides whether `existing` still holds the campaign (pure, tested alone).
pub fn judge(
    existing: &Runner,
    my_host: &str,
    now: i64,
    is_running: impl Fn(u32) -> bool,
) -> Verdict {
    let stale =
        now - existing.heartbeat_at > i64::try_from(STALE_AFTER.as_millis()).unwrap_or(i64::MAX);
    let dead_here = existing.host == my_host && !is_running(existing.pid);
    if stale || dead_here {
        Verdict::TakeOver
    } else {
        Verdict::Refuse
    }
}

impl Lease {
    /// Claims the campaign for this process, or says who holds it.
    pub async fn acquire(
        store: &Store,
        campaign_id: i64,
        campaign: &str,
    ) -> Result<Lease, LeaseError> {
        let host = host_name();
        let pid = std::process::id();
        let now = now_ms();
        let me = Runner {
            owner: format!("{host}:{pid}:{now}"),
            host: host.clone(),
            pid,
            started_at: now,
            heartbeat_at: now,
        };
        // Two rounds: a runner found dead may be replaced by a third process
        // between our read and our write; then we look again.
        for _ in 0..2 {
            let existing = store.runner(campaign_id).await?;
            let replacing = match &existing {
                None => None,
                Some(other) => match judge(other, &host, now_ms(), pid_runs_bpsms) {
                    Verdict::TakeOver => {
                        tracing::warn!(
                            pid = other.pid,
                            host = %other.host,
                            "taking over campaign {campaign:?} from a runner that is gone"
                        );
                        Some(other.owner.as_str())
                    }
                    Verdict::Refuse => {
                        return Err(LeaseError::Busy {
                            campaign: campaign.to_string(),
                            pid: other.pid,
                            host: other.host.clone(),
                            age_s: (now_ms() - other.heartbeat_at).max(0) / 1000,
                        })
                    }
                },
            };
            if store.take_runner(campaign_id, &me, replacing).await? {
                return Ok(Lease::start(store.clone(), campaign_id, me.owner));
            }
        }
        let other = store.runner(campaign_id).await?;
        Err(LeaseError::Busy {
            campaign: campaign.to_string(),
            pid: other.as_ref().map_or(0, |r| r.pid),
            host: other.map_or_else(|| "?".into(), |r| r.host),
            age_s: 0,
        })
    }

    fn start(store: Store, campaign_id: i64, owner: String) -> Lease {
        let stop_heartbeat = CancellationToken::new();
        let lost = CancellationToken::new();
        let heartbeat = tokio::spawn(beat(
            store.clone(),
            campaign_id,
            owner.clone(),
            stop_heartbeat.clone(),
            lost.clone(),
        ));
        Lease {
            store,
            campaign_id,
            owner,
            stop_heartbeat,
            lost,
            heartbeat,
        }
    }

    /// Fires if another process took the campaign over (our heartbeat
    /// stalled past [`STALE_AFTER`]): the run must stop.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Stops the heartbeat and removes our record.
    pub async fn release(self) {
        self.stop_heartbeat.cancel();
        let _ = self.heartbeat.await;
        if let Err(error) = self
            .store
            .release_runner(self.campaign_id, &self.owner)
            .await
        {
            tracing::warn!("could not release the campaign: {error}");
        }
    }
}

async fn beat(
    store: Store,
    campaign_id: i64,
    owner: String,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        match store.heartbeat(campaign_id, &owner, now_ms()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!("another process took this campaign over; stopping");
                lost.cancel();
                return;
            }
            // A busy or full disk: keep trying; the run itself reports it.
            Err(error) => tracing::warn!("heartbeat not written: {error}"),
        }
    }
}

/// This machine's name, for telling runners apart.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// True when `pid` is a running bpsms process, or when that cannot be told
/// (no `/proc`): then only the heartbeat decides.
fn pid_runs_bpsms(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim().starts_with("bpsms"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(host: &str, heartbeat_at: i64) -> Runner {
        Runner {
            owner: format!("{host}:1:0"),
            host: host.into(),
            pid: 4242,
            started_at: 0,
            heartbeat_at,
        }
    }

    /// What this process on host `a` decides at `now` about a runner on
    /// `host` whose pid is `alive` or not.
    fn verdict(host: &str, heartbeat_at: i64, now: i64, alive: bool) -> Verdict {
        judge(&runner(host, heartbeat_at), "a", now, |_| alive)
    }

    #[test]
    fn a_live_runner_keeps_its_campaign() {
        assert_eq!(verdict("a", 1_000, 5_000, true), Verdict::Refuse);
        assert_eq!(verdict("b", 1_000, 5_000, false), Verdict::Refuse);
    }

    #[test]
    fn a_dead_runner_on_this_host_is_replaced_at_once() {
        assert_eq!(verdict("a", 1_000, 1_500, false), Verdict::TakeOver);
    }

    #[test]
    fn a_stale_heartbeat_is_replaced_anywhere() {
        assert_eq!(verdict("b", 0, 30_001, true), Verdict::TakeOver);
        assert_eq!(verdict("b", 0, 30_000, true), Verdict::Refuse);
    }

    #[tokio::test]
    async fn a_second_process_is_refused_and_the_first_can_release() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("store");
        let first = Lease::acquire(&store, 1, "c").await.expect("first lease");
        // Same pid and host: the recorded runner is alive (it is us).
        let refused = Lease::acquire(&store, 1, "c").await;
        assert!(matches!(refused, Err(LeaseError::Busy { .. })));
        first.release().await;
        let again = Lease::acquire(&store, 1, "c")
            .await
            .expect("lease after release");
        again.release().await;
    }
}
