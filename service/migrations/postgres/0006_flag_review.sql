-- Analysts' review of flags: the latest note, when and by whom. The full
-- history of reviews is in the audit log. Keep in step with
-- ../sqlite/0006_flag_review.sql.

ALTER TABLE flags ADD COLUMN note TEXT NOT NULL DEFAULT '';
ALTER TABLE flags ADD COLUMN updated_at_ms BIGINT;
ALTER TABLE flags ADD COLUMN updated_by TEXT NOT NULL DEFAULT '';
