//! The read model's clusters and nodes as the caller sees them.

use super::*;

/// A just-issued enrolment token as the read model has it, with its secret.
pub(in crate::graphql) async fn bootstrap_token(
    state: &BridgeState,
    token_id: &str,
    token: String,
) -> async_graphql::Result<BootstrapToken> {
    let row = read_model::enrolment_token(&state.pool, token_id)
        .await
        .map_err(read_failed)?
        .ok_or_else(|| {
            internal(&std::io::Error::other(format!(
                "enrolment token {token_id} is not in the read model"
            )))
        })?;
    let read_model::EnrolmentTokenRow {
        name,
        cluster_id,
        expires_at,
        issued_by,
        created_at,
    } = row;
    Ok(BootstrapToken {
        id: ID(token_id.to_owned()),
        name,
        token: Some(token),
        kind: "edge_node".into(),
        cluster_id: Some(cluster_id.to_string()),
        expected_ip: None,
        metadata: None,
        usage_limit: Some(1),
        usage_count: 0,
        expires_at: Some(Time(expires_at)),
        used_at: None,
        created_by: Some(issued_by),
        created_at: Time(created_at),
    })
}

/// One cluster the caller may use, by global or raw id.
pub(in crate::graphql) async fn usable_cluster(
    state: &BridgeState,
    principal: &Principal,
    id: &str,
) -> async_graphql::Result<Option<Cluster>> {
    let Some(uuid) = cluster_uuid(id) else {
        return Ok(None);
    };
    let row = read_model::usable_by(&state.pool, principal.tenant_id(), uuid)
        .await
        .map_err(read_failed)?;
    match row {
        Some(row) => Ok(Some(cluster(state, principal, row).await?)),
        None => Ok(None),
    }
}

/// A cluster's UUID from its global or raw id.
pub(in crate::graphql) fn cluster_uuid(id: &str) -> Option<Uuid> {
    ids::uuid(CLUSTER_TYPE, id)
}

/// A page of clusters, newest first, with the total.
pub(super) async fn list(
    state: &BridgeState,
    principal: &Principal,
    visible: Visible,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<Paged<ClusterRow>> {
    read_model::list(&state.pool, principal.tenant_id(), visible, &page_of(page)?)
        .await
        .map_err(read_failed)
}

/// A page of clusters as the caller sees them.
pub(in crate::graphql) async fn clusters_page(
    state: &BridgeState,
    principal: &Principal,
    visible: Visible,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<ClustersConnection> {
    let Paged {
        edges,
        bounds,
        total,
    } = list(state, principal, visible, page).await?;
    let (cursors, rows): (Vec<_>, Vec<_>) = edges.into_iter().unzip();
    let clusters = describe(state, principal, rows).await?;
    Ok(ClustersConnection::new(Paged {
        edges: cursors.into_iter().zip(clusters).collect(),
        bounds,
        total,
    }))
}

/// A duration of hours, minutes and seconds (`1h30m`, `90s`), in seconds.
pub(in crate::graphql) fn parse_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("{text:?} is not a duration like 30m, 24h or 1h30m");
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let value: i64 = digits.parse().map_err(|_| invalid())?;
        total = total
            .checked_add(value.checked_mul(unit).ok_or_else(invalid)?)
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(invalid());
    }
    Ok(total)
}

/// A cluster just changed by the caller's command, from the read model.
pub(in crate::graphql) async fn cluster_by_id(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Cluster> {
    let row = read_model::get(&state.pool, id)
        .await
        .map_err(read_failed)?
        .ok_or_else(|| {
            internal(&std::io::Error::other(format!(
                "cluster {id} is not in the read model"
            )))
        })?;
    cluster(state, principal, row).await
}

/// A cluster as the caller sees it, with its health from the live state.
pub(in crate::graphql) async fn cluster(
    state: &BridgeState,
    principal: &Principal,
    row: ClusterRow,
) -> async_graphql::Result<Cluster> {
    let mut described = describe(state, principal, vec![row]).await?;
    Ok(described.remove(0))
}

/// Clusters as the caller sees them, in their order: three reads for the
/// lot (subscriptions, preference, node loads), whatever their number.
pub(in crate::graphql) async fn describe(
    state: &BridgeState,
    principal: &Principal,
    rows: Vec<ClusterRow>,
) -> async_graphql::Result<Vec<Cluster>> {
    let tenant = principal.tenant_id();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let subscribed = subscribed_among(&state.pool, tenant, &ids)
        .await
        .map_err(|e| internal(&e))?;
    let preferred = accounts::preferred_cluster(&state.pool, tenant)
        .await
        .map_err(read_failed)?;
    let mut loads = cluster_loads(state, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let loads = loads.remove(&row.id).unwrap_or_default();
            let live = loads.iter().filter(|load| load.live()).count();
            let healthy = loads.iter().filter(|load| load.healthy()).count();
            let owned = row.tenant_id == Some(tenant);
            let usable = usable(
                row.shared,
                row.tenant_id,
                tenant,
                subscribed.contains(&row.id),
            );
            Cluster {
                id: ids::global(CLUSTER_TYPE, &row.id.to_string()),
                cluster_id: row.id.to_string(),
                cluster_name: row.name,
                cluster_type: if row.shared { "shared" } else { "dedicated" }.into(),
                deployment_model: if row.shared { "platform" } else { "private" }.into(),
                base_url: row.base_url,
                database_url: None,
                periscope_url: None,
                kafka_brokers: None,
                max_concurrent_streams: row.max_concurrent_streams,
                max_concurrent_viewers: row.max_concurrent_viewers,
                max_bandwidth_mbps: row.max_bandwidth_mbps,
                health_status: cluster_health(live, healthy).into(),
                is_active: live > 0,
                // A preference outlives a cancelled subscription; it counts
                // only while the cluster is usable.
                is_default_cluster: usable && preferred == Some(row.id),
                is_platform_official: row.shared,
                region_id: Some(row.region),
                is_subscribed: usable,
                created_at: Some(Time(row.created_at)),
                updated_at: Some(Time(row.updated_at)),
                owner_tenant_id: row.tenant_id.map(|t| t.to_string()),
                visibility: ClusterVisibility::from_column(&row.visibility),
                pricing_model: ClusterPricingModel::from_column(&row.pricing_model),
                monthly_price_cents: row.monthly_price_cents,
                requires_approval: row.requires_approval,
                short_description: row.short_description,
                uuid: row.id,
                owned,
            }
        })
        .collect())
}

/// The nodes of the caller's own clusters, filtered and paged.
pub(super) async fn nodes(
    state: &BridgeState,
    principal: &Principal,
    cluster: Option<Uuid>,
    status: Option<NodeStatus>,
    page: Option<&ConnectionInput>,
) -> async_graphql::Result<InfrastructureNodesConnection> {
    let page = page_of(page)?;
    let rows =
        read_model::owned_nodes(&state.pool, principal.tenant_id(), cluster, NODE_SCAN_LIMIT)
            .await
            .map_err(read_failed)?;
    // Health lives in Redis, so the status filter and the count are applied here.
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let loads = node_loads(state, &ids).await?;
    let mut described = Vec::with_capacity(rows.len());
    for (row, load) in rows.into_iter().zip(&loads) {
        let node = node(principal, row, load);
        let health = match &node.live_state {
            None => NodeStatus::Unhealthy,
            Some(live) if live.is_healthy => NodeStatus::Healthy,
            Some(_) => NodeStatus::Degraded,
        };
        if status.is_none_or(|wanted| wanted == health) {
            described.push(node);
        }
    }
    let total = i64::try_from(described.len()).unwrap_or(i64::MAX);
    let position = |node: &InfrastructureNode| Position {
        created_at: node.created_at.map_or_else(DateTime::default, |t| t.0),
        id: node.node_id.clone(),
    };
    let selected = page.select(described, position);
    Ok(InfrastructureNodesConnection::new(
        page.finish(selected, position, total),
    ))
}

/// One node of the caller's own clusters, by its UUID.
pub(in crate::graphql) async fn node_by_id(
    state: &BridgeState,
    principal: &Principal,
    id: Uuid,
) -> async_graphql::Result<Option<InfrastructureNode>> {
    let row = read_model::owned_node(&state.pool, principal.tenant_id(), id)
        .await
        .map_err(read_failed)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let load = node_loads(state, &[id]).await?.pop().unwrap_or_default();
    Ok(Some(node(principal, row, &load)))
}

/// A node's UUID from its global or raw id.
pub(in crate::graphql) fn node_uuid(id: &str) -> Option<Uuid> {
    ids::uuid(NODE_TYPE, id)
}

pub(super) fn node(principal: &Principal, row: NodeRow, load: &NodeLoad) -> InfrastructureNode {
    const MIB: f64 = 1_048_576.0;
    let last_seen = load.last_seen();
    let active_streams = load.number("active_streams") as i32;
    let live_state = last_seen.map(|seen| NodeLiveState {
        node_id: row.id.to_string(),
        tenant_id: row.tenant_id.unwrap_or(principal.tenant_id()).to_string(),
        cpu_percent: load.number("cpu_percent"),
        ram_used_bytes: load.number("memory_used_bytes") / MIB,
        ram_total_bytes: load.number("memory_total_bytes") / MIB,
        disk_used_bytes: load.number("disk_used_bytes"),
        disk_total_bytes: load.number("disk_total_bytes"),
        up_speed: load.number("bandwidth_up_bps"),
        down_speed: load.number("bandwidth_down_bps"),
        active_streams,
        is_healthy: load.healthy(),
        latitude: row.latitude,
        longitude: row.longitude,
        location: row.region.clone(),
        metadata: None,
        updated_at: Time(seen),
    });
    InfrastructureNode {
        id: ids::global(NODE_TYPE, &row.id.to_string()),
        node_id: row.id.to_string(),
        cluster_id: row.cluster_id.to_string(),
        node_name: row.hostname,
        node_type: "edge".into(),
        internal_ip: None,
        external_ip: Some(row.public_host).filter(|h| !h.is_empty()),
        wireguard_ip: None,
        wireguard_public_key: None,
        region: Some(row.region),
        latitude: Some(row.latitude),
        longitude: Some(row.longitude),
        availability_zone: None,
        cpu_cores: None,
        memory_gb: None,
        disk_gb: None,
        last_heartbeat: last_seen.map(Time),
        tags: None,
        metadata: None,
        created_at: Some(Time(row.enrolled_at)),
        updated_at: Some(Time(row.reenrolled_at.unwrap_or(row.enrolled_at))),
        live_state,
        effective_mode: NodeOperationalMode::from_column(&row.operational_mode),
        routing_impact_preview: RoutingImpactPreview {
            active_streams: if last_seen.is_some() {
                active_streams
            } else {
                0
            },
            active_viewers: i32::try_from(load.viewers).unwrap_or(i32::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_read_hours_minutes_and_seconds() {
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("1h30m"), Ok(5_400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert!(parse_duration("3d").is_err());
        assert!(parse_duration("12").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999h").is_err());
    }
}
