//! `bpsms export`: one record per CSV data row, in row order, as CSV or JSON,
//! to a file or stdout.

use std::fs::File;
use std::io::{BufWriter, ErrorKind, Write};

use anyhow::Context;

use super::exit::{Failure, Outcome};
use super::{find, open_existing_store};
use crate::cli::{ExportArgs, ExportFormat};
use crate::config::{self, Config};
use crate::report;
use crate::store::{Campaign, Store};

pub(super) async fn run(config: &Config, args: ExportArgs) -> Result<Outcome, Failure> {
    let name = config::campaign_name(&args.campaign).map_err(Failure::usage)?;
    let store = open_existing_store(config).await?;
    let campaign = find(&store, config, &name).await?;
    match &args.out {
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("failed to create {}", path.display()))?;
            write_export(&store, &campaign, args.format, BufWriter::new(file)).await?;
        }
        None => {
            let stdout = BufWriter::new(std::io::stdout().lock());
            match write_export(&store, &campaign, args.format, stdout).await {
                // `bpsms export | head`: the reader has what it wanted.
                Err(error) if reader_left(&error) => {}
                result => result?,
            }
        }
    }
    store.close().await;
    Ok(Outcome::Done)
}

/// Writes an export of `campaign` in `format`.
pub(super) async fn write_export(
    store: &Store,
    campaign: &Campaign,
    format: ExportFormat,
    out: impl Write,
) -> anyhow::Result<()> {
    match format {
        ExportFormat::Csv => report::export_csv(store, campaign, out).await,
        ExportFormat::Json => report::export_json(store, campaign, out).await,
    }
    .context("failed to write the export")
}

/// Whether writing failed because the program reading stdout exited. Like
/// `cat`, the export then ends quietly: a closed pipe is how a reader says it
/// has enough. A full disk or any other write error stays an error.
fn reader_left(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        // The CSV and JSON writers wrap the write's error in their own,
        // without exposing it as the source.
        let kind = if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            Some(io.kind())
        } else if let Some(csv) = cause.downcast_ref::<csv::Error>() {
            match csv.kind() {
                csv::ErrorKind::Io(io) => Some(io.kind()),
                _ => None,
            }
        } else if let Some(json) = cause.downcast_ref::<serde_json::Error>() {
            json.io_error_kind()
        } else {
            None
        };
        kind == Some(ErrorKind::BrokenPipe)
    })
}
