//! Viewer and encoder routing over HTTP.
//!
//! - `GET /play/{playbackId}`: the ranked edges for every protocol, as JSON;
//! - `GET /play/{playbackId}/{protocol}/...` (`hls/index.m3u8`,
//!   `llhls/index.m3u8`, `dash/index.mpd`, `whep`, `mp4`): a 307 to the
//!   chosen edge, charging it the viewer's provisional bandwidth;
//! - `GET /ingest/{streamKey}`: where an encoder should publish;
//! - `GET /{playbackId}`: MistServer's balancer API, the best host as text.
//!
//! An unknown playback id or stream key answers 404 with a JSON reason.
//! Stream keys are secrets: they never appear in a log line or a metric.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use frameworks_edge::answers::key_sha256;
use metrics::{counter, histogram};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use crate::directory::{Directory, IngestDecision, IngestRefusal, PlaybackTarget, Viewers};
use crate::fleet::{FleetView, SharedState};
use crate::geo::{Located, LocationSource, ViewerLocator};
use crate::routing::{EdgeState, Weights, rank};

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

/// An edge chosen for a viewer or an encoder.
#[derive(Debug, Clone)]
pub struct Placement {
    pub edge: EdgeState,
    pub score: f64,
    pub distance_km: Option<f64>,
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
    /// The best `limit` edges for a viewer of `stream` (or an encoder, with
    /// no stream) at `located`, best first. Reads the snapshot only.
    pub fn place(&self, stream: Option<Uuid>, located: &Located, limit: usize) -> Vec<Placement> {
        let started = Instant::now();
        let snapshot = self.view.snapshot();
        let stream = stream.map(|s| s.to_string());
        let estimate = self.view.settings().viewer_estimate_kbps * 1000;
        let ranked = self.view.with_charges(|charges| {
            let now = Instant::now();
            rank(
                &snapshot.fleet,
                stream.as_deref(),
                located.point,
                &self.weights,
                &|node| charges.pending_bps(node, now),
                estimate,
                limit,
            )
        });
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

fn not_found(reason: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": reason }))).into_response()
}

fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": reason })),
    )
        .into_response()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    url: String,
    node_id: String,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    distance_km: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProtocolEndpoints {
    protocol: &'static str,
    endpoints: Vec<Endpoint>,
}

fn source_name(source: LocationSource) -> &'static str {
    match source {
        LocationSource::GeoIp => "geoip",
        LocationSource::Headers => "headers",
        LocationSource::Unknown => "unknown",
    }
}

/// A playback id to its stream, or the response that ends the request.
async fn target(placer: &Placer, playback_id: &str) -> Result<PlaybackTarget, Response> {
    match placer.directory.playback(playback_id).await {
        Ok(Some(target)) if target.viewers == Viewers::Public => Ok(target),
        Ok(Some(_)) => Err((
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "this stream cannot be watched now" })),
        )
            .into_response()),
        Ok(None) => {
            counter!("frameworks_balancer_play_requests_total", "outcome" => "unknown")
                .increment(1);
            Err(not_found("unknown playback id"))
        }
        Err(error) => {
            warn!(%error, "a playback id could not be looked up");
            Err(unavailable(
                "the platform cannot look the playback id up now; retry",
            ))
        }
    }
}

async fn play(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(playback_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let target = match target(&placer, &playback_id).await {
        Ok(target) => target,
        Err(response) => return response,
    };
    let located = placer.locator.locate(Some(peer.ip()), &headers);
    let placements = placer.place(
        Some(target.stream),
        &located,
        usize::from(placer.settings.candidates),
    );
    let live = match placer.directory.live_on(target.stream).await {
        Ok(node) => node.is_some(),
        Err(error) => {
            warn!(%error, "live state unreadable; reporting the stream as not live");
            false
        }
    };
    counter!("frameworks_balancer_play_requests_total", "outcome" => "listed").increment(1);
    let scheme = &placer.settings.edge_scheme;
    let protocols: Vec<ProtocolEndpoints> = Protocol::ALL
        .iter()
        .map(|&protocol| ProtocolEndpoints {
            protocol: protocol.name(),
            endpoints: placements
                .iter()
                .map(|p| Endpoint {
                    url: protocol.url(scheme, &p.edge.public_host, &playback_id),
                    node_id: p.edge.node_id.clone(),
                    score: p.score,
                    distance_km: p.distance_km,
                })
                .collect(),
        })
        .collect();
    Json(json!({
        "playbackId": playback_id,
        "live": live,
        "viewerLocation": {
            "source": source_name(located.source),
            "latitude": located.point.map(|p| p.lat()),
            "longitude": located.point.map(|p| p.lon()),
        },
        "protocols": protocols,
    }))
    .into_response()
}

/// The chosen edge for one viewer, charged; or the response that ends the request.
async fn choose(
    placer: &Placer,
    peer: SocketAddr,
    playback_id: &str,
    headers: &HeaderMap,
) -> Result<Placement, Response> {
    let target = target(placer, playback_id).await?;
    let located = placer.locator.locate(Some(peer.ip()), headers);
    let Some(best) = placer
        .place(Some(target.stream), &located, 1)
        .into_iter()
        .next()
    else {
        counter!("frameworks_balancer_play_requests_total", "outcome" => "no_edge").increment(1);
        return Err(unavailable("no edge can take a viewer now"));
    };
    placer.charge(&best, target.stream, Some(peer.ip())).await;
    counter!("frameworks_balancer_play_requests_total", "outcome" => "redirected").increment(1);
    Ok(best)
}

async fn redirect(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((playback_id, rest)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let segment = rest.split('/').next().unwrap_or_default();
    let Some(protocol) = Protocol::from_segment(segment) else {
        return not_found("unknown protocol: use hls, llhls, dash, whep or mp4");
    };
    match choose(&placer, peer, &playback_id, &headers).await {
        Ok(best) => {
            let url = protocol.url(
                &placer.settings.edge_scheme,
                &best.edge.public_host,
                &playback_id,
            );
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response()
        }
        Err(response) => response,
    }
}

/// MistServer's load balancer API: `GET /<stream>` answers the best host.
async fn mist_compatible(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(playback_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match choose(&placer, peer, &playback_id, &headers).await {
        Ok(best) => best.edge.public_host.into_response(),
        Err(response) => response,
    }
}

async fn ingest(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stream_key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let hash = key_sha256(&stream_key);
    // Not live anywhere yet: no edge is "elsewhere" for this question.
    let decision = match placer.directory.ingest(&hash, "").await {
        Ok(decision) => decision,
        Err(error) => {
            warn!(%error, "a stream key could not be looked up");
            return unavailable("the platform cannot look the key up now; retry");
        }
    };
    let stream = match decision {
        IngestDecision::Accept { stream, .. } => stream,
        IngestDecision::Refuse(IngestRefusal::UnknownKey) => {
            return not_found("unknown stream key");
        }
        IngestDecision::Refuse(IngestRefusal::LiveElsewhere { node }) => {
            // Already publishing: a reconnecting encoder goes back where it was.
            let snapshot = placer.view.snapshot();
            let Some(edge) = snapshot
                .fleet
                .index_of(&node)
                .and_then(|index| snapshot.fleet.edge(index))
            else {
                return unavailable("the stream's edge cannot be reached now");
            };
            return Json(ingest_urls(
                &placer.settings,
                &edge.public_host,
                &stream_key,
                &node,
            ))
            .into_response();
        }
        IngestDecision::Refuse(refusal) => {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "error": refusal.to_string() })),
            )
                .into_response();
        }
    };
    let located = placer.locator.locate(Some(peer.ip()), &headers);
    let Some(best) = placer.place(None, &located, 1).into_iter().next() else {
        return unavailable("no edge can take a stream now");
    };
    info!(%stream, node = %best.edge.node_id, "encoder placed");
    Json(ingest_urls(
        &placer.settings,
        &best.edge.public_host,
        &stream_key,
        &best.edge.node_id,
    ))
    .into_response()
}

/// Where an encoder publishes on `host` (a host name, or host:port of its HTTP side).
fn ingest_urls(settings: &PlaySettings, host: &str, key: &str, node: &str) -> serde_json::Value {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(host, |(name, _)| name);
    json!({
        "nodeId": node,
        "rtmp": format!("rtmp://{name}:{}/live/{key}", settings.rtmp_port),
        "srt": format!("srt://{name}:{}?streamid={key}", settings.srt_port),
        "whip": format!("{}://{host}/webrtc/{key}", settings.edge_scheme),
    })
}

/// The routing endpoints (serve with `into_make_service_with_connect_info`).
pub fn router(placer: Placer) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/play/{playback_id}", get(play))
        .route("/play/{playback_id}/{*rest}", get(redirect))
        .route("/ingest/{stream_key}", get(ingest))
        .route("/{playback_id}", get(mist_compatible))
        .with_state(placer)
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
        let urls = ingest_urls(&settings, "edge-1.example.net:8443", "k", "n");
        assert_eq!(urls["rtmp"], "rtmp://edge-1.example.net:1935/live/k");
        assert_eq!(urls["srt"], "srt://edge-1.example.net:8889?streamid=k");
        assert_eq!(urls["whip"], "https://edge-1.example.net:8443/webrtc/k");
    }
}
