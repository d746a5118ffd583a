//! The entry point of the fuzz target under `fuzz/` (`cargo +nightly fuzz
//! run import_rows`), kept in the library so that the inputs the fuzzer
//! found are replayed by ordinary tests (`tests/it/fuzz_replay.rs`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::config;
use crate::domain::ids::CampaignName;
use crate::domain::phone::{Region, E164};
use crate::domain::state::AmbiguousPolicy;
use crate::domain::template::Template;
use crate::domain::text;
use crate::import::{Decoded, FileEncoding, ImportSpec, RecipientTable, SourceOptions};
use crate::store::CampaignSettings;
use crate::suppress::SuppressionList;

/// Separates the template from the CSV in a fuzz input; 0xFE never occurs
/// in UTF-8, so it cannot cut a valid template in two.
const SEPARATOR: u8 = 0xFE;

/// Reads one fuzz input the way an import would: the first byte picks the
/// options (delimiter, encoding, region, over-length policy), the bytes up
/// to the first 0xFE are the `--body` template (none when there is no
/// 0xFE: the CSV's `body` column), the rest is the CSV. Every row is
/// validated and rendered; nothing may panic, every verdict must hold its
/// invariants, and a number stored as valid must read back as itself.
pub fn import_rows(data: &[u8]) {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let (template, csv) = match rest.iter().position(|&b| b == SEPARATOR) {
        Some(at) => (
            Some(String::from_utf8_lossy(&rest[..at]).into_owned()),
            &rest[at + 1..],
        ),
        None => (None, rest),
    };
    if let Some(source) = &template {
        if let Ok(template) = Template::parse(source) {
            let _ = template.placeholders();
        }
    }
    let regions = ["US", "GB", "DE", "IN"];
    let region =
        Region::parse(regions[usize::from(options >> 4) % regions.len()]).unwrap_or_default();
    let Ok(campaign) = CampaignName::parse("fuzz") else {
        return;
    };
    let spec = ImportSpec {
        campaign,
        csv_path: PathBuf::from("fuzz.csv"),
        needs_sender: false,
        body_template: template,
        phone_column: None,
        region,
        source: SourceOptions {
            delimiter: [None, Some(b';'), Some(b'\t'), Some(b',')][usize::from(options & 3)],
            encoding: if options & 4 == 0 {
                FileEncoding::Utf8
            } else {
                FileEncoding::Windows1252
            },
        },
        suppression: Arc::new(SuppressionList::default()),
        reject_over_length: options & 8 != 0,
        requirements: Vec::new(),
        timezone_column: None,
        rules: Default::default(),
        // Not read while rows are read.
        settings: CampaignSettings {
            rate: config::DEFAULT_RATE,
            concurrency: config::DEFAULT_CONCURRENCY,
            poll_delay: config::DEFAULT_POLL_DELAY,
            track_for: config::DEFAULT_TRACK_FOR,
            on_ambiguous: AmbiguousPolicy::Hold,
        },
    };
    let input = Decoded::new(csv, spec.source.encoding);
    let Ok(mut table) = RecipientTable::open(&spec, input) else {
        return;
    };
    while let Ok(Some(batch)) = table.next_batch() {
        for message in batch {
            if let Some(number) = message.phone_e164.as_ref().map(E164::as_str) {
                // A stored number is valid E.164 and reads back as itself.
                assert!(number.starts_with('+') && number.len() <= 16);
                assert_eq!(
                    E164::parse(number, &region)
                        .map(|n| n.to_string())
                        .as_deref(),
                    Ok(number)
                );
            }
            assert_eq!(
                message.reason.is_some(),
                message.state.as_str() != "pending"
            );
            assert_eq!(text::analyse(&message.body).segments, message.segments);
        }
    }
}
