//! The HTTP server both binaries run: the accept loop, per-connection
//! tasks and graceful shutdown, in one place so that they log the same
//! things, apply the same limits to every client ([`crate::limits`], enforced by
//! [`connections`] and here), and apply the web-config file (TLS, basic
//! auth, headers; see [`crate::webconfig`]) the same way.
//!
//! A request reaches a binary's handler with its whole body read: the
//! body's size and time limits are this server's, so that a client that
//! trickles a body in is refused here (408) and its connection counts as
//! waiting for its client, not as handled, when the connection cap looks
//! for one to close.
//!
//! HTTP/1.1 only, over TLS too (ALPN offers `http/1.1`): Prometheus and
//! Alertmanager need nothing else, and HTTP/2's streams (hyper's default
//! of 200 per connection) would let one connection hold many requests.
//! Go's net/http serves HTTP/2 over TLS by default; we differ there.

pub mod connections;

pub use crate::auth::{AuthError, Credentials};
pub use crate::limits::{self, Limits};

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;

use crate::webconfig::WebGuard;
use connections::{CloseReason, Connections, Slot, Waiting};

/// How long open connections may finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Paths answered without the web-config file's basic auth: load-balancer
/// and orchestrator probes (exporter-toolkit #111).
const PROBES: [&str; 2] = ["/-/healthy", "/-/ready"];

/// The HTTP server of one binary: its limits, its connection table and
/// the web-config file in force.
pub struct Server {
    limits: Limits,
    connections: Arc<Connections>,
    web: Arc<WebGuard>,
    body_limit: usize,
}

impl Server {
    /// Raises the open-file limit (logging the result), sizes the
    /// connection cap to it, and takes requests' bodies up to
    /// `body_limit` bytes.
    pub fn new(limits: &Limits, web: Arc<WebGuard>, body_limit: usize) -> Self {
        let open_files = match limits::raise_open_files_limit() {
            Some((before, after)) => {
                if after > before {
                    tracing::info!(before, after, "open-file limit raised to the hard limit");
                } else {
                    tracing::info!(limit = after, "open-file limit");
                }
                Some(after)
            }
            None => None,
        };
        let cap = limits::effective_max_connections(limits.max_connections, open_files);
        if cap < limits.max_connections {
            tracing::warn!(
                configured = limits.max_connections,
                cap,
                "web.limits.max_connections lowered to three quarters of the open-file limit; raise LimitNOFILE to serve more"
            );
        }
        Server {
            limits: limits.clone(),
            connections: Connections::new(cap),
            web,
            body_limit,
        }
    }

    /// Registers the connection metrics (`http_connections_*`,
    /// `http_auth_throttled_total`) in `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.connections.register(registry);
    }

    /// The connection cap in force.
    pub fn max_connections(&self) -> usize {
        self.connections.cap()
    }

    /// Serves `handler` on `listener` until `shutdown` resolves, then lets
    /// open connections finish for at most [`DRAIN`].
    pub async fn serve<H, Fut>(
        self,
        listener: tokio::net::TcpListener,
        handler: H,
        shutdown: impl Future<Output = ()>,
    ) where
        H: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let graceful = GracefulShutdown::new();
        // No timer for hyper: its header timeout starts as soon as a
        // connection waits for a request, so it would close idle
        // keep-alive connections at the header timeout. The watchdog in
        // `connection` tells idle (no byte yet) from half-sent headers.
        let http1 = hyper::server::conn::http1::Builder::new();
        let shared = Arc::new(self);
        tokio::pin!(shutdown);
        // Accept errors (EMFILE, ENFILE, ENOMEM) are logged when they start
        // and when they stop, not once per attempt.
        let mut accept_failing = false;
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            if !accept_failing {
                                tracing::warn!(error = %e, "accept failed; logged again when it succeeds");
                                accept_failing = true;
                            }
                            // Back off instead of spinning.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if accept_failing {
                        tracing::info!("accept succeeds again");
                        accept_failing = false;
                    }
                    let Some(slot) = shared.connections.admit() else {
                        // Every slot has a request being handled: the
                        // newest waits its turn by retrying.
                        drop(stream);
                        continue;
                    };
                    let slot = Arc::new(slot);
                    let watcher = graceful.watcher();
                    let http1 = http1.clone();
                    let server = shared.clone();
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        server.connection(stream, peer, slot, http1, watcher, handler).await;
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(DRAIN, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "connections still open after {}s; closing them",
                DRAIN.as_secs()
            );
        }
    }

    /// One connection: TLS if configured, then HTTP/1.1 until the client
    /// closes, a limit closes it, or it is evicted at the cap.
    async fn connection<H, Fut>(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        slot: Arc<Slot>,
        http1: hyper::server::conn::http1::Builder,
        watcher: hyper_util::server::graceful::Watcher,
        handler: H,
    ) where
        H: Fn(Request<Body>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let service = {
            let server = self.clone();
            let slot = slot.clone();
            service_fn(move |req: Request<Incoming>| {
                let server = server.clone();
                let slot = slot.clone();
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(server.request(req, &slot, handler).await) }
            })
        };
        let stream = Tracked {
            inner: stream,
            slot: slot.clone(),
        };
        let served = async {
            match &self.web.current().tls {
                None => {
                    watcher
                        .watch(http1.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    // The handshake is part of what a client must send in time.
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    let stream = match tokio::time::timeout(
                        self.limits.header_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %crate::escape::Escaped(&e), "TLS handshake refused");
                            return Ok(());
                        }
                        Err(_) => {
                            self.connections.count(CloseReason::HeaderTimeout);
                            return Ok(());
                        }
                    };
                    watcher
                        .watch(http1.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            }
        };
        let idle = watch_client(&slot, &self.limits);
        let reason = tokio::select! {
            served = served => match served {
                Ok(()) => None,
                Err(e) => {
                    tracing::debug!(%peer, error = %crate::escape::Escaped(&e), "connection ended with an error");
                    None
                }
            },
            // Counted when it was chosen.
            _ = slot.conn.evicted.notified() => None,
            reason = idle => Some(reason),
        };
        if let Some(reason) = reason {
            self.connections.count(reason);
        }
    }

    /// One request under the limits and the web-config file: basic auth
    /// (probes excepted), the body within its size and time, then the
    /// handler, then the file's headers.
    async fn request<H, Fut>(
        &self,
        req: Request<Incoming>,
        slot: &Slot,
        handler: H,
    ) -> Response<Body>
    where
        H: Fn(Request<Body>) -> Fut,
        Fut: Future<Output = Response<Body>>,
    {
        let _in_request = slot.request();
        let config = self.web.current();
        let mut resp = match self.admit_request(req, &config).await {
            Ok(req) => {
                let _handling = slot.handling();
                handler(req).await
            }
            Err(refused) => refused,
        };
        for (name, value) in &config.headers {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        resp
    }

    /// Checks a request's credentials and reads its body, or answers it.
    async fn admit_request(
        &self,
        req: Request<Incoming>,
        config: &crate::webconfig::WebConfig,
    ) -> Result<Request<Body>, Response<Body>> {
        if config.has_users() && !PROBES.contains(&req.uri().path()) {
            if let Err(e) = self
                .web
                .check_basic(req.headers().get(hyper::header::AUTHORIZATION))
                .await
            {
                return Err(self.auth_refused(e));
            }
        }
        let (parts, body) = req.into_parts();
        // Over the limit by its own Content-Length: refused before a byte of
        // it is read, so a client sending `Expect: 100-continue` is told 413
        // instead of 100 Continue (hyper sends 100 only when the body is
        // first read).
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.body_limit as u64) {
            return Err(closing(too_large(self.body_limit)));
        }
        let read = Limited::new(body, self.body_limit).collect();
        let bytes = match tokio::time::timeout(self.limits.body_timeout, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(closing(too_large(self.body_limit)));
            }
            Ok(Err(_)) => {
                return Err(closing(plain(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read\n".into(),
                )));
            }
            Err(_) => {
                self.connections.count(CloseReason::BodyTimeout);
                return Err(closing(plain(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {}\n",
                        humantime::format_duration(self.limits.body_timeout)
                    ),
                )));
            }
        };
        Ok(Request::from_parts(parts, Full::new(bytes)))
    }

    fn auth_refused(&self, e: AuthError) -> Response<Body> {
        use hyper::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
        if e == AuthError::Busy {
            self.connections.count_auth_throttled();
            let mut r = plain(StatusCode::TOO_MANY_REQUESTS, format!("{e}\n"));
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        let mut r = plain(StatusCode::UNAUTHORIZED, format!("{e}\n"));
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"llmchat-monitor\""),
        );
        r
    }
}

/// Resolves when the client has kept the connection waiting too long:
/// idle (no byte of a request) for `idle_timeout`, or in the middle of
/// its headers for `header_timeout` since their first byte. While a
/// request is in progress the body's timeout and the handler own the time.
async fn watch_client(slot: &Slot, limits: &Limits) -> CloseReason {
    let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        match slot.waiting() {
            Waiting::Idle(d) if d >= limits.idle_timeout => return CloseReason::Idle,
            Waiting::Headers(d) if d >= limits.header_timeout => return CloseReason::HeaderTimeout,
            _ => {}
        }
        tokio::time::sleep(tick).await;
    }
}

/// A client's stream that notes when bytes arrive (see
/// [`Slot::bytes_arrived`]).
struct Tracked<S> {
    inner: S,
    slot: Arc<Slot>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.bytes_arrived();
        }
        polled
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", Bytes::from(text))
}

fn too_large(limit: usize) -> Response<Body> {
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over the {limit}-byte limit\n"),
    )
}

/// Asks hyper to close the connection after this response: the rest of a
/// refused body is not worth reading.
fn closing(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    resp
}

/// The body of a response, as both binaries build it.
pub type Body = Full<Bytes>;

/// A response with its content type.
pub fn response(
    status: hyper::StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

/// What a refused request needs beyond its body: its status, and the
/// header that status calls for (`Allow` with 405, `WWW-Authenticate` with
/// 401). Each binary's request error implements it; [`refusal`] builds the
/// response, so the two binaries answer refusals the same way.
pub trait Refusal: std::fmt::Display {
    fn status(&self) -> hyper::StatusCode;

    /// For 405: the methods the path takes.
    fn allow(&self) -> Option<&'static str> {
        None
    }
}

/// The response to a refused request: `body` (text or JSON, the binary's
/// choice) with the status and its header. `realm` names the service in
/// the 401 challenge.
pub fn refusal(
    e: &impl Refusal,
    realm: &'static str,
    content_type: &'static str,
    body: Bytes,
) -> Response<Body> {
    use hyper::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
    let status = e.status();
    let mut resp = response(status, content_type, body);
    if let Some(allow) = e.allow() {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    if status == hyper::StatusCode::UNAUTHORIZED {
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
    }
    resp
}
