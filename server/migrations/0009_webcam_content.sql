-- Shared content of webcam rooms (R-ROOM-1): uploaded PDFs (rendered to page
-- images), PNG/JPEG image sets and MP4 clips, and what each room shows now.
-- Files live under the media folder: content/<webinar id>/<item id>/.

CREATE TABLE webcam_content (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('pdf', 'images', 'clip')),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    pages integer NOT NULL DEFAULT 0 CHECK (pages BETWEEN 0 AND 100),
    -- pdf: pages rendered; images: images in the set; clip: 0
    size_bytes bigint NOT NULL CHECK (size_bytes > 0),
    -- pdf, clip: the uploaded file; images: the set's total
    sha256 text NOT NULL CHECK (length(sha256) = 64),
    -- pdf, clip: of the file; images: of the images' digests in order
    meta jsonb NOT NULL DEFAULT '{}',
    -- clip: duration_s, width, height, video, audio; images: [{name, bytes, sha256, width, height, file}]
    created_by uuid REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webcam_content_webinar ON webcam_content (webinar_id, id);

-- What the room's program shows now (the latest content.changed event, kept
-- for newcomers' snapshots and for restoring the program after a restart).
CREATE TABLE webcam_content_state (
    webinar_id uuid PRIMARY KEY REFERENCES webinars ON DELETE CASCADE,
    content_id bigint REFERENCES webcam_content ON DELETE SET NULL,
    page integer NOT NULL DEFAULT 0 CHECK (page >= 0),
    clip_playing boolean NOT NULL DEFAULT false,
    clip_position_ms bigint NOT NULL DEFAULT 0 CHECK (clip_position_ms >= 0),
    event_id bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
