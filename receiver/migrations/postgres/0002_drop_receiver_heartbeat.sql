-- Stores created before the writability probe had a receiver_heartbeat
-- table that nothing reads any more.
DROP TABLE IF EXISTS receiver_heartbeat;
