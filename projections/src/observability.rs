//! Every metric this crate records, declared once (see
//! `frameworks_events::observability`): the binary describes them to the
//! Prometheus recorder, and a test checks the code records exactly these.

use frameworks_events::observability::Metric;

pub const METRICS: &[Metric] = &[Metric::counter(
    "frameworks_projector_events_total",
    "Kafka records a projector handled, by projection and by outcome (applied, duplicate, skipped, ignored or dead-lettered).",
    &["projection", "outcome"],
)];
