//! The history of every message: the one writer of `event_log`, the
//! append-only log of state changes (migration 0003). A state is stored as
//! its code in the `states` table, an event's place in its message's history
//! as `seq`, and a detail that the message row or the event's own state
//! already holds is not stored again (`detail_forms` says how each form
//! reads). The `events` view reads the log back with state names and detail
//! text as they were written; nothing in bpsms reads the history but people
//! and tests, through that view.
//!
//! The other store modules add their events through the statements built
//! here, in their own transactions; none of them names `event_log`.

use sqlx::{QueryBuilder, Sqlite, Transaction};

use super::Result;
use crate::domain::state::MessageState;

/// What an event says beyond its states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Detail {
    None,
    /// Free text: an error, a reason, an operator's action.
    Text(String),
    /// The API accepted the message with the sid the message row now holds.
    Sid,
    /// Get Message answered this status.
    Status(String),
}

/// Events per INSERT: SQLite allows 32766 bound parameters per statement,
/// and an event takes 6.
const EVENT_ROWS: usize = 1000;

/// The next `seq` of the message whose id is the SQL expression `id`.
fn next_seq(id: &str) -> String {
    format!("COALESCE((SELECT MAX(seq) + 1 FROM event_log WHERE message_id = {id}), 0)")
}

/// The code of `state` in the `states` table (`state_codes_match_the_table`
/// checks the two agree).
pub(super) fn state_code(state: MessageState) -> i64 {
    match state {
        MessageState::Pending => 1,
        MessageState::Invalid => 2,
        MessageState::Duplicate => 3,
        MessageState::Suppressed => 4,
        MessageState::Sending => 5,
        MessageState::Queued => 6,
        MessageState::Sent => 7,
        MessageState::Delivered => 8,
        MessageState::Failed => 9,
        MessageState::Rejected => 10,
        MessageState::Unknown => 11,
        MessageState::Expired => 12,
        MessageState::Cancelled => 13,
    }
}

/// `detail` as the log stores it: its form and the text left to store.
fn stored(detail: Detail, to: MessageState) -> (i64, Option<String>) {
    match detail {
        Detail::None => (0, None),
        Detail::Text(text) => (0, Some(text)),
        Detail::Sid => (2, None),
        Detail::Status(status) if status == to.as_str() => (4, None),
        Detail::Status(status) => (3, Some(status)),
    }
}

/// One event of a batch: message id, from, to, detail.
pub(super) type NewEvent = (i64, MessageState, MessageState, Detail);

/// Adds to `query` the INSERTs that append `events`, all at `now`. The
/// messages must be distinct: each event's `seq` is read before any is
/// written.
pub(super) fn push_events(query: &mut QueryBuilder<'_, Sqlite>, events: Vec<NewEvent>, now: i64) {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        query.push(format!(
            "INSERT INTO event_log (message_id, seq, at, from_state, to_state, detail_form, detail)
             SELECT v.column1, {}, v.column2, v.column3, v.column4, v.column5, v.column6 FROM (",
            next_seq("v.column1")
        ));
        query.push_values(
            events.by_ref().take(EVENT_ROWS),
            |mut row, (id, from, to, detail)| {
                let (form, text) = stored(detail, to);
                row.push_bind(id)
                    .push_bind(now)
                    .push_bind(state_code(from))
                    .push_bind(state_code(to))
                    .push_bind(form)
                    .push_bind(text);
            },
        );
        query.push(") AS v;");
    }
}

/// The SQL that appends, at bound parameter `?{at_parameter}`, one event
/// `from` → `to` for each row of `source`: a query whose columns `id` (a
/// distinct message id) and `detail` (text or NULL) make the event.
pub(super) fn append_sql(
    source: &str,
    at_parameter: usize,
    from: MessageState,
    to: MessageState,
) -> String {
    format!(
        "INSERT INTO event_log (message_id, seq, at, from_state, to_state, detail)
         SELECT s.id, {}, ?{at_parameter}, {}, {}, s.detail FROM ({source}) AS s",
        next_seq("s.id"),
        state_code(from),
        state_code(to)
    )
}

/// Before the sids of the campaign's messages in `state` are cleared, stores
/// each in the events that read it from the message row, so the history
/// keeps it.
pub(super) async fn keep_sids(
    tx: &mut Transaction<'static, Sqlite>,
    campaign_id: i64,
    state: MessageState,
) -> Result<()> {
    sqlx::query(
        "UPDATE event_log SET detail_form = 1, detail = m.sid
         FROM messages AS m
         WHERE event_log.message_id = m.id AND event_log.detail_form = 2
           AND m.campaign_id = ? AND m.state = ?",
    )
    .bind(campaign_id)
    .bind(state.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{accept_all, campaign_of, fail_all};

    type HistoryRow = (i64, String, String, Option<String>);

    /// The history of one message, through the view.
    async fn history(store: &crate::store::Store, message_id: i64) -> Vec<HistoryRow> {
        sqlx::query_as(
            "SELECT seq, from_state, to_state, detail FROM events WHERE message_id = ?
             ORDER BY seq",
        )
        .bind(message_id)
        .fetch_all(&store.pool)
        .await
        .expect("history")
    }

    #[tokio::test]
    async fn state_codes_match_the_table() {
        let (_dir, store, _) = campaign_of(1).await;
        let table: Vec<(i64, String)> =
            sqlx::query_as("SELECT code, name FROM states ORDER BY code")
                .fetch_all(&store.pool)
                .await
                .expect("states");
        let mut ours: Vec<(i64, String)> = crate::domain::state::ALL_STATES
            .iter()
            .map(|&state| (state_code(state), state.as_str().to_owned()))
            .collect();
        ours.sort();
        assert_eq!(table, ours);
    }

    /// Every form of detail reads back as the text it stands for, through
    /// the view, and a sid stays in the history after an operator retry
    /// clears it from the message.
    #[tokio::test]
    async fn every_detail_reads_back_as_written() {
        let (_dir, store, campaign_id) = campaign_of(1).await;
        let ids = accept_all(&store, campaign_id).await;
        let mut tx = store.begin().await.expect("begin");
        let (from, to) = (MessageState::Queued, MessageState::Delivered);
        for (detail, at) in [
            (Detail::Status("delivered".into()), 100),
            (Detail::Status("DELIVRD".into()), 101),
            (Detail::Text("the API said 'no' ; --".into()), 102),
            (Detail::None, 103),
        ] {
            let mut script = QueryBuilder::<Sqlite>::new("");
            push_events(&mut script, vec![(ids[0], from, to, detail)], at);
            script.build().execute(&mut *tx).await.expect("event");
        }
        tx.commit().await.expect("commit");
        let sid_event = (
            1,
            "sending".to_owned(),
            "queued".to_owned(),
            Some("sid SM1".to_owned()),
        );
        let before = history(&store, ids[0]).await;
        assert_eq!(
            before,
            vec![
                (0, "pending".into(), "sending".into(), None),
                sid_event.clone(),
                (
                    2,
                    "queued".into(),
                    "delivered".into(),
                    Some("status delivered".into())
                ),
                (
                    3,
                    "queued".into(),
                    "delivered".into(),
                    Some("status DELIVRD".into())
                ),
                (
                    4,
                    "queued".into(),
                    "delivered".into(),
                    Some("the API said 'no' ; --".into())
                ),
                (5, "queued".into(), "delivered".into(), None),
            ]
        );
        // Text the message row or the state holds is not stored again.
        let stored: Vec<(i64, Option<String>)> =
            sqlx::query_as("SELECT detail_form, detail FROM event_log ORDER BY seq")
                .fetch_all(&store.pool)
                .await
                .expect("log");
        assert_eq!(stored[1..3], [(2, None), (4, None)]);
        fail_all(&store, &ids).await;
        store
            .requeue(campaign_id, MessageState::Failed, 200)
            .await
            .expect("requeue");
        let after = history(&store, ids[0]).await;
        assert_eq!(after[..6], before[..], "the history before the retry");
        assert_eq!(
            after[7].3.as_deref(),
            Some("operator retry (previous sid SM1)")
        );
    }
}
