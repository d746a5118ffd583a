//! The one HTTP stack: a reqwest client set up for the tenant, and one
//! exchange that sends a request, keeps at most [`body_limit`] bytes of the
//! answer and puts any transport error into words. It is also the one place
//! that tells transport failures apart ([`ConnectCause`]), by walking the
//! error's chain of causes. It knows nothing of tokens or of what an answer
//! means; it never writes a request's headers or body into an error, so
//! neither the secret nor a token can leak from here.

use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::outcome::{body_limit, parse_retry_after};

const USER_AGENT: &str = concat!("bpsms/", env!("CARGO_PKG_VERSION"));

/// What came back from a request.
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    /// At most [`body_limit`] bytes of the body.
    pub body: Vec<u8>,
}

/// Why a request has no answer.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be made: the request certainly never left.
    Connect { cause: ConnectCause, detail: String },
    /// The request may have left: the outcome is unknown.
    Broken(String),
    /// The status arrived, then the body broke off.
    BodyBroken { status: StatusCode, detail: String },
}

impl Failure {
    /// The transport error in words, whatever stage it broke at.
    pub fn detail(&self) -> &str {
        match self {
            Failure::Connect { detail, .. } | Failure::Broken(detail) => detail,
            Failure::BodyBroken { detail, .. } => detail,
        }
    }
}

/// Why no connection could be made, as far as the operator can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCause {
    /// The host answered, but nothing listens on the port.
    Refused,
    /// `https://` was asked for and the server answered in plain HTTP.
    PlainHttp,
    /// Anything else: a name that does not resolve, a connect timeout, a
    /// TLS failure, an unreachable network.
    Other,
}

/// The client every call goes through. It follows no redirects: a Send that
/// answered 3xx may have been taken, and resending it elsewhere (as a GET,
/// after 301–303) would be wrong; the answer is classified instead. It speaks
/// HTTP/1.1 only (the crate is built without HTTP/2) and honours the proxy
/// environment variables.
pub fn client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Sends `request` and reads its answer.
pub async fn exchange(request: RequestBuilder) -> Result<Answer, Failure> {
    let response = request.send().await.map_err(|error| {
        if error.is_connect() {
            Failure::Connect {
                cause: connect_cause(&error),
                detail: describe(&error),
            }
        } else {
            Failure::Broken(describe(&error))
        }
    })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
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

/// Reads a body, keeping at most [`body_limit`] bytes of it. A body cut
/// short is dropped unread, and its connection with it.
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

/// Tells apart the failures to connect the operator can act on, by the
/// typed errors in the chain of causes (their text is not a stable
/// interface). An `io::Error` hides the error it wraps from the chain (and
/// the TLS layer wraps rustls's error in two of them), so each one is opened
/// too.
fn connect_cause(error: &reqwest::Error) -> ConnectCause {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        let mut inner: Option<&(dyn std::error::Error + 'static)> = Some(cause);
        while let Some(error) = inner {
            if let Some(found) = cause_of(error) {
                return found;
            }
            inner = error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .map(|wrapped| wrapped as &(dyn std::error::Error + 'static));
        }
        source = cause.source();
    }
    ConnectCause::Other
}

/// What one error of the chain says, if it is one of the causes told apart.
/// A server speaking plain HTTP answers the TLS hello with `HTTP/1.1`, which
/// rustls reads as a record of an invalid content type.
fn cause_of(error: &(dyn std::error::Error + 'static)) -> Option<ConnectCause> {
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::ConnectionRefused {
            return Some(ConnectCause::Refused);
        }
    }
    match error.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            Some(ConnectCause::PlainHttp)
        }
        _ => None,
    }
}

/// A transport error and its causes, each after a colon.
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
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::api::outcome::ERROR_TEXT_LIMIT;

    /// What the test server saw.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        requests: AtomicUsize,
        closed: AtomicUsize,
    }

    /// A listener on a free port of `address`, and a URL with `scheme` to it.
    async fn listen(scheme: &str, address: &str) -> (TcpListener, String) {
        let listener = TcpListener::bind(address).await.expect("bind");
        let url = format!(
            "{scheme}://{}/clientweb/smsapi/v1/Messages",
            listener.local_addr().expect("address")
        );
        (listener, url)
    }

    /// An HTTP/1.1 server on `address` that answers every request with
    /// `answer` and closes each connection after `per_connection` requests.
    async fn serve_on(
        address: &str,
        answer: &'static [u8],
        per_connection: usize,
    ) -> (String, Arc<Seen>) {
        let (listener, url) = listen("http", address).await;
        let seen = Arc::new(Seen::default());
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counts.connections.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                tokio::spawn(async move {
                    for _ in 0..per_connection {
                        if read_request(&mut stream).await.is_none() {
                            break;
                        }
                        counts.requests.fetch_add(1, Ordering::SeqCst);
                        if stream.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                    drop(stream);
                    counts.closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (url, seen)
    }

    /// Reads one request with a Content-Length body; `None` at end of stream.
    async fn read_request(stream: &mut TcpStream) -> Option<()> {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).ok()?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })?
            .parse()
            .ok()?;
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.ok()?;
        Some(())
    }

    fn test_client() -> reqwest::Client {
        client(Duration::from_secs(5), Duration::from_secs(10)).expect("client")
    }

    async fn post(client: &reqwest::Client, url: &str) -> Result<Answer, Failure> {
        exchange(
            client
                .post(url)
                .header("Authorization", "Bearer t")
                .body("{}"),
        )
        .await
    }

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

    #[tokio::test]
    async fn a_connection_is_reused_for_the_next_request() {
        let (url, seen) = serve_on("127.0.0.1:0", OK, usize::MAX).await;
        let client = test_client();
        for _ in 0..3 {
            let answer = post(&client, &url).await.expect("answer");
            assert_eq!(answer.status, StatusCode::OK);
        }
        assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    }

    /// The server closes each connection after one answer, as servers do
    /// with idle connections: the next request goes on a new connection,
    /// once, and never fails for it.
    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_before_the_request_leaves() {
        let (url, seen) = serve_on("127.0.0.1:0", OK, 1).await;
        let client = test_client();
        for round in 1..=3 {
            let answer = post(&client, &url).await;
            assert!(
                matches!(&answer, Ok(answer) if answer.status == StatusCode::OK),
                "round {round}: {:?}",
                answer.err()
            );
            // The server has closed before the next request is made.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while seen.closed.load(Ordering::SeqCst) < round {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the server never closed"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    }

    /// An error body past the limit is cut there, and its connection, which
    /// still holds the rest, is not used again.
    #[tokio::test]
    async fn a_long_error_body_is_cut_and_its_connection_dropped() {
        let answer: &'static [u8] = Box::leak(
            format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000\r\n\r\n{}",
                "x".repeat(100_000)
            )
            .into_bytes()
            .into_boxed_slice(),
        );
        let (url, seen) = serve_on("127.0.0.1:0", answer, usize::MAX).await;
        let client = test_client();
        for _ in 0..2 {
            let answer = post(&client, &url).await.expect("answer");
            assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(answer.body.len(), ERROR_TEXT_LIMIT);
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    /// `https` speaks TLS: against a server that does not, the handshake
    /// fails, which says the request never left, and the detail carries
    /// rustls's own words for what it received.
    #[tokio::test]
    async fn https_fails_to_connect_to_a_server_without_tls() {
        let (listener, url) = listen("https", "127.0.0.1:0").await;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let answer = post(&test_client(), &url).await;
        assert!(
            matches!(answer, Err(Failure::Connect { cause: ConnectCause::PlainHttp, ref detail }) if detail.contains("received corrupt message")),
            "{:?}",
            answer.err()
        );
    }

    /// A tenant named by an IPv6 address is reached at that address.
    #[tokio::test]
    async fn an_ipv6_address_is_reached() {
        let (url, seen) = serve_on("[::1]:0", OK, usize::MAX).await;
        assert!(url.starts_with("http://[::1]:"), "{url}");
        let answer = post(&test_client(), &url).await.expect("answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn nobody_listening_is_a_failure_to_connect() {
        let (listener, url) = listen("http", "127.0.0.1:0").await;
        drop(listener);
        let answer = post(&test_client(), &url).await;
        assert!(
            matches!(
                answer,
                Err(Failure::Connect {
                    cause: ConnectCause::Refused,
                    ..
                })
            ),
            "{:?}",
            answer.err()
        );
    }

    /// A redirect is an answer to classify, never a request sent elsewhere.
    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let (url, seen) = serve_on(
            "127.0.0.1:0",
            b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
            usize::MAX,
        )
        .await;
        let answer = post(&test_client(), &url).await.expect("answer");
        assert_eq!(answer.status, StatusCode::FOUND);
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1);
    }
}
