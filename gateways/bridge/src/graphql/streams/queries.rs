//! Stream queries: they read the control-plane read model.

use super::*;

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
        let page = page_of(page.as_ref())?;
        let state = state(ctx)?;
        let pattern = search
            .filter(|s| !s.trim().is_empty())
            .map(|s| format!("%{}%", escape_like(s.trim())));
        let streams = read_model::list(
            &state.pool,
            principal.tenant_id(),
            pattern.as_deref(),
            &page,
        )
        .await
        .map_err(read_failed)?;
        Ok(StreamsConnection::new(streams.map(Stream)))
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
        let page = page_of(page.as_ref())?;
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
        let keys = read_model::keys(&state.pool, stream.id, &page)
            .await
            .map_err(read_failed)?;
        let edges = keys
            .edges
            .into_iter()
            .map(|(c, row)| Ok((c, stream_key(state, row)?)))
            .collect::<async_graphql::Result<Vec<_>>>()?;
        Ok(StreamKeysConnection::new(Paged {
            edges,
            bounds: keys.bounds,
            total: keys.total,
        }))
    }

    /// Whether a stream key belongs to one of the tenant's streams.
    async fn validate_stream_key(
        &self,
        ctx: &Context<'_>,
        stream_key: String,
    ) -> async_graphql::Result<Option<StreamValidation>> {
        let principal = require(ctx, Scope::StreamsRead)?;
        let state = state(ctx)?;
        let found = read_model::tenant_stream_of_key(
            &state.pool,
            principal.tenant_id(),
            sha256(stream_key.as_bytes()).as_slice(),
        )
        .await
        .map_err(read_failed)?;
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
