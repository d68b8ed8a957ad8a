-- Attestation tiers (issue #16): each credential records what its attestation proved, and each
-- tenant says per tier what such a credential may do, with a monitor mode that records tier
-- denials on the session instead of enforcing them.
-- Keep in step with ../postgres/0018_attestation_tiers.sql.

-- hardware_attested, hardware_unverified or self_or_none. Existing rows: attested stays
-- hardware_attested; an unattested TPM attestation key proved its EK by credential activation
-- (hardware_unverified); every other unattested credential proved nothing (self_or_none).
ALTER TABLE credentials ADD COLUMN tier TEXT NOT NULL DEFAULT 'self_or_none';
UPDATE credentials SET tier = CASE
    WHEN attested <> 0 THEN 'hardware_attested'
    WHEN kind = 'tpm-ak' THEN 'hardware_unverified'
    ELSE 'self_or_none' END;

-- allow, allow_and_flag or deny per tier; enforce or monitor. The backfill keeps each
-- tenant's behaviour: allow_unattested enrolled both kinds with a review flag, or refused both.
ALTER TABLE tenants ADD COLUMN tier_hardware_unverified TEXT NOT NULL DEFAULT 'deny';
ALTER TABLE tenants ADD COLUMN tier_self_or_none TEXT NOT NULL DEFAULT 'deny';
ALTER TABLE tenants ADD COLUMN enforcement TEXT NOT NULL DEFAULT 'enforce';
UPDATE tenants SET tier_hardware_unverified = 'allow_and_flag', tier_self_or_none = 'allow_and_flag'
    WHERE allow_unattested <> 0;

-- JSON array of {"code", "detail"}: the tier denials monitor mode did not enforce.
ALTER TABLE sessions ADD COLUMN would_deny_json TEXT NOT NULL DEFAULT '[]';
