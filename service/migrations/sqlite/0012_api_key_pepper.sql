-- API keys: which pepper made each key's hash, the first 8 hex digits of
-- SHA-256 of the pepper (never the pepper itself). NULL for the unpeppered
-- 'sha256' scheme and for keys hashed before this migration until their next
-- use records it. During a pepper rotation a key verified under a previous
-- pepper is re-hashed under the current one and its id updated, so keys still
-- carrying a previous pepper's id are the ones that depend on it.
-- Keep in step with ../postgres/0012_api_key_pepper.sql.

ALTER TABLE api_keys ADD COLUMN pepper_id TEXT;
