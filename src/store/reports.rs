//! What reports read: messages per state, delivery-time quantiles, the
//! rows a check previews, segment totals and export pages.

use sqlx::Row;

use super::{parse_column, ExportRow, Result, SampleMessage, Store};
use crate::domain::state::{MessageState, ALL_STATES};

impl Store {
    /// states with no message left out.
    pub async fn state_counts(&self, campaign_id: i64) -> Result<Vec<(MessageState, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) FROM messages WHERE campaign_id = ? GROUP BY state",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?;
        let mut counts = rows
            .iter()
            .map(|row| {
                Ok((
                    parse_column::<MessageState>(row, "state")?,
                    row.try_get::<i64, _>(1)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        counts.sort_by_key(|(state, _)| ALL_STATES.iter().position(|s| s == state));
        Ok(counts)
    }

    /// The `q` quantile (0..=1) of the time from accepted send to final state,
    /// in milliseconds, over messages that reached a final state after being
    /// accepted. Computed in SQL so memory does not grow with the campaign.
    pub async fn delivery_time_quantile(&self, campaign_id: i64, q: f64) -> Result<Option<i64>> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = ? AND sent_at IS NOT NULL
             AND final_at IS NOT NULL AND state IN ('delivered', 'failed', 'sent')",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        if n == 0 {
            return Ok(None);
        }
        // Nearest-rank quantile.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as i64).clamp(1, n);
        let row = sqlx::query(
            "SELECT final_at - sent_at FROM messages WHERE campaign_id = ? AND sent_at IS NOT NULL
             AND final_at IS NOT NULL AND state IN ('delivered', 'failed', 'sent')
             ORDER BY final_at - sent_at LIMIT 1 OFFSET ?",
        )
        .bind(campaign_id)
        .bind(rank - 1)
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(row.try_get(0)?))
    }

    /// The first `limit` messages in one of `states`, in row order, with
    /// their text: what a check shows.
    pub async fn sample_messages(
        &self,
        campaign_id: i64,
        states: &[MessageState],
        limit: i64,
    ) -> Result<Vec<SampleMessage>> {
        let placeholders = vec!["?"; states.len()].join(", ");
        let sql = format!(
            "SELECT row_number, phone_raw, phone_e164, kind, state, reason, body, segments, encoding
             FROM messages WHERE campaign_id = ? AND state IN ({placeholders})
             ORDER BY row_number LIMIT ?"
        );
        let mut query = sqlx::query(&sql).bind(campaign_id);
        for state in states {
            query = query.bind(state.as_str());
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(SampleMessage::from_row).collect()
    }

    /// Total SMS segments of the messages in `state`.
    pub async fn segments_in_state(&self, campaign_id: i64, state: MessageState) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(segments), 0) FROM messages WHERE campaign_id = ? AND state = ?",
        )
        .bind(campaign_id)
        .bind(state.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Up to `limit` export rows with a row number above `after_row`, in row
    /// order (keyset pagination keeps memory flat on big campaigns).
    pub async fn export_page(
        &self,
        campaign_id: i64,
        after_row: i64,
        limit: i64,
    ) -> Result<Vec<ExportRow>> {
        let rows = sqlx::query(
            "SELECT row_number, phone_raw, phone_e164, kind, state, reason, remote_status, sid,
                    error_code, error_message, segments, encoding, attempts, sent_at, final_at
             FROM messages WHERE campaign_id = ? AND row_number > ?
             ORDER BY row_number LIMIT ?",
        )
        .bind(campaign_id)
        .bind(after_row)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ExportRow::from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::state::MessageState as S;
    use crate::store::testing::{accept_all, campaign_of, fail_all, polled};

    /// Counts come in report order; delivery times are nearest-rank
    /// quantiles over final messages only.
    #[tokio::test]
    async fn counts_and_delivery_times_cover_final_messages() {
        let (_dir, store, campaign_id) = campaign_of(4).await;
        assert_eq!(
            store
                .delivery_time_quantile(campaign_id, 0.5)
                .await
                .expect("none yet"),
            None
        );
        let ids = accept_all(&store, campaign_id).await;
        // Three of four are delivered, 100, 200 and 300 ms after their send.
        for (&message_id, now) in ids[..3].iter().zip([110, 210, 310]) {
            let delivered = polled(message_id, S::Queued, S::Delivered);
            store.apply(&[delivered], now).await.expect("delivered");
        }
        assert_eq!(
            store.state_counts(campaign_id).await.expect("counts"),
            vec![(S::Queued, 1), (S::Delivered, 3)]
        );
        let quantile = |q| store.delivery_time_quantile(campaign_id, q);
        assert_eq!(quantile(0.0).await.expect("min"), Some(100));
        assert_eq!(quantile(0.5).await.expect("median"), Some(200));
        assert_eq!(quantile(1.0).await.expect("max"), Some(300));
        let segments = |state| store.segments_in_state(campaign_id, state);
        assert_eq!(segments(S::Delivered).await.expect("some"), 3);
        assert_eq!(segments(S::Failed).await.expect("none"), 0);
    }

    /// Samples and export pages come in row order; pages continue after the
    /// last row seen.
    #[tokio::test]
    async fn samples_and_export_pages_follow_row_order() {
        let (_dir, store, campaign_id) = campaign_of(5).await;
        let ids = accept_all(&store, campaign_id).await;
        fail_all(&store, &ids).await;
        store
            .requeue(campaign_id, S::Failed, 50)
            .await
            .expect("requeue");
        let sample = store
            .sample_messages(campaign_id, &[S::Pending, S::Invalid], 2)
            .await
            .expect("sample");
        assert_eq!(sample.iter().map(|m| m.row).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(sample[0].body, "row 1");
        assert_eq!(sample[0].state, S::Pending);

        let first = store.export_page(campaign_id, 0, 3).await.expect("page");
        assert_eq!(first.iter().map(|r| r.row).collect::<Vec<_>>(), [1, 2, 3]);
        let rest = store.export_page(campaign_id, 3, 3).await.expect("page");
        assert_eq!(rest.iter().map(|r| r.row).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(rest[0].phone_e164.as_deref(), Some("+14155550004"));
        assert_eq!((rest[0].state.as_str(), rest[0].attempts), ("pending", 1));
        assert!(store
            .export_page(campaign_id, 5, 3)
            .await
            .expect("end")
            .is_empty());
    }
}
