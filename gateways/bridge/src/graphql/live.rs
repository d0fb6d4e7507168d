//! Subscriptions, fed from Kafka through the bridge's [`SubscriptionHub`]:
//! `liveStreamEvents`, `liveConnectionEvents` and `liveTrackListUpdates`.
//! Every subscription sees only its tenant's events.
//!
//! [`SubscriptionHub`]: crate::feed::SubscriptionHub

use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Enum, ID, Json, SimpleObject, Subscription};
use frameworks_events::proto::v1::telemetry::{BufferState, Track};
use frameworks_events::{Event, EventPayload};
use futures::{Stream as AsyncStream, StreamExt};
use metrics::counter;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use super::errors::bad_input;
use super::ids;
use super::scalars::Time;
use super::streams::Stream;
use super::{require, state};
use crate::auth::{Principal, Scope};
use crate::feed::Interest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum StreamEventType {
    StreamLifecycleUpdate,
    StreamStart,
    StreamEnd,
    BufferUpdate,
    TrackListUpdate,
    PlayRewrite,
    StreamSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum StreamStatus {
    Offline,
    Live,
    Recording,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum StreamEventSource {
    Historical,
    Live,
}

/// Where an event happened, from the node's enrolment (empty when the node
/// that reported it is not enrolled in a cluster).
#[derive(Debug, Clone, Default)]
struct Origin {
    cluster_id: String,
    region: String,
}

/// A stream lifecycle, buffer, health or track event from an edge.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct StreamEvent {
    pub id: ID,
    pub event_id: String,
    pub stream_id: Option<String>,
    pub node_id: Option<String>,
    #[graphql(name = "type")]
    pub kind: StreamEventType,
    pub status: Option<StreamStatus>,
    pub timestamp: Time,
    pub details: Option<String>,
    pub payload: Option<Json<serde_json::Value>>,
    pub source: StreamEventSource,
    pub buffer_state: Option<String>,
    pub has_issues: Option<bool>,
    pub track_count: Option<i32>,
    pub quality_tier: Option<String>,
    pub primary_width: Option<i32>,
    pub primary_height: Option<i32>,
    pub primary_fps: Option<f64>,
    pub primary_codec: Option<String>,
    /// Primary video bitrate in kbps.
    pub primary_bitrate: Option<i32>,
    pub downloaded_bytes: Option<f64>,
    pub uploaded_bytes: Option<f64>,
    pub total_viewers: Option<i32>,
    pub total_inputs: Option<i32>,
    pub total_outputs: Option<i32>,
    pub viewer_seconds: Option<f64>,
    pub request_url: Option<String>,
    pub protocol: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub location: Option<String>,
    pub country_code: Option<String>,
    pub city: Option<String>,
    pub source_region: String,
    pub source_cluster_id: String,
    pub stream_origin_region: String,
    pub stream_origin_cluster_id: String,
    pub schema_version: i32,
    #[graphql(skip)]
    stream_uuid: Option<Uuid>,
    #[graphql(skip)]
    principal: Arc<Principal>,
}

#[ComplexObject]
impl StreamEvent {
    async fn stream(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stream>> {
        referenced_stream(ctx, &self.principal, self.stream_uuid).await
    }
}

/// A viewer connecting to or leaving a stream.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct ConnectionEvent {
    pub id: ID,
    pub event_id: String,
    pub timestamp: Time,
    pub stream_id: String,
    pub session_id: String,
    pub connection_addr: Option<String>,
    pub connector: String,
    pub node_id: String,
    pub country_code: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub client_bucket: Option<GeoBucket>,
    pub node_bucket: Option<GeoBucket>,
    /// `connect` or `disconnect`.
    pub event_type: String,
    pub request_url: Option<String>,
    pub cluster_id: String,
    pub origin_cluster_id: Option<String>,
    pub control_cell_id: Option<String>,
    pub session_duration_seconds: Option<i32>,
    pub bytes_transferred: Option<f64>,
    #[graphql(skip)]
    stream_uuid: Option<Uuid>,
    #[graphql(skip)]
    principal: Arc<Principal>,
}

#[ComplexObject]
impl ConnectionEvent {
    async fn stream(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stream>> {
        referenced_stream(ctx, &self.principal, self.stream_uuid).await
    }
}

/// An H3 cell, for coarse geography.
#[derive(Debug, Clone, SimpleObject)]
pub struct GeoBucket {
    pub h3_index: String,
    pub resolution: i32,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct StreamTrack {
    pub track_name: String,
    pub track_type: String,
    pub codec: Option<String>,
    pub bitrate_kbps: Option<i32>,
    pub bitrate_bps: Option<i64>,
    pub buffer: Option<i32>,
    pub jitter: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub fps: Option<f64>,
    pub resolution: Option<String>,
    pub has_b_frames: Option<bool>,
    pub channels: Option<i32>,
    pub sample_rate: Option<i32>,
}

/// A stream's track list as its edge reports it.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct TrackListUpdate {
    pub stream_id: String,
    pub tracks: Option<Vec<StreamTrack>>,
    pub total_tracks: Option<i32>,
    pub video_track_count: Option<i32>,
    pub audio_track_count: Option<i32>,
    pub quality_tier: Option<String>,
    pub primary_width: Option<i32>,
    pub primary_height: Option<i32>,
    pub primary_fps: Option<f64>,
    pub primary_video_bitrate: Option<i32>,
    pub primary_video_codec: Option<String>,
    pub primary_audio_bitrate: Option<i32>,
    pub primary_audio_codec: Option<String>,
    pub primary_audio_channels: Option<i32>,
    pub primary_audio_sample_rate: Option<i32>,
    #[graphql(skip)]
    stream_uuid: Option<Uuid>,
    #[graphql(skip)]
    principal: Arc<Principal>,
}

#[ComplexObject]
impl TrackListUpdate {
    async fn stream(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Stream>> {
        referenced_stream(ctx, &self.principal, self.stream_uuid).await
    }
}

#[derive(Debug, Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// Stream lifecycle, buffer, health and track events; optionally one stream's.
    async fn live_stream_events(
        &self,
        ctx: &Context<'_>,
        stream_id: Option<ID>,
    ) -> async_graphql::Result<impl AsyncStream<Item = StreamEvent> + use<>> {
        let (events, principal, only) = feed(ctx, stream_id.as_ref())?;
        let origins = state(ctx)?.origins.clone();
        let pool = state(ctx)?.pool.clone();
        Ok(events.filter_map(move |event| {
            let (principal, origins, pool) = (principal.clone(), origins.clone(), pool.clone());
            async move {
                if !visible(&event, &principal, only) {
                    return None;
                }
                let node = stream_event_node(&event)?;
                let origin = origins.of(&pool, &node).await;
                stream_event(&event, principal, node, origin)
            }
        }))
    }

    /// Viewers connecting and leaving; optionally one stream's.
    async fn live_connection_events(
        &self,
        ctx: &Context<'_>,
        stream_id: Option<ID>,
    ) -> async_graphql::Result<impl AsyncStream<Item = ConnectionEvent> + use<>> {
        let (events, principal, only) = feed(ctx, stream_id.as_ref())?;
        let origins = state(ctx)?.origins.clone();
        let pool = state(ctx)?.pool.clone();
        Ok(events.filter_map(move |event| {
            let (principal, origins, pool) = (principal.clone(), origins.clone(), pool.clone());
            async move {
                if !visible(&event, &principal, only) {
                    return None;
                }
                let node = match &event.payload {
                    EventPayload::ViewerSessionStarted(p) => p.node_id.clone(),
                    EventPayload::ViewerSessionEnded(p) => p.node_id.clone(),
                    _ => return None,
                };
                let origin = origins.of(&pool, &node).await;
                connection_event(&event, principal, node, origin)
            }
        }))
    }

    /// A stream's track list whenever its edge reports a change.
    async fn live_track_list_updates(
        &self,
        ctx: &Context<'_>,
        stream_id: ID,
    ) -> async_graphql::Result<impl AsyncStream<Item = TrackListUpdate> + use<>> {
        let (events, principal, only) = feed(ctx, Some(&stream_id))?;
        Ok(events.filter_map(move |event| {
            let principal = principal.clone();
            async move {
                if !visible(&event, &principal, only) {
                    return None;
                }
                match &event.payload {
                    EventPayload::TrackListUpdated(p) => {
                        Some(track_list_update(&event, &p.tracks, principal))
                    }
                    _ => None,
                }
            }
        }))
    }
}

/// The stream an event refers to, as the caller may see it (cached briefly).
async fn referenced_stream(
    ctx: &Context<'_>,
    principal: &Principal,
    id: Option<Uuid>,
) -> async_graphql::Result<Option<Stream>> {
    let Some(id) = id else {
        return Ok(None);
    };
    let state = state(ctx)?;
    state.stream_cache.get(&state.pool, principal, id).await
}

/// The caller's events, as a stream that skips (and counts) what it lags behind on.
#[allow(clippy::type_complexity)]
pub(super) fn feed(
    ctx: &Context<'_>,
    stream_id: Option<&ID>,
) -> async_graphql::Result<(
    impl AsyncStream<Item = Arc<Event>> + use<>,
    Arc<Principal>,
    Option<Uuid>,
)> {
    let principal = Arc::new(require(ctx, Scope::StreamsRead)?.clone());
    let only = match stream_id {
        None => None,
        Some(id) => match ids::raw("Stream", &id.0).map(|raw| raw.parse::<Uuid>()) {
            Ok(Ok(uuid)) => Some(uuid),
            _ => return Err(bad_input("streamId", "is not a stream id")),
        },
    };
    let interest = match only {
        None => Interest::Tenant(principal.tenant_id()),
        Some(stream) => Interest::Aggregate(principal.tenant_id(), stream.to_string()),
    };
    let receiver = state(ctx)?.feed.subscribe(interest);
    let events = BroadcastStream::new(receiver).filter_map(|item| async move {
        match item {
            Ok(event) => Some(event),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                counter!("frameworks_bridge_subscription_lagged_total").increment(missed);
                None
            }
        }
    });
    Ok((events, principal, only))
}

/// Whether the event is the caller's tenant's and, when asked, the stream's.
fn visible(event: &Event, principal: &Principal, only: Option<Uuid>) -> bool {
    event.tenant_id == Some(principal.tenant_id())
        && only.is_none_or(|id| event.aggregate_id == id.to_string())
}

fn stream_event_node(event: &Event) -> Option<String> {
    Some(match &event.payload {
        EventPayload::IngestStarted(p) => p.node_id.clone(),
        EventPayload::IngestEnded(p) => p.node_id.clone(),
        EventPayload::StreamBufferChanged(p) => p.node_id.clone(),
        EventPayload::StreamHealthReported(p) => p.node_id.clone(),
        EventPayload::TrackListUpdated(p) => p.node_id.clone(),
        _ => return None,
    })
}

fn stream_event(
    event: &Event,
    principal: Arc<Principal>,
    node: String,
    origin: Origin,
) -> Option<StreamEvent> {
    let mut out = StreamEvent {
        id: ids::global("StreamEvent", &event.id.to_string()),
        event_id: event.id.to_string(),
        stream_id: Some(event.aggregate_id.clone()),
        node_id: Some(node),
        kind: StreamEventType::StreamLifecycleUpdate,
        status: Some(StreamStatus::Live),
        timestamp: Time(event.occurred_at),
        details: None,
        payload: None,
        source: StreamEventSource::Live,
        buffer_state: None,
        has_issues: None,
        track_count: None,
        quality_tier: None,
        primary_width: None,
        primary_height: None,
        primary_fps: None,
        primary_codec: None,
        primary_bitrate: None,
        downloaded_bytes: None,
        uploaded_bytes: None,
        total_viewers: None,
        total_inputs: None,
        total_outputs: None,
        viewer_seconds: None,
        request_url: None,
        protocol: None,
        latitude: None,
        longitude: None,
        location: None,
        country_code: None,
        city: None,
        source_region: origin.region.clone(),
        source_cluster_id: origin.cluster_id.clone(),
        stream_origin_region: origin.region,
        stream_origin_cluster_id: origin.cluster_id,
        schema_version: i32::try_from(event.event_type().schema_version()).unwrap_or(i32::MAX),
        stream_uuid: event.aggregate_id.parse().ok(),
        principal,
    };
    match &event.payload {
        EventPayload::IngestStarted(p) => {
            out.kind = StreamEventType::StreamStart;
            out.protocol = Some(p.protocol.clone());
            out.total_inputs = Some(1);
        }
        EventPayload::IngestEnded(p) => {
            out.kind = StreamEventType::StreamEnd;
            out.status = Some(StreamStatus::Ended);
            out.uploaded_bytes = Some(p.bytes_in as f64);
            out.details = Some(p.reason.clone()).filter(|r| !r.is_empty());
        }
        EventPayload::StreamBufferChanged(p) => {
            out.kind = StreamEventType::BufferUpdate;
            out.buffer_state = Some(
                match p.state() {
                    BufferState::Full => "FULL",
                    BufferState::Empty => "EMPTY",
                    BufferState::Dry => "DRY",
                    BufferState::Recover => "RECOVER",
                    BufferState::Unspecified => "UNKNOWN",
                }
                .into(),
            );
        }
        EventPayload::StreamHealthReported(p) => {
            out.has_issues = Some(!p.issues.is_empty());
            out.details = Some(p.issues.join(", ")).filter(|d| !d.is_empty());
            out.primary_fps = Some(p.frames_per_second);
            out.primary_bitrate = i32::try_from(p.bitrate_bps / 1000).ok();
        }
        EventPayload::TrackListUpdated(p) => {
            out.kind = StreamEventType::TrackListUpdate;
            out.track_count = i32::try_from(p.tracks.len()).ok();
            if let Some(video) = p.tracks.iter().find(|t| t.kind == "video") {
                out.primary_width = i32::try_from(video.width).ok();
                out.primary_height = i32::try_from(video.height).ok();
                out.primary_fps = Some(video.frames_per_second);
                out.primary_codec = Some(video.codec.clone());
                out.primary_bitrate = i32::try_from(video.bitrate_bps / 1000).ok();
                out.quality_tier = Some(quality_tier(video.height));
            }
        }
        _ => return None,
    }
    Some(out)
}

fn connection_event(
    event: &Event,
    principal: Arc<Principal>,
    node: String,
    origin: Origin,
) -> Option<ConnectionEvent> {
    let mut out = ConnectionEvent {
        id: ids::global("ConnectionEvent", &event.id.to_string()),
        event_id: event.id.to_string(),
        timestamp: Time(event.occurred_at),
        stream_id: event.aggregate_id.clone(),
        session_id: String::new(),
        connection_addr: None,
        connector: String::new(),
        node_id: node,
        country_code: None,
        city: None,
        latitude: None,
        longitude: None,
        client_bucket: None,
        node_bucket: None,
        event_type: String::new(),
        request_url: None,
        cluster_id: origin.cluster_id,
        origin_cluster_id: None,
        control_cell_id: None,
        session_duration_seconds: None,
        bytes_transferred: None,
        stream_uuid: event.aggregate_id.parse().ok(),
        principal,
    };
    match &event.payload {
        EventPayload::ViewerSessionStarted(p) => {
            out.event_type = "connect".into();
            out.session_id = p.session_id.clone();
            out.connector = p.connector.clone();
            out.connection_addr = Some(p.viewer_ip.clone()).filter(|a| !a.is_empty());
            out.country_code = Some(p.country_code.clone()).filter(|c| !c.is_empty());
            out.request_url = Some(p.request_url.clone()).filter(|u| !u.is_empty());
        }
        EventPayload::ViewerSessionEnded(p) => {
            out.event_type = "disconnect".into();
            out.session_id = p.session_id.clone();
            out.connector = p.connector.clone();
            out.session_duration_seconds = i32::try_from(p.duration_seconds).ok();
            out.bytes_transferred = Some((p.bytes_up + p.bytes_down) as f64);
        }
        _ => return None,
    }
    Some(out)
}

fn track_list_update(
    event: &Event,
    tracks: &[Track],
    principal: Arc<Principal>,
) -> TrackListUpdate {
    let count = |kind: &str| i32::try_from(tracks.iter().filter(|t| t.kind == kind).count()).ok();
    let video = tracks.iter().find(|t| t.kind == "video");
    let audio = tracks.iter().find(|t| t.kind == "audio");
    let positive = |n: u32| i32::try_from(n).ok().filter(|n| *n > 0);
    TrackListUpdate {
        stream_id: event.aggregate_id.clone(),
        tracks: Some(
            tracks
                .iter()
                .map(|t| StreamTrack {
                    track_name: format!("{}{}", t.kind, t.track_id),
                    track_type: t.kind.clone(),
                    codec: Some(t.codec.clone()).filter(|c| !c.is_empty()),
                    bitrate_kbps: i32::try_from(t.bitrate_bps / 1000).ok(),
                    bitrate_bps: i64::try_from(t.bitrate_bps).ok(),
                    buffer: None,
                    jitter: None,
                    width: positive(t.width),
                    height: positive(t.height),
                    fps: Some(t.frames_per_second).filter(|f| *f > 0.0),
                    resolution: (t.width > 0 && t.height > 0)
                        .then(|| format!("{}x{}", t.width, t.height)),
                    has_b_frames: None,
                    channels: positive(t.channels),
                    sample_rate: positive(t.sample_rate),
                })
                .collect(),
        ),
        total_tracks: i32::try_from(tracks.len()).ok(),
        video_track_count: count("video"),
        audio_track_count: count("audio"),
        quality_tier: video.map(|v| quality_tier(v.height)),
        primary_width: video.and_then(|v| positive(v.width)),
        primary_height: video.and_then(|v| positive(v.height)),
        primary_fps: video.map(|v| v.frames_per_second),
        primary_video_bitrate: video.and_then(|v| i32::try_from(v.bitrate_bps / 1000).ok()),
        primary_video_codec: video.map(|v| v.codec.clone()),
        primary_audio_bitrate: audio.and_then(|a| i32::try_from(a.bitrate_bps / 1000).ok()),
        primary_audio_codec: audio.map(|a| a.codec.clone()),
        primary_audio_channels: audio.and_then(|a| positive(a.channels)),
        primary_audio_sample_rate: audio.and_then(|a| positive(a.sample_rate)),
        stream_uuid: event.aggregate_id.parse().ok(),
        principal,
    }
}

/// The usual name of a video height: 2160p as 4K, else `<height>p`.
fn quality_tier(height: u32) -> String {
    if height >= 2160 {
        "4K".into()
    } else {
        format!("{height}p")
    }
}

pub(crate) use origins::Origins;

mod origins;
