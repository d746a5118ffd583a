//! The one writer of answers: every change a sender or the tracker makes to
//! a message goes through [`Store::apply_and_claim`], a batch of one
//! included. A batch becomes one script per round trip to SQLite's thread:
//! accepted sends and polled statuses, the bulk of all changes, a few hundred
//! per `UPDATE … FROM (VALUES …)`, the rarer answers one `UPDATE` each, and
//! every event. Each `UPDATE` names the state its messages must be in and is
//! followed by `SELECT changes()`; a count short of the messages it named is
//! a [`StoreError::Conflict`] and nothing of the batch is written.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::events::{push_events, Detail, NewEvent};
use super::{Claim, ClaimedMessage, DueClaim, DueMessage, Result, Store, StoreError};
use crate::domain::ids::MessageSid;
use crate::domain::state::MessageState;

/// One state change (or schedule change) produced by a worker, applied in a
/// batch by [`Store::apply_and_claim`].
#[derive(Debug, Clone)]
pub enum Change {
    /// The API accepted the message.
    Accepted {
        message_id: i64,
        to: MessageState,
        sid: MessageSid,
        remote_status: String,
        error_code: Option<String>,
        error_message: Option<String>,
        sent_at: i64,
        track_until: i64,
        /// `None` when the first answer was already final.
        next_poll_at: Option<i64>,
    },
    /// The API refused the request as wrong: final.
    Rejected {
        message_id: i64,
        error_code: Option<String>,
        error_message: String,
    },
    /// Not accepted (goes back to `pending`) or ambiguous (`unknown`, or
    /// `pending` under `--on-ambiguous retry`).
    Unsent {
        message_id: i64,
        to: MessageState,
        detail: String,
        /// False when the attempt does not count (a 429).
        count_attempt: bool,
    },
    /// Get Message answered.
    Polled {
        message_id: i64,
        from: MessageState,
        to: MessageState,
        remote_status: String,
        error_code: Option<String>,
        error_message: Option<String>,
        next_poll_at: Option<i64>,
    },
    /// Get Message could not tell anything; poll again later. The state
    /// stays `from`.
    PollDeferred {
        message_id: i64,
        from: MessageState,
        next_poll_at: i64,
    },
    /// The tracking window closed; the last status seen is kept.
    Expired {
        message_id: i64,
        from: MessageState,
        /// What the closing poll saw, if it saw a status.
        remote_status: Option<String>,
    },
}

impl Change {
    pub fn message_id(&self) -> i64 {
        match self {
            Change::Accepted { message_id, .. }
            | Change::Rejected { message_id, .. }
            | Change::Unsent { message_id, .. }
            | Change::Polled { message_id, .. }
            | Change::PollDeferred { message_id, .. }
            | Change::Expired { message_id, .. } => *message_id,
        }
    }

    /// The state the message must be in for the change to apply.
    fn expected_state(&self) -> MessageState {
        match self {
            Change::Accepted { .. } | Change::Rejected { .. } | Change::Unsent { .. } => {
                MessageState::Sending
            }
            Change::Polled { from, .. }
            | Change::PollDeferred { from, .. }
            | Change::Expired { from, .. } => *from,
        }
    }
}

/// What a worker claims in the answers' transaction: the sender's
/// [`Claim`] of pending messages, or the tracker's [`DueClaim`] of due polls.
/// Both claim through the same writer, so a claim never waits behind the
/// answers on the one connection.
pub trait ClaimKind: Send + Sync + 'static {
    type Claimed: Send + 'static;

    /// Makes this claim inside the caller's transaction.
    fn claim_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        now: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Claimed>>> + Send;
}

impl ClaimKind for Claim {
    type Claimed = ClaimedMessage;

    fn claim_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        now: i64,
    ) -> impl std::future::Future<Output = Result<Vec<ClaimedMessage>>> + Send {
        super::queue::claim_in(tx, self, now)
    }
}

impl ClaimKind for DueClaim {
    type Claimed = DueMessage;

    fn claim_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        _now: i64,
    ) -> impl std::future::Future<Output = Result<Vec<DueMessage>>> + Send {
        super::tracking::claim_due_in(tx, self)
    }
}

impl Store {
    /// Applies a batch of changes and makes the claims, in one transaction
    /// (group commit): the sender's next messages become `sending`, or the
    /// tracker's next polls are claimed, in the same commit as the answers
    /// to the previous ones. Returns the messages of each claim, in order.
    pub async fn apply_and_claim<C: ClaimKind>(
        &self,
        changes: &[Change],
        claims: &[C],
        now: i64,
    ) -> Result<Vec<Vec<C::Claimed>>> {
        if changes.is_empty() && claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        for run in runs_of_distinct_messages(changes) {
            if let Some(short) = write_run(&mut tx, run, now).await? {
                tx.rollback().await?;
                return Err(self.name_conflict(short).await);
            }
        }
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            claimed.push(claim.claim_in(&mut tx, now).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The first message of a short UPDATE that is not in the state its
    /// change expected (read after the rollback, so as it was).
    async fn name_conflict(&self, short: ShortUpdate) -> StoreError {
        if let [(message_id, expected)] = short.expected[..] {
            return StoreError::Conflict {
                message_id,
                expected,
            };
        }
        let named = short.expected.len();
        for (message_id, expected) in short.expected {
            let state = sqlx::query_scalar::<_, String>("SELECT state FROM messages WHERE id = ?")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await;
            match state {
                Ok(Some(state)) if state == expected.as_str() => {}
                Ok(_) => {
                    return StoreError::Conflict {
                        message_id,
                        expected,
                    }
                }
                Err(error) => return error.into(),
            }
        }
        StoreError::Corrupt(format!(
            "an update changed {} rows for {named} messages",
            short.changed
        ))
    }
}

/// Splits a batch where a message comes back: a run's changes touch distinct
/// messages, so its statements may run in any order, while a message's later
/// change lands in a later run, after its earlier one. A run's recorder names
/// each message once per batch, so a batch is almost always one run.
fn runs_of_distinct_messages(changes: &[Change]) -> Vec<&[Change]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (i, change) in changes.iter().enumerate() {
        if !seen.insert(change.message_id()) {
            runs.push(&changes[start..i]);
            start = i;
            seen.clear();
            seen.insert(change.message_id());
        }
    }
    if start < changes.len() {
        runs.push(&changes[start..]);
    }
    runs
}

/// An UPDATE changed fewer rows than it named: a message was not in the
/// state its change expected. Which one is found after the rollback.
struct ShortUpdate {
    changed: i64,
    /// Every message the UPDATE named, with the state it had to be in.
    expected: Vec<(i64, MessageState)>,
}

/// Rows per bulk UPDATE (at most 10 bound parameters each).
const BULK_ROWS: usize = 500;

/// Writes a run of changes to distinct messages as one script: every
/// UPDATE, each followed by its count of changed rows, then every event.
async fn write_run(
    tx: &mut Transaction<'static, Sqlite>,
    changes: &[Change],
    now: i64,
) -> Result<Option<ShortUpdate>> {
    let mut script = QueryBuilder::<Sqlite>::new("");
    let mut updates: Vec<Vec<&Change>> = Vec::new();
    let mut events = Vec::with_capacity(changes.len());
    let (mut accepted, mut polled) = (Vec::new(), Vec::new());
    for change in changes {
        match change {
            Change::Accepted { .. } => accepted.push(change),
            Change::Polled { .. } => polled.push(change),
            _ => {
                push_single(&mut script, change, now, &mut events);
                updates.push(vec![change]);
            }
        }
    }
    for chunk in accepted.chunks(BULK_ROWS) {
        push_accepted(&mut script, chunk, now, &mut events);
        updates.push(chunk.to_vec());
    }
    for chunk in polled.chunks(BULK_ROWS) {
        push_polled(&mut script, chunk, now, &mut events);
        updates.push(chunk.to_vec());
    }
    push_events(&mut script, events, now);
    if updates.is_empty() {
        return Ok(None);
    }
    // One row per UPDATE: how many rows it changed.
    let counts = script.build().fetch_all(&mut **tx).await?;
    if counts.len() != updates.len() {
        return Err(StoreError::Corrupt(format!(
            "{} updates reported {} counts",
            updates.len(),
            counts.len()
        )));
    }
    for (update, count) in updates.into_iter().zip(&counts) {
        let changed: i64 = count.try_get(0)?;
        if usize::try_from(changed).ok() != Some(update.len()) {
            return Ok(Some(ShortUpdate {
                changed,
                expected: update
                    .iter()
                    .map(|change| (change.message_id(), change.expected_state()))
                    .collect(),
            }));
        }
    }
    Ok(None)
}

/// Adds to `query` the one-row UPDATE of a change that is neither accepted
/// nor polled, and its event.
fn push_single(
    query: &mut QueryBuilder<'_, Sqlite>,
    change: &Change,
    now: i64,
    events: &mut Vec<NewEvent>,
) {
    let from = change.expected_state();
    let (to, detail) = match change {
        Change::Rejected {
            error_code,
            error_message,
            ..
        } => {
            query
                .push("UPDATE messages SET state = 'rejected', error_code = ")
                .push_bind(error_code.clone())
                .push(", error_message = ")
                .push_bind(error_message.clone())
                .push(", reason = 'the API refused the request', final_at = ")
                .push_bind(now);
            (MessageState::Rejected, Detail::Text(error_message.clone()))
        }
        Change::Unsent {
            to,
            detail,
            count_attempt,
            ..
        } => {
            query
                .push("UPDATE messages SET state = ")
                .push_bind(to.as_str())
                .push(", reason = ")
                .push_bind(detail.clone())
                .push(", final_at = ")
                .push_bind((*to == MessageState::Unknown).then_some(now))
                .push(", attempts = attempts - ")
                .push_bind(if *count_attempt { 0_i64 } else { 1 });
            (*to, Detail::Text(detail.clone()))
        }
        Change::PollDeferred { next_poll_at, .. } => {
            query
                // `polls` counts the Gets that saw a status: it drives the
                // status schedule, which a Get that learnt nothing must not
                // stretch (the tracker backs off from those on its own).
                .push("UPDATE messages SET poll_claimed = 0, next_poll_at = ")
                .push_bind(*next_poll_at);
            (from, Detail::None)
        }
        Change::Expired { remote_status, .. } => {
            query
                .push(
                    "UPDATE messages SET state = 'expired', next_poll_at = NULL, poll_claimed = 0,
                       polls = polls + 1, reason = 'tracking window ended before a final status',
                       remote_status = COALESCE(",
                )
                .push_bind(remote_status.clone())
                .push(", remote_status), final_at = ")
                .push_bind(now);
            (MessageState::Expired, Detail::None)
        }
        // Written in bulk by `push_accepted` and `push_polled`.
        Change::Accepted { .. } | Change::Polled { .. } => return,
    };
    query
        .push(" WHERE id = ")
        .push_bind(change.message_id())
        .push(" AND state = ")
        .push_bind(from.as_str());
    if let Change::PollDeferred { .. } = change {
        query.push(" AND next_poll_at IS NOT NULL");
    }
    query.push("; SELECT changes();");
    if from != to {
        events.push((change.message_id(), from, to, detail));
    }
}

/// Adds to `query` one UPDATE that writes a batch of `Change::Accepted`.
fn push_accepted(
    query: &mut QueryBuilder<'_, Sqlite>,
    changes: &[&Change],
    now: i64,
    events: &mut Vec<NewEvent>,
) {
    query.push(
        "UPDATE messages SET state = v.column2, sid = v.column3, remote_status = v.column4,
           error_code = v.column5, error_message = v.column6, sent_at = v.column7,
           track_until = v.column8, next_poll_at = v.column9, final_at = v.column10,
           reason = NULL
         FROM (",
    );
    query.push_values(changes, |mut row, change| {
        if let Change::Accepted {
            message_id,
            to,
            sid,
            remote_status,
            error_code,
            error_message,
            sent_at,
            track_until,
            next_poll_at,
        } = change
        {
            row.push_bind(*message_id)
                .push_bind(to.as_str())
                .push_bind(sid.as_str().to_owned())
                .push_bind(remote_status.clone())
                .push_bind(error_code.clone())
                .push_bind(error_message.clone())
                .push_bind(*sent_at)
                .push_bind(*track_until)
                .push_bind(*next_poll_at)
                .push_bind(next_poll_at.is_none().then_some(now));
            events.push((*message_id, MessageState::Sending, *to, Detail::Sid));
        }
    });
    query.push(
        ") AS v WHERE messages.id = v.column1 AND messages.state = 'sending'; SELECT changes();",
    );
}

/// Adds to `query` one UPDATE that writes a batch of `Change::Polled`.
fn push_polled(
    query: &mut QueryBuilder<'_, Sqlite>,
    changes: &[&Change],
    now: i64,
    events: &mut Vec<NewEvent>,
) {
    query.push(
        "UPDATE messages SET state = v.column2, remote_status = v.column3,
           error_code = COALESCE(v.column4, error_code),
           error_message = COALESCE(v.column5, error_message),
           polls = polls + 1, next_poll_at = v.column6, final_at = v.column7, poll_claimed = 0
         FROM (",
    );
    query.push_values(changes, |mut row, change| {
        if let Change::Polled {
            message_id,
            from,
            to,
            remote_status,
            error_code,
            error_message,
            next_poll_at,
        } = change
        {
            row.push_bind(*message_id)
                .push_bind(to.as_str())
                .push_bind(remote_status.clone())
                .push_bind(error_code.clone())
                .push_bind(error_message.clone())
                .push_bind(*next_poll_at)
                .push_bind(next_poll_at.is_none().then_some(now))
                .push_bind(from.as_str());
            if from != to {
                events.push((
                    *message_id,
                    *from,
                    *to,
                    Detail::Status(remote_status.clone()),
                ));
            }
        }
    });
    query.push(
        ") AS v WHERE messages.id = v.column1 AND messages.state = v.column8; SELECT changes();",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::MessageState as S;
    use crate::store::testing::{
        accept_all, accepted, campaign_of, claim_all, claim_batch, count_in, polled, state_of,
    };

    /// What the message row holds after its answers, read directly.
    async fn row_of(store: &Store, message_id: i64) -> (String, i64, i64, Option<String>) {
        sqlx::query_as("SELECT state, attempts, polls, remote_status FROM messages WHERE id = ?")
            .bind(message_id)
            .fetch_one(&store.pool)
            .await
            .expect("row")
    }

    async fn next_poll_at_of(store: &Store, message_id: i64) -> Option<i64> {
        sqlx::query_scalar("SELECT next_poll_at FROM messages WHERE id = ?")
            .bind(message_id)
            .fetch_one(&store.pool)
            .await
            .expect("row")
    }

    #[tokio::test]
    async fn bulk_answers_write_every_row_and_name_a_conflict() {
        let (_dir, store, campaign_id) = campaign_of(3).await;
        let claimed = claim_batch(&store, campaign_id, 2, 5).await;
        let ids: Vec<i64> = claimed.iter().map(|m| m.message_id).collect();
        let changes: Vec<Change> = ids.iter().map(|&id| accepted(id)).collect();
        store.apply(&changes, 10).await.expect("apply");
        assert_eq!(count_in(&store, campaign_id, S::Queued).await, 2);
        let sids: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, sid FROM messages WHERE sid IS NOT NULL ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .expect("sids");
        assert_eq!(
            sids,
            ids.iter()
                .map(|&id| (id, format!("SM{id}")))
                .collect::<Vec<_>>()
        );
        // The third message was never claimed: an answer for it is a
        // conflict that names it, and nothing of its batch is written.
        let unclaimed = 3;
        let error = store
            .apply(&[accepted(unclaimed)], 10)
            .await
            .expect_err("not sending");
        assert!(
            matches!(error, StoreError::Conflict { message_id, .. } if message_id == unclaimed),
            "{error:?}"
        );
        assert_eq!(count_in(&store, campaign_id, S::Pending).await, 1);
    }

    /// Refusals, unsent answers and a closed window are written by the same
    /// writer as the bulk answers, each with its event.
    #[tokio::test]
    async fn every_kind_of_answer_is_written_with_its_event() {
        let (_dir, store, campaign_id) = campaign_of(4).await;
        claim_all(&store, campaign_id).await;
        let changes = [
            Change::Rejected {
                message_id: 1,
                error_code: Some("21211".into()),
                error_message: "bad number".into(),
            },
            // A 429: the attempt does not count.
            Change::Unsent {
                message_id: 2,
                to: S::Pending,
                detail: "rate limited".into(),
                count_attempt: false,
            },
            Change::Unsent {
                message_id: 3,
                to: S::Unknown,
                detail: "timed out".into(),
                count_attempt: true,
            },
            accepted(4),
        ];
        store.apply(&changes, 10).await.expect("answers");
        assert_eq!(state_of(&store, 1).await, "rejected");
        assert_eq!(row_of(&store, 2).await, ("pending".into(), 0, 0, None));
        assert_eq!(row_of(&store, 3).await, ("unknown".into(), 1, 0, None));
        let expired = Change::Expired {
            message_id: 4,
            from: S::Queued,
            remote_status: None,
        };
        store.apply(&[expired], 2000).await.expect("expired");
        assert_eq!(
            row_of(&store, 4).await,
            ("expired".into(), 1, 1, Some("queued".into()))
        );
        let events: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT message_id, from_state, to_state FROM events WHERE at >= 10
             ORDER BY at, message_id, seq",
        )
        .fetch_all(&store.pool)
        .await
        .expect("events");
        let event = |id: i64, from: &str, to: &str| (id, from.to_owned(), to.to_owned());
        assert_eq!(
            events,
            vec![
                event(1, "sending", "rejected"),
                event(2, "sending", "pending"),
                event(3, "sending", "unknown"),
                event(4, "sending", "queued"),
                event(4, "queued", "expired"),
            ]
        );
    }

    /// A message named twice in a batch has its changes applied in order.
    #[tokio::test]
    async fn a_message_named_twice_in_a_batch_changes_in_order() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        claim_all(&store, campaign_id).await;
        let changes = [accepted(1), accepted(2), polled(1, S::Queued, S::Delivered)];
        store.apply(&changes, 10).await.expect("answers");
        assert_eq!(row_of(&store, 1).await.0, "delivered");
        assert_eq!(row_of(&store, 2).await.0, "queued");
    }

    /// A deferred poll moves the next poll of a message still in the state
    /// it was polled in; once the message has moved on, it is a conflict and
    /// nothing of its batch is written.
    #[tokio::test]
    async fn a_deferred_poll_names_the_state_it_was_polled_in() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        accept_all(&store, campaign_id).await;
        let deferred = |message_id| Change::PollDeferred {
            message_id,
            from: S::Queued,
            next_poll_at: 99,
        };
        store.apply(&[deferred(1)], 30).await.expect("deferred");
        assert_eq!(
            row_of(&store, 1).await,
            ("queued".into(), 1, 0, Some("queued".into())),
            "a Get that learnt nothing does not count as a poll of the status schedule"
        );
        assert_eq!(next_poll_at_of(&store, 1).await, Some(99));
        store
            .apply(&[polled(1, S::Queued, S::Delivered)], 40)
            .await
            .expect("delivered");
        let error = store
            .apply(&[deferred(2), deferred(1)], 50)
            .await
            .expect_err("already delivered");
        assert!(
            matches!(
                error,
                StoreError::Conflict {
                    message_id: 1,
                    expected: S::Queued
                }
            ),
            "{error:?}"
        );
        // The first change of the refused batch was rolled back with it.
        assert_ne!(next_poll_at_of(&store, 2).await, Some(99));
        assert_eq!(row_of(&store, 1).await.0, "delivered");
    }

    /// A poll answer for a message that is no longer in the state it was
    /// polled in names it, whether it came alone or among others.
    #[tokio::test]
    async fn a_stale_poll_answer_is_a_conflict() {
        let (_dir, store, campaign_id) = campaign_of(3).await;
        accept_all(&store, campaign_id).await;
        let stale = polled(2, S::Sent, S::Delivered);
        let batch = [
            polled(1, S::Queued, S::Queued),
            stale.clone(),
            polled(3, S::Queued, S::Failed),
        ];
        for changes in [&batch[..], std::slice::from_ref(&stale)] {
            let error = store.apply(changes, 30).await.expect_err("stale");
            assert!(
                matches!(error, StoreError::Conflict { message_id: 2, .. }),
                "{error:?}"
            );
        }
        assert_eq!(row_of(&store, 3).await.0, "queued");
    }
}
