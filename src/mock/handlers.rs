//! The simulator's HTTP surface: the three vendor endpoints, the
//! simulator-only `/_mock/*` endpoints, fault injection and quirks.
//!
//! Handlers parse with the shared wire types ([`TokenRequest`],
//! [`SendMessageRequest`]) and answer with them ([`TokenResponse`],
//! [`MessageResource`]), so a drift between client and simulator shows up as
//! a compile error or a failing test. No handler panics on request data.

use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use percent_encoding::percent_decode;
use serde_json::Value;

use crate::api::wire::{
    MessageResource, SendMessageRequest, TokenRequest, TokenResponse, MESSAGES_PATH, TOKEN_PATH,
};
use crate::mock::behaviour::{Behaviour, RetryAfter};
use crate::mock::state::{Counter, Lookup, NewMessage, SimState, TokenCheck};

/// Path of the simulator-only ledger (JSON array of `LedgerEntry`).
pub const LEDGER_PATH: &str = "/_mock/ledger";
/// Path of the simulator-only counters (JSON `Stats`).
pub const STATS_PATH: &str = "/_mock/stats";

/// The most media URLs one message may carry.
const MAX_MEDIA: usize = 10;

/// The simulator's routes over `state`.
pub fn router(state: SimState) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(MESSAGES_PATH, post(send_message))
        .route(&format!("{MESSAGES_PATH}/{{sid}}"), get(get_message))
        .route(LEDGER_PATH, get(ledger))
        .route(STATS_PATH, get(stats))
        .fallback(unknown_path)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            every_request,
        ))
        .with_state(state)
}

/// Adds the configured latency and the nginx `Server` header to every answer,
/// and logs the request (never its headers or body: they carry secrets).
async fn every_request(State(state): State<SimState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let latency = state.behaviour().latency;
    if !latency.is_zero() {
        sleep_unless_shutdown(&state, latency).await;
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static("nginx/1.14.0"));
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mock request"
    );
    response
}

// ---------------------------------------------------------------------------
// Token endpoint

async fn token(State(state): State<SimState>, body: Bytes) -> Response {
    state.count(Counter::TokenRequests);
    let behaviour = state.behaviour();
    let pairs = match parse_form(&body) {
        Ok(pairs) => pairs,
        Err(text) => return bad_request(&text),
    };
    let request: TokenRequest = match serde_json::from_value(pairs_to_json(&pairs)) {
        Ok(request) => request,
        Err(e) => return bad_request(&format!("malformed token request: {e}")),
    };
    let scope = request.scope.as_deref().unwrap_or("");
    let authenticated = request.grant_type == "client_credentials"
        && request.client_id == behaviour.client_id
        && request.client_secret == behaviour.client_secret.expose()
        && !scope.is_empty();
    if !authenticated {
        state.count(Counter::Unauthorized);
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Authentication failed",
        );
    }
    let answer = TokenResponse {
        access_token: state.issue_token(),
        token_type: Some("Bearer".to_owned()),
        expires_in: Some(behaviour.token_lifetime.as_secs().to_string()),
        scope: Some(scope.to_owned()),
    };
    let mut value = serde_json::to_value(&answer).unwrap_or(Value::Null);
    if behaviour.expires_in_number {
        value["expires_in"] = Value::from(behaviour.token_lifetime.as_secs());
    }
    json_answer(StatusCode::OK, &value)
}

// ---------------------------------------------------------------------------
// Send Message

/// The fault a Send request drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFault {
    None,
    /// An nginx error page with this status.
    Gateway(StatusCode),
    TooMany,
    Forbidden,
    Slow,
}

fn draw_send_fault(state: &SimState) -> SendFault {
    let b = state.behaviour();
    let slices = [
        (
            b.fault_500,
            SendFault::Gateway(StatusCode::INTERNAL_SERVER_ERROR),
        ),
        (b.fault_502, SendFault::Gateway(StatusCode::BAD_GATEWAY)),
        (
            b.fault_503,
            SendFault::Gateway(StatusCode::SERVICE_UNAVAILABLE),
        ),
        (b.fault_429, SendFault::TooMany),
        (b.fault_403, SendFault::Forbidden),
        (b.fault_slow, SendFault::Slow),
    ];
    if slices.iter().all(|(ratio, _)| *ratio <= 0.0) {
        return SendFault::None;
    }
    pick(state.fault_draw(), &slices).unwrap_or(SendFault::None)
}

/// The fault whose slice of `[0, 1)` holds `draw`.
fn pick<T: Copy>(draw: f64, slices: &[(f64, T)]) -> Option<T> {
    let mut upper = 0.0;
    for (ratio, fault) in slices {
        upper += ratio.max(0.0);
        if draw < upper {
            return Some(*fault);
        }
    }
    None
}

async fn send_message(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let number = state.count_send_request();
    // Gateway-level faults come before authentication, as an nginx front
    // end or a rate limiter would answer them.
    let fault = if number <= state.behaviour().fault_429_first {
        SendFault::TooMany
    } else {
        draw_send_fault(&state)
    };
    match fault {
        SendFault::Gateway(status) => {
            state.count(Counter::FaultsInjected);
            return gateway_error(status);
        }
        SendFault::TooMany => {
            state.count(Counter::FaultsInjected);
            return too_many_requests(state.behaviour());
        }
        SendFault::None | SendFault::Forbidden | SendFault::Slow => {}
    }
    if let Err(rejection) = authenticate(&state, &headers) {
        return rejection.into_response();
    }
    if fault == SendFault::Forbidden {
        state.count(Counter::FaultsInjected);
        return json_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "privilege not granted",
        );
    }
    let message = match parse_send(&headers, &body) {
        Ok(message) => message,
        Err(rejection) => return rejection.into_response(),
    };
    let resource = state.accept(message);
    state.count(Counter::SendsAccepted);
    let value = apply_quirks(resource, state.behaviour(), Endpoint::Send);
    if fault == SendFault::Slow {
        state.count(Counter::FaultsInjected);
        sleep_unless_shutdown(&state, state.behaviour().slow_delay).await;
    }
    json_answer(StatusCode::OK, &value)
}

/// Reads and validates a Send body, JSON or form encoded.
fn parse_send(headers: &HeaderMap, body: &[u8]) -> Result<NewMessage, Rejection> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.to_ascii_lowercase())
        .unwrap_or_default();
    let request = if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs = parse_form(body).map_err(Rejection::bad_request)?;
        send_request_from_form(&pairs).map_err(Rejection::bad_request)?
    } else if content_type.is_empty() || content_type.contains("json") {
        serde_json::from_slice::<SendMessageRequest>(body)
            .map_err(|e| Rejection::bad_request(format!("invalid JSON body: {e}")))?
    } else {
        return Err(Rejection {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error: "invalid_request",
            description:
                "Content-Type must be application/json or application/x-www-form-urlencoded"
                    .to_owned(),
        });
    };
    validate_send(request).map_err(Rejection::bad_request)
}

/// The form variant: `To`, `From`, `Body`, `MediaUrl` and `MediaUrl0`…`9`.
fn send_request_from_form(pairs: &[(String, String)]) -> Result<SendMessageRequest, String> {
    let mut request = SendMessageRequest::default();
    let mut to = None;
    let mut from = None;
    let mut single_media = Vec::new();
    let mut numbered_media: Vec<(u32, String)> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "To" => to = Some(value.clone()),
            "From" => from = Some(value.clone()),
            "Body" => request.body = Some(value.clone()),
            "StatusCallback" => request.status_callback = Some(value.clone()),
            "MediaUrl" => single_media.push(value.clone()),
            other => {
                // `MediaUrl10` and beyond count too, so that an 11th item is
                // rejected rather than silently dropped.
                if let Some(index) = other
                    .strip_prefix("MediaUrl")
                    .filter(|digits| !digits.is_empty() && digits.len() <= 6)
                    .and_then(|digits| digits.parse::<u32>().ok())
                {
                    numbered_media.push((index, value.clone()));
                }
            }
        }
    }
    numbered_media.sort_by_key(|(index, _)| *index);
    single_media.extend(numbered_media.into_iter().map(|(_, url)| url));
    request.to = to.ok_or("To is missing")?;
    request.from = from.ok_or("From is missing")?;
    request.media_urls = (!single_media.is_empty()).then_some(single_media);
    Ok(request)
}

/// The simulator's (invented) validation rules, spec §12.
fn validate_send(request: SendMessageRequest) -> Result<NewMessage, String> {
    if !is_e164(&request.to) {
        return Err(format!("To '{}' is not an E.164 number", request.to));
    }
    if !is_e164(&request.from) {
        return Err(format!("From '{}' is not an E.164 number", request.from));
    }
    let media_urls = match (request.media_urls, request.media_urls_upper) {
        (Some(_), Some(_)) => {
            return Err("MediaUrls and MediaURLs must not both be present".to_owned())
        }
        (Some(urls), None) | (None, Some(urls)) => urls,
        (None, None) => Vec::new(),
    };
    if media_urls.len() > MAX_MEDIA {
        return Err(format!(
            "at most {MAX_MEDIA} media URLs are allowed, got {}",
            media_urls.len()
        ));
    }
    if media_urls.iter().any(|url| url.trim().is_empty()) {
        return Err("a media URL is empty".to_owned());
    }
    let body = request.body.filter(|text| !text.is_empty());
    if body.is_none() && media_urls.is_empty() {
        return Err("Body is empty and no media is given".to_owned());
    }
    Ok(NewMessage {
        to: request.to,
        from: request.from,
        body,
        media_urls,
    })
}

/// `+` optional, then 8 to 15 digits, the first not 0.
fn is_e164(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

// ---------------------------------------------------------------------------
// Get Message

async fn get_message(
    State(state): State<SimState>,
    headers: HeaderMap,
    sid: Result<Path<String>, PathRejection>,
) -> Response {
    state.count(Counter::GetRequests);
    let behaviour = state.behaviour();
    let slices = [
        (behaviour.get_fault_500, StatusCode::INTERNAL_SERVER_ERROR),
        (behaviour.get_fault_429, StatusCode::TOO_MANY_REQUESTS),
    ];
    let drawn = slices.iter().any(|(ratio, _)| *ratio > 0.0);
    if let Some(status) = drawn.then(|| pick(state.fault_draw(), &slices)).flatten() {
        state.count(Counter::FaultsInjected);
        return match status {
            StatusCode::TOO_MANY_REQUESTS => too_many_requests(behaviour),
            _ => gateway_error(status),
        };
    }
    if let Err(rejection) = authenticate(&state, &headers) {
        return rejection.into_response();
    }
    let Ok(Path(sid)) = sid else {
        return not_found("message not found");
    };
    match state.lookup(&sid) {
        Lookup::Found(resource) => {
            let value = apply_quirks(*resource, behaviour, Endpoint::Get);
            json_answer(StatusCode::OK, &value)
        }
        Lookup::NotVisibleYet => not_found("message not visible yet"),
        Lookup::NotFound => not_found("message not found"),
    }
}

// ---------------------------------------------------------------------------
// Simulator-only endpoints

async fn ledger(State(state): State<SimState>) -> Response {
    match state.ledger_json() {
        Ok(bytes) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}

async fn stats(State(state): State<SimState>) -> Response {
    let value = serde_json::to_value(state.stats()).unwrap_or(Value::Null);
    json_answer(StatusCode::OK, &value)
}

async fn unknown_path() -> Response {
    not_found("no such endpoint")
}

// ---------------------------------------------------------------------------
// Shared pieces

/// A JSON error answer, small enough to travel in a `Result`.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl Rejection {
    fn bad_request(description: impl Into<String>) -> Self {
        Rejection {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
        }
    }

    fn unauthorized(description: &str) -> Self {
        Rejection {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_token",
            description: description.to_owned(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        json_error(self.status, self.error, &self.description)
    }
}

/// Checks `Authorization: Bearer <token>`; the error is the 401 to answer.
fn authenticate(state: &SimState, headers: &HeaderMap) -> Result<(), Rejection> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let check = match token {
        Some(token) if !token.is_empty() => state.check_token(token),
        _ => TokenCheck::Unknown,
    };
    let description = match check {
        TokenCheck::Valid => return Ok(()),
        TokenCheck::Expired => "Access token expired",
        TokenCheck::Unknown => "Authentication failed",
    };
    state.count(Counter::Unauthorized);
    Err(Rejection::unauthorized(description))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Send,
    Get,
}

/// Serialises a message object and applies the configured quirks.
fn apply_quirks(resource: MessageResource, behaviour: &Behaviour, endpoint: Endpoint) -> Value {
    let sid = resource.sid.clone();
    let mut value = serde_json::to_value(&resource).unwrap_or(Value::Null);
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    if behaviour.quirk_null_sid && endpoint == Endpoint::Get {
        object.insert("sid".to_owned(), Value::Null);
    }
    if behaviour.quirk_no_plus {
        if let Some(to) = resource.to.as_deref() {
            object.insert("to".to_owned(), Value::from(to.trim_start_matches('+')));
        }
    }
    if behaviour.quirk_numeric_error_code {
        if let Some(code) = resource
            .error_code
            .as_deref()
            .and_then(|code| code.parse::<u64>().ok())
        {
            object.insert("error_code".to_owned(), Value::from(code));
        }
    }
    if behaviour.quirk_extra_fields {
        object.insert("tenant_id".to_owned(), Value::from(resource.account_sid));
        object.insert("messaging_service_sid".to_owned(), Value::Null);
        object.insert("segments_billed".to_owned(), Value::from(1));
        object.insert(
            "links".to_owned(),
            serde_json::json!({ "self": resource.uri, "sid": sid }),
        );
    }
    value
}

fn json_answer(status: StatusCode, value: &Value) -> Response {
    (status, axum::Json(value)).into_response()
}

/// The List-Management-shaped error body (our invention, spec §12).
fn json_error(status: StatusCode, error: &str, description: &str) -> Response {
    let value = serde_json::json!({ "error": error, "error_description": description });
    json_answer(status, &value)
}

fn bad_request(description: &str) -> Response {
    json_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn not_found(description: &str) -> Response {
    json_error(StatusCode::NOT_FOUND, "not_found", description)
}

/// A 429 with the configured `Retry-After`.
fn too_many_requests(behaviour: &Behaviour) -> Response {
    let mut response = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "API limit exceeded",
    );
    let retry_after = match behaviour.retry_after {
        RetryAfter::Seconds(seconds) => Some(seconds.to_string()),
        RetryAfter::HttpDate(after) => Some(httpdate::fmt_http_date(
            SystemTime::now()
                .checked_add(after)
                .unwrap_or_else(SystemTime::now),
        )),
        RetryAfter::Omitted => None,
    };
    if let Some(value) = retry_after.and_then(|text| HeaderValue::from_str(&text).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The HTML page nginx answers gateway errors with.
fn gateway_error(status: StatusCode) -> Response {
    let title = match status.as_u16() {
        502 => "502 Bad Gateway",
        503 => "503 Service Temporarily Unavailable",
        _ => "500 Internal Server Error",
    };
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body bgcolor=\"white\">\r\n\
         <center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.14.0</center>\r\n\
         </body>\r\n</html>\r\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

/// Sleeps for `duration`, or less if the simulator shuts down meanwhile.
async fn sleep_unless_shutdown(state: &SimState, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = state.shutdown_token().cancelled() => {}
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs, in order.
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    body.split(|&byte| byte == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (key, value) = match piece.iter().position(|&byte| byte == b'=') {
                Some(at) => (&piece[..at], &piece[at + 1..]),
                None => (piece, &[][..]),
            };
            Ok((decode_component(key)?, decode_component(value)?))
        })
        .collect()
}

fn decode_component(raw: &[u8]) -> Result<String, String> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&byte| if byte == b'+' { b' ' } else { byte })
        .collect();
    percent_decode(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "form body is not valid UTF-8".to_owned())
}

/// Form pairs as a JSON object of strings (first occurrence wins), so that the
/// wire types' serde derive does the field checking.
fn pairs_to_json(pairs: &[(String, String)]) -> Value {
    let mut object = serde_json::Map::new();
    for (key, value) in pairs {
        object
            .entry(key.clone())
            .or_insert_with(|| Value::from(value.as_str()));
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_rules() {
        assert!(is_e164("+14155550123"));
        assert!(is_e164("14155550123"));
        assert!(is_e164("+12345678"));
        assert!(is_e164("+123456789012345"));
        assert!(!is_e164("+1234567"));
        assert!(!is_e164("+1234567890123456"));
        assert!(!is_e164("+04155550123"));
        assert!(!is_e164("+1415555012a"));
        assert!(!is_e164("++14155550123"));
        assert!(!is_e164(""));
        assert!(!is_e164("whatsapp:14155550123"));
    }

    #[test]
    fn form_decoding() {
        let pairs =
            parse_form(b"To=%2B14155550123&Body=Hello+world%21&&Empty=&Bare").expect("valid form");
        assert_eq!(
            pairs,
            vec![
                ("To".to_owned(), "+14155550123".to_owned()),
                ("Body".to_owned(), "Hello world!".to_owned()),
                ("Empty".to_owned(), String::new()),
                ("Bare".to_owned(), String::new()),
            ]
        );
        assert!(parse_form(b"Body=%FF").is_err());
        // A stray percent sign is kept literally rather than rejected.
        assert_eq!(
            parse_form(b"a=100%").expect("lenient"),
            vec![("a".to_owned(), "100%".to_owned())]
        );
    }

    #[test]
    fn form_media_in_index_order() {
        let pairs = parse_form(
            b"To=%2B14155550123&From=%2B16505550100&MediaUrl1=b&MediaUrl0=a&MediaUrl10=k",
        )
        .expect("valid form");
        let request = send_request_from_form(&pairs).expect("complete form");
        assert_eq!(
            request.media_urls,
            Some(vec!["a".to_owned(), "b".to_owned(), "k".to_owned()])
        );
    }

    #[test]
    fn fault_slices_are_exclusive() {
        let slices = [(0.25, 'a'), (0.5, 'b'), (0.0, 'c'), (0.25, 'd')];
        assert_eq!(pick(0.0, &slices), Some('a'));
        assert_eq!(pick(0.2499, &slices), Some('a'));
        assert_eq!(pick(0.25, &slices), Some('b'));
        assert_eq!(pick(0.7499, &slices), Some('b'));
        assert_eq!(pick(0.75, &slices), Some('d'));
        assert_eq!(pick(0.9999, &slices), Some('d'));
        assert_eq!(pick(0.5, &[(0.1, 'a')]), None);
    }
}
