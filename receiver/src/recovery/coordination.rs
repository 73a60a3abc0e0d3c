//! Cooldowns and hourly caps, shared by every receiver that uses the same
//! Redis (one Lua script: SET NX PX for the cooldown, a sorted set for the
//! sliding hour) or else the same store (a conditional upsert, and the
//! audit's own count of runs). Dry runs keep state of their own, so that
//! turning dry run off does not inherit a dry run's cooldown.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::store::{now_ms, Store};

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("invalid Redis URL")]
    Url,
    #[error("Redis unavailable: {0}")]
    Redis(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
}

/// Whether an action may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Granted,
    Cooldown,
    RateLimited,
}

const HOUR_MS: i64 = 3_600_000;

/// KEYS: cooldown, runs. ARGV: now ms, cooldown ms, cap (0: none), member.
const ADMIT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - 3600000)
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('ZCARD', KEYS[2]) >= cap then return 'rate_limited' end
if tonumber(ARGV[2]) > 0 then
  if not redis.call('SET', KEYS[1], ARGV[4], 'NX', 'PX', ARGV[2]) then return 'cooldown' end
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], 3600000)
return 'granted'
"#;

pub enum Coordinator {
    Store(Arc<Store>),
    Redis(Box<RedisGate>),
}

pub struct RedisGate {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    script: redis::Script,
}

impl Coordinator {
    pub fn new(redis_url: Option<&str>, store: Arc<Store>) -> Result<Self, CoordinationError> {
        Ok(match redis_url {
            None => Coordinator::Store(store),
            Some(url) => Coordinator::Redis(Box::new(RedisGate {
                client: redis::Client::open(url).map_err(|_| CoordinationError::Url)?,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(ADMIT),
            })),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Coordinator::Store(_) => "store",
            Coordinator::Redis(_) => "redis",
        }
    }

    /// Checks the hourly cap and takes the cooldown, atomically where the
    /// backend allows (Redis); a decision that cannot be made is an error,
    /// and the caller does not run the action.
    pub async fn admit(
        &self,
        action: &str,
        dry_run: bool,
        cooldown: Duration,
        cap: u32,
    ) -> Result<Admission, CoordinationError> {
        let mode = if dry_run { "dry" } else { "live" };
        let now = now_ms();
        match self {
            Coordinator::Store(store) => {
                if cap > 0
                    && store
                        .audit_runs_since(action, dry_run, now - HOUR_MS)
                        .await?
                        >= i64::from(cap)
                {
                    return Ok(Admission::RateLimited);
                }
                if !cooldown.is_zero() {
                    let key = format!("{mode}:{action}");
                    let until = now + cooldown.as_millis() as i64;
                    if !store.take_cooldown(&key, now, until).await? {
                        return Ok(Admission::Cooldown);
                    }
                }
                Ok(Admission::Granted)
            }
            Coordinator::Redis(gate) => {
                let RedisGate {
                    client,
                    conn,
                    script,
                } = &**gate;
                let mut guard = conn.lock().await;
                if guard.is_none() {
                    let c = tokio::time::timeout(
                        Duration::from_secs(3),
                        client.get_multiplexed_async_connection(),
                    )
                    .await
                    .map_err(|_| CoordinationError::Redis("connection timed out".into()))?
                    .map_err(|e| CoordinationError::Redis(e.to_string()))?;
                    *guard = Some(c);
                }
                let Some(c) = guard.as_mut() else {
                    return Err(CoordinationError::Redis("not connected".into()));
                };
                let member = format!("{now}-{:016x}", fastrand::u64(..));
                let answer: Result<String, _> = tokio::time::timeout(
                    Duration::from_secs(3),
                    script
                        .key(format!("llmchat:recovery:{mode}:{action}:cooldown"))
                        .key(format!("llmchat:recovery:{mode}:{action}:runs"))
                        .arg(now)
                        .arg(cooldown.as_millis() as u64)
                        .arg(cap)
                        .arg(member)
                        .invoke_async(c),
                )
                .await
                .map_err(|_| CoordinationError::Redis("timed out".into()))
                .and_then(|r| r.map_err(|e| CoordinationError::Redis(e.to_string())));
                match answer {
                    Ok(a) if a == "granted" => Ok(Admission::Granted),
                    Ok(a) if a == "cooldown" => Ok(Admission::Cooldown),
                    Ok(a) if a == "rate_limited" => Ok(Admission::RateLimited),
                    Ok(a) => Err(CoordinationError::Redis(format!("unexpected answer {a:?}"))),
                    Err(e) => {
                        // Reconnect on the next decision.
                        *guard = None;
                        Err(e)
                    }
                }
            }
        }
    }
}
