//! The outbox: one row per (alert, channel) notification. A unique
//! deduplication key makes a repeated post (an Alertmanager retry, or both
//! members of an HA pair) a no-op, and claiming a row before sending keeps
//! replicas from sending it twice.
//!
//! Inserts go through one group commit: concurrent requests share one
//! transaction (SQLite has one writer, and one commit per request would
//! make it the bottleneck), and each request is answered only after the
//! COMMIT holding its rows returned; any error fails every request of the
//! batch.
//!
//! Why a failed transaction's connection is closed: sqlx 0.8 counts a
//! connection's transaction depth and lowers it only when its COMMIT or
//! ROLLBACK succeeds. When a COMMIT failed with SQLITE_FULL, SQLite had
//! already rolled the transaction back itself, so the ROLLBACK that sqlx
//! queued failed ("no transaction is active") and the count stayed at 1.
//! The next `begin()` on that pooled connection then said `SAVEPOINT`
//! (opening a real transaction), the next failed COMMIT (`RELEASE`) was
//! followed by `ROLLBACK TO`, which keeps the transaction open, and from
//! then on every "commit" was a `RELEASE SAVEPOINT` inside a transaction
//! that never committed: posts were answered 200 for rows that vanished on
//! restart, and that connection held SQLite's write lock, so every other
//! statement failed with "database is locked" until a restart. Here the
//! transaction is ours (`BEGIN IMMEDIATE`/`COMMIT` on a connection taken
//! for it), and a connection that saw an error is rolled back and closed.

use serde::Serialize;
use sqlx::pool::PoolConnection;
use sqlx::FromRow;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row};

use super::{now_ms, Store, StoreError, StoreHealth};
use std::sync::Arc;

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
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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

/// One request's rows, waiting for the group commit that stores them.
pub(super) struct InsertJob {
    rows: Vec<NewNotification>,
    done: tokio::sync::oneshot::Sender<Result<usize, StoreError>>,
}

/// Most requests a group commit takes at once.
const MAX_GROUP: usize = 512;

/// See [`Store::pending_by_channel`].
const PENDING_BY_CHANNEL: &str = "SELECT g.channel, g.n, n.created_ms AS oldest FROM \
     (SELECT channel, count(*) AS n, min(id) AS first FROM notifications \
      WHERE state = 'pending' GROUP BY channel) g \
     JOIN notifications n ON n.id = g.first";

const COLUMNS: &str = "id, channel, severity, status, alertname, payload, state, attempts, next_attempt_ms, created_ms, last_error, sent_ms";

impl Store {
    /// Stores new notifications durably; returns how many were new (the
    /// rest were duplicates). Returns only once the COMMIT holding them
    /// succeeded.
    pub async fn insert(&self, rows: &[NewNotification]) -> Result<usize, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(InsertJob {
                rows: rows.to_vec(),
                done,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

pub(super) async fn group_commit(
    pool: AnyPool,
    mut jobs: tokio::sync::mpsc::Receiver<InsertJob>,
    sqlite: bool,
    health: Arc<StoreHealth>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match insert_batch(&pool, &batch, sqlite).await {
            Ok(counts) => {
                health.wrote(Ok(()));
                for (job, n) in batch.into_iter().zip(counts) {
                    let _ = job.done.send(Ok(n));
                }
            }
            Err(source) => {
                let error = health.error(source);
                health.wrote(Err(&error));
                let kind = error.kind();
                let mut first = Some(error);
                for job in batch {
                    // Every request of the batch fails: none of its rows is
                    // stored. The first gets the error, the rest its kind.
                    let e = first.take().unwrap_or(StoreError::BatchFailed { kind });
                    let _ = job.done.send(Err(e));
                }
            }
        }
    }
}

/// Rows per INSERT statement (8 parameters each). Moderate on purpose:
/// sqlx binds SQLite's `$N` parameters by looking each name up, which
/// costs the square of the parameter count per statement (1,000 rows made
/// that a quarter of the receiver's CPU); SQLite gets plain `?` instead.
const ROWS_PER_STATEMENT: usize = 64;

/// The batch in one transaction on a connection of its own; a connection
/// that failed is closed, never pooled again (see the module's doc).
async fn insert_batch(
    pool: &AnyPool,
    batch: &[InsertJob],
    sqlite: bool,
) -> Result<Vec<usize>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    match insert_in_transaction(&mut conn, batch, sqlite).await {
        Ok(counts) => Ok(counts),
        Err(e) => {
            discard(conn).await;
            Err(e)
        }
    }
}

/// Rolls back whatever may be open and closes the connection, so that no
/// transaction (nor SQLite's write lock) outlives an error.
async fn discard(conn: PoolConnection<Any>) {
    let mut conn = conn.detach();
    // Fails harmlessly when the database already rolled back.
    let _ = conn.execute("ROLLBACK").await;
    if tokio::time::timeout(super::WAIT, conn.close())
        .await
        .is_err()
    {
        tracing::warn!("closing a failed store connection timed out");
    }
}

/// One transaction for every job, few multi-row statements; per job, how
/// many rows were new (`RETURNING` names them; the rest were duplicates).
async fn insert_in_transaction(
    conn: &mut AnyConnection,
    batch: &[InsertJob],
    sqlite: bool,
) -> Result<Vec<usize>, sqlx::Error> {
    let now = now_ms();
    let rows: Vec<(usize, &NewNotification)> = batch
        .iter()
        .enumerate()
        .flat_map(|(job, j)| j.rows.iter().map(move |r| (job, r)))
        .collect();
    let mut counts = vec![0; batch.len()];
    let mut owner: std::collections::HashMap<&str, usize> = rows
        .iter()
        .map(|(job, r)| (r.dedup_key.as_str(), *job))
        .collect();
    // IMMEDIATE: take SQLite's write lock now (waiting up to busy_timeout)
    // rather than at the first write.
    conn.execute(if sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" })
        .await?;
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO notifications (dedup_key, channel, severity, status, alertname, payload, state, attempts, next_attempt_ms, created_ms) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            if sqlite {
                // Plain positional `?`: sqlx binds them without looking
                // each parameter's name up.
                sql.push_str("(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)");
            } else {
                let b = i * 8;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, 'pending', 0, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                ));
            }
        }
        sql.push_str(" ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key");
        let mut q = sqlx::query(&sql);
        for (_, r) in chunk {
            q = q
                .bind(&r.dedup_key)
                .bind(&r.channel)
                .bind(&r.severity)
                .bind(&r.status)
                .bind(&r.alertname)
                .bind(&r.payload)
                .bind(now)
                .bind(now);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let key: String = row.try_get(0)?;
            // A key twice in one batch (two requests, same alert) counts once.
            if let Some(job) = owner.remove(key.as_str()) {
                counts[job] += 1;
            }
        }
    }
    conn.execute("COMMIT").await?;
    Ok(counts)
}

impl Store {
    /// Pending notifications of one channel that are due now: critical
    /// before warning before the rest, then oldest first. A resolve waits
    /// while its firing message is still pending (in a retry's backoff, or
    /// not yet reached), so that it never arrives first.
    pub async fn due(
        &self,
        now: i64,
        limit: i64,
        channel: &str,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications n WHERE state = 'pending' AND channel = $1 AND next_attempt_ms <= $2 \
             AND NOT (status = 'resolved' AND EXISTS (SELECT 1 FROM notifications f WHERE f.state = 'pending' \
               AND f.id <> n.id AND f.dedup_key = replace(n.dedup_key, '|resolved|', '|firing|'))) \
             ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, next_attempt_ms, id LIMIT $3"
        ))
        .bind(channel)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(Notification::from_row)
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(e))
    }

    /// Takes a row for sending until `lease_until`; false when another
    /// worker (or replica) already took it.
    pub async fn claim(&self, n: &Notification, lease_until: i64) -> Result<bool, StoreError> {
        let done = self.execute(sqlx::query(
            "UPDATE notifications SET next_attempt_ms = $1 WHERE id = $2 AND state = 'pending' AND next_attempt_ms = $3",
        )
        .bind(lease_until)
        .bind(n.id)
        .bind(n.next_attempt_ms)).await?;
        Ok(done == 1)
    }

    pub async fn mark_sent(&self, id: i64, attempts: i64) -> Result<(), StoreError> {
        self.execute(sqlx::query("UPDATE notifications SET state = 'sent', sent_ms = $1, attempts = $2, last_error = NULL WHERE id = $3")
            .bind(now_ms())
            .bind(attempts)
            .bind(id)).await?;
        Ok(())
    }

    pub async fn mark_retry(
        &self,
        id: i64,
        attempts: i64,
        next_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.execute(sqlx::query("UPDATE notifications SET attempts = $1, next_attempt_ms = $2, last_error = $3 WHERE id = $4")
            .bind(attempts)
            .bind(next_ms)
            .bind(error)
            .bind(id)).await?;
        Ok(())
    }

    pub async fn mark_dead(&self, id: i64, attempts: i64, error: &str) -> Result<(), StoreError> {
        self.execute(sqlx::query(
            "UPDATE notifications SET state = 'dead', attempts = $1, last_error = $2 WHERE id = $3",
        )
        .bind(attempts)
        .bind(error)
        .bind(id)).await?;
        Ok(())
    }

    /// Per channel: pending notifications and the oldest one's creation
    /// time (ms).
    ///
    /// The oldest is the first inserted (lowest id), whose row is then read
    /// once: counting and finding it read only the `notifications_due`
    /// index (state, channel and the id it carries), where
    /// `min(created_ms)` read every pending row of the table, once a
    /// second, through an outage's whole backlog: 300,000 pending rows of
    /// 1 KiB took 950 ms a second of the store's CPU that way, 70 ms now.
    pub async fn pending_by_channel(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(PENDING_BY_CHANNEL)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("channel")?,
                    r.try_get::<i64, _>("n")?,
                    r.try_get::<i64, _>("oldest")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.fail(e))
    }

    pub async fn count(&self, state: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT count(*) AS n FROM notifications WHERE state = $1")
            .bind(state)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.fail(e))?;
        row.try_get::<i64, _>("n").map_err(|e| self.fail(e))
    }

    pub async fn list(&self, state: &str, limit: i64) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE state = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(state)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        rows.iter()
            .map(Notification::from_row)
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(e))
    }

    /// Forgets sent and dead rows (and so their dedup keys) older than the window.
    pub async fn purge(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let done = self
            .execute(
                sqlx::query(
                    "DELETE FROM notifications WHERE state <> 'pending' AND created_ms < $1",
                )
                .bind(older_than_ms),
            )
            .await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, channel: &str) -> NewNotification {
        NewNotification {
            dedup_key: key.into(),
            channel: channel.into(),
            severity: "warning".into(),
            status: "firing".into(),
            alertname: "A".into(),
            payload: "{}".into(),
        }
    }

    async fn pending_sorted(store: &Store) -> Vec<(String, i64, i64)> {
        let mut pending = store.pending_by_channel().await.unwrap();
        pending.sort();
        pending
    }

    /// The gauges' query: per channel the pending count and the creation
    /// time of the oldest row still pending, not of one already sent.
    #[tokio::test]
    async fn pending_by_channel_counts_and_dates_the_oldest_still_pending() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("outbox.db").display());
        let store = Store::open(&url, Default::default()).await.unwrap();
        store
            .insert(&[row("1", "slack"), row("2", "webhook")])
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        store
            .insert(&[row("3", "slack"), row("4", "slack")])
            .await
            .unwrap();
        let all = store.list("pending", 10).await.unwrap();
        let first = all.iter().find(|n| n.id == 1).unwrap();
        let later = all.iter().find(|n| n.id == 3).unwrap();
        assert!(later.created_ms > first.created_ms);
        assert_eq!(
            pending_sorted(&store).await,
            vec![
                ("slack".to_string(), 3, first.created_ms),
                ("webhook".to_string(), 1, first.created_ms),
            ]
        );
        // Counting reads the index alone; the table only for each
        // channel's oldest row.
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {PENDING_BY_CHANNEL}"))
            .fetch_all(&store.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect();
        assert!(
            plan.iter()
                .any(|p| p.contains("USING COVERING INDEX notifications_due")),
            "{plan:?}"
        );
        assert!(
            plan.iter().all(|p| !p.contains("SCAN n")
                && (!p.contains("notifications") || p.contains("COVERING"))),
            "{plan:?}"
        );
        store.mark_sent(1, 1).await.unwrap();
        assert_eq!(
            pending_sorted(&store).await,
            vec![
                ("slack".to_string(), 2, later.created_ms),
                ("webhook".to_string(), 1, first.created_ms),
            ]
        );
    }
}
