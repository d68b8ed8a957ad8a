-- Detection inputs that become live: the posture report signed with a
-- presence answer, and the homes and working hours administrators declare
-- for workers. Keep in step with ../sqlite/0008_detection_live.sql.

-- One row per successful presence answer that carried a posture report.
CREATE TABLE presence_postures (
    event_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    device_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    -- Lowercase hex SHA-256 of posture_json: what the device's key signed over.
    posture_sha256 TEXT NOT NULL,
    -- The report exactly as received (at most 64 KiB).
    posture_json TEXT NOT NULL
);
CREATE INDEX presence_postures_at ON presence_postures (at_ms);

-- A declared home (both coordinates or neither) and working hours
-- ('Mon-Fri 09:00-17:00' in an IANA zone or a fixed '+HH:MM' offset).
ALTER TABLE workers ADD COLUMN home_lat DOUBLE PRECISION;
ALTER TABLE workers ADD COLUMN home_lon DOUBLE PRECISION;
ALTER TABLE workers ADD COLUMN home_country TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN working_hours TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN working_timezone TEXT NOT NULL DEFAULT '';
