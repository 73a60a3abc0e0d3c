//! `redis_cleanup` actions: SCAN (MATCH each configured pattern) and
//! UNLINK of what it finds, the guide's cache cleanup. Bounded by a number
//! of keys and a time budget: reaching either ends the run early, with
//! success, and says so in the output.

use std::time::{Duration, Instant};

use super::config::RedisCleanupSpec;
use super::{Decision, Outcome};

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
