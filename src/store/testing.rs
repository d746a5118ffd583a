//! Helpers the store's tests share: a campaign to import, rows to fill it
//! with, and a fresh database on a temporary file with a campaign begun or
//! imported.

use std::time::Duration;

use super::{
    CampaignSettings, Change, Claim, ClaimedMessage, Import, NewCampaign, NewMessage, PreparedRows,
    SendRules, Store, ZoneSetIds,
};
use crate::domain::ids::{CampaignName, MessageSid};
use crate::domain::phone::E164;
use crate::domain::state::{AmbiguousPolicy, MessageKind, MessageState};

impl Store {
    /// Applies answers without a claim: [`Store::apply_and_claim`] with no
    /// claim of either kind.
    pub async fn apply(&self, changes: &[Change], now: i64) -> super::Result<()> {
        self.apply_and_claim::<Claim>(changes, &[], now).await?;
        Ok(())
    }
}

pub fn new_campaign() -> NewCampaign {
    NewCampaign {
        name: CampaignName::parse("t").expect("name"),
        csv_path: "t.csv".into(),
        csv_sha256: String::new(),
        body_template: None,
        requirements: String::new(),
        default_region: "US".into(),
        phone_column: "phone".into(),
        settings: CampaignSettings {
            rate: 10.0,
            concurrency: 4,
            poll_delay: Duration::from_secs(1),
            track_for: Duration::from_secs(60),
            on_ambiguous: AmbiguousPolicy::Hold,
        },
        rules: SendRules {
            senders: vec![E164::from_stored("+16505550100").expect("sender")],
            ..SendRules::default()
        },
    }
}

pub fn pending_row(row: i64, number: &str, kind: MessageKind) -> NewMessage {
    NewMessage {
        row_number: row,
        phone_raw: number.into(),
        phone_e164: E164::from_stored(number),
        kind,
        body: format!("row {row}"),
        media_urls: (kind == MessageKind::Mms).then(|| r#"["https://x/a.png"]"#.into()),
        segments: 1,
        encoding: "gsm7",
        state: MessageState::Pending,
        reason: None,
        over_length: false,
        empty_placeholder: false,
        zones: String::new(),
        from_number: None,
    }
}

/// A fresh database with one import begun.
pub async fn new_import() -> (tempfile::TempDir, Store, Import) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("t.db")).await.expect("open");
    let import = store
        .begin_import(&new_campaign(), 0)
        .await
        .expect("begin import");
    (dir, store, import)
}

/// A fresh database with a campaign of `n` pending SMS, numbered from 1.
pub async fn campaign_of(n: i64) -> (tempfile::TempDir, Store, i64) {
    let messages = (1..=n)
        .map(|row| pending_row(row, &format!("+1415555{row:04}"), MessageKind::Sms))
        .collect();
    campaign_with(messages).await
}

/// A fresh database with a campaign of `messages`, one a row.
pub async fn campaign_with(messages: Vec<NewMessage>) -> (tempfile::TempDir, Store, i64) {
    let (dir, store, mut import) = new_import().await;
    let campaign_id = import.campaign_id();
    let n_rows = messages.len() as i64;
    import
        .insert(PreparedRows::new(
            campaign_id,
            messages,
            &mut ZoneSetIds::default(),
        ))
        .await
        .expect("insert");
    import.commit(n_rows, "sha").await.expect("commit");
    (dir, store, campaign_id)
}

/// Claims up to `limit` pending messages of the campaign at `now`.
pub async fn claim_batch(
    store: &Store,
    campaign_id: i64,
    limit: usize,
    now: i64,
) -> Vec<ClaimedMessage> {
    let claim = Claim {
        campaign_id,
        limit,
        zone_sets: vec![0].into(),
        daily_cap: None,
    };
    store
        .apply_and_claim(&[], &[claim], now)
        .await
        .expect("claim")
        .pop()
        .expect("one claim")
}

/// Claims every pending message of the campaign, at 5.
pub async fn claim_all(store: &Store, campaign_id: i64) -> Vec<i64> {
    let claimed = claim_batch(store, campaign_id, usize::MAX, 5).await;
    claimed.iter().map(|m| m.message_id).collect()
}

/// Claims every pending message of the campaign and has the API accept
/// them, tracked until 1000 with a first poll at 20.
pub async fn accept_all(store: &Store, campaign_id: i64) -> Vec<i64> {
    let ids = claim_all(store, campaign_id).await;
    let changes: Vec<Change> = ids.iter().map(|&id| accepted(id)).collect();
    store.apply(&changes, 10).await.expect("accept");
    ids
}

pub fn accepted(message_id: i64) -> Change {
    Change::Accepted {
        message_id,
        to: MessageState::Queued,
        sid: MessageSid::parse(&format!("SM{message_id}")).expect("sid"),
        remote_status: "queued".into(),
        error_code: None,
        error_message: None,
        sent_at: 10,
        track_until: 1000,
        next_poll_at: Some(20),
    }
}

/// A Get answer seen by a message in `from`: `to`, polled again at 40
/// while queued.
pub fn polled(message_id: i64, from: MessageState, to: MessageState) -> Change {
    Change::Polled {
        message_id,
        from,
        to,
        remote_status: to.as_str().into(),
        error_code: None,
        error_message: None,
        next_poll_at: (to == MessageState::Queued).then_some(40),
    }
}

/// Every message of `ids`, accepted, then failed by a Get answer.
pub async fn fail_all(store: &Store, ids: &[i64]) {
    let failed: Vec<Change> = ids
        .iter()
        .map(|&id| polled(id, MessageState::Queued, MessageState::Failed))
        .collect();
    store.apply(&failed, 30).await.expect("failed");
}

/// How many messages of the campaign are in `state`.
pub async fn count_in(store: &Store, campaign_id: i64, state: MessageState) -> i64 {
    let count = store.count_in_state(campaign_id, state).await;
    count.expect("count in state")
}

/// The state of one message, read directly.
pub async fn state_of(store: &Store, message_id: i64) -> String {
    sqlx::query_scalar("SELECT state FROM messages WHERE id = ?")
        .bind(message_id)
        .fetch_one(&store.pool)
        .await
        .expect("state")
}
