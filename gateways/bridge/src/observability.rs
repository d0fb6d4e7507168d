//! Every metric this crate records, declared once (see
//! `frameworks_events::observability`): the binary describes them to the
//! Prometheus recorder, and a test checks the code records exactly these.

use frameworks_events::observability::{Buckets, Metric};

pub const METRICS: &[Metric] = &[
    Metric::counter(
        "frameworks_bridge_accepted_not_visible_total",
        "Mutations whose command was accepted but whose effect the read model did not show within the read-your-writes timeout (answered ACCEPTED_NOT_VISIBLE, a delete as pending, a new API token from its command), by resource.",
        &["resource"],
    ),
    Metric::histogram(
        "frameworks_bridge_read_your_writes_seconds",
        "Time a mutation waited until the control-plane read model held its aggregate's latest version, in seconds (recorded only when the wait succeeds).",
        &[],
        Buckets::Latency,
    ),
    Metric::histogram(
        "frameworks_bridge_request_seconds",
        "Time to answer one GraphQL POST request, in seconds.",
        &[],
        Buckets::Latency,
    ),
    Metric::counter(
        "frameworks_bridge_requests_total",
        "GraphQL POST requests answered, by HTTP status code.",
        &["status"],
    ),
    Metric::counter(
        "frameworks_bridge_resolved_total",
        "Edge endpoints the GraphQL API resolved, by kind (viewer or ingest).",
        &["kind"],
    ),
    Metric::counter(
        "frameworks_bridge_subscription_lagged_total",
        "Events GraphQL subscriptions skipped because they fell behind the live event feed.",
        &[],
    ),
    Metric::counter(
        "frameworks_bridge_ws_connections_total",
        "GraphQL WebSocket connections whose connection_init carried a valid credential.",
        &[],
    ),
];
