//! The node as the control stream sees it: its load (the machine and
//! MistServer's streams and viewers) for heartbeats, and MistServer as the
//! hands that carry out the balancer's commands.

use std::time::Instant;

use frameworks_events::proto::v1::telemetry::{NodeHeartbeat, NodeMetrics};
use metrics::counter;
use tracing::warn;

use crate::control::client::{EdgeHost, execute_on_mist};
use crate::control::proto::{Heartbeat, edge_command};
use crate::machine::MachineProbe;
use crate::mist::MistClient;

#[derive(Debug)]
pub struct MistHost {
    mist: MistClient,
    probe: MachineProbe,
    started: Instant,
    /// The node's uplink, for bandwidth headroom (0: unknown).
    bandwidth_limit_bps: u64,
}

impl MistHost {
    pub fn new(mist: MistClient, probe: MachineProbe, bandwidth_limit_bps: u64) -> Self {
        Self {
            mist,
            probe,
            started: Instant::now(),
            bandwidth_limit_bps,
        }
    }
}

impl EdgeHost for MistHost {
    async fn heartbeat(&self) -> Heartbeat {
        let machine = self.probe.sample().unwrap_or_else(|error| {
            warn!(%error, "could not read the machine's load");
            Default::default()
        });
        // Mist is healthy when it answers; its streams and viewers come with it.
        let (mist_healthy, active_streams, active_viewers) = match self.mist.active_streams().await
        {
            Ok(streams) => (
                true,
                u32::try_from(streams.len()).unwrap_or(u32::MAX),
                u32::try_from(streams.iter().map(|s| s.viewers).sum::<u64>()).unwrap_or(u32::MAX),
            ),
            Err(error) => {
                counter!("frameworks_edge_mist_errors_total", "call" => "active_streams")
                    .increment(1);
                warn!(%error, "MistServer did not answer active_streams");
                (false, 0, 0)
            }
        };
        let mist_version = if mist_healthy {
            self.mist.version().await.unwrap_or_default()
        } else {
            String::new()
        };
        Heartbeat {
            node: Some(NodeHeartbeat {
                edge_version: env!("CARGO_PKG_VERSION").to_owned(),
                mist_version,
                uptime_seconds: self.started.elapsed().as_secs(),
                mist_healthy,
            }),
            metrics: Some(NodeMetrics {
                cpu_percent: machine.cpu_percent,
                memory_used_bytes: machine.memory_used_bytes,
                memory_total_bytes: machine.memory_total_bytes,
                bandwidth_up_bps: machine.bandwidth_up_bps,
                bandwidth_down_bps: machine.bandwidth_down_bps,
                bandwidth_limit_bps: self.bandwidth_limit_bps,
                disk_used_bytes: machine.disk_used_bytes,
                disk_total_bytes: machine.disk_total_bytes,
                active_streams,
                active_viewers,
                window_ms: machine.window_ms,
                network_rx_bytes: machine.network_rx_bytes,
                network_tx_bytes: machine.network_tx_bytes,
                shm_used_bytes: machine.shm_used_bytes,
                shm_total_bytes: machine.shm_total_bytes,
            }),
        }
    }

    async fn execute(&self, action: edge_command::Action) -> Result<(), String> {
        execute_on_mist(&self.mist, action).await
    }
}
