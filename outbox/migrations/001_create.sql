-- 001 create: the outbox table. outbox.Writer inserts one row per
-- invalidation task in the application's own transaction; the relay deletes
-- rows once their tasks are on the queue. The table's name and schema are
-- the configured ones (outbox.Config).
CREATE TABLE {{table}} (
    -- The relay takes rows in id order (FOR UPDATE SKIP LOCKED).
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- When the row was written (not the transaction's start): the relay's
    -- lag and the oldest-row age are measured from it.
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The asynq task type, invalidate:keys and so on.
    kind       text NOT NULL CHECK (kind <> ''),
    -- The task in the binary tasks codec: keys are bytes, never text.
    payload    bytea NOT NULL,
    -- Where and how the task runs: its freshness class and overrides.
    queue      text NOT NULL CHECK (queue <> ''),
    max_retry  integer NOT NULL CHECK (max_retry >= 0),
    timeout_ms bigint NOT NULL CHECK (timeout_ms >= 0)
);
