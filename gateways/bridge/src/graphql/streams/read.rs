//! The read model's streams: look-ups, the per-caller cache, and the
//! command-then-read-your-write path the mutations share.

use super::*;

/// One of the caller's streams, by global or raw id.
pub(in crate::graphql) async fn stream_by_id(
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
pub(in crate::graphql) fn stream_uuid(id: &ID) -> Result<Option<Uuid>, String> {
    ids::raw(STREAM_TYPE, &id.0).map(|raw| raw.parse().ok())
}

pub(in crate::graphql) async fn load_stream(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Option<StreamRow>> {
    load_stream_row(&state.pool, principal.tenant_id(), id).await
}

pub(in crate::graphql) async fn load_stream_row(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
) -> async_graphql::Result<Option<StreamRow>> {
    read_model::get(pool, tenant, id).await.map_err(read_failed)
}

/// Streams as events refer to them, cached for a second: a thousand
/// subscribers to one busy stream ask the database once a second at most.
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
        let tenant = principal.tenant_id();
        let row = self
            .0
            .get_or_load(&(tenant, id), async || {
                load_stream_row(pool, tenant, id).await
            })
            .await?;
        Ok(row.map(Stream))
    }
}

/// Runs a stream command; its refusal stops the mutation.
pub(in crate::graphql) async fn run(
    ctx: &Context<'_>,
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
    command: &StreamCommand,
) -> Result<StreamOutcome, Stop> {
    mutation::command::<StreamAggregate>(ctx, state, principal, &id.to_string(), command).await
}

/// The stream an id names, for a command: an id that does not decode
/// names no stream (whether the caller owns it is the aggregate's check).
pub(in crate::graphql) fn commanded_stream(id: &ID) -> Result<Uuid, Stop> {
    match stream_uuid(id) {
        Ok(Some(uuid)) => Ok(uuid),
        _ => Err(Refusal::not_found(STREAM_TYPE, &id.0).into()),
    }
}

/// Waits until the read model holds what was just done to stream `id`: an
/// accepted command's effect, so a late read model is
/// `ACCEPTED_NOT_VISIBLE`, not a failure.
pub(in crate::graphql) async fn wait(state: &BridgeState, id: Uuid) -> async_graphql::Result<()> {
    state
        .wait_until_projected(AggregateType::Stream, &id.to_string())
        .await
        .map_err(|e| accepted_stream(id, &e))
}

/// Whether an accepted delete of (or in) stream `id` is still pending in
/// the read model, for `DeleteSuccess.pending`.
pub(in crate::graphql) async fn delete_pending(state: &BridgeState, id: Uuid) -> bool {
    let waited = state
        .wait_until_projected(AggregateType::Stream, &id.to_string())
        .await;
    mutation::pending(STREAM_TYPE, id, waited)
}

/// The stream as the read model holds it once it has applied the mutation.
pub(in crate::graphql) async fn projected(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Stream> {
    wait(state, id).await?;
    let global = ids::global(STREAM_TYPE, &id.to_string());
    mutation::read_back(
        STREAM_TYPE,
        &global,
        load_stream(state, principal, id).await,
    )
    .map(Stream)
}

/// [`mutation::accepted_not_visible`] for stream `id`.
fn accepted_stream(id: Uuid, cause: &dyn std::fmt::Debug) -> async_graphql::Error {
    let global = ids::global(STREAM_TYPE, &id.to_string());
    mutation::accepted_not_visible(STREAM_TYPE, &global, cause)
}

/// Opens a sealed secret from the read model.
pub(in crate::graphql) fn open(
    state: &BridgeState,
    sealed: &[u8],
    context: &str,
) -> async_graphql::Result<String> {
    let sealed = SealedSecret::decode(sealed).map_err(|e| internal(&e))?;
    let plain = state
        .secrets
        .open(&sealed, context)
        .map_err(|e| internal(&e))?;
    String::from_utf8(plain).map_err(|e| internal(&e))
}

pub(in crate::graphql) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
