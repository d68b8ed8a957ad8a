-- API keys: salted, peppered hashes (HMAC-SHA256 keyed by a server-side
-- pepper that never enters the database) and optional expiry. Keys created
-- before this migration keep their plain SHA-256 hash ('sha256' scheme).
-- Keep in step with ../sqlite/0003_api_key_hardening.sql.

ALTER TABLE api_keys ADD COLUMN hash_scheme TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE api_keys ADD COLUMN salt TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at_ms BIGINT;
