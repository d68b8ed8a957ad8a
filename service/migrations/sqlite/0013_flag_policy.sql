-- Tenants: which open flags deny access (service/src/flag_policy.rs), as
-- JSON {"deny_at": "high", "kinds": {"relocated": "report_only"}}. The empty
-- string is the default policy (deny on high severity, report the rest), so
-- every tenant created before this migration keeps the behaviour it had.
-- Keep in step with ../postgres/0013_flag_policy.sql.

ALTER TABLE tenants ADD COLUMN flag_policy TEXT NOT NULL DEFAULT '';

-- The office egresses the tenant's admin registered (comma-separated CIDRs):
-- its own devices there never count towards shared_egress.
ALTER TABLE tenants ADD COLUMN office_egress TEXT NOT NULL DEFAULT '';
