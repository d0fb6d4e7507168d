//! What stream mutations take, and the result unions they answer.

use super::*;

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
    pub(super) fn refused(refusal: Refusal, id: &str) -> Self {
        match delete_refusal(refusal, STREAM_TYPE, id) {
            Ok(e) => Self::NotFoundError(e),
            Err(e) => Self::AuthError(e),
        }
    }
}

impl DeleteStreamKeyResult {
    pub(super) fn refused(refusal: Refusal, id: &str) -> Self {
        match delete_refusal(refusal, "StreamKey", id) {
            Ok(e) => Self::NotFoundError(e),
            Err(e) => Self::AuthError(e),
        }
    }
}
