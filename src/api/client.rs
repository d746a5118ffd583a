//! The HTTP client: one shared connection pool, one cached access token
//! refreshed by a single task at a time, and Send/Get calls that turn every
//! answer into a [`SendOutcome`] or [`PollOutcome`].

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use tokio::sync::Mutex;

use super::direct::{Answer, Connections, Failure};
use super::outcome::{
    body_limit, classify_poll, classify_send, error_text, parse_retry_after, FatalError,
    PollOutcome, SendOutcome,
};
use super::wire::{
    MediaKey, SendMessageRequest, TokenRequest, TokenResponse, MESSAGES_PATH, TOKEN_PATH,
};
use crate::secret::SecretString;

/// Lifetime assumed when the token answer does not give one (gap 4).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const USER_AGENT: &str = concat!("bpsms/", env!("CARGO_PKG_VERSION"));

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
    /// The send path's own connections; `None` when a proxy is configured,
    /// which only reqwest speaks to.
    direct: Option<Connections>,
    config: ApiConfig,
    /// Parsed once: reqwest would parse a string URL on every request.
    send_url: reqwest::Url,
    /// The current token: a plain mutex, held only to read or replace it,
    /// so the many requests that read it never queue behind one another.
    token: std::sync::Mutex<Option<CachedToken>>,
    /// Held while a token is fetched: one request refreshes it for all.
    refresh: Mutex<()>,
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

impl ApiClient {
    pub fn new(config: ApiConfig) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let send_url = reqwest::Url::parse(&format!("{}{}", config.base_url, MESSAGES_PATH))?;
        let direct = if proxy_configured() {
            None
        } else {
            Some(Connections::new(
                &send_url,
                USER_AGENT,
                config.connect_timeout,
            )?)
        };
        Ok(ApiClient {
            http,
            direct,
            config,
            send_url,
            token: std::sync::Mutex::new(None),
            refresh: Mutex::new(()),
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
        let mut refreshed = false;
        loop {
            let token = match self.token().await {
                Ok(token) => token,
                Err(TokenError::Unavailable(detail)) => {
                    return SendOutcome::NotAccepted {
                        detail,
                        rate_limited: false,
                        retry_after: None,
                    }
                }
                Err(TokenError::Fatal(fatal)) => return SendOutcome::Fatal(fatal),
            };
            let answer = match &self.direct {
                Some(connections) => {
                    let posting = connections.post_json(&token.header, json.clone());
                    match tokio::time::timeout(self.config.request_timeout, posting).await {
                        Ok(answer) => answer,
                        Err(_) => Err(Failure::Broken("timed out".into())),
                    }
                }
                None => self.post_through_reqwest(&token.header, json.clone()).await,
            };
            let Answer {
                status,
                retry_after,
                body,
            } = match answer {
                Ok(answer) => answer,
                Err(Failure::Connect(detail)) => {
                    return SendOutcome::NotAccepted {
                        detail: format!("could not connect: {detail}"),
                        rate_limited: false,
                        retry_after: None,
                    }
                }
                Err(Failure::Broken(detail)) => {
                    return redact_send(SendOutcome::Ambiguous { detail }, self)
                }
                Err(Failure::BodyBroken { status, detail }) => {
                    return redact_send(
                        SendOutcome::Ambiguous {
                            detail: format!("HTTP {}, then {detail}", status.as_u16()),
                        },
                        self,
                    )
                }
            };
            let retry_after = retry_after.as_ref().and_then(parse_retry_after_header);
            if status == StatusCode::UNAUTHORIZED {
                // A 401 certainly did not send anything: refresh once and retry.
                if refreshed {
                    return SendOutcome::Fatal(FatalError::CredentialsRejected {
                        text: self.redact(error_text(&body)),
                    });
                }
                self.invalidate(&token);
                refreshed = true;
                continue;
            }
            return redact_send(classify_send(status, retry_after, &body), self);
        }
    }

    /// The send POST through reqwest, which honours the proxy settings.
    async fn post_through_reqwest(
        &self,
        authorization: &HeaderValue,
        json: Bytes,
    ) -> Result<Answer, Failure> {
        let response = self
            .http
            .post(self.send_url.clone())
            .header(AUTHORIZATION, authorization.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json")
            .body(json)
            .send()
            .await
            .map_err(|error| {
                if error.is_connect() {
                    Failure::Connect(describe(&error))
                } else {
                    Failure::Broken(describe(&error))
                }
            })?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).cloned();
        let body = read_body(response)
            .await
            .map_err(|error| Failure::BodyBroken {
                status,
                detail: describe(&error),
            })?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// Calls Get Message for a sid.
    pub async fn poll(&self, sid: &str) -> PollOutcome {
        let url = format!(
            "{}/{}",
            self.send_url.as_str(),
            utf8_percent_encode(sid, UNRESERVED)
        );
        let mut refreshed = false;
        loop {
            let token = match self.token().await {
                Ok(token) => token,
                Err(TokenError::Unavailable(detail)) => {
                    return PollOutcome::RetryLater {
                        detail,
                        retry_after: None,
                    }
                }
                Err(TokenError::Fatal(fatal)) => return PollOutcome::Fatal(fatal),
            };
            let answer = self
                .http
                .get(&url)
                .header(AUTHORIZATION, token.header.clone())
                .header(ACCEPT, "application/json")
                .send()
                .await;
            let response = match answer {
                Ok(response) => response,
                Err(error) => {
                    return PollOutcome::RetryLater {
                        detail: describe(&error),
                        retry_after: None,
                    }
                }
            };
            let status = response.status();
            let retry_after = retry_after(response.headers());
            let body = match read_body(response).await {
                Ok(body) => body,
                Err(error) => {
                    return PollOutcome::RetryLater {
                        detail: describe(&error),
                        retry_after: None,
                    }
                }
            };
            if status == StatusCode::UNAUTHORIZED {
                if refreshed {
                    return PollOutcome::Fatal(FatalError::CredentialsRejected {
                        text: self.redact(error_text(&body)),
                    });
                }
                self.invalidate(&token);
                refreshed = true;
                continue;
            }
            return classify_poll(status, retry_after, &body);
        }
    }

    /// Fetches a token up front, so bad credentials stop a run before any send.
    pub async fn check_credentials(&self) -> Result<(), FatalError> {
        match self.token().await {
            Ok(_) => Ok(()),
            Err(TokenError::Fatal(fatal)) => Err(fatal),
            // Unreachable now may be reachable later; the send path retries.
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
        let response = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(encoded)
            .send()
            .await
            .map_err(|error| {
                TokenError::Unavailable(format!("token request failed: {}", describe(&error)))
            })?;
        let status = response.status();
        let body = read_body(response).await.map_err(|error| {
            TokenError::Unavailable(format!("token request failed: {}", describe(&error)))
        })?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::Unavailable(format!(
                "token endpoint answered HTTP {}: {}",
                status.as_u16(),
                self.redact(error_text(&body))
            )));
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

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after_header(headers.get(RETRY_AFTER)?)
}

fn parse_retry_after_header(value: &HeaderValue) -> Option<Duration> {
    parse_retry_after(value.to_str().ok()?, SystemTime::now())
}

/// True when the environment names a proxy, which reqwest would use.
fn proxy_configured() -> bool {
    ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"]
        .iter()
        .flat_map(|name| [name.to_string(), name.to_lowercase()])
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Reads a body, keeping at most [`body_limit`] bytes of it.
async fn read_body(mut response: Response) -> Result<Vec<u8>, reqwest::Error> {
    let limit = body_limit(response.status());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// A transport error in words, without the URL's query (never holds secrets
/// here, but stays short).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    super::with_causes(kind.to_string(), error)
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
