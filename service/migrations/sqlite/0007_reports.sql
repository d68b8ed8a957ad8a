-- Indexes for the security-team reports (ReportService, tetherd::reports):
-- per-device and per-worker newest-first listings keyed on (at_ms, id) for
-- stable keyset paging, flag counts by kind, and flag reviews found through
-- the audit log by their target. Identical on SQLite and PostgreSQL; keep in
-- step with the other backend's 0007_reports.sql.

CREATE INDEX flags_tenant_device_at ON flags (tenant_id, device_id, raised_at_ms, id);
CREATE INDEX flags_tenant_worker_at ON flags (tenant_id, worker_external_id, raised_at_ms, id);
CREATE INDEX flags_tenant_kind_at ON flags (tenant_id, kind, raised_at_ms);
CREATE INDEX presence_events_tenant_device_at ON presence_events (tenant_id, device_id, at_ms, id);
CREATE INDEX presence_events_tenant_worker_at ON presence_events (tenant_id, worker_external_id, at_ms, id);
CREATE INDEX sessions_tenant_device_at ON sessions (tenant_id, device_id, at_ms, id);
CREATE INDEX sessions_tenant_worker_at ON sessions (tenant_id, worker_external_id, at_ms, id);
CREATE INDEX audit_log_tenant_target ON audit_log (tenant_id, target, seq);
