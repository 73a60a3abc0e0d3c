//! `[database]`: the connection, the tables, the LLMChat queries and the
//! custom ones, and their `--database.*` flags.

use llmchat_common::settings::Settings;
use std::time::Duration;

use llmchat_common::{duration, invalid, ConfigError};
use serde::{Deserialize, Serialize};

use crate::collector_kit::background::Schedule;
use crate::collector_kit::Section;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Settings)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, `postgres://user:password@host:port/database`; the
    /// password never appears in labels, logs or errors.
    ///
    /// The default is the guide's `pg_dump -h localhost -U postgres llmchat`.
    #[setting(
        flag,
        value_name = "URL",
        default = "postgres://postgres@localhost:5432/llmchat"
    )]
    pub url: String,
    /// Tables whose statistics are exported, comma-separated.
    #[setting(flag, default = ["chat_sessions", "messages", "agents"])]
    pub tables: Vec<String>,
    /// Window in which an updated session counts as active.
    #[setting(flag, default = Duration::from_secs(30 * 60))]
    #[serde(with = "duration")]
    pub active_window: Duration,
    /// Connections the background queries may hold at once (the scrape
    /// has two more of its own).
    ///
    /// So a slow query never delays a scrape.
    #[setting(flag, default = 2)]
    pub max_connections: u32,
    /// A query whose plan reads more rows than this by sequential scan is
    /// reported once at start (log and gauge).
    #[setting(default = 100_000)]
    pub seq_scan_warn_rows: u64,
    /// A statement whose mean execution time (pg_stat_statements) is over
    /// this is slow: its calls count in `llmchat_database_slow_queries_total`.
    /// PostgreSQL's own habit for "slow" (log_min_duration_statement is
    /// commonly set to 1 s); the guide names no figure.
    #[setting(default = Duration::from_secs(1))]
    #[serde(with = "duration")]
    pub slow_query_threshold: Duration,
    pub queries: Queries,
    pub refresh: Refresh,
    pub custom_queries: Vec<CustomQuery>,
}

/// `[database.refresh]`: when each built-in background query runs and how
/// long it may take (`active_sessions = { interval = "30s", timeout = "10s" }`).
/// These reads grow with the data, so none of them runs in a scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Refresh {
    pub active_sessions: Schedule,
    pub agents: Schedule,
    pub database_size: Schedule,
    pub table_sizes: Schedule,
    pub expired_sessions: Schedule,
    pub orphaned_messages: Schedule,
    /// pg_stat_statements' totals and slow statements.
    pub statements: Schedule,
}

impl Default for Refresh {
    fn default() -> Self {
        Self {
            active_sessions: Schedule::new(30, 10),
            agents: Schedule::new(30, 10),
            database_size: Schedule::new(300, 30),
            table_sizes: Schedule::new(300, 30),
            expired_sessions: Schedule::new(900, 60),
            orphaned_messages: Schedule::new(900, 60),
            statements: Schedule::new(60, 10),
        }
    }
}

impl Refresh {
    /// (query label, schedule) of every built-in background query.
    pub fn all(&self) -> [(&'static str, Schedule); 7] {
        [
            ("active_sessions", self.active_sessions),
            ("agents", self.agents),
            ("database_size", self.database_size),
            ("table_sizes", self.table_sizes),
            ("expired_sessions", self.expired_sessions),
            ("orphaned_messages", self.orphaned_messages),
            ("statements", self.statements),
        ]
    }
}

/// The LLMChat gauges' SQL; each can be replaced to fit another schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Queries {
    /// One row, one number; `$1` is the active window in seconds.
    pub active_sessions: String,
    /// Rows of (provider text, active bool, count).
    pub agents: String,
    /// Sessions the weekly job would delete, and (an optional second
    /// column) the age in seconds of the oldest of them.
    pub expired_sessions: String,
    /// Messages the weekly job would delete, and (optional) the age in
    /// seconds of the oldest.
    pub orphaned_messages: String,
}

impl Default for Queries {
    fn default() -> Self {
        Self {
            active_sessions: "SELECT count(*) FROM chat_sessions WHERE updated_at > now() - make_interval(secs => $1)".into(),
            agents: "SELECT coalesce(provider, 'unknown') AS provider, coalesce(is_active, false) AS active, count(*) AS n FROM agents GROUP BY 1, 2".into(),
            expired_sessions: "SELECT count(*), coalesce(extract(epoch FROM now() - min(updated_at)), 0)::float8 FROM chat_sessions WHERE updated_at < now() - interval '30 days'".into(),
            orphaned_messages: "SELECT count(*), coalesce(extract(epoch FROM now() - min(m.created_at)), 0)::float8 FROM messages m WHERE m.created_at < now() - interval '90 days' AND NOT EXISTS (SELECT 1 FROM chat_sessions s WHERE s.id = m.session_id)".into(),
        }
    }
}

/// A custom query, exported as `llmchat_custom_<name>{labels...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// How often it runs (in the background, never in a scrape).
    #[serde(default = "custom_interval", with = "duration")]
    pub interval: Duration,
    /// How long one run may take; PostgreSQL cancels it then.
    #[serde(default = "custom_timeout", with = "duration")]
    pub timeout: Duration,
}

fn custom_interval() -> Duration {
    Schedule::default().interval
}

fn custom_timeout() -> Duration {
    Schedule::default().timeout
}

impl CustomQuery {
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            timeout: self.timeout,
        }
    }
}

impl Section for DatabaseConfig {
    fn validate(&self, enabled: bool) -> Result<(), ConfigError> {
        if enabled {
            if let Err(e) = self.url.parse::<sqlx::postgres::PgConnectOptions>() {
                return Err(invalid(
                    "database.url",
                    "(not shown: may hold a password)",
                    e,
                ));
            }
        }
        if !(1..=10).contains(&self.max_connections) {
            return Err(invalid(
                "database.max_connections",
                self.max_connections,
                "must be 1 to 10",
            ));
        }
        for (name, schedule) in self.refresh.all() {
            schedule.validate(&format!("database.refresh.{name}"))?;
        }
        if self.slow_query_threshold.is_zero() {
            return Err(invalid(
                "database.slow_query_threshold",
                "0s",
                "must be more than 0 (every statement would be slow)",
            ));
        }
        for (i, q) in self.custom_queries.iter().enumerate() {
            let ok_name = !q.name.is_empty()
                && q.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !ok_name {
                return Err(invalid(
                    "database.custom_queries.name",
                    &q.name,
                    format!("entry {i}: use [a-z0-9_]+"),
                ));
            }
            q.schedule()
                .validate(&format!("database.custom_queries.{}", q.name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_without_showing_it() {
        // A one-letter password: the old "replace the password in the
        // message" scheme mangled every "s" of such a message.
        let config = DatabaseConfig {
            url: "postgres://u:s@host:notaport/db".into(),
            ..Default::default()
        };
        let e = config.validate(true).unwrap_err().to_string();
        assert!(e.contains("database.url") && e.contains("not shown"), "{e}");
        assert!(!e.contains("u:s@"), "{e}");
    }
}
