-- Order the shared risk log without a table lock (crate::store::risk_events).
-- Each row records the transaction that appended it; readers take only rows
-- whose transaction is older than every transaction still running (the
-- snapshot's xmin), in (txn, seq) order. Such a prefix never grows from the
-- middle, so appenders no longer serialize on LOCK TABLE and commit together.
-- Rows appended before this migration keep txn 0 and sort first, by seq.
-- Keep in step with ../sqlite/0011_risk_events_order.sql.

ALTER TABLE risk_events ADD COLUMN txn BIGINT NOT NULL DEFAULT 0;
ALTER TABLE risk_events ALTER COLUMN txn SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX risk_events_order ON risk_events (txn, seq);
