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

use crate::collector_kit::PingError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};

use crate::collector_kit::background;
use crate::collector_kit::snapshot::{Published, Snapshot};
use crate::collector_kit::{Context, RefreshError, Source, StartError, Started};

mod config;
mod jobs;
mod rows;

pub use config::{CustomQuery, DatabaseConfig, Queries, Refresh};
use rows::{column_f64, table_stats};

/// What the collector says of itself, for its line in
/// `crate::config::collectors::ALL`.
pub const ENTRY: crate::collector_kit::Entry = crate::collector_kit::Entry {
    name: "database",
    role: crate::collector_kit::Role::Services,
    enabled_by_default: true,
    help: "PostgreSQL: reachability, connections, sizes, table statistics, LLMChat's gauges",
};

/// Registers the PostgreSQL metrics (the guide's own names at the root)
/// and starts the collector and its background jobs.
pub fn start(config: &DatabaseConfig, ctx: &mut Context<'_>) -> Started {
    let c = Arc::new(DatabaseCollector::new(config).map_err(|e| StartError::new("database", e))?);
    ctx.registry
        .sub_registry_with_prefix("database")
        .register_collector(Box::new(c.clone()));
    ctx.registry
        .register_collector(Box::new(GuideMetrics(c.clone())));
    Ok(Some(c as Arc<dyn Source>))
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database.url is not a valid PostgreSQL URL")]
    Url(#[source] sqlx::Error),
    #[error("PostgreSQL refused the connection at {0}")]
    Refused(String),
    #[error("PostgreSQL unreachable")]
    Query(#[source] sqlx::Error),
}

pub struct DatabaseCollector {
    /// The scrape path's own two connections: a slow background query
    /// never makes a scrape wait for one, and the scrape's two statistics
    /// queries run side by side.
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
    /// Everything whose cost grows with the data, off the scrape path.
    background: jobs::Background,
}

impl std::fmt::Debug for DatabaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCollector").finish_non_exhaustive()
    }
}

impl DatabaseCollector {
    /// Parses the URL once: the connection options keep the password (they
    /// must, to log in); the collector keeps no copy of the URL, and its
    /// errors are sqlx's own, which never quote the URL. Starts the
    /// background queries (so it must run inside the Tokio runtime).
    pub fn new(config: &DatabaseConfig) -> Result<Self, DatabaseError> {
        let options: PgConnectOptions = config.url.parse().map_err(DatabaseError::Url)?;
        let mut config = config.clone();
        config.url.clear();
        let tcp = options
            .get_socket()
            .is_none()
            .then(|| (options.get_host().to_string(), options.get_port()))
            .filter(|(host, _)| !host.starts_with('/'));
        // sqlx would log every run over a second at WARN: a slow
        // background query is reported by its own series and logged when
        // it starts failing, not once per run.
        let options = options
            .application_name("llmchat-exporter")
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(300))
            .test_before_acquire(true)
            // A query the scrape gave up on must not keep running.
            .connect_lazy_with(options.clone().options([("statement_timeout", "10s")]));
        // Each background query sets its own statement_timeout.
        let background_pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(Duration::from_secs(300))
            .test_before_acquire(true)
            .connect_lazy_with(options);
        let background = jobs::start(background_pool, tcp.clone(), &config);
        Ok(Self {
            pool,
            tcp,
            config,
            published: Published::new(down_snapshot),
            guide: Published::new(Snapshot::default),
            background,
        })
    }

    /// Answers `/health/db`: pings now, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, PingError> {
        let start = Instant::now();
        let attempt = async {
            self.refused_fast().await.map_err(PingError::failed)?;
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(PingError::failed)
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(PingError::Timeout(timeout)),
        }
    }

    async fn refused_fast(&self) -> Result<(), DatabaseError> {
        refused_fast(self.tcp.as_ref(), &self.pool).await
    }

    /// One scrape's values: `llmchat_database_*`, and the guide's names.
    /// Only what costs the same whatever the data's size runs here: the
    /// ping, the connection counts and the `pg_stat_user_tables` row of each
    /// table; the rest is the background queries' latest values.
    async fn read(&self) -> Result<(Snapshot, Snapshot), DatabaseError> {
        self.refused_fast().await?;
        let start = Instant::now();
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(DatabaseError::Query)?;
        let ping = start.elapsed().as_secs_f64();

        // max_connections rides along with the connection counts; the two
        // queries run at once, one on each scrape connection.
        let connections = sqlx::query(
            "SELECT coalesce(state, 'unknown') AS state, count(*)::float8, \
             (SELECT setting::float8 FROM pg_settings WHERE name = 'max_connections') \
             FROM pg_stat_activity WHERE datname = current_database() GROUP BY 1",
        )
        .fetch_all(&self.pool);
        let tables = sqlx::query(
            "SELECT relname::text, n_live_tup::float8, n_dead_tup::float8, n_tup_ins::float8, n_tup_upd::float8, n_tup_del::float8, \
             extract(epoch FROM last_vacuum)::float8, extract(epoch FROM last_autovacuum)::float8, \
             extract(epoch FROM last_analyze)::float8, extract(epoch FROM last_autoanalyze)::float8 \
             FROM pg_stat_user_tables WHERE relname = ANY($1)",
        )
        .bind(&self.config.tables)
        .fetch_all(&self.pool);
        let (connections, tables) = tokio::join!(connections, tables);

        let mut s = Snapshot::default();
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
        let mut f = s.gauge(
            "query_success",
            "1 if the scrape-time query succeeded in this scrape, else 0 (background queries: llmchat_database_query_last_success_timestamp_seconds).",
            None,
        );
        for (name, bad) in &failed {
            f.sample(&[("query", name)], if *bad { 0.0 } else { 1.0 });
        }

        background::add_fresh(&mut s, &self.background.own);
        background::add_stats(&mut s, &self.background.all());
        let mut g = Snapshot::default();
        background::add_fresh(&mut g, &self.background.guide);
        Ok((s, g))
    }
}

/// sqlx's pool retries a refused connection until its acquire timeout,
/// which would spend a scrape's whole budget (or a background query's whole
/// timeout, counted as a timeout) on a server that is simply down. With no
/// connection open, one plain TCP connect first tells "refused" in a
/// millisecond.
async fn refused_fast(tcp: Option<&(String, u16)>, pool: &PgPool) -> Result<(), DatabaseError> {
    let Some((host, port)) = tcp else {
        return Ok(());
    };
    if pool.size() > 0 {
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

    fn ping(&self, timeout: Duration) -> Option<BoxFuture<'_, Result<Duration, PingError>>> {
        Some(Box::pin(DatabaseCollector::ping(self, timeout)))
    }

    fn stop(&self) {
        self.background.stop();
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
