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

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics::counter;
use serde::Serialize;
use serde_json::json;
use tracing::warn;

use crate::geo::LocationSource;
use crate::placement::{IngestUrls, Placement, PlacementError, Placer, Protocol};

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

/// The response for a request no edge can be found for.
fn refused(error: &PlacementError) -> Response {
    let (outcome, status) = match error {
        PlacementError::UnknownPlaybackId | PlacementError::UnknownKey => {
            ("unknown", StatusCode::NOT_FOUND)
        }
        PlacementError::PlaybackDenied | PlacementError::Refused(_) => {
            ("refused", StatusCode::FORBIDDEN)
        }
        PlacementError::EdgeUnreachable => ("unreachable", StatusCode::SERVICE_UNAVAILABLE),
        PlacementError::Lookup(lookup) => {
            warn!(error = %lookup, "a routing look-up failed");
            ("lookup_failed", StatusCode::SERVICE_UNAVAILABLE)
        }
    };
    counter!("frameworks_balancer_play_requests_total", "outcome" => outcome).increment(1);
    (status, Json(json!({ "error": error.to_string() }))).into_response()
}

async fn play(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(playback_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let located = placer.locator.locate(Some(peer.ip()), &headers);
    let limit = usize::from(placer.settings.candidates);
    let placed = match placer.viewer(&playback_id, &located, limit).await {
        Ok(placed) => placed,
        Err(error) => return refused(&error),
    };
    let live = match placer.directory.live_on(placed.target.stream).await {
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
            endpoints: placed
                .edges
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
    let located = placer.locator.locate(Some(peer.ip()), headers);
    let placed = placer
        .viewer(playback_id, &located, 1)
        .await
        .map_err(|error| refused(&error))?;
    let Some(best) = placed.edges.into_iter().next() else {
        counter!("frameworks_balancer_play_requests_total", "outcome" => "no_edge").increment(1);
        return Err(unavailable("no edge can take a viewer now"));
    };
    placer
        .charge(&best, placed.target.stream, Some(peer.ip()))
        .await;
    counter!("frameworks_balancer_play_requests_total", "outcome" => "redirected").increment(1);
    Ok(best)
}

async fn redirect(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((playback_id, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let segment = rest.split('/').next().unwrap_or_default();
    let Some(protocol) = Protocol::from_segment(segment) else {
        return not_found("unknown protocol: use hls, llhls, dash, whep or mp4");
    };
    match choose(&placer, peer, &playback_id, &headers).await {
        Ok(best) => {
            let mut url = protocol.url(
                &placer.settings.edge_scheme,
                &best.edge.public_host,
                &playback_id,
            );
            // The viewer's query goes along: a playback token (`jwt=`) is
            // checked by the edge.
            if let Some(query) = query.filter(|q| !q.is_empty()) {
                url.push('?');
                url.push_str(&query);
            }
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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngestAnswer {
    node_id: String,
    #[serde(flatten)]
    urls: IngestUrls,
}

async fn ingest(
    State(placer): State<Placer>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stream_key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let located = placer.locator.locate(Some(peer.ip()), &headers);
    let placed = match placer.ingest(&stream_key, &located, 1).await {
        Ok(placed) => placed,
        Err(error) => return refused(&error),
    };
    let Some(best) = placed.edges.into_iter().next() else {
        return unavailable("no edge can take a stream now");
    };
    Json(IngestAnswer {
        urls: IngestUrls::new(&placer.settings, &best.edge.public_host, &stream_key),
        node_id: best.edge.node_id,
    })
    .into_response()
}

/// The routing endpoints (serve with `into_make_service_with_connect_info`).
pub fn router(placer: Placer) -> Router {
    Router::new()
        .route("/play/{playback_id}", get(play))
        .route("/play/{playback_id}/{*rest}", get(redirect))
        .route("/ingest/{stream_key}", get(ingest))
        .route("/{playback_id}", get(mist_compatible))
        .with_state(placer)
}
