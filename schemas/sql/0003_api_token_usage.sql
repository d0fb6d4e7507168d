-- When each API token was last used. Kept by the GraphQL bridge as it
-- authenticates requests: an operational fact, not an event, so it lives
-- outside the projections (a replay does not lose it).
CREATE TABLE api_token_usage (
    token_id     uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
