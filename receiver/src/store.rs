//! The durable outbox (sqlx): one row per (alert, channel) notification,
//! in an embedded SQLite file by default or in PostgreSQL when several
//! receivers share it. A unique deduplication key makes a repeated post
//! (an Alertmanager retry, or both members of an HA pair) a no-op, and
//! claiming a row before sending keeps replicas from sending it twice.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store: {0}")]
    Open(String),
    #[error("store query failed: {0}")]
    Query(String),
}

fn query_error(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A notification to store.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub dedup_key: String,
    pub channel: String,
    pub severity: String,
    pub status: String,
    pub alertname: String,
    pub payload: String,
}

/// A stored notification.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: i64,
    pub channel: String,
    pub severity: String,
    pub status: String,
    pub alertname: String,
    #[serde(skip)]
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub created_ms: i64,
    pub last_error: Option<String>,
    pub sent_ms: Option<i64>,
}

impl Notification {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Notification {
            id: r.try_get("id")?,
            channel: r.try_get("channel")?,
            severity: r.try_get("severity")?,
            status: r.try_get("status")?,
            alertname: r.try_get("alertname")?,
            payload: r.try_get("payload")?,
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            next_attempt_ms: r.try_get("next_attempt_ms")?,
            created_ms: r.try_get("created_ms")?,
            last_error: r.try_get("last_error")?,
            sent_ms: r.try_get("sent_ms")?,
        })
    }
}

pub struct Store {
    pool: AnyPool,
}

const COLUMNS: &str = "id, channel, severity, status, alertname, payload, state, attempts, next_attempt_ms, created_ms, last_error, sent_ms";

impl Store {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=rwc")
        } else {
            url.to_string()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 5 })
            .acquire_timeout(std::time::Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Writers wait for each other instead of failing.
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::Open(scrub(&e.to_string(), &url)))?;
        let id = if sqlite {
            "id INTEGER PRIMARY KEY AUTOINCREMENT"
        } else {
            "id BIGSERIAL PRIMARY KEY"
        };
        if sqlite {
            pool.execute("PRAGMA journal_mode = WAL")
                .await
                .map_err(|e| StoreError::Open(e.to_string()))?;
        }
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS notifications ({id}, dedup_key TEXT NOT NULL UNIQUE, \
             channel TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL, alertname TEXT NOT NULL, \
             payload TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, \
             next_attempt_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL, last_error TEXT, sent_ms BIGINT)"
        );
        for stmt in [
            ddl.as_str(),
            "CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_attempt_ms)",
            "CREATE TABLE IF NOT EXISTS receiver_heartbeat (k TEXT PRIMARY KEY, at_ms BIGINT NOT NULL)",
        ] {
            pool.execute(stmt)
                .await
                .map_err(|e| StoreError::Open(e.to_string()))?;
        }
        Ok(Store { pool })
    }

    /// Stores new notifications in one transaction; returns how many were
    /// new (the rest were duplicates).
    pub async fn insert(&self, rows: &[NewNotification]) -> Result<usize, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(query_error)?;
        let mut stored = 0;
        for r in rows {
            let done = sqlx::query(
                "INSERT INTO notifications (dedup_key, channel, severity, status, alertname, payload, state, attempts, next_attempt_ms, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8) ON CONFLICT (dedup_key) DO NOTHING",
            )
            .bind(&r.dedup_key)
            .bind(&r.channel)
            .bind(&r.severity)
            .bind(&r.status)
            .bind(&r.alertname)
            .bind(&r.payload)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_error)?;
            stored += done.rows_affected() as usize;
        }
        tx.commit().await.map_err(query_error)?;
        Ok(stored)
    }

    /// Pending notifications due now.
    pub async fn due(&self, now: i64, limit: i64) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE state = 'pending' AND next_attempt_ms <= $1 ORDER BY id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(Notification::from_row)
            .collect::<Result<_, _>>()
            .map_err(query_error)
    }

    /// Takes a row for sending until `lease_until`; false when another
    /// worker (or replica) already took it.
    pub async fn claim(&self, n: &Notification, lease_until: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE notifications SET next_attempt_ms = $1 WHERE id = $2 AND state = 'pending' AND next_attempt_ms = $3",
        )
        .bind(lease_until)
        .bind(n.id)
        .bind(n.next_attempt_ms)
        .execute(&self.pool)
        .await
        .map_err(query_error)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn mark_sent(&self, id: i64, attempts: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET state = 'sent', sent_ms = $1, attempts = $2, last_error = NULL WHERE id = $3")
            .bind(now_ms())
            .bind(attempts)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    pub async fn mark_retry(
        &self,
        id: i64,
        attempts: i64,
        next_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE notifications SET attempts = $1, next_attempt_ms = $2, last_error = $3 WHERE id = $4")
            .bind(attempts)
            .bind(next_ms)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }

    pub async fn mark_dead(&self, id: i64, attempts: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET state = 'dead', attempts = $1, last_error = $2 WHERE id = $3",
        )
        .bind(attempts)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(query_error)?;
        Ok(())
    }

    pub async fn count(&self, state: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT count(*) AS n FROM notifications WHERE state = $1")
            .bind(state)
            .fetch_one(&self.pool)
            .await
            .map_err(query_error)?;
        row.try_get::<i64, _>("n").map_err(query_error)
    }

    pub async fn list(&self, state: &str, limit: i64) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE state = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(query_error)?;
        rows.iter()
            .map(Notification::from_row)
            .collect::<Result<_, _>>()
            .map_err(query_error)
    }

    /// Forgets sent and dead rows (and so their dedup keys) older than the window.
    pub async fn purge(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM notifications WHERE state <> 'pending' AND created_ms < $1")
                .bind(older_than_ms)
                .execute(&self.pool)
                .await
                .map_err(query_error)?;
        Ok(done.rows_affected())
    }

    /// A write that proves the store is writable, for /health.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO receiver_heartbeat (k, at_ms) VALUES ('health', $1) ON CONFLICT (k) DO UPDATE SET at_ms = $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(query_error)?;
        Ok(())
    }
}

/// Removes a password from an error that quotes the URL.
fn scrub(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "****"),
        None => text.to_string(),
    }
}
