//! Names and keys that travel between the command line, the store and the
//! API: a campaign's name and a message's sid. Each has one `parse`, so
//! holding one means it was checked, and the two cannot be mixed up with each
//! other or with a phone number.

/// The longest campaign name accepted, in bytes.
const CAMPAIGN_NAME_MAX_BYTES: usize = 200;
/// The longest sid accepted (spec §11 gap 7: the API leaves its form open).
const SID_MAX_BYTES: usize = 256;

/// Why a name or a sid was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("campaign name {input:?}: give a name of 1 to 200 printable characters")]
    CampaignName { input: String },
    #[error("sid {input:?} is empty, longer than 256 bytes, or holds control characters")]
    Sid { input: String },
}

/// A campaign's name: 1 to 200 bytes of printable text, trimmed. A later run
/// with the same name resumes the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignName(String);

impl CampaignName {
    /// Trims surrounding spaces; refuses an empty name, a name longer than
    /// 200 bytes, and control characters (they would break a log line).
    pub fn parse(raw: &str) -> Result<CampaignName, IdError> {
        let input = || raw.chars().take(CAMPAIGN_NAME_MAX_BYTES + 20).collect();
        printable(raw, CAMPAIGN_NAME_MAX_BYTES)
            .map(CampaignName)
            .ok_or_else(|| IdError::CampaignName { input: input() })
    }
}

/// The id BPCC gives an accepted message, the only key to look it up by
/// (Get Message). Trimmed, non-empty, at most 256 bytes, no control
/// characters: anything else in an answer proves nothing was accepted
/// usably and is treated as ambiguous by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageSid(String);

impl MessageSid {
    pub fn parse(raw: &str) -> Result<MessageSid, IdError> {
        let input = || raw.chars().take(SID_MAX_BYTES + 20).collect();
        printable(raw, SID_MAX_BYTES)
            .map(MessageSid)
            .ok_or_else(|| IdError::Sid { input: input() })
    }
}

/// `raw` trimmed, if that leaves 1 to `max_bytes` bytes and no control
/// character.
fn printable(raw: &str, max_bytes: usize) -> Option<String> {
    let trimmed = raw.trim();
    let valid =
        !trimmed.is_empty() && trimmed.len() <= max_bytes && !trimmed.chars().any(char::is_control);
    valid.then(|| trimmed.to_owned())
}

/// The text views of a newtype over a checked `String`: the ids here and
/// [`crate::domain::phone::E164`].
macro_rules! text_id {
    ($($id:ident),*) => {$(
        impl $id {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $id {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}

pub(crate) use text_id;

text_id!(CampaignName, MessageSid);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaign_names_are_trimmed_and_bounded() {
        assert_eq!(
            CampaignName::parse("  spring sale ").map(|n| n.to_string()),
            Ok("spring sale".to_owned())
        );
        assert!(CampaignName::parse("").is_err());
        assert!(CampaignName::parse("   ").is_err());
        assert!(CampaignName::parse("a\nb").is_err());
        assert!(CampaignName::parse(&"x".repeat(200)).is_ok());
        assert!(CampaignName::parse(&"x".repeat(201)).is_err());
        assert!(CampaignName::parse("Été 2026 — rappel").is_ok());
    }

    #[test]
    fn sids_are_trimmed_and_bounded() {
        assert_eq!(
            MessageSid::parse(" 5f0c ").map(|s| s.to_string()),
            Ok("5f0c".to_owned())
        );
        assert!(MessageSid::parse("").is_err());
        assert!(MessageSid::parse("  ").is_err());
        assert!(MessageSid::parse("a\u{0}b").is_err());
        assert!(MessageSid::parse(&"s".repeat(256)).is_ok());
        assert!(MessageSid::parse(&"s".repeat(257)).is_err());
    }
}
