-- The scheduler finds credentials due a challenge by an index search instead of walking every
-- credential with a lookup into challenges on each tick (1.7 s a tick at 1M credentials).
-- Kept by every challenge insert (store::presence::insert_challenge_query's callers).
-- Keep in step with ../postgres/0017_credentials_last_challenged.sql.

ALTER TABLE credentials ADD COLUMN last_challenged_at_ms BIGINT NOT NULL DEFAULT 0;

UPDATE credentials SET last_challenged_at_ms = COALESCE(
    (SELECT MAX(ch.issued_at_ms) FROM challenges ch WHERE ch.credential_id = credentials.id), 0);

CREATE INDEX credentials_tenant_challenged ON credentials (tenant_id, last_challenged_at_ms)
    WHERE revoked_at_ms IS NULL;
