//! Streams and their keys: `streamsConnection`, `stream`, `validateStreamKey`,
//! `streamKeysConnection` read the control-plane read model; the mutations
//! are stream commands that answer from the read model once it holds them.

use async_graphql::{
    Context, Enum, ErrorExtensions, ID, InputObject, Json, Object, SimpleObject, Union,
};
use chrono::{DateTime, Utc};
use frameworks_commands::aggregates::stream::{
    Ingest, Stream as StreamAggregate, StreamCommand, StreamOutcome, key_context,
    pull_source_context,
};
use frameworks_commands::secrets::{SecretString, sha256};
use frameworks_commands::validate;
use frameworks_events::AggregateType;
use frameworks_events::proto::v1::common::SealedSecret;
use prost::Message;
use std::time::Duration;

use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::connection::{ConnectionInput, Listing, Page, Position, connection};
use super::errors::{
    AuthError, DeleteSuccess, NotFoundError, Refusal, ValidationError, deny_field, internal,
};
use super::ids;
use super::scalars::Time;
use super::{principal, require, require_for_mutation, state};
use crate::auth::{Principal, Scope};
use crate::cache::TtlCache;
use crate::state::BridgeState;

const STREAM_TYPE: &str = "Stream";
const STREAM_COLUMNS: &str = "id, name, description, record, ingest_mode, playback_id, pull_source, playback_policy, primary_key_id, created_at, updated_at";

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

#[derive(Debug, Clone, FromRow)]
pub struct StreamRow {
    id: Uuid,
    name: String,
    description: String,
    record: bool,
    ingest_mode: String,
    playback_id: String,
    pull_source: Option<Vec<u8>>,
    playback_policy: Option<Vec<u8>>,
    primary_key_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl StreamRow {
    pub(super) fn uuid(&self) -> Uuid {
        self.id
    }

    fn ingest_mode(&self) -> IngestMode {
        // The read model keeps the event's enum name, e.g. INGEST_MODE_PULL.
        if self.ingest_mode.ends_with("PULL") {
            IngestMode::Pull
        } else {
            IngestMode::Push
        }
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
        self.0.ingest_mode()
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
        let (IngestMode::Push, Some(key_id)) = (self.0.ingest_mode(), &self.0.primary_key_id)
        else {
            return Ok(None);
        };
        let state = state(ctx)?;
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT sealed_key FROM read_models.rm_stream_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
        sealed
            .map(|sealed| open(state, &sealed, &key_context(&self.0.id.to_string(), key_id)))
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
            .and_then(super::playback_policies::shown)
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
    pub status: super::live::StreamStatus,
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
                super::live::StreamStatus::Live
            } else {
                super::live::StreamStatus::Offline
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

#[derive(Debug, Clone, FromRow)]
struct StreamKeyRow {
    key_id: String,
    stream_id: Uuid,
    label: String,
    sealed_key: Vec<u8>,
    created_at: DateTime<Utc>,
}

impl StreamKeyRow {
    fn into_key(self, state: &BridgeState) -> async_graphql::Result<StreamKey> {
        let stream_id = self.stream_id.to_string();
        Ok(StreamKey {
            key_value: open(
                state,
                &self.sealed_key,
                &key_context(&stream_id, &self.key_id),
            )?,
            id: ID(self.key_id),
            stream_id,
            key_name: Some(self.label).filter(|l| !l.is_empty()),
            is_active: true,
            last_used_at: None,
            created_at: self.created_at.into(),
        })
    }
}

connection!(StreamsConnection, StreamEdge, Stream);
connection!(StreamKeysConnection, StreamKeyEdge, StreamKey);

#[derive(Debug, Clone, InputObject)]
pub struct PullSourceInput {
    /// Upstream RTSP, SRT, RTMP, HLS or TS source URI.
    pub source_uri: Option<String>,
    /// Whether the media plane may pull from the source.
    #[graphql(default_with = "Some(true)")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, InputObject)]
pub struct SourceLocationClusterInput {
    pub cluster_id: ID,
    #[graphql(default)]
    pub node_ids: Vec<ID>,
}

#[derive(Debug, Clone, InputObject)]
pub struct SourceLocationInput {
    pub mode: SourceLocationMode,
    #[graphql(default)]
    pub clusters: Vec<SourceLocationClusterInput>,
    #[graphql(default)]
    pub avoid_node_ids: Vec<ID>,
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateStreamInput {
    pub name: String,
    pub description: Option<String>,
    #[graphql(default_with = "Some(false)")]
    pub record: Option<bool>,
    #[graphql(default_with = "Some(\"INHERIT\".to_owned())")]
    pub live_video_abr: Option<String>,
    #[graphql(default_with = "Some(IngestMode::Push)")]
    pub ingest_mode: Option<IngestMode>,
    pub pull_source: Option<PullSourceInput>,
    pub source_location: Option<SourceLocationInput>,
}

#[derive(Debug, Clone, InputObject)]
pub struct UpdateStreamInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub record: Option<bool>,
    pub live_video_abr: Option<String>,
    pub ingest_mode: Option<IngestMode>,
    pub pull_source: Option<PullSourceInput>,
    pub source_location: Option<SourceLocationInput>,
    pub dvr_chapter_mode: Option<DvrChapterMode>,
    pub dvr_chapter_interval_seconds: Option<i32>,
    pub monitoring: Option<MonitoringToggle>,
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateStreamKeyInput {
    pub name: String,
}

#[derive(Debug, Clone, Union)]
pub enum CreateStreamResult {
    Stream(Stream),
    ValidationError(ValidationError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum UpdateStreamResult {
    Stream(Stream),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum DeleteStreamResult {
    DeleteSuccess(DeleteSuccess),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum CreateStreamKeyResult {
    StreamKey(StreamKey),
    ValidationError(ValidationError),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

#[derive(Debug, Clone, Union)]
pub enum DeleteStreamKeyResult {
    DeleteSuccess(DeleteSuccess),
    NotFoundError(NotFoundError),
    AuthError(AuthError),
}

impl From<Refusal> for CreateStreamResult {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Validation(e) => Self::ValidationError(e),
            // A create names no existing object: what is missing is bad input.
            Refusal::NotFound(e) => Self::ValidationError(ValidationError {
                message: e.message,
                code: e.code,
                field: None,
                constraint: None,
            }),
            Refusal::Auth(e) => Self::AuthError(e),
        }
    }
}

impl From<Refusal> for UpdateStreamResult {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Validation(e) => Self::ValidationError(e),
            Refusal::NotFound(e) => Self::NotFoundError(e),
            Refusal::Auth(e) => Self::AuthError(e),
        }
    }
}

impl From<Refusal> for CreateStreamKeyResult {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Validation(e) => Self::ValidationError(e),
            Refusal::NotFound(e) => Self::NotFoundError(e),
            Refusal::Auth(e) => Self::AuthError(e),
        }
    }
}

/// A delete has no ValidationError member: a delete the aggregate refuses
/// (already deleted, the primary key) reads as the object not being there.
fn delete_refusal(refusal: Refusal, resource: &str, id: &str) -> Result<NotFoundError, AuthError> {
    match refusal {
        Refusal::NotFound(e) => Ok(e),
        Refusal::Validation(e) => Ok(NotFoundError {
            message: e.message,
            code: e.code,
            resource_type: resource.to_owned(),
            resource_id: ID(id.to_owned()),
        }),
        Refusal::Auth(e) => Err(e),
    }
}

impl DeleteStreamResult {
    fn refused(refusal: Refusal, id: &str) -> Self {
        match delete_refusal(refusal, STREAM_TYPE, id) {
            Ok(e) => Self::NotFoundError(e),
            Err(e) => Self::AuthError(e),
        }
    }
}

impl DeleteStreamKeyResult {
    fn refused(refusal: Refusal, id: &str) -> Self {
        match delete_refusal(refusal, "StreamKey", id) {
            Ok(e) => Self::NotFoundError(e),
            Err(e) => Self::AuthError(e),
        }
    }
}

#[derive(Debug, Default)]
pub struct StreamQuery;

#[Object]
impl StreamQuery {
    /// The tenant's streams, newest first; `search` matches names.
    async fn streams_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        search: Option<String>,
    ) -> async_graphql::Result<StreamsConnection> {
        let principal = require(ctx, Scope::StreamsRead)?;
        let page = Page::from_input(page.as_ref())?;
        let state = state(ctx)?;
        let pattern = search
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("%{}%", escape_like(s.trim())));
        let filter = |query: &mut QueryBuilder<Postgres>| {
            query
                .push(" WHERE tenant_id = ")
                .push_bind(principal.tenant_id())
                .push(" AND deleted_at IS NULL");
            if let Some(pattern) = &pattern {
                query.push(" AND name ILIKE ").push_bind(pattern.clone());
            }
        };
        let listing = Listing {
            from: "read_models.rm_streams",
            columns: STREAM_COLUMNS,
            created_at: "created_at",
            id: "id",
        };
        let (edges, info, total) = page
            .fetch(&state.pool, listing, filter, |row: &StreamRow| Position {
                created_at: row.created_at,
                id: row.id.to_string(),
            })
            .await?;
        let edges = edges.into_iter().map(|(c, row)| (c, Stream(row))).collect();
        Ok(StreamsConnection::new(edges, info, total))
    }

    /// One stream of the tenant, by global or raw id.
    async fn stream(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Stream>> {
        let principal = require(ctx, Scope::StreamsRead)?;
        stream_by_id(state(ctx)?, principal, &id).await
    }

    /// The stream's keys; they are publishing secrets, so this needs streams:write.
    async fn stream_keys_connection(
        &self,
        ctx: &Context<'_>,
        stream_id: ID,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<StreamKeysConnection> {
        let principal = require(ctx, Scope::StreamsWrite)?;
        let page = Page::from_input(page.as_ref())?;
        let state = state(ctx)?;
        let stream = match stream_uuid(&stream_id) {
            Ok(Some(id)) => load_stream(state, principal, id).await?,
            _ => None,
        };
        let Some(stream) = stream else {
            return Err(
                async_graphql::Error::new(format!("stream {} not found", stream_id.0))
                    .extend_with(|_, e| e.set("code", "NOT_FOUND")),
            );
        };
        let listing = Listing {
            from: "read_models.rm_stream_keys",
            columns: "key_id, stream_id, label, sealed_key, created_at",
            created_at: "created_at",
            id: "key_id",
        };
        let filter = |query: &mut QueryBuilder<Postgres>| {
            query.push(" WHERE stream_id = ").push_bind(stream.id);
        };
        let (edges, info, total) = page
            .fetch(&state.pool, listing, filter, |row: &StreamKeyRow| {
                Position {
                    created_at: row.created_at,
                    id: row.key_id.clone(),
                }
            })
            .await?;
        let edges = edges
            .into_iter()
            .map(|(c, row)| Ok((c, row.into_key(state)?)))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        Ok(StreamKeysConnection::new(edges, info, total))
    }

    /// Whether a stream key belongs to one of the tenant's streams.
    async fn validate_stream_key(
        &self,
        ctx: &Context<'_>,
        stream_key: String,
    ) -> async_graphql::Result<Option<StreamValidation>> {
        let principal = require(ctx, Scope::StreamsRead)?;
        let state = state(ctx)?;
        let found: Option<Uuid> = sqlx::query_scalar(
            "SELECT s.id FROM read_models.rm_stream_keys k
             JOIN read_models.rm_streams s ON s.id = k.stream_id
             WHERE k.lookup_hash = $1 AND s.tenant_id = $2 AND s.deleted_at IS NULL",
        )
        .bind(sha256(stream_key.as_bytes()).as_slice())
        .bind(principal.tenant_id())
        .fetch_optional(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
        Ok(Some(match found {
            Some(_) => StreamValidation {
                status: ValidationStatus::Valid,
                stream_key,
                error: None,
            },
            None => StreamValidation {
                status: ValidationStatus::Invalid,
                stream_key,
                error: Some("no stream of this tenant has this key".into()),
            },
        }))
    }
}

#[derive(Debug, Default)]
pub struct StreamMutation;

#[Object]
impl StreamMutation {
    /// Creates a PUSH stream (encoders publish with its key) or a PULL stream
    /// (an edge pulls from `pullSource.sourceUri`).
    async fn create_stream(
        &self,
        ctx: &Context<'_>,
        input: CreateStreamInput,
    ) -> async_graphql::Result<CreateStreamResult> {
        let principal = match require_for_mutation(ctx, Scope::StreamsWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(CreateStreamResult::AuthError(refusal)),
        };
        if let Some(refusal) = unsupported_create(&input) {
            return Ok(CreateStreamResult::ValidationError(refusal));
        }
        let ingest = match input.ingest_mode.unwrap_or(IngestMode::Push) {
            IngestMode::Push => Ingest::Push,
            IngestMode::Pull => Ingest::Pull,
            IngestMode::Managed => unreachable!("refused above"),
        };
        let command = StreamCommand::Create {
            name: input.name,
            description: input.description.unwrap_or_default(),
            record: input.record.unwrap_or(false),
            ingest,
            pull_source: input
                .pull_source
                .and_then(|p| p.source_uri)
                .map(SecretString::from),
            allow_private_sources: false,
        };
        let state = state(ctx)?;
        let id = Uuid::now_v7();
        match execute(state, principal, id, &command).await? {
            Ok(_) => Ok(CreateStreamResult::Stream(
                projected(state, principal, id).await?,
            )),
            Err(refusal) => Ok(refusal.into()),
        }
    }

    async fn update_stream(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateStreamInput,
    ) -> async_graphql::Result<UpdateStreamResult> {
        let principal = match require_for_mutation(ctx, Scope::StreamsWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(UpdateStreamResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let stream = match stream_uuid(&id) {
            Ok(Some(uuid)) => load_stream(state, principal, uuid).await?,
            Ok(None) => None,
            Err(message) => {
                return Ok(UpdateStreamResult::ValidationError(ValidationError::new(
                    "id", message, None,
                )));
            }
        };
        let Some(stream) = stream else {
            return Ok(Refusal::not_found(STREAM_TYPE, &id.0).into());
        };
        let current = stream.ingest_mode();
        if let Some(refusal) = unsupported_update(&input, current) {
            return Ok(UpdateStreamResult::ValidationError(refusal));
        }
        let command = StreamCommand::Update {
            name: input.name,
            description: input.description,
            record: input.record,
            ingest: None,
            pull_source: input
                .pull_source
                .map(|p| p.source_uri.map(SecretString::from)),
            allow_private_sources: false,
        };
        match execute(state, principal, stream.id, &command).await? {
            Ok(_) => Ok(UpdateStreamResult::Stream(
                projected(state, principal, stream.id).await?,
            )),
            Err(refusal) => Ok(refusal.into()),
        }
    }

    async fn delete_stream(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DeleteStreamResult> {
        let principal = match require_for_mutation(ctx, Scope::StreamsWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(DeleteStreamResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let Ok(Some(uuid)) = stream_uuid(&id) else {
            return Ok(DeleteStreamResult::refused(
                Refusal::not_found(STREAM_TYPE, &id.0),
                &id.0,
            ));
        };
        match execute(state, principal, uuid, &StreamCommand::Delete).await? {
            Ok(_) => {
                wait(state, uuid).await?;
                Ok(DeleteStreamResult::DeleteSuccess(DeleteSuccess {
                    success: true,
                    deleted_id: ids::global(STREAM_TYPE, &uuid.to_string()),
                    pending: Some(false),
                }))
            }
            Err(refusal) => Ok(DeleteStreamResult::refused(refusal, &id.0)),
        }
    }

    /// Replaces the primary stream key; the old one stops working.
    async fn refresh_stream_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<UpdateStreamResult> {
        let principal = match require_for_mutation(ctx, Scope::StreamsWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(UpdateStreamResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let Ok(Some(uuid)) = stream_uuid(&id) else {
            return Ok(Refusal::not_found(STREAM_TYPE, &id.0).into());
        };
        match execute(state, principal, uuid, &StreamCommand::RefreshKey).await? {
            Ok(_) => Ok(UpdateStreamResult::Stream(
                projected(state, principal, uuid).await?,
            )),
            Err(refusal) => Ok(refusal.into()),
        }
    }

    /// Adds a stream key besides the primary one.
    async fn create_stream_key(
        &self,
        ctx: &Context<'_>,
        stream_id: ID,
        input: CreateStreamKeyInput,
    ) -> async_graphql::Result<CreateStreamKeyResult> {
        let principal = match require_for_mutation(ctx, Scope::StreamsWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(CreateStreamKeyResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let Ok(Some(uuid)) = stream_uuid(&stream_id) else {
            return Ok(Refusal::not_found(STREAM_TYPE, &stream_id.0).into());
        };
        let command = StreamCommand::AddKey { label: input.name };
        let key_id = match execute(state, principal, uuid, &command).await? {
            Ok(StreamOutcome::Key { key_id, .. }) => key_id,
            Ok(other) => {
                return Err(internal(&std::io::Error::other(format!(
                    "adding a key answered {other:?}"
                ))));
            }
            Err(refusal) => return Ok(refusal.into()),
        };
        wait(state, uuid).await?;
        let row: StreamKeyRow = sqlx::query_as(
            "SELECT key_id, stream_id, label, sealed_key, created_at FROM read_models.rm_stream_keys WHERE key_id = $1",
        )
        .bind(&key_id)
        .fetch_one(&state.pool)
        .await
        .map_err(|e| internal(&e))?;
        Ok(CreateStreamKeyResult::StreamKey(row.into_key(state)?))
    }

    async fn delete_stream_key(
        &self,
        ctx: &Context<'_>,
        stream_id: ID,
        key_id: ID,
    ) -> async_graphql::Result<DeleteStreamKeyResult> {
        let principal = match require_for_mutation(ctx, Scope::StreamsWrite) {
            Ok(p) => p,
            Err(refusal) => return Ok(DeleteStreamKeyResult::AuthError(refusal)),
        };
        let state = state(ctx)?;
        let Ok(Some(uuid)) = stream_uuid(&stream_id) else {
            let missing = Refusal::not_found(STREAM_TYPE, &stream_id.0);
            return Ok(DeleteStreamKeyResult::refused(missing, &key_id.0));
        };
        let command = StreamCommand::DeleteKey {
            key_id: key_id.0.clone(),
        };
        match execute(state, principal, uuid, &command).await? {
            Ok(_) => {
                wait(state, uuid).await?;
                Ok(DeleteStreamKeyResult::DeleteSuccess(DeleteSuccess {
                    success: true,
                    deleted_id: key_id,
                    pending: Some(false),
                }))
            }
            Err(refusal) => Ok(DeleteStreamKeyResult::refused(refusal, &key_id.0)),
        }
    }
}

/// One of the caller's streams, by global or raw id.
pub(super) async fn stream_by_id(
    state: &BridgeState,
    principal: &Principal,
    id: &ID,
) -> async_graphql::Result<Option<Stream>> {
    let Ok(Some(id)) = stream_uuid(id) else {
        return Ok(None);
    };
    Ok(load_stream(state, principal, id).await?.map(Stream))
}

/// The stream UUID behind an id argument: `Ok(None)` if it is no UUID at all.
pub(super) fn stream_uuid(id: &ID) -> Result<Option<Uuid>, String> {
    ids::raw(STREAM_TYPE, &id.0).map(|raw| raw.parse().ok())
}

pub(super) async fn load_stream(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Option<StreamRow>> {
    load_stream_row(&state.pool, principal.tenant_id(), id).await
}

async fn load_stream_row(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
) -> async_graphql::Result<Option<StreamRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {STREAM_COLUMNS} FROM read_models.rm_streams
         WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"
    )))
    .bind(id)
    .bind(tenant)
    .fetch_optional(pool)
    .await
    .map_err(|e| internal(&e))
}

/// Streams as events refer to them, cached for a second: a thousand
/// subscribers to one busy stream ask the database once.
#[derive(Debug, Clone)]
pub struct StreamCache(TtlCache<(Uuid, Uuid), Option<StreamRow>>);

impl Default for StreamCache {
    fn default() -> Self {
        Self(TtlCache::new(Duration::from_secs(1)))
    }
}

impl StreamCache {
    pub async fn get(
        &self,
        pool: &PgPool,
        principal: &Principal,
        id: Uuid,
    ) -> async_graphql::Result<Option<Stream>> {
        let key = (principal.tenant_id(), id);
        if let Some(row) = self.0.get(&key) {
            return Ok(row.map(Stream));
        }
        let row = load_stream_row(pool, principal.tenant_id(), id).await?;
        self.0.insert(key, row.clone());
        Ok(row.map(Stream))
    }
}

/// Runs a stream command; a refusal is the caller's answer, anything else an error.
pub(super) async fn execute(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
    command: &StreamCommand,
) -> async_graphql::Result<Result<StreamOutcome, Refusal>> {
    match state
        .bus
        .execute::<StreamAggregate>(&id.to_string(), command, &principal.command_context(), None)
        .await
    {
        Ok(outcome) => Ok(Ok(outcome)),
        Err(error) => Ok(Err(Refusal::of(error)?)),
    }
}

async fn wait(state: &BridgeState, id: Uuid) -> async_graphql::Result<()> {
    state
        .wait_until_projected(AggregateType::Stream, &id.to_string())
        .await
        .map_err(|e| internal(&e))
}

/// The stream as the read model holds it once it has applied the mutation.
pub(super) async fn projected(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Stream> {
    wait(state, id).await?;
    load_stream(state, principal, id)
        .await?
        .map(Stream)
        .ok_or_else(|| {
            internal(&std::io::Error::other(format!(
                "stream {id} vanished after a write"
            )))
        })
}

fn unsupported(field: &str, what: &str) -> ValidationError {
    ValidationError::new(
        field,
        format!("{what} is not supported by this server"),
        Some("unsupported"),
    )
}

fn unsupported_create(input: &CreateStreamInput) -> Option<ValidationError> {
    if input.ingest_mode == Some(IngestMode::Managed) {
        return Some(unsupported("input.ingestMode", "MANAGED ingest"));
    }
    common_unsupported(
        input.live_video_abr.as_deref(),
        input.pull_source.as_ref(),
        input.source_location.as_ref(),
    )
}

fn unsupported_update(input: &UpdateStreamInput, current: IngestMode) -> Option<ValidationError> {
    if input.ingest_mode.is_some_and(|mode| mode != current) {
        return Some(ValidationError::new(
            "input.ingestMode",
            "cannot change after the stream is created",
            Some("immutable"),
        ));
    }
    if input.dvr_chapter_mode.is_some()
        || input.dvr_chapter_interval_seconds.is_some_and(|s| s != 0)
    {
        return Some(unsupported("input.dvrChapterMode", "DVR chapters"));
    }
    if input
        .monitoring
        .is_some_and(|m| m != MonitoringToggle::Inherit)
    {
        return Some(unsupported("input.monitoring", "a monitoring override"));
    }
    common_unsupported(
        input.live_video_abr.as_deref(),
        input.pull_source.as_ref(),
        input.source_location.as_ref(),
    )
}

fn common_unsupported(
    live_video_abr: Option<&str>,
    pull_source: Option<&PullSourceInput>,
    source_location: Option<&SourceLocationInput>,
) -> Option<ValidationError> {
    if live_video_abr.is_some_and(|abr| abr != "INHERIT") {
        return Some(unsupported(
            "input.liveVideoAbr",
            "a live rendition override",
        ));
    }
    if pull_source.is_some_and(|p| p.enabled == Some(false)) {
        return Some(unsupported(
            "input.pullSource.enabled",
            "a disabled pull source",
        ));
    }
    if source_location.is_some_and(|l| {
        l.mode != SourceLocationMode::Any || !l.clusters.is_empty() || !l.avoid_node_ids.is_empty()
    }) {
        return Some(unsupported(
            "input.sourceLocation",
            "restricting where a source is ingested",
        ));
    }
    None
}

/// Opens a sealed secret from the read model.
fn open(state: &BridgeState, sealed: &[u8], context: &str) -> async_graphql::Result<String> {
    let sealed = SealedSecret::decode(sealed).map_err(|e| internal(&e))?;
    let plain = state
        .secrets
        .open(&sealed, context)
        .map_err(|e| internal(&e))?;
    String::from_utf8(plain).map_err(|e| internal(&e))
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

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
