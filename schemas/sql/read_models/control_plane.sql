-- Control-plane read models, written only by the control-plane projector
-- (projections/) from the Kafka log. Queries read these, never the event store.
--
-- This file is one generation's DDL, not a migration: names are unqualified
-- and the projector runs it inside a fresh schema `control_plane_g<N>`, so a
-- replay builds a new generation beside the live one. Queries read the views
-- in schema `read_models`, which the switch re-points in one transaction.
-- A change here takes effect through `frameworks replay control-plane`.

CREATE TABLE projection_offsets (
    projection  text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    -- The next Kafka offset to apply: committed with the model changes it covers.
    next_offset bigint      NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, partition)
);

-- The last aggregate sequence each projection applied: read-your-writes waits on it.
CREATE TABLE projection_versions (
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    version        bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);

CREATE TABLE rm_tenants (
    id           uuid PRIMARY KEY,
    name         text        NOT NULL,
    tier         text        NOT NULL,
    region       text        NOT NULL,
    suspended    boolean     NOT NULL DEFAULT false,
    suspended_reason text,
    -- Chosen with setPreferredCluster; it counts only while the tenant may use it.
    preferred_cluster_id uuid,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE rm_users (
    id            uuid PRIMARY KEY,
    tenant_id     uuid,
    email         text        NOT NULL,
    display_name  text        NOT NULL,
    role          text        NOT NULL,
    failed_logins integer     NOT NULL DEFAULT 0,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX rm_users_tenant ON rm_users (tenant_id);

CREATE TABLE rm_api_tokens (
    id           uuid PRIMARY KEY,
    tenant_id    uuid,
    name         text        NOT NULL,
    scopes       text[]      NOT NULL,
    token_hash   bytea       NOT NULL,
    token_prefix text        NOT NULL,
    expires_at   timestamptz,
    created_by   text        NOT NULL,
    revoked_at   timestamptz,
    -- Maintained by the gateway's authentication path, not by events.
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL
);
CREATE INDEX rm_api_tokens_hash ON rm_api_tokens (token_hash) WHERE revoked_at IS NULL;
CREATE INDEX rm_api_tokens_tenant ON rm_api_tokens (tenant_id);

CREATE TABLE rm_streams (
    id              uuid PRIMARY KEY,
    tenant_id       uuid,
    name            text        NOT NULL,
    description     text        NOT NULL,
    record          boolean     NOT NULL,
    ingest_mode     text        NOT NULL,
    playback_id     text        NOT NULL,
    -- Sealed (SealedSecret, protobuf); opened only for callers with the scope.
    pull_source     bytea,
    -- Who may watch: a PlaybackPolicy (protobuf; a webhook's secret sealed);
    -- NULL for a public stream.
    playback_policy bytea,
    primary_key_id  text,
    deleted_at      timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX rm_streams_tenant ON rm_streams (tenant_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX rm_streams_playback ON rm_streams (playback_id) WHERE deleted_at IS NULL;

CREATE TABLE rm_stream_keys (
    key_id      text PRIMARY KEY,
    stream_id   uuid        NOT NULL REFERENCES rm_streams (id),
    label       text        NOT NULL,
    is_primary  boolean     NOT NULL,
    -- SHA-256 of the key, for ingest look-ups.
    lookup_hash bytea       NOT NULL,
    -- Sealed key (SealedSecret, protobuf).
    sealed_key  bytea       NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX rm_stream_keys_lookup ON rm_stream_keys (lookup_hash);
CREATE INDEX rm_stream_keys_stream ON rm_stream_keys (stream_id);

CREATE TABLE rm_signing_keys (
    kid             text PRIMARY KEY,
    tenant_id       uuid        NOT NULL,
    name            text        NOT NULL,
    algorithm       text        NOT NULL,
    public_key_spki bytea       NOT NULL,
    revoked_at      timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX rm_signing_keys_tenant ON rm_signing_keys (tenant_id);

CREATE TABLE rm_clusters (
    id         uuid PRIMARY KEY,
    tenant_id  uuid,
    name       text        NOT NULL,
    region     text        NOT NULL,
    base_url   text        NOT NULL,
    shared     boolean     NOT NULL,
    max_concurrent_streams integer NOT NULL,
    max_concurrent_viewers integer NOT NULL,
    max_bandwidth_mbps     integer NOT NULL,
    -- The marketplace offer: PUBLIC, UNLISTED or PRIVATE; a pricing model as
    -- in the API (TIER_INHERIT, FREE_UNMETERED, ...).
    visibility        text    NOT NULL,
    pricing_model     text    NOT NULL,
    monthly_price_cents integer,
    requires_approval boolean NOT NULL,
    short_description text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A tenant's use of another tenant's cluster. status: PENDING_APPROVAL,
-- ACTIVE, REJECTED or CANCELLED.
CREATE TABLE rm_cluster_subscriptions (
    id               uuid PRIMARY KEY,
    cluster_id       uuid        NOT NULL REFERENCES rm_clusters (id),
    tenant_id        uuid        NOT NULL,
    access_level     text        NOT NULL,
    status           text        NOT NULL,
    resource_limits  jsonb,
    invite_id        uuid,
    requested_by     text        NOT NULL,
    requested_at     timestamptz NOT NULL,
    approved_at      timestamptz,
    approved_by      text,
    rejection_reason text,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX rm_cluster_subscriptions_tenant ON rm_cluster_subscriptions (tenant_id, status);
CREATE INDEX rm_cluster_subscriptions_cluster ON rm_cluster_subscriptions (cluster_id, status);

-- status: pending, accepted or revoked (expiry is read from expires_at).
CREATE TABLE rm_cluster_invites (
    id                uuid PRIMARY KEY,
    cluster_id        uuid        NOT NULL REFERENCES rm_clusters (id),
    invited_tenant_id uuid        NOT NULL,
    invite_token      text        NOT NULL,
    access_level      text        NOT NULL,
    resource_limits   jsonb,
    status            text        NOT NULL,
    created_by        text        NOT NULL,
    created_at        timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    accepted_at       timestamptz,
    revoked_at        timestamptz
);
CREATE INDEX rm_cluster_invites_cluster ON rm_cluster_invites (cluster_id);
CREATE INDEX rm_cluster_invites_tenant ON rm_cluster_invites (invited_tenant_id);

CREATE TABLE rm_enrolment_tokens (
    token_id     text PRIMARY KEY,
    name         text        NOT NULL,
    cluster_id   uuid        NOT NULL REFERENCES rm_clusters (id),
    expires_at   timestamptz NOT NULL,
    issued_by    text        NOT NULL,
    consumed_by_node text,
    -- The node id an edge reserved with the token (bootstrapEdge), and the
    -- address it reported.
    reserved_node text,
    reserved_ip   text,
    created_at   timestamptz NOT NULL
);

-- A node's events and its cluster's travel on different partitions, unordered
-- between them: the cluster reference is not enforced here.
CREATE TABLE rm_nodes (
    id                   uuid PRIMARY KEY,
    cluster_id           uuid        NOT NULL,
    tenant_id            uuid,
    hardware_fingerprint text        NOT NULL,
    hostname             text        NOT NULL,
    edge_version         text        NOT NULL,
    public_host          text        NOT NULL,
    latitude             double precision NOT NULL,
    longitude            double precision NOT NULL,
    enrolled_at          timestamptz NOT NULL,
    reenrolled_at        timestamptz,
    decommissioned_at    timestamptz,
    decommission_reason  text,
    -- NORMAL, DRAINING or MAINTENANCE (setNodeMode), with the operator's reason.
    operational_mode     text        NOT NULL DEFAULT 'NORMAL',
    mode_reason          text,
    mode_changed_at      timestamptz
);

-- The services each node runs, as its edge daemon last reported them; a
-- service left out of a later report, or on a decommissioned node, is stopped.
CREATE TABLE rm_node_services (
    node_id         uuid        NOT NULL,
    service_id      text        NOT NULL,
    version         text        NOT NULL,
    protocol        text        NOT NULL,
    port            integer     NOT NULL,
    health_endpoint text,
    process_id      bigint      NOT NULL,
    started_at      timestamptz NOT NULL,
    reported_at     timestamptz NOT NULL,
    stopped_at      timestamptz,
    PRIMARY KEY (node_id, service_id)
);
CREATE INDEX rm_node_services_by_service ON rm_node_services (service_id, started_at DESC);
CREATE INDEX rm_nodes_cluster ON rm_nodes (cluster_id);
