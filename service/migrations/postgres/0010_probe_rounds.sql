-- Probe rounds: a cross-tenant cluster gets `[probes] rounds` rounds, one
-- every `[probes] interval_secs`. The replica that claims the cluster's probe
-- (risk_probes) schedules them all in the same transaction; any replica's
-- scheduler issues a due round, and the conditional update that marks it
-- issued commits together with its challenges, so each round goes out
-- exactly once, across replicas and restarts.
-- Keep in step with ../sqlite/0010_probe_rounds.sql.

CREATE TABLE risk_probe_rounds (
    -- The engine's probe request (risk_probes' key).
    egress TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    -- 0 for the first round.
    round_no BIGINT NOT NULL,
    due_at_ms BIGINT NOT NULL,
    deadline_secs BIGINT NOT NULL,
    -- The cluster when it was claimed: [[tenant_id, device_id], ...].
    devices_json TEXT NOT NULL,
    -- Set by the replica that issued the round, with the challenges it issued.
    issued_at_ms BIGINT,
    challenges BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (egress, at_ms, round_no)
);
CREATE INDEX risk_probe_rounds_due ON risk_probe_rounds (due_at_ms) WHERE issued_at_ms IS NULL;
