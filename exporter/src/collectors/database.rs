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

use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Unit;
use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;

use super::snapshot::{Published, Snapshot};
use super::{RefreshError, Source};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Tables whose statistics are exported.
    pub tables: Vec<String>,
    /// A session updated within this window is active.
    #[serde(with = "crate::config::duration")]
    pub active_window: Duration,
    /// How long the costly results (sizes, backlog counts) are reused.
    #[serde(with = "crate::config::duration")]
    pub cache_ttl: Duration,
    pub max_connections: u32,
    pub queries: Queries,
    pub custom_queries: Vec<CustomQuery>,
}

/// The LLMChat gauges' SQL; each can be replaced to fit another schema.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Queries {
    /// One row, one number; `$1` is the active window in seconds.
    pub active_sessions: String,
    /// Rows of (provider text, active bool, count).
    pub agents: String,
    /// One number: sessions the weekly job would delete.
    pub expired_sessions: String,
    /// One number: messages the weekly job would delete.
    pub orphaned_messages: String,
}

impl Default for Queries {
    fn default() -> Self {
        Self {
            active_sessions: "SELECT count(*) FROM chat_sessions WHERE updated_at > now() - make_interval(secs => $1)".into(),
            agents: "SELECT coalesce(provider, 'unknown') AS provider, coalesce(is_active, false) AS active, count(*) AS n FROM agents GROUP BY 1, 2".into(),
            expired_sessions: "SELECT count(*) FROM chat_sessions WHERE updated_at < now() - interval '30 days'".into(),
            orphaned_messages: "SELECT count(*) FROM messages m WHERE m.created_at < now() - interval '90 days' AND NOT EXISTS (SELECT 1 FROM chat_sessions s WHERE s.id = m.session_id)".into(),
        }
    }
}

/// A custom query, exported as `llmchat_custom_<name>{labels...}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomQuery {
    pub name: String,
    pub help: String,
    pub sql: String,
    /// Column holding the value.
    pub value: String,
    /// Columns that become labels.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            // The guide's `pg_dump -h localhost -U postgres llmchat`.
            url: "postgres://postgres@localhost:5432/llmchat".into(),
            tables: vec!["chat_sessions".into(), "messages".into(), "agents".into()],
            active_window: Duration::from_secs(30 * 60),
            cache_ttl: Duration::from_secs(60),
            max_connections: 2,
            queries: Queries::default(),
            custom_queries: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("database.url is not a valid PostgreSQL URL: {0}")]
    Url(String),
    #[error("PostgreSQL unreachable: {0}")]
    Down(String),
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
    password: Option<String>,
    published: Published,
    cache: tokio::sync::Mutex<Option<(Instant, Costly)>>,
}

impl std::fmt::Debug for DatabaseCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCollector").finish_non_exhaustive()
    }
}

/// The password of a URL, to scrub from error text.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_string())
}

/// Error text with any trace of the password removed.
fn scrub(text: String, password: Option<&str>) -> String {
    match password {
        Some(p) => text.replace(p, "****"),
        None => text,
    }
}

impl DatabaseCollector {
    /// Whether a URL parses, with the password scrubbed from the reason.
    pub fn validate_url(url: &str) -> Result<(), DatabaseError> {
        url.parse::<PgConnectOptions>()
            .map(|_| ())
            .map_err(|e| DatabaseError::Url(scrub(e.to_string(), password_of(url).as_deref())))
    }

    pub fn new(config: &DatabaseConfig) -> Result<Self, DatabaseError> {
        let password = password_of(&config.url);
        let options: PgConnectOptions = config.url.parse().map_err(|e: sqlx::Error| {
            DatabaseError::Url(scrub(e.to_string(), password.as_deref()))
        })?;
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
            config: config.clone(),
            password,
            published: Published::new(down_snapshot),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    fn scrub(&self, e: impl std::fmt::Display) -> String {
        scrub(e.to_string(), self.password.as_deref())
    }

    /// Answers `/health/db`: pings now, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let attempt = async {
            self.refused_fast().await.map_err(|e| e.to_string())?;
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(|e| self.scrub(e))
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
        let row = q.fetch_one(&self.pool).await.map_err(|e| self.scrub(e))?;
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
            Err(_) => values.failed.push("database_size"),
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
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(
                DatabaseError::Down(format!("connection refused by {host}:{port}")),
            ),
            // Anything else is for the real connection attempt to report.
            _ => Ok(()),
        }
    }

    async fn read(&self) -> Result<Snapshot, DatabaseError> {
        self.refused_fast().await?;
        let start = Instant::now();
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| DatabaseError::Down(self.scrub(e)))?;
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
        let mut failed: Vec<(&str, bool)> = Vec::new();
        s.gauge(
            "database_up",
            "1 if PostgreSQL answered SELECT 1 in this scrape, else 0 (the guide's /health/db).",
            None,
        )
        .value(1.0);
        s.gauge(
            "database_ping_duration",
            "Time PostgreSQL took to answer SELECT 1.",
            Some(Unit::Seconds),
        )
        .value(ping);

        match connections {
            Ok(rows) => {
                let mut f = s.gauge(
                    "database_connections",
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
                    "database_connections_active",
                    "Active connections to the LLMChat database (the guide's database_connections_active).",
                    None,
                )
                .value(active_count);
                if let Some(max) = rows.first().and_then(|r| column_f64(r, 2)) {
                    s.gauge(
                        "database_connections_max",
                        "PostgreSQL's max_connections.",
                        None,
                    )
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
                s.gauge(
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
                let mut f = s.gauge(
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
                "database_size",
                "Size of the LLMChat database (cached for database.cache_ttl).",
                Some(Unit::Bytes),
            )
            .value(v);
        }
        if !costly.table_sizes.is_empty() {
            let mut f = s.gauge(
                "database_table_size",
                "Total size of each table with indexes and TOAST (cached for database.cache_ttl).",
                Some(Unit::Bytes),
            );
            for (t, v) in &costly.table_sizes {
                f.sample(&[("table", t)], *v);
            }
        }
        if let Some(v) = costly.expired_sessions {
            s.gauge(
                "expired_sessions",
                "Sessions not updated for 30+ days, which the weekly maintenance deletes (cached for database.cache_ttl).",
                None,
            )
            .value(v);
        }
        if let Some(v) = costly.orphaned_messages {
            s.gauge(
                "orphaned_messages",
                "Messages older than 90 days without a session, which the weekly maintenance deletes (cached for database.cache_ttl).",
                None,
            )
            .value(v);
        }
        for name in [
            "database_size",
            "table_sizes",
            "expired_sessions",
            "orphaned_messages",
        ] {
            failed.push((name, costly.failed.contains(&name)));
        }

        let mut custom_success = Vec::new();
        for (c, result) in custom {
            let ok = match result {
                Ok(rows) => custom_family(&mut s, c, &rows),
                Err(e) => {
                    tracing::warn!(query = %c.name, error = %self.scrub(e), "custom query failed");
                    false
                }
            };
            custom_success.push((c.name.clone(), ok));
        }
        let mut f = s.gauge(
            "database_query_success",
            "1 if the built-in query succeeded in this scrape, else 0.",
            None,
        );
        for (name, bad) in &failed {
            f.sample(&[("query", name)], if *bad { 0.0 } else { 1.0 });
        }
        if !custom_success.is_empty() {
            let mut f = s.gauge(
                "custom_query_success",
                "1 if the custom query succeeded in this scrape, else 0.",
                None,
            );
            for (name, ok) in &custom_success {
                f.sample(&[("query", name)], f64::from(u8::from(*ok)));
            }
        }
        Ok(s)
    }
}

fn table_stats(s: &mut Snapshot, rows: &[PgRow]) {
    struct Col {
        index: usize,
        name: &'static str,
        help: &'static str,
        counter: bool,
        unit: Option<Unit>,
    }
    let cols = [
        Col {
            index: 1,
            name: "database_table_live_tuples",
            help: "Live rows in the table (n_live_tup).",
            counter: false,
            unit: None,
        },
        Col {
            index: 2,
            name: "database_table_dead_tuples",
            help: "Dead rows awaiting VACUUM (n_dead_tup).",
            counter: false,
            unit: None,
        },
        Col {
            index: 3,
            name: "database_table_inserted_rows",
            help: "Rows inserted since the statistics reset (n_tup_ins).",
            counter: true,
            unit: None,
        },
        Col {
            index: 4,
            name: "database_table_updated_rows",
            help: "Rows updated since the statistics reset (n_tup_upd).",
            counter: true,
            unit: None,
        },
        Col {
            index: 5,
            name: "database_table_deleted_rows",
            help: "Rows deleted since the statistics reset (n_tup_del).",
            counter: true,
            unit: None,
        },
        Col {
            index: 6,
            name: "database_table_last_vacuum_timestamp",
            help: "Last manual VACUUM, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
        Col {
            index: 7,
            name: "database_table_last_autovacuum_timestamp",
            help: "Last autovacuum, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
        Col {
            index: 8,
            name: "database_table_last_analyze_timestamp",
            help: "Last manual ANALYZE, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
        Col {
            index: 9,
            name: "database_table_last_autoanalyze_timestamp",
            help: "Last autoanalyze, Unix time.",
            counter: false,
            unit: Some(Unit::Seconds),
        },
    ];
    for c in cols {
        let mut f = if c.counter {
            s.counter(c.name, c.help, c.unit)
        } else {
            s.gauge(c.name, c.help, c.unit)
        };
        for r in rows {
            let Ok(table) = r.try_get::<String, _>(0) else {
                continue;
            };
            // A table never vacuumed has no timestamp: no sample.
            if let Some(v) = column_f64(r, c.index) {
                f.sample(&[("table", &table)], v);
            }
        }
    }
}

/// Exports one custom query; false when its rows do not fit its config.
fn custom_family(s: &mut Snapshot, c: &CustomQuery, rows: &[PgRow]) -> bool {
    let mut samples = Vec::new();
    for r in rows {
        let Some(value) = column_f64_named(r, &c.value) else {
            return false;
        };
        let mut labels = Vec::new();
        for l in &c.labels {
            let Some(v) = column_text(r, l) else {
                return false;
            };
            labels.push((l.clone(), v));
        }
        samples.push((labels, value));
    }
    let mut f = s.gauge(format!("custom_{}", c.name), c.help.clone(), None);
    for (labels, value) in samples {
        f.sample_dynamic(labels, value);
    }
    true
}

fn column_f64(row: &PgRow, index: usize) -> Option<f64> {
    if let Ok(v) = row.try_get::<Option<f64>, _>(index) {
        return v;
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(index) {
        return v.map(|v| v as f64);
    }
    if let Ok(v) = row.try_get::<Option<i32>, _>(index) {
        return v.map(f64::from);
    }
    if let Ok(v) = row.try_get::<Option<f32>, _>(index) {
        return v.map(f64::from);
    }
    None
}

fn column_f64_named(row: &PgRow, name: &str) -> Option<f64> {
    use sqlx::Column;
    let index = row.columns().iter().position(|c| c.name() == name)?;
    column_f64(row, index)
}

fn column_text(row: &PgRow, name: &str) -> Option<String> {
    if let Ok(v) = row.try_get::<Option<String>, _>(name) {
        return Some(v.unwrap_or_default());
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(name) {
        return Some(v.map(|b| b.to_string()).unwrap_or_default());
    }
    column_f64_named(row, name).map(|v| v.to_string())
}

fn down_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    s.gauge(
        "database_up",
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
            let result = self.read().await;
            self.published.publish(result)
        })
    }

    fn clear(&self) {
        self.published.set_down();
    }
}

impl Collector for DatabaseCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.published.encode(&mut e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed() {
        let url = "postgres://llmchat:s3cr%21t@db:5432/llmchat";
        let p = password_of(url);
        assert_eq!(p.as_deref(), Some("s3cr%21t"));
        assert_eq!(
            scrub(format!("cannot connect to {url}"), p.as_deref()),
            "cannot connect to postgres://llmchat:****@db:5432/llmchat"
        );
        assert_eq!(password_of("postgres://postgres@localhost/llmchat"), None);
    }
}
