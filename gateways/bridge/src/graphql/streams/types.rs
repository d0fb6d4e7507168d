//! The stream, its key and the values it carries, as the schema shows them.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum IngestMode {
    Push,
    Pull,
    Managed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "DVRChapterMode")]
pub enum DvrChapterMode {
    WindowSized,
    FixedInterval,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum MonitoringToggle {
    Inherit,
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum PlaybackPolicyType {
    Public,
    Jwt,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum SourceLocationMode {
    Any,
    Restricted,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum ValidationStatus {
    Valid,
    Invalid,
    Error,
}

/// Per-stream playback access, as `setPlaybackPolicy` set it.
#[derive(Debug, Clone, SimpleObject)]
pub struct PlaybackPolicy {
    #[graphql(name = "type")]
    pub kind: PlaybackPolicyType,
    pub jwt: Option<PlaybackJwtPolicy>,
    pub webhook: Option<PlaybackWebhookPolicy>,
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct PlaybackJwtPolicy {
    pub allowed_kids: Vec<String>,
    pub required_audience: Vec<String>,
    pub required_claims_json: Vec<PlaybackRequiredClaim>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct PlaybackRequiredClaim {
    pub name: String,
    pub json_value: String,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct PlaybackWebhookPolicy {
    pub url: String,
    pub timeout_ms: i32,
    pub secret_masked: String,
    pub context: Option<Json<serde_json::Value>>,
}

/// A pull stream's source, with credentials removed.
#[derive(Debug, Clone, SimpleObject)]
pub struct PullSource {
    pub source_uri_redacted: String,
    pub enabled: bool,
    /// `public`, or `private` for a source on a private network.
    #[graphql(name = "class")]
    pub class_: String,
}

impl IngestMode {
    pub(super) fn of(row: &StreamRow) -> Self {
        if row.pulls() { Self::Pull } else { Self::Push }
    }
}

/// A live stream configuration.
#[derive(Debug, Clone)]
pub struct Stream(pub(super) StreamRow);

#[Object]
impl Stream {
    /// Global unique identifier for Relay compatibility.
    pub async fn id(&self) -> ID {
        ids::global(STREAM_TYPE, &self.0.id.to_string())
    }

    /// The stream's UUID (not the Relay id).
    async fn stream_id(&self) -> String {
        self.0.id.to_string()
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> Option<&str> {
        Some(self.0.description.as_str()).filter(|d| !d.is_empty())
    }

    /// Public identifier for playback URLs.
    async fn playback_id(&self) -> &str {
        &self.0.playback_id
    }

    /// Whether DVR recording is enabled for this stream.
    async fn record(&self) -> bool {
        self.0.record
    }

    async fn ingest_mode(&self) -> IngestMode {
        IngestMode::of(&self.0)
    }

    /// The pull source, redacted; null for push streams.
    async fn pull_source(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<PullSource>> {
        let Some(sealed) = &self.0.pull_source else {
            return Ok(None);
        };
        let uri = open(
            state(ctx)?,
            sealed,
            &pull_source_context(&self.0.id.to_string()),
        )?;
        let private = validate::pull_source("pullSource", &uri, false).is_err();
        Ok(Some(PullSource {
            source_uri_redacted: frameworks_events::redact::uri(&uri),
            enabled: true,
            class_: if private { "private" } else { "public" }.into(),
        }))
    }

    /// The primary stream key (null for pull streams, which nobody pushes
    /// to); needs the streams:write scope.
    async fn stream_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        if !principal(ctx)?.allows(Scope::StreamsWrite) {
            return Ok(deny_field(ctx, Scope::StreamsWrite));
        }
        let (IngestMode::Push, Some(key_id)) = (IngestMode::of(&self.0), &self.0.primary_key_id)
        else {
            return Ok(None);
        };
        let state = state(ctx)?;
        let key = read_model::key(&state.pool, key_id)
            .await
            .map_err(read_failed)?;
        key.map(|key| {
            open(
                state,
                &key.sealed_key,
                &key_context(&self.0.id.to_string(), key_id),
            )
        })
        .transpose()
    }

    async fn created_at(&self) -> Time {
        self.0.created_at.into()
    }

    async fn updated_at(&self) -> Time {
        self.0.updated_at.into()
    }

    /// How saved recordings are split into chapters; this server keeps no
    /// chapters, so it is null.
    async fn dvr_chapter_mode(&self) -> Option<DvrChapterMode> {
        None
    }

    async fn dvr_chapter_interval_seconds(&self) -> Option<i32> {
        None
    }

    /// Per-stream monitoring override; streams follow their tier.
    async fn monitoring(&self) -> MonitoringToggle {
        MonitoringToggle::Inherit
    }

    /// Playback access policy: null means anyone with the playback id may watch.
    async fn playback_policy(&self) -> Option<PlaybackPolicy> {
        self.0
            .playback_policy
            .as_deref()
            .and_then(crate::graphql::playback_policies::shown)
    }

    /// Live video renditions: streams follow their tier (`INHERIT`).
    async fn live_video_abr(&self) -> &'static str {
        "INHERIT"
    }

    /// Operator-managed sources do not exist on this server: always null.
    async fn managed_source(&self) -> Option<ManagedSource> {
        None
    }

    /// Where the source may be ingested: anywhere.
    async fn source_location(&self) -> SourceLocation {
        SourceLocation {
            mode: SourceLocationMode::Any,
            avoid_node_ids: Vec::new(),
        }
    }

    /// What the stream is doing now, from the live state (edge telemetry
    /// in Redis); needs analytics:read.
    async fn metrics(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<StreamMetrics>> {
        if !principal(ctx)?.allows(Scope::AnalyticsRead) {
            return Ok(deny_field(ctx, Scope::AnalyticsRead));
        }
        let state = state(ctx)?;
        let id = self.0.id.to_string();
        let fields = state.live.stream(&id).await.map_err(|e| internal(&e))?;
        let viewers = state.live.viewers(&id).await.map_err(|e| internal(&e))?;
        Ok(Some(StreamMetrics::from_live(&fields, viewers)))
    }

    /// Multistream push targets; this server has none yet.
    async fn push_targets(&self) -> Vec<PushTarget> {
        Vec::new()
    }

    /// Thumbnail assets; this server renders none, so null.
    async fn thumbnail_assets(&self) -> Option<ThumbnailAssets> {
        None
    }

    /// Per-stream retention overrides: none are set on this server.
    async fn retention_overrides(&self) -> Option<RetentionOverrides> {
        None
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct ManagedSource {
    pub source_kind: String,
    pub always_on: bool,
    pub placement_count: i32,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct SourceLocation {
    pub mode: SourceLocationMode,
    pub avoid_node_ids: Vec<String>,
}

/// Real-time operational metrics of a stream.
#[derive(Debug, Clone, SimpleObject)]
pub struct StreamMetrics {
    pub status: crate::graphql::live::StreamStatus,
    pub is_live: bool,
    pub current_viewers: i32,
    pub started_at: Option<Time>,
    pub updated_at: Time,
    pub node_id: Option<String>,
    pub track_count: Option<i32>,
    pub total_inputs: Option<i32>,
    pub uploaded_bytes: f64,
    pub downloaded_bytes: f64,
    pub viewer_seconds: f64,
    pub packets_sent: Option<f64>,
    pub packets_lost: Option<f64>,
    pub packets_retransmitted: Option<f64>,
    pub buffer_state: Option<String>,
    pub quality_tier: Option<String>,
    pub primary_width: Option<i32>,
    pub primary_height: Option<i32>,
    pub primary_fps: Option<f64>,
    pub primary_codec: Option<String>,
    pub primary_bitrate: Option<i32>,
    pub has_issues: Option<bool>,
    pub issues_description: Option<String>,
}

impl StreamMetrics {
    /// The metrics of a stream whose live-state fields are `fields` (empty
    /// when it is not live) and which has `viewers` viewer sessions open.
    fn from_live(fields: &std::collections::BTreeMap<String, String>, viewers: usize) -> Self {
        let text = |name: &str| fields.get(name).filter(|v| !v.is_empty()).cloned();
        let number = |name: &str| fields.get(name).and_then(|v| v.parse::<f64>().ok());
        let time = |name: &str| {
            fields
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis)
                .map(Time)
        };
        let count = |name: &str| number(name).map(|n| n as i32);
        let live = fields.contains_key("node");
        let issues = text("issues");
        Self {
            status: if live {
                crate::graphql::live::StreamStatus::Live
            } else {
                crate::graphql::live::StreamStatus::Offline
            },
            is_live: live,
            current_viewers: i32::try_from(viewers).unwrap_or(i32::MAX),
            started_at: time("since_ms"),
            updated_at: time("updated_ms").unwrap_or_else(|| Time(Utc::now())),
            node_id: text("node"),
            track_count: count("tracks"),
            total_inputs: None,
            uploaded_bytes: number("up_bytes").unwrap_or(0.0),
            downloaded_bytes: number("down_bytes").unwrap_or(0.0),
            viewer_seconds: number("viewer_seconds").unwrap_or(0.0),
            packets_sent: None,
            packets_lost: None,
            packets_retransmitted: None,
            buffer_state: text("buffer"),
            quality_tier: None,
            primary_width: None,
            primary_height: None,
            primary_fps: number("fps"),
            primary_codec: None,
            primary_bitrate: count("bitrate_bps"),
            has_issues: live.then_some(issues.is_some()),
            issues_description: issues,
        }
    }
}

/// A multistream destination.
#[derive(Debug, Clone, SimpleObject)]
pub struct PushTarget {
    pub id: ID,
    pub stream_id: String,
    pub platform: Option<String>,
    pub name: String,
    pub video_choice: String,
    pub target_uri: String,
    pub is_enabled: bool,
    pub status: String,
    pub last_error: Option<String>,
    pub reason_code: Option<String>,
    pub last_pushed_at: Option<Time>,
    pub created_at: Time,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct ThumbnailAssets {
    pub poster_url: String,
    pub sprite_vtt_url: String,
    pub sprite_jpg_url: String,
    pub asset_key: String,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct RetentionOverrides {
    pub stream_id: String,
    pub dvr_retention_days_override: Option<i32>,
    pub clip_retention_days_override: Option<i32>,
}

/// A publishing credential of a stream.
#[derive(Debug, Clone, SimpleObject)]
pub struct StreamKey {
    pub id: ID,
    pub stream_id: String,
    /// The publishing secret.
    pub key_value: String,
    pub key_name: Option<String>,
    pub is_active: bool,
    pub last_used_at: Option<Time>,
    pub created_at: Time,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct StreamValidation {
    pub status: ValidationStatus,
    pub stream_key: String,
    pub error: Option<String>,
}

/// A stream key as the API shows it, its sealed value opened.
pub(super) fn stream_key(
    state: &BridgeState,
    row: StreamKeyRow,
) -> async_graphql::Result<StreamKey> {
    let stream_id = row.stream_id.to_string();
    Ok(StreamKey {
        key_value: open(
            state,
            &row.sealed_key,
            &key_context(&stream_id, &row.key_id),
        )?,
        id: ID(row.key_id),
        stream_id,
        key_name: Some(row.label).filter(|l| !l.is_empty()),
        is_active: true,
        last_used_at: None,
        created_at: row.created_at.into(),
    })
}

connection!(StreamsConnection, StreamEdge, Stream);
connection!(StreamKeysConnection, StreamKeyEdge, StreamKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_the_live_state_fields() {
        let offline = StreamMetrics::from_live(&Default::default(), 0);
        assert!(!offline.is_live && offline.node_id.is_none() && offline.has_issues.is_none());
        let fields = [
            ("node", "node-1"),
            ("since_ms", "1795237048445"),
            ("updated_ms", "1795237058445"),
            ("tracks", "3"),
            ("buffer", "BUFFER_STATE_FULL"),
            ("bitrate_bps", "2500000"),
            ("fps", "29.97"),
            ("issues", ""),
            ("up_bytes", "9000"),
            ("viewer_seconds", "42"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let live = StreamMetrics::from_live(&fields, 2);
        assert!(live.is_live && live.status == crate::graphql::live::StreamStatus::Live);
        assert_eq!(
            (live.current_viewers, live.track_count, live.primary_bitrate),
            (2, Some(3), Some(2_500_000))
        );
        assert_eq!(live.node_id.as_deref(), Some("node-1"));
        assert_eq!(
            live.started_at.map(|t| t.0.timestamp_millis()),
            Some(1_795_237_048_445)
        );
        assert_eq!((live.uploaded_bytes, live.viewer_seconds), (9_000.0, 42.0));
        assert_eq!(live.has_issues, Some(false));
    }
}
