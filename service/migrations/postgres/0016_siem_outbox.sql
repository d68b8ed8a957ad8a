-- Flags and presence failures for SIEMs (docs/siem.md): an append-only outbox
-- written in the transaction that records the flag or the failure, and the
-- tenants' integrations that read it, each from its own cursor.
-- Keep in step with ../sqlite/0020_siem_outbox.sql.

CREATE TABLE outbox (
    -- Read in (txn, seq) order up to the oldest running transaction, as
    -- risk_events is (crate::store::risk_events): identities are not commit order.
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txn BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    tenant_id TEXT NOT NULL,
    -- flag.raised, flag.reviewed, presence.failure.
    kind TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    payload_json TEXT NOT NULL
);
CREATE INDEX outbox_tenant_order ON outbox (tenant_id, txn, seq);

CREATE TABLE integrations (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- webhook or syslog.
    kind TEXT NOT NULL,
    -- A URL (webhook) or host:port (syslog).
    target TEXT NOT NULL,
    -- json or cef.
    format TEXT NOT NULL,
    -- syslog only: wrap the TCP stream in TLS.
    tls BIGINT NOT NULL DEFAULT 0,
    -- The webhook's HMAC key (hex); shown once, at creation.
    secret TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    -- The last outbox position delivered.
    cursor_txn BIGINT NOT NULL,
    cursor_seq BIGINT NOT NULL,
    -- The replica delivering it, until lease_until_ms.
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    -- Consecutive failures and when to try again (the backoff survives restarts).
    failures BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    last_delivered_at_ms BIGINT NOT NULL DEFAULT 0,
    delivered BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX integrations_tenant ON integrations (tenant_id, id);
