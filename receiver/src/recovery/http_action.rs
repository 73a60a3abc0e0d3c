//! `http` actions: one request with the configured method, URL, headers
//! and body (the backend's admin GC endpoint, say). The answer's status
//! decides: one of `expect_status`, or any 2xx when none is listed. URLs
//! and header values may hold tokens, so errors name neither.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use llmchat_common::duration;
use serde::Deserialize;

use super::config::RecoveryConfig;
use super::effect::{failed, BuildError, Effect, RunContext, Spec};

use super::{Decision, Outcome, OUTPUT_LIMIT};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_http_timeout", with = "duration")]
    pub timeout: Duration,
    /// Statuses that mean success; empty: any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
}
fn default_method() -> String {
    "POST".into()
}
/// The default time budget of an `http` or `redis_cleanup` run.
pub fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Spec for HttpSpec {
    fn check(&self, recovery: &RecoveryConfig) -> Result<(), String> {
        let _ = recovery;
        let bad = |reason: &str| reason.to_string();
        let h = self;
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            return Err(bad("http.url must be an http(s) URL"));
        }
        if reqwest::Method::from_bytes(h.method.as_bytes()).is_err() {
            return Err(bad("http.method is not an HTTP method"));
        }
        if let Some(s) = h.expect_status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(bad(&format!(
                "http.expect_status {s} is not an HTTP status"
            )));
        }
        if h.timeout.is_zero() {
            return Err(bad("http.timeout must be above zero"));
        }
        Ok(())
    }

    fn build(&self, _: &RecoveryConfig) -> Result<Box<dyn Effect>, BuildError> {
        Ok(Box::new(HttpAction::new(self)?))
    }
}

impl Effect for HttpAction {
    fn longest_run(&self) -> Duration {
        self.spec.timeout
    }

    fn run<'a>(&'a self, _: RunContext<'a>) -> BoxFuture<'a, super::Outcome> {
        Box::pin(async move { self.call().await.unwrap_or_else(failed) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpActionError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("invalid request: {0}")]
    Request(String),
}

pub struct HttpAction {
    client: reqwest::Client,
    spec: HttpSpec,
}

impl HttpAction {
    pub fn new(spec: &HttpSpec) -> Result<Self, HttpActionError> {
        let client = reqwest::Client::builder()
            .timeout(spec.timeout)
            .user_agent(concat!("llmchat-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpActionError::Client(e.without_url().to_string()))?;
        Ok(HttpAction {
            client,
            spec: spec.clone(),
        })
    }

    pub async fn call(&self) -> Result<Outcome, HttpActionError> {
        let method = reqwest::Method::from_bytes(self.spec.method.as_bytes())
            .map_err(|_| HttpActionError::Request("method".into()))?;
        let mut req = self.client.request(method, &self.spec.url);
        for (k, v) in &self.spec.headers {
            req = req.header(k, v);
        }
        if let Some(body) = &self.spec.body {
            req = req.body(body.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(Outcome {
                    result: if e.is_timeout() {
                        Decision::TimedOut
                    } else {
                        Decision::Failed
                    },
                    exit_status: None,
                    output: String::new(),
                    detail: Some(e.without_url().to_string()),
                })
            }
        };
        let status = resp.status().as_u16();
        let ok = if self.spec.expect_status.is_empty() {
            resp.status().is_success()
        } else {
            self.spec.expect_status.contains(&status)
        };
        let mut body = Vec::new();
        let mut resp = resp;
        let mut timed_out = false;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = OUTPUT_LIMIT.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room == 0 {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    timed_out = e.is_timeout();
                    break;
                }
            }
        }
        Ok(Outcome {
            result: match (ok, timed_out) {
                (_, true) => Decision::TimedOut,
                (true, _) => Decision::Succeeded,
                (false, _) => Decision::Failed,
            },
            exit_status: Some(i64::from(status)),
            output: super::output_text(&body),
            detail: (!ok).then(|| format!("unexpected HTTP status {status}")),
        })
    }
}
