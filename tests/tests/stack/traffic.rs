//! What the stack's tests feed and read: the notifications the sinks
//! received, the backend's /health, and the access and app log lines of
//! synthetic traffic.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llmchat_tests::sinks::{SmtpSink, Target};

use crate::harness::Delivery;

/// Every notification the sinks received, as (alertname, status, channel).
pub fn deliveries(hook: &Target, slack: &Target, smtp: &SmtpSink) -> Vec<Delivery> {
    let mut out = Vec::new();
    for r in hook.requests() {
        let j = r.json();
        out.push(Delivery {
            alertname: j["alertname"].as_str().unwrap_or_default().into(),
            status: j["status"].as_str().unwrap_or_default().into(),
            channel: "webhook",
        });
    }
    let subject = |s: &str| -> Option<(String, String)> {
        let rest = s.strip_prefix("[LLMChat][")?;
        let (tag, name) = rest.split_once("] ")?;
        // `RESOLVED`, or `RESOLVED:3` for an email of a group.
        let status = if tag.split(':').next() == Some("RESOLVED") {
            "resolved"
        } else {
            "firing"
        };
        Some((name.trim().to_string(), status.to_string()))
    };
    for r in slack.requests() {
        if let Some((alertname, status)) = r.json()["text"].as_str().and_then(subject) {
            out.push(Delivery {
                alertname,
                status,
                channel: "slack",
            });
        }
    }
    for m in smtp.mails() {
        let line = m
            .data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default();
        if let Some((alertname, status)) = subject(line) {
            out.push(Delivery {
                alertname,
                status,
                channel: "email",
            });
        }
    }
    out.sort();
    out
}

/// nginx traffic (20 requests/s, `error_percent` of them 500) and chat
/// events in app.log (2/s), until `stop`.
/// Keeps the backend's /health body current: the guide's
/// HealthController's status, checks, version and a growing uptime.
pub(crate) fn spawn_backend_health(
    backend: &Target,
    stop: Arc<AtomicBool>,
    version: Arc<Mutex<(String, Instant)>>,
) {
    let body = backend.body_handle();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let (v, since) = version.lock().unwrap().clone();
            *body.lock().unwrap() = serde_json::json!({
                "status": "healthy",
                "checks": [{"name": "database", "status": "healthy"}, {"name": "redis", "status": "healthy"}],
                "version": v,
                "uptime": since.elapsed().as_secs_f64(),
            })
            .to_string();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

pub fn spawn_traffic(
    logs: &Path,
    stop: Arc<AtomicBool>,
    error_percent: Arc<AtomicU32>,
    openai_rate_limiting: Arc<AtomicBool>,
) {
    use std::io::Write;
    let access = logs.join("access.log");
    let app = logs.join("app.log");
    std::thread::spawn(move || {
        let mut n: u64 = 0;
        while !stop.load(Ordering::Acquire) {
            let pct = u64::from(error_percent.load(Ordering::Acquire));
            let mut batch = String::new();
            for _ in 0..2 {
                n += 1;
                let status = if n % 100 < pct { 500 } else { 200 };
                batch.push_str(&format!(
                    "203.0.113.7 - - [26/Nov/2026:11:02:03 +0000] \"POST /api/chat/messages HTTP/1.1\" {status} 512 \"-\" \"e2e\" 0.{:03}\n",
                    20 + n % 200
                ));
            }
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&access) {
                let _ = f.write_all(batch.as_bytes());
            }
            if n.is_multiple_of(10) {
                let limited = n.is_multiple_of(40) && openai_rate_limiting.load(Ordering::Acquire);
                let status = if limited { "error" } else { "success" };
                // What the LLM call behind it says: an OpenAI-style usage
                // object and the time to the first token, or the
                // provider's 429.
                let (model, provider) = if n.is_multiple_of(20) {
                    ("gpt-4o", "openai")
                } else {
                    ("claude-3-5-sonnet", "anthropic")
                };
                let call = if status == "error" {
                    r#""error":{"status":429,"type":"rate_limit_error"}"#.to_string()
                } else {
                    format!(
                        r#""usage":{{"prompt_tokens":{},"completion_tokens":{}}},"time_to_first_token_ms":{}"#,
                        300 + n % 900,
                        40 + n % 300,
                        150 + n % 400
                    )
                };
                let line = format!(
                    "{{\"level\":\"info\",\"event\":\"chat_message\",\"agent_id\":\"agent-{}\",\"status\":\"{status}\",\"duration_ms\":{},\"model\":\"{model}\",\"provider\":\"{provider}\",{call}}}\n",
                    n % 3,
                    800 + n % 700
                );
                if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&app) {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}
