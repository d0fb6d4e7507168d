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
