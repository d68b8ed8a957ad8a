-- Tether foundation schema. Times are Unix epoch milliseconds; a NULL time
-- means "not yet" (not used, not revoked, ...). Keep in step with
-- ../postgres/0001_foundation.sql (only the binary column type differs).

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    rp_id TEXT NOT NULL,
    origin TEXT NOT NULL,
    allow_unattested BIGINT NOT NULL DEFAULT 0,
    allowed_aaguids TEXT NOT NULL DEFAULT '',
    presence_interval_s BIGINT NOT NULL DEFAULT 3600,
    challenge_deadline_s BIGINT NOT NULL DEFAULT 300,
    presence_window_s BIGINT NOT NULL DEFAULT 7200
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE workers (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    external_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, external_id)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    serial_number TEXT NOT NULL,
    model TEXT NOT NULL,
    asset_tag TEXT NOT NULL DEFAULT '',
    worker_external_id TEXT,
    registered_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    revoke_reason TEXT,
    UNIQUE (tenant_id, serial_number)
);
CREATE INDEX devices_tenant_worker ON devices (tenant_id, worker_external_id);

CREATE TABLE enrollment_tokens (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    worker_external_id TEXT NOT NULL,
    secret_hash BLOB NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX enrollment_tokens_device ON enrollment_tokens (tenant_id, device_id);

CREATE TABLE enrollment_sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    token_id TEXT NOT NULL REFERENCES enrollment_tokens (id),
    challenge BLOB NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    worker_external_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    public_key_cose BLOB NOT NULL,
    format TEXT NOT NULL,
    attestation_type TEXT NOT NULL,
    attested BIGINT NOT NULL,
    attestation_reason TEXT NOT NULL,
    trust_anchor TEXT NOT NULL,
    aaguid TEXT NOT NULL,
    sign_count BIGINT NOT NULL,
    enrolled_at_ms BIGINT NOT NULL,
    enrolled_from_ip TEXT NOT NULL,
    revoked_at_ms BIGINT,
    revoke_reason TEXT,
    last_presence_at_ms BIGINT
);
CREATE INDEX credentials_device ON credentials (tenant_id, device_id);

CREATE TABLE challenges (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    credential_id TEXT NOT NULL REFERENCES credentials (id),
    device_id TEXT NOT NULL,
    nonce BLOB NOT NULL UNIQUE,
    reason TEXT NOT NULL,
    issued_at_ms BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    consumed_at_ms BIGINT,
    missed_at_ms BIGINT
);
CREATE INDEX challenges_credential_issued ON challenges (credential_id, issued_at_ms);
CREATE INDEX challenges_open_deadline ON challenges (deadline_ms)
    WHERE consumed_at_ms IS NULL AND missed_at_ms IS NULL;

CREATE TABLE presence_events (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    outcome TEXT NOT NULL,
    device_id TEXT NOT NULL,
    worker_external_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    source_ip TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX presence_events_tenant_at ON presence_events (tenant_id, at_ms, id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    worker_external_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    reasons_json TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX sessions_tenant_at ON sessions (tenant_id, at_ms, id);

CREATE TABLE flags (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    device_id TEXT NOT NULL,
    worker_external_id TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    raised_at_ms BIGINT NOT NULL,
    evidence_json TEXT NOT NULL
);
CREATE INDEX flags_tenant_at ON flags (tenant_id, raised_at_ms, id);
CREATE INDEX flags_device_status ON flags (tenant_id, device_id, status);

CREATE TABLE trust_anchors (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    der BLOB NOT NULL,
    not_before_ms BIGINT NOT NULL,
    not_after_ms BIGINT NOT NULL,
    added_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, sha256)
);
