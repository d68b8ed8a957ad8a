-- PCR policy for TPM devices: the expected value of selected PCRs, for every
-- device of a model (scope 'model', target = devices.model) or for one device
-- (scope 'device', target = devices.id). A device's policy replaces its
-- model's. Keep in step with ../sqlite/0005_pcr_policy.sql.

CREATE TABLE pcr_policies (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    -- sha1, sha256, sha384 or sha512.
    bank TEXT NOT NULL,
    pcr_index BIGINT NOT NULL,
    -- Lowercase hex of the expected digest.
    value_hex TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, scope, target, bank, pcr_index)
);
