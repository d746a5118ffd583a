//! The runners table behind `crate::lease`: which process runs a campaign,
//! taken over only from the owner last seen, kept alive by heartbeats.

use sqlx::Row;

use super::{Result, Runner, Store};

impl Store {
    /// The process recorded as running the campaign, if any.
    pub async fn runner(&self, campaign_id: i64) -> Result<Option<Runner>> {
        let row = sqlx::query("SELECT * FROM runners WHERE campaign_id = ?")
            .bind(campaign_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Runner::from_row(&row)).transpose()
    }

    /// Records `me` as the campaign's runner if the recorded owner is still
    /// `replacing` (`None`: no runner recorded). False when another process
    /// got there first.
    pub async fn take_runner(
        &self,
        campaign_id: i64,
        me: &Runner,
        replacing: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let current: Option<String> =
            sqlx::query("SELECT owner FROM runners WHERE campaign_id = ?")
                .bind(campaign_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
        if current.as_deref() != replacing {
            return Ok(false);
        }
        sqlx::query(
            "INSERT OR REPLACE INTO runners (campaign_id, owner, host, pid, started_at, heartbeat_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(campaign_id)
        .bind(&me.owner)
        .bind(&me.host)
        .bind(i64::from(me.pid))
        .bind(me.started_at)
        .bind(me.heartbeat_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Refreshes the runner's heartbeat; false when it is no longer the runner.
    pub async fn heartbeat(&self, campaign_id: i64, owner: &str, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE runners SET heartbeat_at = ? WHERE campaign_id = ? AND owner = ?")
                .bind(now)
                .bind(campaign_id)
                .bind(owner)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_runner(&self, campaign_id: i64, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM runners WHERE campaign_id = ? AND owner = ?")
            .bind(campaign_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::campaign_of;

    fn runner(owner: &str, at: i64) -> Runner {
        Runner {
            owner: owner.into(),
            host: "h".into(),
            pid: 7,
            started_at: at,
            heartbeat_at: at,
        }
    }

    /// A runner is taken only from the owner the taker saw, beats only while
    /// it is the runner, and is released only by itself.
    #[tokio::test]
    async fn a_runner_is_taken_from_the_owner_seen_and_released_by_itself() {
        let (_dir, store, campaign_id) = campaign_of(1).await;
        let current = || store.runner(campaign_id);
        let beat = |owner: &'static str, at| store.heartbeat(campaign_id, owner, at);
        let release = |owner: &'static str| store.release_runner(campaign_id, owner);
        assert_eq!(current().await.expect("runner"), None);
        let first = runner("a", 1);
        assert!(store
            .take_runner(campaign_id, &first, None)
            .await
            .expect("take"));
        assert_eq!(current().await.expect("runner"), Some(first));
        // Another process that also saw no runner got there too late.
        let second = runner("b", 2);
        assert!(!store
            .take_runner(campaign_id, &second, None)
            .await
            .expect("late"));
        assert!(beat("a", 3).await.expect("beat"));
        assert!(!beat("b", 3).await.expect("not the runner"));
        // Taking over from the owner seen works, and the old owner is out.
        assert!(store
            .take_runner(campaign_id, &second, Some("a"))
            .await
            .expect("take over"));
        assert!(!beat("a", 4).await.expect("replaced"));
        release("a").await.expect("release");
        assert_eq!(current().await.expect("runner"), Some(second));
        release("b").await.expect("release");
        assert_eq!(current().await.expect("runner"), None);
    }
}
