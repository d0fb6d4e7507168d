//! Events as ClickHouse rows: one row type per table of
//! `schemas/clickhouse/analytics.sql`, field for field.

use chrono::{DateTime, Utc};
use clickhouse::Row;
use frameworks_events::proto::v1::telemetry::BufferState;
use frameworks_events::{Event, EventPayload};
use serde::Serialize;
use uuid::Uuid;

use crate::ApplyError;

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct LifecycleRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub event_type: String,
    pub tenant_id: String,
    pub stream_id: String,
    pub node_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub protocol: String,
    pub internal_name: String,
    pub buffer_state: String,
    pub buffer_ms: u64,
    pub bytes_in: u64,
    pub duration_seconds: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct SessionRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub tenant_id: String,
    pub stream_id: String,
    pub session_id: String,
    pub node_id: String,
    pub connector: String,
    pub country_code: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    /// +1 for a start, -1 for an end.
    pub delta: i8,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub duration_seconds: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct TrackListRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub tenant_id: String,
    pub stream_id: String,
    pub node_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub track_id: Vec<u32>,
    pub kind: Vec<String>,
    pub codec: Vec<String>,
    pub width: Vec<u32>,
    pub height: Vec<u32>,
    pub frames_per_second: Vec<f64>,
    pub sample_rate: Vec<u32>,
    pub channels: Vec<u32>,
    pub bitrate_bps: Vec<u64>,
    pub language: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct HealthRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub tenant_id: String,
    pub stream_id: String,
    pub node_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub bitrate_bps: u64,
    pub frames_per_second: f64,
    pub max_keyframe_interval_ms: u32,
    pub jitter_ms: u64,
    pub issues: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct NodeMetricsRow {
    #[serde(with = "clickhouse::serde::uuid")]
    pub event_id: Uuid,
    pub tenant_id: String,
    pub node_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub occurred_at: DateTime<Utc>,
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub bandwidth_up_bps: u64,
    pub bandwidth_down_bps: u64,
    pub bandwidth_limit_bps: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub active_streams: u32,
    pub active_viewers: u32,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub shm_used_bytes: u64,
    pub shm_total_bytes: u64,
    pub window_ms: u32,
}

/// The row an event becomes, by table.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalyticsRow {
    Lifecycle(LifecycleRow),
    Session(SessionRow),
    Tracks(TrackListRow),
    Health(HealthRow),
    Node(NodeMetricsRow),
}

/// The row of an event, or `None` for an event analytics does not keep
/// (heartbeats and raw Mist triggers are live state and audit, not analytics).
pub fn row_for(event: &Event) -> Result<Option<AnalyticsRow>, ApplyError> {
    let tenant = || -> Result<String, ApplyError> {
        event
            .tenant_id
            .map(|t| t.to_string())
            .ok_or_else(|| ApplyError::Invalid {
                event_type: event.event_type().name(),
                problem: "a stream fact without a tenant cannot be attributed".into(),
            })
    };
    let event_id = event.id;
    let occurred_at = event.occurred_at;
    let stream_id = || event.aggregate_id.clone();
    let lifecycle = |node_id: &str| LifecycleRow {
        event_id,
        event_type: event.event_type().name().to_owned(),
        tenant_id: String::new(),
        stream_id: stream_id(),
        node_id: node_id.to_owned(),
        occurred_at,
        protocol: String::new(),
        internal_name: String::new(),
        buffer_state: String::new(),
        buffer_ms: 0,
        bytes_in: 0,
        duration_seconds: 0,
        reason: String::new(),
    };
    let row = match &event.payload {
        EventPayload::IngestStarted(p) => AnalyticsRow::Lifecycle(LifecycleRow {
            tenant_id: tenant()?,
            protocol: p.protocol.clone(),
            internal_name: p.internal_name.clone(),
            ..lifecycle(&p.node_id)
        }),
        EventPayload::IngestEnded(p) => AnalyticsRow::Lifecycle(LifecycleRow {
            tenant_id: tenant()?,
            internal_name: p.internal_name.clone(),
            bytes_in: p.bytes_in,
            duration_seconds: p.duration_seconds,
            reason: p.reason.clone(),
            ..lifecycle(&p.node_id)
        }),
        EventPayload::StreamBufferChanged(p) => AnalyticsRow::Lifecycle(LifecycleRow {
            tenant_id: tenant()?,
            buffer_state: buffer_state_name(p.state()).to_owned(),
            buffer_ms: p.buffer_ms,
            ..lifecycle(&p.node_id)
        }),
        EventPayload::ViewerSessionStarted(p) => AnalyticsRow::Session(SessionRow {
            event_id,
            tenant_id: tenant()?,
            stream_id: stream_id(),
            session_id: p.session_id.clone(),
            node_id: p.node_id.clone(),
            connector: p.connector.clone(),
            country_code: p.country_code.clone(),
            occurred_at,
            delta: 1,
            bytes_out: 0,
            bytes_in: 0,
            duration_seconds: 0,
            reason: String::new(),
        }),
        EventPayload::ViewerSessionEnded(p) => AnalyticsRow::Session(SessionRow {
            event_id,
            tenant_id: tenant()?,
            stream_id: stream_id(),
            session_id: p.session_id.clone(),
            node_id: p.node_id.clone(),
            connector: p.connector.clone(),
            country_code: String::new(),
            occurred_at,
            delta: -1,
            // Mist counts from its own side: "up" is what it sent to the viewer.
            bytes_out: p.bytes_up,
            bytes_in: p.bytes_down,
            duration_seconds: p.duration_seconds,
            reason: p.reason.clone(),
        }),
        EventPayload::TrackListUpdated(p) => {
            let tracks = &p.tracks;
            AnalyticsRow::Tracks(TrackListRow {
                event_id,
                tenant_id: tenant()?,
                stream_id: stream_id(),
                node_id: p.node_id.clone(),
                occurred_at,
                track_id: tracks.iter().map(|t| t.track_id).collect(),
                kind: tracks.iter().map(|t| t.kind.clone()).collect(),
                codec: tracks.iter().map(|t| t.codec.clone()).collect(),
                width: tracks.iter().map(|t| t.width).collect(),
                height: tracks.iter().map(|t| t.height).collect(),
                frames_per_second: tracks.iter().map(|t| t.frames_per_second).collect(),
                sample_rate: tracks.iter().map(|t| t.sample_rate).collect(),
                channels: tracks.iter().map(|t| t.channels).collect(),
                bitrate_bps: tracks.iter().map(|t| t.bitrate_bps).collect(),
                language: tracks.iter().map(|t| t.language.clone()).collect(),
            })
        }
        EventPayload::StreamHealthReported(p) => AnalyticsRow::Health(HealthRow {
            event_id,
            tenant_id: tenant()?,
            stream_id: stream_id(),
            node_id: p.node_id.clone(),
            occurred_at,
            bitrate_bps: p.bitrate_bps,
            frames_per_second: p.frames_per_second,
            max_keyframe_interval_ms: p.max_keyframe_interval_ms,
            jitter_ms: p.jitter_ms,
            issues: p.issues.clone(),
        }),
        EventPayload::NodeMetrics(p) => AnalyticsRow::Node(NodeMetricsRow {
            event_id,
            // Nodes may belong to the platform rather than a tenant.
            tenant_id: event.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
            node_id: event.aggregate_id.clone(),
            occurred_at,
            cpu_percent: p.cpu_percent,
            memory_used_bytes: p.memory_used_bytes,
            memory_total_bytes: p.memory_total_bytes,
            bandwidth_up_bps: p.bandwidth_up_bps,
            bandwidth_down_bps: p.bandwidth_down_bps,
            bandwidth_limit_bps: p.bandwidth_limit_bps,
            disk_used_bytes: p.disk_used_bytes,
            disk_total_bytes: p.disk_total_bytes,
            active_streams: p.active_streams,
            active_viewers: p.active_viewers,
            network_rx_bytes: p.network_rx_bytes,
            network_tx_bytes: p.network_tx_bytes,
            shm_used_bytes: p.shm_used_bytes,
            shm_total_bytes: p.shm_total_bytes,
            window_ms: p.window_ms,
        }),
        // Not analytics: control-plane facts, and telemetry kept elsewhere
        // (heartbeats, raw triggers, samples, pushes, recordings, input
        // closes). Named one by one, so that a new event type does not
        // compile until it is placed here or above.
        EventPayload::TenantCreated(_)
        | EventPayload::TenantSuspended(_)
        | EventPayload::TenantReactivated(_)
        | EventPayload::SigningKeyCreated(_)
        | EventPayload::SigningKeyRevoked(_)
        | EventPayload::TenantPreferredClusterSet(_)
        | EventPayload::UserRegistered(_)
        | EventPayload::UserPasswordChanged(_)
        | EventPayload::UserLoginFailed(_)
        | EventPayload::UserLoginSucceeded(_)
        | EventPayload::ApiTokenCreated(_)
        | EventPayload::ApiTokenRevoked(_)
        | EventPayload::StreamCreated(_)
        | EventPayload::StreamUpdated(_)
        | EventPayload::StreamDeleted(_)
        | EventPayload::StreamKeyCreated(_)
        | EventPayload::StreamKeyRotated(_)
        | EventPayload::StreamKeyDeleted(_)
        | EventPayload::StreamPlaybackPolicySet(_)
        | EventPayload::ClusterCreated(_)
        | EventPayload::ClusterUpdated(_)
        | EventPayload::NodeEnrolmentTokenIssued(_)
        | EventPayload::NodeEnrolmentTokenConsumed(_)
        | EventPayload::ClusterMarketplaceUpdated(_)
        | EventPayload::ClusterSubscriptionRequested(_)
        | EventPayload::ClusterSubscriptionApproved(_)
        | EventPayload::ClusterSubscriptionRejected(_)
        | EventPayload::ClusterSubscriptionCancelled(_)
        | EventPayload::ClusterInviteCreated(_)
        | EventPayload::ClusterInviteRevoked(_)
        | EventPayload::ClusterInviteAccepted(_)
        | EventPayload::EdgePreRegistered(_)
        | EventPayload::NodeEnrolled(_)
        | EventPayload::NodeReenrolled(_)
        | EventPayload::NodeDecommissioned(_)
        | EventPayload::NodeModeChanged(_)
        | EventPayload::NodeServicesReported(_)
        | EventPayload::NodeHeartbeat(_)
        | EventPayload::MistTriggerReceived(_)
        | EventPayload::StreamSampled(_)
        | EventPayload::PushEnded(_)
        | EventPayload::RecordingSegmentWritten(_)
        | EventPayload::RecordingEnded(_)
        | EventPayload::InputClosed(_) => return Ok(None),
    };
    Ok(Some(row))
}

fn buffer_state_name(state: BufferState) -> &'static str {
    match state {
        BufferState::Unspecified => "UNSPECIFIED",
        BufferState::Full => "FULL",
        BufferState::Empty => "EMPTY",
        BufferState::Dry => "DRY",
        BufferState::Recover => "RECOVER",
    }
}

#[cfg(test)]
mod tests {
    use frameworks_events::proto::v1::telemetry::{
        NodeHeartbeat, ViewerSessionEnded, ViewerSessionStarted,
    };

    use super::*;

    #[test]
    fn a_session_end_books_what_the_edge_sent_as_bytes_out() {
        let tenant = Uuid::now_v7();
        let event = Event::new(
            "stream-1",
            ViewerSessionEnded {
                session_id: "s1".into(),
                bytes_up: 5_000,
                bytes_down: 40,
                duration_seconds: 12,
                ..Default::default()
            },
        )
        .with_tenant(tenant);
        let Some(AnalyticsRow::Session(row)) = row_for(&event).expect("valid") else {
            panic!("a session end is a session row");
        };
        assert_eq!(
            (row.delta, row.bytes_out, row.bytes_in, row.duration_seconds),
            (-1, 5_000, 40, 12)
        );
        assert_eq!(row.tenant_id, tenant.to_string());
    }

    #[test]
    fn a_stream_fact_without_a_tenant_is_refused() {
        let event = Event::new("stream-1", ViewerSessionStarted::default());
        let error = row_for(&event).expect_err("no tenant");
        assert_eq!(error.reason(), Some("invalid-for-projection"));
    }

    #[test]
    fn heartbeats_are_not_analytics() {
        let event = Event::new("node-1", NodeHeartbeat::default());
        assert_eq!(row_for(&event).expect("valid"), None);
    }
}
