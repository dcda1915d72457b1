-- R-OPS-3: the maintenance switch. One row (id 1), shared by every node and worker;
-- nodes cache it and re-read it when told over the broker, else every few seconds.
CREATE TABLE maintenance (
    id smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    enabled boolean NOT NULL DEFAULT false,
    message text NOT NULL DEFAULT '' CHECK (length(message) <= 500),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL DEFAULT '' CHECK (length(changed_by) <= 254)
);
INSERT INTO maintenance (id) VALUES (1);
