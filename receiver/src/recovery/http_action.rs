//! `http` actions: one request with the configured method, URL, headers
//! and body (the backend's admin GC endpoint, say). The answer's status
//! decides: one of `expect_status`, or any 2xx when none is listed. URLs
//! and header values may hold tokens, so errors name neither.
//!
//! A central receiver acting for many hosts gives `url_by_instance`: the
//! URL for the alert's `instance` comes from that configured map, never
//! from a label (an alert must not choose where the receiver sends a
//! request); an instance not in the map is skipped.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use llmchat_common::duration;
use serde::Deserialize;

use super::config::RecoveryConfig;
use super::effect::{failed, BuildError, Effect, InvalidSpec, NotServed, RunContext, Spec};

use super::{Decision, Outcome, OUTPUT_LIMIT};
use crate::payload::Alert;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    #[serde(default = "default_method")]
    pub method: String,
    /// The URL; or, instead, `url_by_instance`.
    #[serde(default)]
    pub url: Option<String>,
    /// The URL for each value of the alert's `instance` label.
    #[serde(default)]
    pub url_by_instance: BTreeMap<String, String>,
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
    fn check(&self, recovery: &RecoveryConfig) -> Result<(), InvalidSpec> {
        let _ = recovery;
        let bad = |reason: &str| InvalidSpec(reason.to_string());
        let h = self;
        let is_http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        match (&h.url, h.url_by_instance.is_empty()) {
            (Some(_), false) => return Err(bad("set http.url or http.url_by_instance, not both")),
            (None, true) => return Err(bad("http.url (or http.url_by_instance) is required")),
            (Some(u), true) if !is_http(u) => return Err(bad("http.url must be an http(s) URL")),
            _ => {}
        }
        if h.url_by_instance.values().any(|u| !is_http(u)) {
            return Err(bad("every http.url_by_instance URL must be http(s)"));
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

    fn run<'a>(&'a self, ctx: RunContext<'a>) -> BoxFuture<'a, super::Outcome> {
        Box::pin(async move {
            match self.url_for(ctx.alert) {
                Ok(url) => self.call(url).await.unwrap_or_else(failed),
                Err(e) => failed(e),
            }
        })
    }

    fn serves(&self, alert: &Alert) -> Result<(), NotServed> {
        self.url_for(alert).map(|_| ())
    }

    fn per_instance(&self) -> bool {
        !self.spec.url_by_instance.is_empty()
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
        // Never follow a redirect: the action's secret headers would go to
        // another host, and that host's answer would be audited as ours.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(spec.timeout)
            .user_agent(concat!("llmchat-receiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpActionError::Client(e.without_url().to_string()))?;
        Ok(HttpAction {
            client,
            spec: spec.clone(),
        })
    }

    /// The URL for this alert: the fixed one, or its instance's.
    fn url_for(&self, alert: &Alert) -> Result<&str, NotServed> {
        if let Some(url) = &self.spec.url {
            return Ok(url);
        }
        let instance = alert
            .labels
            .get("instance")
            .map(String::as_str)
            .unwrap_or("");
        self.spec
            .url_by_instance
            .get(instance)
            .map(String::as_str)
            .ok_or_else(|| NotServed::NoUrlForInstance(instance.to_string()))
    }

    pub async fn call(&self, url: &str) -> Result<Outcome, HttpActionError> {
        let method = reqwest::Method::from_bytes(self.spec.method.as_bytes())
            .map_err(|_| HttpActionError::Request("method".into()))?;
        let mut req = self.client.request(method, url);
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
                    // The whole chain: "error sending request" alone says
                    // nothing of why (refused, reset, a name that does
                    // not resolve).
                    detail: Some(llmchat_common::error_chain(&e.without_url())),
                });
            }
        };
        let status = resp.status().as_u16();
        let redirect = resp
            .status()
            .is_redirection()
            .then(|| crate::channels::redirected(resp.status(), resp.headers()));
        let ok = redirect.is_none()
            && if self.spec.expect_status.is_empty() {
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
            detail: redirect.or_else(|| (!ok).then(|| format!("unexpected HTTP status {status}"))),
        })
    }
}
