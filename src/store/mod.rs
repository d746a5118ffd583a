//! The SQLite database: campaigns, messages, the runners table and the
//! append-only events table. This module holds the [`Store`] handle and its
//! error type; each concern lives in its own file, one `impl Store` each:
//!
//! - `open`: opening, pragmas, migrations, the write transaction, closing;
//! - `campaigns`: finding, listing and re-configuring campaigns;
//! - `import`: the bulk load of a campaign's rows ([`Import`], [`PreparedRows`]);
//! - `queue`: claims for sending, recovery, operator retry, suppression;
//! - `events`: the history of every message, the one writer of `event_log`;
//! - `tracking`: due polls, retracking, poll recovery, the next poll;
//! - `answers`: the one writer of answers, [`Store::apply_and_claim`];
//! - `runners`: the runners table behind `crate::lease`;
//! - `reports`: counts, quantiles, samples and export pages;
//! - `rows`: rows decoded into domain types.
//!
//! This is the only module that contains SQL. Every function is one query (or
//! one transaction) and returns domain types. Every state change names the
//! expected prior state in its `WHERE` clause and checks how many rows it
//! changed, so a change computed from a stale view of a message is refused,
//! never applied. No transaction is ever held across an HTTP call: callers
//! claim work, talk to the API, then hand the answers back in a batch.

mod answers;
mod campaigns;
mod events;
mod import;
mod open;
mod queue;
mod reports;
mod rows;
mod runners;
#[cfg(test)]
mod testing;
mod tracking;

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Row;

use crate::domain::ids::CampaignName;
use crate::domain::state::{Event, MessageKind, MessageState};

pub use answers::{Change, ClaimKind};
pub use import::{HeldDuplicates, Import, PreparedRows, ZoneSetIds};
pub use queue::{Claim, DailyCap, Recovered};
pub use rows::{
    Campaign, CampaignSettings, ClaimedMessage, DueMessage, ExportRow, NewCampaign, NewMessage,
    Runner, SampleMessage, SendRules,
};
pub use tracking::DueClaim;

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
    #[error("campaign \"{0}\" already exists (another process may have just created it); run `bpsms send --campaign {0}` to resume it")]
    CampaignExists(CampaignName),
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
