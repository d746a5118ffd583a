//! Importing a recipients CSV into a new campaign.
//!
//! A blocking thread streams the file (memory does not grow with it), hashes
//! it, validates each row into a [`NewMessage`] and hands batches over a
//! bounded channel to the async side, which finds duplicates and writes the
//! rows. Everything happens in one transaction: a campaign is either fully
//! imported or absent. A row that cannot be sent is kept, as `invalid` (or
//! `suppressed`) with its reason; a file that cannot be read as CSV at all
//! stops the import before anything is sent.

pub mod consent;
mod row;
mod seen;
mod source;

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::domain::ids::CampaignName;
use crate::domain::phone::{Region, E164};
use crate::domain::state::{MessageKind, MessageState};
use crate::domain::template::{BoundTemplate, Template, TemplateError};
use crate::store::{
    CampaignSettings, HeldDuplicates, NewCampaign, NewMessage, PreparedRows, SendRules, Store,
    StoreError, ZoneSetIds,
};
use crate::suppress::SuppressionList;
use consent::{BoundRequirement, Requirement};
use row::{Columns, RowRules};
use seen::SeenNumbers;
use source::QuoteTracker;

pub use source::{parse_delimiter, Decoded, FileEncoding};

/// Header names recognised as the phone column, compared case-insensitively.
pub const PHONE_COLUMNS: [&str; 5] = ["phone", "to", "mobile", "msisdn", "phone_number"];
/// The column that carries per-row text when `--body` is not given.
pub const BODY_COLUMN: &str = "body";
/// The column whose URLs make a row an MMS.
pub const MEDIA_COLUMN: &str = "media_urls";
/// The column that names a row's time zone, unless `--timezone-column`
/// names another.
pub const TIMEZONE_COLUMN: &str = "timezone";
/// The column that names a row's sender.
pub const FROM_COLUMN: &str = "from";
/// Most media items per MMS (spec §4.2).
pub const MAX_MEDIA: usize = 10;

const BATCH: usize = 1024;

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub campaign: CampaignName,
    pub csv_path: PathBuf,
    /// Every row needs a sender (`rules.senders` or its `from` cell); not
    /// for a check, which sends nothing.
    pub needs_sender: bool,
    /// `--body`; `None` means the CSV's `body` column.
    pub body_template: Option<String>,
    pub phone_column: Option<String>,
    pub region: Region,
    pub source: SourceOptions,
    pub suppression: Arc<SuppressionList>,
    /// Make over-length SMS `invalid` instead of sending them with a warning.
    pub reject_over_length: bool,
    /// `--require`: rows whose column does not hold the value are
    /// `suppressed`.
    pub requirements: Vec<Requirement>,
    /// `--timezone-column`; `None`: the `timezone` column, if any.
    pub timezone_column: Option<String>,
    pub settings: CampaignSettings,
    pub rules: SendRules,
}

/// How to read the file's bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceOptions {
    /// `None`: detected from the header line.
    pub delimiter: Option<u8>,
    pub encoding: FileEncoding,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub campaign_id: i64,
    pub n_rows: i64,
    pub n_pending: i64,
    pub n_invalid: i64,
    pub n_duplicate: i64,
    pub n_suppressed: i64,
    /// Messages longer than a provider typically accepts (sent anyway).
    pub n_over_length: i64,
    /// Messages to send in which a placeholder without a default rendered
    /// empty (`Hi , your appointment…`), duplicates included.
    pub n_empty_placeholder: i64,
    /// The first few of their row numbers, to show.
    pub empty_placeholder_rows: Vec<i64>,
    pub n_mms: i64,
    /// Messages to send whose number has no zone of its own (toll-free,
    /// non-geographic, or a country with several zones): sent in the
    /// hours of `--timezone`. Duplicates included.
    pub n_campaign_zone: i64,
}

/// Why a file could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {detail}")]
    Csv { path: PathBuf, detail: String },
    #[error("cannot set aside the 16 MiB that finding duplicate numbers needs; free some memory and retry")]
    NoMemory(#[source] io::Error),
    #[error("{path}: the file is empty; the first line must be a header naming the columns (e.g. phone,first_name)")]
    Empty { path: PathBuf },
    #[error("{path}: the file has a header but no data rows; add one row per recipient under the header")]
    NoRows { path: PathBuf },
    #[error(
        "{path}: line {line}: a quoted field starts here and is never closed, so every row after \
         it would be read into it; add the closing quote (\") or remove the stray one"
    )]
    UnclosedQuote { path: PathBuf, line: u64 },
    #[error(
        "{path}: column {name:?} appears twice in the header (columns {first} and {second}); \
         rename or remove one, so that it is clear which to read"
    )]
    DuplicateColumn {
        path: PathBuf,
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "{path}: no phone column; name one of {names} in the header, or pass --phone-column NAME \
         (the header has: {headers})",
        names = PHONE_COLUMNS.join(", ")
    )]
    NoPhoneColumn { path: PathBuf, headers: String },
    #[error(
        "{path}: --require {column:?}: no such column in the header (the header has: {headers}); \
         name the column that records consent"
    )]
    RequiredColumnMissing {
        path: PathBuf,
        column: String,
        headers: String,
    },
    #[error("{path}: --timezone-column {name:?} is not in the header (the header has: {headers})")]
    TimezoneColumnMissing {
        path: PathBuf,
        name: String,
        headers: String,
    },
    #[error(
        "{path}: no sender; pass --from E164 (a Text Out access number of the tenant, e.g. \
         +16505550100; repeat it for a pool) or add a `from` column (the header has: {headers})"
    )]
    NoSender { path: PathBuf, headers: String },
    #[error("{path}: --phone-column {name:?} is not in the header (the header has: {headers})")]
    PhoneColumnMissing {
        path: PathBuf,
        name: String,
        headers: String,
    },
    #[error(
        "{path}: no message text; pass --body \"TEXT with {{{{column}}}} placeholders\" or add a \
         `body` column (the header has: {headers})"
    )]
    NoBody { path: PathBuf, headers: String },
    #[error("{path}")]
    Template {
        path: PathBuf,
        #[source]
        source: TemplateError,
    },
    #[error("campaign \"{0}\" already exists; run `bpsms send --campaign {0}` to resume it")]
    CampaignExists(CampaignName),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// SHA-256 of a whole file, as lower-case hex.
pub fn file_sha256(path: &Path) -> Result<String, ImportError> {
    let open_error = |source| ImportError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = HashingReader::new(File::open(path).map_err(open_error)?);
    io::copy(&mut reader, &mut io::sink()).map_err(open_error)?;
    Ok(reader.hex_digest())
}

/// Imports `spec.csv_path` as a new campaign.
///
/// A reader thread parses, checks and prepares the rows; this task only
/// writes them, so that SQLite (the slowest part) never waits for parsing.
pub async fn import(
    store: &Store,
    spec: &ImportSpec,
    now: i64,
) -> Result<ImportReport, ImportError> {
    if store.find_campaign(&spec.campaign).await?.is_some() {
        return Err(ImportError::CampaignExists(spec.campaign.clone()));
    }
    let (tx, mut rx) = mpsc::channel::<ReadBatch>(4);
    let (layout_tx, layout_rx) = tokio::sync::oneshot::channel();
    let (campaign_tx, campaign_rx) = tokio::sync::oneshot::channel();
    let reader_spec = spec.clone();
    let reader =
        tokio::task::spawn_blocking(move || read_rows(&reader_spec, tx, layout_tx, campaign_rx));

    // The header decides what the campaign records (phone column); wait for
    // it before opening the transaction.
    let layout = match layout_rx.await {
        Ok(layout) => layout,
        // The reader failed before the header was understood.
        Err(_) => {
            return Err(join_reader(reader)
                .await
                .err()
                .unwrap_or_else(|| ImportError::Csv {
                    path: spec.csv_path.clone(),
                    detail: "the reader stopped unexpectedly".into(),
                }))
        }
    };
    let mut import = store
        .begin_import(
            &NewCampaign {
                name: spec.campaign.clone(),
                csv_path: spec.csv_path.display().to_string(),
                csv_sha256: String::new(),
                body_template: spec.body_template.clone(),
                default_region: spec.region.as_str().to_string(),
                phone_column: layout.phone_column,
                requirements: consent::stored_form(&spec.requirements),
                settings: spec.settings.clone(),
                rules: spec.rules.clone(),
            },
            now,
        )
        .await?;
    let _ = campaign_tx.send(import.campaign_id());
    while let Some(batch) = rx.recv().await {
        import.insert(batch.rows).await?;
        import.insert(batch.held).await?;
    }
    // The reader's verdict decides: on error the transaction is dropped
    // (rolled back) and nothing of the campaign remains.
    let (sha256, mut report) = join_reader(reader).await?;
    let duplicates = import.settle_held().await?;
    report.count_duplicates(&duplicates);
    report.campaign_id = import.commit(report.n_rows, &sha256).await?;
    Ok(report)
}

/// Rows ready to write, and those held back because an earlier row may
/// already text their number.
struct ReadBatch {
    rows: PreparedRows,
    held: PreparedRows,
}

/// How many rows with an empty placeholder an import reports by number.
const EMPTY_PLACEHOLDER_ROWS_SHOWN: usize = 5;

impl ImportReport {
    fn count(&mut self, message: &NewMessage) {
        self.n_rows += 1;
        // Duplicates are known only once every row is seen
        // (`count_duplicates`).
        match message.state {
            MessageState::Pending => self.n_pending += 1,
            MessageState::Suppressed => self.n_suppressed += 1,
            _ => self.n_invalid += 1,
        }
        if message.kind == MessageKind::Mms && message.state == MessageState::Pending {
            self.n_mms += 1;
        }
        if message.over_length && message.state == MessageState::Pending {
            self.n_over_length += 1;
        }
        if message.zones.is_empty() && message.state == MessageState::Pending {
            self.n_campaign_zone += 1;
        }
        if message.empty_placeholder && message.state == MessageState::Pending {
            self.n_empty_placeholder += 1;
            if self.empty_placeholder_rows.len() < EMPTY_PLACEHOLDER_ROWS_SHOWN {
                self.empty_placeholder_rows.push(message.row_number);
            }
        }
    }

    /// Moves held rows counted as to be sent to the duplicates.
    fn count_duplicates(&mut self, duplicates: &HeldDuplicates) {
        self.n_pending -= duplicates.n;
        self.n_duplicate += duplicates.n;
        self.n_mms -= duplicates.n_mms;
        self.n_over_length -= duplicates.n_over_length;
    }
}

async fn join_reader(
    reader: tokio::task::JoinHandle<Result<(String, ImportReport), ImportError>>,
) -> Result<(String, ImportReport), ImportError> {
    reader.await.unwrap_or_else(|e| {
        Err(ImportError::Csv {
            path: PathBuf::new(),
            detail: format!("the CSV reader stopped: {e}"),
        })
    })
}

/// What the header says about where things are.
pub struct Layout {
    pub phone_column: String,
}

/// A recipients table being read: the header understood, then rows in
/// batches. It reads any byte stream, so the same code checks a file and
/// a fuzzer's input.
pub struct RecipientTable<R: Read> {
    path: PathBuf,
    csv: csv::Reader<QuoteTracker<BufReader<R>>>,
    headers: Vec<String>,
    rules: RowRules,
    record: csv::StringRecord,
    row_number: i64,
    body: String,
}

impl<R: Read> RecipientTable<R> {
    /// Reads the header of `input` (UTF-8 text; `path` names it in errors)
    /// and resolves the columns and the template against it.
    pub fn open(spec: &ImportSpec, input: R) -> Result<Self, ImportError> {
        let path = &spec.csv_path;
        let fail = |detail: String| ImportError::Csv {
            path: path.clone(),
            detail,
        };
        let mut buffered = BufReader::with_capacity(64 * 1024, input);
        let start = buffered
            .fill_buf()
            .map_err(|e| fail(format!("read error: {e}")))?;
        if start.is_empty() {
            return Err(ImportError::Empty { path: path.clone() });
        }
        if let Some(problem) = source::refuse_unreadable_start(start) {
            return Err(fail(problem));
        }
        let delimiter = spec
            .source
            .delimiter
            .unwrap_or_else(|| source::detect_delimiter(start));
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
            .buffer_capacity(64 * 1024)
            .from_reader(QuoteTracker::new(buffered, delimiter));
        let headers: Vec<String> = csv
            .headers()
            .map_err(|e| csv_error(path, &e, &[]))?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        if headers.iter().all(String::is_empty) {
            return Err(ImportError::Empty { path: path.clone() });
        }
        let columns = resolve_columns(spec, &headers)?;
        let template = match &spec.body_template {
            Some(source) => Some(bind_template(path, source, &headers)?),
            None => None,
        };
        let requirements = bind_requirements(spec, &headers)?;
        Ok(RecipientTable {
            path: path.clone(),
            csv,
            rules: RowRules {
                columns,
                template,
                requirements,
                region: spec.region,
                suppression: spec.suppression.clone(),
                reject_over_length: spec.reject_over_length,
                pool_sends: !spec.needs_sender || !spec.rules.senders.is_empty(),
                zone_names: HashMap::new(),
            },
            headers,
            record: csv::StringRecord::new(),
            row_number: 0,
            body: String::new(),
        })
    }

    pub fn layout(&self) -> Layout {
        Layout {
            phone_column: self.headers[self.rules.columns.phone].clone(),
        }
    }

    /// The next rows, at most [`BATCH`]; `None` at the end of a file that
    /// was whole. A file that ends inside a quoted field, or has no rows,
    /// is an error here, after its rows were handed out: the caller's
    /// transaction makes sure none of them stays.
    pub fn next_batch(&mut self) -> Result<Option<Vec<NewMessage>>, ImportError> {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match self.csv.read_record(&mut self.record) {
                Ok(true) => {}
                Ok(false) => {
                    if let Some(line) = self.csv.get_ref().unclosed() {
                        return Err(ImportError::UnclosedQuote {
                            path: self.path.clone(),
                            line,
                        });
                    }
                    if self.row_number == 0 {
                        return Err(ImportError::NoRows {
                            path: self.path.clone(),
                        });
                    }
                    break;
                }
                Err(e) => return Err(csv_error(&self.path, &e, &self.headers)),
            }
            self.row_number += 1;
            batch.push(
                self.rules
                    .prepare_row(self.row_number, &self.record, &mut self.body),
            );
        }
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// The input underneath, for reading what the parser left unread.
    fn into_input(self) -> R {
        self.csv.into_inner().into_inner().into_inner()
    }
}

/// The reader thread: reads and validates the rows and sends them in
/// prepared batches. Returns the file's SHA-256 and the counts, before
/// duplicates are settled.
fn read_rows(
    spec: &ImportSpec,
    tx: mpsc::Sender<ReadBatch>,
    layout_tx: tokio::sync::oneshot::Sender<Layout>,
    campaign_rx: tokio::sync::oneshot::Receiver<i64>,
) -> Result<(String, ImportReport), ImportError> {
    let path = &spec.csv_path;
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.clone(),
        source,
    })?;
    let input = Decoded::new(HashingReader::new(file), spec.source.encoding);
    let mut table = RecipientTable::open(spec, input)?;
    let _ = layout_tx.send(table.layout());
    let mut report = ImportReport::default();
    // No campaign: the writer stopped, and its error is the one to report.
    let Ok(campaign_id) = campaign_rx.blocking_recv() else {
        return Ok((String::new(), report));
    };
    let mut seen = SeenNumbers::new().map_err(ImportError::NoMemory)?;
    let mut zone_sets = ZoneSetIds::default();
    while let Some(batch) = table.next_batch()? {
        for message in &batch {
            report.count(message);
        }
        let (held, rows): (Vec<_>, Vec<_>) = batch.into_iter().partition(|m| {
            m.state == MessageState::Pending
                && m.phone_e164
                    .as_ref()
                    .map(E164::as_str)
                    .is_some_and(|number| seen.insert(number))
        });
        let batch = ReadBatch {
            rows: PreparedRows::new(campaign_id, rows, &mut zone_sets),
            held: PreparedRows::held(held, &mut zone_sets),
        };
        if tx.blocking_send(batch).is_err() {
            return Ok((String::new(), report));
        }
    }
    // Hash whatever the CSV reader did not need to read.
    let mut hashing = table.into_input().into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| ImportError::Open {
        path: path.clone(),
        source,
    })?;
    Ok((hashing.hex_digest(), report))
}

fn bind_template(
    path: &Path,
    source: &str,
    headers: &[String],
) -> Result<BoundTemplate, ImportError> {
    let template_error = |source| ImportError::Template {
        path: path.to_path_buf(),
        source,
    };
    let template = Template::parse(source).map_err(template_error)?;
    for name in template.placeholders() {
        unique_column(path, headers, |h| h == name)?;
    }
    template.bind(headers).map_err(template_error)
}

/// Ties each `--require` to its column, ignoring case (the headers are
/// already without a byte order mark and surrounding spaces).
fn bind_requirements(
    spec: &ImportSpec,
    headers: &[String],
) -> Result<Vec<BoundRequirement>, ImportError> {
    let path = &spec.csv_path;
    spec.requirements
        .iter()
        .map(|requirement| {
            let wanted = requirement.column.to_lowercase();
            unique_column(path, headers, |h| h.to_lowercase() == wanted)?
                .map(|index| BoundRequirement::new(requirement, index))
                .ok_or_else(|| ImportError::RequiredColumnMissing {
                    path: path.clone(),
                    column: requirement.column.clone(),
                    headers: headers.join(", "),
                })
        })
        .collect()
}

/// The position of the one column `matches` picks, refusing a header that
/// names it twice: which of the two to read would be a guess.
fn unique_column(
    path: &Path,
    headers: &[String],
    matches: impl Fn(&str) -> bool,
) -> Result<Option<usize>, ImportError> {
    let mut found = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| matches(h))
        .map(|(i, _)| i);
    let first = found.next();
    if let (Some(first), Some(second)) = (first, found.next()) {
        return Err(ImportError::DuplicateColumn {
            path: path.to_path_buf(),
            name: headers[first].clone(),
            first: first + 1,
            second: second + 1,
        });
    }
    Ok(first)
}

fn resolve_columns(spec: &ImportSpec, headers: &[String]) -> Result<Columns, ImportError> {
    let path = &spec.csv_path;
    let find = |name: &str| unique_column(path, headers, |h| h.eq_ignore_ascii_case(name));
    let listed = || headers.join(", ");
    let phone = match &spec.phone_column {
        Some(name) => find(name.trim())?.ok_or_else(|| ImportError::PhoneColumnMissing {
            path: path.clone(),
            name: name.clone(),
            headers: listed(),
        })?,
        None => {
            let mut phone = None;
            for name in PHONE_COLUMNS {
                if let Some(found) = find(name)? {
                    phone = Some(found);
                    break;
                }
            }
            phone.ok_or_else(|| ImportError::NoPhoneColumn {
                path: path.clone(),
                headers: listed(),
            })?
        }
    };
    let body = if spec.body_template.is_none() {
        Some(find(BODY_COLUMN)?.ok_or_else(|| ImportError::NoBody {
            path: path.clone(),
            headers: listed(),
        })?)
    } else {
        None
    };
    let timezone = match &spec.timezone_column {
        Some(name) => Some(
            find(name)?.ok_or_else(|| ImportError::TimezoneColumnMissing {
                path: path.clone(),
                name: name.clone(),
                headers: listed(),
            })?,
        ),
        None => find(TIMEZONE_COLUMN)?,
    };
    let from = find(FROM_COLUMN)?;
    if spec.needs_sender && spec.rules.senders.is_empty() && from.is_none() {
        return Err(ImportError::NoSender {
            path: path.clone(),
            headers: listed(),
        });
    }
    Ok(Columns {
        phone,
        body,
        media: find(MEDIA_COLUMN)?,
        timezone,
        from,
        n_fields: headers.len(),
    })
}

/// Says where the parser stopped and what to do; `headers` names the
/// column of a field (empty while the header itself is read).
fn csv_error(path: &Path, error: &csv::Error, headers: &[String]) -> ImportError {
    let line = |position: Option<&csv::Position>| {
        position
            .map(|p| format!("line {}: ", p.line()))
            .unwrap_or_default()
    };
    let detail = match error.kind() {
        csv::ErrorKind::Utf8 { pos, err } => {
            let field = err.field() + 1;
            let column = match headers.get(err.field()) {
                Some(name) => format!("column {field} ({name})"),
                None => format!("column {field}"),
            };
            let location = line(pos.as_ref());
            format!(
                "{location}{column} is not valid UTF-8 text; save the file as \"CSV UTF-8\", or, \
                 if it came from an older Excel or CRM, pass --encoding windows-1252"
            )
        }
        csv::ErrorKind::Io(e) => format!("{}read error: {e}", line(error.position())),
        _ => format!("{}{error}", line(error.position())),
    };
    ImportError::Csv {
        path: path.to_path_buf(),
        detail,
    }
}

/// A reader that hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn hex_digest(self) -> String {
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
