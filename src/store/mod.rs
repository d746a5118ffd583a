//! The SQLite database: campaigns, messages and the append-only events table.
//!
//! This is the only module that contains SQL. Every function is one query (or
//! one transaction) and returns domain types. Every state change names the
//! expected prior state in its `WHERE` clause and checks `rows_affected()`, so
//! a change computed from a stale view of a message is refused, never applied.
//! No transaction is ever held across an HTTP call: callers claim work, talk to
//! the API, then hand the answers back in a batch ([`Store::apply_and_claim`]).

mod rows;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::query_builder::Separated;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use crate::clock::duration_ms;
use crate::domain::state::{AmbiguousPolicy, Event, MessageKind, MessageState, ALL_STATES};

pub use rows::{
    Campaign, CampaignSettings, ClaimedMessage, DueMessage, ExportRow, NewCampaign, NewMessage,
    Runner, SampleMessage,
};

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {}", describe_sql_error(.error))]
    Open { path: PathBuf, error: sqlx::Error },
    #[error("cannot prepare the database schema in {path}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Not a `#[source]`: [`describe_sql_error`] already says all of it.
    #[error("{}", describe_sql_error(.0))]
    Sql(sqlx::Error),
    #[error("campaign {0:?} already exists (another process may have just created it); run `bpsms send --campaign {0}` to resume it")]
    CampaignExists(String),
    #[error("the database holds a value this version cannot read: {0}")]
    Corrupt(String),
    #[error("message {message_id} was not in state {expected} any more; another process may be running this campaign")]
    Conflict {
        message_id: i64,
        expected: MessageState,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Sql(error)
    }
}

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// One state change (or schedule change) produced by a worker, applied in a
/// batch by [`Store::apply_and_claim`].
#[derive(Debug, Clone)]
pub enum Change {
    /// The API accepted the message.
    Accepted {
        message_id: i64,
        to: MessageState,
        sid: String,
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
    /// Get Message could not tell anything; poll again later.
    PollDeferred { message_id: i64, next_poll_at: i64 },
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
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL keeps readers (status, export) off the writer's back; NORMAL
            // synchronous mode loses nothing on a process crash, only possibly
            // the last commits on a power loss.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // 8 KiB pages for a new database (an existing one keeps its
            // size): fewer B-tree pages to split and write per imported row.
            .page_size(8192);
        // Test hook: caps the database size so that tests can fill the
        // "disk" where they cannot mount a small filesystem. A PRAGMA takes
        // no bound parameter (sqlx pastes the value into the statement), so
        // only a number gets through.
        let options = match std::env::var("BPSMS_SQLITE_MAX_PAGE_COUNT") {
            Ok(raw) => match raw.trim().parse::<u32>() {
                Ok(pages) => options.pragma("max_page_count", pages.to_string()),
                Err(_) => {
                    tracing::warn!(
                        "BPSMS_SQLITE_MAX_PAGE_COUNT={raw:?} is not a whole number of pages; \
                         ignoring it (unset it, or give e.g. 2000)"
                    );
                    options
                }
            },
            Err(_) => options,
        };
        let pool = SqlitePoolOptions::new()
            // One connection: writes are serialised by SQLite anyway, and
            // one connection avoids lock waits between our own tasks.
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|error| StoreError::Open {
                path: path.to_path_buf(),
                error,
            })?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|error| match error {
                sqlx::migrate::MigrateError::Execute(error) => StoreError::Open {
                    path: path.to_path_buf(),
                    error,
                },
                source => StoreError::Migrate {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        Ok(Store { pool })
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        // IMMEDIATE takes the write lock up front, so a second process waits
        // on the busy timeout instead of failing on a lock upgrade.
        match self.pool.begin_with("BEGIN IMMEDIATE").await {
            // When SQLite rolls a failed transaction back by itself (a full
            // disk), sqlx's connection still believes it is inside one and
            // refuses every later BEGIN. Replace that connection.
            Err(sqlx::Error::InvalidSavePointStatement) => {
                self.pool.acquire().await?.close().await?;
                Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
            }
            other => Ok(other?),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- campaigns -------------------------------------------------------

    pub async fn find_campaign(&self, name: &str) -> Result<Option<Campaign>> {
        let row = sqlx::query("SELECT * FROM campaigns WHERE name = ?")
            .bind(name)
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

    /// Stores the settings a run used, so the next run reuses them.
    pub async fn update_settings(
        &self,
        campaign_id: i64,
        settings: &CampaignSettings,
    ) -> Result<()> {
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- import ----------------------------------------------------------

    /// Starts the one transaction that imports a whole campaign.
    pub async fn begin_import(&self, campaign: &NewCampaign, now: i64) -> Result<Import> {
        let bulk_load = self.begin_bulk_load().await?;
        // 16 MiB of page cache during an import (2 MiB otherwise): a big
        // import's transaction then stays in memory instead of spilling
        // pages and reading them back. [`Import::commit`] gives it back.
        sqlx::query(&format!("PRAGMA cache_size = -{IMPORT_CACHE_KIB}"))
            .execute(&self.pool)
            .await?;
        let mut tx = self.begin().await?;
        let campaign_id: i64 = sqlx::query(
            "INSERT INTO campaigns (name, csv_path, csv_sha256, from_number, body_template,
               default_region, phone_column, rate, concurrency, poll_delay_ms, track_for_ms,
               on_ambiguous, n_rows, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) RETURNING id",
        )
        .bind(&campaign.name)
        .bind(&campaign.csv_path)
        .bind(&campaign.csv_sha256)
        .bind(&campaign.from_number)
        .bind(&campaign.body_template)
        .bind(&campaign.default_region)
        .bind(&campaign.phone_column)
        .bind(campaign.settings.rate)
        .bind(i64::from(campaign.settings.concurrency))
        .bind(duration_ms(campaign.settings.poll_delay))
        .bind(duration_ms(campaign.settings.track_for))
        .bind(campaign.settings.on_ambiguous.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|error| match error.as_database_error() {
            Some(db) if db.is_unique_violation() => {
                StoreError::CampaignExists(campaign.name.clone())
            }
            _ => StoreError::Sql(error),
        })?
        .try_get(0)?;
        // Rows held back until their number is settled (see
        // [`PreparedRows::held`]). Temporary, and created inside the
        // transaction: a rolled-back import leaves nothing behind, a
        // committed one drops it first.
        sqlx::query(
            "CREATE TEMP TABLE import_held (
               row_number INTEGER PRIMARY KEY, phone_raw TEXT NOT NULL, phone_e164 TEXT NOT NULL,
               kind TEXT NOT NULL, body TEXT NOT NULL, media_urls TEXT, segments INTEGER NOT NULL,
               encoding TEXT NOT NULL, over_length INTEGER NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        Ok(Import {
            tx,
            campaign_id,
            pool: self.pool.clone(),
            bulk_load,
            held: false,
        })
    }

    /// Switches a database that holds no campaign yet, and that no other
    /// process has open, to a rollback journal for its first import. WAL
    /// writes every page twice (into the log, then back into the file at
    /// the checkpoint), a tenth of a big import's time; a rollback journal
    /// writes a new page once. [`Import::commit`] switches back. A crash
    /// meanwhile leaves a journal that the next open rolls back, and every
    /// open asks for WAL again. Only an empty database is switched, because
    /// until the import commits no other process can open it.
    async fn begin_bulk_load(&self) -> Result<bool> {
        let has_campaigns: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM campaigns)")
            .fetch_one(&self.pool)
            .await?;
        if has_campaigns {
            return Ok(false);
        }
        // SQLite refuses at once, without waiting, when another connection
        // has the file open; the import then simply runs under WAL.
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = DELETE")
            .fetch_one(&self.pool)
            .await
        {
            Ok(mode) => Ok(mode == "delete"),
            Err(error) => {
                tracing::debug!("the import keeps the WAL journal: {error}");
                Ok(false)
            }
        }
    }

    // ---- runners ---------------------------------------------------------

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

    // ---- operator retry --------------------------------------------------

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
        sqlx::query(
            "INSERT INTO events (message_id, at, from_state, to_state, detail)
             SELECT id, ?, state, 'pending',
                    'operator retry' || COALESCE(' (previous sid ' || sid || ')', '')
             FROM messages WHERE campaign_id = ? AND state = ?",
        )
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

    // ---- sending ---------------------------------------------------------

    /// Messages a dead run left in `sending` become `unknown` (hold) or go
    /// back to `pending` (retry). Returns how many were recovered.
    pub async fn recover_sending(
        &self,
        campaign_id: i64,
        policy: AmbiguousPolicy,
        now: i64,
    ) -> Result<u64> {
        let to = next_state(
            MessageState::Sending,
            MessageKind::Sms,
            &Event::Recover(policy),
        )?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO events (message_id, at, from_state, to_state, detail)
             SELECT id, ?, 'sending', ?, 'recovered after the previous run stopped mid-send'
             FROM messages WHERE campaign_id = ? AND state = 'sending'",
        )
        .bind(now)
        .bind(to.as_str())
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
        let reason = match policy {
            AmbiguousPolicy::Hold => {
                Some("in flight when a run stopped; may or may not have been sent")
            }
            AmbiguousPolicy::Retry => None,
        };
        let done = sqlx::query(
            "UPDATE messages SET state = ?, reason = ?, final_at = CASE WHEN ? = 'unknown' THEN ? END
             WHERE campaign_id = ? AND state = 'sending'",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(to.as_str())
        .bind(now)
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
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

    // ---- tracking --------------------------------------------------------

    /// Claims up to `limit` messages whose poll is due, marking them
    /// `poll_claimed` so that they are not claimed twice while their Get is
    /// in flight. Answers clear the mark; so does [`Store::recover_polls`].
    pub async fn claim_due(
        &self,
        campaign_id: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueMessage>> {
        let rows = sqlx::query(
            "UPDATE messages SET poll_claimed = 1
             WHERE id IN (SELECT id FROM messages
                          WHERE campaign_id = ? AND next_poll_at IS NOT NULL AND next_poll_at <= ?
                            AND poll_claimed = 0
                          ORDER BY next_poll_at LIMIT ?)
             RETURNING id, sid, kind, state, polls, track_until",
        )
        .bind(campaign_id)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(DueMessage::from_row).collect()
    }

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

    // ---- applying answers ------------------------------------------------

    /// Applies a batch of changes and makes the claims, in one transaction
    /// (group commit): the sender's next messages become `sending` in the
    /// same commit as the answers to the previous ones. Returns the
    /// messages of each claim, in order.
    pub async fn apply_and_claim(
        &self,
        changes: &[Change],
        claims: &[Claim],
        now: i64,
    ) -> Result<Vec<Vec<ClaimedMessage>>> {
        if changes.is_empty() && claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        if let Some(short) = apply_in(&mut tx, changes, now).await? {
            tx.rollback().await?;
            return Err(self.name_conflict(short).await);
        }
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            claimed.push(claim_in(&mut tx, claim, now).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// The first message of a short bulk UPDATE that is not in the state
    /// its change expected (read after the rollback, so as it was).
    async fn name_conflict(&self, short: ShortUpdate) -> StoreError {
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
            "a bulk update changed {} rows for {named} messages",
            short.changed
        ))
    }

    // ---- suppression -----------------------------------------------------

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

    // ---- reporting -------------------------------------------------------

    /// Number of messages per state, in [`crate::domain::state::ALL_STATES`] order,
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

/// An import in progress: one open transaction. Dropping it without
/// [`Import::commit`] rolls everything back, so a campaign is either fully
/// imported or absent.
pub struct Import {
    tx: Transaction<'static, Sqlite>,
    campaign_id: i64,
    /// For the settings put back once the import commits.
    pool: SqlitePool,
    /// The import runs under a rollback journal (see `begin_bulk_load`).
    bulk_load: bool,
    /// Whether any row was held back (see [`PreparedRows::held`]).
    held: bool,
}

/// Messages turned into INSERT statements with their values bound, ready
/// for [`Import::insert`]. Built away from the writer, which then only runs
/// them.
pub struct PreparedRows {
    statements: Vec<QueryBuilder<'static, Sqlite>>,
    held: bool,
}

impl PreparedRows {
    /// Rows written as they are.
    pub fn new(campaign_id: i64, messages: Vec<NewMessage>) -> PreparedRows {
        Self::build(messages, false, |query, rows| {
            query.push(
                "INSERT INTO messages (row_number, phone_raw, phone_e164, kind, body, media_urls,
                   segments, encoding, campaign_id, state, reason) ",
            );
            query.push_values(rows, |mut b, m| {
                let (state, reason, _) = bind_content(&mut b, m);
                b.push_bind(campaign_id)
                    .push_bind(state.as_str())
                    .push_bind(reason);
            });
        })
    }

    /// Rows to send whose number an earlier row may already text: held
    /// back, and written by [`Import::settle_held`] as `pending` or
    /// `duplicate` once the import has seen every row. Writing them as
    /// `pending` and correcting them later would rewrite pages all over the
    /// table.
    pub fn held(messages: Vec<NewMessage>) -> PreparedRows {
        Self::build(messages, true, |query, rows| {
            query.push(
                "INSERT INTO temp.import_held (row_number, phone_raw, phone_e164, kind, body,
                   media_urls, segments, encoding, over_length) ",
            );
            query.push_values(rows, |mut b, m| {
                let (_, _, over_length) = bind_content(&mut b, m);
                b.push_bind(over_length);
            });
        })
    }

    /// One INSERT per `INSERT_ROWS` messages, written by `statement`.
    fn build(
        messages: Vec<NewMessage>,
        held: bool,
        mut statement: impl FnMut(&mut QueryBuilder<'static, Sqlite>, Vec<NewMessage>),
    ) -> PreparedRows {
        let mut messages = messages.into_iter();
        let mut statements = Vec::new();
        loop {
            let rows: Vec<NewMessage> = messages.by_ref().take(INSERT_ROWS).collect();
            if rows.is_empty() {
                break;
            }
            let mut query = QueryBuilder::<Sqlite>::new("");
            statement(&mut query, rows);
            statements.push(query);
        }
        PreparedRows { statements, held }
    }
}

/// Binds the columns a written and a held row share, `row_number` to
/// `encoding` in table order, and hands back the rest: state, reason, and
/// whether the text is over length.
fn bind_content(
    b: &mut Separated<'_, 'static, Sqlite, &'static str>,
    m: NewMessage,
) -> (MessageState, Option<String>, bool) {
    b.push_bind(m.row_number)
        .push_bind(m.phone_raw)
        .push_bind(m.phone_e164)
        .push_bind(m.kind.as_str())
        .push_bind(m.body)
        .push_bind(m.media_urls)
        .push_bind(i64::from(m.segments))
        .push_bind(m.encoding);
    (m.state, m.reason, m.over_length)
}

/// Held rows found to be duplicates by [`Import::settle_held`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldDuplicates {
    pub n: i64,
    pub n_mms: i64,
    pub n_over_length: i64,
}

/// Page cache during an import, and otherwise (SQLite's default), in KiB.
const IMPORT_CACHE_KIB: u32 = 16 * 1024;
const DEFAULT_CACHE_KIB: u32 = 2000;

/// Rows per INSERT statement (11 bound parameters each, well under SQLite's
/// limit of 32766).
const INSERT_ROWS: usize = 1024;

impl Import {
    pub fn campaign_id(&self) -> i64 {
        self.campaign_id
    }

    /// Writes the held rows (see [`PreparedRows::held`]) in row order:
    /// each is `duplicate`, naming the row it repeats, when an earlier row
    /// to send has its number, and `pending` otherwise. The first rows of
    /// each number come from one pass over the pending rows.
    pub async fn settle_held(&mut self) -> Result<HeldDuplicates> {
        if !self.held {
            return Ok(HeldDuplicates::default());
        }
        let row = sqlx::query(
            "WITH held_first AS (
               SELECT phone_e164 AS phone, min(row_number) AS first_row
               FROM temp.import_held GROUP BY phone_e164),
             written_first AS (
               SELECT phone_e164 AS phone, min(row_number) AS first_row FROM messages
               WHERE campaign_id = ?1 AND state = 'pending'
                 AND phone_e164 IN (SELECT phone FROM held_first)
               GROUP BY phone_e164),
             first AS (
               SELECT h.phone, coalesce(w.first_row, h.first_row) AS row_number
               FROM held_first AS h LEFT JOIN written_first AS w ON w.phone = h.phone)
             INSERT INTO messages (campaign_id, row_number, phone_raw, phone_e164, kind, body,
               media_urls, segments, encoding, state, reason)
             SELECT ?1, h.row_number, h.phone_raw, h.phone_e164, h.kind, h.body, h.media_urls,
               h.segments, h.encoding,
               CASE WHEN f.row_number = h.row_number THEN 'pending' ELSE 'duplicate' END,
               CASE WHEN f.row_number = h.row_number THEN NULL
                    ELSE 'duplicate of row ' || f.row_number END
             FROM temp.import_held AS h JOIN first AS f ON f.phone = h.phone_e164
             ORDER BY h.row_number;
             SELECT count(*), coalesce(sum(h.kind = 'mms'), 0), coalesce(sum(h.over_length), 0)
             FROM temp.import_held AS h JOIN messages AS m
               ON m.campaign_id = ?1 AND m.row_number = h.row_number
             WHERE m.state = 'duplicate';",
        )
        .bind(self.campaign_id)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(HeldDuplicates {
            n: row.try_get(0)?,
            n_mms: row.try_get(1)?,
            n_over_length: row.try_get(2)?,
        })
    }

    pub async fn insert(&mut self, rows: PreparedRows) -> Result<()> {
        self.held |= rows.held && !rows.statements.is_empty();
        for mut statement in rows.statements {
            statement.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Records the row count and the file's hash, and commits.
    pub async fn commit(mut self, n_rows: i64, csv_sha256: &str) -> Result<i64> {
        sqlx::query("DROP TABLE temp.import_held")
            .execute(&mut *self.tx)
            .await?;
        sqlx::query("UPDATE campaigns SET n_rows = ?, csv_sha256 = ? WHERE id = ?")
            .bind(n_rows)
            .bind(csv_sha256)
            .bind(self.campaign_id)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        let mut restore = format!("PRAGMA cache_size = -{DEFAULT_CACHE_KIB};");
        if self.bulk_load {
            restore.push_str("PRAGMA journal_mode = WAL;");
        }
        sqlx::raw_sql(&restore).execute(&self.pool).await?;
        Ok(self.campaign_id)
    }
}

/// Messages to claim for sending: the first `limit` pending ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub campaign_id: i64,
    pub limit: usize,
}

async fn claim_in(
    tx: &mut Transaction<'static, Sqlite>,
    claim: &Claim,
    now: i64,
) -> Result<Vec<ClaimedMessage>> {
    next_state(MessageState::Pending, MessageKind::Sms, &Event::Claim)?;
    // One round trip, and one row back: SQLite's thread hands each row of a
    // result over separately, which at a few hundred rows per claim cost
    // more than the claim itself. The claimed ids go through a temporary
    // table, and the messages come back as one JSON array.
    let rows = sqlx::query(
        "CREATE TEMP TABLE IF NOT EXISTS claimed (id INTEGER PRIMARY KEY);
         DELETE FROM temp.claimed;
         INSERT INTO temp.claimed (id)
           SELECT id FROM messages WHERE campaign_id = ?2 AND state = 'pending'
           ORDER BY id LIMIT ?3;
         INSERT INTO events (message_id, at, from_state, to_state)
           SELECT id, ?1, 'pending', 'sending' FROM temp.claimed;
         UPDATE messages SET state = 'sending', attempts = attempts + 1, reason = NULL
           WHERE id IN temp.claimed;
         SELECT json_group_array(json_array(m.id, m.row_number, m.phone_e164, m.kind,
                                            m.body, m.media_urls, m.attempts))
           FROM temp.claimed AS c CROSS JOIN messages AS m ON m.id = c.id",
    )
    .bind(now)
    .bind(claim.campaign_id)
    .bind(i64::try_from(claim.limit).unwrap_or(i64::MAX))
    .fetch_all(&mut **tx)
    .await?;
    let json: String = match rows.last() {
        Some(row) => row.try_get(0)?,
        None => return Err(StoreError::Corrupt("the claim returned nothing".into())),
    };
    let claimed: Vec<rows::ClaimedJson> = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("the claimed messages: {e}")))?;
    claimed.into_iter().map(ClaimedMessage::from_json).collect()
}

// ==== Poll claims in the recorder's transaction ===========================
// The tracker claims its due polls through the recorder, in the same group
// commit as the answers, as the sender claims its messages.

/// Polls to claim: up to `limit` messages of the campaign whose poll is due
/// at `now` (the tracker's reading of the clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueClaim {
    pub campaign_id: i64,
    pub now: i64,
    pub limit: usize,
}

impl Store {
    /// Applies a batch of changes and claims due polls, in one transaction:
    /// [`Store::apply_and_claim`] for the tracker. Returns the messages of
    /// each claim, in order.
    pub async fn apply_and_claim_due(
        &self,
        changes: &[Change],
        claims: &[DueClaim],
        now: i64,
    ) -> Result<Vec<Vec<DueMessage>>> {
        if changes.is_empty() && claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        if let Some(short) = apply_in(&mut tx, changes, now).await? {
            tx.rollback().await?;
            return Err(self.name_conflict(short).await);
        }
        let mut claimed = Vec::with_capacity(claims.len());
        for claim in claims {
            claimed.push(claim_due_in(&mut tx, claim).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }
}

/// Marks due messages `poll_claimed`, so that they are not claimed twice
/// while their Get is in flight (answers and [`Store::recover_polls`] clear
/// the mark).
async fn claim_due_in(
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
// ==== End of poll claims in the recorder's transaction ====================

async fn apply_in(
    tx: &mut Transaction<'static, Sqlite>,
    changes: &[Change],
    now: i64,
) -> Result<Option<ShortUpdate>> {
    if changes.is_empty() {
        return Ok(None);
    }
    let mut events = Vec::with_capacity(changes.len());
    // The answers to sends and polls, the bulk of all changes, are
    // written a few hundred per statement: one round trip to SQLite's
    // thread instead of one each keeps the write lock short. A message
    // appears at most once in a batch of a run's recorder; if not, the
    // order of its changes matters and each is written alone.
    let mut ids = HashSet::with_capacity(changes.len());
    let distinct = changes.iter().all(|change| ids.insert(change.message_id()));
    let (mut accepted, mut polled, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for change in changes {
        match change {
            Change::Accepted { .. } if distinct => accepted.push(change),
            Change::Polled { .. } if distinct => polled.push(change),
            _ => others.push(change),
        }
    }
    for change in others {
        if let Some(event) = apply_one(tx, change, now).await? {
            events.push(event);
        }
    }
    // The bulk statements and every event go to SQLite's thread as one
    // script: each round trip waits for a thread hand-off both ways.
    let mut script = QueryBuilder::<Sqlite>::new("");
    for chunk in accepted.chunks(BULK_ROWS) {
        push_accepted(&mut script, chunk, now, &mut events);
    }
    for chunk in polled.chunks(BULK_ROWS) {
        push_polled(&mut script, chunk, now, &mut events);
    }
    push_events(&mut script, events.into_iter(), now);
    if script.sql().is_empty() {
        return Ok(None);
    }
    // One row per bulk UPDATE: how many rows it changed.
    let counts = script.build().fetch_all(&mut **tx).await?;
    let bulk: Vec<&[&Change]> = accepted
        .chunks(BULK_ROWS)
        .chain(polled.chunks(BULK_ROWS))
        .collect();
    if counts.len() != bulk.len() {
        return Err(StoreError::Corrupt(format!(
            "{} bulk updates reported {} counts",
            bulk.len(),
            counts.len()
        )));
    }
    for (chunk, count) in bulk.into_iter().zip(&counts) {
        let changed: i64 = count.try_get(0)?;
        if usize::try_from(changed).ok() != Some(chunk.len()) {
            return Ok(Some(ShortUpdate {
                changed,
                expected: chunk
                    .iter()
                    .map(|change| (change.message_id(), expected_before(change)))
                    .collect(),
            }));
        }
    }
    Ok(None)
}

/// A bulk UPDATE changed fewer rows than it named: a message was not in the
/// state its change expected. Which one is found after the rollback.
struct ShortUpdate {
    changed: i64,
    /// Every message the UPDATE named, with the state it had to be in.
    expected: Vec<(i64, MessageState)>,
}

/// The state a bulk change requires its message to be in.
fn expected_before(change: &Change) -> MessageState {
    match change {
        Change::Polled { from, .. } => *from,
        _ => MessageState::Sending,
    }
}

type EventRow = (i64, MessageState, MessageState, Option<String>);

async fn apply_one(
    tx: &mut Transaction<'static, Sqlite>,
    change: &Change,
    now: i64,
) -> Result<Option<EventRow>> {
    let (message_id, from, to, detail, result) = match change {
        Change::Accepted {
            message_id,
            to,
            sid,
            remote_status,
            error_code,
            error_message,
            sent_at,
            track_until,
            next_poll_at,
        } => {
            let final_at = next_poll_at.is_none().then_some(now);
            let result = sqlx::query(
                "UPDATE messages SET state = ?, sid = ?, remote_status = ?, error_code = ?,
                   error_message = ?, sent_at = ?, track_until = ?, next_poll_at = ?, final_at = ?,
                   reason = NULL
                 WHERE id = ? AND state = 'sending'",
            )
            .bind(to.as_str())
            .bind(sid)
            .bind(remote_status)
            .bind(error_code)
            .bind(error_message)
            .bind(sent_at)
            .bind(track_until)
            .bind(next_poll_at)
            .bind(final_at)
            .bind(message_id)
            .execute(&mut **tx)
            .await?;
            (
                *message_id,
                MessageState::Sending,
                *to,
                Some(format!("sid {sid}")),
                result,
            )
        }
        Change::Rejected {
            message_id,
            error_code,
            error_message,
        } => {
            let result = sqlx::query(
                "UPDATE messages SET state = 'rejected', error_code = ?, error_message = ?,
                   reason = 'the API refused the request', final_at = ?
                 WHERE id = ? AND state = 'sending'",
            )
            .bind(error_code)
            .bind(error_message)
            .bind(now)
            .bind(message_id)
            .execute(&mut **tx)
            .await?;
            let to = MessageState::Rejected;
            (
                *message_id,
                MessageState::Sending,
                to,
                Some(error_message.clone()),
                result,
            )
        }
        Change::Unsent {
            message_id,
            to,
            detail,
            count_attempt,
        } => {
            let final_at = (*to == MessageState::Unknown).then_some(now);
            let result = sqlx::query(
                "UPDATE messages SET state = ?, reason = ?, final_at = ?,
                   attempts = attempts - CASE WHEN ? THEN 0 ELSE 1 END
                 WHERE id = ? AND state = 'sending'",
            )
            .bind(to.as_str())
            .bind(detail)
            .bind(final_at)
            .bind(count_attempt)
            .bind(message_id)
            .execute(&mut **tx)
            .await?;
            (
                *message_id,
                MessageState::Sending,
                *to,
                Some(detail.clone()),
                result,
            )
        }
        Change::Polled {
            message_id,
            from,
            to,
            remote_status,
            error_code,
            error_message,
            next_poll_at,
        } => {
            let final_at = next_poll_at.is_none().then_some(now);
            let result = sqlx::query(
                "UPDATE messages SET state = ?, remote_status = ?,
                   error_code = COALESCE(?, error_code), error_message = COALESCE(?, error_message),
                   polls = polls + 1, next_poll_at = ?, final_at = ?, poll_claimed = 0
                 WHERE id = ? AND state = ?",
            )
            .bind(to.as_str())
            .bind(remote_status)
            .bind(error_code)
            .bind(error_message)
            .bind(next_poll_at)
            .bind(final_at)
            .bind(message_id)
            .bind(from.as_str())
            .execute(&mut **tx)
            .await?;
            (
                *message_id,
                *from,
                *to,
                Some(format!("status {remote_status}")),
                result,
            )
        }
        Change::PollDeferred {
            message_id,
            next_poll_at,
        } => {
            let result = sqlx::query(
                "UPDATE messages SET polls = polls + 1, next_poll_at = ?, poll_claimed = 0
                 WHERE id = ? AND next_poll_at IS NOT NULL",
            )
            .bind(next_poll_at)
            .bind(message_id)
            .execute(&mut **tx)
            .await?;
            check_one(&result, *message_id, MessageState::Queued)?;
            return Ok(None);
        }
        Change::Expired {
            message_id,
            from,
            remote_status,
        } => {
            let result = sqlx::query(
                "UPDATE messages SET state = 'expired', next_poll_at = NULL, poll_claimed = 0, final_at = ?,
                   remote_status = COALESCE(?, remote_status), polls = polls + 1,
                   reason = 'tracking window ended before a final status'
                 WHERE id = ? AND state = ?",
            )
            .bind(now)
            .bind(remote_status)
            .bind(message_id)
            .bind(from.as_str())
            .execute(&mut **tx)
            .await?;
            (*message_id, *from, MessageState::Expired, None, result)
        }
    };
    check_one(&result, message_id, from)?;
    Ok((from != to).then_some((message_id, from, to, detail)))
}

/// Rows per bulk UPDATE (at most 10 bound parameters each).
const BULK_ROWS: usize = 500;

/// Adds to `query` one UPDATE that writes a batch of `Change::Accepted`.
fn push_accepted(
    query: &mut QueryBuilder<'_, Sqlite>,
    changes: &[&Change],
    now: i64,
    events: &mut Vec<EventRow>,
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
                .push_bind(sid.clone())
                .push_bind(remote_status.clone())
                .push_bind(error_code.clone())
                .push_bind(error_message.clone())
                .push_bind(*sent_at)
                .push_bind(*track_until)
                .push_bind(*next_poll_at)
                .push_bind(next_poll_at.is_none().then_some(now));
            events.push((
                *message_id,
                MessageState::Sending,
                *to,
                Some(format!("sid {sid}")),
            ));
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
    events: &mut Vec<EventRow>,
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
                    Some(format!("status {remote_status}")),
                ));
            }
        }
    });
    query.push(
        ") AS v WHERE messages.id = v.column1 AND messages.state = v.column8; SELECT changes();",
    );
}

fn check_one(
    result: &sqlx::sqlite::SqliteQueryResult,
    message_id: i64,
    expected: MessageState,
) -> Result<()> {
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            message_id,
            expected,
        })
    }
}

/// Adds to `query` the INSERTs that append `events`.
fn push_events(
    query: &mut QueryBuilder<'_, Sqlite>,
    events: impl Iterator<Item = EventRow>,
    now: i64,
) {
    let mut events = events.peekable();
    // SQLite allows 32766 bound parameters per statement; 5 per event.
    while events.peek().is_some() {
        query.push("INSERT INTO events (message_id, at, from_state, to_state, detail) ");
        query.push_values(
            events.by_ref().take(1000),
            |mut b, (id, from, to, detail)| {
                b.push_bind(id)
                    .push_bind(now)
                    .push_bind(from.as_str())
                    .push_bind(to.as_str())
                    .push_bind(detail);
            },
        );
        query.push(";");
    }
}

/// Checks an event against the lifecycle; the store never writes a state the
/// transition function does not allow.
fn next_state(from: MessageState, kind: MessageKind, event: &Event) -> Result<MessageState> {
    crate::domain::state::transition(from, kind, event)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_column<T: FromStr<Err = String>>(row: &SqliteRow, column: &str) -> Result<T> {
    let raw: String = row.try_get(column)?;
    raw.parse().map_err(StoreError::Corrupt)
}

/// Database errors in words an operator can act on.
fn describe_sql_error(error: &sqlx::Error) -> String {
    let code = error
        .as_database_error()
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff);
    match code {
        Some(5 | 6) => "the database is locked by another process (a running bpsms, or an open \
                        sqlite3 shell); try again when it is done"
            .into(),
        Some(8) => "the database file is read-only; check its permissions and those of its \
                    folder (SQLite also writes -wal and -shm files beside it)"
            .into(),
        Some(11 | 26) => "the file is not a bpsms database or is damaged; point --db at the \
                          right file"
            .into(),
        Some(13) => "the disk is full; free some space and run the same command again to resume \
                     (nothing committed is lost)"
            .into(),
        Some(14) => "the database file cannot be opened; check that its folder exists and is \
                     writable"
            .into(),
        _ => format!("database error: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_campaign() -> NewCampaign {
        NewCampaign {
            name: "t".into(),
            csv_path: "t.csv".into(),
            csv_sha256: String::new(),
            from_number: "+16505550100".into(),
            body_template: None,
            default_region: "US".into(),
            phone_column: "phone".into(),
            settings: CampaignSettings {
                rate: 10.0,
                concurrency: 4,
                poll_delay: Duration::from_secs(1),
                track_for: Duration::from_secs(60),
                on_ambiguous: AmbiguousPolicy::Hold,
            },
        }
    }

    fn pending_row(row: i64, number: &str, kind: MessageKind) -> NewMessage {
        NewMessage {
            row_number: row,
            phone_raw: number.into(),
            phone_e164: Some(number.into()),
            kind,
            body: format!("row {row}"),
            media_urls: (kind == MessageKind::Mms).then(|| r#"["https://x/a.png"]"#.into()),
            segments: 1,
            encoding: "gsm7",
            state: MessageState::Pending,
            reason: None,
            over_length: false,
        }
    }

    /// Held rows are written at the end: a duplicate names the first row of
    /// its number (written or held), and a held row whose number nobody
    /// texted before is sent.
    #[tokio::test]
    async fn held_rows_are_settled_against_earlier_rows() {
        let (_dir, store, mut import) = new_import().await;
        let id = import.campaign_id();
        let written = vec![
            pending_row(1, "+14155550001", MessageKind::Sms),
            pending_row(2, "+14155550002", MessageKind::Sms),
        ];
        import
            .insert(PreparedRows::new(id, written))
            .await
            .expect("rows");
        let held = vec![
            pending_row(3, "+14155550001", MessageKind::Mms),
            // A false "maybe": nobody texts this number before row 4.
            pending_row(4, "+14155550009", MessageKind::Sms),
            pending_row(5, "+14155550009", MessageKind::Sms),
            pending_row(6, "+14155550001", MessageKind::Sms),
        ];
        import.insert(PreparedRows::held(held)).await.expect("held");
        let duplicates = import.settle_held().await.expect("settle");
        assert_eq!(
            duplicates,
            HeldDuplicates {
                n: 3,
                n_mms: 1,
                n_over_length: 0
            }
        );
        import.commit(6, "sha").await.expect("commit");
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT row_number, state, reason FROM messages ORDER BY row_number")
                .fetch_all(&store.pool)
                .await
                .expect("rows");
        let dup = |row: i64| Some(format!("duplicate of row {row}"));
        assert_eq!(
            rows,
            vec![
                (1, "pending".into(), None),
                (2, "pending".into(), None),
                (3, "duplicate".into(), dup(1)),
                (4, "pending".into(), None),
                (5, "duplicate".into(), dup(4)),
                (6, "duplicate".into(), dup(1)),
            ]
        );
    }

    /// A fresh database with one import begun.
    async fn new_import() -> (tempfile::TempDir, Store, Import) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("open");
        let import = store
            .begin_import(&new_campaign(), 0)
            .await
            .expect("begin import");
        (dir, store, import)
    }

    async fn campaign_of(n: i64) -> (tempfile::TempDir, Store, i64) {
        let (dir, store, mut import) = new_import().await;
        let campaign_id = import.campaign_id();
        let messages = (1..=n)
            .map(|row| pending_row(row, &format!("+1415555{row:04}"), MessageKind::Sms))
            .collect();
        import
            .insert(PreparedRows::new(campaign_id, messages))
            .await
            .expect("insert");
        import.commit(n, "sha").await.expect("commit");
        (dir, store, campaign_id)
    }

    async fn claim_batch(store: &Store, claim: Claim, now: i64) -> Vec<ClaimedMessage> {
        store
            .apply_and_claim(&[], &[claim], now)
            .await
            .expect("claim")
            .pop()
            .expect("one claim")
    }

    fn accepted(message_id: i64) -> Change {
        Change::Accepted {
            message_id,
            to: MessageState::Queued,
            sid: format!("SM{message_id}"),
            remote_status: "queued".into(),
            error_code: None,
            error_message: None,
            sent_at: 10,
            track_until: 1000,
            next_poll_at: Some(20),
        }
    }

    async fn journal_mode(store: &Store) -> String {
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .expect("journal mode")
    }

    /// The first import runs under a rollback journal and leaves the
    /// database in WAL mode; later imports never leave WAL.
    #[tokio::test]
    async fn imports_leave_the_database_in_wal_mode() {
        let (_dir, store, _) = campaign_of(3).await;
        assert_eq!(journal_mode(&store).await, "wal");
        assert!(!store.begin_bulk_load().await.expect("second import"));
        assert_eq!(journal_mode(&store).await, "wal");
    }

    /// The claim carries its messages back as one JSON array: text that
    /// JSON must escape (quotes, backslashes, line breaks, non-ASCII) and
    /// media links arrive as they were stored, in row order.
    #[tokio::test]
    async fn claimed_messages_arrive_exactly_as_stored() {
        let (_dir, store, mut import) = new_import().await;
        let campaign_id = import.campaign_id();
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
        import
            .insert(PreparedRows::new(campaign_id, messages))
            .await
            .expect("insert");
        import.commit(3, "sha").await.expect("commit");
        let claim = Claim {
            campaign_id,
            limit: 10,
        };
        let claimed = claim_batch(&store, claim, 5).await;
        let expected = |row: i64, kind, media_urls: Vec<&str>| ClaimedMessage {
            message_id: row,
            row_number: row,
            phone_e164: format!("+1415555000{}", row - 1),
            kind,
            body: bodies[row as usize - 1].to_string(),
            media_urls: media_urls.into_iter().map(String::from).collect(),
            attempts: 1,
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
        assert!(claim_batch(&store, claim, 6).await.is_empty());
    }

    #[tokio::test]
    async fn bulk_answers_write_every_row_and_name_a_conflict() {
        let (_dir, store, campaign_id) = campaign_of(3).await;
        let claim = Claim {
            campaign_id,
            limit: 2,
        };
        let claimed = claim_batch(&store, claim, 5).await;
        let ids: Vec<i64> = claimed.iter().map(|m| m.message_id).collect();
        let changes: Vec<Change> = ids.iter().map(|&id| accepted(id)).collect();
        store
            .apply_and_claim(&changes, &[], 10)
            .await
            .expect("apply");
        assert_eq!(
            store
                .count_in_state(campaign_id, MessageState::Queued)
                .await
                .expect("count"),
            2
        );
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
            .apply_and_claim(&[accepted(unclaimed)], &[], 10)
            .await
            .expect_err("not sending");
        assert!(
            matches!(error, StoreError::Conflict { message_id, .. } if message_id == unclaimed),
            "{error:?}"
        );
        assert_eq!(
            store
                .count_in_state(campaign_id, MessageState::Pending)
                .await
                .expect("count"),
            1
        );
    }

    /// A database made before the rebuild of `messages` (migration 2)
    /// keeps its rows, its history and its constraints.
    #[tokio::test]
    async fn rebuilding_messages_keeps_rows_history_and_constraints() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.expect("connect");
        let all = sqlx::migrate!("./migrations");
        let first_only = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(all.migrations[..1].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        first_only.run(&pool).await.expect("migration 1");
        sqlx::raw_sql(
            "INSERT INTO campaigns VALUES (1, 'old', 'a.csv', 'sha', '+16505550100', NULL, 'US',
               'phone', 10, 4, 1000, 60000, 'hold', 2, 0);
             INSERT INTO messages (id, campaign_id, row_number, phone_raw, phone_e164, kind, body,
               segments, encoding, state, sid)
             VALUES (1, 1, 1, '4155550101', '+14155550101', 'sms', 'hi', 1, 'gsm7', 'delivered', 'S1'),
                    (2, 1, 2, '4155550102', '+14155550102', 'sms', 'hi', 1, 'gsm7', 'pending', NULL);
             INSERT INTO events (message_id, at, from_state, to_state, detail)
             VALUES (1, 5, 'sending', 'queued', 'S1'), (1, 9, 'queued', 'delivered', NULL);",
        )
        .execute(&pool)
        .await
        .expect("old rows");
        pool.close().await;

        let store = Store::open(&path).await.expect("migrate");
        let rows: Vec<(i64, String, Option<String>)> =
            sqlx::query_as("SELECT id, state, sid FROM messages ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .expect("messages");
        assert_eq!(
            rows,
            vec![
                (1, "delivered".into(), Some("S1".into())),
                (2, "pending".into(), None)
            ]
        );
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE message_id = 1")
            .fetch_one(&store.pool)
            .await
            .expect("events");
        assert_eq!(events, 2);
        let phone_index: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'messages_phone'")
                .fetch_one(&store.pool)
                .await
                .expect("schema");
        assert_eq!(phone_index, 0);
        // Still enforced: a state outside the lifecycle, an event for no message.
        let bad_state = sqlx::query("UPDATE messages SET state = 'lost' WHERE id = 2")
            .execute(&store.pool)
            .await;
        assert!(bad_state.is_err(), "CHECK on state must hold");
        let orphan = sqlx::query(
            "INSERT INTO events (message_id, at, from_state, to_state) VALUES (99, 0, 'a', 'b')",
        )
        .execute(&store.pool)
        .await;
        assert!(orphan.is_err(), "foreign key on events must hold");
    }

    // ==== Poll claims in the recorder's transaction (test) ================
    /// A due claim sees the answers applied in its own transaction, claims
    /// only what is due at its `now`, and never the same poll twice.
    #[tokio::test]
    async fn due_polls_are_claimed_once_in_the_answers_transaction() {
        let (_dir, store, campaign_id) = campaign_of(3).await;
        let claim = Claim {
            campaign_id,
            limit: 3,
        };
        assert_eq!(claim_batch(&store, claim, 5).await.len(), 3);
        let due = |now| DueClaim {
            campaign_id,
            now,
            limit: 10,
        };
        let claimed = store
            .apply_and_claim_due(&[accepted(1), accepted(2)], &[due(19), due(20)], 10)
            .await
            .expect("apply and claim");
        let ids =
            |messages: &[DueMessage]| messages.iter().map(|m| m.message_id).collect::<Vec<_>>();
        assert_eq!(claimed.len(), 2);
        assert!(claimed[0].is_empty(), "nothing is due before next_poll_at");
        assert_eq!(ids(&claimed[1]), [1, 2]);
        let again = store
            .apply_and_claim_due(&[accepted(3)], &[due(30)], 10)
            .await
            .expect("claim again");
        assert_eq!(ids(&again[0]), [3], "claimed polls are not claimed twice");
    }
    // ==== End of poll claims in the recorder's transaction (test) =========
}
