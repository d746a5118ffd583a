//! The send queue: claiming pending messages for sending, recovering the
//! ones a dead run left in flight, putting messages back on the operator's
//! word, and suppressing pending messages whose number is on a list.

use std::sync::{Arc, LazyLock};

use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::import::INSERT_ROWS;
use super::{events, next_state, rows, ClaimedMessage, Result, Store, StoreError};
use crate::domain::state::{AmbiguousPolicy, Event, MessageKind, MessageState, UNKNOWN_ADVICE};

impl Store {
    /// Messages of the campaign in `state`.
    pub async fn count_in_state(&self, campaign_id: i64, state: MessageState) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM messages WHERE campaign_id = ? AND state = ?")
            .bind(campaign_id)
            .bind(state.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Puts every message in `state` back to `pending` as a new attempt; the
    /// event keeps the previous sid. Returns how many were re-queued.
    pub async fn requeue(&self, campaign_id: i64, state: MessageState, now: i64) -> Result<u64> {
        next_state(state, MessageKind::Sms, &Event::Retry)?;
        let mut tx = self.begin().await?;
        events::keep_sids(&mut tx, campaign_id, state).await?;
        sqlx::query(&events::append_sql(
            "SELECT id, 'operator retry' || COALESCE(' (previous sid ' || sid || ')', '') AS detail
             FROM messages WHERE campaign_id = ?2 AND state = ?3",
            1,
            state,
            MessageState::Pending,
        ))
        .bind(now)
        .bind(campaign_id)
        .bind(state.as_str())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE messages SET state = 'pending', reason = NULL, sid = NULL, remote_status = NULL,
               error_code = NULL, error_message = NULL, sent_at = NULL, final_at = NULL,
               next_poll_at = NULL, poll_claimed = 0, track_until = NULL, polls = 0
             WHERE campaign_id = ? AND state = ?",
        )
        .bind(campaign_id)
        .bind(state.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Messages a dead run left in `sending` become `unknown` (hold) or go
    /// back to `pending` (retry). The crashed attempt counts: under retry, a
    /// message whose claims already reached `max_attempts` is held as well,
    /// as an ambiguous answer to its last attempt would be.
    pub async fn recover_sending(
        &self,
        campaign_id: i64,
        policy: AmbiguousPolicy,
        max_attempts: i64,
        now: i64,
    ) -> Result<Recovered> {
        let held = next_state(
            MessageState::Sending,
            MessageKind::Sms,
            &Event::Recover(AmbiguousPolicy::Hold),
        )?;
        let retried = next_state(
            MessageState::Sending,
            MessageKind::Sms,
            &Event::Recover(AmbiguousPolicy::Retry),
        )?;
        // Claims count attempts, so `attempts` includes the crashed one.
        let retry_below = match policy {
            AmbiguousPolicy::Hold => 0,
            AmbiguousPolicy::Retry => max_attempts,
        };
        let held_reason = match policy {
            AmbiguousPolicy::Hold => format!("in flight when a run stopped; {UNKNOWN_ADVICE}"),
            AmbiguousPolicy::Retry => format!(
                "in flight when a run stopped, at its last attempt (--max-attempts \
                 {max_attempts}); {UNKNOWN_ADVICE}"
            ),
        };
        let mut tx = self.begin().await?;
        for (to, attempts_test) in [(held, ">="), (retried, "<")] {
            let source = format!(
                "SELECT id, 'recovered after the previous run stopped mid-send' AS detail
                 FROM messages
                 WHERE campaign_id = ?2 AND state = 'sending' AND attempts {attempts_test} ?3"
            );
            sqlx::query(&events::append_sql(&source, 1, MessageState::Sending, to))
                .bind(now)
                .bind(campaign_id)
                .bind(retry_below)
                .execute(&mut *tx)
                .await?;
        }
        let n_held = sqlx::query(
            "UPDATE messages SET state = ?, reason = ?, final_at = ?
             WHERE campaign_id = ? AND state = 'sending' AND attempts >= ?",
        )
        .bind(held.as_str())
        .bind(held_reason)
        .bind(now)
        .bind(campaign_id)
        .bind(retry_below)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let n_requeued = sqlx::query(
            "UPDATE messages SET state = ?, reason = NULL
             WHERE campaign_id = ? AND state = 'sending'",
        )
        .bind(retried.as_str())
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Recovered {
            held: n_held,
            requeued: n_requeued,
        })
    }

    /// The campaign's zone sets: id and zones (IANA names, sorted, joined
    /// by spaces; empty for set 0, the campaign's own zone).
    pub async fn zone_sets(&self, campaign_id: i64) -> Result<Vec<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT id, zones FROM zone_sets WHERE campaign_id = ? ORDER BY id")
                .bind(campaign_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Pending messages per zone set, for the sets that have any. One
    /// range of `messages_sendable` per set.
    pub async fn pending_by_zone_set(&self, campaign_id: i64) -> Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT z.id, (SELECT COUNT(*) FROM messages AS m INDEXED BY messages_sendable
                           WHERE m.campaign_id = z.campaign_id AND m.zone_set = z.id
                             AND m.state = 'pending') AS n
             FROM zone_sets AS z WHERE z.campaign_id = ? AND n > 0 ORDER BY z.id",
        )
        .bind(campaign_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Claims made on `day` (`YYYY-MM-DD` in the campaign's zone), for
    /// `--max-per-day`.
    pub async fn claimed_on(&self, campaign_id: i64, day: &str) -> Result<u64> {
        let claimed: Option<i64> =
            sqlx::query_scalar("SELECT claimed FROM daily_sends WHERE campaign_id = ? AND day = ?")
                .bind(campaign_id)
                .bind(day)
                .fetch_optional(&self.pool)
                .await?;
        Ok(claimed.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// Every message of the campaign not yet sent (`pending`) becomes
    /// `cancelled` with `reason`, each with its event, in one transaction.
    /// Returns how many.
    pub async fn cancel_pending(&self, campaign_id: i64, reason: &str, now: i64) -> Result<u64> {
        let to = next_state(MessageState::Pending, MessageKind::Sms, &Event::Cancel)?;
        let mut tx = self.begin().await?;
        sqlx::query(&events::append_sql(
            "SELECT id, ?3 AS detail FROM messages WHERE campaign_id = ?2 AND state = 'pending'",
            1,
            MessageState::Pending,
            to,
        ))
        .bind(now)
        .bind(campaign_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE messages SET state = ?, reason = ?, final_at = ?
             WHERE campaign_id = ? AND state = 'pending'",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// True while some message of the campaign is waiting to be sent.
    pub async fn has_pending(&self, campaign_id: i64) -> Result<bool> {
        let found = sqlx::query(
            "SELECT 1 FROM messages WHERE campaign_id = ? AND state = 'pending' LIMIT 1",
        )
        .bind(campaign_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// Marks `suppressed` every message of the campaign still `pending`
    /// whose number is in `numbers` (E.164, each with its reason), in one
    /// transaction. Returns how many were suppressed.
    pub async fn suppress_pending<'a>(
        &self,
        campaign_id: i64,
        numbers: impl Iterator<Item = (&'a str, String)>,
    ) -> Result<u64> {
        let mut tx = self.begin().await?;
        // One pass over the pending rows against the whole list (no index
        // on numbers: the import does not need one).
        sqlx::query(
            "CREATE TEMP TABLE suppress_list (phone TEXT PRIMARY KEY, reason TEXT NOT NULL)
             WITHOUT ROWID",
        )
        .execute(&mut *tx)
        .await?;
        let mut numbers = numbers.peekable();
        while numbers.peek().is_some() {
            let mut query = QueryBuilder::<Sqlite>::new(
                "INSERT OR IGNORE INTO temp.suppress_list (phone, reason) ",
            );
            query.push_values(
                numbers.by_ref().take(INSERT_ROWS),
                |mut b, (number, reason)| {
                    b.push_bind(number).push_bind(reason);
                },
            );
            query.build().execute(&mut *tx).await?;
        }
        let n = sqlx::query(
            "UPDATE messages SET state = 'suppressed', reason = list.reason
             FROM temp.suppress_list AS list
             WHERE messages.campaign_id = ? AND messages.state = 'pending'
               AND messages.phone_e164 = list.phone",
        )
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DROP TABLE temp.suppress_list")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// What [`Store::recover_sending`] did with the messages a dead run left
/// in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Now `unknown`: not sent again unless the operator says so.
    pub held: u64,
    /// Back to `pending`, to be sent again.
    pub requeued: u64,
}

/// Messages to claim for sending: up to `limit` pending ones among the
/// zone sets whose window is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub campaign_id: i64,
    pub limit: usize,
    /// The open zone sets, the first served first (the one whose window
    /// closes soonest, say); within a set, in row order.
    pub zone_sets: Arc<[i64]>,
    /// `--max-per-day`: the claims the day allows at most.
    pub daily_cap: Option<DailyCap>,
}

/// The claims one calendar day of the campaign's zone allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyCap {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    pub cap: u64,
}

/// The claim as one script (see [`claim_in`]); `?1` is the time, `?2` the
/// campaign, `?3` the limit, `?4` the open zone sets as a JSON array. Each
/// open set is one range of `messages_sendable`, read in the array's order
/// (the CROSS JOIN fixes it) until the limit: no scan of the messages that
/// wait for their window, and no sort.
static CLAIM_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS claimed (id INTEGER PRIMARY KEY);
         DELETE FROM temp.claimed;
         INSERT INTO temp.claimed (id)
           SELECT m.id FROM json_each(?4) AS open
             CROSS JOIN messages AS m INDEXED BY messages_sendable
           WHERE m.campaign_id = ?2 AND m.zone_set = open.value AND m.state = 'pending'
           LIMIT ?3;
         {append_events};
         UPDATE messages SET state = 'sending', attempts = attempts + 1, reason = NULL
           WHERE id IN temp.claimed AND state = 'pending';
         SELECT json_group_array(json_array(m.id, m.row_number, m.phone_e164, m.kind,
                                            m.body, m.media_urls, m.attempts, m.zone_set,
                                            m.from_number, m.segments))
           FROM temp.claimed AS c CROSS JOIN messages AS m ON m.id = c.id",
        append_events = events::append_sql(
            "SELECT id, NULL AS detail FROM temp.claimed",
            1,
            MessageState::Pending,
            MessageState::Sending,
        )
    )
});

/// Claims `claim` inside the caller's transaction: its messages become
/// `sending` with one more attempt, each with its event.
pub(super) async fn claim_in(
    tx: &mut Transaction<'static, Sqlite>,
    claim: &Claim,
    now: i64,
) -> Result<Vec<ClaimedMessage>> {
    next_state(MessageState::Pending, MessageKind::Sms, &Event::Claim)?;
    let limit = match &claim.daily_cap {
        Some(daily) => {
            let claimed: i64 = sqlx::query_scalar(
                "SELECT COALESCE((SELECT claimed FROM daily_sends
                                  WHERE campaign_id = ? AND day = ?), 0)",
            )
            .bind(claim.campaign_id)
            .bind(&daily.day)
            .fetch_one(&mut **tx)
            .await?;
            let left = daily
                .cap
                .saturating_sub(u64::try_from(claimed).unwrap_or(0));
            claim.limit.min(usize::try_from(left).unwrap_or(usize::MAX))
        }
        None => claim.limit,
    };
    if limit == 0 || claim.zone_sets.is_empty() {
        return Ok(Vec::new());
    }
    let zone_sets = serde_json::to_string(&*claim.zone_sets)
        .map_err(|e| StoreError::Corrupt(format!("the open zone sets: {e}")))?;
    // One round trip, and one row back: SQLite's thread hands each row of a
    // result over separately, which at a few hundred rows per claim cost
    // more than the claim itself. The claimed ids go through a temporary
    // table, and the messages come back as one JSON array.
    let rows = sqlx::query(&CLAIM_SQL)
        .bind(now)
        .bind(claim.campaign_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(zone_sets)
        .fetch_all(&mut **tx)
        .await?;
    let json: String = match rows.last() {
        Some(row) => row.try_get(0)?,
        None => return Err(StoreError::Corrupt("the claim returned nothing".into())),
    };
    let claimed: Vec<rows::ClaimedJson> = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("the claimed messages: {e}")))?;
    if let (Some(daily), false) = (&claim.daily_cap, claimed.is_empty()) {
        sqlx::query(
            "INSERT INTO daily_sends (campaign_id, day, claimed) VALUES (?1, ?2, ?3)
             ON CONFLICT (campaign_id, day) DO UPDATE SET claimed = claimed + ?3",
        )
        .bind(claim.campaign_id)
        .bind(&daily.day)
        .bind(i64::try_from(claimed.len()).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await?;
    }
    claimed.into_iter().map(ClaimedMessage::from_json).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::phone::E164;
    use crate::store::testing::{
        accept_all, campaign_of, campaign_with, claim_batch, count_in, fail_all, pending_row,
        state_of,
    };
    use crate::store::NewMessage;

    /// The claim carries its messages back as one JSON array: text that
    /// JSON must escape (quotes, backslashes, line breaks, non-ASCII) and
    /// media links arrive as they were stored, in row order.
    #[tokio::test]
    async fn claimed_messages_arrive_exactly_as_stored() {
        let bodies = [
            "say \"hi\" \\ C:\\path\n\tnext line",
            "Grüße 😀 — ½ ; DROP TABLE messages; --",
            "",
        ];
        let mut messages: Vec<NewMessage> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| NewMessage {
                body: (*body).into(),
                ..pending_row(i as i64 + 1, &format!("+1415555000{i}"), MessageKind::Sms)
            })
            .collect();
        messages[2].kind = MessageKind::Mms;
        messages[2].media_urls =
            Some(r#"["https://x/a.png?x=1&y=\"2\"","https://x/b.jpg"]"#.into());
        let (_dir, store, campaign_id) = campaign_with(messages).await;
        let claimed = claim_batch(&store, campaign_id, 10, 5).await;
        let expected = |row: i64, kind, media_urls: Vec<&str>| ClaimedMessage {
            message_id: row,
            row_number: row,
            phone_e164: E164::from_stored(&format!("+1415555000{}", row - 1)).expect("number"),
            kind,
            body: bodies[row as usize - 1].to_string(),
            media_urls: media_urls.into_iter().map(String::from).collect(),
            attempts: 1,
            zone_set: 0,
            from_number: None,
            segments: 1,
        };
        assert_eq!(
            claimed,
            vec![
                expected(1, MessageKind::Sms, vec![]),
                expected(2, MessageKind::Sms, vec![]),
                expected(
                    3,
                    MessageKind::Mms,
                    vec!["https://x/a.png?x=1&y=\"2\"", "https://x/b.jpg"]
                ),
            ]
        );
        // A second claim finds nothing left, and says so with an empty list.
        assert!(claim_batch(&store, campaign_id, 10, 6).await.is_empty());
    }

    /// Messages left `sending` by a dead run are held as `unknown` or go
    /// back to `pending`, as the policy says, each with its event; others
    /// are left alone.
    #[tokio::test]
    async fn messages_left_sending_are_recovered_by_the_policy() {
        for (policy, recovered) in [
            (AmbiguousPolicy::Hold, MessageState::Unknown),
            (AmbiguousPolicy::Retry, MessageState::Pending),
        ] {
            let (_dir, store, campaign_id) = campaign_of(3).await;
            claim_batch(&store, campaign_id, 2, 5).await;
            let recovered_counts = store
                .recover_sending(campaign_id, policy, 5, 9)
                .await
                .expect("recover");
            assert_eq!(recovered_counts.held + recovered_counts.requeued, 2);
            assert_eq!(state_of(&store, 1).await, recovered.as_str());
            assert_eq!(state_of(&store, 3).await, "pending");
            let events: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM events WHERE from_state = 'sending' AND to_state = ?",
            )
            .bind(recovered.as_str())
            .fetch_one(&store.pool)
            .await
            .expect("events");
            assert_eq!(events, 2);
        }
    }

    /// Under retry, the attempt a crash interrupted counts: a message
    /// claimed `max_attempts` times is held as `unknown` at the next
    /// recovery, with a reason that says what to do, never claimed again.
    #[tokio::test]
    async fn recovery_under_retry_holds_a_message_at_its_last_attempt() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        // Message 1 is caught in flight twice, message 2 once.
        claim_batch(&store, campaign_id, 1, 5).await;
        let first = store
            .recover_sending(campaign_id, AmbiguousPolicy::Retry, 2, 6)
            .await
            .expect("first recovery");
        assert_eq!(
            first,
            Recovered {
                held: 0,
                requeued: 1
            }
        );
        assert_eq!(state_of(&store, 1).await, "pending");
        let claimed = claim_batch(&store, campaign_id, 2, 7).await;
        assert_eq!(
            claimed
                .iter()
                .map(|m| (m.message_id, m.attempts))
                .collect::<Vec<_>>(),
            vec![(1, 2), (2, 1)]
        );
        let second = store
            .recover_sending(campaign_id, AmbiguousPolicy::Retry, 2, 8)
            .await
            .expect("second recovery");
        assert_eq!(
            second,
            Recovered {
                held: 1,
                requeued: 1
            }
        );
        assert_eq!(state_of(&store, 1).await, "unknown");
        assert_eq!(state_of(&store, 2).await, "pending");
        let (reason, final_at): (String, Option<i64>) =
            sqlx::query_as("SELECT reason, final_at FROM messages WHERE id = 1")
                .fetch_one(&store.pool)
                .await
                .expect("row");
        assert!(reason.contains("--max-attempts 2"), "{reason}");
        assert!(reason.contains("bpsms retry --state unknown"), "{reason}");
        assert_eq!(final_at, Some(8));
        let history: Vec<(String, String)> = sqlx::query_as(
            "SELECT from_state, to_state FROM events WHERE message_id = 1 ORDER BY seq",
        )
        .fetch_all(&store.pool)
        .await
        .expect("history");
        let pairs: Vec<(&str, &str)> = history
            .iter()
            .map(|(from, to)| (from.as_str(), to.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("pending", "sending"),
                ("sending", "pending"),
                ("pending", "sending"),
                ("sending", "unknown")
            ]
        );
        // Only message 2 is left to claim.
        let next = claim_batch(&store, campaign_id, 2, 9).await;
        assert_eq!(
            next.iter().map(|m| m.message_id).collect::<Vec<_>>(),
            vec![2]
        );
    }

    /// An operator retry puts messages back to `pending` as they were before
    /// their send, and the event keeps the sid they had.
    #[tokio::test]
    async fn requeued_messages_start_over_and_keep_their_sid_in_history() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        assert!(store.has_pending(campaign_id).await.expect("pending"));
        let ids = accept_all(&store, campaign_id).await;
        fail_all(&store, &ids).await;
        assert!(!store.has_pending(campaign_id).await.expect("none pending"));
        let n = store
            .requeue(campaign_id, MessageState::Failed, 50)
            .await
            .expect("requeue");
        assert_eq!(n, 2);
        assert_eq!(
            count_in(&store, campaign_id, MessageState::Pending).await,
            2
        );
        let row: (Option<String>, Option<i64>, i64) =
            sqlx::query_as("SELECT sid, next_poll_at, polls FROM messages WHERE id = 1")
                .fetch_one(&store.pool)
                .await
                .expect("row");
        assert_eq!(row, (None, None, 0));
        let detail: String = sqlx::query_scalar(
            "SELECT detail FROM events WHERE message_id = 1 AND to_state = 'pending'",
        )
        .fetch_one(&store.pool)
        .await
        .expect("event");
        assert_eq!(detail, "operator retry (previous sid SM1)");
        // A state the lifecycle never retries is refused before any write.
        assert!(store
            .requeue(campaign_id, MessageState::Sending, 51)
            .await
            .is_err());
    }

    /// Only messages still `pending` are suppressed, each with the reason
    /// its number is listed for; a number listed twice counts once.
    #[tokio::test]
    async fn suppression_marks_pending_messages_with_their_reason() {
        let rows: Vec<NewMessage> = ["+14155550001", "+14155550002", "+14155550003"]
            .iter()
            .enumerate()
            .map(|(i, number)| pending_row(i as i64 + 1, number, MessageKind::Sms))
            .collect();
        let (_dir, store, campaign_id) = campaign_with(rows).await;
        // The second message is already on its way: not suppressed.
        sqlx::query("UPDATE messages SET state = 'sending' WHERE id = 2")
            .execute(&store.pool)
            .await
            .expect("sending");
        let list = [
            ("+14155550001", "opted out".to_string()),
            ("+14155550001", "listed twice".to_string()),
            ("+14155550002", "opted out".to_string()),
            ("+14155559999", "not in the campaign".to_string()),
        ];
        let n = store
            .suppress_pending(campaign_id, list.iter().map(|(n, r)| (*n, r.clone())))
            .await
            .expect("suppress");
        assert_eq!(n, 1);
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reason FROM messages ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .expect("rows");
        assert_eq!(
            rows,
            vec![
                ("suppressed".into(), Some("opted out".into())),
                ("sending".into(), None),
                ("pending".into(), None),
            ]
        );
        // The list is gone with its transaction: a second list starts empty.
        let n = store
            .suppress_pending(campaign_id, std::iter::empty())
            .await
            .expect("empty list");
        assert_eq!(n, 0);
    }

    /// The claim reads only the open zone sets' ranges of the index: no
    /// scan of the messages that wait for their window, and no sort.
    #[tokio::test]
    async fn a_claim_by_window_is_an_index_lookup() {
        let (_dir, store, campaign_id) = campaign_of(1).await;
        let select = CLAIM_SQL
            .split(';')
            .find(|statement| statement.contains("json_each"))
            .and_then(|insert| insert.split_once("SELECT"))
            .map(|(_, select)| format!("SELECT{select}"))
            .expect("the claim's SELECT");
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {select}"))
            .bind(0)
            .bind(campaign_id)
            .bind(10)
            .bind("[0]")
            .fetch_all(&store.pool)
            .await
            .expect("plan")
            .iter()
            .map(|row| row.try_get("detail").expect("detail"))
            .collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains("INDEX messages_sendable (campaign_id=? AND zone_set=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN m"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    /// Only the open zone sets are claimed, the first given first, and the
    /// daily cap limits the claims of its day.
    #[tokio::test]
    async fn claims_take_the_open_zone_sets_within_the_daily_cap() {
        let rows: Vec<NewMessage> = (1..=6)
            .map(|row| NewMessage {
                zones: ["", "Asia/Tokyo", "Europe/Paris"][row as usize % 3].into(),
                ..pending_row(row, &format!("+1415555000{row}"), MessageKind::Sms)
            })
            .collect();
        let (_dir, store, campaign_id) = campaign_with(rows).await;
        let sets = store.zone_sets(campaign_id).await.expect("sets");
        let id_of = |zones: &str| sets.iter().find(|(_, z)| z == zones).expect("set").0;
        let (tokyo, paris) = (id_of("Asia/Tokyo"), id_of("Europe/Paris"));
        let claim = |zone_sets: Vec<i64>, limit, cap: Option<u64>| Claim {
            campaign_id,
            limit,
            zone_sets: zone_sets.into(),
            daily_cap: cap.map(|cap| DailyCap {
                day: "2026-12-03".into(),
                cap,
            }),
        };
        let claimed = |batch: Vec<ClaimedMessage>| -> Vec<i64> {
            let mut rows: Vec<i64> = batch.iter().map(|m| m.row_number).collect();
            rows.sort_unstable();
            rows
        };
        let first = store
            .apply_and_claim(&[], &[claim(vec![paris, tokyo], 3, Some(4))], 5)
            .await
            .expect("claim");
        // Paris's two, then Tokyo's first; nothing of set 0, which is closed.
        assert_eq!(
            claimed(first.into_iter().flatten().collect()),
            vec![1, 2, 5]
        );
        // One more fits in the day's cap of 4, whatever the limit.
        let second = store
            .apply_and_claim(&[], &[claim(vec![0, paris, tokyo], 10, Some(4))], 6)
            .await
            .expect("claim");
        assert_eq!(claimed(second.into_iter().flatten().collect()), vec![3]);
        assert_eq!(
            store
                .claimed_on(campaign_id, "2026-12-03")
                .await
                .expect("day"),
            4
        );
        assert_eq!(
            store
                .pending_by_zone_set(campaign_id)
                .await
                .expect("pending"),
            vec![(0, 1), (tokyo, 1)]
        );
    }

    /// A stored number that is not E.164 is named, not sent.
    #[tokio::test]
    async fn a_claimed_row_that_does_not_decode_is_named() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        sqlx::query("UPDATE messages SET phone_e164 = '4155550002' WHERE id = 2")
            .execute(&store.pool)
            .await
            .expect("damage");
        let claim = Claim {
            campaign_id,
            limit: 2,
            zone_sets: vec![0].into(),
            daily_cap: None,
        };
        let error = store
            .apply_and_claim(&[], &[claim], 5)
            .await
            .expect_err("not E.164");
        assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
        assert!(error.to_string().contains("message 2"), "{error}");
    }
}
