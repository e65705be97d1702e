-- 002 quarantine: rows the relay refuses. A row no queue would take (a blank
-- queue or kind, an unknown kind, a payload the tasks codec refuses, a
-- timeout past what a time.Duration holds) used to fail every round it was
-- claimed in, and with it the whole batch: the relay moved nothing, forever.
-- The relay now moves such a row here, in the same transaction that relays
-- the rest, with the reason; README "Lossless enqueue" says how to re-drive
-- one.
CREATE TABLE {{quarantine}} (
    -- The outbox row as it was, id included.
    id             bigint PRIMARY KEY,
    created_at     timestamptz NOT NULL,
    kind           text NOT NULL,
    payload        bytea NOT NULL,
    queue          text NOT NULL,
    max_retry      integer NOT NULL,
    timeout_ms     bigint NOT NULL,
    -- Why the relay refused it.
    reason         text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Refuse most such rows at the write already. NOT VALID: the table's lock is
-- held only for the catalog change, not for a scan of a live table; rows
-- already there are the relay's to quarantine.
ALTER TABLE {{table}} ADD CONSTRAINT queue_not_blank CHECK (btrim(queue) <> '') NOT VALID;
ALTER TABLE {{table}} ADD CONSTRAINT kind_not_blank CHECK (btrim(kind) <> '') NOT VALID;
ALTER TABLE {{table}} ADD CONSTRAINT timeout_ms_bounded CHECK (timeout_ms <= 2147483648) NOT VALID;
