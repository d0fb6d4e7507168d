-- The write side's event store: the source of truth for every aggregate.
-- Events are protobuf envelopes (schemas/proto); the columns beside them are
-- what the store itself needs to find, order and publish them.

CREATE TABLE events (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    -- 1-based and gapless per aggregate. The primary key is the optimistic
    -- concurrency check: two writers appending the same sequence cannot both commit.
    sequence       bigint      NOT NULL CHECK (sequence > 0),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    tenant_id      uuid,
    recorded_at    timestamptz NOT NULL,
    envelope       bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Events appended but not yet acknowledged by Kafka. Written in the same
-- transaction as the events; the relay deletes a row once Kafka has it.
-- One aggregate's rows get ascending ids: the writer of sequence n+1 must
-- have seen sequence n committed.
CREATE TABLE outbox (
    id       bigserial PRIMARY KEY,
    event_id uuid NOT NULL REFERENCES events (event_id)
);

-- Values that must be unique across aggregates (an e-mail address, a token
-- hash, a hardware fingerprint), claimed in the appending transaction.
CREATE TABLE unique_claims (
    kind         text NOT NULL,
    value        text NOT NULL,
    aggregate_id text NOT NULL,
    PRIMARY KEY (kind, value)
);

-- Commands carrying an idempotency key: the first result, sealed, so a
-- repeat returns it without applying the command again.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    fingerprint  bytea       NOT NULL,
    outcome      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
