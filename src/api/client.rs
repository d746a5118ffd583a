//! The API client: one cached access token refreshed by a single task at a
//! time, one rule for a refused token (refresh once, then stop), and Send and
//! Get calls that turn every answer into a [`SendOutcome`] or
//! [`PollOutcome`]. The HTTP itself is [`super::transport`]'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{RequestBuilder, StatusCode};
use tokio::sync::Mutex;

use super::outcome::{
    classify_poll, classify_send, error_text, FatalError, PollOutcome, SendOutcome,
};
use super::transport::{self, Answer, ConnectCause, Failure};
use super::wire::{
    MediaKey, SendMessageRequest, TokenRequest, TokenResponse, MESSAGES_PATH, TOKEN_PATH,
};
use crate::secret::SecretString;

/// Lifetime assumed when the token answer does not give one (gap 4).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// RFC 3986 unreserved characters: left as they are in a path segment or a
/// form value, everything else is percent-encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Everything the client needs to reach a tenant.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Scheme and host (and port), without a trailing slash.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The token `scope`: the tenant host.
    pub scope: String,
    /// Also send `tenant=<scope>` in the token form (off by default; spec §3.2).
    pub send_tenant_field: bool,
    pub media_key: MediaKey,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// A client for one tenant, shared by all workers.
pub struct ApiClient {
    http: reqwest::Client,
    config: ApiConfig,
    /// Parsed once: reqwest would parse a string URL on every request.
    send_url: reqwest::Url,
    /// The current token: a plain mutex, held only to read or replace it,
    /// so the many requests that read it never queue behind one another.
    token: std::sync::Mutex<Option<CachedToken>>,
    /// Held while a token is fetched: one request refreshes it for all.
    refresh: Mutex<()>,
    /// Set once the token endpoint has answered at all. Before that, a
    /// failure to connect says the address is wrong, not that the API is
    /// briefly away: the run stops at once instead of retrying for a while.
    reached: AtomicBool,
}

#[derive(Clone)]
struct CachedToken {
    value: SecretString,
    /// `Bearer <token>`, built once rather than per request; marked
    /// sensitive so that no debug output shows it.
    header: HeaderValue,
    refresh_at: Instant,
}

/// Why no token could be had.
enum TokenError {
    /// The endpoint could not be reached, or answered 5xx: try again later.
    Unavailable(String),
    Fatal(FatalError),
}

/// Why an authorized call has no answer to classify.
enum CallError {
    Token(TokenError),
    /// A fresh token was refused too: the credentials lack the privilege.
    Rejected(FatalError),
    Transport(Failure),
}

impl ApiClient {
    pub fn new(config: ApiConfig) -> anyhow::Result<ApiClient> {
        let http = transport::client(config.connect_timeout, config.request_timeout)?;
        let send_url = reqwest::Url::parse(&format!("{}{}", config.base_url, MESSAGES_PATH))?;
        Ok(ApiClient {
            http,
            config,
            send_url,
            token: std::sync::Mutex::new(None),
            refresh: Mutex::new(()),
            reached: AtomicBool::new(false),
        })
    }

    /// Sends one message and says what became of it.
    pub async fn send(&self, to: &str, from: &str, body: &str, media: &[String]) -> SendOutcome {
        let body = (!body.is_empty() || media.is_empty()).then(|| body.to_string());
        let request = SendMessageRequest::new(
            to.to_string(),
            from.to_string(),
            body,
            media.to_vec(),
            self.config.media_key,
        );
        let json = match serde_json::to_vec(&request) {
            Ok(json) => Bytes::from(json),
            Err(error) => {
                return SendOutcome::Ambiguous {
                    detail: format!("could not encode the request: {error}"),
                }
            }
        };
        let answer = self
            .authorized(|authorization| {
                self.http
                    .post(self.send_url.clone())
                    .header(AUTHORIZATION, authorization.clone())
                    .header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/json")
                    .body(json.clone())
            })
            .await;
        let outcome = match answer {
            Ok(Answer {
                status,
                retry_after,
                body,
            }) => classify_send(status, retry_after, &body),
            Err(CallError::Token(TokenError::Unavailable(detail))) => SendOutcome::NotAccepted {
                detail,
                rate_limited: false,
                retry_after: None,
            },
            Err(CallError::Token(TokenError::Fatal(fatal)) | CallError::Rejected(fatal)) => {
                SendOutcome::Fatal(fatal)
            }
            Err(CallError::Transport(Failure::Connect { detail, .. })) => {
                SendOutcome::NotAccepted {
                    detail: format!("could not connect: {detail}"),
                    rate_limited: false,
                    retry_after: None,
                }
            }
            Err(CallError::Transport(Failure::Broken(detail))) => SendOutcome::Ambiguous {
                detail: format!(
                    "no answer came ({detail}) after the connection was made, so the request \
                     may have reached the API"
                ),
            },
            Err(CallError::Transport(Failure::BodyBroken { status, detail })) => {
                SendOutcome::Ambiguous {
                    detail: format!(
                        "HTTP {}, then {detail} before the answer was whole",
                        status.as_u16()
                    ),
                }
            }
        };
        redact_send(outcome, self)
    }

    /// Calls Get Message for a sid.
    pub async fn poll(&self, sid: &str) -> PollOutcome {
        let url = format!(
            "{}/{}",
            self.send_url.as_str(),
            utf8_percent_encode(sid, UNRESERVED)
        );
        let answer = self
            .authorized(|authorization| {
                self.http
                    .get(&url)
                    .header(AUTHORIZATION, authorization.clone())
                    .header(ACCEPT, "application/json")
            })
            .await;
        match answer {
            Ok(Answer {
                status,
                retry_after,
                body,
            }) => classify_poll(status, retry_after, &body),
            Err(CallError::Token(TokenError::Unavailable(detail))) => PollOutcome::RetryLater {
                detail,
                retry_after: None,
            },
            Err(CallError::Token(TokenError::Fatal(fatal)) | CallError::Rejected(fatal)) => {
                PollOutcome::Fatal(fatal)
            }
            Err(CallError::Transport(failure)) => PollOutcome::RetryLater {
                detail: failure.detail().to_string(),
                retry_after: None,
            },
        }
    }

    /// Makes the request that `request` builds with the current token. A
    /// 401 certainly did nothing: the token is refreshed and the request
    /// made once more; a second 401 means the credentials will never do.
    async fn authorized(
        &self,
        request: impl Fn(&HeaderValue) -> RequestBuilder,
    ) -> Result<Answer, CallError> {
        let mut refreshed = false;
        loop {
            let token = self.token().await.map_err(CallError::Token)?;
            let answer = transport::exchange(request(&token.header))
                .await
                .map_err(CallError::Transport)?;
            if answer.status != StatusCode::UNAUTHORIZED {
                return Ok(answer);
            }
            if refreshed {
                return Err(CallError::Rejected(FatalError::CredentialsRejected {
                    text: self.redact(error_text(&answer.body)),
                }));
            }
            self.invalidate(&token);
            refreshed = true;
        }
    }

    /// Fetches a token up front, so bad credentials stop a run before any send.
    pub async fn check_credentials(&self) -> Result<(), FatalError> {
        match self.token().await {
            Ok(_) => Ok(()),
            Err(TokenError::Fatal(fatal)) => Err(fatal),
            // A busy endpoint (5xx, 429) may answer later; the send path
            // retries. An address that never answered is fatal already.
            Err(TokenError::Unavailable(detail)) => {
                tracing::warn!("token endpoint unavailable: {detail}");
                Ok(())
            }
        }
    }

    /// The cached token, refreshed when it nears expiry. The refresh is
    /// single-flight: other workers wait for the one request.
    async fn token(&self) -> Result<CachedToken, TokenError> {
        if let Some(token) = self.usable_token() {
            return Ok(token);
        }
        let _refreshing = self.refresh.lock().await;
        // Another worker may have refreshed it while this one waited.
        if let Some(token) = self.usable_token() {
            return Ok(token);
        }
        let fresh = self.fetch_token().await?;
        *self.cached() = Some(fresh.clone());
        Ok(fresh)
    }

    fn usable_token(&self) -> Option<CachedToken> {
        self.cached()
            .as_ref()
            .filter(|token| Instant::now() < token.refresh_at)
            .cloned()
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Option<CachedToken>> {
        // Held only to copy or replace a value: never poisoned half-way.
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets a token the API refused, unless another worker already
    /// replaced it.
    fn invalidate(&self, refused: &CachedToken) {
        let mut cached = self.cached();
        if cached.as_ref().is_some_and(|t| t.value == refused.value) {
            *cached = None;
        }
    }

    async fn fetch_token(&self) -> Result<CachedToken, TokenError> {
        let form = TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.expose().to_string(),
            scope: Some(self.config.scope.clone()),
            tenant: self
                .config
                .send_tenant_field
                .then(|| self.config.scope.clone()),
        };
        let encoded = form_encode(&form);
        let started = Instant::now();
        let url = format!("{}{}", self.config.base_url, TOKEN_PATH);
        let Answer { status, body, .. } = transport::exchange(
            self.http
                .post(&url)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .body(encoded),
        )
        .await
        .map_err(|failure| self.token_failure(&url, failure))?;
        self.reached.store(true, Ordering::Relaxed);
        if is_not_a_tenant(status, &body) {
            return Err(TokenError::Fatal(FatalError::NotATenant {
                url,
                status: status.as_u16(),
                text: self.redact(error_text(&body)),
            }));
        }
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable(format!(
                "token endpoint answered HTTP {}: {}",
                status.as_u16(),
                self.redact(error_text(&body))
            )));
        }
        // Redirects are not followed (see `transport::client`): one here
        // says the base URL is not the tenant's API address.
        if status.is_redirection() {
            return Err(TokenError::Fatal(FatalError::WrongEndpoint {
                status: status.as_u16(),
                path: TOKEN_PATH.into(),
            }));
        }
        if !status.is_success() {
            return Err(TokenError::Fatal(FatalError::TokenRefused {
                status: status.as_u16(),
                text: self.redact(error_text(&body)),
            }));
        }
        // Parse whatever the Content-Type says (spec §3.3).
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            TokenError::Fatal(FatalError::TokenUnreadable {
                status: status.as_u16(),
                text: "the body is not a token object".into(),
            })
        })?;
        if token.access_token.trim().is_empty() {
            return Err(TokenError::Fatal(FatalError::TokenUnreadable {
                status: status.as_u16(),
                text: "the access_token is empty".into(),
            }));
        }
        let lifetime = token
            .expires_in_secs()
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Refresh when max(60 s, 10 %) of the lifetime remains; for very short
        // lifetimes, at half-life.
        let margin = Duration::from_secs(60).max(lifetime / 10).min(lifetime / 2);
        let Ok(mut header) = HeaderValue::from_str(&format!("Bearer {}", token.access_token))
        else {
            return Err(TokenError::Fatal(FatalError::TokenUnreadable {
                status: status.as_u16(),
                text: "the access_token holds characters an HTTP header cannot carry".into(),
            }));
        };
        header.set_sensitive(true);
        tracing::debug!(lifetime_s = lifetime.as_secs(), "access token obtained");
        Ok(CachedToken {
            value: SecretString::new(token.access_token),
            header,
            refresh_at: started + (lifetime - margin),
        })
    }

    /// What a token request that got no answer means. Plain HTTP where TLS
    /// was asked for never heals; neither does an address that never
    /// answered (the first request); a failure after the endpoint has
    /// answered before is worth retrying.
    fn token_failure(&self, url: &str, failure: Failure) -> TokenError {
        let unreachable = |what: String| {
            TokenError::Fatal(FatalError::Unreachable {
                url: url.to_string(),
                what,
            })
        };
        match failure {
            Failure::Connect {
                cause: ConnectCause::PlainHttp,
                ..
            } => TokenError::Fatal(FatalError::PlainHttp {
                url: url.to_string(),
            }),
            Failure::Connect { cause, detail } if !self.reached.load(Ordering::Relaxed) => {
                match cause {
                    ConnectCause::Refused => unreachable(format!(
                        "the connection to {} was refused (nothing listens on that port)",
                        host_and_port(url)
                    )),
                    _ => unreachable(detail),
                }
            }
            failure => {
                TokenError::Unavailable(format!("token request failed: {}", failure.detail()))
            }
        }
    }

    /// Removes the secret and the current token from text bound for people.
    fn redact(&self, text: String) -> String {
        let mut text = text;
        let secret = self.config.client_secret.expose();
        if !secret.is_empty() {
            text = text.replace(secret, "(redacted)");
        }
        if let Some(token) = self.cached().as_ref() {
            text = text.replace(token.value.expose(), "(redacted)");
        }
        text
    }
}

fn redact_send(outcome: SendOutcome, client: &ApiClient) -> SendOutcome {
    match outcome {
        SendOutcome::Rejected { code, text } => SendOutcome::Rejected {
            code,
            text: client.redact(text),
        },
        SendOutcome::Ambiguous { detail } => SendOutcome::Ambiguous {
            detail: client.redact(detail),
        },
        other => other,
    }
}

/// A token endpoint's answer that no BPCC tenant gives: no such path (404,
/// 405, 501), or a web page where a JSON answer belongs. A 5xx page is left
/// out: a tenant's own gateway answers so while the API behind it is away.
fn is_not_a_tenant(status: StatusCode, body: &[u8]) -> bool {
    let no_such_endpoint = matches!(status.as_u16(), 404 | 405 | 501);
    let web_page = !status.is_server_error()
        && status != StatusCode::TOO_MANY_REQUESTS
        && !status.is_redirection()
        && body.trim_ascii_start().starts_with(b"<");
    no_such_endpoint || web_page
}

/// `host:port` of a URL, for saying where a connection was refused.
fn host_and_port(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}:{}",
            parsed.host_str().unwrap_or_default(),
            parsed.port_or_known_default().unwrap_or_default()
        ),
        Err(_) => url.to_string(),
    }
}

fn form_encode(form: &TokenRequest) -> String {
    let mut fields = vec![
        ("grant_type", form.grant_type.as_str()),
        ("client_id", form.client_id.as_str()),
        ("client_secret", form.client_secret.as_str()),
    ];
    if let Some(scope) = &form.scope {
        fields.push(("scope", scope));
    }
    if let Some(tenant) = &form.tenant {
        fields.push(("tenant", tenant));
    }
    fields
        .iter()
        .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, UNRESERVED)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_form_has_the_four_documented_fields() {
        let form = TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: "sms.robot".into(),
            client_secret: "a&b=c".into(),
            scope: Some("acme.brightpattern.com".into()),
            tenant: None,
        };
        assert_eq!(
            form_encode(&form),
            "grant_type=client_credentials&client_id=sms.robot&client_secret=a%26b%3Dc&scope=acme.brightpattern.com"
        );
    }

    #[test]
    fn sid_is_a_single_path_segment() {
        assert_eq!(
            utf8_percent_encode("MM3c/../x y", UNRESERVED).to_string(),
            "MM3c%2F..%2Fx%20y"
        );
    }
}
