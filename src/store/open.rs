//! Opening the database: the connection's pragmas, the embedded migrations,
//! the write transaction every change runs in, and closing.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Sqlite, Transaction};

use super::{Result, Store, StoreError};

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Store> {
        Self::open_with(path, connect_options(path)).await
    }

    /// Opens with `options`; tests use it to add pragmas (a size cap).
    async fn open_with(path: &Path, options: SqliteConnectOptions) -> Result<Store> {
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
        announce_a_long_upgrade(&pool, path).await?;
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

    /// Starts a write transaction.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
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
}

/// Rows from which a one-time upgrade takes long enough, a few seconds,
/// that a silent pause would look like a hang.
const LONG_UPGRADE_ROWS: i64 = 300_000;

/// Says so before a one-time upgrade that takes a while: converting the
/// history to its compact form (migration 3, about 5 s per million
/// events), and rebuilding the messages for scheduling (migration 5).
async fn announce_a_long_upgrade(pool: &SqlitePool, path: &Path) -> Result<()> {
    let has = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>("SELECT type FROM sqlite_master WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await
    };
    let old_history = has("events").await?;
    if old_history.as_deref() == Some("table") {
        let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(pool)
            .await?;
        if events >= LONG_UPGRADE_ROWS {
            crate::errln!(
                "Converting the history of {} to its compact form ({events} events; once, about \
                 5 s per million events)…",
                path.display()
            );
        }
    }
    if has("messages").await?.is_some() && has("zone_sets").await?.is_none() {
        let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(pool)
            .await?;
        if messages >= LONG_UPGRADE_ROWS {
            crate::errln!(
                "Upgrading {} for send windows and deadlines ({messages} messages are rewritten \
                 once, with their history)…",
                path.display()
            );
        }
    }
    Ok(())
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // WAL keeps readers (status, export) off the writer's back. FULL
        // syncs the log at every commit, so a claim (`sending`) is on disk
        // before its requests leave and a power loss cannot turn it back
        // into `pending`, which would send it twice. The recorder commits
        // in batches, so that is one fsync per batch, not per message.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // 8 KiB pages for a new database (an existing one keeps its
        // size): fewer B-tree pages to split and write per imported row.
        .page_size(8192)
        // sqlx warns of every statement slower than a second, with its whole
        // SQL: on a million messages an upgrade or a report's percentile is
        // slow by nature, and the operator's log is no place for SQL.
        .disable_statement_logging()
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePool;

    use super::*;
    use crate::domain::ids::CampaignName;
    use crate::domain::state::MessageState;
    use crate::store::testing::{campaign_of, new_campaign};

    /// A database that cannot grow past `max_pages` pages, so that a test
    /// can fill the "disk".
    async fn open_capped(path: &Path, max_pages: u32) -> Result<Store> {
        // A PRAGMA takes no bound parameter: sqlx pastes the value in.
        let options = connect_options(path).pragma("max_page_count", max_pages.to_string());
        Store::open_with(path, options).await
    }

    /// A full disk says so and what to do, and the import that hit it leaves
    /// nothing behind.
    #[tokio::test]
    async fn a_full_database_says_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open_capped(&dir.path().join("t.db"), 40)
            .await
            .expect("open");
        let mut import = store
            .begin_import(&new_campaign(), 0)
            .await
            .expect("begin import");
        let rows = (1..=20_000)
            .map(|row| {
                crate::store::testing::pending_row(
                    row,
                    "+14155550001",
                    crate::domain::state::MessageKind::Sms,
                )
            })
            .collect();
        let error = import
            .insert(crate::store::PreparedRows::new(
                import.campaign_id(),
                rows,
                &mut crate::store::ZoneSetIds::default(),
            ))
            .await
            .expect_err("the cap is too small for the rows");
        assert!(error.to_string().contains("the disk is full"), "{error}");
        drop(import);
        assert!(store.list_campaigns().await.expect("list").is_empty());
    }

    /// A file that is not a database is named, with what to do.
    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "x".repeat(4096)).expect("write");
        let error = Store::open(&path).await.err().expect("not a database");
        assert!(
            error.to_string().contains("not a bpsms database"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_closed_store_refuses_queries() {
        let (_dir, store, _) = campaign_of(1).await;
        store.close().await;
        assert!(store.list_campaigns().await.is_err());
    }

    /// A database made before the rebuild of `messages` (migration 2)
    /// keeps its rows, its history and its constraints.
    /// A database as the first `n_migrations` migrations left it.
    async fn old_database(path: &Path, n_migrations: usize) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePool::connect_with(options).await.expect("connect");
        let all = sqlx::migrate!("./migrations");
        let first = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(all.migrations[..n_migrations].to_vec()),
            ..sqlx::migrate::Migrator::DEFAULT
        };
        first.run(&pool).await.expect("old migrations");
        pool
    }

    /// The compact history reads back every event of an existing database
    /// exactly as the old `events` table held it, whatever its detail, in
    /// the same order per message, and new events follow the old ones.
    #[tokio::test]
    async fn compacting_events_keeps_every_event_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        let pool = old_database(&path, 2).await;
        sqlx::raw_sql(
            "INSERT INTO campaigns VALUES (1, 'old', 'a.csv', 'sha', '+16505550100', NULL, 'US',
               'phone', 10, 4, 1000, 60000, 'retry', 3, 0);
             INSERT INTO messages (id, campaign_id, row_number, phone_raw, phone_e164, kind, body,
               segments, encoding, state, sid, attempts)
             VALUES (1, 1, 1, '4155550101', '+14155550101', 'sms', 'hi', 1, 'gsm7', 'delivered',
                     'c0ffee00-0000-4000-8000-000000000001', 1),
                    (2, 1, 2, '4155550102', '+14155550102', 'sms', 'hi', 1, 'gsm7', 'pending',
                     NULL, 1),
                    (3, 1, 3, '4155550103', '+14155550103', 'sms', 'hi', 1, 'gsm7', 'unknown',
                     NULL, 2);
             INSERT INTO events (id, message_id, at, from_state, to_state, detail) VALUES
               (1, 1, 100, 'pending', 'sending', NULL),
               (2, 2, 100, 'pending', 'sending', NULL),
               (3, 3, 100, 'pending', 'sending', NULL),
               (4, 2, 150, 'sending', 'queued', 'sid OLD-2'),
               (5, 1, 160, 'sending', 'queued', 'sid c0ffee00-0000-4000-8000-000000000001'),
               (6, 3, 170, 'sending', 'pending', 'recovered after the previous run stopped mid-send'),
               (7, 2, 200, 'queued', 'failed', 'status undelivered'),
               (8, 1, 200, 'queued', 'delivered', 'status delivered'),
               (9, 3, 210, 'pending', 'sending', NULL),
               (10, 2, 300, 'failed', 'pending', 'operator retry (previous sid OLD-2)'),
               (11, 3, 310, 'sending', 'unknown', 'ambiguous answer: HTTP 502 from nginx'),
               (12, 1, 400, 'delivered', 'delivered', 'sid-like but not a sid'),
               (13, 1, 401, 'delivered', 'delivered', 'status'),
               (14, 1, 402, 'delivered', 'delivered', '');",
        )
        .execute(&pool)
        .await
        .expect("old rows");
        let history = "SELECT message_id, at, from_state, to_state, detail FROM events
                       ORDER BY message_id, ";
        type Row = (i64, i64, String, String, Option<String>);
        let before: Vec<Row> = sqlx::query_as(&format!("{history} id"))
            .fetch_all(&pool)
            .await
            .expect("old history");
        pool.close().await;

        let store = Store::open(&path).await.expect("migrate");
        let after: Vec<Row> = sqlx::query_as(&format!("{history} seq"))
            .fetch_all(&store.pool)
            .await
            .expect("new history");
        assert_eq!(after, before);
        // Only the text nothing else holds is stored.
        let stored: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT detail FROM event_log WHERE detail IS NOT NULL ORDER BY message_id, seq",
        )
        .fetch_all(&store.pool)
        .await
        .expect("log");
        assert_eq!(
            stored,
            [
                Some("sid-like but not a sid"),
                Some("status"),
                Some(""),
                Some("OLD-2"),
                Some("undelivered"),
                Some("operator retry (previous sid OLD-2)"),
                Some("recovered after the previous run stopped mid-send"),
                Some("ambiguous answer: HTTP 502 from nginx"),
            ]
            .map(|text| text.map(str::to_owned))
        );
        // The next event of a migrated message follows its history.
        let claimed = crate::store::testing::claim_batch(&store, 1, 1, 500).await;
        assert_eq!(claimed[0].message_id, 2);
        let last: (i64, String) = sqlx::query_as(
            "SELECT seq, to_state FROM events WHERE message_id = 2 ORDER BY seq DESC LIMIT 1",
        )
        .fetch_one(&store.pool)
        .await
        .expect("last event");
        assert_eq!(last, (4, "sending".into()));
    }

    /// A campaign made before scheduling existed keeps its rows and its
    /// history, sends from its one number at any hour, and its messages may
    /// now be cancelled.
    #[tokio::test]
    async fn a_campaign_from_before_scheduling_sends_as_it_did() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        let pool = old_database(&path, 4).await;
        sqlx::raw_sql(
            "INSERT INTO campaigns (id, name, csv_path, csv_sha256, from_number, body_template,
               default_region, phone_column, rate, concurrency, poll_delay_ms, track_for_ms,
               on_ambiguous, n_rows, created_at)
             VALUES (1, 'old', 'a.csv', 'sha', '+16505550100', NULL, 'US', 'phone', 10, 4, 1000,
               60000, 'hold', 2, 0);
             INSERT INTO messages (id, campaign_id, row_number, phone_raw, phone_e164, kind, body,
               segments, encoding, state, sid)
             VALUES (1, 1, 1, '4155550101', '+14155550101', 'sms', 'hi', 1, 'gsm7', 'delivered', 'S1'),
                    (2, 1, 2, '4155550102', '+14155550102', 'sms', 'hi', 1, 'gsm7', 'pending', NULL);
             INSERT INTO event_log (message_id, seq, at, from_state, to_state)
             VALUES (1, 0, 5, 1, 5), (1, 1, 9, 5, 8);",
        )
        .execute(&pool)
        .await
        .expect("old rows");
        pool.close().await;

        let store = Store::open(&path).await.expect("migrate");
        let campaign = store
            .find_campaign(&CampaignName::parse("old").expect("name"))
            .await
            .expect("find")
            .expect("old");
        assert_eq!(
            campaign.rules.senders,
            vec![crate::domain::phone::E164::from_stored("+16505550100").expect("number")]
        );
        assert_eq!(
            (
                campaign.rules.windows.as_str(),
                campaign.rules.timezone.as_str()
            ),
            ("", "")
        );
        assert_eq!(
            store.zone_sets(1).await.expect("sets"),
            vec![(0, String::new())]
        );
        assert_eq!(
            store.pending_by_zone_set(1).await.expect("pending"),
            vec![(0, 1)]
        );
        let history: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE message_id = 1")
            .fetch_one(&store.pool)
            .await
            .expect("history");
        assert_eq!(history, 2);
        assert_eq!(
            store.cancel_pending(1, "test", 20).await.expect("cancel"),
            1
        );
        assert_eq!(
            store
                .count_in_state(1, MessageState::Cancelled)
                .await
                .expect("count"),
            1
        );
    }

    #[tokio::test]
    async fn rebuilding_messages_keeps_rows_history_and_constraints() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("old.db");
        let pool = old_database(&path, 1).await;
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
            "INSERT INTO event_log (message_id, seq, at, from_state, to_state)
             VALUES (99, 0, 0, 1, 5)",
        )
        .execute(&store.pool)
        .await;
        assert!(orphan.is_err(), "foreign key on events must hold");
    }
}
