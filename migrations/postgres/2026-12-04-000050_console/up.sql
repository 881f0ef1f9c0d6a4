-- The approval history of a village's month report: one row per action (submit, resubmit,
-- approve, return with its reason, lock), written in the same transaction as the action
-- (src/report/approval.rs). `role` is the actor's role at the time.
CREATE TABLE report_events (
    id TEXT PRIMARY KEY,
    submission_id TEXT NOT NULL REFERENCES report_submissions(id),
    org_unit TEXT COLLATE "C" NOT NULL,
    period TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('submit', 'resubmit', 'approve', 'return', 'lock')),
    status TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    reason TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX report_events_submission ON report_events (submission_id, at);
-- Submissions made before this table: their history starts from the row's own timestamps.
INSERT INTO report_events (id, submission_id, org_unit, period, action, status, user_id, role, reason, at)
    SELECT id || '-s', id, org_unit, period, 'submit', 'submitted', submitted_by, '', NULL, first_submitted_at
    FROM report_submissions;
INSERT INTO report_events (id, submission_id, org_unit, period, action, status, user_id, role, reason, at)
    SELECT id || '-d', id, org_unit, period,
           CASE WHEN status = 'returned' THEN 'return' ELSE 'approve' END,
           CASE WHEN status = 'returned' THEN 'returned' ELSE 'approved' END,
           decided_by, '', comment, decided_at
    FROM report_submissions WHERE decided_at IS NOT NULL AND decided_by IS NOT NULL;
INSERT INTO report_events (id, submission_id, org_unit, period, action, status, user_id, role, reason, at)
    SELECT id || '-l', id, org_unit, period, 'lock', 'locked', locked_by, '', NULL, locked_at
    FROM report_submissions WHERE locked_at IS NOT NULL AND locked_by IS NOT NULL;
-- The merges list pages newest first on (merged_at, id) with the scope in the query.
CREATE INDEX person_merges_time ON person_merges (merged_at, id);
-- A device an admin registered for a field worker waits for its phone: the one-time code
-- (only its SHA-256 here) is exchanged once, before `expires_at`, for tokens bound to the device.
CREATE TABLE device_enrolments (
    code_hash TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX device_enrolments_device ON device_enrolments (device_id);
