//! Every metric this crate records, declared once (see
//! `frameworks_events::observability`): the binary describes them to the
//! Prometheus recorder, and a test checks the code records exactly these.

use frameworks_events::observability::{Buckets, Metric};

pub const METRICS: &[Metric] = &[
    Metric::counter(
        "frameworks_command_conflicts_total",
        "Appends that lost to a concurrent write to the same aggregate; the command is then decided again (or answered with an identical keyed request's stored outcome).",
        &["aggregate"],
    ),
    Metric::counter(
        "frameworks_command_idempotent_replays_total",
        "Keyed commands answered with the stored outcome of an earlier request with the same idempotency key instead of being executed again.",
        &["aggregate"],
    ),
    Metric::counter(
        "frameworks_commands_total",
        "Commands the command bus finished, by aggregate and by outcome (accepted, rejected by the aggregate, or failed).",
        &["aggregate", "outcome"],
    ),
    Metric::gauge(
        "frameworks_relay_backlog",
        metrics::Unit::Count,
        "Outbox rows not yet published, counted by the leading relay each time a drain round leaves less than a full batch.",
        &[],
    ),
    Metric::histogram(
        "frameworks_relay_batch_seconds",
        "Time to publish one non-empty outbox batch, from reading the rows to deleting the published ones, in seconds.",
        &[],
        Buckets::Latency,
    ),
    Metric::gauge(
        "frameworks_relay_leader",
        metrics::Unit::Count,
        "1 while this relay holds the outbox leadership lock, 0 while it waits for it.",
        &[],
    ),
    Metric::counter(
        "frameworks_relay_published_total",
        "Outbox rows the relay published to Kafka and then deleted from the outbox.",
        &[],
    ),
    Metric::counter(
        "frameworks_telemetry_total",
        "Telemetry facts given to the telemetry publisher, by outcome (published to Kafka, rejected by validation, or failed to publish).",
        &["outcome"],
    ),
];
