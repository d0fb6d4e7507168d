"""Conformance: bringing up edges through the published client. A new tenant
creates an edge cluster with createEdgeCluster; an anonymous caller holding
its token bootstraps an edge with bootstrapEdge. Run by tests/graphql_conformance.rs."""

import os
import uuid
from urllib.parse import urlparse

from common import URL, check, done, refused, register
from livepeer_frameworks import FrameWorksClient, expect_result
from livepeer_frameworks.graphql import BootstrapEdgeInput, CreateEdgeClusterInput

SHARED, FOREIGN = os.environ["FW_CLUSTER_SHARED"], os.environ["FW_CLUSTER_B"]
token, tenant = register()
fw = FrameWorksClient(URL, token=token)
reader = FrameWorksClient(URL, token=os.environ["FW_READ_TOKEN"])
anonymous = FrameWorksClient(URL)
made = {}


def edge(**fields):
    return expect_result(anonymous.bootstrap_edge(BootstrapEdgeInput(**fields)).bootstrap_edge, "BootstrapEdgeResponse")


@check("createEdgeCluster makes a private cluster in the control cluster's region, with a token and the balancer")
def _():
    created = expect_result(
        fw.create_edge_cluster(
            CreateEdgeClusterInput(clusterName="home edge", shortDescription="my rack", controlClusterId=SHARED)
        ).create_edge_cluster,
        "CreateEdgeClusterResponse",
    )
    cluster = created.cluster
    assert cluster.cluster_name == "home edge" and cluster.owner_tenant_id == tenant and cluster.cluster_type == "dedicated"
    assert cluster.region_id == "eu-west" and cluster.visibility == "PRIVATE" and cluster.short_description == "my rack"
    assert (cluster.max_concurrent_streams, cluster.max_concurrent_viewers, cluster.max_bandwidth_mbps) == (100, 5000, 10000)
    host = urlparse(cluster.base_url).hostname
    assert host.endswith(".edge.frameworks.localhost") and host.startswith("c"), cluster.base_url
    assert created.bootstrap_token.token.startswith("fwe_") and created.bootstrap_token.cluster_id == cluster.cluster_id
    assert created.foghorn_addr == "127.0.0.1:18029"
    assert [e.node.cluster_id for e in fw.get_clusters_connection().clusters_connection.edges if not e.node.is_platform_official] == [
        cluster.cluster_id
    ]
    made.update(cluster=cluster.cluster_id, slug=host.split(".")[0], token=created.bootstrap_token.token)


@check("createEdgeCluster refuses a blank name, a control cluster that is not the platform's, and a read-only token")
def _():
    refused(lambda: fw.create_edge_cluster(CreateEdgeClusterInput(clusterName="  ")).create_edge_cluster, "ValidationError", field="input.name")
    refused(
        lambda: fw.create_edge_cluster(CreateEdgeClusterInput(clusterName="x", controlClusterId=FOREIGN)).create_edge_cluster,
        "ValidationError",
        field="input.controlClusterId",
    )
    refused(lambda: reader.create_edge_cluster(CreateEdgeClusterInput(clusterName="x")).create_edge_cluster, "AuthError", code="FORBIDDEN")


@check("bootstrapEdge is public: the token reserves a node and names its domains and balancer, the same each time")
def _():
    first = edge(token=made["token"], externalIp="203.0.113.7")
    assert first.cluster_id == made["cluster"] and first.cluster_slug == made["slug"]
    assert first.pool_domain == f"{made['slug']}.edge.frameworks.localhost"
    assert first.edge_domain.endswith("." + first.pool_domain) and first.edge_domain.startswith("n")
    assert first.foghorn_grpc_addr == "127.0.0.1:18029" and uuid.UUID(first.node_id)
    assert first.cert_pem is None and first.telemetry.enabled is False
    again = edge(token=made["token"], preferredNodeId=str(uuid.uuid4()))
    assert (again.node_id, again.edge_domain) == (first.node_id, first.edge_domain)


@check("bootstrapEdge honours a free preferred node id and refuses bad tokens and addresses")
def _():
    second = expect_result(fw.create_enrollment_token(made["cluster"], name="edge-2").create_enrollment_token, "CreateEnrollmentTokenResponse")
    wanted = str(uuid.uuid4())
    refused(
        lambda: anonymous.bootstrap_edge(BootstrapEdgeInput(token=second.bootstrap_token.token, externalIp="not-an-ip")).bootstrap_edge,
        "ValidationError",
        field="input.externalIp",
    )
    assert edge(token=second.bootstrap_token.token, preferredNodeId=wanted).node_id == wanted
    refused(lambda: anonymous.bootstrap_edge(BootstrapEdgeInput(token="fwe_unknown")).bootstrap_edge, "AuthError", code="UNAUTHORIZED")


done("edges")
