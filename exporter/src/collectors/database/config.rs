//! `[database]`: the connection, the tables, the LLMChat queries and the
//! custom ones, and their `--database.*` flags.

use std::time::Duration;

use llmchat_common::{duration, invalid, ConfigError};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Section};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Tables whose statistics are exported.
    pub tables: Vec<String>,
    /// A session updated within this window is active.
    #[serde(with = "duration")]
    pub active_window: Duration,
    /// How long the costly results (sizes, backlog counts) are reused.
    #[serde(with = "duration")]
    pub cache_ttl: Duration,
    pub max_connections: u32,
    pub queries: Queries,
    pub custom_queries: Vec<CustomQuery>,
}

/// The LLMChat gauges' SQL; each can be replaced to fit another schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// `--database.*` flags.
#[serde_with::skip_serializing_none]
#[derive(Debug, Default, clap::Args, Serialize)]
pub struct DatabaseFlags {
    /// PostgreSQL URL; the password never appears in labels, logs or errors.
    #[arg(
        id = "database.url",
        long = "database.url",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// Tables whose statistics are exported, comma-separated.
    #[arg(
        id = "database.tables",
        long = "database.tables",
        value_name = "LIST",
        value_delimiter = ','
    )]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<String>,
    /// Window in which an updated session counts as active.
    #[arg(id = "database.active_window", long = "database.active-window", value_name = "DURATION", value_parser = duration::flag)]
    pub active_window: Option<String>,
    /// How long sizes and backlog counts are reused.
    #[arg(id = "database.cache_ttl", long = "database.cache-ttl", value_name = "DURATION", value_parser = duration::flag)]
    pub cache_ttl: Option<String>,
    /// Connections the collector may open at most.
    #[arg(
        id = "database.max_connections",
        long = "database.max-connections",
        value_name = "N"
    )]
    pub max_connections: Option<u32>,
}

impl Section for DatabaseConfig {
    fn validate(&self, config: &Config) -> Result<(), ConfigError> {
        if config.collectors.is_enabled("database") {
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
        let mut config = Config::default();
        config.database.url = "postgres://u:s@host:notaport/db".into();
        let e = config.database.validate(&config).unwrap_err().to_string();
        assert!(e.contains("database.url") && e.contains("not shown"), "{e}");
        assert!(!e.contains("u:s@"), "{e}");
    }
}
