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
    writer: tokio::sync::mpsc::Sender<InsertJob>,
}

/// One request's rows, waiting for the group commit that stores them.
struct InsertJob {
    rows: Vec<NewNotification>,
    done: tokio::sync::oneshot::Sender<Result<usize, StoreError>>,
}

/// Most requests a group commit takes at once.
const MAX_GROUP: usize = 512;

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
        let audit_ddl = format!(
            "CREATE TABLE IF NOT EXISTS recovery_audit ({id}, action TEXT NOT NULL, kind TEXT NOT NULL, \
             alertname TEXT NOT NULL, fingerprint TEXT NOT NULL, result TEXT NOT NULL, dry_run BIGINT NOT NULL, \
             started_ms BIGINT NOT NULL, finished_ms BIGINT, exit_status BIGINT, output TEXT NOT NULL, detail TEXT)"
        );
        for stmt in [
            ddl.as_str(),
            "CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, channel, next_attempt_ms)",
            "CREATE TABLE IF NOT EXISTS receiver_heartbeat (k TEXT PRIMARY KEY, at_ms BIGINT NOT NULL)",
            audit_ddl.as_str(),
            "CREATE INDEX IF NOT EXISTS recovery_audit_by_action ON recovery_audit (action, started_ms)",
            "CREATE TABLE IF NOT EXISTS recovery_cooldown (k TEXT PRIMARY KEY, until_ms BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS recovery_lock (k TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)",
        ] {
            pool.execute(stmt)
                .await
                .map_err(|e| StoreError::Open(e.to_string()))?;
        }
        let (writer, jobs) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(group_commit(pool.clone(), jobs, sqlite));
        Ok(Store { pool, writer })
    }

    /// Stores new notifications durably; returns how many were new (the
    /// rest were duplicates). Concurrent requests share one transaction
    /// (group commit): SQLite has one writer, and one commit per request
    /// would make it the bottleneck.
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
            .map_err(|_| StoreError::Query("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Query("the store writer has stopped".into()))?
    }
}

async fn group_commit(
    pool: AnyPool,
    mut jobs: tokio::sync::mpsc::Receiver<InsertJob>,
    sqlite: bool,
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
                for (job, n) in batch.into_iter().zip(counts) {
                    let _ = job.done.send(Ok(n));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for job in batch {
                    let _ = job.done.send(Err(StoreError::Query(text.clone())));
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

/// One transaction for every job, few multi-row statements; per job, how
/// many rows were new (`RETURNING` names them; the rest were duplicates).
async fn insert_batch(
    pool: &AnyPool,
    batch: &[InsertJob],
    sqlite: bool,
) -> Result<Vec<usize>, StoreError> {
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
    let mut tx = pool.begin().await.map_err(query_error)?;
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
        for row in q.fetch_all(&mut *tx).await.map_err(query_error)? {
            let key: String = row.try_get(0).map_err(query_error)?;
            // A key twice in one batch (two requests, same alert) counts once.
            if let Some(job) = owner.remove(key.as_str()) {
                counts[job] += 1;
            }
        }
    }
    tx.commit().await.map_err(query_error)?;
    Ok(counts)
}

impl Store {
    /// Runs one statement; how many rows it touched.
    async fn execute<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<u64, StoreError> {
        Ok(q.execute(&self.pool)
            .await
            .map_err(query_error)?
            .rows_affected())
    }

    /// Pending notifications of one channel that are due now, oldest
    /// first (the index on (state, channel, next_attempt_ms) serves it).
    pub async fn due(
        &self,
        now: i64,
        limit: i64,
        channel: &str,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE state = 'pending' AND channel = $1 AND next_attempt_ms <= $2 \
             ORDER BY next_attempt_ms, id LIMIT $3"
        ))
        .bind(channel)
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

    /// A write that proves the store is writable, for /health.
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        self.execute(sqlx::query("INSERT INTO receiver_heartbeat (k, at_ms) VALUES ('health', $1) ON CONFLICT (k) DO UPDATE SET at_ms = $1")
            .bind(now_ms())).await?;
        Ok(())
    }
}

/// One recovery decision, as the audit keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub action: String,
    pub kind: String,
    pub alertname: String,
    pub fingerprint: String,
    /// `running` until the run ends, then its result; or the reason it was skipped.
    pub result: String,
    pub dry_run: bool,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub exit_status: Option<i64>,
    /// The first 4 KiB of the action's output.
    pub output: String,
    pub detail: Option<String>,
}

impl AuditRecord {
    fn from_row(r: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(AuditRecord {
            id: r.try_get("id")?,
            action: r.try_get("action")?,
            kind: r.try_get("kind")?,
            alertname: r.try_get("alertname")?,
            fingerprint: r.try_get("fingerprint")?,
            result: r.try_get("result")?,
            dry_run: r.try_get::<i64, _>("dry_run")? != 0,
            started_ms: r.try_get("started_ms")?,
            finished_ms: r.try_get("finished_ms")?,
            exit_status: r.try_get("exit_status")?,
            output: r.try_get("output")?,
            detail: r.try_get("detail")?,
        })
    }
}

/// Results that mean the action ran (or, in a dry run, would have): what
/// the hourly cap counts.
const RAN: &str =
    "('running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'dry_run', 'abandoned')";

impl Store {
    /// Records a decision; returns its id.
    pub async fn audit_insert(&self, r: &AuditRecord) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO recovery_audit (action, kind, alertname, fingerprint, result, dry_run, started_ms, finished_ms, exit_status, output, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(&r.action)
        .bind(&r.kind)
        .bind(&r.alertname)
        .bind(&r.fingerprint)
        .bind(&r.result)
        .bind(r.dry_run as i64)
        .bind(r.started_ms)
        .bind(r.finished_ms)
        .bind(r.exit_status)
        .bind(&r.output)
        .bind(&r.detail)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error)?;
        row.try_get::<i64, _>(0).map_err(query_error)
    }

    /// Records how a run ended.
    pub async fn audit_finish(&self, r: &AuditRecord) -> Result<(), StoreError> {
        self.execute(sqlx::query(
            "UPDATE recovery_audit SET result = $1, finished_ms = $2, exit_status = $3, output = $4, detail = $5 WHERE id = $6",
        )
        .bind(&r.result)
        .bind(r.finished_ms)
        .bind(r.exit_status)
        .bind(&r.output)
        .bind(&r.detail)
        .bind(r.id)).await?;
        Ok(())
    }

    /// The latest decisions, newest first, of one action or all.
    pub async fn audit_list(
        &self,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let cols = "id, action, kind, alertname, fingerprint, result, dry_run, started_ms, finished_ms, exit_status, output, detail";
        let by_action = format!(
            "SELECT {cols} FROM recovery_audit WHERE action = $1 ORDER BY id DESC LIMIT $2"
        );
        let all = format!("SELECT {cols} FROM recovery_audit ORDER BY id DESC LIMIT $1");
        let q = match action {
            Some(a) => sqlx::query(&by_action).bind(a.to_string()).bind(limit),
            None => sqlx::query(&all).bind(limit),
        };
        let rows = q.fetch_all(&self.pool).await.map_err(query_error)?;
        rows.iter()
            .map(AuditRecord::from_row)
            .collect::<Result<_, _>>()
            .map_err(query_error)
    }

    /// Runs (or dry runs) of an action that started since `since_ms`.
    pub async fn audit_runs_since(
        &self,
        action: &str,
        dry_run: bool,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT count(*) AS n FROM recovery_audit WHERE action = $1 AND dry_run = $2 AND started_ms > $3 AND result IN {RAN}"
        ))
        .bind(action)
        .bind(dry_run as i64)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(query_error)?;
        row.try_get::<i64, _>("n").map_err(query_error)
    }

    /// Takes the cooldown `key` until `until_ms` unless it is still held
    /// at `now_ms`; one conditional upsert, so replicas sharing the store
    /// cannot both take it.
    pub async fn take_cooldown(
        &self,
        key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = self.execute(sqlx::query(
            "INSERT INTO recovery_cooldown (k, until_ms) VALUES ($1, $2) \
             ON CONFLICT (k) DO UPDATE SET until_ms = excluded.until_ms WHERE recovery_cooldown.until_ms <= $3",
        )
        .bind(key)
        .bind(until_ms)
        .bind(now_ms)).await?;
        Ok(done == 1)
    }

    /// Takes the lock `key` for `holder` until `until_ms` unless another
    /// holder has it at `now_ms` (an expired lock is taken over).
    pub async fn take_lock(
        &self,
        key: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = self
            .execute(
                sqlx::query(
                    "INSERT INTO recovery_lock (k, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (k) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE recovery_lock.until_ms <= $4",
                )
                .bind(key)
                .bind(holder)
                .bind(until_ms)
                .bind(now_ms),
            )
            .await?;
        Ok(done == 1)
    }

    /// Releases the lock if `holder` still has it.
    pub async fn release_lock(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("DELETE FROM recovery_lock WHERE k = $1 AND holder = $2")
                .bind(key)
                .bind(holder),
        )
        .await?;
        Ok(())
    }

    /// Closes `running` records of `action` that started before
    /// `before_ms` as `abandoned`; how many.
    pub async fn audit_abandon(&self, action: &str, before_ms: i64) -> Result<u64, StoreError> {
        self.execute(
            sqlx::query(
                "UPDATE recovery_audit SET result = 'abandoned', finished_ms = $1, \
                 detail = 'the receiver stopped during the run' \
                 WHERE action = $2 AND result = 'running' AND started_ms < $3",
            )
            .bind(now_ms())
            .bind(action)
            .bind(before_ms),
        )
        .await
    }

    /// Forgets audit records older than the cutoff.
    pub async fn purge_audit(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let done = self
            .execute(
                sqlx::query("DELETE FROM recovery_audit WHERE started_ms < $1").bind(older_than_ms),
            )
            .await?;
        Ok(done)
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
