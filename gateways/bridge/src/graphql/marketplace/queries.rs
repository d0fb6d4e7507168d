//! Marketplace queries: they read the control-plane read model.

use super::*;

#[derive(Debug, Default)]
pub struct MarketplaceQuery;

#[Object]
impl MarketplaceQuery {
    /// One cluster as offered: public and unlisted ones, and private ones
    /// the tenant owns, is invited to or subscribed to.
    async fn marketplace_cluster(
        &self,
        ctx: &Context<'_>,
        cluster_id: String,
    ) -> async_graphql::Result<Option<MarketplaceCluster>> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let Some(uuid) = cluster_uuid(&cluster_id) else {
            return Ok(None);
        };
        let state = state(ctx)?;
        match read_model::offer(&state.pool, principal.tenant_id(), uuid)
            .await
            .map_err(read_failed)?
        {
            Some(row) => Ok(offers(state, principal, vec![row]).await?.pop()),
            None => Ok(None),
        }
    }

    /// The public offers of the platform and of other tenants, newest first.
    async fn marketplace_clusters_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<MarketplaceClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let state = state(ctx)?;
        let Paged {
            edges,
            bounds,
            total,
        } = read_model::public_offers(&state.pool, principal.tenant_id(), &page_of(page.as_ref())?)
            .await
            .map_err(read_failed)?;
        let (cursors, rows): (Vec<_>, Vec<_>) = edges.into_iter().unzip();
        let offers = offers(state, principal, rows).await?;
        Ok(MarketplaceClustersConnection::new(Paged {
            edges: cursors.into_iter().zip(offers).collect(),
            bounds,
            total,
        }))
    }

    /// Other tenants' clusters this tenant holds an active subscription to.
    async fn my_subscriptions_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<ClustersConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        clusters_page(state(ctx)?, principal, Visible::Subscribed, page.as_ref()).await
    }

    /// Requests waiting for approval on one of the tenant's own clusters
    /// (empty for any other cluster).
    async fn pending_subscriptions_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        cluster_id: ID,
    ) -> async_graphql::Result<ClusterSubscriptionsConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let which = Subscriptions::PendingOn {
            cluster: cluster_uuid(&cluster_id.0),
            owner: principal.tenant_id(),
        };
        let page = page_of(page.as_ref())?;
        let rows = read_model::subscriptions(&state(ctx)?.pool, which, &page)
            .await
            .map_err(read_failed)?;
        Ok(ClusterSubscriptionsConnection::new(rows.map(subscription)))
    }

    /// The invites made on one of the tenant's own clusters (empty for any other).
    async fn cluster_invites_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        cluster_id: ID,
    ) -> async_graphql::Result<ClusterInvitesConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let which = Invites::MadeOn {
            cluster: cluster_uuid(&cluster_id.0),
            owner: principal.tenant_id(),
        };
        invites_page(state(ctx)?, which, page.as_ref()).await
    }

    /// The invites other tenants sent to this one.
    async fn my_cluster_invites_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
    ) -> async_graphql::Result<ClusterInvitesConnection> {
        let principal = require(ctx, Scope::InfrastructureRead)?;
        let which = Invites::SentTo(principal.tenant_id());
        invites_page(state(ctx)?, which, page.as_ref()).await
    }
}

async fn invites_page(
    state: &BridgeState,
    which: Invites,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<ClusterInvitesConnection> {
    let rows = read_model::invites(&state.pool, which, &page_of(page)?)
        .await
        .map_err(read_failed)?;
    let now = Utc::now();
    Ok(ClusterInvitesConnection::new(
        rows.map(|row| invite(row, now)),
    ))
}
