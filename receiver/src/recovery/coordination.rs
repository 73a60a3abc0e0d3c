//! Cooldowns, hourly caps and the one-run-at-a-time lock, shared by every
//! receiver that uses the same Redis (one Lua script: SET NX PX for the
//! cooldown, a sorted set for the sliding hour; SET NX PX for the lock,
//! released only by its holder) or else the same store (conditional
//! upserts: one slot per run of the hourly cap, held for an hour). Dry runs keep state of
//! their own, so that turning dry run off does not inherit a dry run's
//! cooldown.

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

/// SET NX PX of the run lock (a script, so that every call to Redis goes
/// through one path with its timeout and reconnection).
const LOCK: &str = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])";

/// Deletes the lock only if this holder still has it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

pub enum Coordinator {
    Store(Arc<Store>),
    Redis(Box<RedisGate>),
}

pub struct RedisGate {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    script: redis::Script,
    lock: redis::Script,
    release: redis::Script,
}

impl RedisGate {
    /// The shared connection, made on first use and after a failure.
    async fn connection(&self) -> Result<MultiplexedConnection, CoordinationError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(
            Duration::from_secs(3),
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| CoordinationError::Redis("connection timed out".into()))?
        .map_err(|e| CoordinationError::Redis(e.to_string()))?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn forget_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs a script with a timeout; a failure drops the connection so
    /// that the next call reconnects.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, CoordinationError> {
        let mut c = self.connection().await?;
        let answer = tokio::time::timeout(Duration::from_secs(3), invocation.invoke_async(&mut c))
            .await
            .map_err(|_| CoordinationError::Redis("timed out".into()))
            .and_then(|r| r.map_err(|e| CoordinationError::Redis(e.to_string())));
        if answer.is_err() {
            self.forget_connection().await;
        }
        answer
    }
}

/// A held run lock; give it back with [`Coordinator::release`].
pub struct RunLock {
    key: String,
    holder: String,
}

impl Coordinator {
    pub fn new(redis_url: Option<&str>, store: Arc<Store>) -> Result<Self, CoordinationError> {
        Ok(match redis_url {
            None => Coordinator::Store(store),
            Some(url) => Coordinator::Redis(Box::new(RedisGate {
                client: redis::Client::open(url).map_err(|_| CoordinationError::Url)?,
                conn: tokio::sync::Mutex::new(None),
                script: redis::Script::new(ADMIT),
                lock: redis::Script::new(LOCK),
                release: redis::Script::new(RELEASE),
            })),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Coordinator::Store(_) => "store",
            Coordinator::Redis(_) => "redis",
        }
    }

    /// Takes a run of the hourly cap (per action) and the cooldown (per
    /// scope: the action, or the action on one instance), atomically on
    /// every backend: one Lua script on Redis, conditional upserts on the
    /// store. A decision that cannot be made is an error, and the caller
    /// does not run the action.
    pub async fn admit(
        &self,
        action: &str,
        scope: &str,
        dry_run: bool,
        cooldown: Duration,
        cap: u32,
    ) -> Result<Admission, CoordinationError> {
        let mode = if dry_run { "dry" } else { "live" };
        let now = now_ms();
        match self {
            Coordinator::Store(store) => {
                // A slot of the hourly cap first, then the cooldown; a
                // cooldown not granted gives the slot back. Each step is
                // atomic on its own, and a step that fails half-way leaves
                // fewer runs possible, never more.
                let holder = format!("{now}-{:016x}", fastrand::u64(..));
                let slots = format!("{mode}:{action}");
                if cap > 0
                    && !store
                        .take_slot(&slots, cap, &holder, now, now + HOUR_MS)
                        .await?
                {
                    return Ok(Admission::RateLimited);
                }
                if !cooldown.is_zero() {
                    let key = format!("{mode}:{scope}");
                    let until = now + cooldown.as_millis() as i64;
                    if !store.take_cooldown(&key, now, until).await? {
                        if cap > 0 {
                            store.release_slot(&slots, &holder).await?;
                        }
                        return Ok(Admission::Cooldown);
                    }
                }
                Ok(Admission::Granted)
            }
            Coordinator::Redis(gate) => {
                let member = format!("{now}-{:016x}", fastrand::u64(..));
                let mut invocation = gate.script.prepare_invoke();
                invocation
                    .key(format!("llmchat:recovery:{mode}:{scope}:cooldown"))
                    .key(format!("llmchat:recovery:{mode}:{action}:runs"))
                    .arg(now)
                    .arg(cooldown.as_millis() as u64)
                    .arg(cap)
                    .arg(member);
                let answer: String = gate.run(invocation).await?;
                match answer.as_str() {
                    "granted" => Ok(Admission::Granted),
                    "cooldown" => Ok(Admission::Cooldown),
                    "rate_limited" => Ok(Admission::RateLimited),
                    other => Err(CoordinationError::Redis(format!(
                        "unexpected answer {other:?}"
                    ))),
                }
            }
        }
    }

    /// Takes the run lock of a scope (the action, or the action on one
    /// instance) for `ttl` (the longest a run can take, so that a crashed
    /// holder's lock expires); None when another run (here or in another
    /// replica) holds it.
    pub async fn lock(
        &self,
        scope: &str,
        ttl: Duration,
    ) -> Result<Option<RunLock>, CoordinationError> {
        let key = format!("llmchat:recovery:live:{scope}:lock");
        let holder = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let taken = match self {
            Coordinator::Store(store) => {
                let now = now_ms();
                store
                    .take_lock(&key, &holder, now, now + ttl.as_millis() as i64)
                    .await?
            }
            Coordinator::Redis(gate) => {
                let mut invocation = gate.lock.prepare_invoke();
                invocation
                    .key(&key)
                    .arg(&holder)
                    .arg(ttl.as_millis() as u64);
                gate.run::<Option<String>>(invocation).await?.is_some()
            }
        };
        Ok(taken.then_some(RunLock { key, holder }))
    }

    /// Gives a run lock back; one that cannot be released expires.
    pub async fn release(&self, lock: RunLock) {
        let result = match self {
            Coordinator::Store(store) => store
                .release_lock(&lock.key, &lock.holder)
                .await
                .map_err(CoordinationError::from),
            Coordinator::Redis(gate) => {
                let mut invocation = gate.release.prepare_invoke();
                invocation.key(&lock.key).arg(&lock.holder);
                gate.run::<i64>(invocation).await.map(|_| ())
            }
        };
        if let Err(e) = result {
            tracing::warn!(lock = %lock.key, error = %e, "cannot release a recovery run lock; it will expire");
        }
    }
}
