-- The hourly cap of recovery runs as slots: an action with a cap of N
-- runs an hour has N slots, and a run holds one for an hour. Taking a
-- slot is one conditional upsert (free, or held until a time already
-- past), so replicas that share the store cannot take more than N between
-- them, however their decisions interleave (counting the audit's rows
-- and then running could not promise that).
CREATE TABLE IF NOT EXISTS recovery_slot (k TEXT NOT NULL, slot INTEGER NOT NULL,
    holder TEXT NOT NULL, until_ms BIGINT NOT NULL, PRIMARY KEY (k, slot));
