//! The HTTP server both binaries run: the accept loop, per-connection
//! tasks and graceful shutdown, in one place so that they log the same
//! things (accept errors, connections that end in an error, a drain that
//! runs out of time), and the web-config file (TLS, basic auth, headers;
//! see [`crate::webconfig`]) applies to both the same way.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;

use crate::webconfig::WebGuard;

/// How long open connections may finish after shutdown begins.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Paths answered without the web-config file's basic auth: load-balancer
/// and orchestrator probes (exporter-toolkit #111).
const PROBES: [&str; 2] = ["/-/healthy", "/-/ready"];

/// Serves `handler` on `listener` until `shutdown` resolves, then lets open
/// connections finish for at most [`DRAIN`]. `web` is the web-config file
/// in force: TLS per connection, basic auth and headers per request.
pub async fn serve<H, Fut>(
    listener: tokio::net::TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    web: Arc<WebGuard>,
) where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let handler = handler.clone();
                let guard = web.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    let guard = guard.clone();
                    async move { Ok::<_, Infallible>(guarded(req, handler, guard).await) }
                });
                let config = web.current();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let served = match &config.tls {
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Some(tls) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake refused");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                    };
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
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

/// One request under the web-config file: its basic auth (probes
/// excepted), then the handler, then the file's headers.
async fn guarded<H, Fut>(req: Request<Incoming>, handler: H, web: Arc<WebGuard>) -> Response<Body>
where
    H: Fn(Request<Incoming>) -> Fut,
    Fut: Future<Output = Response<Full<Bytes>>>,
{
    let config = web.current();
    let mut resp = if config.has_users() && !PROBES.contains(&req.uri().path()) {
        match web
            .check_basic(req.headers().get(hyper::header::AUTHORIZATION))
            .await
        {
            Ok(()) => handler(req).await,
            Err(e) => {
                let mut r = response(
                    hyper::StatusCode::UNAUTHORIZED,
                    "text/plain; charset=utf-8",
                    Bytes::from(format!("{e}\n")),
                );
                r.headers_mut().insert(
                    hyper::header::WWW_AUTHENTICATE,
                    hyper::header::HeaderValue::from_static("Basic realm=\"llmchat-monitor\""),
                );
                r
            }
        }
    } else {
        handler(req).await
    };
    for (name, value) in &config.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
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

/// Credentials an endpoint accepts: a bearer token, basic auth, or both.
#[derive(Clone, Default)]
pub struct Credentials {
    pub bearer: Option<String>,
    pub basic: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.is_some())
            .field("basic", &self.basic.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials")]
    Missing,
    #[error("wrong credentials")]
    Wrong,
}

impl Credentials {
    /// Checks an `Authorization` header. Every comparison is constant-time
    /// (subtle), so the time taken tells nothing about how much of a token
    /// was right.
    pub fn check(
        &self,
        authorization: Option<&hyper::header::HeaderValue>,
    ) -> Result<(), AuthError> {
        use base64::Engine;
        use subtle::ConstantTimeEq;
        let header = authorization
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        let eq = |a: &[u8], b: &[u8]| bool::from(a.ct_eq(b));
        if let (Some(given), Some(token)) = (header.strip_prefix("Bearer "), &self.bearer) {
            if eq(given.trim().as_bytes(), token.as_bytes()) {
                return Ok(());
            }
        }
        if let (Some(given), Some((user, password))) = (header.strip_prefix("Basic "), &self.basic)
        {
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            if eq(given.trim().as_bytes(), expected.as_bytes()) {
                return Ok(());
            }
        }
        Err(AuthError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn credentials_take_the_right_bearer_or_basic_and_nothing_else() {
        let c = Credentials {
            bearer: Some("token-0123456789".into()),
            basic: Some(("am".into(), "pw".into())),
        };
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(c.check(Some(&h("Bearer token-0123456789"))), Ok(()));
        assert_eq!(c.check(Some(&h("Basic YW06cHc="))), Ok(()));
        assert_eq!(
            c.check(Some(&h("Bearer token-012345678"))),
            Err(AuthError::Wrong)
        );
        assert_eq!(c.check(Some(&h("Basic YW06cHg="))), Err(AuthError::Wrong));
        assert_eq!(c.check(None), Err(AuthError::Missing));
        assert_eq!(
            Credentials::default().check(Some(&h("Bearer x"))),
            Err(AuthError::Wrong)
        );
        assert!(!format!("{c:?}").contains("token-0123456789"));
    }
}
