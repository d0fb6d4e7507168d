//! Every metric this crate records, declared once (see
//! `frameworks_events::observability`): the binary describes them to the
//! Prometheus recorder, and a test checks the code records exactly these.

use frameworks_events::observability::{Buckets, Metric};

pub const METRICS: &[Metric] = &[
    Metric::counter(
        "frameworks_balancer_charge_failures_total",
        "Provisional viewer bandwidth charges that could not be shared with other balancer instances through Redis.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_directory_hits_total",
        "Directory look-ups answered from the in-memory cache, by look-up (ingest, playback or clusters).",
        &["lookup"],
    ),
    Metric::counter(
        "frameworks_balancer_directory_invalidations_total",
        "Control-plane events that removed at least one entry from the directory cache.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_directory_overflows_total",
        "Times a directory cache map was still full after dropping expired entries and was cleared.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_directory_unsettled_total",
        "Cache invalidations done before the control-plane projection had caught up with the event, because the wait failed or timed out.",
        &[],
    ),
    Metric::gauge(
        "frameworks_balancer_edges",
        metrics::Unit::Count,
        "Non-decommissioned edge nodes in the last routing snapshot, by liveness (live, stale or gone).",
        &["liveness"],
    ),
    Metric::gauge(
        "frameworks_balancer_edges_connected",
        metrics::Unit::Count,
        "Edges with an open control stream to this balancer instance.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_enrolments_total",
        "Edges registered over the control stream, by kind (token: enrolled with an enrolment token; known: re-enrolled by node id).",
        &["kind"],
    ),
    Metric::counter(
        "frameworks_balancer_facts_rejected_total",
        "Typed stream facts derived from a trigger that the telemetry publisher rejected, while the trigger's raw fact stood.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_fleet_refresh_failures_total",
        "Routing snapshot rebuilds that failed, leaving routing on the previous snapshot.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_ingest_decisions_total",
        "Ingest decisions answered to edges over the ingress, by outcome (accepted or refused).",
        &["outcome"],
    ),
    Metric::gauge(
        "frameworks_balancer_leader",
        metrics::Unit::Count,
        "1 while this balancer instance holds the leadership lease, 0 otherwise.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_leader_changes_total",
        "Times this instance gained or lost the leadership lease.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_leader_errors_total",
        "Leadership lease checks that failed, after which the instance steps down.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_liveness_errors_total",
        "Heartbeats that could not be recorded as node liveness in the shared state.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_placements_over_limits_total",
        "Placements answered with an edge over its CPU or bandwidth limit because every eligible edge was over its limits.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_play_requests_total",
        "HTTP routing requests, by outcome (listed, redirected, no_edge, unknown, refused, unreachable or lookup_failed).",
        &["outcome"],
    ),
    Metric::counter(
        "frameworks_balancer_playback_policies_unreadable_total",
        "Stored playback policies that could not be decoded, so viewers were denied.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_protocol_errors_total",
        "Control-stream messages from edges that were ignored: empty heartbeats and unexpected messages.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_pull_source_unreadable_total",
        "Pull streams whose sealed source URI could not be decoded or opened.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_recordings_requested_total",
        "Start-recording commands sent to edges for streams due a recording, by outcome (started or failed).",
        &["outcome"],
    ),
    Metric::counter(
        "frameworks_balancer_route_updates_dropped_total",
        "Route updates that could not be queued for a connected edge because its outbox was full.",
        &[],
    ),
    Metric::histogram(
        "frameworks_balancer_routing_seconds",
        "Time to rank edges for one placement from the in-memory routing snapshot, in seconds.",
        &[],
        Buckets::Latency,
    ),
    Metric::counter(
        "frameworks_balancer_stream_samples_total",
        "Stream samples from edges' Mist polls, for platform streams with a known, undeleted owner, handed to the telemetry publisher.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_swept_charges_total",
        "Provisional bandwidth charges past their hold that the leader's sweep removed.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_swept_nodes_total",
        "Nodes gone for good that the leader's sweep removed from the shared state.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_telemetry_errors_total",
        "Heartbeat and stream-sample facts that could not be published, plus stream samples whose owner could not be read.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_triggers_accepted_total",
        "Triggers submitted by edges whose records were all published to Kafka and acknowledged as accepted.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_triggers_other_stream_total",
        "Triggers about a stream that is not a platform stream, kept only as the raw fact, by trigger kind.",
        &["trigger"],
    ),
    Metric::counter(
        "frameworks_balancer_triggers_rejected_total",
        "Triggers submitted by edges whose raw fact the telemetry publisher rejected, answered as rejected.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_triggers_unknown_stream_total",
        "Typed stream facts from triggers dropped because the directory knows no owner for the stream.",
        &[],
    ),
    Metric::counter(
        "frameworks_balancer_triggers_unparsed_total",
        "Triggers whose payload this balancer could not parse, kept only as the raw fact, by trigger kind.",
        &["trigger"],
    ),
];
