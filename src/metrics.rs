//! Prometheus metrics for long-running roles.

use std::net::SocketAddr;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves every `metrics` counter, gauge and histogram at `http://<listen>/metrics`.
pub fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()
        .with_context(|| format!("serving metrics on {listen} (is the port taken?)"))
}
