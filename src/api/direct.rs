//! The send path's own HTTP/1.1 connections.
//!
//! Every send is one POST on a kept-alive connection. A general client
//! (reqwest over hyper-util's pool) hands each request to a separate
//! connection task and back, rebuilds the URL and default headers, and
//! checks redirects; at tens of thousands of sends per second that was a
//! fifth of bpsms's CPU time (BENCHMARKS.md). Here a request task takes an idle connection,
//! drives it itself until the answer's last byte, and puts it back: no task
//! hop, no per-request parsing.
//!
//! Token and Get Message calls stay on reqwest, and so do sends when a proxy
//! is configured (this path does not speak to proxies).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT,
};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::outcome::body_limit;

/// A connection idle for longer is closed rather than reused: servers drop
/// idle connections after a while, and a stale one costs a failed write.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// What a POST came back with.
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<HeaderValue>,
    pub body: Vec<u8>,
}

/// Why a POST has no answer.
pub enum Failure {
    /// No connection could be made: the request certainly never left.
    Connect(String),
    /// The request may have left: the outcome is unknown.
    Broken(String),
    /// The status arrived, then the body broke off.
    BodyBroken { status: StatusCode, detail: String },
}

/// Where the connections go, and how.
pub struct Connections {
    /// A name to resolve, or an address (IPv6 without brackets).
    host: String,
    port: u16,
    /// The `Host` header value (host, and port when not the default).
    authority: HeaderValue,
    /// The request target, e.g. `/clientweb/smsapi/v1/Messages`.
    path: Uri,
    user_agent: HeaderValue,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// One HTTP/1.1 connection: the handle that sends requests, and the future
/// that does the connection's I/O, polled by whoever uses the handle.
struct Connection {
    requests: http1::SendRequest<Full<Bytes>>,
    io: Io,
}

struct Io {
    future: Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>,
    /// The I/O future finished: the connection is closed for good.
    closed: bool,
}

impl Connections {
    /// Connections to `url`'s host for POSTs to its path (`http` or
    /// `https`).
    pub fn new(
        url: &url::Url,
        user_agent: &str,
        connect_timeout: Duration,
    ) -> anyhow::Result<Self> {
        // As the `Host` header and URLs write it (an IPv6 address in
        // brackets), and as a name to resolve or an address to connect to.
        let written = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("the API URL {url} has no host"))?
            .to_string();
        let host = match url.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            _ => written.clone(),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| anyhow::anyhow!("the API URL {url} has no port"))?;
        let tls = match url.scheme() {
            "http" => None,
            "https" => Some(tls_connector(&host)?),
            other => anyhow::bail!("the API URL {url} has scheme {other}; use https"),
        };
        let authority = match url.port() {
            Some(port) => format!("{written}:{port}"),
            None => written,
        };
        Ok(Connections {
            port,
            authority: HeaderValue::from_str(&authority)?,
            path: url.path().parse()?,
            user_agent: HeaderValue::from_str(user_agent)?,
            host,
            tls,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// POSTs a JSON body. A connection the server closed while it was idle
    /// is replaced before the request is written; a request that left is
    /// never sent twice.
    pub async fn post_json(
        &self,
        authorization: &HeaderValue,
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let mut request = self.request(authorization, body);
        loop {
            let (mut connection, reused) = match self.take_idle() {
                Some(connection) => (connection, true),
                None => (self.connect().await?, false),
            };
            // Ready means the last exchange finished and the server has not
            // closed the connection since.
            let ready = connection.io.drive(connection.requests.ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                if reused {
                    continue;
                }
                return Err(Failure::Connect("the new connection closed at once".into()));
            }
            let sent = connection.requests.try_send_request(request);
            let response = match connection.io.drive(sent).await {
                Ok(Ok(response)) => response,
                Ok(Err(mut error)) => match error.take_message() {
                    // Never written: safe to try on another connection, and
                    // on a new one, a failure to connect.
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    Some(_) => return Err(Failure::Connect(describe(error.error()))),
                    None => return Err(Failure::Broken(describe(error.error()))),
                },
                Err(closed) => return Err(Failure::Broken(closed)),
            };
            let status = response.status();
            let retry_after = response.headers().get(RETRY_AFTER).cloned();
            let limit = body_limit(status);
            let mut incoming = response.into_body();
            let mut body = Vec::new();
            // Whether the body was read to its end, leaving the connection
            // ready for another request.
            let mut complete = true;
            loop {
                let frame = match connection.io.drive(incoming.frame()).await {
                    Ok(frame) => frame,
                    Err(detail) => return Err(Failure::BodyBroken { status, detail }),
                };
                match frame {
                    None => break,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            let room = limit.saturating_sub(body.len());
                            body.extend_from_slice(&data[..data.len().min(room)]);
                            if body.len() >= limit {
                                complete = false;
                                break;
                            }
                        }
                    }
                    Some(Err(error)) => {
                        return Err(Failure::BodyBroken {
                            status,
                            detail: describe(&error),
                        })
                    }
                }
            }
            if complete {
                self.put_back(connection);
            }
            return Ok(Answer {
                status,
                retry_after,
                body,
            });
        }
    }

    fn request(&self, authorization: &HeaderValue, body: Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.authority.clone());
        headers.insert(USER_AGENT, self.user_agent.clone());
        headers.insert(AUTHORIZATION, authorization.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(Idle { connection, since }) = idle.pop() {
            if since.elapsed() < IDLE_LIMIT {
                return Some(connection);
            }
        }
        None
    }

    fn put_back(&self, connection: Connection) {
        if connection.io.closed || connection.requests.is_closed() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Idle {
                connection,
                since: Instant::now(),
            });
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        let connecting = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|error| Failure::Connect(format!("connection failed: {error}")))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => handshake(tcp).await,
                Some((connector, name)) => {
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|error| {
                            Failure::Connect(format!("TLS handshake failed: {error}"))
                        })?;
                    handshake(tls).await
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .unwrap_or_else(|_| Err(Failure::Connect("connection timed out".into())))
    }
}

async fn handshake<S>(stream: S) -> Result<Connection, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (requests, io) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| Failure::Connect(describe(&error)))?;
    Ok(Connection {
        requests,
        io: Io {
            future: Box::pin(io),
            closed: false,
        },
    })
}

impl Io {
    /// Polls `work` and the connection's I/O together until `work` is done.
    /// Fails when the connection closes first.
    async fn drive<F: Future>(&mut self, work: F) -> Result<F::Output, String> {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            if self.closed {
                return Poll::Ready(Err("the connection closed".to_string()));
            }
            match self.future.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(result) => {
                    self.closed = true;
                    // The I/O's last steps may have completed the work.
                    if let Poll::Ready(output) = work.as_mut().poll(cx) {
                        return Poll::Ready(Ok(output));
                    }
                    Poll::Ready(Err(match result {
                        Ok(()) => "the server closed the connection".to_string(),
                        Err(error) => describe(&error),
                    }))
                }
            }
        })
        .await
    }
}

fn tls_connector(
    host: &str,
) -> anyhow::Result<(
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
)> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// A hyper error and its causes, in words.
fn describe(error: &hyper::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_incomplete_message() || error.is_body_write_aborted() {
        "the answer broke off"
    } else {
        "request failed"
    };
    super::with_causes(format!("{kind}: {error}"), error)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// What the test server saw.
    #[derive(Default)]
    struct Seen {
        connections: AtomicUsize,
        requests: AtomicUsize,
        closed: AtomicUsize,
    }

    /// A listener on a free loopback port, and a URL with `scheme` to it.
    async fn listen(scheme: &str) -> (TcpListener, url::Url) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = url::Url::parse(&format!(
            "{scheme}://{}/clientweb/smsapi/v1/Messages",
            listener.local_addr().expect("address")
        ))
        .expect("url");
        (listener, url)
    }

    /// An HTTP/1.1 server that answers every request with `answer` and
    /// closes each connection after `per_connection` requests.
    async fn serve(answer: &'static [u8], per_connection: usize) -> (url::Url, Arc<Seen>) {
        let (listener, url) = listen("http").await;
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

    fn connections_to(url: &url::Url) -> Connections {
        Connections::new(url, "bpsms/test", Duration::from_secs(5)).expect("new")
    }

    async fn post(connections: &Connections) -> Result<Answer, Failure> {
        let token = HeaderValue::from_static("Bearer t");
        connections
            .post_json(&token, Bytes::from_static(b"{}"))
            .await
    }

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

    #[tokio::test]
    async fn a_connection_is_reused_for_the_next_request() {
        let (url, seen) = serve(OK, usize::MAX).await;
        let connections = connections_to(&url);
        for _ in 0..3 {
            let answer = post(&connections).await;
            assert!(matches!(
                answer,
                Ok(Answer {
                    status: StatusCode::OK,
                    ..
                })
            ));
        }
        assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    }

    /// The server closes each connection after one answer, as servers do
    /// with idle connections: the next request goes on a new connection,
    /// once, and never fails for it.
    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_before_the_request_leaves() {
        let (url, seen) = serve(OK, 1).await;
        let connections = connections_to(&url);
        for round in 1..=3 {
            let answer = post(&connections).await;
            assert!(
                matches!(
                    answer,
                    Ok(Answer {
                        status: StatusCode::OK,
                        ..
                    })
                ),
                "round {round}"
            );
            // The server has closed before the next request is made.
            while seen.closed.load(Ordering::SeqCst) < round {
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
        let (url, seen) = serve(answer, usize::MAX).await;
        let connections = connections_to(&url);
        for _ in 0..2 {
            let Ok(answer) = post(&connections).await else {
                panic!("no answer");
            };
            assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(answer.body.len(), super::super::outcome::ERROR_TEXT_LIMIT);
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    }

    /// `https` speaks TLS: against a server that does not, the handshake
    /// fails, which says the request never left.
    #[tokio::test]
    async fn https_fails_to_connect_to_a_server_without_tls() {
        let (listener, url) = listen("https").await;
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let connections = connections_to(&url);
        let answer = post(&connections).await;
        assert!(
            matches!(answer, Err(Failure::Connect(ref detail)) if detail.contains("TLS")),
            "{:?}",
            answer.err().map(|f| match f {
                Failure::Connect(d) | Failure::Broken(d) => d,
                Failure::BodyBroken { detail, .. } => detail,
            })
        );
    }

    #[test]
    fn an_ipv6_address_is_connected_to_bare_and_named_in_brackets() {
        let url = url::Url::parse("https://[::1]:8443/clientweb/smsapi/v1/Messages").expect("url");
        let connections = connections_to(&url);
        assert_eq!(connections.host, "::1");
        assert_eq!(connections.port, 8443);
        assert_eq!(connections.authority, "[::1]:8443");
        assert_eq!(connections.path, "/clientweb/smsapi/v1/Messages");
        let url = url::Url::parse("https://acme.brightpattern.com/x").expect("url");
        let connections = connections_to(&url);
        assert_eq!(connections.host, "acme.brightpattern.com");
        assert_eq!(connections.port, 443);
        assert_eq!(connections.authority, "acme.brightpattern.com");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_failure_to_connect() {
        let (listener, url) = listen("http").await;
        drop(listener);
        let connections = connections_to(&url);
        let answer = post(&connections).await;
        assert!(matches!(answer, Err(Failure::Connect(_))));
    }
}
