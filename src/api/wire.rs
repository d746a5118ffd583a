//! The BPCC SMS/MMS API's wire types, shared by the client and the simulator.
//!
//! Parsing is lenient as the spec's §11 (gap 8) asks: every response field is
//! optional, numbers may arrive as strings or as JSON numbers, `null` is
//! accepted anywhere and unknown fields are ignored. Requests are strict: we
//! send exactly the documented field names.

use serde::{Deserialize, Deserializer, Serialize};

/// Path of the token endpoint (OAuth 2.0 client credentials, form encoded).
pub const TOKEN_PATH: &str = "/configapi/v2/oauth/token";
/// Path of Send Message; Get Message appends `/{sid}`.
pub const MESSAGES_PATH: &str = "/clientweb/smsapi/v1/Messages";

/// The four documented token form fields, plus the opt-in `tenant` variant.
/// Its `Debug` leaves the secret out.
#[derive(Serialize, Deserialize)]
pub struct TokenRequest {
    pub grant_type: String,
    pub client_id: String,
    pub client_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &"(redacted)")
            .field("scope", &self.scope)
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// The token answer. `expires_in` is a string of digits in every vendor
/// example, so it is read from a string or a number. Its `Debug` leaves the
/// token out.
#[derive(Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub expires_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"(redacted)")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenResponse {
    /// Lifetime in seconds, when the server gave a usable one.
    pub fn expires_in_secs(&self) -> Option<u64> {
        self.expires_in.as_deref()?.trim().parse().ok()
    }
}

/// Which JSON key carries MMS media (spec §11 gap 11: the docs disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MediaKey {
    /// `MediaUrls`, as in the 5.2/5.19 wiki tables and the OneCloud copy.
    #[default]
    MediaUrls,
    /// `MediaURLs`, as in the Postman collection.
    #[serde(rename = "MediaURLs")]
    MediaURLs,
}

/// The JSON body of Send Message. Exactly one media key is ever written.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct SendMessageRequest {
    #[serde(rename = "To")]
    pub to: String,
    #[serde(rename = "From")]
    pub from: String,
    #[serde(rename = "Body", default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(rename = "MediaUrls", default, skip_serializing_if = "Option::is_none")]
    pub media_urls: Option<Vec<String>>,
    #[serde(rename = "MediaURLs", default, skip_serializing_if = "Option::is_none")]
    pub media_urls_upper: Option<Vec<String>>,
    #[serde(
        rename = "StatusCallback",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub status_callback: Option<String>,
}

impl SendMessageRequest {
    /// Builds a request, putting media (if any) under the chosen key only.
    pub fn new(
        to: String,
        from: String,
        body: Option<String>,
        media: Vec<String>,
        key: MediaKey,
    ) -> Self {
        let media = (!media.is_empty()).then_some(media);
        let (media_urls, media_urls_upper) = match key {
            MediaKey::MediaUrls => (media, None),
            MediaKey::MediaURLs => (None, media),
        };
        SendMessageRequest {
            to,
            from,
            body,
            media_urls,
            media_urls_upper,
            status_callback: None,
        }
    }
}

/// The message object returned by Send and Get (spec §6).
///
/// Every field is optional; counts and codes are kept as strings whatever JSON
/// type they arrived in.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MessageResource {
    #[serde(default, deserialize_with = "lenient_string")]
    pub account_sid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub api_version: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub num_segments: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub num_media: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource_uris: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub date_created: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub date_sent: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub date_updated: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub direction: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub error_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub error_message: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub from: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub price: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub sid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub to: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub uri: Option<String>,
}

/// What bpsms reads of a message object (spec §6): its id, status and
/// error. The other fields are skipped unread, whatever their shape, which
/// spares a dozen strings per answer on the send path.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct MessageAnswer {
    #[serde(default, deserialize_with = "lenient_string")]
    pub sid: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub error_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub error_message: Option<String>,
}

/// Reads a string, a number or a boolean as a string; `null` as `None`.
/// Objects and arrays also become `None`: a field of an unexpected shape must
/// not make the whole answer unreadable.
pub fn lenient_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(match value {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expires_in_as_string_or_number() {
        let s: TokenResponse = serde_json::from_str(
            r#"{"access_token":"AB","token_type":"Bearer","expires_in":"3600","scope":"x"}"#,
        )
        .expect("string form");
        assert_eq!(s.expires_in_secs(), Some(3600));
        let n: TokenResponse =
            serde_json::from_str(r#"{"access_token":"AB","expires_in":3599}"#).expect("number");
        assert_eq!(n.expires_in_secs(), Some(3599));
        let missing: TokenResponse =
            serde_json::from_str(r#"{"access_token":"AB"}"#).expect("missing");
        assert_eq!(missing.expires_in_secs(), None);
    }

    #[test]
    fn message_resource_is_lenient() {
        let m: MessageResource = serde_json::from_str(
            r#"{"sid":null,"status":"delivered","error_code":30008,"num_segments":"1",
                "num_media":2,"price":null,"unknown_field":{"a":1},"to":"14155550123"}"#,
        )
        .expect("lenient parse");
        assert_eq!(m.sid, None);
        assert_eq!(m.status.as_deref(), Some("delivered"));
        assert_eq!(m.error_code.as_deref(), Some("30008"));
        assert_eq!(m.num_media.as_deref(), Some("2"));
    }

    #[test]
    fn golden_send_request_json() {
        let req = SendMessageRequest::new(
            "+14155550123".into(),
            "+16505550100".into(),
            Some("Hi".into()),
            vec!["https://m.example/a.png".into()],
            MediaKey::MediaURLs,
        );
        assert_eq!(
            serde_json::to_string(&req).expect("serialise"),
            r#"{"To":"+14155550123","From":"+16505550100","Body":"Hi","MediaURLs":["https://m.example/a.png"]}"#
        );
        let sms = SendMessageRequest::new(
            "+1".into(),
            "+2".into(),
            Some("x".into()),
            vec![],
            MediaKey::MediaUrls,
        );
        assert_eq!(
            serde_json::to_string(&sms).expect("serialise"),
            r#"{"To":"+1","From":"+2","Body":"x"}"#
        );
    }

    #[test]
    fn golden_message_resource_json() {
        let m = MessageResource {
            sid: Some("abc".into()),
            status: Some("queued".into()),
            num_segments: Some("1".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(&m).expect("serialise");
        assert_eq!(json["sid"], "abc");
        assert_eq!(json["date_sent"], serde_json::Value::Null);
        assert_eq!(json["num_segments"], "1");
        assert!(json.get("subresource_uris").is_none());
    }
}
