-- SQLite has one writer at a time, so seq order is already commit order; the
-- column exists so that both backends read the log in the same (txn, seq)
-- order (crate::store::risk_events). It stays 0.
-- Keep in step with ../postgres/0011_risk_events_order.sql.

ALTER TABLE risk_events ADD COLUMN txn BIGINT NOT NULL DEFAULT 0;
CREATE INDEX risk_events_order ON risk_events (txn, seq);
