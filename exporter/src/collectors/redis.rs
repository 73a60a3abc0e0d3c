//! Redis collector: reachability, clients, memory, keyspace counters, keys
//! per database and per cache namespace. Replaces the guide's
//! `/health/redis` check and watches its cache strategies (`agents`,
//! `sessions`, `messages`).
//!
//! One multiplexed connection, opened lazily and dropped on any error so
//! the next scrape reconnects. A scrape sends PING and INFO only, whatever
//! the keyspace's size. Namespace sizes come from SCAN (never KEYS) in a
//! background job on `redis.scan_interval`, under a time and key budget;
//! the scrape publishes its latest counts (see [`crate::collector_kit::background`]).

use crate::collector_kit::PingError;
use llmchat_common::settings::Settings;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::collector_kit::Section;
use llmchat_common::{invalid, ConfigError};

use crate::collector_kit::background::{self, BackgroundError, Job, Schedule, Tasks};
use crate::collector_kit::snapshot::{Published, Snapshot};
use crate::collector_kit::{Context, RefreshError, Source, StartError, Started};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "redis",
    role: crate::collector_kit::Role::Services,
    enabled_by_default: true,
    help: "Redis: reachability, clients, memory, keyspace, keys per cache namespace",
};

/// Registers the Redis metrics and starts the collector (its SCAN job too).
pub fn start(config: &RedisConfig, ctx: &mut Context<'_>) -> Started {
    let c = Arc::new(RedisCollector::new(config).map_err(|e| StartError::new("redis", e))?);
    ctx.registry
        .sub_registry_with_prefix("redis")
        .register_collector(Box::new(c.clone()));
    Ok(Some(c as Arc<dyn Source>))
}

/// `[redis]`: the connection and the namespace SCAN's budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Redis URL, `redis://[:password@]host:port[/db]`; the password never
    /// appears in labels, logs or errors.
    #[setting(flag, value_name = "URL", default = "redis://localhost:6379")]
    pub url: String,
    /// Cache namespaces counted by key prefix (`<namespace>:*`),
    /// comma-separated.
    #[setting(flag, default = ["agents", "sessions", "messages"])]
    pub namespaces: Vec<String>,
    /// Time budget of one namespace SCAN run; counts are lower bounds past it.
    #[setting(flag, default = Duration::from_millis(500))]
    #[serde(with = "llmchat_common::duration")]
    pub scan_budget: Duration,
    /// Keys one namespace SCAN run examines at most.
    #[setting(flag, default = 100_000)]
    pub scan_max_keys: u64,
    /// How often the namespace SCAN runs, in the background (never in a
    /// scrape: it walks the keyspace).
    #[setting(flag, default = Duration::from_secs(30))]
    #[serde(with = "llmchat_common::duration")]
    pub scan_interval: Duration,
}

impl Section for RedisConfig {
    fn validate(&self, enabled: bool) -> Result<(), ConfigError> {
        if enabled {
            if let Err(e) = redis::Client::open(self.url.as_str()) {
                return Err(invalid("redis.url", "(not shown: may hold a password)", e));
            }
        }
        self.scan_schedule().validate("redis.scan")?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis.url is not a valid Redis URL")]
    Url(#[source] redis::RedisError),
    #[error("Redis unreachable")]
    Down(#[source] redis::RedisError),
}

impl RedisConfig {
    /// The namespace SCAN job's schedule: its budget is its timeout.
    fn scan_schedule(&self) -> Schedule {
        Schedule {
            interval: self.scan_interval,
            timeout: self.scan_budget,
        }
    }
}

/// The connection the scrape and the SCAN job share.
struct Connection {
    client: redis::Client,
    slot: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Connection {
    async fn get(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .client
            .get_multiplexed_async_connection()
            .await
            .map_err(RedisError::Down)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        *self.slot.lock().await = None;
    }
}

pub struct RedisCollector {
    connection: Arc<Connection>,
    published: Published,
    /// The namespace SCAN, off the scrape path; `None` without namespaces.
    scan: Option<Arc<Job>>,
    tasks: Tasks,
}

impl std::fmt::Debug for RedisCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCollector").finish_non_exhaustive()
    }
}

fn down_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge(
        "up",
        "1 if Redis answered PING in this scrape, else 0 (the guide's /health/redis).",
        None,
    )
    .value(0.0);
    s
}

/// (namespace, keys counted, whether the SCAN finished within budget).
type NamespaceCount = (String, u64, bool);

/// INFO's `key:value` lines.
pub fn parse_info(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
        .collect()
}

impl RedisCollector {
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        // The client keeps the parsed connection info (with the password,
        // which it needs); the collector keeps no copy of the URL, and
        // redis' errors never quote it.
        let client = redis::Client::open(config.url.as_str()).map_err(RedisError::Url)?;
        let mut config = config.clone();
        config.url.clear();
        let connection = Arc::new(Connection {
            client,
            slot: tokio::sync::Mutex::new(None),
        });
        let tasks = Tasks::default();
        let scan = (!config.namespaces.is_empty()).then(|| {
            let job = Job::new("namespace_keys", config.scan_schedule());
            tasks.push(background::spawn(
                job.clone(),
                scan_job(connection.clone(), config.clone()),
            ));
            job
        });
        Ok(Self {
            connection,
            published: Published::new(down_snapshot),
            scan,
            tasks,
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        self.connection.get().await
    }

    async fn forget_connection(&self) {
        self.connection.forget().await;
    }

    /// Answers `/health/redis`: pings now, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, PingError> {
        let start = Instant::now();
        let attempt = async {
            let mut c = self.connection().await.map_err(PingError::failed)?;
            redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .map_err(PingError::failed)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => {
                self.forget_connection().await;
                Err(e)
            }
            Err(_) => {
                self.forget_connection().await;
                Err(PingError::Timeout(timeout))
            }
        }
    }

    async fn read(&self) -> Result<Snapshot, RedisError> {
        let mut c = self.connection().await?;
        let start = Instant::now();
        let down = RedisError::Down;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(down)?;
        let ping = start.elapsed().as_secs_f64();
        let info = redis::cmd("INFO")
            .query_async::<String>(&mut c)
            .await
            .map_err(down)?;
        let info = parse_info(&info);
        let num = |key: &str| info.get(key).and_then(|v| v.trim().parse::<f64>().ok());

        let mut s = Snapshot::default();
        s.gauge(
            "up",
            "1 if Redis answered PING in this scrape, else 0 (the guide's /health/redis).",
            None,
        )
        .value(1.0);
        s.gauge(
            "ping_duration",
            "Time Redis took to answer PING.",
            Some(Unit::Seconds),
        )
        .value(ping);
        let gauges: [(&str, &'static str, &'static str, Option<Unit>); 4] = [
            (
                "connected_clients",
                "connections_active",
                "Connected clients (the guide's redis_connections_active).",
                None,
            ),
            (
                "blocked_clients",
                "blocked_clients",
                "Clients blocked in BLPOP and the like.",
                None,
            ),
            (
                "used_memory",
                "memory_used",
                "Memory Redis has allocated.",
                Some(Unit::Bytes),
            ),
            (
                "maxmemory",
                "memory_max",
                "Redis maxmemory; 0 when unlimited.",
                Some(Unit::Bytes),
            ),
        ];
        for (key, name, help, unit) in gauges {
            if let Some(v) = num(key) {
                s.gauge(name, help, unit).value(v);
            }
        }
        let counters: [(&str, &'static str, &'static str); 5] = [
            ("keyspace_hits", "keyspace_hits", "Successful key lookups."),
            (
                "keyspace_misses",
                "keyspace_misses",
                "Failed key lookups (cache misses).",
            ),
            (
                "evicted_keys",
                "evicted_keys",
                "Keys evicted because of maxmemory.",
            ),
            (
                "expired_keys",
                "expired_keys",
                "Keys removed because their TTL ran out.",
            ),
            (
                "total_commands_processed",
                "commands_processed",
                "Commands processed.",
            ),
        ];
        for (key, name, help) in counters {
            if let Some(v) = num(key) {
                s.counter(name, help, None).value(v);
            }
        }
        let mut dbs: Vec<(&str, f64)> = info
            .iter()
            .filter(|(k, _)| k.starts_with("db") && k[2..].chars().all(|c| c.is_ascii_digit()))
            .filter_map(|(k, v)| {
                let keys = v.split(',').find_map(|p| p.strip_prefix("keys="))?;
                Some((*k, keys.parse().ok()?))
            })
            .collect();
        dbs.sort_by(|a, b| a.0.cmp(b.0));
        let mut f = s.gauge("db_keys", "Keys per Redis database (INFO keyspace).", None);
        for (db, n) in &dbs {
            f.sample(&[("db", db)], *n);
        }

        if let Some(job) = &self.scan {
            background::add_fresh(&mut s, std::slice::from_ref(job));
            background::add_stats(&mut s, std::slice::from_ref(job));
        }
        Ok(s)
    }
}

/// The namespace SCAN job's read: one namespace after another on the
/// shared connection, each with its share of the key budget, all within
/// the time budget.
fn scan_job(connection: Arc<Connection>, config: RedisConfig) -> background::Read {
    let config = Arc::new(config);
    Box::new(move || {
        let (connection, config) = (connection.clone(), config.clone());
        Box::pin(async move {
            let c = connection
                .get()
                .await
                .map_err(|e| BackgroundError::Failed(Box::new(e)))?;
            let deadline = Instant::now() + config.scan_budget;
            let share = (config.scan_max_keys / config.namespaces.len() as u64).max(1000);
            // One SCAN in flight at a time: the scrape's INFO shares the
            // connection (and Redis' one thread), and waits behind at most one.
            let mut counts = Vec::with_capacity(config.namespaces.len());
            for ns in &config.namespaces {
                match scan_namespace(c.clone(), ns, deadline, share).await {
                    Ok(count) => counts.push(count),
                    Err(e) => {
                        connection.forget().await;
                        return Err(BackgroundError::Failed(Box::new(RedisError::Down(e))));
                    }
                }
            }
            let mut s = Snapshot::default();
            let mut f = s.gauge(
                "namespace_keys",
                "Keys per cache namespace (<namespace>:*), counted with SCAN by the latest background run.",
                None,
            );
            for (ns, n, _) in &counts {
                f.sample(&[("namespace", ns)], *n as f64);
            }
            let mut f = s.gauge(
                "namespace_scan_complete",
                "1 if the namespace SCAN finished within its budget, else 0 (the count is a lower bound).",
                None,
            );
            for (ns, _, complete) in &counts {
                f.sample(&[("namespace", ns)], f64::from(u8::from(*complete)));
            }
            Ok(s)
        })
    })
}

/// SCAN one namespace until done, the deadline, or its key budget.
async fn scan_namespace(
    mut c: MultiplexedConnection,
    ns: &str,
    deadline: Instant,
    max_keys: u64,
) -> Result<NamespaceCount, redis::RedisError> {
    let pattern = format!("{ns}:*");
    let mut cursor: u64 = 0;
    let mut count = 0u64;
    let mut examined = 0u64;
    loop {
        if Instant::now() >= deadline || examined >= max_keys {
            return Ok((ns.to_string(), count, false));
        }
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await?;
        count += keys.len() as u64;
        examined += 1000;
        cursor = next;
        if cursor == 0 {
            return Ok((ns.to_string(), count, true));
        }
    }
}

impl Source for RedisCollector {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        Box::pin(async move {
            let result = self.read().await;
            if result.is_err() {
                self.forget_connection().await;
            }
            self.published.publish(result)
        })
    }

    fn clear(&self) {
        self.published.set_down();
        // A timed-out request may have left the connection mid-reply.
        if let Ok(mut slot) = self.connection.slot.try_lock() {
            *slot = None;
        }
    }

    fn stop(&self) {
        self.tasks.stop();
    }

    fn ping(&self, timeout: Duration) -> Option<BoxFuture<'_, Result<Duration, PingError>>> {
        Some(Box::pin(RedisCollector::ping(self, timeout)))
    }
}

impl Collector for RedisCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.published.encode(&mut e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines() {
        let text = "# Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\n\r\n# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=0\r\n";
        let info = parse_info(text);
        assert_eq!(info["connected_clients"], "3");
        assert_eq!(info["db0"], "keys=12,expires=3,avg_ttl=0");
    }
}
