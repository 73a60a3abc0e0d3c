//! The HTTP surface: `/metrics` (or the configured telemetry path), `/`,
//! `/health`, and the liveness/readiness endpoints `/-/healthy` and
//! `/-/ready`. [`handle`] maps a request to a response without a socket, so
//! tests can call it directly; [`serve`] runs it on hyper.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::config::Config;
use crate::exposition::Format;
use crate::scrape::{CheckResult, Exporter};
use llmchat_common::http::{refusal, response, AuthError, Credentials, Refusal};

/// What a request handler needs.
pub struct AppState {
    exporter: Arc<Exporter>,
    telemetry_path: String,
    collectors: Vec<&'static str>,
    admin_token: Option<String>,
}

impl AppState {
    pub fn new(exporter: Arc<Exporter>, config: &Config) -> Self {
        Self {
            exporter,
            telemetry_path: config.web.telemetry_path.clone(),
            collectors: config.enabled_collectors(),
            admin_token: config.web.admin_token.clone(),
        }
    }
}

#[cfg(test)]
impl AppState {
    fn for_test(exporter: Exporter) -> Self {
        Self {
            exporter: Arc::new(exporter),
            telemetry_path: "/metrics".into(),
            collectors: vec![],
            admin_token: Some("test-admin-token-0123456789".into()),
        }
    }
}

type Body = Full<Bytes>;

/// Errors a request can end in; each maps to a status and a message that
/// says what went wrong without internals.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method {method} not allowed; use {allow}")]
    MethodNotAllowed { method: Method, allow: &'static str },
    #[error("metrics encoding failed")]
    Encode,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
}

impl Refusal for RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound(_) => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::Encode => StatusCode::INTERNAL_SERVER_ERROR,
            RequestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            RequestError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    fn allow(&self) -> Option<&'static str> {
        match self {
            RequestError::MethodNotAllowed { allow, .. } => Some(allow),
            _ => None,
        }
    }
}

impl RequestError {
    fn into_response(self) -> Response<Body> {
        let body = Bytes::from(format!("{self}\n"));
        refusal(&self, "llmchat-exporter", "text/plain; charset=utf-8", body)
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body.into())
}

/// Routes one request.
pub async fn handle<B>(state: &AppState, req: Request<B>) -> Response<Body> {
    let head_only = req.method() == Method::HEAD;
    let result = route(state, &req).await;
    let mut resp = result.unwrap_or_else(RequestError::into_response);
    if head_only {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

async fn route<B>(state: &AppState, req: &Request<B>) -> Result<Response<Body>, RequestError> {
    let path = req.uri().path();
    let endpoint = if path == state.telemetry_path {
        Endpoint::Metrics
    } else {
        match path {
            "/" => Endpoint::Landing,
            "/health" => Endpoint::Health,
            "/health/db" => Endpoint::HealthDb,
            "/health/redis" => Endpoint::HealthRedis,
            "/health/detailed" => Endpoint::HealthDetailed,
            "/-/healthy" => Endpoint::Healthy,
            "/-/ready" => Endpoint::Ready,
            _ => return Err(RequestError::NotFound(path.to_string())),
        }
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(RequestError::MethodNotAllowed {
            method: req.method().clone(),
            allow: "GET, HEAD",
        });
    }
    match endpoint {
        Endpoint::Metrics => metrics(state, req).await,
        Endpoint::Landing => Ok(landing(state)),
        Endpoint::Health => Ok(health(state).await),
        Endpoint::HealthDb => dependency(state, "database").await,
        Endpoint::HealthRedis => dependency(state, "redis").await,
        Endpoint::HealthDetailed => {
            authorize(state, req)?;
            Ok(detailed(state).await)
        }
        Endpoint::Healthy => Ok(text(StatusCode::OK, "Healthy\n")),
        Endpoint::Ready => Ok(text(StatusCode::OK, "Ready\n")),
    }
}

enum Endpoint {
    Metrics,
    Landing,
    Health,
    HealthDb,
    HealthRedis,
    HealthDetailed,
    Healthy,
    Ready,
}

async fn metrics<B>(state: &AppState, req: &Request<B>) -> Result<Response<Body>, RequestError> {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let scraper_timeout = req
        .headers()
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(Duration::from_secs_f64);
    let body = state
        .exporter
        .scrape(format, scraper_timeout)
        .await
        .map_err(|_| {
            tracing::error!("metrics encoding failed");
            RequestError::Encode
        })?;
    Ok(response(StatusCode::OK, format.content_type(), body.into()))
}

fn landing(state: &AppState) -> Response<Body> {
    let collectors: String = state
        .collectors
        .iter()
        .map(|c| format!("<li><code>{c}</code></li>"))
        .collect();
    let path = html_escape(&state.telemetry_path);
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>LLMChat Exporter</title></head>\n\
         <body><h1>LLMChat Exporter</h1>\n<p>Version {version} (revision {revision})</p>\n\
         <ul>\n<li><a href=\"{path}\">{path}</a>: metrics</li>\n\
         <li><a href=\"/health\">/health</a>: health of each collector (JSON)</li>\n\
         <li><a href=\"/health/db\">/health/db</a>, <a href=\"/health/redis\">/health/redis</a>: \
         PostgreSQL and Redis reachability (200 or 503)</li>\n\
         <li><a href=\"/health/detailed\">/health/detailed</a>: every collector's status and \
         last error (bearer token)</li>\n\
         <li><a href=\"/-/healthy\">/-/healthy</a>: liveness</li>\n\
         <li><a href=\"/-/ready\">/-/ready</a>: readiness</li>\n</ul>\n\
         <h2>Enabled collectors</h2>\n<ul>{collectors}</ul>\n</body></html>\n",
        version = crate::VERSION,
        revision = crate::REVISION,
    );
    response(StatusCode::OK, "text/html; charset=utf-8", body.into())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

/// The guide's `aggregateHealthStatus`: no unhealthy check is healthy;
/// fewer than half unhealthy is degraded; otherwise unhealthy.
pub fn aggregate(checks: &[bool]) -> HealthStatus {
    let unhealthy = checks.iter().filter(|ok| !**ok).count();
    if unhealthy == 0 {
        HealthStatus::Healthy
    } else if (unhealthy as f64) < checks.len() as f64 / 2.0 {
        HealthStatus::Degraded
    } else {
        HealthStatus::Unhealthy
    }
}

#[derive(Serialize)]
struct HealthCheck {
    name: &'static str,
    status: HealthStatus,
    duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct HealthResponse {
    status: HealthStatus,
    checks: Vec<HealthCheck>,
    uptime_seconds: f64,
    version: &'static str,
}

async fn health(state: &AppState) -> Response<Body> {
    let results: Vec<CheckResult> = state.exporter.check().await;
    let status = aggregate(&results.iter().map(|r| r.healthy).collect::<Vec<_>>());
    let body = HealthResponse {
        status,
        // Error text stays behind /health/detailed's token.
        checks: results
            .into_iter()
            .map(|r| HealthCheck {
                error: None,
                ..HealthCheck::from(r)
            })
            .collect(),
        uptime_seconds: state.exporter.uptime().as_secs_f64(),
        version: crate::VERSION,
    };
    let code = match status {
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    response(code, "application/json", json.into())
}

/// The guide's AdminGuard: a bearer token, compared in constant time.
fn authorize<B>(state: &AppState, req: &Request<B>) -> Result<(), RequestError> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Err(RequestError::Forbidden(
            "/health/detailed is disabled: set web.admin_token",
        ));
    };
    let credentials = Credentials {
        bearer: Some(expected.to_string()),
        basic: None,
    };
    credentials
        .check(req.headers().get(header::AUTHORIZATION))
        .map_err(|e| match e {
            AuthError::Missing => RequestError::Unauthorized("missing bearer token"),
            AuthError::Wrong | AuthError::Busy => RequestError::Unauthorized("wrong bearer token"),
        })
}

#[derive(Serialize)]
struct DependencyHealth {
    name: &'static str,
    status: HealthStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_time_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `/health/db`, `/health/redis`: the daily check's `curl -f` targets.
async fn dependency(state: &AppState, name: &'static str) -> Result<Response<Body>, RequestError> {
    let timeout = state.exporter.timeout();
    let ping = state
        .exporter
        .source(name)
        .and_then(|source| source.ping(timeout));
    let Some(ping) = ping else {
        return Err(RequestError::NotFound(format!(
            "the {name} collector is disabled"
        )));
    };
    let result = ping.await;
    let (code, body) = match result {
        Ok(took) => (
            StatusCode::OK,
            DependencyHealth {
                name,
                status: HealthStatus::Healthy,
                response_time_seconds: Some(took.as_secs_f64()),
                error: None,
            },
        ),
        // The driver's own words stay behind /health/detailed's token:
        // they name users, hosts and databases ("password authentication
        // failed for user ...") to whoever asks this unauthenticated path.
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            DependencyHealth {
                name,
                status: HealthStatus::Unhealthy,
                response_time_seconds: None,
                error: Some(format!(
                    "{name} unreachable; the reason is in /health/detailed"
                )),
            },
        ),
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    Ok(response(code, "application/json", json.into()))
}

#[derive(Serialize)]
struct DetailedHealth {
    status: HealthStatus,
    version: &'static str,
    revision: &'static str,
    uptime_seconds: f64,
    collectors_enabled: Vec<&'static str>,
    checks: Vec<HealthCheck>,
}

/// `/health/detailed`: every collector's status and last error.
async fn detailed(state: &AppState) -> Response<Body> {
    let results = state.exporter.check().await;
    let status = aggregate(&results.iter().map(|r| r.healthy).collect::<Vec<_>>());
    let body = DetailedHealth {
        status,
        version: crate::VERSION,
        revision: crate::REVISION,
        uptime_seconds: state.exporter.uptime().as_secs_f64(),
        collectors_enabled: state.collectors.clone(),
        checks: results.into_iter().map(HealthCheck::from).collect(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    response(StatusCode::OK, "application/json", json.into())
}

impl From<CheckResult> for HealthCheck {
    fn from(r: CheckResult) -> Self {
        HealthCheck {
            name: r.name,
            status: if r.healthy {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unhealthy
            },
            duration_seconds: r.duration.as_secs_f64(),
            error: r.error,
        }
    }
}

/// The largest request body taken: the exporter's endpoints take none,
/// so anything over a few kilobytes is a client up to no good.
pub const BODY_LIMIT: usize = 16 * 1024;

/// Serves until `shutdown` resolves, then lets open connections finish
/// (the shared server in `llmchat_common::http`).
pub async fn serve(
    server: llmchat_common::http::Server,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handler = move |req: Request<llmchat_common::http::Body>| {
        let state = state.clone();
        async move { handle(&state, req).await }
    };
    server.serve(listener, handler, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector_kit::{RefreshError, Source};
    use futures_util::future::BoxFuture;
    use http_body_util::BodyExt;

    /// A collector that fails, or never finishes, on demand.
    struct Fake {
        name: &'static str,
        behaviour: Behaviour,
    }

    enum Behaviour {
        Ok,
        Fail,
        Hang,
    }

    impl Source for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
            Box::pin(async move {
                match self.behaviour {
                    Behaviour::Ok => Ok(()),
                    Behaviour::Fail => Err("connection refused".into()),
                    Behaviour::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                }
            })
        }
        fn clear(&self) {}
    }

    fn state(fakes: Vec<(&'static str, Behaviour)>) -> AppState {
        let sources = fakes
            .into_iter()
            .map(|(name, behaviour)| Arc::new(Fake { name, behaviour }) as Arc<dyn Source>)
            .collect();
        AppState::for_test(Exporter::with_sources(sources, Duration::from_millis(100)))
    }

    async fn get(state: &AppState, path: &str) -> (StatusCode, String) {
        get_with(state, path, None).await
    }

    async fn get_with(state: &AppState, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let req = req.body(()).unwrap();
        let resp = handle(state, req).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_is_503_when_half_or_more_checks_fail() {
        let s = state(vec![("a", Behaviour::Ok), ("b", Behaviour::Fail)]);
        let (status, body) = get(&s, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(v["checks"][1]["status"], "unhealthy");
        assert!(
            v["checks"][1].get("error").is_none(),
            "errors only behind the token"
        );
        let (status, body) =
            get_with(&s, "/health/detailed", Some("test-admin-token-0123456789")).await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["checks"][1]["error"], "connection refused");
    }

    #[tokio::test]
    async fn health_is_degraded_but_200_when_fewer_than_half_fail() {
        let s = state(vec![
            ("a", Behaviour::Ok),
            ("b", Behaviour::Ok),
            ("c", Behaviour::Fail),
        ]);
        let (status, body) = get(&s, "/health").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
    }

    #[tokio::test]
    async fn a_hanging_collector_never_hangs_the_scrape() {
        let s = state(vec![("fast", Behaviour::Ok), ("stuck", Behaviour::Hang)]);
        let started = std::time::Instant::now();
        let (status, body) = get(&s, "/metrics").await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("llmchat_exporter_collector_success{collector=\"stuck\"} 0"),
            "{body}"
        );
        assert!(
            body.contains("llmchat_exporter_collector_success{collector=\"fast\"} 1"),
            "{body}"
        );
        let (status, _) = get(&s, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (_, body) = get_with(&s, "/health/detailed", Some("test-admin-token-0123456789")).await;
        assert!(body.contains("timed out"), "{body}");
    }

    #[tokio::test]
    async fn detailed_health_needs_the_bearer_token() {
        let s = state(vec![("a", Behaviour::Ok)]);
        assert_eq!(
            get(&s, "/health/detailed").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_with(&s, "/health/detailed", Some("wrong-token-wrong-token"))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get_with(&s, "/health/detailed", Some("test-admin-token-0123456789"))
                .await
                .0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn scrape_deadline_follows_prometheus_header() {
        // A collector that never answers, under a configured budget of an
        // hour: only the scraper's header can end this scrape in time.
        let sources = vec![Arc::new(Fake {
            name: "stuck",
            behaviour: Behaviour::Hang,
        }) as Arc<dyn Source>];
        let s = AppState::for_test(Exporter::with_sources(sources, Duration::from_secs(3600)));
        let req = Request::get("/metrics")
            .header("X-Prometheus-Scrape-Timeout-Seconds", "0.05")
            .body(())
            .unwrap();
        // No wall-clock figure: the bound only tells "followed the header"
        // (done at once) from "waited for the hour-long budget".
        let resp = tokio::time::timeout(Duration::from_secs(60), handle(&s, req))
            .await
            .expect("the scrape ignored X-Prometheus-Scrape-Timeout-Seconds");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("llmchat_exporter_collector_success{collector=\"stuck\"} 0"),
            "{body}"
        );
        // 0.05 s less the 100 ms margin: the 10 ms floor; a long scrape
        // timeout is capped by the configured budget.
        assert_eq!(
            s.exporter.deadline(Some(Duration::from_millis(50))),
            Duration::from_millis(10)
        );
        let configured = state(vec![]);
        assert_eq!(
            configured.exporter.deadline(Some(Duration::from_secs(10))),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn aggregate_follows_the_guide() {
        assert_eq!(aggregate(&[]), HealthStatus::Healthy);
        assert_eq!(aggregate(&[true, true]), HealthStatus::Healthy);
        assert_eq!(aggregate(&[true, true, false]), HealthStatus::Degraded);
        assert_eq!(aggregate(&[true, false]), HealthStatus::Unhealthy);
        assert_eq!(aggregate(&[false]), HealthStatus::Unhealthy);
        assert_eq!(
            aggregate(&[true, true, true, false, false]),
            HealthStatus::Degraded
        );
    }
}
