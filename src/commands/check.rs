//! `bpsms check` and `send --dry-run`: imports into a scratch database that
//! is thrown away ([`crate::check`]), then shows what would be sent.

use anyhow::anyhow;

use super::exit::{Failure, Outcome};
use super::{import_failure, import_spec};
use crate::cli::SuppressArgs;
use crate::config::{Config, Content};

pub(super) async fn run(
    config: &Config,
    content: &Content,
    suppress: &SuppressArgs,
    preview: usize,
) -> Result<Outcome, Failure> {
    if content.csv.is_none() {
        return Err(Failure::usage(anyhow!(
            "pass --csv FILE: the recipients file to check (a campaign already imported is \
             shown by `bpsms status --campaign NAME`)"
        )));
    }
    let settings = config
        .run_settings(&Default::default(), None)
        .map_err(Failure::usage)?;
    let spec = import_spec("check", content, suppress, content.from.clone(), &settings)?;
    let report = crate::check::run(&spec, preview)
        .await
        .map_err(import_failure)?;
    print!("{report}");
    Ok(Outcome::Done)
}
