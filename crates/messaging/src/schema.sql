-- Tables every service that publishes or consumes events keeps in its own schema (the connection's
-- search_path). Idempotent, so `messaging::migrate` can run at every start; a service that prefers its own
-- sqlx migrations can copy this file into one (it is `messaging::MIGRATION_SQL`).

-- Events recorded in the same transaction as the state change they describe. `position` orders the relay;
-- rows are marked sent once the transport confirmed them and pruned after the retention period.
-- Kept lean for the relay, which rewrites every row once: the envelope is `json` (stored as sent, no
-- re-encoding on the way in or out), and the only B-tree besides the key covers unsent rows; the BRIN index
-- for pruning costs next to nothing to maintain.
CREATE TABLE IF NOT EXISTS outbox (
    position     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    aggregate_id TEXT        NOT NULL,
    envelope     JSON        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at      TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unsent_idx ON outbox (position) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent_at_idx ON outbox USING brin (sent_at);

-- Events a consumer group has applied, written in the handler's own transaction: a redelivered event finds
-- its id here and has no second effect.
CREATE TABLE IF NOT EXISTS inbox (
    consumer_group TEXT        NOT NULL,
    event_id       UUID        NOT NULL,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at_idx ON inbox (processed_at);
