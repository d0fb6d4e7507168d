//! Prometheus metrics and health for long-running roles.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::info;

use crate::supervisor::Supervisor;

/// How often histograms drop samples older than their window.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for this process; the role serves its
/// rendering itself (see [`serve`], or the bridge's own port).
pub fn install(supervisor: &mut Supervisor) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let upkept = handle.clone();
    supervisor.restarting("metrics-upkeep", move || upkeep(upkept.clone()));
    Ok(handle)
}

async fn upkeep(handle: PrometheusHandle) {
    let mut ticks = tokio::time::interval(UPKEEP_EVERY);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// `GET /metrics` (every `metrics` counter, gauge and histogram) and
/// `GET /health` (every supervised task up) on `listen`.
pub async fn serve(listen: SocketAddr, supervisor: &mut Supervisor) -> anyhow::Result<()> {
    let handle = install(supervisor)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("serving metrics on {listen} (is the port taken?)"))?;
    info!(listen = %listener.local_addr()?, "serving /metrics and /health");
    let router = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .merge(supervisor.health().router());
    supervisor.essential("metrics-server", async move {
        axum::serve(listener, router)
            .await
            .context("serving /metrics")
    });
    Ok(())
}
