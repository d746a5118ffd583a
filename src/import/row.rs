//! One CSV record into one message: the columns resolved from the header,
//! and the rules a row is checked against (number, text, media, sender,
//! time zone, consent, suppression).

use std::collections::HashMap;
use std::sync::Arc;

use super::consent::BoundRequirement;
use super::{FROM_COLUMN, MAX_MEDIA};
use crate::domain::phone::zones::{zones_for, NumberZones};
use crate::domain::phone::{Region, E164};
use crate::domain::state::{MessageKind, MessageState};
use crate::domain::template::BoundTemplate;
use crate::domain::text;
use crate::store::NewMessage;
use crate::suppress::SuppressionList;

/// Column positions resolved from the header.
pub(super) struct Columns {
    pub(super) phone: usize,
    pub(super) body: Option<usize>,
    pub(super) media: Option<usize>,
    pub(super) timezone: Option<usize>,
    pub(super) from: Option<usize>,
    pub(super) n_fields: usize,
}

/// The rules one row is checked against.
pub(super) struct RowRules {
    pub(super) columns: Columns,
    pub(super) template: Option<BoundTemplate>,
    pub(super) requirements: Vec<BoundRequirement>,
    pub(super) region: Region,
    pub(super) suppression: Arc<SuppressionList>,
    pub(super) reject_over_length: bool,
    /// A row without a `from` cell has a sender: the pool, or a check.
    pub(super) pool_sends: bool,
    /// The zone names of the `timezone` column met so far, as read and as
    /// the time zone database names them (or why it does not know them).
    pub(super) zone_names: HashMap<String, Result<String, String>>,
}

impl RowRules {
    /// Turns one CSV record into a message: `pending`, or `invalid` or
    /// `suppressed` with a reason.
    pub(super) fn prepare_row(
        &mut self,
        row_number: i64,
        record: &csv::StringRecord,
        body: &mut String,
    ) -> NewMessage {
        let columns = &self.columns;
        let phone_raw = record.get(columns.phone).unwrap_or("").to_string();
        body.clear();
        let empty_placeholder = match &self.template {
            Some(template) => template.render_into(record, body),
            None => {
                body.push_str(columns.body.and_then(|i| record.get(i)).unwrap_or(""));
                false
            }
        };
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
        let over_length = kind == MessageKind::Sms && info.over_limit();
        let phone = E164::parse(&phone_raw, &self.region);
        let cell = |column: Option<usize>| {
            column
                .and_then(|i| record.get(i))
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
        };
        let (zones, zone_problem) = match cell(columns.timezone) {
            Some(name) => match zone_name(&mut self.zone_names, name) {
                Ok(zone) => (zone, None),
                Err(problem) => (String::new(), Some(format!("row {row_number}: {problem}"))),
            },
            None => (number_zones(phone.as_ref().ok()), None),
        };
        let (from_number, from_problem) = match cell(columns.from) {
            Some(raw) => match E164::parse_sender(raw) {
                Ok(number) => (Some(number), None),
                Err(error) => (
                    None,
                    Some(format!(
                        "the {FROM_COLUMN} column holds {raw:?}, which is not a sender number: {error}"
                    )),
                ),
            },
            None if self.pool_sends => (None, None),
            None => (
                None,
                Some(format!(
                    "no sender: the {FROM_COLUMN} cell is empty and no --from was given"
                )),
            ),
        };
        let reason = match &phone {
            Err(error) => Some(error.to_string()),
            Ok(_) if record.len() != columns.n_fields => Some(format!(
                "the row has {} fields but the header has {}; check for a missing or extra delimiter",
                record.len(),
                columns.n_fields
            )),
            Ok(_) if record.as_slice().contains('\0') => Some(
                "the row contains a NUL byte; the file is damaged or not a text file".into(),
            ),
            Ok(_) if zone_problem.is_some() => zone_problem,
            Ok(_) if from_problem.is_some() => from_problem,
            Ok(_) => check_media(&media).err().or_else(|| {
                if kind == MessageKind::Sms && body.trim().is_empty() {
                    Some("the message text is empty".into())
                } else if over_length && self.reject_over_length {
                    Some(format!(
                        "the text is {} characters, over the {} that providers usually accept \
                         for one {} message; shorten it, or import with --over-length warn to send it",
                        info.chars,
                        info.max_chars(),
                        info.encoding
                    ))
                } else {
                    None
                }
            }),
        };
        let suppressed = match (&phone, &reason) {
            (Ok(number), None) => self
                .suppression
                .reason(number.as_str())
                .or_else(|| self.requirements.iter().find_map(|r| r.refusal(record))),
            _ => None,
        };
        let state = match (&reason, &suppressed) {
            (Some(_), _) => MessageState::Invalid,
            (None, Some(_)) => MessageState::Suppressed,
            (None, None) => MessageState::Pending,
        };
        NewMessage {
            row_number,
            phone_raw,
            phone_e164: phone.ok(),
            kind,
            body: body.clone(),
            media_urls: (!media.is_empty())
                .then(|| serde_json::to_string(&media).unwrap_or_default()),
            segments: info.segments,
            encoding: info.encoding.as_str(),
            state,
            reason: reason.or(suppressed),
            over_length,
            empty_placeholder,
            zones,
            from_number,
        }
    }
}

/// The name the time zone database gives the zone `name` a row's cell
/// holds, or why it has none; each distinct cell is looked up once, in
/// `known`.
fn zone_name(
    known: &mut HashMap<String, Result<String, String>>,
    name: &str,
) -> Result<String, String> {
    if let Some(found) = known.get(name) {
        return found.clone();
    }
    let found = crate::schedule::parse_zone(name)
        .map(|zone| zone.iana_name().unwrap_or(name).to_owned())
        .map_err(|error| {
            format!(
                "the time zone column holds {name:?}: {error}; or leave the cell empty to use \
                     the number's own zone"
            )
        });
    // A file of a million distinct garbage cells must not fill memory:
    // there are a few hundred real zone names.
    if known.len() < ZONE_NAMES_KEPT {
        known.insert(name.to_owned(), found.clone());
    }
    found
}

/// Distinct `timezone` cells an import remembers the verdict of.
const ZONE_NAMES_KEPT: usize = 4096;

/// The zones a number is texted in, as a zone set stores them: its own
/// prefix's, or empty for the campaign's zone (a number that spans its
/// country, or that the data does not place).
fn number_zones(number: Option<&E164>) -> String {
    match number.map(zones_for) {
        Some(NumberZones::Local(zones)) => zones.join(" "),
        Some(NumberZones::CountryWide | NumberZones::Unknown) | None => String::new(),
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
