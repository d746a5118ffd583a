//! The bulk load of a campaign's rows: one transaction per import that
//! creates the campaign, writes its rows a thousand per statement, holds back
//! rows whose number may repeat an earlier row ([`PreparedRows::held`]) and
//! settles them once every row is in ([`Import::settle_held`]).

use std::collections::HashMap;

use sqlx::query_builder::Separated;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::{NewCampaign, NewMessage, Result, Store, StoreError};
use crate::clock::duration_ms;
use crate::domain::state::MessageState;

impl Store {
    /// Starts the one transaction that imports a whole campaign.
    pub async fn begin_import(&self, campaign: &NewCampaign, now: i64) -> Result<Import> {
        let bulk_load = self.begin_bulk_load().await?;
        // 4 MiB of page cache during an import (2 MiB otherwise), which
        // [`Import::commit`] gives back. Rows are appended in rowid order,
        // so a bigger cache did not make a 1,000,000-row import faster
        // (8, 12 and 16 MiB measured the same) and only raised its peak
        // memory (`benches/run.sh import`).
        sqlx::query(&format!("PRAGMA cache_size = -{IMPORT_CACHE_KIB}"))
            .execute(&self.pool)
            .await?;
        let mut tx = self.begin().await?;
        let campaign_id: i64 = sqlx::query(
            "INSERT INTO campaigns (name, csv_path, csv_sha256, from_number, body_template,
               default_region, phone_column, requirements, rate, concurrency, poll_delay_ms,
               track_for_ms, on_ambiguous, n_rows, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) RETURNING id",
        )
        .bind(campaign.name.as_str())
        .bind(&campaign.csv_path)
        .bind(&campaign.csv_sha256)
        .bind(campaign.rules.stored_senders())
        .bind(&campaign.body_template)
        .bind(&campaign.default_region)
        .bind(&campaign.phone_column)
        .bind(&campaign.requirements)
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
        super::campaigns::store_rules(&mut tx, campaign_id, &campaign.rules).await?;
        sqlx::query("INSERT INTO zone_sets (campaign_id, id, zones) VALUES (?, 0, '')")
            .bind(campaign_id)
            .execute(&mut *tx)
            .await?;
        // Rows held back until their number is settled (see
        // [`PreparedRows::held`]). Temporary, and created inside the
        // transaction: a rolled-back import leaves nothing behind, a
        // committed one drops it first.
        sqlx::query(
            "CREATE TEMP TABLE import_held (
               row_number INTEGER PRIMARY KEY, phone_raw TEXT NOT NULL, phone_e164 TEXT NOT NULL,
               kind TEXT NOT NULL, body TEXT NOT NULL, media_urls TEXT, segments INTEGER NOT NULL,
               encoding TEXT NOT NULL, zone_set INTEGER NOT NULL, from_number TEXT,
               over_length INTEGER NOT NULL)",
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
    /// Zone sets first seen in these rows, written before them.
    zone_sets: Vec<(i64, String)>,
    statements: Vec<QueryBuilder<'static, Sqlite>>,
    held: bool,
}

/// The zone sets of one import: each distinct set of zones gets the next
/// id, 0 being the campaign's own zone.
#[derive(Debug, Default)]
pub struct ZoneSetIds {
    ids: HashMap<String, i64>,
}

impl ZoneSetIds {
    /// The id of `zones` (IANA names, sorted, joined by spaces); a set seen
    /// for the first time is added to `new`.
    fn id(&mut self, zones: &str, new: &mut Vec<(i64, String)>) -> i64 {
        if zones.is_empty() {
            return 0;
        }
        if let Some(&id) = self.ids.get(zones) {
            return id;
        }
        let id = i64::try_from(self.ids.len()).unwrap_or(i64::MAX) + 1;
        self.ids.insert(zones.to_owned(), id);
        new.push((id, zones.to_owned()));
        id
    }
}

impl PreparedRows {
    /// Rows written as they are.
    pub fn new(
        campaign_id: i64,
        messages: Vec<NewMessage>,
        zones: &mut ZoneSetIds,
    ) -> PreparedRows {
        Self::build(messages, zones, false, |query, rows| {
            query.push(
                "INSERT INTO messages (row_number, phone_raw, phone_e164, kind, body, media_urls,
                   segments, encoding, zone_set, from_number, campaign_id, state, reason) ",
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
    pub fn held(messages: Vec<NewMessage>, zones: &mut ZoneSetIds) -> PreparedRows {
        Self::build(messages, zones, true, |query, rows| {
            query.push(
                "INSERT INTO temp.import_held (row_number, phone_raw, phone_e164, kind, body,
                   media_urls, segments, encoding, zone_set, from_number, over_length) ",
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
        zones: &mut ZoneSetIds,
        held: bool,
        mut statement: impl FnMut(&mut QueryBuilder<'static, Sqlite>, Vec<(i64, NewMessage)>),
    ) -> PreparedRows {
        let mut zone_sets = Vec::new();
        let mut messages = messages
            .into_iter()
            .map(|m| (zones.id(&m.zones, &mut zone_sets), m));
        let mut statements = Vec::new();
        loop {
            let rows: Vec<(i64, NewMessage)> = messages.by_ref().take(INSERT_ROWS).collect();
            if rows.is_empty() {
                break;
            }
            let mut query = QueryBuilder::<Sqlite>::new("");
            statement(&mut query, rows);
            statements.push(query);
        }
        PreparedRows {
            zone_sets,
            statements,
            held,
        }
    }
}

/// Binds the columns a written and a held row share, `row_number` to
/// `from_number`, and hands back the rest: state, reason, and whether the
/// text is over length.
fn bind_content(
    b: &mut Separated<'_, 'static, Sqlite, &'static str>,
    (zone_set, m): (i64, NewMessage),
) -> (MessageState, Option<String>, bool) {
    b.push_bind(m.row_number)
        .push_bind(m.phone_raw)
        .push_bind(m.phone_e164.map(|number| number.to_string()))
        .push_bind(m.kind.as_str())
        .push_bind(m.body)
        .push_bind(m.media_urls)
        .push_bind(i64::from(m.segments))
        .push_bind(m.encoding)
        .push_bind(zone_set)
        .push_bind(m.from_number.map(|number| number.to_string()));
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
const IMPORT_CACHE_KIB: u32 = 4 * 1024;
const DEFAULT_CACHE_KIB: u32 = 2000;

/// Rows per INSERT statement (13 bound parameters each, well under SQLite's
/// limit of 32766).
pub(super) const INSERT_ROWS: usize = 1024;

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
               media_urls, segments, encoding, zone_set, from_number, state, reason)
             SELECT ?1, h.row_number, h.phone_raw, h.phone_e164, h.kind, h.body, h.media_urls,
               h.segments, h.encoding, h.zone_set, h.from_number,
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
        for (id, zones) in rows.zone_sets {
            sqlx::query("INSERT INTO zone_sets (campaign_id, id, zones) VALUES (?, ?, ?)")
                .bind(self.campaign_id)
                .bind(id)
                .bind(zones)
                .execute(&mut *self.tx)
                .await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::state::MessageKind;
    use crate::store::testing::{campaign_of, new_campaign, new_import, pending_row};

    /// Held rows are written at the end: a duplicate names the first row of
    /// its number (written or held), and a held row whose number nobody
    /// texted before is sent.
    #[tokio::test]
    async fn held_rows_are_settled_against_earlier_rows() {
        let (_dir, store, mut import) = new_import().await;
        let id = import.campaign_id();
        let mut zones = ZoneSetIds::default();
        let written = vec![
            pending_row(1, "+14155550001", MessageKind::Sms),
            pending_row(2, "+14155550002", MessageKind::Sms),
        ];
        import
            .insert(PreparedRows::new(id, written, &mut zones))
            .await
            .expect("rows");
        let held = vec![
            pending_row(3, "+14155550001", MessageKind::Mms),
            // A false "maybe": nobody texts this number before row 4.
            pending_row(4, "+14155550009", MessageKind::Sms),
            pending_row(5, "+14155550009", MessageKind::Sms),
            pending_row(6, "+14155550001", MessageKind::Sms),
        ];
        import
            .insert(PreparedRows::held(held, &mut zones))
            .await
            .expect("held");
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

    /// A second import of the same name is refused with what to run instead,
    /// and leaves the first campaign as it was.
    #[tokio::test]
    async fn a_campaign_name_is_imported_once() {
        let (_dir, store, campaign_id) = campaign_of(2).await;
        let error = store
            .begin_import(&new_campaign(), 0)
            .await
            .err()
            .expect("same name");
        assert!(
            matches!(error, StoreError::CampaignExists(ref name) if name.as_str() == "t"),
            "{error:?}"
        );
        let campaigns = store.list_campaigns().await.expect("list");
        assert_eq!(campaigns.len(), 1);
        assert_eq!((campaigns[0].id, campaigns[0].n_rows), (campaign_id, 2));
    }
}
