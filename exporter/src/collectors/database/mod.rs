//! PostgreSQL collector (sqlx): reachability, connections, sizes, table
//! statistics, LLMChat's own gauges, and custom queries. Replaces the
//! guide's `/health/db` check, its weekly maintenance SQL (sizes, dead
//! tuples, the cleanup backlog) and `database-optimization.sql`'s checks.
//!
//! Like vector's `postgresql_metrics` source: the scrape never fails
//! because of the database (`llmchat_database_up` 0 instead), the pool
//! connects lazily and comes back by itself, queries run concurrently on a
//! pool of at most `max_connections` (2), and the password never reaches a
//! label, a log line or an error message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;

use super::snapshot::{Published, Snapshot};
use super::{RefreshError, Source};

mod config;
mod rows;

pub use config::{CustomQuery, DatabaseConfig, DatabaseFlags, Queries};
use rows::{column_f64, custom_family, table_stats};

/// The collector's line in [`crate::collectors::ALL`].
pub const ENTRY: super::Entry = super::Entry {
    name: "database",
    enabled_by_default: true,
    help: "PostgreSQL: reachability, connections, sizes, table statistics, LLMChat's gauges",
    start: |config, ctx| {
        let c = Arc::new(
            DatabaseCollector::new(&config.database)
                .map_err(|e| super::StartError::new("database", e))?,
        );
        ctx.registry
            .sub_registry_with_prefix("database")
            .register_collector(Box::new(c.clone()));
        ctx.registry
            .register_collector(Box::new(GuideMetrics(c.clone())));
        Ok(Some(c as Arc<dyn Source>))
    },
};

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database.url is not a valid PostgreSQL URL")]
    Url(#[source] sqlx::Error),
    #[error("PostgreSQL refused the connection at {0}")]
    Refused(String),
    #[error("PostgreSQL unreachable")]
    Query(#[source] sqlx::Error),
}

/// Values that cost a scan and are reused for `cache_ttl`.
#[derive(Debug, Clone, Default)]
struct Costly {
    database_size: Option<f64>,
    table_sizes: Vec<(String, f64)>,
    expired_sessions: Option<f64>,
    orphaned_messages: Option<f64>,
    failed: Vec<&'static str>,
}

pub struct DatabaseCollector {
    pool: PgPool,
    /// TCP address probed before connecting from an empty pool (see
    /// `refused_fast`); `None` for a Unix socket.
    tcp: Option<(String, u16)>,
    config: DatabaseConfig,
    /// `llmchat_database_*`.
    published: Published,
    /// The guide's own names (`llmchat_active_sessions`, `_agents`,
    /// `_expired_sessions`, `_orphaned_messages`) and custom queries
    /// (`llmchat_custom_*`), at the root of the registry.
    guide: Published,
    cache: tokio::sync::Mutex<Option<(Instant, Costly)>>,
}

impl std::fmt::Debug for DatabaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCollector").finish_non_exhaustive()
    }
}

impl DatabaseCollector {
    /// Parses the URL once: the connection options keep the password (they
    /// must, to log in); the collector keeps no copy of the URL, and its
    /// errors are sqlx's own, which never quote the URL.
    pub fn new(config: &DatabaseConfig) -> Result<Self, DatabaseError> {
        let options: PgConnectOptions = config.url.parse().map_err(DatabaseError::Url)?;
        let mut config = config.clone();
        config.url.clear();
        let tcp = options
            .get_socket()
            .is_none()
            .then(|| (options.get_host().to_string(), options.get_port()))
            .filter(|(host, _)| !host.starts_with('/'));
        let options = options
            .application_name("llmchat-exporter")
            // A query the scrape gave up on must not keep running.
            .options([("statement_timeout", "10s")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(300))
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            tcp,
            config,
            published: Published::new(down_snapshot),
            guide: Published::new(Snapshot::default),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// Answers `/health/db`: pings now, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let attempt = async {
            self.refused_fast().await.map_err(|e| e.to_string())?;
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        }
    }

    async fn number(&self, sql: &str, bind: Option<f64>) -> Result<f64, String> {
        let mut q = sqlx::query(sql);
        if let Some(b) = bind {
            q = q.bind(b);
        }
        let row = q.fetch_one(&self.pool).await.map_err(|e| e.to_string())?;
        column_f64(&row, 0).ok_or_else(|| "the first column is not a number".to_string())
    }

    async fn costly(&self) -> Costly {
        let mut cache = self.cache.lock().await;
        if let Some((at, values)) = cache.as_ref() {
            if at.elapsed() < self.config.cache_ttl {
                return values.clone();
            }
        }
        let q = &self.config.queries;
        let (size, tables, expired, orphaned) = tokio::join!(
            self.number("SELECT pg_database_size(current_database())::float8", None),
            sqlx::query(
                "SELECT relname::text, pg_total_relation_size(relid)::float8 FROM pg_stat_user_tables WHERE relname = ANY($1)"
            )
            .bind(&self.config.tables)
            .fetch_all(&self.pool),
            self.number(&q.expired_sessions, None),
            self.number(&q.orphaned_messages, None),
        );
        let mut values = Costly::default();
        match size {
            Ok(v) => values.database_size = Some(v),
            Err(_) => values.failed.push("size"),
        }
        match tables {
            Ok(rows) => {
                values.table_sizes = rows
                    .iter()
                    .filter_map(|r| Some((r.try_get::<String, _>(0).ok()?, column_f64(r, 1)?)))
                    .collect()
            }
            Err(_) => values.failed.push("table_sizes"),
        }
        match expired {
            Ok(v) => values.expired_sessions = Some(v),
            Err(_) => values.failed.push("expired_sessions"),
        }
        match orphaned {
            Ok(v) => values.orphaned_messages = Some(v),
            Err(_) => values.failed.push("orphaned_messages"),
        }
        // A failed read is retried next scrape, not cached.
        if values.failed.is_empty() {
            *cache = Some((Instant::now(), values.clone()));
        }
        values
    }

    /// sqlx's pool retries a refused connection until its acquire timeout,
    /// which would spend the whole scrape budget on a server that is simply
    /// down. With no connection open, one plain TCP connect first tells
    /// "refused" in a millisecond.
    async fn refused_fast(&self) -> Result<(), DatabaseError> {
        let Some((host, port)) = &self.tcp else {
            return Ok(());
        };
        if self.pool.size() > 0 {
            return Ok(());
        }
        match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(DatabaseError::Refused(format!("{host}:{port}")))
            }
            // Anything else is for the real connection attempt to report.
            _ => Ok(()),
        }
    }

    /// One scrape's values: `llmchat_database_*`, and the guide's names.
    async fn read(&self) -> Result<(Snapshot, Snapshot), DatabaseError> {
        self.refused_fast().await?;
        let start = Instant::now();
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(DatabaseError::Query)?;
        let ping = start.elapsed().as_secs_f64();

        let q = &self.config.queries;
        let window = self.config.active_window.as_secs_f64();
        // max_connections rides along with the connection counts: one round
        // trip less on a pool of two.
        let (connections, tables, active, agents, costly, custom) = tokio::join!(
            sqlx::query(
                "SELECT coalesce(state, 'unknown') AS state, count(*)::float8, \
                 (SELECT setting::float8 FROM pg_settings WHERE name = 'max_connections') \
                 FROM pg_stat_activity WHERE datname = current_database() GROUP BY 1"
            )
            .fetch_all(&self.pool),
            sqlx::query(
                "SELECT relname::text, n_live_tup::float8, n_dead_tup::float8, n_tup_ins::float8, n_tup_upd::float8, n_tup_del::float8, \
                 extract(epoch FROM last_vacuum)::float8, extract(epoch FROM last_autovacuum)::float8, \
                 extract(epoch FROM last_analyze)::float8, extract(epoch FROM last_autoanalyze)::float8 \
                 FROM pg_stat_user_tables WHERE relname = ANY($1)"
            )
            .bind(&self.config.tables)
            .fetch_all(&self.pool),
            self.number(&q.active_sessions, Some(window)),
            sqlx::query(&q.agents).fetch_all(&self.pool),
            self.costly(),
            join_all(self.config.custom_queries.iter().map(|c| async move {
                (c, sqlx::query(&c.sql).fetch_all(&self.pool).await)
            })),
        );

        let mut s = Snapshot::default();
        let mut g = Snapshot::default();
        let mut failed: Vec<(&str, bool)> = Vec::new();
        s.gauge(
            "up",
            "1 if PostgreSQL answered SELECT 1 in this scrape, else 0 (the guide's /health/db).",
            None,
        )
        .value(1.0);
        s.gauge(
            "ping_duration",
            "Time PostgreSQL took to answer SELECT 1.",
            Some(Unit::Seconds),
        )
        .value(ping);

        match connections {
            Ok(rows) => {
                let mut f = s.gauge(
                    "connections",
                    "Connections to the LLMChat database by state (pg_stat_activity).",
                    None,
                );
                let mut active_count = 0.0;
                for r in &rows {
                    let (Ok(state), Some(n)) = (r.try_get::<String, _>(0), column_f64(r, 1)) else {
                        continue;
                    };
                    if state == "active" {
                        active_count = n;
                    }
                    f.sample(&[("state", &state)], n);
                }
                s.gauge(
                    "connections_active",
                    "Active connections to the LLMChat database (the guide's database_connections_active).",
                    None,
                )
                .value(active_count);
                if let Some(max) = rows.first().and_then(|r| column_f64(r, 2)) {
                    s.gauge("connections_max", "PostgreSQL's max_connections.", None)
                        .value(max);
                }
                failed.push(("connections", false));
            }
            Err(_) => failed.push(("connections", true)),
        }
        match tables {
            Ok(rows) => {
                table_stats(&mut s, &rows);
                failed.push(("table_stats", false));
            }
            Err(_) => failed.push(("table_stats", true)),
        }
        match active {
            Ok(v) => {
                g.gauge(
                    "active_sessions",
                    "Chat sessions updated within database.active_window (the guide's active_sessions_total).",
                    None,
                )
                .value(v);
                failed.push(("active_sessions", false));
            }
            Err(_) => failed.push(("active_sessions", true)),
        }
        match agents {
            Ok(rows) => {
                let mut f = g.gauge(
                    "agents",
                    "Agents by provider and whether they are active.",
                    None,
                );
                for r in &rows {
                    let provider: String = r.try_get(0).unwrap_or_else(|_| "unknown".into());
                    let active: bool = r.try_get(1).unwrap_or(false);
                    if let Some(n) = column_f64(r, 2) {
                        f.sample(
                            &[
                                ("provider", &provider),
                                ("active", if active { "true" } else { "false" }),
                            ],
                            n,
                        );
                    }
                }
                failed.push(("agents", false));
            }
            Err(_) => failed.push(("agents", true)),
        }
        if let Some(v) = costly.database_size {
            s.gauge(
                "size",
                "Size of the LLMChat database (cached for database.cache_ttl).",
                Some(Unit::Bytes),
            )
            .value(v);
        }
        if !costly.table_sizes.is_empty() {
            let mut f = s.gauge(
                "table_size",
                "Total size of each table with indexes and TOAST (cached for database.cache_ttl).",
                Some(Unit::Bytes),
            );
            for (t, v) in &costly.table_sizes {
                f.sample(&[("table", t)], *v);
            }
        }
        if let Some(v) = costly.expired_sessions {
            g.gauge(
                "expired_sessions",
                "Sessions not updated for 30+ days, which the weekly maintenance deletes (cached for database.cache_ttl).",
                None,
            )
            .value(v);
        }
        if let Some(v) = costly.orphaned_messages {
            g.gauge(
                "orphaned_messages",
                "Messages older than 90 days without a session, which the weekly maintenance deletes (cached for database.cache_ttl).",
                None,
            )
            .value(v);
        }
        for name in [
            "size",
            "table_sizes",
            "expired_sessions",
            "orphaned_messages",
        ] {
            failed.push((name, costly.failed.contains(&name)));
        }

        let mut custom_success = Vec::new();
        for (c, result) in custom {
            let ok = match result {
                Ok(rows) => custom_family(&mut g, c, &rows),
                Err(e) => {
                    tracing::warn!(query = %c.name, error = %e, "custom query failed");
                    false
                }
            };
            custom_success.push((c.name.clone(), ok));
        }
        let mut f = s.gauge(
            "query_success",
            "1 if the built-in query succeeded in this scrape, else 0.",
            None,
        );
        for (name, bad) in &failed {
            f.sample(&[("query", name)], if *bad { 0.0 } else { 1.0 });
        }
        if !custom_success.is_empty() {
            let mut f = g.gauge(
                "custom_query_success",
                "1 if the custom query succeeded in this scrape, else 0.",
                None,
            );
            for (name, ok) in &custom_success {
                f.sample(&[("query", name)], f64::from(u8::from(*ok)));
            }
        }
        Ok((s, g))
    }
}

fn down_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge(
        "up",
        "1 if PostgreSQL answered SELECT 1 in this scrape, else 0 (the guide's /health/db).",
        None,
    )
    .value(0.0);
    s
}

impl Source for DatabaseCollector {
    fn name(&self) -> &'static str {
        "database"
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), RefreshError>> {
        Box::pin(async move {
            match self.read().await {
                Ok((own, guide)) => {
                    self.published.set(own);
                    self.guide.set(guide);
                    Ok(())
                }
                Err(e) => {
                    self.clear();
                    Err(e.into())
                }
            }
        })
    }

    fn clear(&self) {
        self.published.set_down();
        self.guide.set_down();
    }

    fn ping(&self, timeout: Duration) -> Option<BoxFuture<'_, Result<Duration, String>>> {
        Some(Box::pin(DatabaseCollector::ping(self, timeout)))
    }
}

/// The guide-named and custom series, registered at the registry's root.
#[derive(Debug)]
pub struct GuideMetrics(pub Arc<DatabaseCollector>);

impl Collector for GuideMetrics {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.guide.encode(&mut e)
    }
}

impl Collector for DatabaseCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.published.encode(&mut e)
    }
}
