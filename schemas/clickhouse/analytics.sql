-- Analytics read models in ClickHouse, written only by the analytics projector
-- (projections/src/analytics.rs). Every statement runs on ClickHouse 18.16
-- (Debian's) and on current releases: no DateTime64, TTL, LowCardinality,
-- CODEC or SimpleAggregateFunction.
--
-- Names are unqualified: the projector applies this file inside one
-- generation's database, so a replay builds a fresh copy beside the live one.
--
-- Raw tables are ReplacingMergeTree with the event id last in the sorting key:
-- a row written twice collapses on merge, and reads that must be exact use
-- FINAL. The 5-minute aggregates are materialised views over the raw inserts,
-- which cannot collapse later; the projector therefore never inserts an event
-- twice (see `written_offsets`).

-- Written before the rows of each batch: Kafka offsets below `upto` may already
-- have rows here, so after a restart or a rebalance the projector checks those
-- event ids before inserting them again.
CREATE TABLE IF NOT EXISTS written_offsets (
    topic      String,
    partition  UInt32,
    upto       UInt64,
    written_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(upto)
ORDER BY (topic, partition);

-- Written after the rows of each batch: Kafka offsets below `upto` have all
-- their rows here. A replay switches to a generation only once these marks
-- reach the end of the log, so queries never meet a generation that is
-- still missing the rows of its last batch.
CREATE TABLE IF NOT EXISTS applied_offsets (
    topic      String,
    partition  UInt32,
    upto       UInt64,
    written_at DateTime('UTC')
) ENGINE = ReplacingMergeTree(upto)
ORDER BY (topic, partition);

-- Ingest start and end, buffer state changes.
CREATE TABLE IF NOT EXISTS stream_lifecycle (
    event_id         UUID,
    event_type       String,
    tenant_id        String,
    stream_id        String,
    node_id          String,
    occurred_at      DateTime('UTC'),
    protocol         String,
    internal_name    String,
    buffer_state     String,
    buffer_ms        UInt64,
    bytes_in         UInt64,
    duration_seconds UInt64,
    reason           String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, stream_id, occurred_at, event_id);

-- One row per session start and one per session end. `delta` is +1 and -1:
-- the running sum over time is the number of concurrent viewers.
-- bytes_out is what the edge sent to the viewer (Mist's "up").
CREATE TABLE IF NOT EXISTS viewer_sessions (
    event_id         UUID,
    tenant_id        String,
    stream_id        String,
    session_id       String,
    node_id          String,
    connector        String,
    country_code     String,
    occurred_at      DateTime('UTC'),
    delta            Int8,
    bytes_out        UInt64,
    bytes_in         UInt64,
    duration_seconds UInt64,
    reason           String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, stream_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS track_lists (
    event_id          UUID,
    tenant_id         String,
    stream_id         String,
    node_id           String,
    occurred_at       DateTime('UTC'),
    track_id          Array(UInt32),
    kind              Array(String),
    codec             Array(String),
    width             Array(UInt32),
    height            Array(UInt32),
    frames_per_second Array(Float64),
    sample_rate       Array(UInt32),
    channels          Array(UInt32),
    bitrate_bps       Array(UInt64),
    language          Array(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, stream_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS stream_health (
    event_id                 UUID,
    tenant_id                String,
    stream_id                String,
    node_id                  String,
    occurred_at              DateTime('UTC'),
    bitrate_bps              UInt64,
    frames_per_second        Float64,
    max_keyframe_interval_ms UInt32,
    jitter_ms                UInt64,
    issues                   Array(String)
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, stream_id, occurred_at, event_id);

CREATE TABLE IF NOT EXISTS node_metrics (
    event_id            UUID,
    tenant_id           String,
    node_id             String,
    occurred_at         DateTime('UTC'),
    cpu_percent         Float64,
    memory_used_bytes   UInt64,
    memory_total_bytes  UInt64,
    bandwidth_up_bps    UInt64,
    bandwidth_down_bps  UInt64,
    bandwidth_limit_bps UInt64,
    disk_used_bytes     UInt64,
    disk_total_bytes    UInt64,
    active_streams      UInt32,
    active_viewers      UInt32,
    -- Cumulative since the node booted; they reset when it restarts.
    network_rx_bytes    UInt64,
    network_tx_bytes    UInt64,
    shm_used_bytes      UInt64,
    shm_total_bytes     UInt64,
    -- The sampling window, so that rate times window gives bytes moved.
    window_ms           UInt32
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (node_id, occurred_at, event_id);

-- Per-stream usage in 5-minute buckets. `viewers` counts distinct sessions
-- seen in the bucket; viewer-seconds and bytes are booked when a session ends.
-- `changes` keeps each start (+1) and end (-1) with its time, so that the
-- peak of concurrent viewers in a bucket is exact (see analytics.rs).
CREATE TABLE IF NOT EXISTS stream_usage_5m (
    tenant_id      String,
    stream_id      String,
    bucket         DateTime('UTC'),
    viewers        AggregateFunction(uniqExact, String),
    viewer_seconds AggregateFunction(sum, UInt64),
    bytes_out      AggregateFunction(sum, UInt64),
    net_change     AggregateFunction(sum, Int64),
    changes        AggregateFunction(groupArray, Tuple(DateTime('UTC'), Int8))
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, stream_id, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS stream_usage_5m_mv TO stream_usage_5m AS
SELECT
    tenant_id,
    stream_id,
    toStartOfFiveMinute(occurred_at) AS bucket,
    uniqExactState(session_id) AS viewers,
    sumState(duration_seconds) AS viewer_seconds,
    sumState(bytes_out) AS bytes_out,
    sumState(toInt64(delta)) AS net_change,
    groupArrayState(tuple(occurred_at, delta)) AS changes
FROM viewer_sessions
GROUP BY tenant_id, stream_id, bucket;

-- The same per tenant, across its streams.
CREATE TABLE IF NOT EXISTS tenant_usage_5m (
    tenant_id      String,
    bucket         DateTime('UTC'),
    viewers        AggregateFunction(uniqExact, String),
    viewer_seconds AggregateFunction(sum, UInt64),
    bytes_out      AggregateFunction(sum, UInt64),
    net_change     AggregateFunction(sum, Int64),
    changes        AggregateFunction(groupArray, Tuple(DateTime('UTC'), Int8))
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_usage_5m_mv TO tenant_usage_5m AS
SELECT
    tenant_id,
    toStartOfFiveMinute(occurred_at) AS bucket,
    uniqExactState(session_id) AS viewers,
    sumState(duration_seconds) AS viewer_seconds,
    sumState(bytes_out) AS bytes_out,
    sumState(toInt64(delta)) AS net_change,
    groupArrayState(tuple(occurred_at, delta)) AS changes
FROM viewer_sessions
GROUP BY tenant_id, bucket;
