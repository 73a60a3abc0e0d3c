//! The recovery audit: one row per decision, written before a run starts
//! (no row, no run) and finished with its result; read by `/actions`, the
//! hourly cap and the maintenance loop.

use serde::Serialize;
use sqlx::{FromRow, Row};

use super::{now_ms, Store, StoreError};
use crate::decision::Decision;

/// One recovery decision, as the audit keeps it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub action: String,
    pub kind: String,
    pub alertname: String,
    pub fingerprint: String,
    /// `running` until the run ends, then its result; or the reason it was skipped.
    pub result: String,
    #[sqlx(try_from = "i64")]
    pub dry_run: IntFlag,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub exit_status: Option<i64>,
    /// The first 4 KiB of the action's output.
    pub output: String,
    pub detail: Option<String>,
}

/// A flag kept as 0/1 in a BIGINT column (SQLite has no boolean, and
/// the `Any` driver decodes no integer as `bool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IntFlag(pub bool);

impl From<i64> for IntFlag {
    fn from(v: i64) -> Self {
        IntFlag(v != 0)
    }
}

impl std::ops::Deref for IntFlag {
    type Target = bool;
    fn deref(&self) -> &bool {
        &self.0
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
        .bind(i64::from(*r.dry_run))
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
