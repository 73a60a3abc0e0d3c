//! `http` actions: one request with the configured method, URL, headers
//! and body (the backend's admin GC endpoint, say). The answer's status
//! decides: one of `expect_status`, or any 2xx when none is listed. URLs
//! and header values may hold tokens, so errors name neither.

use super::config::HttpSpec;
use super::{Decision, Outcome, OUTPUT_LIMIT};

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

    pub fn timeout(&self) -> std::time::Duration {
        self.spec.timeout
    }

    pub async fn run(&self) -> Result<Outcome, HttpActionError> {
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
