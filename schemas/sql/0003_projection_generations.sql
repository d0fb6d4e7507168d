-- Read models move into generations: each projection is built into a fresh
-- schema (or key prefix, or ClickHouse database) by `frameworks replay`, and
-- queries switch to it atomically once it has caught up.
--
-- The control-plane tables of 0002 lived in `public`. They are projections of
-- the Kafka log, so they are dropped rather than moved: the projector builds
-- generation 1 from the log when it starts.

DROP TABLE IF EXISTS rm_tenants, rm_users, rm_api_tokens, rm_streams, rm_stream_keys,
    rm_signing_keys, rm_clusters, rm_enrolment_tokens, rm_nodes,
    projection_offsets, projection_versions;

CREATE TABLE projection_generations (
    projection  text        NOT NULL,
    generation  integer     NOT NULL CHECK (generation > 0),
    state       text        NOT NULL CHECK (state IN ('building', 'live', 'retired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    switched_at timestamptz,
    PRIMARY KEY (projection, generation)
);

-- At most one live and one building generation per projection.
CREATE UNIQUE INDEX projection_generations_one_live
    ON projection_generations (projection) WHERE state = 'live';
CREATE UNIQUE INDEX projection_generations_one_building
    ON projection_generations (projection) WHERE state = 'building';

-- Queries read the live generation through views in this schema.
CREATE SCHEMA IF NOT EXISTS read_models;
