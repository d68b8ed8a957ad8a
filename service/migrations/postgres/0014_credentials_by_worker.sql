-- Every risk event looks up where the worker's earliest active credential
-- enrolled from (the home that stands in until one is declared).
-- Keep in step with ../sqlite/0014_credentials_by_worker.sql.

CREATE INDEX credentials_worker_enrolled ON credentials (tenant_id, worker_external_id, enrolled_at_ms);
