-- Read models live in generations: each projection is built into a fresh
-- schema (or key prefix, or ClickHouse database) by `frameworks replay`, and
-- queries switch to it atomically once it has caught up. The tables of a
-- control-plane generation are `read_models/control_plane.sql`.

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
