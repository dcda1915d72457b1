-- Billing (R-BIL-1..4) and personal data (R-GDPR-1..3): issue "Attendee analytics,
-- sponsor participant file, billing and personal data". Code: billing/.

-- R-BIL-1: share of the order invoiced at signature (the balance follows delivery).
-- R-BIL-4: attendance-based metering, price per attendee excl. tax (NULL: not metered).
ALTER TABLE orders
    ADD COLUMN deposit_percent integer NOT NULL DEFAULT 50 CHECK (deposit_percent BETWEEN 0 AND 100),
    ADD COLUMN price_per_attendee_cents bigint CHECK (price_per_attendee_cents >= 0);

-- R-BIL-2: ECB main refinancing operations rate, as the admin records it.
-- The rate in force on a day is the row with the latest valid_from on or before it.
CREATE TABLE ecb_rates (
    valid_from date PRIMARY KEY,
    rate_percent numeric(6, 3) NOT NULL CHECK (rate_percent BETWEEN -10 AND 50),
    updated_by uuid REFERENCES users ON DELETE SET NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Who issues the invoices (the operator); one row, copied onto every invoice.
CREATE TABLE invoice_issuer (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    address text NOT NULL DEFAULT '' CHECK (length(address) <= 1000),
    legal_ids text NOT NULL DEFAULT '' CHECK (length(legal_ids) <= 500),   -- SIREN, VAT number, capital...
    payment_details text NOT NULL DEFAULT '' CHECK (length(payment_details) <= 500),  -- IBAN/BIC
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO invoice_issuer (id) VALUES (true);

-- Invoice numbers YYYY-NNNN, sequential without gaps per year: the counter row is
-- updated (so locked) in the issuing transaction; a rollback gives the number back.
CREATE TABLE invoice_counters (
    year integer PRIMARY KEY CHECK (year BETWEEN 2000 AND 9999),
    last_seq integer NOT NULL CHECK (last_seq >= 0),
    last_issued_on date NOT NULL
);

-- An issued invoice is never edited (only paid_on is recorded later). Amounts in euro cents.
CREATE TABLE invoices (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number text NOT NULL UNIQUE,
    year integer NOT NULL,
    seq integer NOT NULL CHECK (seq >= 1),
    account_id uuid NOT NULL REFERENCES accounts ON DELETE RESTRICT,
    order_id uuid REFERENCES orders ON DELETE RESTRICT,
    kind text NOT NULL CHECK (kind IN ('deposit', 'balance', 'metering', 'fees', 'extras')),
    issued_on date NOT NULL,
    due_on date NOT NULL,
    currency text NOT NULL DEFAULT 'EUR' CHECK (currency = 'EUR'),
    lang text NOT NULL DEFAULT 'fr' CHECK (lang IN ('fr', 'en')),   -- the document's language
    buyer_name text NOT NULL,
    order_reference text NOT NULL DEFAULT '',
    issuer_name text NOT NULL DEFAULT '',
    issuer_address text NOT NULL DEFAULT '',
    issuer_legal_ids text NOT NULL DEFAULT '',
    issuer_payment_details text NOT NULL DEFAULT '',
    total_excl_cents bigint NOT NULL CHECK (total_excl_cents >= 0),
    vat_rate_percent numeric(5, 2) NOT NULL CHECK (vat_rate_percent >= 0),
    vat_cents bigint NOT NULL CHECK (vat_cents >= 0),
    total_incl_cents bigint NOT NULL,
    paid_on date,
    created_by uuid REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (year, seq),
    CHECK (total_incl_cents = total_excl_cents + vat_cents),
    CHECK (due_on >= issued_on),
    CHECK (paid_on IS NULL OR paid_on >= issued_on)
);
CREATE UNIQUE INDEX invoices_one_deposit ON invoices (order_id) WHERE kind = 'deposit';
CREATE UNIQUE INDEX invoices_one_balance ON invoices (order_id) WHERE kind = 'balance';
CREATE INDEX invoices_account ON invoices (account_id, issued_on);

CREATE TABLE invoice_lines (
    invoice_id uuid NOT NULL REFERENCES invoices ON DELETE RESTRICT,
    position integer NOT NULL CHECK (position >= 1),
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 500),
    quantity integer NOT NULL CHECK (quantity >= 1),
    unit_price_cents bigint NOT NULL,  -- negative on a deduction line (deposit already invoiced)
    amount_cents bigint NOT NULL CHECK (amount_cents = quantity * unit_price_cents),
    PRIMARY KEY (invoice_id, position)
);

-- R-SCH-4 fees and R-BIL-3 extras: the invoice that billed them.
ALTER TABLE fees ADD COLUMN invoice_id uuid REFERENCES invoices ON DELETE RESTRICT;
CREATE INDEX fees_uninvoiced ON fees (account_id) WHERE invoice_id IS NULL;

-- R-BIL-4: every person billed once per webinar, whatever the number of metering invoices.
CREATE TABLE metered_attendees (
    webinar_id uuid NOT NULL REFERENCES webinars ON DELETE CASCADE,
    participant_id uuid NOT NULL REFERENCES participants ON DELETE CASCADE,
    invoice_id uuid NOT NULL REFERENCES invoices ON DELETE RESTRICT,
    PRIMARY KEY (webinar_id, participant_id)
);
CREATE INDEX metered_attendees_invoice ON metered_attendees (invoice_id);

-- R-GDPR-1/2: a participant whose personal data was erased (the row stays for counts).
ALTER TABLE participants ADD COLUMN erased_at timestamptz;

-- R-GDPR-3: processing log. The subject is a keyed hash of the email, never the email.
CREATE TABLE processing_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_id uuid REFERENCES users ON DELETE SET NULL,
    action text NOT NULL CHECK (action IN ('export', 'erase', 'retention')),
    subject_hash text,
    account_id uuid REFERENCES accounts ON DELETE SET NULL,
    counts jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX processing_log_at ON processing_log (at);
CREATE INDEX processing_log_subject ON processing_log (subject_hash) WHERE subject_hash IS NOT NULL;

-- R-GDPR-3: personal-data breaches, with what was affected.
CREATE TABLE data_breaches (
    id bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    detected_at timestamptz NOT NULL,
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 5000),
    categories text[] NOT NULL CHECK (cardinality(categories) >= 1 AND categories <@ ARRAY[
        'identity', 'contact', 'professional', 'behaviour', 'free_text', 'technical', 'credentials']::text[]),
    affected_count integer NOT NULL CHECK (affected_count >= 0),
    measures text NOT NULL DEFAULT '' CHECK (length(measures) <= 5000),
    reported_by uuid REFERENCES users ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (detected_at >= occurred_at)
);
