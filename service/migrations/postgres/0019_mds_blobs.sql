-- FIDO metadata in force, per scope: '' is the operator's --mds-file (global), any other value
-- a tenant id (`tether trust import-mds`). Keeping the highest `no` here is what stops an older
-- BLOB from coming back after a restart or on another replica.
-- Keep in step with the other backend's 0019_mds_blobs.sql.

CREATE TABLE mds_blobs (
    scope TEXT PRIMARY KEY,
    no BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    next_update TEXT NOT NULL,
    entries BIGINT NOT NULL,
    compromised BIGINT NOT NULL,
    uv_bypass BIGINT NOT NULL,
    -- What enrollment needs from the BLOB (domain::enrollment::mds::StoredIndex), not the BLOB.
    index_json TEXT NOT NULL,
    loaded_at_ms BIGINT NOT NULL
);

-- The attestation certificate's key identifier (hex SHA-1 of its public key): FIDO metadata
-- names U2F batch keys by it. Empty for credentials enrolled before, or without a certificate.
ALTER TABLE credentials ADD COLUMN attestation_key_id TEXT NOT NULL DEFAULT '';
