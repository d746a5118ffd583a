//! Campaigns: finding one by name, listing them, and storing the settings a
//! run used. Creating one is part of the import (`import`).

use sqlx::{Sqlite, Transaction};

use super::{Campaign, CampaignSettings, Result, SendRules, Store};
use crate::clock::duration_ms;
use crate::domain::ids::CampaignName;

impl Store {
    pub async fn find_campaign(&self, name: &CampaignName) -> Result<Option<Campaign>> {
        let row = sqlx::query("SELECT * FROM campaigns WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Campaign::from_row(&row)).transpose()
    }

    pub async fn list_campaigns(&self) -> Result<Vec<Campaign>> {
        let rows = sqlx::query("SELECT * FROM campaigns ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Campaign::from_row).collect()
    }

    /// Stores the settings and rules a run used, so the next run reuses
    /// them.
    pub async fn update_settings(
        &self,
        campaign_id: i64,
        settings: &CampaignSettings,
        rules: &SendRules,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        store_rules(&mut tx, campaign_id, rules).await?;
        sqlx::query(
            "UPDATE campaigns SET rate = ?, concurrency = ?, poll_delay_ms = ?, track_for_ms = ?,
             on_ambiguous = ? WHERE id = ?",
        )
        .bind(settings.rate)
        .bind(i64::from(settings.concurrency))
        .bind(duration_ms(settings.poll_delay))
        .bind(duration_ms(settings.track_for))
        .bind(settings.on_ambiguous.as_str())
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Writes a campaign's [`SendRules`] in the caller's transaction.
pub(super) async fn store_rules(
    tx: &mut Transaction<'static, Sqlite>,
    campaign_id: i64,
    rules: &SendRules,
) -> Result<()> {
    sqlx::query(
        "UPDATE campaigns SET windows = ?, timezone = ?, stop_before_ms = ?, start_at = ?,
           not_after = ?, from_number = ?, rate_per_from = ?, rate_unit = ?, max_per_day = ?
         WHERE id = ?",
    )
    .bind(&rules.windows)
    .bind(&rules.timezone)
    .bind(duration_ms(rules.stop_before))
    .bind(rules.start_at)
    .bind(rules.not_after)
    .bind(rules.stored_senders())
    .bind(rules.rate_per_from)
    .bind(rules.rate_unit.as_str())
    .bind(
        rules
            .max_per_day
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    )
    .bind(campaign_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::phone::E164;
    use crate::domain::state::AmbiguousPolicy;
    use crate::domain::text::RateUnit;
    use crate::store::testing::{campaign_of, new_campaign};

    #[tokio::test]
    async fn campaigns_are_found_by_name_and_keep_new_settings() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        let name = |raw| CampaignName::parse(raw).expect("name");
        let found = store
            .find_campaign(&name("t"))
            .await
            .expect("find")
            .expect("t");
        assert_eq!((found.id, found.n_rows), (campaign_id, 2));
        assert_eq!(found.settings, new_campaign().settings);
        assert!(store
            .find_campaign(&name("other"))
            .await
            .expect("find")
            .is_none());

        let settings = CampaignSettings {
            rate: 2.5,
            concurrency: 9,
            poll_delay: Duration::from_millis(1500),
            track_for: Duration::from_secs(7200),
            on_ambiguous: AmbiguousPolicy::Retry,
        };
        let rules = SendRules {
            windows: "mon-fri=09:00-20:00".into(),
            timezone: "America/Chicago".into(),
            stop_before: Duration::from_secs(1800),
            start_at: Some(1_000),
            not_after: Some(2_000),
            senders: vec![
                E164::from_stored("+16505550100").expect("number"),
                E164::from_stored("+16505550101").expect("number"),
            ],
            rate_per_from: Some(1.5),
            rate_unit: RateUnit::Segments,
            max_per_day: Some(5000),
        };
        store
            .update_settings(campaign_id, &settings, &rules)
            .await
            .expect("update");
        let listed = store.list_campaigns().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].settings, settings);
        assert_eq!(listed[0].rules, rules);
    }
}
