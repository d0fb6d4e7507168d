//! Every metric this crate records, declared once (see
//! `frameworks_events::observability`): the binary describes them to the
//! Prometheus recorder, and a test checks the code records exactly these.

use frameworks_events::observability::{Buckets, Metric};

pub const METRICS: &[Metric] = &[
    Metric::gauge(
        "frameworks_edge_control_connected",
        metrics::Unit::Count,
        "1 while the control stream to the balancer is up and its seed's routes are in place, 0 otherwise.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_control_disconnects_total",
        "Control stream sessions to the balancer that ended with an error.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_ingress_errors_total",
        "Trigger submissions to the balancer's ingress that failed with a gRPC error.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_mist_config_repairs_total",
        "Times MistServer's trigger configuration had drifted and was written back.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_mist_errors_total",
        "Failed calls to MistServer's API, by call (version, streams, config, active_streams or sample).",
        &["call"],
    ),
    Metric::counter(
        "frameworks_edge_mist_stream_templates_written_total",
        "Stream templates from the balancer's seed written to MistServer.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_pushes_refused_total",
        "Pushes denied by the push-rewrite answer because the stream key is unknown or refused.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_resolve_failures_total",
        "Resolve calls to the balancer that failed with a gRPC error.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_session_streams_completed_total",
        "USER_END triggers with no stream named that were given the stream their USER_NEW admitted the session to.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_session_streams_overflows_total",
        "Times the table of admitted viewer sessions was full and its older half was dropped.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_trigger_answer_misses_total",
        "Blocking-trigger answers the route table could not give, so the balancer was asked, by trigger kind.",
        &["trigger"],
    ),
    Metric::histogram(
        "frameworks_edge_trigger_answer_seconds",
        "Time to answer a blocking trigger from MistServer, including any fallback, in seconds, by trigger kind.",
        &["trigger"],
        Buckets::Latency,
    ),
    Metric::counter(
        "frameworks_edge_trigger_answers_defaulted_total",
        "Blocking triggers answered with the configured fallback because the answer budget ran out, by trigger kind.",
        &["trigger"],
    ),
    Metric::counter(
        "frameworks_edge_triggers_forwarded_total",
        "Triggers the balancer's ingress acknowledged as accepted.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_triggers_journaled_total",
        "Accounting triggers written to the edge's journal for the first time, by trigger kind.",
        &["trigger"],
    ),
    Metric::counter(
        "frameworks_edge_triggers_refused_by_ingress_total",
        "Triggers the balancer's ingress rejected, which the edge drops.",
        &[],
    ),
    Metric::counter(
        "frameworks_edge_triggers_rejected_total",
        "Trigger HTTP requests from MistServer refused as malformed, by reason.",
        &["reason"],
    ),
    Metric::counter(
        "frameworks_edge_triggers_repeated_total",
        "Accounting triggers already in the journal that MistServer sent again, by trigger kind.",
        &["trigger"],
    ),
    Metric::counter(
        "frameworks_edge_triggers_total",
        "Triggers received from MistServer and parsed, by trigger kind.",
        &["trigger"],
    ),
    Metric::counter(
        "frameworks_edge_triggers_unforwarded_total",
        "Triggers not handed to the forwarder because its queue was full, by trigger kind (accounting triggers are still sent from the journal).",
        &["trigger"],
    ),
    Metric::counter(
        "frameworks_edge_viewers_refused_total",
        "Viewers the USER_NEW answer refused under the stream's playback policy, by reason.",
        &["reason"],
    ),
];
