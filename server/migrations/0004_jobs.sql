-- Durable jobs and email notifications (issue "Registration", R-REG-3, R-REG-4).

-- Attendance for the replay invitation (R-REG-3): set by the room WebSocket the
-- first time the participant connects while the webinar is live.
ALTER TABLE participants ADD COLUMN first_seen_live_at timestamptz;

-- At most one logged email per job: a worker that took over an expired lease
-- sees the mail was already handed to SMTP and does not send it again.
CREATE UNIQUE INDEX emails_sent_job ON emails_sent (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX emails_sent_registration ON emails_sent (registration_id);

-- A webinar's pending jobs, found when it is moved or cancelled.
CREATE INDEX jobs_pending_webinar ON jobs ((payload->>'webinar_id')) WHERE state = 'pending';
