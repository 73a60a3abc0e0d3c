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

    /// Takes one of the `cap` slots of `key` for `holder` until `until_ms`
    /// (the hourly cap); false when every slot is held at `now_ms`. Each
    /// try is one conditional upsert on one slot, so two replicas never
    /// hold the same slot and never more than `cap` between them.
    pub async fn take_slot(
        &self,
        key: &str,
        cap: u32,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT CAST(slot AS BIGINT) FROM recovery_slot WHERE k = $1 AND until_ms > $2",
        )
        .bind(key)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.fail(e))?;
        for slot in (0..i64::from(cap)).filter(|s| !held.contains(s)) {
            let done = self
                .execute(
                    sqlx::query(
                        "INSERT INTO recovery_slot (k, slot, holder, until_ms) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (k, slot) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                         WHERE recovery_slot.until_ms <= $5",
                    )
                    .bind(key)
                    .bind(slot as i32)
                    .bind(holder)
                    .bind(until_ms)
                    .bind(now_ms),
                )
                .await?;
            if done == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Gives back the slot `holder` took (its run did not happen).
    pub async fn release_slot(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        self.execute(
            sqlx::query("UPDATE recovery_slot SET until_ms = 0 WHERE k = $1 AND holder = $2")
                .bind(key)
                .bind(holder),
        )
        .await?;
        Ok(())
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
