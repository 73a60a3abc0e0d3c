//! Recovery's coordination tables: the cooldowns and run locks receiver
//! replicas share through the store when they have no Redis. Each take is
//! one conditional upsert, so two replicas cannot both win.

use super::{Store, StoreError};

impl Store {
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
}
