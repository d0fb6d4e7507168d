"""Conformance: clusters, their nodes and enrolment tokens through the
published client. The test harness creates tenant A's own cluster with one
enrolled node (whose load it reports), a shared platform cluster and another
tenant's cluster. Run by tests/graphql_conformance.rs."""

import os
from datetime import datetime, timedelta, timezone

from common import URL, check, done, post, raises, refused, session
from livepeer_frameworks import FrameWorksClient, GraphQLError, expect_result
from livepeer_frameworks.graphql import ConnectionInput, NodeOperationalMode, NodeStatus, SetNodeModeInput, TimeRangeInput

OWN, SHARED, FOREIGN, NODE = (os.environ[k] for k in ("FW_CLUSTER_A", "FW_CLUSTER_SHARED", "FW_CLUSTER_B", "FW_NODE_A"))
# The node reported three samples in this hour (CPU 20, 95 and 40 percent),
# one at 30 percent five minutes into the next, and one now at 42.5.
HOUR = datetime.fromisoformat(os.environ["FW_METRICS_HOUR"])
partial = []
fw_token = session(os.environ["FW_EMAIL_A"], os.environ["FW_PASSWORD_A"])
fw = FrameWorksClient(URL, token=fw_token, on_partial_errors=partial.append)
reader = FrameWorksClient(URL, token=os.environ["FW_READ_TOKEN"])


@check("cluster(id) answers the tenant's own cluster with its capacity and live health")
def _():
    cluster = fw.get_cluster(OWN).cluster
    assert cluster.cluster_id == OWN and cluster.cluster_name == "own" and cluster.region_id == "eu-west"
    assert (cluster.max_concurrent_streams, cluster.max_concurrent_viewers, cluster.max_bandwidth_mbps) == (250, 10_000, 4_000)
    assert cluster.cluster_type == "dedicated" and cluster.visibility == "PRIVATE" and not cluster.is_platform_official
    assert cluster.health_status == "healthy" and cluster.is_active and cluster.owner_tenant_id is not None
    assert cluster.base_url == "https://own.example.net/" and cluster.database_url is None


@check("a shared cluster is visible; another tenant's is not")
def _():
    shared = fw.get_cluster(SHARED).cluster
    assert shared.visibility == "PUBLIC" and shared.is_platform_official and shared.owner_tenant_id is None
    assert shared.health_status == "critical" and not shared.is_active
    assert fw.get_cluster(FOREIGN).cluster is None
    listed = fw.get_clusters_connection().clusters_connection
    assert listed.total_count == 2 and {e.node.cluster_id for e in listed.edges} == {OWN, SHARED}


@check("clustersAccessConnection and clustersAvailableConnection describe access")
def _():
    access = {e.node.cluster_id: e.node for e in fw.get_clusters_access_connection().clusters_access_connection.edges}
    assert set(access) == {OWN, SHARED}
    assert access[OWN].access_level == "owner" and access[SHARED].access_level == "shared"
    assert access[OWN].resource_limits == {"maxConcurrentStreams": 250, "maxConcurrentViewers": 10000, "maxBandwidthMbps": 4000}
    assert access[OWN].allow_private_pull_sources is False
    available = fw.get_clusters_available_connection().clusters_available_connection
    assert available.total_count == 1
    (shared,) = (e.node for e in available.edges)
    assert shared.cluster_id == SHARED and shared.auto_enroll and shared.tiers == ["free", "pro", "enterprise"]


@check("nodesConnection shows the own cluster's node with its live load")
def _():
    nodes = fw.get_nodes_connection().nodes_connection
    assert nodes.total_count == 1
    node = nodes.edges[0].node
    assert node.node_id == NODE and node.cluster_id == OWN and node.node_name == "edge-ams-1"
    assert node.node_type == "edge" and node.effective_mode == "NORMAL" and node.region == "eu-west"
    live = node.live_state
    assert live.cpu_percent == 42.5 and live.ram_total_bytes == 8192 and live.ram_used_bytes == 2048
    assert live.active_streams == 3 and live.is_healthy and live.up_speed == 250_000_000
    assert node.routing_impact_preview.active_streams == 3 and node.last_heartbeat is not None
    assert fw.get_nodes_connection(status=NodeStatus.HEALTHY).nodes_connection.total_count == 1
    assert fw.get_nodes_connection(status=NodeStatus.UNHEALTHY).nodes_connection.total_count == 0
    assert fw.get_nodes_connection(cluster_id=SHARED).nodes_connection.total_count == 0
    own = fw.get_cluster_nodes_connection(OWN).cluster.nodes_connection
    assert [e.node.node_id for e in own.edges] == [NODE]


@check("a shared cluster's nodes are FORBIDDEN: null, with the error at its path")
def _():
    cluster = fw.get_cluster_nodes_connection(SHARED).cluster
    assert cluster is not None and cluster.nodes_connection is None
    errors = [e for p in partial for e in p.errors]
    assert errors[-1]["path"] == ["cluster", "nodesConnection"] and errors[-1]["extensions"]["code"] == "FORBIDDEN"


@check("createEnrollmentToken answers a single-use token once")
def _():
    made = expect_result(fw.create_enrollment_token(OWN, name="edge-2", ttl="2h").create_enrollment_token, "CreateEnrollmentTokenResponse")
    token = made.bootstrap_token
    assert token.token.startswith("fwe_") and token.name == "edge-2" and token.kind == "edge_node"
    assert token.cluster_id == OWN and token.usage_limit == 1 and token.usage_count == 0 and token.used_at is None
    expected = datetime.now(timezone.utc) + timedelta(hours=2)
    assert abs((token.expires_at - expected).total_seconds()) < 120


@check("enrolment tokens: a bad ttl, another tenant's or the platform's cluster are refused")
def _():
    refused(lambda: fw.create_enrollment_token(OWN, ttl="3d").create_enrollment_token, "ValidationError", field="ttl")
    refused(lambda: fw.create_enrollment_token(FOREIGN).create_enrollment_token, "ValidationError", field="clusterId")
    refused(lambda: fw.create_enrollment_token(SHARED).create_enrollment_token, "AuthError")
    refused(lambda: reader.create_enrollment_token(OWN).create_enrollment_token, "AuthError", code="FORBIDDEN")
    raises(lambda: reader.get_clusters_connection(), GraphQLError, code="FORBIDDEN")


@check("networkStatus is public and shows only the platform's clusters and nodes")
def _():
    status = FrameWorksClient(URL).get_network_status().network_status
    assert [c.cluster_id for c in status.clusters] == [SHARED]
    (cluster,) = status.clusters
    assert cluster.node_count == 1 and cluster.healthy_node_count == 0 and cluster.status == "critical"
    assert cluster.egress_capacity_mbps == 4000 and cluster.cluster_type == "shared" and cluster.peer_count == 0
    assert (round(cluster.latitude, 2), round(cluster.longitude, 2)) == (50.11, 8.68)
    assert [(n.name, n.status) for n in status.nodes] == [("edge-fra-1", "offline")]
    assert NODE not in [n.node_id for n in status.nodes], "a tenant's own node is not public"
    assert (status.total_nodes, status.healthy_nodes) == (1, 0) and status.peer_connections == []


@check("node(id) pages the node's load samples from the analytics, newest first")
def _():
    node = fw.get_infrastructure_node_metrics_connection(NODE, page=ConnectionInput(first=2)).node
    assert node.typename__ == "InfrastructureNode"
    first = node.metrics_connection
    assert first.total_count == 5 and first.page_info.has_next_page and not first.page_info.has_previous_page
    assert [e.node.cpu_usage for e in first.edges] == [42.5, 30.0]
    sample = first.edges[1].node
    assert sample.timestamp == HOUR + timedelta(minutes=65) and sample.node_id == NODE and sample.cluster_id == OWN
    assert (sample.memory_total, sample.memory_used) == (8192, 2048) and sample.shm_total == 2 * 1024**3
    assert (sample.network_rx, sample.network_tx) == (4_000, 48_000) and sample.up_speed == 250_000_000 / 8
    assert sample.stream_count == 3 and sample.status == "healthy" and sample.is_healthy
    assert (round(sample.latitude, 2), round(sample.longitude, 2)) == (52.37, 4.9)
    after = first.page_info.end_cursor
    second = fw.get_infrastructure_node_metrics_connection(NODE, page=ConnectionInput(first=2, after=after)).node.metrics_connection
    assert [e.node.cpu_usage for e in second.edges] == [40.0, 95.0] and second.page_info.has_previous_page
    assert second.edges[1].node.status == "overloaded" and second.edges[1].node.is_healthy is False
    window = TimeRangeInput(start=HOUR, end=HOUR + timedelta(minutes=25))
    ranged = fw.get_infrastructure_node_metrics_connection(NODE, time_range=window).node.metrics_connection
    assert ranged.total_count == 2 and [e.node.cpu_usage for e in ranged.edges] == [95.0, 20.0]


@check("metrics1hConnection sums the node's load up by hour")
def _():
    hours = fw.get_infrastructure_node_metrics_1_h_connection(NODE).node.metrics_1_h_connection
    assert hours.total_count == 3
    by_hour = {e.node.timestamp: e.node for e in hours.edges}
    first, second = by_hour[HOUR], by_hour[HOUR + timedelta(hours=1)]
    assert round(first.avg_cpu, 3) == round((20 + 95 + 40) / 3, 3) and first.peak_cpu == 95 and not first.was_healthy
    assert first.avg_memory == 25 and first.peak_disk == 10 and first.avg_shm == 25
    # 20 Mbit/s in and 250 Mbit/s out for three 10 s windows.
    assert (first.total_bandwidth_in, first.total_bandwidth_out) == (75_000_000, 937_500_000)
    assert second.avg_cpu == 30 and second.was_healthy and second.total_bandwidth_in == 25_000_000
    empty = {"start": HOUR.isoformat(), "end": HOUR.isoformat()}
    query = "query($id: ID!, $r: TimeRangeInput) { node(id: $id) { ... on InfrastructureNode { metrics1hConnection(timeRange: $r) { totalCount } } } }"
    answer = post({"query": query, "variables": {"id": NODE, "r": empty}}, token=fw_token).json()
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED" and error["extensions"]["field"] == "timeRange", error
    assert error["path"] == ["node", "metrics1hConnection"]
    assert fw.get_infrastructure_node_metrics_connection(SHARED).node.typename__ == "Cluster", "a cluster id names the cluster"
    assert fw.get_infrastructure_node_metrics_connection(FOREIGN).node is None


@check("setNodeMode drains a node and puts it back; other tenants' nodes do not exist")
def _():
    drained = expect_result(fw.set_node_mode(SetNodeModeInput(nodeId=NODE, mode=NodeOperationalMode.DRAINING, reason="kernel upgrade")).set_node_mode, "InfrastructureNode")
    assert drained.node_id == NODE and drained.effective_mode == "DRAINING"
    assert fw.get_nodes_connection().nodes_connection.edges[0].node.effective_mode == "DRAINING"
    back = expect_result(fw.set_node_mode(SetNodeModeInput(nodeId=drained.id, mode=NodeOperationalMode.NORMAL)).set_node_mode, "InfrastructureNode")
    assert back.effective_mode == "NORMAL"
    refused(lambda: fw.set_node_mode(SetNodeModeInput(nodeId=FOREIGN, mode=NodeOperationalMode.MAINTENANCE)).set_node_mode, "NotFoundError")
    refused(lambda: reader.set_node_mode(SetNodeModeInput(nodeId=NODE, mode=NodeOperationalMode.MAINTENANCE)).set_node_mode, "AuthError", code="FORBIDDEN")


@check("setPreferredCluster takes a usable cluster and marks it the default")
def _():
    chosen = expect_result(fw.set_preferred_cluster(SHARED).set_preferred_cluster, "Cluster")
    assert chosen.cluster_id == SHARED and chosen.is_default_cluster
    assert not fw.get_cluster(OWN).cluster.is_default_cluster
    chosen = expect_result(fw.set_preferred_cluster(OWN).set_preferred_cluster, "Cluster")
    assert chosen.is_default_cluster and not fw.get_cluster(SHARED).cluster.is_default_cluster
    refused(lambda: fw.set_preferred_cluster(FOREIGN).set_preferred_cluster, "NotFoundError")
    assert fw.get_cluster(OWN).cluster.is_default_cluster, "a refused choice changes nothing"


@check("discoverServicesConnection finds the services the tenant's nodes run, with live health")
def _():
    found = fw.get_discover_services_connection("mistserver").discover_services_connection
    assert found.total_count == 1
    (mist,) = (e.node for e in found.edges)
    assert mist.instance_id == f"{NODE}/mistserver" and mist.node_id == NODE and mist.cluster_id == OWN
    assert mist.service_id == "mistserver" and mist.version == "fw-51c613a4" and (mist.port, mist.process_id) == (8080, 4101)
    assert mist.status == "RUNNING" and mist.health_status == "HEALTHY" and mist.stopped_at is None
    assert mist.last_health_check is not None and mist.started_at < datetime.now(timezone.utc) - timedelta(minutes=29)
    both = fw.get_discover_services_connection("edge", cluster_id=OWN).discover_services_connection
    assert [e.node.port for e in both.edges] == [18007]
    assert fw.get_discover_services_connection("edge", cluster_id=SHARED).discover_services_connection.total_count == 0
    raises(lambda: reader.get_discover_services_connection("edge"), GraphQLError, code="FORBIDDEN")


@check("serviceInstancesHealth says how each service is reached and whether it answers")
def _():
    health = {h.service_id: h for h in fw.get_service_instances_health().service_instances_health}
    assert set(health) == {"edge", "mistserver"}
    edge = health["edge"]
    assert (edge.protocol, edge.host, edge.port, edge.health_endpoint) == ("http", "edge-ams-1.example.net", 18007, "/health")
    assert edge.status == "healthy" and edge.cluster_id == OWN and edge.last_health_check is not None
    assert health["mistserver"].health_endpoint is None
    only = fw.get_service_instances_health(service_id="edge").service_instances_health
    assert [h.instance_id for h in only] == [f"{NODE}/edge"]


done("clusters")
