-- The risk engine's input, shared by every replica: each event one replica
-- evaluates (enrollment, presence answer or miss with its posture, access
-- check) is appended here, and every replica replays the rows after its
-- cursor in `seq` order, so all engines hold the same windows.
-- Keep in step with ../sqlite/0009_risk_events.sql.

CREATE TABLE risk_events (
    -- Commit order: appenders lock the table (SHARE ROW EXCLUSIVE) before
    -- taking a value and hold it to commit, so a higher seq is never visible
    -- before a lower one (plain sequences commit out of order).
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    -- Who a flag raised by this event is attributed to (empty when none).
    credential_id TEXT NOT NULL DEFAULT '',
    session_id TEXT NOT NULL DEFAULT '',
    at_ms BIGINT NOT NULL,
    -- The event in `tether analyze`'s JSON Lines form.
    event_json TEXT NOT NULL,
    -- The worker's declared home and hours as read when the event happened
    -- (empty when the worker has no record), applied before the event.
    declared_json TEXT NOT NULL DEFAULT ''
);
CREATE INDEX risk_events_at ON risk_events (at_ms);

-- Probe rounds claimed by the replica that issues them: every replica's
-- engine asks for the same round, one issues it.
CREATE TABLE risk_probes (
    egress TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    claimed_at_ms BIGINT NOT NULL,
    PRIMARY KEY (egress, at_ms)
);

-- Engine flags carry the finding's key (severity and cooldown window) so
-- that two replicas raising the same finding store it once. NULL for flags
-- raised outside the engine, which are never deduplicated.
ALTER TABLE flags ADD COLUMN dedupe_key TEXT;
CREATE UNIQUE INDEX flags_dedupe ON flags (tenant_id, kind, device_id, dedupe_key);
