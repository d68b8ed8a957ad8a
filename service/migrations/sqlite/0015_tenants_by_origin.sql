-- The worker web app picks the tenant whose configured origin matches the
-- request's Host on every page and call.
-- Keep in step with ../postgres/0015_tenants_by_origin.sql.

CREATE INDEX tenants_origin ON tenants (origin);
