//! Where a viewer or an encoder goes: the one routing decision that the
//! balancer's HTTP endpoints ([`crate::play`]) and the GraphQL bridge's
//! `resolveViewerEndpoint` and `resolveIngestEndpoint` share.
//!
//! A [`Placer`] resolves a playback id or a stream key through the
//! [`Directory`], keeps to the clusters the stream's tenant may use, and
//! ranks the edges of the routing snapshot ([`FleetView`]). It never
//! blocks on anything but the directory's (cached) look-ups.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use frameworks_edge_protocol::keys::key_sha256;
use frameworks_projections::live::LiveState;
use metrics::{counter, histogram};
use sqlx::PgPool;
use tracing::{info, warn};
use uuid::Uuid;

use crate::directory::{
    ClusterSet, Directory, DirectoryError, IngestDecision, IngestRefusal, PlaybackTarget, Viewers,
};
use crate::fleet::{FleetSettings, FleetView, SharedState};
use crate::geo::{GeoIpError, GeoIpTable, Located, ViewerLocator};
use crate::routing::{Demand, EdgeState, Weights, rank};

/// Everything routing is tuned by; the balancer and the bridge take the
/// same flags (and `FRAMEWORKS_BALANCER_*` variables) so they decide alike.
#[derive(Debug, Clone, clap::Args)]
pub struct RoutingSettings {
    #[command(flatten)]
    pub fleet: FleetSettings,

    #[command(flatten)]
    pub weights: Weights,

    #[command(flatten)]
    pub play: PlaySettings,

    /// Seconds a stream-key or playback look-up is cached (events drop it sooner).
    #[arg(
        long = "directory-ttl-seconds",
        env = "FRAMEWORKS_BALANCER_DIRECTORY_TTL_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub directory_ttl_seconds: u64,

    /// GeoLite2/GeoIP2 City "Blocks" CSV files (IPv4 and IPv6) locating viewers by address.
    #[arg(
        long = "geoip-csv",
        env = "FRAMEWORKS_BALANCER_GEOIP_CSV",
        value_delimiter = ','
    )]
    pub geoip_csv: Vec<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlaySettings {
    /// Scheme of the URLs viewers are sent to on edges.
    #[arg(
        long = "edge-scheme",
        env = "FRAMEWORKS_BALANCER_EDGE_SCHEME",
        default_value = "https",
        value_parser = ["http", "https"]
    )]
    pub edge_scheme: String,

    /// Port encoders publish RTMP to on edges.
    #[arg(
        long = "edge-rtmp-port",
        env = "FRAMEWORKS_BALANCER_EDGE_RTMP_PORT",
        default_value_t = 1935
    )]
    pub rtmp_port: u16,

    /// Port encoders publish SRT to on edges.
    #[arg(
        long = "edge-srt-port",
        env = "FRAMEWORKS_BALANCER_EDGE_SRT_PORT",
        default_value_t = 8889
    )]
    pub srt_port: u16,

    /// Edges listed per protocol by GET /play/{playbackId}.
    #[arg(
        long = "play-candidates",
        env = "FRAMEWORKS_BALANCER_PLAY_CANDIDATES",
        default_value_t = 3,
        value_parser = clap::value_parser!(u16).range(1..=50)
    )]
    pub candidates: u16,
}

/// A playback protocol and where MistServer serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Hls,
    LlHls,
    Dash,
    Whep,
    Mp4,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [Self::Hls, Self::LlHls, Self::Dash, Self::Whep, Self::Mp4];

    pub fn name(self) -> &'static str {
        match self {
            Self::Hls => "HLS",
            Self::LlHls => "LL-HLS",
            Self::Dash => "DASH",
            Self::Whep => "WHEP",
            Self::Mp4 => "MP4",
        }
    }

    /// The protocol a `/play/{id}/<segment>/...` path asks for.
    pub fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "hls" => Some(Self::Hls),
            "llhls" | "cmaf" => Some(Self::LlHls),
            "dash" => Some(Self::Dash),
            "whep" | "webrtc" => Some(Self::Whep),
            "mp4" => Some(Self::Mp4),
            _ => None,
        }
    }

    /// The URL of `playback_id` on an edge (its PLAY_REWRITE maps the id to the stream).
    pub fn url(self, scheme: &str, host: &str, playback_id: &str) -> String {
        match self {
            Self::Hls => format!("{scheme}://{host}/hls/{playback_id}/index.m3u8"),
            Self::LlHls => format!("{scheme}://{host}/cmaf/{playback_id}/index.m3u8"),
            Self::Dash => format!("{scheme}://{host}/cmaf/{playback_id}/index.mpd"),
            Self::Whep => format!("{scheme}://{host}/webrtc/{playback_id}"),
            Self::Mp4 => format!("{scheme}://{host}/{playback_id}.mp4"),
        }
    }
}

/// Where an encoder publishes on one edge.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngestUrls {
    pub rtmp: String,
    pub srt: String,
    pub whip: String,
}

impl IngestUrls {
    /// The URLs for `key` on `host` (a host name, or host:port of the edge's HTTP side).
    pub fn new(settings: &PlaySettings, host: &str, key: &str) -> Self {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(host, |(name, _)| name);
        Self {
            rtmp: format!("rtmp://{name}:{}/live/{key}", settings.rtmp_port),
            srt: format!("srt://{name}:{}?streamid={key}", settings.srt_port),
            whip: format!("{}://{host}/webrtc/{key}", settings.edge_scheme),
        }
    }
}

/// An edge chosen for a viewer or an encoder.
#[derive(Debug, Clone)]
pub struct Placement {
    pub edge: EdgeState,
    pub score: f64,
    pub distance_km: Option<f64>,
}

/// Why nobody can be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("unknown playback id")]
    UnknownPlaybackId,
    #[error("this stream cannot be watched now")]
    PlaybackDenied,
    #[error("unknown stream key")]
    UnknownKey,
    #[error("{0}")]
    Refused(IngestRefusal),
    #[error("the stream's edge cannot be reached now")]
    EdgeUnreachable,
    #[error("the platform cannot look it up now; retry")]
    Lookup(#[from] DirectoryError),
}

/// The edges for a viewer of a playback id, best first (possibly none).
#[derive(Debug, Clone)]
pub struct ViewerPlacement {
    pub target: PlaybackTarget,
    pub edges: Vec<Placement>,
}

/// The edges for an encoder, best first (possibly none).
#[derive(Debug, Clone)]
pub struct IngestPlacement {
    pub stream: Uuid,
    pub tenant: Option<Uuid>,
    /// The stream is live already: `edges` is the one it is live on, where
    /// a reconnecting encoder must go back to.
    pub pinned: bool,
    pub edges: Vec<Placement>,
}

/// Routing as the HTTP endpoints and the GraphQL bridge use it.
#[derive(Clone)]
pub struct Placer {
    pub directory: Directory,
    pub view: Arc<FleetView>,
    pub shared: SharedState,
    pub weights: Weights,
    pub locator: ViewerLocator,
    pub settings: PlaySettings,
}

impl std::fmt::Debug for Placer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placer")
            .field("weights", &self.weights)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Placer {
    /// Builds routing on the read models and keeps its snapshot fresh in a
    /// task of its own (the first round runs at once): for tests and tools.
    /// Roles [`open`](Self::open) it and supervise [`Self::keep_fresh`].
    pub fn start(
        pool: PgPool,
        live: LiveState,
        shared: SharedState,
        settings: &RoutingSettings,
    ) -> Result<Placer, GeoIpError> {
        let placer = Self::open(pool.clone(), live.clone(), shared, settings)?;
        tokio::spawn(placer.keep_fresh(pool, live));
        Ok(placer)
    }

    /// Keeps the fleet snapshot fresh for as long as it runs.
    pub fn keep_fresh(
        &self,
        pool: PgPool,
        live: LiveState,
    ) -> impl Future<Output = ()> + Send + use<> {
        Arc::clone(&self.view).keep_fresh(pool, live, self.shared.clone())
    }

    /// Builds routing on the read models; its fleet snapshot is empty until
    /// [`Self::keep_fresh`] runs. The directory's cache is the caller's to
    /// keep current ([`Directory::follow`]).
    pub fn open(
        pool: PgPool,
        live: LiveState,
        shared: SharedState,
        settings: &RoutingSettings,
    ) -> Result<Placer, GeoIpError> {
        let geoip = if settings.geoip_csv.is_empty() {
            None
        } else {
            let table = GeoIpTable::from_csv_paths(&settings.geoip_csv)?;
            info!(networks = table.len(), "GeoIP database loaded");
            Some(Arc::new(table))
        };
        let directory = Directory::new(
            pool.clone(),
            live.clone(),
            Duration::from_secs(settings.directory_ttl_seconds),
        );
        let view = FleetView::new(settings.fleet.clone());
        Ok(Placer {
            directory,
            view,
            shared,
            weights: settings.weights,
            locator: ViewerLocator { geoip },
            settings: settings.play.clone(),
        })
    }

    /// The best `limit` edges for a viewer of `stream` (or an encoder, with
    /// no stream) at `located`, among `clusters` (any when `None`), best
    /// first. Reads the snapshot only.
    pub fn place(
        &self,
        stream: Option<Uuid>,
        clusters: Option<&ClusterSet>,
        located: &Located,
        limit: usize,
    ) -> Vec<Placement> {
        let started = Instant::now();
        let snapshot = self.view.snapshot();
        let stream = stream.map(|s| s.to_string());
        let demand = Demand {
            stream: stream.as_deref(),
            clusters: clusters.map(|set| &**set),
            viewer: located.point,
            estimate_bps: self.view.settings().viewer_estimate_kbps * 1000,
            limit,
        };
        let ranked = self.view.with_charges(|charges| {
            let now = Instant::now();
            rank(&snapshot.fleet, &demand, &self.weights, &|node| {
                charges.pending_bps(node, now)
            })
        });
        if ranked.first().is_some_and(|r| r.over_limits) {
            counter!("frameworks_balancer_placements_over_limits_total").increment(1);
        }
        let placements = ranked
            .into_iter()
            .filter_map(|ranked| {
                let edge = snapshot.fleet.edge(ranked.index)?.clone();
                let distance_km = located
                    .point
                    .zip(edge.location)
                    .map(|(viewer, at)| viewer.distance_km(&at));
                Some(Placement {
                    edge,
                    score: ranked.score,
                    distance_km,
                })
            })
            .collect();
        histogram!("frameworks_balancer_routing_seconds").record(started.elapsed().as_secs_f64());
        placements
    }

    /// The clusters a tenant's streams may be placed on (any, for a stream without a tenant).
    async fn clusters(&self, tenant: Option<Uuid>) -> Result<Option<ClusterSet>, DirectoryError> {
        match tenant {
            Some(tenant) => Ok(Some(self.directory.usable_clusters(tenant).await?)),
            None => Ok(None),
        }
    }

    /// The best `limit` edges for a viewer of `playback_id` at `located`.
    pub async fn viewer(
        &self,
        playback_id: &str,
        located: &Located,
        limit: usize,
    ) -> Result<ViewerPlacement, PlacementError> {
        let target = match self.directory.playback(playback_id).await? {
            None => return Err(PlacementError::UnknownPlaybackId),
            Some(target) if matches!(target.viewers, Viewers::Denied) => {
                return Err(PlacementError::PlaybackDenied);
            }
            Some(target) => target,
        };
        let clusters = self.clusters(target.tenant).await?;
        let edges = self.place(Some(target.stream), clusters.as_ref(), located, limit);
        Ok(ViewerPlacement { target, edges })
    }

    /// The best `limit` edges for an encoder publishing with `stream_key`
    /// from `located`; the stream's own edge alone if it is live already.
    pub async fn ingest(
        &self,
        stream_key: &str,
        located: &Located,
        limit: usize,
    ) -> Result<IngestPlacement, PlacementError> {
        let (stream, tenant) = match self.directory.key(&key_sha256(stream_key)).await? {
            IngestDecision::Accept { stream, tenant } => (stream, tenant),
            IngestDecision::Refuse(IngestRefusal::UnknownKey) => {
                return Err(PlacementError::UnknownKey);
            }
            IngestDecision::Refuse(refusal) => return Err(PlacementError::Refused(refusal)),
        };
        if let Some(node) = self.directory.live_on(stream).await? {
            let snapshot = self.view.snapshot();
            let edge = snapshot
                .fleet
                .index_of(&node)
                .and_then(|index| snapshot.fleet.edge(index))
                .ok_or(PlacementError::EdgeUnreachable)?;
            let distance_km = located
                .point
                .zip(edge.location)
                .map(|(at, edge)| at.distance_km(&edge));
            return Ok(IngestPlacement {
                stream,
                tenant,
                pinned: true,
                edges: vec![Placement {
                    edge: edge.clone(),
                    score: 1.0,
                    distance_km,
                }],
            });
        }
        let clusters = self.clusters(tenant).await?;
        let edges = self.place(None, clusters.as_ref(), located, limit);
        info!(%stream, edges = edges.len(), "encoder placed");
        Ok(IngestPlacement {
            stream,
            tenant,
            pinned: false,
            edges,
        })
    }

    /// Charges the viewer's provisional bandwidth to the chosen edge, here
    /// at once and for the other instances through Redis.
    pub async fn charge(&self, placement: &Placement, stream: Uuid, viewer: Option<IpAddr>) {
        let viewer = viewer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let key = format!("{stream}/{viewer}/{}", Uuid::now_v7().simple());
        let bps = self.view.settings().viewer_estimate_kbps * 1000;
        let node = &placement.edge.node_id;
        self.view
            .with_charges(|charges| charges.charge(node, key.clone(), bps, Instant::now()));
        if let Err(error) = self.shared.charge(node, &key, bps).await {
            counter!("frameworks_balancer_charge_failures_total").increment(1);
            warn!(%error, "a provisional charge could not be shared");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_has_its_mist_path() {
        let urls: Vec<String> = Protocol::ALL
            .iter()
            .map(|p| p.url("https", "edge-1.example.net", "pb1"))
            .collect();
        assert_eq!(
            urls,
            [
                "https://edge-1.example.net/hls/pb1/index.m3u8",
                "https://edge-1.example.net/cmaf/pb1/index.m3u8",
                "https://edge-1.example.net/cmaf/pb1/index.mpd",
                "https://edge-1.example.net/webrtc/pb1",
                "https://edge-1.example.net/pb1.mp4",
            ]
        );
        assert_eq!(Protocol::from_segment("llhls"), Some(Protocol::LlHls));
        assert_eq!(Protocol::from_segment("flv"), None);
    }

    #[test]
    fn ingest_urls_use_the_host_name_for_rtmp_and_srt() {
        let settings = PlaySettings {
            edge_scheme: "https".into(),
            rtmp_port: 1935,
            srt_port: 8889,
            candidates: 3,
        };
        let urls = IngestUrls::new(&settings, "edge-1.example.net:8443", "k");
        assert_eq!(urls.rtmp, "rtmp://edge-1.example.net:1935/live/k");
        assert_eq!(urls.srt, "srt://edge-1.example.net:8889?streamid=k");
        assert_eq!(urls.whip, "https://edge-1.example.net:8443/webrtc/k");
    }
}
