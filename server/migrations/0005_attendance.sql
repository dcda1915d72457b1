-- Attendance, engagement and participant files (issue "Attendee analytics", R-ANA-1..3).
-- Written by billing/attendance.py (batched, one multi-row statement per table per flush)
-- and billing/exports.py (one row per file download). Rules: billing/README.md.

-- One viewing session: one room WebSocket, one mode, without a silence longer
-- than the session gap. The id is chosen by the recorder (it upserts the row
-- at every flush while the session runs). Times are server times.
CREATE TABLE attendance_sessions (
    id uuid PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    mode text NOT NULL CHECK (mode IN ('live', 'replay')),
    started_at timestamptz NOT NULL,
    last_beat_at timestamptz NOT NULL,
    ended_at timestamptz,                 -- NULL while the connection is open
    seconds double precision NOT NULL DEFAULT 0 CHECK (seconds >= 0),                     -- playing
    attention_seconds double precision NOT NULL DEFAULT 0 CHECK (attention_seconds >= 0), -- playing and visible
    position double precision NOT NULL DEFAULT 0,   -- last player position reported (s)
    CHECK (last_beat_at >= started_at)
);
CREATE INDEX attendance_sessions_webinar ON attendance_sessions (webinar_id, mode, started_at);
CREATE INDEX attendance_sessions_participant ON attendance_sessions (participant_id);

-- Per participant totals (seconds), incremented by every flush of every node.
CREATE TABLE attendance (
    participant_id uuid PRIMARY KEY REFERENCES participants ON DELETE CASCADE,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    live_seconds double precision NOT NULL DEFAULT 0 CHECK (live_seconds >= 0),
    replay_seconds double precision NOT NULL DEFAULT 0 CHECK (replay_seconds >= 0),
    attention_seconds double precision NOT NULL DEFAULT 0 CHECK (attention_seconds >= 0),
    first_seen_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attendance_webinar ON attendance (webinar_id);

-- R-ANA-3: every download of a participant file or analytics export: who
-- (a user, or a sponsor key), when, what, bytes handed to the connection,
-- complete or not. The row is written when the download starts (complete =
-- false) and updated when it ends; a download cut short stays incomplete.
CREATE TABLE downloads (
    id bigserial PRIMARY KEY,
    account_id uuid REFERENCES accounts ON DELETE CASCADE,
    webinar_id uuid REFERENCES webinars ON DELETE SET NULL,
    user_id uuid REFERENCES users ON DELETE SET NULL,
    sponsor_key_id uuid REFERENCES sponsor_keys ON DELETE SET NULL,
    file text NOT NULL CHECK (length(file) BETWEEN 1 AND 200),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    rows_sent bigint NOT NULL DEFAULT 0,
    bytes_sent bigint NOT NULL DEFAULT 0,
    complete boolean NOT NULL DEFAULT false,
    ip inet,
    user_agent text NOT NULL DEFAULT ''
);
CREATE INDEX downloads_account_at ON downloads (account_id, started_at);
CREATE INDEX downloads_webinar ON downloads (webinar_id);

-- R-ANA-2: the participant file reads each registration's latest sponsor_share
-- consent (ORDER BY at DESC, id DESC LIMIT 1): this index answers it without a sort.
CREATE INDEX consents_latest ON consents (registration_id, kind, at DESC, id DESC);
