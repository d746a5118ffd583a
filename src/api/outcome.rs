//! What an answer of the API means for the message, as the spec's §11
//! (gap 2) prescribes. Pure functions of the status code and body, so the
//! classification is tested without a network.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

use super::wire::MessageAnswer;

/// The longest body text kept from an error answer.
pub const ERROR_TEXT_LIMIT: usize = 4096;
/// The largest success body read (a message object is well under 4 KiB).
const BODY_LIMIT: usize = 1 << 20;

/// How much of an answer's body is kept: [`BODY_LIMIT`] bytes of a success
/// and [`ERROR_TEXT_LIMIT`] bytes of anything else.
pub fn body_limit(status: StatusCode) -> usize {
    if status.is_success() {
        BODY_LIMIT
    } else {
        ERROR_TEXT_LIMIT
    }
}
/// The longest error text stored or shown.
const ERROR_TEXT_CHARS: usize = 300;
/// Longest sid accepted (spec §11 gap 7).
const SID_MAX_BYTES: usize = 256;
/// Never wait longer than this on a `Retry-After`.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(600);

/// The verdict on one Send Message request.
#[derive(Debug, Clone, PartialEq)]
pub enum SendOutcome {
    /// Accepted: the message has a sid and must be tracked.
    Accepted {
        sid: String,
        message: Box<MessageAnswer>,
    },
    /// The API said the request is wrong: final, never retried.
    Rejected { code: Option<String>, text: String },
    /// The API certainly did not accept it; safe to send again.
    NotAccepted {
        detail: String,
        /// The API asked us to slow down (429): not a failed attempt.
        rate_limited: bool,
        retry_after: Option<Duration>,
    },
    /// It may or may not have been accepted.
    Ambiguous { detail: String },
    /// The answer says the configuration is wrong; stop the campaign.
    Fatal(FatalError),
}

/// The verdict on one Get Message request.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// The API reported a status.
    Status(Box<MessageAnswer>),
    /// 404: not visible yet, or no longer.
    NotFound,
    /// Nothing learnt; ask again later.
    RetryLater {
        detail: String,
        retry_after: Option<Duration>,
    },
    Fatal(FatalError),
}

/// Answers that no retry can fix: the operator must change something.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FatalError {
    #[error(
        "the token endpoint refused the credentials (HTTP {status}: {text}); check BPSMS_CLIENT_ID \
         (the BPCC username), BPSMS_CLIENT_SECRET (the API secret generated for that user), \
         BPSMS_TENANT (the token scope, normally the tenant host) and that the user is enabled, \
         not locked out, and its role has the \"Use SMS/MMS API\" privilege"
    )]
    TokenRefused { status: u16, text: String },
    #[error(
        "the token endpoint answered HTTP {status} without a usable token ({text}); check that \
         --base-url points at the tenant host"
    )]
    TokenUnreadable { status: u16, text: String },
    #[error(
        "the API rejected a fresh access token (HTTP 401: {text}); check that the user's role has \
         the \"Use SMS/MMS API\" privilege and that BPSMS_TENANT names this tenant"
    )]
    CredentialsRejected { text: String },
    #[error(
        "the API refused access (HTTP 403: {text}); check that the user's role has the \
         \"Use SMS/MMS API\" privilege and that --from is a Text Out access number of the tenant"
    )]
    Forbidden { text: String },
    #[error(
        "the API answered HTTP {status} on {path}: the address is wrong; check --base-url \
         (the tenant host, e.g. https://acme.brightpattern.com)"
    )]
    WrongEndpoint { status: u16, path: String },
    #[error(
        "could not connect to {url}: {what}; check --base-url (the tenant host, e.g. \
         https://acme.brightpattern.com) and that this machine can reach it (firewall, proxy \
         variables)"
    )]
    Unreachable { url: String, what: String },
    #[error(
        "the server at {url} answered in plain HTTP, not TLS; use http:// only for a loopback \
         simulator, and https:// for a tenant (e.g. https://acme.brightpattern.com)"
    )]
    PlainHttp { url: String },
    #[error(
        "{url} is reachable, but not a BPCC tenant at this address: its token endpoint answered \
         HTTP {status} ({text}); check --base-url (the tenant host, e.g. \
         https://acme.brightpattern.com)"
    )]
    NotATenant {
        url: String,
        status: u16,
        text: String,
    },
}

/// Classifies a Send answer that arrived (any status other than 401, which
/// the client handles by refreshing the token).
pub fn classify_send(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> SendOutcome {
    if status.is_success() {
        return match serde_json::from_slice::<MessageAnswer>(body) {
            Ok(message) => match usable_sid(message.sid.as_deref()) {
                Some(sid) => SendOutcome::Accepted {
                    sid,
                    message: Box::new(message),
                },
                None => SendOutcome::Ambiguous {
                    detail: format!("HTTP {} without a usable sid", status.as_u16()),
                },
            },
            Err(_) => SendOutcome::Ambiguous {
                detail: format!(
                    "HTTP {} with an unreadable body: {}",
                    status.as_u16(),
                    error_text(body)
                ),
            },
        };
    }
    match status.as_u16() {
        429 => SendOutcome::NotAccepted {
            detail: "HTTP 429 too many requests".into(),
            rate_limited: true,
            retry_after,
        },
        // The server gave up waiting for our request: it did not take it.
        408 => SendOutcome::NotAccepted {
            detail: "HTTP 408 request timeout".into(),
            rate_limited: false,
            retry_after,
        },
        403 => SendOutcome::Fatal(FatalError::Forbidden {
            text: error_text(body),
        }),
        404 | 405 => SendOutcome::Fatal(FatalError::WrongEndpoint {
            status: status.as_u16(),
            path: super::wire::MESSAGES_PATH.into(),
        }),
        400..=499 => SendOutcome::Rejected {
            code: error_code(body).or_else(|| Some(status.as_u16().to_string())),
            text: format!("HTTP {}: {}", status.as_u16(), error_text(body)),
        },
        _ => SendOutcome::Ambiguous {
            detail: unclear_answer(status, body),
        },
    }
}

/// What an answer that settles nothing (a 5xx, a 3xx) does say. A web page
/// comes from the web server in front of the API (nginx answers a gateway
/// error so), not from the API: it tells that the API's answer did not come
/// through, not whether the API took the request.
fn unclear_answer(status: StatusCode, body: &[u8]) -> String {
    let code = status.as_u16();
    let text = error_text(body);
    if body.trim_ascii_start().starts_with(b"<") {
        format!(
            "HTTP {code} from the tenant's web server, not from the API (its page: {text}); \
             the API's answer did not come through, so whether it took the message is not known"
        )
    } else {
        format!("HTTP {code}: {text}; this answer does not say whether the API took the message")
    }
}

/// Classifies a Get answer (any status other than 401).
pub fn classify_poll(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> PollOutcome {
    if status.is_success() {
        let problem = match serde_json::from_slice::<MessageAnswer>(body) {
            Ok(message)
                if message
                    .status
                    .as_deref()
                    .is_some_and(|s| !s.trim().is_empty()) =>
            {
                return PollOutcome::Status(Box::new(message))
            }
            Ok(_) => "without a status",
            Err(_) => "with an unreadable body",
        };
        return PollOutcome::RetryLater {
            detail: format!("HTTP {} {problem}", status.as_u16()),
            retry_after: None,
        };
    }
    match status.as_u16() {
        404 => PollOutcome::NotFound,
        403 => PollOutcome::Fatal(FatalError::Forbidden {
            text: error_text(body),
        }),
        405 => PollOutcome::Fatal(FatalError::WrongEndpoint {
            status: 405,
            path: format!("{}/{{sid}}", super::wire::MESSAGES_PATH),
        }),
        code => PollOutcome::RetryLater {
            detail: format!("HTTP {code}: {}", error_text(body)),
            retry_after,
        },
    }
}

/// A sid we can key tracking by: non-empty and of sane length.
fn usable_sid(sid: Option<&str>) -> Option<String> {
    let sid = sid?.trim();
    (!sid.is_empty() && sid.len() <= SID_MAX_BYTES).then(|| sid.to_string())
}

/// The human-readable text of an error body, whatever its shape (gap 1).
pub fn error_text(body: &[u8]) -> String {
    let body = &body[..body.len().min(ERROR_TEXT_LIMIT)];
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for key in [
            "error_description",
            "error_message",
            "errorMessage",
            "message",
            "error",
        ] {
            if let Some(serde_json::Value::String(text)) = map.get(key) {
                if !text.trim().is_empty() {
                    return clip(text);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = strip_tags(&text);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        "(empty body)".into()
    } else {
        clip(&collapsed)
    }
}

/// An error code carried in a JSON error body, if any.
fn error_code(body: &[u8]) -> Option<String> {
    let serde_json::Value::Object(map) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    ["error_code", "errorCode", "code"]
        .iter()
        .find_map(|key| match map.get(*key)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(clip(s)),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// Drops HTML tags so a proxy's error page reads as its text.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(ERROR_TEXT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Reads a `Retry-After` value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(RETRY_AFTER_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).expect("valid status")
    }

    #[track_caller]
    fn check_send(code: u16, body: &str, expected: &str) {
        let outcome = classify_send(status(code), None, body.as_bytes());
        let kind = match &outcome {
            SendOutcome::Accepted { .. } => "accepted",
            SendOutcome::Rejected { .. } => "rejected",
            SendOutcome::NotAccepted {
                rate_limited: true, ..
            } => "rate-limited",
            SendOutcome::NotAccepted { .. } => "not-accepted",
            SendOutcome::Ambiguous { .. } => "ambiguous",
            SendOutcome::Fatal(_) => "fatal",
        };
        assert_eq!(kind, expected, "HTTP {code} {body}: {outcome:?}");
    }

    #[test]
    fn send_classification_follows_the_spec_table() {
        check_send(200, r#"{"sid":"abc","status":"queued"}"#, "accepted");
        check_send(201, r#"{"sid":"abc","status":"queued"}"#, "accepted");
        check_send(200, r#"{"sid":"abc","status":"failed"}"#, "accepted");
        check_send(200, r#"{"sid":null,"status":"queued"}"#, "ambiguous");
        check_send(200, r#"{"sid":"  ","status":"queued"}"#, "ambiguous");
        check_send(200, "<html>oops</html>", "ambiguous");
        check_send(200, "", "ambiguous");
        check_send(
            400,
            r#"{"error":"invalid_request","error_description":"bad To"}"#,
            "rejected",
        );
        check_send(413, "too large", "rejected");
        check_send(415, "", "rejected");
        check_send(422, "", "rejected");
        check_send(409, "", "rejected");
        check_send(429, "", "rate-limited");
        check_send(408, "", "not-accepted");
        check_send(403, "", "fatal");
        check_send(404, "", "fatal");
        check_send(405, "", "fatal");
        check_send(500, "<html><title>500</title></html>", "ambiguous");
        check_send(502, "", "ambiguous");
        check_send(503, "", "ambiguous");
        check_send(504, "", "ambiguous");
        check_send(302, "", "ambiguous");
    }

    #[test]
    fn a_gateway_page_is_told_from_the_api_answering() {
        let page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        let SendOutcome::Ambiguous { detail } = classify_send(status(502), None, page) else {
            panic!("expected ambiguous");
        };
        assert_eq!(
            detail,
            "HTTP 502 from the tenant's web server, not from the API (its page: 502 Bad Gateway \
             nginx); the API's answer did not come through, so whether it took the message is \
             not known"
        );
        let SendOutcome::Ambiguous { detail } =
            classify_send(status(500), None, br#"{"error":"internal"}"#)
        else {
            panic!("expected ambiguous");
        };
        assert_eq!(
            detail,
            "HTTP 500: internal; this answer does not say whether the API took the message"
        );
    }

    #[test]
    fn accepted_status_and_sid_are_kept() {
        let outcome = classify_send(
            status(200),
            None,
            br#"{"sid":"5f0c","status":"queued","error_code":null,"extra":1}"#,
        );
        let SendOutcome::Accepted { sid, message } = outcome else {
            panic!("expected accepted");
        };
        assert_eq!(sid, "5f0c");
        assert_eq!(message.status.as_deref(), Some("queued"));
    }

    #[test]
    fn poll_classification() {
        assert!(matches!(
            classify_poll(status(200), None, br#"{"sid":null,"status":"delivered"}"#),
            PollOutcome::Status(_)
        ));
        assert!(matches!(
            classify_poll(status(200), None, br#"{"sid":"x"}"#),
            PollOutcome::RetryLater { .. }
        ));
        assert!(matches!(
            classify_poll(status(200), None, b"garbage"),
            PollOutcome::RetryLater { .. }
        ));
        assert_eq!(classify_poll(status(404), None, b""), PollOutcome::NotFound);
        assert!(matches!(
            classify_poll(status(503), Some(Duration::from_secs(3)), b""),
            PollOutcome::RetryLater {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            classify_poll(status(403), None, b""),
            PollOutcome::Fatal(FatalError::Forbidden { .. })
        ));
    }

    #[test]
    fn error_text_of_every_shape() {
        assert_eq!(
            error_text(
                br#"{"error":"invalid_client","error_description":"Authentication failed"}"#
            ),
            "Authentication failed"
        );
        assert_eq!(
            error_text(br#"{"errorCode":3,"errorMessage":"privilege not granted"}"#),
            "privilege not granted"
        );
        assert_eq!(
            error_text(
                b"<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"
            ),
            "502 Bad Gateway nginx"
        );
        assert_eq!(error_text(b"   "), "(empty body)");
        assert!(error_text("x".repeat(10_000).as_bytes()).chars().count() <= ERROR_TEXT_CHARS + 1);
        assert_eq!(error_code(br#"{"errorCode":3}"#).as_deref(), Some("3"));
    }

    #[test]
    fn retry_after_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("99999", now), Some(RETRY_AFTER_CAP));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
