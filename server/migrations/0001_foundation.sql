-- Foundation: accounts, people and their roles, orders, webinars, sessions.
-- Identifiers are UUIDs so that no URL can be enumerated.

CREATE TABLE accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    retention_months integer NOT NULL DEFAULT 12 CHECK (retention_months BETWEEN 0 AND 120),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX accounts_name_key ON accounts (lower(name));

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    password_hash text,
    is_admin boolean NOT NULL DEFAULT false,
    locale text NOT NULL DEFAULT 'fr' CHECK (locale IN ('fr', 'en')),
    disabled_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Account-level roles. R-ACC-1: at most 9 organizers per account (enforced
-- in server/accounts.py under a row lock on the account).
CREATE TABLE account_members (
    account_id uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('organizer', 'sponsor')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, user_id, role)
);
CREATE INDEX account_members_user ON account_members (user_id);

-- R-ACC-3: the order ("bon de commande"). Prices in euro cents, excl. tax.
CREATE TABLE orders (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    reference text NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    signed_on date NOT NULL,
    contract_start date NOT NULL,
    contract_end date NOT NULL,
    webinars_bought integer NOT NULL CHECK (webinars_bought BETWEEN 1 AND 1000),
    kind text NOT NULL CHECK (kind IN ('advertiser', 'advertiser_publishing', 'sponsored_editorial')),
    studio_option boolean NOT NULL DEFAULT false,
    price_per_webinar_cents bigint NOT NULL CHECK (price_per_webinar_cents >= 0),
    options_price_cents bigint NOT NULL DEFAULT 0 CHECK (options_price_cents >= 0),
    currency text NOT NULL DEFAULT 'EUR' CHECK (currency = 'EUR'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (contract_end >= contract_start)
);
CREATE INDEX orders_account ON orders (account_id, contract_start);

CREATE TABLE webinars (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    order_id uuid NOT NULL REFERENCES orders ON DELETE RESTRICT,
    title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 20000),
    language text NOT NULL DEFAULT 'fr' CHECK (language IN ('fr', 'en')),
    starts_at timestamptz NOT NULL,
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 240),
    room_type text NOT NULL CHECK (room_type IN ('webcam', 'studio')),
    state text NOT NULL DEFAULT 'draft'
        CHECK (state IN ('draft', 'announced', 'live', 'ended', 'replay', 'removed', 'cancelled')),
    stream_key_hash bytea,
    stream_key_rotated_at timestamptz,
    announced_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webinars_account_start ON webinars (account_id, starts_at);
CREATE INDEX webinars_order ON webinars (order_id);
CREATE UNIQUE INDEX webinars_stream_key ON webinars (stream_key_hash) WHERE stream_key_hash IS NOT NULL;

-- Webinar-level roles (R-ACC-2).
CREATE TABLE webinar_members (
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('speaker', 'moderator', 'sponsor')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webinar_id, user_id, role)
);
CREATE INDEX webinar_members_user ON webinar_members (user_id);

-- Single-use invitation links for speakers and moderators.
CREATE TABLE invitations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('speaker', 'moderator')),
    email text NOT NULL CHECK (email = lower(email)),
    name text NOT NULL DEFAULT '',
    invited_by uuid REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    accepted_at timestamptz,
    accepted_by uuid REFERENCES users ON DELETE SET NULL
);
CREATE INDEX invitations_webinar ON invitations (webinar_id);

-- Sponsor access keys: the signed key carries the id; revocable here.
CREATE TABLE sponsor_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id uuid NOT NULL REFERENCES accounts ON DELETE CASCADE,
    webinar_id uuid REFERENCES webinars ON DELETE CASCADE,
    label text NOT NULL DEFAULT '',
    created_by uuid REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);

-- Server-side sessions: the cookie holds a random token, we keep its SHA-256.
CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    ip inet,
    user_agent text
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE login_attempts (
    id bigserial PRIMARY KEY,
    email text NOT NULL,
    ip inet,
    at timestamptz NOT NULL DEFAULT now(),
    succeeded boolean NOT NULL
);
CREATE INDEX login_attempts_email_at ON login_attempts (email, at);
CREATE INDEX login_attempts_ip_at ON login_attempts (ip, at);

-- Who did what (admin and organizer actions; personal-data processing later).
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_id uuid REFERENCES users ON DELETE SET NULL,
    account_id uuid REFERENCES accounts ON DELETE SET NULL,
    action text NOT NULL,
    subject text NOT NULL DEFAULT '',
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_account_at ON audit_log (account_id, at);
