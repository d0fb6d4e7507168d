//! Every metric this crate records, declared once (see
//! `frameworks_events::observability`): the binary describes them to the
//! Prometheus recorder, and a test checks the code records exactly these.

use frameworks_events::observability::Metric;

pub const METRICS: &[Metric] = &[
    Metric::counter(
        "frameworks_projector_events_total",
        "Kafka records a projector handled, by projection and by outcome (applied, duplicate, skipped, ignored or dead-lettered).",
        &["projection", "outcome"],
    ),
    Metric::counter(
        "frameworks_projector_batch_fallbacks_total",
        "Batches the control-plane projector applied one event at a time because a set-based statement failed.",
        &["projection"],
    ),
    Metric::gauge(
        "frameworks_projector_progress_timestamp_seconds",
        metrics::Unit::Seconds,
        "When the projector last made progress (applied a batch, or found nothing waiting), as Unix time: time() minus it is the time since.",
        &["projection"],
    ),
    Metric::gauge(
        "frameworks_projector_failing",
        metrics::Unit::Count,
        "1 while the projector's batches fail (its store or Kafka unreachable) and are retried, 0 otherwise.",
        &["projection"],
    ),
];
