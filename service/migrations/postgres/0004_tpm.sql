-- TPM 2.0 devices: an optional inventory pin on the endorsement key, the
-- credential-activation ceremonies, and per-credential TPM state (the AK
-- public area verified at activation and the last quote's clock reading).
-- Keep in step with ../sqlite/0004_tpm.sql.

-- Hex SHA-256 of the EK's SubjectPublicKeyInfo; NULL when not pinned.
ALTER TABLE devices ADD COLUMN ek_pin TEXT;

CREATE TABLE tpm_enrollments (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    token_id TEXT NOT NULL REFERENCES enrollment_tokens (id),
    -- base64url of the AK name: the credential id once activated.
    credential_id TEXT NOT NULL,
    ak_public BYTEA NOT NULL,
    ek_pin TEXT NOT NULL,
    -- SHA-256 of the activation secret; the secret itself is never stored.
    secret_hash BYTEA NOT NULL,
    attested BIGINT NOT NULL,
    attestation_reason TEXT NOT NULL,
    trust_anchor TEXT NOT NULL,
    ek_manufacturer TEXT NOT NULL,
    ek_model TEXT NOT NULL,
    ek_firmware TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);

CREATE TABLE tpm_credentials (
    credential_id TEXT PRIMARY KEY REFERENCES credentials (id),
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    -- TPM2B_PUBLIC of the AK, as verified at activation: quotes are checked
    -- against this key only, never one sent with an answer.
    ak_public BYTEA NOT NULL,
    ek_pin TEXT NOT NULL,
    ek_manufacturer TEXT NOT NULL,
    ek_model TEXT NOT NULL,
    ek_firmware TEXT NOT NULL,
    -- The last accepted quote's TPMS_CLOCK_INFO and firmware version (16 hex
    -- digits); NULL before the first quote.
    clock BIGINT,
    reset_count BIGINT,
    restart_count BIGINT,
    firmware_version TEXT,
    quoted_at_ms BIGINT
);
