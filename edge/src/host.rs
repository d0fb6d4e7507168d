//! The node as the control stream sees it: its load (the machine and
//! MistServer's streams and viewers) for heartbeats, and MistServer as the
//! hands that carry out the balancer's commands ([`MistCommands`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use frameworks_events::proto::v1::telemetry::{NodeHeartbeat, NodeMetrics, StreamSampled};
use metrics::counter;
use tracing::{info, warn};

use crate::answers::RouteTable;
use crate::control::client::EdgeHost;
use crate::machine::MachineProbe;
use crate::mist::{MistClient, MistError};
use frameworks_edge_protocol::proto::{Heartbeat, StreamSamples, edge_command};

/// What Mist serves now: each active stream with its counters, and its
/// connections' current rates and viewer protocols (from `clients`).
pub async fn sample_mist(mist: &MistClient) -> Result<StreamSamples, MistError> {
    let streams = mist.active_streams().await?;
    let clients = mist.clients().await?;
    let mut samples: HashMap<&str, StreamSampled> = streams
        .iter()
        .map(|stream| {
            let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
            (
                stream.name.as_str(),
                StreamSampled {
                    internal_name: stream.name.clone(),
                    status: stream.status.clone(),
                    viewers: count(stream.viewers),
                    inputs: count(stream.inputs),
                    outputs: count(stream.outputs),
                    up_bytes: stream.up_bytes,
                    down_bytes: stream.down_bytes,
                    viewer_seconds: stream.viewer_seconds,
                    ..Default::default()
                },
            )
        })
        .collect();
    for client in &clients {
        let Some(sample) = samples.get_mut(client.stream.as_str()) else {
            continue;
        };
        sample.up_bps += client.up_bps;
        sample.down_bps += client.down_bps;
        // Inputs are "INPUT:RTMP" and the like; pushes out "OUTPUT:...".
        if !client.protocol.contains(':') {
            *sample
                .viewers_by_protocol
                .entry(client.protocol.clone())
                .or_default() += 1;
        }
    }
    let mut streams: Vec<StreamSampled> = samples.into_values().collect();
    streams.sort_by(|a, b| a.internal_name.cmp(&b.internal_name));
    Ok(StreamSamples { streams })
}

/// Carries out the balancer's commands on MistServer. Every push and
/// recording it starts is let through PUSH_OUT_START first (Mist asks
/// before it pushes anything out), and forgotten once stopped.
#[derive(Clone)]
pub struct MistCommands {
    mist: Arc<MistClient>,
    pushes: Arc<dyn RouteTable>,
    /// Recordings go to `<recordings>/<stream>/<unix milliseconds>.ts`.
    recordings: PathBuf,
}

impl std::fmt::Debug for MistCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MistCommands")
            .field("recordings", &self.recordings)
            .finish_non_exhaustive()
    }
}

impl MistCommands {
    pub fn new(mist: Arc<MistClient>, pushes: Arc<dyn RouteTable>, recordings: PathBuf) -> Self {
        Self {
            mist,
            pushes,
            recordings,
        }
    }

    /// Where the stream's recordings go.
    fn recording_dir(&self, stream: &str) -> Result<PathBuf, String> {
        // A stream name never walks out of the recordings directory.
        if stream.is_empty() || stream.contains(['/', '\\']) || stream.starts_with('.') {
            return Err(format!("{stream:?} is not a stream name"));
        }
        Ok(self.recordings.join(stream))
    }

    /// Carries out `action`; the error says why it failed, for the operator.
    pub async fn execute(&self, action: edge_command::Action) -> Result<(), String> {
        use edge_command::Action;
        match action {
            Action::StartPush(push) => self.start_push(&push.stream, &push.target).await,
            Action::StopPush(push) => {
                let stopped = self
                    .stop_pushes(&push.stream, |target| target == push.target)
                    .await?;
                if stopped == 0 {
                    return Err(format!("no push of {} to that target", push.stream));
                }
                Ok(())
            }
            Action::StartRecording(stream) => {
                let dir = self.recording_dir(&stream)?;
                let running = self.mist.push_list().await.map_err(|e| e.to_string())?;
                if running.iter().any(|p| {
                    p.stream == stream && std::path::Path::new(&p.target).starts_with(&dir)
                }) {
                    return Err(format!("{stream} is being recorded already"));
                }
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let started = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis();
                let file = dir.join(format!("{started}.ts"));
                let target = file.to_string_lossy().into_owned();
                self.start_push(&stream, &target).await?;
                info!(%stream, file = %target, "recording");
                Ok(())
            }
            Action::StopRecording(stream) => {
                let dir = self.recording_dir(&stream)?;
                let stopped = self
                    .stop_pushes(&stream, |target| {
                        std::path::Path::new(target).starts_with(&dir)
                    })
                    .await?;
                if stopped == 0 {
                    return Err(format!("{stream} is not being recorded"));
                }
                Ok(())
            }
            Action::NukeStream(stream) => self
                .mist
                .nuke_stream(&stream)
                .await
                .map_err(|e| e.to_string()),
            Action::InvalidateSessions(stream) => self
                .mist
                .invalidate_sessions(&stream)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    async fn start_push(&self, stream: &str, target: &str) -> Result<(), String> {
        self.pushes.allow_push(stream, target, true);
        if let Err(error) = self.mist.push_start(stream, target).await {
            self.pushes.allow_push(stream, target, false);
            return Err(error.to_string());
        }
        Ok(())
    }

    /// Stops the stream's pushes whose target `matches`; how many.
    async fn stop_pushes(
        &self,
        stream: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<usize, String> {
        let pushes = self.mist.push_list().await.map_err(|e| e.to_string())?;
        let stopping: Vec<_> = pushes
            .iter()
            .filter(|p| p.stream == stream && matches(&p.target))
            .collect();
        if stopping.is_empty() {
            return Ok(0);
        }
        let ids: Vec<u64> = stopping.iter().map(|p| p.id).collect();
        self.mist.push_stop(&ids).await.map_err(|e| e.to_string())?;
        for push in &stopping {
            self.pushes.allow_push(stream, &push.target, false);
        }
        Ok(stopping.len())
    }
}

#[derive(Debug)]
pub struct MistHost {
    mist: Arc<MistClient>,
    commands: MistCommands,
    probe: MachineProbe,
    started: Instant,
    /// The node's uplink, for bandwidth headroom (0: unknown).
    bandwidth_limit_bps: u64,
}

impl MistHost {
    pub fn new(commands: MistCommands, probe: MachineProbe, bandwidth_limit_bps: u64) -> Self {
        Self {
            mist: Arc::clone(&commands.mist),
            commands,
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
        self.commands.execute(action).await
    }

    async fn sample(&self) -> Option<StreamSamples> {
        match sample_mist(&self.mist).await {
            Ok(samples) => Some(samples),
            Err(error) => {
                counter!("frameworks_edge_mist_errors_total", "call" => "sample").increment(1);
                warn!(%error, "could not poll MistServer's streams and clients");
                None
            }
        }
    }
}
