-- Tamper-evident audit log: one hash chain per tenant. Each entry commits to
-- the previous entry's hash; audit_heads holds each chain's latest sequence
-- number and hash, and its row is updated in the same transaction as the
-- append, which serializes concurrent appenders of one tenant (a row lock on
-- PostgreSQL, the write lock on SQLite). Hashes are lower-case hex.
-- Keep in step with ../sqlite/0002_audit_log.sql.

CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE audit_log (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

INSERT INTO audit_heads (tenant_id, seq, hash)
SELECT id, 0, '0000000000000000000000000000000000000000000000000000000000000000' FROM tenants;
