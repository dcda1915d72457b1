-- Registration, consent, durable jobs (email), scheduling rules (issue "Registration").

ALTER TABLE webinars
    ADD COLUMN required_fields text[] NOT NULL DEFAULT '{first_name,last_name,email}',
    ADD COLUMN speaker_question boolean NOT NULL DEFAULT true,
    ADD COLUMN speakers text NOT NULL DEFAULT '' CHECK (length(speakers) <= 2000),
    ADD COLUMN sponsor_name text NOT NULL DEFAULT '' CHECK (length(sponsor_name) <= 200),
    ADD COLUMN sponsor_logo_url text NOT NULL DEFAULT '' CHECK (length(sponsor_logo_url) <= 2000),
    ADD COLUMN form_version integer NOT NULL DEFAULT 1,
    ADD COLUMN schedule_version integer NOT NULL DEFAULT 0,   -- ICS SEQUENCE; +1 at every move
    ADD COLUMN reschedule_count integer NOT NULL DEFAULT 0,
    ADD COLUMN consumed_at timestamptz,   -- R-SCH-3: a late request makes the webinar consumed
    ADD COLUMN lost_at timestamptz;       -- R-SCH-5: not delivered 12 months after the order

-- One registration per person (email) and webinar; registering again updates it.
CREATE TABLE registrations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    email text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    first_name text NOT NULL DEFAULT '' CHECK (length(first_name) <= 100),
    last_name text NOT NULL DEFAULT '' CHECK (length(last_name) <= 100),
    phone text NOT NULL DEFAULT '' CHECK (length(phone) <= 40),
    job_function text NOT NULL DEFAULT '' CHECK (length(job_function) <= 100),
    company text NOT NULL DEFAULT '' CHECK (length(company) <= 200),
    company_size text NOT NULL DEFAULT '' CHECK (length(company_size) <= 40),
    department text NOT NULL DEFAULT '' CHECK (length(department) <= 100),
    industry text NOT NULL DEFAULT '' CHECK (length(industry) <= 100),
    question text NOT NULL DEFAULT '' CHECK (length(question) <= 500),
    source text NOT NULL DEFAULT 'page' CHECK (source IN ('page', 'iframe', 'import')),
    locale text NOT NULL DEFAULT 'fr' CHECK (locale IN ('fr', 'en')),
    time_zone text NOT NULL DEFAULT 'Europe/Paris',
    participant_id uuid REFERENCES participants ON DELETE SET NULL,
    unsubscribed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webinar_id, email)
);
CREATE INDEX registrations_email ON registrations (email);

-- R-REG-4 / R-ANA-2: consent with proof (time, IP, form version, exact wording).
CREATE TABLE consents (
    id bigserial PRIMARY KEY,
    registration_id uuid NOT NULL REFERENCES registrations ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('sponsor_share', 'marketing')),
    granted boolean NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    ip inet,
    user_agent text NOT NULL DEFAULT '',
    form_version integer NOT NULL,
    wording text NOT NULL,
    sponsor_name text NOT NULL DEFAULT ''
);
CREATE INDEX consents_registration ON consents (registration_id, kind, at);

-- Durable jobs: run once (dedupe_key), claimed with a lease (several workers), retried.
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    dedupe_key text NOT NULL UNIQUE,
    run_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed', 'skipped')),
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 8,
    last_error text NOT NULL DEFAULT '',
    locked_by text,
    locked_until timestamptz,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at timestamptz
);
CREATE INDEX jobs_due ON jobs (run_at) WHERE state IN ('pending', 'running');

-- Every email handed to SMTP (or the outbox).
CREATE TABLE emails_sent (
    id bigserial PRIMARY KEY,
    job_id bigint REFERENCES jobs ON DELETE SET NULL,
    registration_id uuid REFERENCES registrations ON DELETE SET NULL,
    kind text NOT NULL,
    to_email text NOT NULL,
    message_id text NOT NULL,
    marketing boolean NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
);

-- R-SCH: every move of a webinar, and fees (R-SCH-4) to invoice later.
CREATE TABLE schedule_changes (
    id bigserial PRIMARY KEY,
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    order_id uuid NOT NULL REFERENCES orders ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('reschedule', 'cancellation')),
    old_starts_at timestamptz NOT NULL,
    new_starts_at timestamptz,
    requested_by uuid REFERENCES users ON DELETE SET NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE fees (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    order_id uuid REFERENCES orders ON DELETE SET NULL,
    webinar_id uuid REFERENCES webinars ON DELETE SET NULL,
    kind text NOT NULL CHECK (kind IN ('reschedule', 'cancellation', 'extra')),
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    label text NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT now(),
    invoiced_at timestamptz
);
