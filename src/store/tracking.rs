//! Tracking accepted messages: claiming the polls that are due, applying a
//! changed tracking window, freeing the polls a dead run left in flight, and
//! saying when the next poll is due. The answers to polls are written by
//! `answers`.

use sqlx::{Row, Sqlite, Transaction};

use super::{DueMessage, Result, Store};

/// Polls to claim: up to `limit` messages of the campaign whose poll is due
/// at `now` (the tracker's reading of the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueClaim {
    pub campaign_id: i64,
    pub now: i64,
    pub limit: usize,
}

/// Marks due messages `poll_claimed`, so that they are not claimed twice
/// while their Get is in flight; answers clear the mark, and so does
/// [`Store::recover_polls`]. Runs in the answers' transaction
/// ([`Store::apply_and_claim`]).
pub(super) async fn claim_due_in(
    tx: &mut Transaction<'static, Sqlite>,
    claim: &DueClaim,
) -> Result<Vec<DueMessage>> {
    let rows = sqlx::query(
        "UPDATE messages SET poll_claimed = 1
         WHERE id IN (SELECT id FROM messages
                      WHERE campaign_id = ? AND next_poll_at IS NOT NULL AND next_poll_at <= ?
                        AND poll_claimed = 0
                      ORDER BY next_poll_at LIMIT ?)
         RETURNING id, sid, kind, state, polls, track_until",
    )
    .bind(claim.campaign_id)
    .bind(claim.now)
    .bind(i64::try_from(claim.limit).unwrap_or(i64::MAX))
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(DueMessage::from_row).collect()
}

impl Store {
    /// MMS that ended at `sent` (the API never reports their delivery).
    pub async fn count_mms_sent(&self, campaign_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = ? AND kind = 'mms' AND state = 'sent'",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Accepted messages still waiting for a final status.
    pub async fn count_tracked(&self, campaign_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = ? AND next_poll_at IS NOT NULL",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Applies a changed tracking window to messages still tracked.
    pub async fn retrack(&self, campaign_id: i64, track_for_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET track_until = sent_at + ?, next_poll_at = MIN(next_poll_at, sent_at + ?)
             WHERE campaign_id = ? AND next_poll_at IS NOT NULL",
        )
        .bind(track_for_ms)
        .bind(track_for_ms)
        .bind(campaign_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Polls a dead run left in flight become claimable again.
    pub async fn recover_polls(&self, campaign_id: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE messages SET poll_claimed = 0
             WHERE campaign_id = ? AND next_poll_at IS NOT NULL AND poll_claimed = 1",
        )
        .bind(campaign_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// When the next unclaimed poll of the campaign is due, if any.
    pub async fn next_poll_at(&self, campaign_id: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(next_poll_at) FROM messages
             WHERE campaign_id = ? AND next_poll_at IS NOT NULL AND poll_claimed = 0",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::ids::MessageSid;
    use crate::domain::state::{MessageKind, MessageState};
    use crate::store::testing::{
        accept_all, accepted, campaign_of, campaign_with, claim_batch, pending_row,
    };
    use crate::store::{Change, DueClaim, DueMessage, Store};

    /// Claims due polls the way the tracker does: in an answers'
    /// transaction, here one without answers.
    async fn claim_due(store: &Store, campaign_id: i64, now: i64, limit: usize) -> Vec<DueMessage> {
        let claim = DueClaim {
            campaign_id,
            now,
            limit,
        };
        let claimed = store.apply_and_claim(&[], &[claim], now).await;
        claimed.expect("claim due").pop().unwrap_or_default()
    }

    async fn next_poll(store: &Store, campaign_id: i64) -> Option<i64> {
        store.next_poll_at(campaign_id).await.expect("next poll")
    }

    /// A due claim sees the answers applied in its own transaction, claims
    /// only what is due at its `now`, and never the same poll twice.
    #[tokio::test]
    async fn due_polls_are_claimed_in_the_answers_transaction() {
        let (_dir, store, campaign_id) = campaign_of(3).await;
        let claimed = claim_batch(&store, campaign_id, 3, 5).await;
        assert_eq!(claimed.len(), 3);
        let due = |now| DueClaim {
            campaign_id,
            now,
            limit: 10,
        };
        let claimed = store
            .apply_and_claim(&[accepted(1), accepted(2)], &[due(19), due(20)], 10)
            .await
            .expect("apply and claim");
        let ids =
            |messages: &[DueMessage]| messages.iter().map(|m| m.message_id).collect::<Vec<_>>();
        assert_eq!(claimed.len(), 2);
        assert!(claimed[0].is_empty(), "nothing is due before next_poll_at");
        assert_eq!(ids(&claimed[1]), [1, 2]);
        let again = store
            .apply_and_claim(&[accepted(3)], &[due(30)], 10)
            .await
            .expect("claim again");
        assert_eq!(ids(&again[0]), [3], "claimed polls are not claimed twice");
    }

    /// A due poll is claimed once; a dead run's claims are freed; the next
    /// poll is the earliest unclaimed one.
    #[tokio::test]
    async fn due_polls_are_claimed_once_until_recovered() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        accept_all(&store, campaign_id).await;
        assert_eq!(store.count_tracked(campaign_id).await.expect("tracked"), 2);
        assert_eq!(next_poll(&store, campaign_id).await, Some(20));
        assert!(claim_due(&store, campaign_id, 19, 10).await.is_empty());

        let first = claim_due(&store, campaign_id, 20, 1).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].sid.as_str(), "SM1");
        assert_eq!(first[0].kind, MessageKind::Sms);
        assert_eq!(first[0].state, MessageState::Queued);
        assert_eq!((first[0].polls, first[0].track_until), (0, 1000));
        let second = claim_due(&store, campaign_id, 20, 10).await;
        assert_eq!(second.iter().map(|m| m.message_id).collect::<Vec<_>>(), [2]);
        assert_eq!(next_poll(&store, campaign_id).await, None);

        assert_eq!(store.recover_polls(campaign_id).await.expect("recover"), 2);
        assert_eq!(next_poll(&store, campaign_id).await, Some(20));
        assert_eq!(claim_due(&store, campaign_id, 20, 10).await.len(), 2);
    }

    /// A shorter tracking window moves the end of tracking and brings the
    /// next poll forward to it.
    #[tokio::test]
    async fn retracking_moves_the_window_and_the_next_poll() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        accept_all(&store, campaign_id).await;
        store.retrack(campaign_id, 5).await.expect("retrack");
        assert_eq!(next_poll(&store, campaign_id).await, Some(15));
        let due = claim_due(&store, campaign_id, 15, 10).await;
        assert_eq!(
            due.iter().map(|m| m.track_until).collect::<Vec<_>>(),
            [15, 15]
        );
        store.retrack(campaign_id, 500).await.expect("retrack");
        let track_until: Vec<i64> = sqlx::query_scalar("SELECT track_until FROM messages")
            .fetch_all(&store.pool)
            .await
            .expect("windows");
        assert_eq!(track_until, [510, 510]);
    }

    /// An MMS whose send ended at `sent` is counted apart: the API never
    /// reports its delivery.
    #[tokio::test]
    async fn mms_that_ended_at_sent_are_counted() {
        let (_dir, store, campaign_id) = campaign_with(vec![
            pending_row(1, "+14155550001", MessageKind::Mms),
            pending_row(2, "+14155550002", MessageKind::Sms),
        ])
        .await;
        claim_batch(&store, campaign_id, 2, 5).await;
        let sent = |message_id| Change::Accepted {
            message_id,
            to: MessageState::Sent,
            sid: MessageSid::parse(&format!("SM{message_id}")).expect("sid"),
            remote_status: "sent".into(),
            error_code: None,
            error_message: None,
            sent_at: 10,
            track_until: 1000,
            next_poll_at: (message_id == 2).then_some(20),
        };
        store.apply(&[sent(1), sent(2)], 10).await.expect("sent");
        assert_eq!(store.count_mms_sent(campaign_id).await.expect("mms"), 1);
        assert_eq!(store.count_tracked(campaign_id).await.expect("tracked"), 1);
    }
}
