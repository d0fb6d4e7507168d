//! Stream mutations: stream commands, answered from the read model once
//! it holds them.

use super::*;

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
        answer(CreateStreamResult::from, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            if let Some(refusal) = unsupported_create(&input) {
                return Err(refusal.into());
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
            let id = mutation::new_id(ctx, principal);
            run(ctx, state, principal, id, &command).await?;
            Ok(CreateStreamResult::Stream(
                projected(state, principal, id).await?,
            ))
        })
        .await
    }

    async fn update_stream(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateStreamInput,
    ) -> async_graphql::Result<UpdateStreamResult> {
        answer(UpdateStreamResult::from, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            // The stream is read first: what may change depends on its mode.
            let stream = match stream_uuid(&id) {
                Ok(Some(uuid)) => load_stream(state, principal, uuid).await?,
                Ok(None) => None,
                Err(message) => return Err(ValidationError::new("id", message, None).into()),
            };
            let stream = stream.ok_or_else(|| Refusal::not_found(STREAM_TYPE, &id.0))?;
            if let Some(refusal) = unsupported_update(&input, IngestMode::of(&stream)) {
                return Err(refusal.into());
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
            run(ctx, state, principal, stream.id, &command).await?;
            Ok(UpdateStreamResult::Stream(
                projected(state, principal, stream.id).await?,
            ))
        })
        .await
    }

    async fn delete_stream(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DeleteStreamResult> {
        answer(
            |refusal| DeleteStreamResult::refused(refusal, &id.0),
            async {
                let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
                let uuid = commanded_stream(&id)?;
                run(ctx, state, principal, uuid, &StreamCommand::Delete).await?;
                Ok(DeleteStreamResult::DeleteSuccess(DeleteSuccess {
                    success: true,
                    deleted_id: ids::global(STREAM_TYPE, &uuid.to_string()),
                    pending: Some(delete_pending(state, uuid).await),
                }))
            },
        )
        .await
    }

    /// Replaces the primary stream key; the old one stops working.
    async fn refresh_stream_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<UpdateStreamResult> {
        answer(UpdateStreamResult::from, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            let uuid = commanded_stream(&id)?;
            run(ctx, state, principal, uuid, &StreamCommand::RefreshKey).await?;
            Ok(UpdateStreamResult::Stream(
                projected(state, principal, uuid).await?,
            ))
        })
        .await
    }

    /// Adds a stream key besides the primary one.
    async fn create_stream_key(
        &self,
        ctx: &Context<'_>,
        stream_id: ID,
        input: CreateStreamKeyInput,
    ) -> async_graphql::Result<CreateStreamKeyResult> {
        answer(CreateStreamKeyResult::from, async {
            let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
            let uuid = commanded_stream(&stream_id)?;
            let command = StreamCommand::AddKey { label: input.name };
            let key_id = match run(ctx, state, principal, uuid, &command).await? {
                StreamOutcome::Key { key_id, .. } => key_id,
                other => {
                    return Err(internal(&std::io::Error::other(format!(
                        "adding a key answered {other:?}"
                    )))
                    .into());
                }
            };
            wait(state, uuid).await?;
            let read = read_model::key(&state.pool, &key_id).await;
            let row = mutation::read_back("StreamKey", &key_id, read)?;
            Ok(CreateStreamKeyResult::StreamKey(stream_key(state, row)?))
        })
        .await
    }

    async fn delete_stream_key(
        &self,
        ctx: &Context<'_>,
        stream_id: ID,
        key_id: ID,
    ) -> async_graphql::Result<DeleteStreamKeyResult> {
        answer(
            |refusal| DeleteStreamKeyResult::refused(refusal, &key_id.0),
            async {
                let (principal, state) = caller(ctx, Scope::StreamsWrite)?;
                let uuid = commanded_stream(&stream_id)?;
                let command = StreamCommand::DeleteKey {
                    key_id: key_id.0.clone(),
                };
                run(ctx, state, principal, uuid, &command).await?;
                Ok(DeleteStreamKeyResult::DeleteSuccess(DeleteSuccess {
                    success: true,
                    deleted_id: key_id.clone(),
                    pending: Some(delete_pending(state, uuid).await),
                }))
            },
        )
        .await
    }
}

pub(in crate::graphql) fn unsupported(field: &str, what: &str) -> ValidationError {
    ValidationError::new(
        field,
        format!("{what} is not supported by this server"),
        Some("unsupported"),
    )
}

pub(in crate::graphql) fn unsupported_create(input: &CreateStreamInput) -> Option<ValidationError> {
    if input.ingest_mode == Some(IngestMode::Managed) {
        return Some(unsupported("input.ingestMode", "MANAGED ingest"));
    }
    common_unsupported(
        input.live_video_abr.as_deref(),
        input.pull_source.as_ref(),
        input.source_location.as_ref(),
    )
}

pub(in crate::graphql) fn unsupported_update(
    input: &UpdateStreamInput,
    current: IngestMode,
) -> Option<ValidationError> {
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

pub(in crate::graphql) fn common_unsupported(
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
