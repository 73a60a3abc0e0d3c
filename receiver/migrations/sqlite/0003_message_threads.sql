-- Where a message went out, so that a later message about the same alert
-- (its resolve, a recovery outcome) can update it or reply in its thread:
-- Slack's channel id and ts, or an email's Message-ID. In the store, so
-- that any replica, also after a restart, finds it.
CREATE TABLE IF NOT EXISTS message_threads (thread_key TEXT PRIMARY KEY, target TEXT NOT NULL,
    message_ref TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS message_threads_by_age ON message_threads (created_ms);
