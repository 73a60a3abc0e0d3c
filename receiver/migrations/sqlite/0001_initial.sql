-- The schema as llmchat-receiver 0.1 created it by hand in Store::open.
-- IF NOT EXISTS: a store written before migrations existed already has
-- these tables (and its rows); this migration adopts them as they are.
CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL, severity TEXT NOT NULL, status TEXT NOT NULL, alertname TEXT NOT NULL,
    payload TEXT NOT NULL, state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL, last_error TEXT, sent_ms BIGINT);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, channel, next_attempt_ms);

CREATE TABLE IF NOT EXISTS recovery_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL, kind TEXT NOT NULL,
    alertname TEXT NOT NULL, fingerprint TEXT NOT NULL, result TEXT NOT NULL, dry_run BIGINT NOT NULL,
    started_ms BIGINT NOT NULL, finished_ms BIGINT, exit_status BIGINT, output TEXT NOT NULL, detail TEXT);
CREATE INDEX IF NOT EXISTS recovery_audit_by_action ON recovery_audit (action, started_ms);
CREATE TABLE IF NOT EXISTS recovery_cooldown (k TEXT PRIMARY KEY, until_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS recovery_lock (k TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL);

-- The accept path's writability probe (see src/store/health.rs).
CREATE TABLE IF NOT EXISTS receiver_probe (k TEXT PRIMARY KEY, at_ms BIGINT NOT NULL, pad TEXT NOT NULL);
