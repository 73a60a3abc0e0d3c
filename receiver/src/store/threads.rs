//! Message threads: where a message about an alert went out (Slack's
//! channel and `ts`, an email's `Message-ID`), keyed by what later
//! messages about the same alert can name. Shared through the store, so a
//! resolve that reaches another replica, or this one after a restart,
//! still updates the original message.

use sqlx::Row;

use super::{now_ms, Store, StoreError};

/// One remembered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Slack's channel id; empty for email.
    pub target: String,
    /// Slack's `ts`, or the email's `Message-ID`.
    pub message_ref: String,
}

/// A `(target, message_ref)` row.
fn thread_of(row: &sqlx::any::AnyRow) -> Result<Thread, sqlx::Error> {
    Ok(Thread {
        target: row.try_get(0)?,
        message_ref: row.try_get(1)?,
    })
}

impl Store {
    pub async fn thread(&self, key: &str) -> Result<Option<Thread>, StoreError> {
        let row =
            sqlx::query("SELECT target, message_ref FROM message_threads WHERE thread_key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.fail(e))?;
        row.map(|r| thread_of(&r))
            .transpose()
            .map_err(|e| self.fail(e))
    }

    /// The newest thread whose key starts with `prefix` (a recovery
    /// outcome knows its alert's fingerprint, not when it started).
    pub async fn latest_thread(&self, prefix: &str) -> Result<Option<Thread>, StoreError> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let row = sqlx::query(
            "SELECT target, message_ref FROM message_threads WHERE thread_key LIKE $1 ESCAPE '\\' \
             ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(pattern)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        row.map(|r| thread_of(&r))
            .transpose()
            .map_err(|e| self.fail(e))
    }

    /// Remembers a message, replacing what the key held (a new firing of
    /// the alert is the message later updates belong to).
    pub async fn put_thread(&self, key: &str, thread: &Thread) -> Result<(), StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO message_threads (thread_key, target, message_ref, created_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (thread_key) DO UPDATE SET target = excluded.target, \
                 message_ref = excluded.message_ref, created_ms = excluded.created_ms",
            )
            .bind(key)
            .bind(&thread.target)
            .bind(&thread.message_ref)
            .bind(now_ms()),
        )
        .await?;
        Ok(())
    }

    /// Remembers a message unless the key already has one; returns the
    /// one in force (an email thread's first message stays its root).
    pub async fn put_thread_once(&self, key: &str, thread: &Thread) -> Result<Thread, StoreError> {
        self.execute(
            sqlx::query(
                "INSERT INTO message_threads (thread_key, target, message_ref, created_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (thread_key) DO NOTHING",
            )
            .bind(key)
            .bind(&thread.target)
            .bind(&thread.message_ref)
            .bind(now_ms()),
        )
        .await?;
        Ok(self.thread(key).await?.unwrap_or_else(|| thread.clone()))
    }

    pub async fn delete_thread(&self, key: &str) -> Result<(), StoreError> {
        self.execute(sqlx::query("DELETE FROM message_threads WHERE thread_key = $1").bind(key))
            .await?;
        Ok(())
    }

    /// Forgets threads older than the cutoff.
    pub async fn purge_threads(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        self.execute(
            sqlx::query("DELETE FROM message_threads WHERE created_ms < $1").bind(older_than_ms),
        )
        .await
    }

    /// Whether a notification with this deduplication key still waits to
    /// be sent (a resolve waits for its firing message to exist).
    pub async fn is_pending(&self, dedup_key: &str) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS n FROM notifications WHERE dedup_key = $1 AND state = 'pending'",
        )
        .bind(dedup_key)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        Ok(row.try_get::<i64, _>("n").map_err(|e| self.fail(e))? > 0)
    }
}
