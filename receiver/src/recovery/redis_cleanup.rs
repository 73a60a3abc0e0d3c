//! `redis_cleanup` actions: SCAN (MATCH each configured pattern) and
//! UNLINK of what it finds, the guide's cache cleanup. Bounded by a number
//! of keys and a time budget: reaching either ends the run early, with
//! success, and says so in the output.

use std::time::Duration;

use futures_util::future::BoxFuture;
use llmchat_common::duration;
use serde::Deserialize;

use super::config::RecoveryConfig;
use super::effect::{failed, BuildError, Effect, InvalidSpec, RunContext, Spec};

use std::time::Instant;

use super::{Decision, Outcome};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisCleanupSpec {
    /// The application's Redis; defaults to `recovery.redis_url`.
    pub url: Option<String>,
    /// Glob patterns (Redis MATCH syntax) of the keys to remove.
    pub patterns: Vec<String>,
    /// Most keys removed in one run.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// Time budget of one run.
    #[serde(
        default = "super::http_action::default_http_timeout",
        with = "duration"
    )]
    pub timeout: Duration,
    /// SCAN COUNT hint.
    #[serde(default = "default_scan_count")]
    pub scan_count: u64,
}
fn default_max_keys() -> u64 {
    100_000
}
fn default_scan_count() -> u64 {
    1000
}
/// Beyond a cleanup's own budget, before the run counts as hung.
const GRACE: Duration = Duration::from_secs(2);

impl Spec for RedisCleanupSpec {
    fn check(&self, recovery: &RecoveryConfig) -> Result<(), InvalidSpec> {
        let _ = recovery;
        let bad = |reason: &str| InvalidSpec(reason.to_string());
        let r = self;
        match r.url.as_ref().or(recovery.redis_url.as_ref()) {
            None => {
                return Err(bad(
                    "redis_cleanup needs a url (or recovery.redis_url / --redis.url)",
                ))
            }
            Some(u) if !super::config::is_redis_url(u) => {
                return Err(bad(
                    "redis_cleanup.url: expected redis://, rediss:// or unix://",
                ))
            }
            _ => {}
        }
        if r.patterns.is_empty() || r.patterns.iter().any(|p| p.is_empty()) {
            return Err(bad(
                "redis_cleanup.patterns needs at least one non-empty pattern",
            ));
        }
        if r.patterns.iter().any(|p| p == "*") {
            return Err(bad(
                "redis_cleanup.patterns: \"*\" would remove every key; name the cache namespaces",
            ));
        }
        if r.max_keys == 0 || r.scan_count == 0 || r.timeout.is_zero() {
            return Err(bad(
                "redis_cleanup.max_keys, scan_count and timeout must be above zero",
            ));
        }
        Ok(())
    }

    fn build(&self, recovery: &RecoveryConfig) -> Result<Box<dyn Effect>, BuildError> {
        Ok(Box::new(RedisCleanup {
            spec: self.clone(),
            default_url: recovery.redis_url.clone(),
        }))
    }
}

/// A cleanup with its Redis resolved (its own `url`, else `recovery.redis_url`).
struct RedisCleanup {
    spec: RedisCleanupSpec,
    default_url: Option<String>,
}

impl Effect for RedisCleanup {
    fn longest_run(&self) -> Duration {
        self.spec.timeout + GRACE
    }

    fn run<'a>(&'a self, _: RunContext<'a>) -> BoxFuture<'a, super::Outcome> {
        Box::pin(async move {
            let budget = self.spec.timeout + GRACE;
            match tokio::time::timeout(budget, run(&self.spec, self.default_url.as_deref())).await {
                Ok(r) => r.unwrap_or_else(failed),
                Err(_) => super::Outcome {
                    result: Decision::TimedOut,
                    exit_status: None,
                    output: String::new(),
                    detail: Some("Redis did not answer within the time budget".into()),
                },
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisCleanupError {
    #[error("invalid Redis URL")]
    Url,
    #[error("Redis: {0}")]
    Redis(String),
}

pub async fn run(
    spec: &RedisCleanupSpec,
    default_url: Option<&str>,
) -> Result<Outcome, RedisCleanupError> {
    let url = spec
        .url
        .as_deref()
        .or(default_url)
        .ok_or(RedisCleanupError::Url)?;
    let client = redis::Client::open(url).map_err(|_| RedisCleanupError::Url)?;
    let started = Instant::now();
    let deadline = started + spec.timeout;
    let redis_err = |e: redis::RedisError| RedisCleanupError::Redis(e.to_string());
    let mut con = tokio::time::timeout(spec.timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| RedisCleanupError::Redis("connection timed out".into()))?
        .map_err(redis_err)?;
    let mut removed_total = 0u64;
    let mut lines = Vec::new();
    let mut stop = None;
    'patterns: for pattern in &spec.patterns {
        let mut cursor = 0u64;
        let mut removed = 0u64;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                stop = Some("time budget reached");
                lines.push(format!("{pattern}: {removed}"));
                break 'patterns;
            }
            let step = async {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(spec.scan_count)
                    .query_async(&mut con)
                    .await?;
                let room = (spec.max_keys - removed_total) as usize;
                let keys = &keys[..keys.len().min(room)];
                let n: u64 = if keys.is_empty() {
                    0
                } else {
                    redis::cmd("UNLINK").arg(keys).query_async(&mut con).await?
                };
                Ok::<_, redis::RedisError>((next, n))
            };
            let (next, n) =
                match tokio::time::timeout(left.max(Duration::from_millis(1)), step).await {
                    Ok(r) => r.map_err(redis_err)?,
                    Err(_) => {
                        stop = Some("time budget reached");
                        lines.push(format!("{pattern}: {removed}"));
                        break 'patterns;
                    }
                };
            removed += n;
            removed_total += n;
            cursor = next;
            if removed_total >= spec.max_keys {
                stop = Some("max_keys reached");
                lines.push(format!("{pattern}: {removed}"));
                break 'patterns;
            }
            if cursor == 0 {
                lines.push(format!("{pattern}: {removed}"));
                break;
            }
        }
    }
    let mut output = format!(
        "unlinked {removed_total} keys in {:.3}s ({})",
        started.elapsed().as_secs_f64(),
        lines.join(", ")
    );
    if let Some(why) = stop {
        output.push_str(&format!("; stopped early: {why}"));
    }
    Ok(Outcome {
        result: Decision::Succeeded,
        exit_status: None,
        output,
        detail: None,
    })
}
