//! `resolveViewerEndpoint` and `resolveIngestEndpoint`: where a player
//! plays and where an encoder publishes. Both decide with the balancer's
//! own routing ([`frameworks_balancer::placement::Placer`]), so the bridge
//! and the balancer's `/play` and `/ingest` always agree. Both are open to
//! anonymous callers: a playback id, or a stream key, is the credential.

use std::net::IpAddr;

use async_graphql::{Context, Enum, ErrorExtensions, Json, Object, SimpleObject};
use axum::http::HeaderMap;
use frameworks_balancer::placement::{IngestUrls, Placement, PlacementError, Protocol};
use frameworks_projections::queries::streams::{self as read_model, StreamCard};
use metrics::counter;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::connection::read_failed;
use super::errors::internal;
use super::scalars::Time;
use super::state;
use super::streams::ThumbnailAssets;
use crate::state::BridgeState;

/// Who is asking, as routing needs it: the peer address and the request's
/// headers (CDN location headers). Set by the HTTP layer on every request.
#[derive(Debug, Clone)]
pub struct RequestOrigin {
    pub ip: IpAddr,
    pub headers: HeaderMap,
}

/// The protocols players ask for. Edges serve HLS, LL-HLS (CMAF), DASH,
/// WebRTC (WHEP) and progressive MP4; the others are refused by name
/// rather than answered with a protocol the player did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum MediaViewerProtocol {
    Webrtc,
    Whep,
    Hls,
    Dash,
    HlsCmaf,
    Mews,
    MewsWebm,
    #[graphql(name = "MP4")]
    Mp4,
    Webm,
    Mkv,
    Ts,
    Aac,
    H264,
    #[graphql(name = "H264_WS")]
    H264Ws,
    RawWs,
    JsonWs,
    Flv,
    Hds,
    Smoothstreaming,
}

impl MediaViewerProtocol {
    fn served(self) -> Option<Protocol> {
        match self {
            Self::Hls => Some(Protocol::Hls),
            Self::HlsCmaf => Some(Protocol::LlHls),
            Self::Dash => Some(Protocol::Dash),
            Self::Webrtc | Self::Whep => Some(Protocol::Whep),
            Self::Mp4 => Some(Protocol::Mp4),
            _ => None,
        }
    }
}

/// The name a served protocol has in this API.
fn api_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Hls => "HLS",
        Protocol::LlHls => "HLS_CMAF",
        Protocol::Dash => "DASH",
        Protocol::Whep => "WHEP",
        Protocol::Mp4 => "MP4",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum MediaIngestProtocol {
    Whip,
    Rtmp,
    Srt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum IngestEndpointKind {
    IngestEndpointKindUnspecified,
    IngestEndpointKindTenantAlias,
    IngestEndpointKindRootPool,
    IngestEndpointKindClusterPool,
    IngestEndpointKindNodeSpecific,
}

/// One edge a player may play from.
#[derive(Debug, Clone, SimpleObject)]
pub struct ViewerEndpoint {
    pub node_id: String,
    pub base_url: String,
    /// The protocol of `url`.
    pub protocol: String,
    pub url: String,
    /// Kilometres between the viewer and the edge, when both are located.
    pub geo_distance: Option<f64>,
    /// The edge's routing score in [0, 1]; higher is better.
    pub load_score: Option<f64>,
    /// The URL of every protocol the edge serves, by protocol name.
    pub outputs: Option<Json<Value>>,
}

/// What is being played.
#[derive(Debug, Clone, SimpleObject)]
pub struct PlaybackMetadata {
    /// `live` (streams are the only content this platform plays).
    pub content_type: String,
    pub content_id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub duration_seconds: Option<i32>,
    /// `live` or `offline`.
    pub status: String,
    pub is_live: bool,
    pub viewers: i32,
    pub recording_size_bytes: Option<f64>,
    pub clip_source: Option<String>,
    pub created_at: Option<Time>,
    /// Not issued: this platform takes no boot-telemetry beacons.
    pub telemetry_token: Option<String>,
    pub thumbnail_assets: Option<ThumbnailAssets>,
}

/// Where to play a playback id: the best edge, then the next best.
#[derive(Debug, Clone, SimpleObject)]
pub struct ViewerEndpointResponse {
    /// Null when no edge can take a viewer now.
    pub primary: Option<ViewerEndpoint>,
    pub fallbacks: Vec<ViewerEndpoint>,
    pub metadata: Option<PlaybackMetadata>,
}

/// One edge an encoder may publish to.
#[derive(Debug, Clone, SimpleObject)]
pub struct IngestEndpoint {
    pub node_id: String,
    pub base_url: String,
    pub whip_url: Option<String>,
    pub rtmp_url: Option<String>,
    pub srt_url: Option<String>,
    pub region: Option<String>,
    /// The edge's routing score in [0, 1]; higher is better.
    pub load_score: Option<f64>,
    pub kind: IngestEndpointKind,
    pub cluster_id: String,
}

/// The stream a key publishes to.
#[derive(Debug, Clone, SimpleObject)]
pub struct IngestMetadata {
    pub stream_id: String,
    /// The key asked about (the caller holds it already).
    pub stream_key: String,
    pub tenant_id: String,
    pub recording_enabled: bool,
}

/// Where to publish with a stream key: the best edge, then the next best.
#[derive(Debug, Clone, SimpleObject)]
pub struct IngestEndpointResponse {
    pub primary: IngestEndpoint,
    pub fallbacks: Vec<IngestEndpoint>,
    pub metadata: Option<IngestMetadata>,
}

#[derive(Debug, Default)]
pub struct EndpointQuery;

#[Object]
impl EndpointQuery {
    /// Resolve a playback ID to viewer endpoints (HLS, DASH, etc.).
    /// Used by players to get the optimal CDN endpoint for playback.
    async fn resolve_viewer_endpoint(
        &self,
        ctx: &Context<'_>,
        content_id: String,
        protocol: Option<MediaViewerProtocol>,
    ) -> async_graphql::Result<Option<ViewerEndpointResponse>> {
        let state = state(ctx)?;
        let protocol = match protocol {
            None => Protocol::Hls,
            Some(asked) => asked.served().ok_or_else(|| {
                coded(
                    format!(
                        "edges do not serve {asked:?}; ask for HLS, HLS_CMAF, DASH, WHEP or MP4"
                    ),
                    "UNSUPPORTED_PROTOCOL",
                )
            })?,
        };
        let origin = ctx.data_opt::<RequestOrigin>();
        let located = locate(state, origin);
        let limit = usize::from(state.placer.settings.candidates);
        let placed = state
            .placer
            .viewer(&content_id, &located, limit)
            .await
            .map_err(|error| refusal(&error))?;
        let stream = placed.target.stream;
        if let Some(best) = placed.edges.first() {
            state
                .placer
                .charge(best, stream, origin.map(|o| o.ip))
                .await;
        }
        counter!("frameworks_bridge_resolved_total", "kind" => "viewer").increment(1);
        let scheme = &state.placer.settings.edge_scheme;
        let token = origin.and_then(|o| playback_token(&o.headers));
        let mut endpoints = placed.edges.iter().map(|placement| {
            viewer_endpoint(scheme, placement, protocol, &content_id, token.as_deref())
        });
        let primary = endpoints.next();
        let fallbacks = endpoints.collect();
        let metadata = playback_metadata(state, stream, &content_id).await?;
        Ok(Some(ViewerEndpointResponse {
            primary,
            fallbacks,
            metadata,
        }))
    }

    /// Resolve a stream key to ingest endpoints for StreamCrafter.
    /// Returns node-specific advertised protocols. A requested protocol filters candidates
    /// before ranking; it is not permission to substitute a different protocol.
    async fn resolve_ingest_endpoint(
        &self,
        ctx: &Context<'_>,
        stream_key: String,
        // Every edge takes all three protocols, so no candidate is filtered out.
        #[graphql(name = "protocol")] _protocol: Option<MediaIngestProtocol>,
    ) -> async_graphql::Result<Option<IngestEndpointResponse>> {
        let state = state(ctx)?;
        let located = locate(state, ctx.data_opt::<RequestOrigin>());
        let limit = usize::from(state.placer.settings.candidates);
        let placed = state
            .placer
            .ingest(&stream_key, &located, limit)
            .await
            .map_err(|error| refusal(&error))?;
        let mut endpoints = placed
            .edges
            .iter()
            .map(|placement| ingest_endpoint(state, placement, &stream_key));
        let Some(primary) = endpoints.next() else {
            return Err(coded("no edge can take a stream now", "UNAVAILABLE"));
        };
        let fallbacks = endpoints.collect();
        counter!("frameworks_bridge_resolved_total", "kind" => "ingest").increment(1);
        let recording_enabled = read_model::owner(&state.pool, placed.stream)
            .await
            .map_err(read_failed)?
            .is_some_and(|owner| owner.record);
        Ok(Some(IngestEndpointResponse {
            primary,
            fallbacks,
            metadata: Some(IngestMetadata {
                stream_id: placed.stream.to_string(),
                stream_key,
                tenant_id: placed.tenant.map(|t| t.to_string()).unwrap_or_default(),
                recording_enabled,
            }),
        }))
    }
}

fn coded(message: impl Into<String>, code: &'static str) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A routing refusal as a top-level error with a code the client can act on.
fn refusal(error: &PlacementError) -> async_graphql::Error {
    let code = match error {
        PlacementError::UnknownPlaybackId | PlacementError::UnknownKey => "NOT_FOUND",
        PlacementError::PlaybackDenied | PlacementError::Refused(_) => "FORBIDDEN",
        PlacementError::EdgeUnreachable => "UNAVAILABLE",
        PlacementError::Lookup(lookup) => return internal(lookup),
    };
    coded(error.to_string(), code)
}

fn locate(
    state: &BridgeState,
    origin: Option<&RequestOrigin>,
) -> frameworks_balancer::geo::Located {
    let headers = origin.map(|o| &o.headers);
    let empty = HeaderMap::new();
    state
        .placer
        .locator
        .locate(origin.map(|o| o.ip), headers.unwrap_or(&empty))
}

/// The viewer's playback token, from the headers the client sends it in:
/// `X-Frameworks-Playback-JWT`, `X-Playback-JWT` or
/// `X-Playback-Authorization: Bearer`.
fn playback_token(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-frameworks-playback-jwt")
        .or_else(|| header("x-playback-jwt"))
        .or_else(|| header("x-playback-authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

fn viewer_endpoint(
    scheme: &str,
    placement: &Placement,
    protocol: Protocol,
    playback_id: &str,
    token: Option<&str>,
) -> ViewerEndpoint {
    let host = &placement.edge.public_host;
    // The edge checks the token on the viewer's first request (USER_NEW).
    let with_token = |url: String| match token {
        Some(token) => {
            let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
            format!("{url}?jwt={encoded}")
        }
        None => url,
    };
    let outputs: Map<String, Value> = Protocol::ALL
        .iter()
        .map(|&p| {
            (
                api_name(p).to_owned(),
                Value::String(with_token(p.url(scheme, host, playback_id))),
            )
        })
        .collect();
    ViewerEndpoint {
        node_id: placement.edge.node_id.clone(),
        base_url: format!("{scheme}://{host}"),
        protocol: api_name(protocol).to_owned(),
        url: with_token(protocol.url(scheme, host, playback_id)),
        geo_distance: placement.distance_km,
        load_score: Some(placement.score),
        outputs: Some(Json(Value::Object(outputs))),
    }
}

fn ingest_endpoint(state: &BridgeState, placement: &Placement, key: &str) -> IngestEndpoint {
    let settings = &state.placer.settings;
    let host = &placement.edge.public_host;
    let urls = IngestUrls::new(settings, host, key);
    IngestEndpoint {
        node_id: placement.edge.node_id.clone(),
        base_url: format!("{}://{host}", settings.edge_scheme),
        whip_url: Some(urls.whip),
        rtmp_url: Some(urls.rtmp),
        srt_url: Some(urls.srt),
        region: None,
        load_score: Some(placement.score),
        kind: IngestEndpointKind::IngestEndpointKindNodeSpecific,
        cluster_id: placement.edge.cluster_id.clone(),
    }
}

async fn playback_metadata(
    state: &BridgeState,
    stream: Uuid,
    playback_id: &str,
) -> async_graphql::Result<Option<PlaybackMetadata>> {
    let Some(StreamCard {
        name,
        description,
        created_at,
    }) = read_model::card(&state.pool, stream)
        .await
        .map_err(read_failed)?
    else {
        return Ok(None);
    };
    let live = state
        .placer
        .directory
        .live_on(stream)
        .await
        .map_err(|e| internal(&e))?
        .is_some();
    let viewers = state
        .live
        .viewers(&stream.to_string())
        .await
        .map_err(|e| internal(&e))?;
    Ok(Some(PlaybackMetadata {
        content_type: "live".into(),
        content_id: playback_id.to_owned(),
        title: Some(name),
        description: Some(description).filter(|d| !d.is_empty()),
        duration_seconds: None,
        status: if live { "live" } else { "offline" }.into(),
        is_live: live,
        viewers: i32::try_from(viewers).unwrap_or(i32::MAX),
        recording_size_bytes: None,
        clip_source: None,
        created_at: Some(Time(created_at)),
        telemetry_token: None,
        thumbnail_assets: None,
    }))
}
