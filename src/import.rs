//! Importing a recipients CSV into a new campaign.
//!
//! A blocking thread streams the file (memory does not grow with it), hashes
//! it, validates each row into a [`NewMessage`] and hands batches over a
//! bounded channel to the async side, which finds duplicates and writes the
//! rows. Everything happens in one transaction: a campaign is either fully
//! imported or absent. A row that cannot be sent is kept, as `invalid` with
//! its reason; only a file that cannot be read as CSV at all stops the import.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::domain::phone::{Region, E164};
use crate::domain::state::{MessageKind, MessageState};
use crate::domain::template::{BoundTemplate, Template, TemplateError};
use crate::domain::text;
use crate::store::{CampaignSettings, Import, NewCampaign, NewMessage, Store, StoreError};

/// Header names recognised as the phone column, compared case-insensitively.
pub const PHONE_COLUMNS: [&str; 5] = ["phone", "to", "mobile", "msisdn", "phone_number"];
/// The column that carries per-row text when `--body` is not given.
pub const BODY_COLUMN: &str = "body";
/// The column whose URLs make a row an MMS.
pub const MEDIA_COLUMN: &str = "media_urls";
/// Most media items per MMS (spec §4.2).
pub const MAX_MEDIA: usize = 10;

const BATCH: usize = 1024;

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportSpec {
    pub campaign: String,
    pub csv_path: PathBuf,
    pub from: E164,
    /// `--body`; `None` means the CSV's `body` column.
    pub body_template: Option<String>,
    pub phone_column: Option<String>,
    pub region: Region,
    pub settings: CampaignSettings,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub campaign_id: i64,
    pub n_rows: i64,
    pub n_pending: i64,
    pub n_invalid: i64,
    pub n_duplicate: i64,
    /// Messages longer than a provider typically accepts (sent anyway).
    pub n_over_length: i64,
    pub n_mms: i64,
}

/// Why a file could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {detail}")]
    Csv { path: PathBuf, detail: String },
    #[error("{path}: the file is empty; the first line must be a header naming the columns (e.g. phone,first_name)")]
    Empty { path: PathBuf },
    #[error(
        "{path}: no phone column; name one of {names} in the header, or pass --phone-column NAME \
         (the header has: {headers})",
        names = PHONE_COLUMNS.join(", ")
    )]
    NoPhoneColumn { path: PathBuf, headers: String },
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
    #[error("{path}: {source}")]
    Template {
        path: PathBuf,
        #[source]
        source: TemplateError,
    },
    #[error("campaign {0:?} already exists; run `bpsms send --campaign {0}` to resume it")]
    CampaignExists(String),
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
pub async fn import(
    store: &Store,
    spec: &ImportSpec,
    now: i64,
) -> Result<ImportReport, ImportError> {
    if store.find_campaign(&spec.campaign).await?.is_some() {
        return Err(ImportError::CampaignExists(spec.campaign.clone()));
    }
    let (tx, mut rx) = mpsc::channel::<Vec<NewMessage>>(4);
    let (layout_tx, layout_rx) = tokio::sync::oneshot::channel();
    let reader_spec = spec.clone();
    let reader = tokio::task::spawn_blocking(move || read_rows(&reader_spec, tx, layout_tx));

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
                from_number: spec.from.as_str().to_string(),
                body_template: spec.body_template.clone(),
                default_region: spec.region.as_str().to_string(),
                phone_column: layout.phone_column,
                settings: spec.settings.clone(),
            },
            now,
        )
        .await?;
    let mut report = ImportReport {
        campaign_id: import.campaign_id(),
        ..Default::default()
    };
    while let Some(mut batch) = rx.recv().await {
        mark_duplicates(&mut import, &mut batch).await?;
        for message in &batch {
            report.count(message);
        }
        import.insert(batch).await?;
    }
    // The reader's verdict decides: on error the transaction is dropped
    // (rolled back) and nothing of the campaign remains.
    let sha256 = join_reader(reader).await?;
    report.campaign_id = import.commit(report.n_rows, &sha256).await?;
    Ok(report)
}

/// Marks as `duplicate` each row whose number an earlier row already texts,
/// naming that row.
async fn mark_duplicates(import: &mut Import, batch: &mut [NewMessage]) -> Result<(), ImportError> {
    let numbers: Vec<&str> = batch
        .iter()
        .filter(|m| m.state == MessageState::Pending)
        .filter_map(|m| m.phone_e164.as_deref())
        .collect();
    let mut first_row = import.rows_texting(&numbers).await?;
    for message in batch.iter_mut() {
        let Some(phone) = message.phone_e164.as_deref() else {
            continue;
        };
        if message.state != MessageState::Pending {
            continue;
        }
        match first_row.get(phone) {
            Some(earlier) => {
                message.state = MessageState::Duplicate;
                message.reason = Some(format!("duplicate of row {earlier}"));
            }
            None => {
                first_row.insert(phone.to_string(), message.row_number);
            }
        }
    }
    Ok(())
}

impl ImportReport {
    fn count(&mut self, message: &NewMessage) {
        self.n_rows += 1;
        match message.state {
            MessageState::Pending => self.n_pending += 1,
            MessageState::Duplicate => self.n_duplicate += 1,
            _ => self.n_invalid += 1,
        }
        if message.kind == MessageKind::Mms && message.state == MessageState::Pending {
            self.n_mms += 1;
        }
        if message.over_length && message.state == MessageState::Pending {
            self.n_over_length += 1;
        }
    }
}

async fn join_reader(
    reader: tokio::task::JoinHandle<Result<String, ImportError>>,
) -> Result<String, ImportError> {
    reader.await.unwrap_or_else(|e| {
        Err(ImportError::Csv {
            path: PathBuf::new(),
            detail: format!("the CSV reader stopped: {e}"),
        })
    })
}

/// What the header says about where things are.
struct Layout {
    phone_column: String,
}

/// Column positions resolved from the header.
struct Columns {
    phone: usize,
    body: Option<usize>,
    media: Option<usize>,
    n_fields: usize,
}

/// Reads, validates and sends rows in batches; returns the file's SHA-256.
fn read_rows(
    spec: &ImportSpec,
    tx: mpsc::Sender<Vec<NewMessage>>,
    layout_tx: tokio::sync::oneshot::Sender<Layout>,
) -> Result<String, ImportError> {
    let path = &spec.csv_path;
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.clone(),
        source,
    })?;
    let mut hashing = HashingReader::new(file);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(&mut hashing);
    let headers: Vec<String> = csv
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
        .collect();
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        return Err(ImportError::Empty { path: path.clone() });
    }
    let columns = resolve_columns(spec, &headers)?;
    let template = match &spec.body_template {
        Some(source) => Some(
            Template::parse(source)
                .and_then(|t| t.bind(&headers))
                .map_err(|source| ImportError::Template {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let _ = layout_tx.send(Layout {
        phone_column: headers[columns.phone].clone(),
    });

    let mut batch = Vec::with_capacity(BATCH);
    let mut record = csv::StringRecord::new();
    let mut row_number = 0i64;
    let mut body = String::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, &e)),
        }
        row_number += 1;
        batch.push(prepare_row(
            row_number,
            &record,
            &columns,
            template.as_ref(),
            &spec.region,
            &mut body,
        ));
        if batch.len() >= BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            if tx.blocking_send(full).is_err() {
                // The writer stopped; its error is the one to report.
                return Ok(String::new());
            }
        }
    }
    if !batch.is_empty() && tx.blocking_send(batch).is_err() {
        return Ok(String::new());
    }
    drop(csv);
    // Hash whatever the CSV reader did not need to read.
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| ImportError::Open {
        path: path.clone(),
        source,
    })?;
    Ok(hashing.hex_digest())
}

fn resolve_columns(spec: &ImportSpec, headers: &[String]) -> Result<Columns, ImportError> {
    let find = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let listed = || headers.join(", ");
    let phone = match &spec.phone_column {
        Some(name) => find(name.trim()).ok_or_else(|| ImportError::PhoneColumnMissing {
            path: spec.csv_path.clone(),
            name: name.clone(),
            headers: listed(),
        })?,
        None => PHONE_COLUMNS
            .iter()
            .find_map(|name| find(name))
            .ok_or_else(|| ImportError::NoPhoneColumn {
                path: spec.csv_path.clone(),
                headers: listed(),
            })?,
    };
    let body = find(BODY_COLUMN);
    if spec.body_template.is_none() && body.is_none() {
        return Err(ImportError::NoBody {
            path: spec.csv_path.clone(),
            headers: listed(),
        });
    }
    Ok(Columns {
        phone,
        body,
        media: find(MEDIA_COLUMN),
        n_fields: headers.len(),
    })
}

/// Turns one CSV record into a message, `pending` or `invalid` with a reason.
fn prepare_row(
    row_number: i64,
    record: &csv::StringRecord,
    columns: &Columns,
    template: Option<&BoundTemplate>,
    region: &Region,
    body: &mut String,
) -> NewMessage {
    let phone_raw = record.get(columns.phone).unwrap_or("").to_string();
    body.clear();
    match template {
        Some(template) => template.render_into(record, body),
        None => body.push_str(record.get(columns.body.unwrap_or(usize::MAX)).unwrap_or("")),
    }
    let media = columns
        .media
        .and_then(|i| record.get(i))
        .map(split_media)
        .unwrap_or_default();
    let kind = if media.is_empty() {
        MessageKind::Sms
    } else {
        MessageKind::Mms
    };
    let info = text::analyse(body);
    let mut reason = None;
    let phone_e164 = match E164::parse(&phone_raw, region) {
        Ok(number) => Some(number.as_str().to_string()),
        Err(error) => {
            reason = Some(error.to_string());
            None
        }
    };
    if reason.is_none() && record.len() != columns.n_fields {
        reason = Some(format!(
            "the row has {} fields but the header has {}; check for a missing or extra delimiter",
            record.len(),
            columns.n_fields
        ));
    }
    if reason.is_none() {
        reason = check_media(&media).err();
    }
    if reason.is_none() && kind == MessageKind::Sms && body.trim().is_empty() {
        reason = Some("the message text is empty".into());
    }
    NewMessage {
        row_number,
        phone_raw,
        phone_e164,
        kind,
        body: body.clone(),
        media_urls: (!media.is_empty()).then(|| serde_json::to_string(&media).unwrap_or_default()),
        segments: info.segments,
        encoding: info.encoding.as_str(),
        state: if reason.is_some() {
            MessageState::Invalid
        } else {
            MessageState::Pending
        },
        reason,
        over_length: kind == MessageKind::Sms && info.over_limit(),
    }
}

/// Media URLs in one cell, separated by whitespace, `,`, `;` or `|`.
fn split_media(cell: &str) -> Vec<String> {
    cell.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '|'))
        .filter(|url| !url.is_empty())
        .map(str::to_string)
        .collect()
}

fn check_media(media: &[String]) -> Result<(), String> {
    if media.len() > MAX_MEDIA {
        return Err(format!(
            "{} media URLs; an MMS carries at most {MAX_MEDIA}",
            media.len()
        ));
    }
    for url in media {
        let lower = url.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        if rest.is_none_or(|host| host.is_empty() || host.starts_with('/')) {
            let shown: String = url.chars().take(60).collect();
            return Err(format!(
                "media URL {shown:?} is not an absolute http(s) URL"
            ));
        }
    }
    Ok(())
}

fn csv_error(path: &Path, error: &csv::Error) -> ImportError {
    let location = error
        .position()
        .map(|p| format!("line {}: ", p.line()))
        .unwrap_or_default();
    let detail = match error.kind() {
        csv::ErrorKind::Utf8 { pos, err } => format!(
            "{}field {} is not valid UTF-8 ({err}); save the file as UTF-8 (in Excel: \"CSV UTF-8\")",
            pos.as_ref().map(|p| format!("line {}: ", p.line())).unwrap_or_default(),
            err.field() + 1,
        ),
        csv::ErrorKind::Io(e) => format!("{location}read error: {e}"),
        _ => format!("{location}{error}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_cells() {
        assert_eq!(
            split_media(" https://a.example/1.png; https://b.example/2.jpg |https://c.example/x "),
            [
                "https://a.example/1.png",
                "https://b.example/2.jpg",
                "https://c.example/x"
            ]
        );
        assert!(split_media("  ").is_empty());
        assert!(check_media(&["https://a.example/x.png".into()]).is_ok());
        assert!(check_media(&["ftp://a.example/x.png".into()]).is_err());
        assert!(check_media(&["https:///x.png".into()]).is_err());
        let eleven: Vec<String> = (0..11).map(|i| format!("https://m.example/{i}")).collect();
        assert!(check_media(&eleven)
            .expect_err("too many")
            .contains("at most 10"));
    }
}
