-- Live interaction: participants, the room event log, chat, Q&A, polls,
-- calls-to-action, ratings, help bot (issue "Live interaction").

ALTER TABLE webinars ADD COLUMN live_started_at timestamptz, ADD COLUMN live_ended_at timestamptz;

-- Someone in a room: a viewer (guest or, later, a registrant) or a staff user.
CREATE TABLE participants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    user_id uuid REFERENCES users ON DELETE SET NULL,
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 80),
    email text,
    created_at timestamptz NOT NULL DEFAULT now(),
    muted_until timestamptz,
    banned_at timestamptz,
    UNIQUE (webinar_id, user_id)
);
CREATE INDEX participants_webinar ON participants (webinar_id);

-- One row per room: the event counter (its row lock orders events) and settings.
CREATE TABLE rooms (
    webinar_id uuid PRIMARY KEY REFERENCES webinars ON DELETE CASCADE,
    last_event_id bigint NOT NULL DEFAULT 0,
    slow_mode_s integer NOT NULL DEFAULT 0 CHECK (slow_mode_s BETWEEN 0 AND 600),
    word_filter text[] NOT NULL DEFAULT '{}'
);

-- The room's event log: what clients see, in order; resumes and the replay read it.
-- audience: 'all', 'moderators', or 'p:<participant id>' (one person).
CREATE TABLE room_events (
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    id bigint NOT NULL,
    kind text NOT NULL,
    audience text NOT NULL DEFAULT 'all',
    program_ms bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    data jsonb NOT NULL,
    PRIMARY KEY (webinar_id, id)
);

-- A chat message is known by the id of the event that carried it.
CREATE TABLE chat_messages (
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    event_id bigint NOT NULL,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    text text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    PRIMARY KEY (webinar_id, event_id)
);

CREATE TABLE questions (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    participant_id uuid REFERENCES participants ON DELETE SET NULL,
    anonymous boolean NOT NULL DEFAULT false,
    text text NOT NULL,
    source text NOT NULL DEFAULT 'live' CHECK (source IN ('live', 'registration')),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered', 'highlighted', 'hidden')),
    upvotes integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX questions_webinar ON questions (webinar_id);

CREATE TABLE question_votes (
    question_id bigint NOT NULL REFERENCES questions ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    PRIMARY KEY (question_id, participant_id)
);

CREATE TABLE polls (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    question text NOT NULL,
    options jsonb NOT NULL,
    multiple boolean NOT NULL DEFAULT false,
    results text NOT NULL DEFAULT 'everyone' CHECK (results IN ('everyone', 'moderators')),
    state text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'open', 'closed')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE poll_votes (
    poll_id bigint NOT NULL REFERENCES polls ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    choices smallint[] NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (poll_id, participant_id)
);

-- Calls-to-action, defined by organizers, pushed by moderators.
CREATE TABLE ctas (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    label text NOT NULL CHECK (length(label) BETWEEN 1 AND 80),
    url text NOT NULL DEFAULT '',
    image_url text NOT NULL DEFAULT '',
    body text NOT NULL DEFAULT '',
    form_fields text[] NOT NULL DEFAULT '{}',
    consent_text text NOT NULL DEFAULT '',
    state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'pushed', 'withdrawn')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- R-ANA-3: every impression and click, per participant (reports per CTA per day).
CREATE TABLE cta_interactions (
    id bigserial PRIMARY KEY,
    cta_id bigint NOT NULL REFERENCES ctas ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('impression', 'click', 'submit')),
    mode text NOT NULL CHECK (mode IN ('live', 'replay')),
    at timestamptz NOT NULL DEFAULT now(),
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    consent boolean NOT NULL DEFAULT false
);
CREATE INDEX cta_interactions_cta_at ON cta_interactions (cta_id, at);

-- R-ENG-2: one rating per participant (changeable); comments shown at once, removable.
CREATE TABLE ratings (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    stars smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
    comment text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    UNIQUE (webinar_id, participant_id)
);

-- R-ENG-3: the account's FAQ for the help bot, and the questions it got.
CREATE TABLE help_faq (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    variants text[] NOT NULL,
    answer text NOT NULL CHECK (length(answer) BETWEEN 1 AND 2000),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE help_requests (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    text text NOT NULL,
    faq_id bigint REFERENCES help_faq ON DELETE SET NULL,
    score real,
    created_at timestamptz NOT NULL DEFAULT now()
);
