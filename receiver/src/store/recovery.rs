//! Recovery's tables: the audit of every decision, and the cooldowns and
//! run locks replicas share when they have no Redis.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};
use crate::recovery::decision::Decision;

pub(super) fn ddl(sqlite: bool) -> Vec<String> {
    let id = if sqlite {
        "id INTEGER PRIMARY KEY AUTOINCREMENT"
    } else {
        "id BIGSERIAL PRIMARY KEY"
    };
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS recovery_audit ({id}, action TEXT NOT NULL, kind TEXT NOT NULL, \
             alertname TEXT NOT NULL, fingerprint TEXT NOT NULL, result TEXT NOT NULL, dry_run BIGINT NOT NULL, \
             started_ms BIGINT NOT NULL, finished_ms BIGINT, exit_status BIGINT, output TEXT NOT NULL, detail TEXT)"
        ),
        "CREATE INDEX IF NOT EXISTS recovery_audit_by_action ON recovery_audit (action, started_ms)".into(),
        "CREATE TABLE IF NOT EXISTS recovery_cooldown (k TEXT PRIMARY KEY, until_ms BIGINT NOT NULL)".into(),
        "CREATE TABLE IF NOT EXISTS recovery_lock (k TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)".into(),
    ]
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
        .map_err(|e| self.fail(e))?;
        row.try_get::<i64, _>(0).map_err(|e| self.fail(e))
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
        let rows = q.fetch_all(&self.pool).await.map_err(|e| self.fail(e))?;
        rows.iter()
            .map(AuditRecord::from_row)
            .collect::<Result<_, _>>()
            .map_err(|e| self.fail(e))
    }

    /// Runs (or dry runs) of an action that started since `since_ms`.
    pub async fn audit_runs_since(
        &self,
        action: &str,
        dry_run: bool,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT count(*) AS n FROM recovery_audit WHERE action = $1 AND dry_run = $2 AND started_ms > $3 AND result IN {}",
            Decision::sql_list(&Decision::RAN)
        ))
        .bind(action)
        .bind(dry_run as i64)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        row.try_get::<i64, _>("n").map_err(|e| self.fail(e))
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
                "UPDATE recovery_audit SET result = $4, finished_ms = $1, \
                 detail = 'the receiver stopped during the run' \
                 WHERE action = $2 AND result = $5 AND started_ms < $3",
            )
            .bind(now_ms())
            .bind(action)
            .bind(before_ms)
            .bind(Decision::Abandoned.as_str())
            .bind(Decision::Running.as_str()),
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
