"""Conformance: the cluster marketplace through the published client. Tenant A
owns the cluster the harness made; the script signs up tenants C, D and E to
subscribe, be invited and be refused. Run by tests/graphql_conformance.rs."""

import os

from common import URL, check, done, raises, refused, register, session
from livepeer_frameworks import FrameWorksClient, GraphQLError, expect_result
from livepeer_frameworks.graphql import (
    ClusterPricingModel,
    ClusterVisibility,
    CreateClusterInviteInput,
    UpdateClusterMarketplaceInput,
)

OWN, SHARED, FOREIGN = (os.environ[k] for k in ("FW_CLUSTER_A", "FW_CLUSTER_SHARED", "FW_CLUSTER_B"))
a = FrameWorksClient(URL, token=session(os.environ["FW_EMAIL_A"], os.environ["FW_PASSWORD_A"]))
reader = FrameWorksClient(URL, token=os.environ["FW_READ_TOKEN"])
token_c, tenant_c = register()
token_d, tenant_d = register()
token_e, tenant_e = register()
c, d, e = (FrameWorksClient(URL, token=t) for t in (token_c, token_d, token_e))


def offer(**fields):
    return UpdateClusterMarketplaceInput(**fields)


@check("a tenant's new cluster is private: the owner sees its offer, others see nothing")
def _():
    own = a.get_marketplace_cluster(OWN).marketplace_cluster
    assert own.visibility == "PRIVATE" and own.pricing_model == "FREE_UNMETERED" and own.requires_approval
    assert not own.is_eligible and own.denial_reason == "this is your own cluster" and own.is_subscribed
    assert c.get_marketplace_cluster(OWN).marketplace_cluster is None
    assert OWN not in [x.node.cluster_id for x in c.get_marketplace_clusters_connection().marketplace_clusters_connection.edges]
    refused(lambda: c.request_cluster_subscription(OWN).request_cluster_subscription, "NotFoundError")


@check("updateClusterMarketplace changes the offer; only the owner may, and bad prices are named")
def _():
    refused(
        lambda: a.update_cluster_marketplace(OWN, offer(pricingModel=ClusterPricingModel.MONTHLY)).update_cluster_marketplace,
        "ValidationError",
        field="input.monthlyPriceCents",
    )
    refused(lambda: a.update_cluster_marketplace(OWN, offer()).update_cluster_marketplace, "ValidationError", field="input")
    refused(lambda: c.update_cluster_marketplace(OWN, offer(requiresApproval=False)).update_cluster_marketplace, "NotFoundError")
    refused(lambda: reader.update_cluster_marketplace(OWN, offer(requiresApproval=False)).update_cluster_marketplace, "AuthError", code="FORBIDDEN")
    updated = expect_result(
        a.update_cluster_marketplace(
            OWN,
            offer(
                visibility=ClusterVisibility.PUBLIC,
                pricingModel=ClusterPricingModel.MONTHLY,
                monthlyPriceCents=4900,
                shortDescription="Amsterdam edge, low latency",
            ),
        ).update_cluster_marketplace,
        "Cluster",
    )
    assert updated.cluster_id == OWN and updated.visibility == "PUBLIC" and updated.pricing_model == "MONTHLY"
    assert updated.monthly_price_cents == 4900 and updated.requires_approval
    assert updated.short_description == "Amsterdam edge, low latency"


@check("the marketplace lists public offers with their utilisation, owner and eligibility")
def _():
    listed = {x.node.cluster_id: x.node for x in c.get_marketplace_clusters_connection().marketplace_clusters_connection.edges}
    assert set(listed) == {OWN, SHARED}
    own = listed[OWN]
    assert own.cluster_name == "own" and own.max_concurrent_streams == 250 and own.max_concurrent_viewers == 10_000
    # The harness's node reports 3 live streams against a capacity of 250.
    assert abs(own.current_utilization - 3 / 250) < 1e-9
    assert own.is_eligible and own.denial_reason is None and not own.is_subscribed and own.subscription_status is None
    assert own.owner_name is not None and own.monthly_price_cents == 4900
    shared = listed[SHARED]
    assert shared.is_subscribed and not shared.is_eligible and shared.pricing_model == "TIER_INHERIT"
    assert shared.current_utilization is None, "its node has not reported"
    assert [x.node.cluster_id for x in a.get_marketplace_clusters_connection().marketplace_clusters_connection.edges] == [SHARED]


subscription = {}


@check("a request waits for approval; asking twice is a conflict; others cannot see or decide it")
def _():
    asked = expect_result(c.request_cluster_subscription(OWN).request_cluster_subscription, "ClusterSubscription")
    assert asked.subscription_status == "PENDING_APPROVAL" and asked.tenant_id == tenant_c and asked.cluster_id == OWN
    assert asked.cluster_name == "own" and asked.access_level == "write" and asked.approved_at is None
    subscription["id"] = asked.id
    refused(lambda: c.request_cluster_subscription(OWN).request_cluster_subscription, "ValidationError", code="CONFLICT")
    assert c.get_marketplace_cluster(OWN).marketplace_cluster.subscription_status == "PENDING_APPROVAL"
    pending = a.get_pending_subscriptions_connection(OWN).pending_subscriptions_connection
    assert pending.total_count == 1 and pending.edges[0].node.id == asked.id and pending.edges[0].node.tenant_name is not None
    assert c.get_pending_subscriptions_connection(OWN).pending_subscriptions_connection.total_count == 0
    refused(lambda: c.approve_cluster_subscription(asked.id).approve_cluster_subscription, "NotFoundError")
    assert c.get_my_subscriptions_connection().my_subscriptions_connection.total_count == 0


@check("once approved the cluster is the subscriber's to use, but its nodes stay the owner's")
def _():
    approved = expect_result(a.approve_cluster_subscription(subscription["id"]).approve_cluster_subscription, "ClusterSubscription")
    assert approved.subscription_status == "ACTIVE" and approved.approved_at is not None and approved.approved_by.startswith("user:")
    refused(lambda: a.approve_cluster_subscription(subscription["id"]).approve_cluster_subscription, "ValidationError", code="CONFLICT")
    mine = c.get_my_subscriptions_connection().my_subscriptions_connection
    assert [x.node.cluster_id for x in mine.edges] == [OWN] and mine.edges[0].node.is_subscribed
    usable = {x.node.cluster_id for x in c.get_clusters_connection().clusters_connection.edges}
    assert usable == {OWN, SHARED}, "FOREIGN stays invisible"
    access = {x.node.cluster_id: x.node.access_level for x in c.get_clusters_access_connection().clusters_access_connection.edges}
    assert access == {OWN: "subscriber", SHARED: "shared"}
    assert c.get_cluster_nodes_connection(OWN).cluster.nodes_connection is None


invite = {}


@check("createClusterInvite validates its input and shows the token while the invite is open")
def _():
    def make(**fields):
        return a.create_cluster_invite(CreateClusterInviteInput(clusterId=OWN, **fields)).create_cluster_invite

    refused(lambda: make(invitedTenantId=tenant_d, resourceLimits={"bogus": 1}), "ValidationError", field="input.resourceLimits.bogus")
    refused(lambda: make(invitedTenantId=tenant_d, accessLevel="owner"), "ValidationError", field="input.accessLevel")
    refused(lambda: make(invitedTenantId=tenant_d, expiresInDays=0), "ValidationError", field="input.expiresInDays")
    refused(lambda: make(invitedTenantId="00000000-0000-7000-8000-000000000000"), "ValidationError", field="input.invitedTenantId")
    refused(lambda: make(invitedTenantId=tenant_c), "ValidationError", code="CONFLICT")
    refused(
        lambda: c.create_cluster_invite(CreateClusterInviteInput(clusterId=OWN, invitedTenantId=tenant_d)).create_cluster_invite,
        "NotFoundError",
    )
    made = expect_result(
        make(invitedTenantId=tenant_d, accessLevel="read", resourceLimits={"maxConcurrentStreams": 2}, expiresInDays=3), "ClusterInvite"
    )
    assert made.invite_token.startswith("fwi_") and made.status == "pending" and made.access_level == "read"
    assert made.resource_limits == {"maxConcurrentStreams": 2} and made.invited_tenant_id == tenant_d and made.cluster_name == "own"
    invite.update(id=made.id, token=made.invite_token)
    listed = a.get_cluster_invites_connection(OWN).cluster_invites_connection
    assert listed.total_count == 1 and listed.edges[0].node.id == made.id
    assert c.get_cluster_invites_connection(OWN).cluster_invites_connection.total_count == 0
    received = d.get_my_cluster_invites_connection().my_cluster_invites_connection
    assert [x.node.invite_token for x in received.edges] == [made.invite_token]
    assert c.get_my_cluster_invites_connection().my_cluster_invites_connection.total_count == 0


@check("acceptClusterInvite admits the invited tenant only, once, with the invite's terms")
def _():
    refused(lambda: c.accept_cluster_invite(invite["token"]).accept_cluster_invite, "ValidationError", field="inviteToken")
    refused(lambda: d.accept_cluster_invite("fwi_not-a-token").accept_cluster_invite, "ValidationError", field="inviteToken")
    joined = expect_result(d.accept_cluster_invite(invite["token"]).accept_cluster_invite, "ClusterSubscription")
    assert joined.subscription_status == "ACTIVE" and joined.tenant_id == tenant_d and joined.access_level == "read"
    assert joined.resource_limits == {"maxConcurrentStreams": 2}
    refused(lambda: d.accept_cluster_invite(invite["token"]).accept_cluster_invite, "ValidationError", field="inviteToken")
    (accepted,) = (x.node for x in a.get_cluster_invites_connection(OWN).cluster_invites_connection.edges)
    assert accepted.status == "accepted" and accepted.accepted_at is not None and accepted.invite_token is None
    assert [x.node.cluster_id for x in d.get_my_subscriptions_connection().my_subscriptions_connection.edges] == [OWN]


@check("revokeClusterInvite closes an open invite; a revoked token admits nobody")
def _():
    made = expect_result(
        a.create_cluster_invite(CreateClusterInviteInput(clusterId=OWN, invitedTenantId=tenant_e)).create_cluster_invite, "ClusterInvite"
    )
    refused(lambda: e.revoke_cluster_invite(made.id).revoke_cluster_invite, "NotFoundError")
    gone = expect_result(a.revoke_cluster_invite(made.id).revoke_cluster_invite, "DeleteSuccess")
    assert gone.success and gone.deleted_id == made.id and gone.pending is False
    refused(lambda: a.revoke_cluster_invite(made.id).revoke_cluster_invite, "NotFoundError")
    refused(lambda: e.accept_cluster_invite(made.invite_token).accept_cluster_invite, "ValidationError", field="inviteToken")


@check("subscribeToCluster and unsubscribeFromCluster answer booleans; a rejection keeps its reason")
def _():
    assert c.unsubscribe_from_cluster(OWN).unsubscribe_from_cluster is True
    assert c.get_my_subscriptions_connection().my_subscriptions_connection.total_count == 0
    raises(lambda: c.unsubscribe_from_cluster(OWN), GraphQLError, code="NOT_FOUND")
    assert c.subscribe_to_cluster(OWN).subscribe_to_cluster is True
    (waiting,) = (x.node for x in a.get_pending_subscriptions_connection(OWN).pending_subscriptions_connection.edges)
    assert waiting.tenant_id == tenant_c
    no = expect_result(a.reject_cluster_subscription(waiting.id, reason="capacity is reserved").reject_cluster_subscription, "ClusterSubscription")
    assert no.subscription_status == "REJECTED" and no.rejection_reason == "capacity is reserved"
    raises(lambda: c.subscribe_to_cluster(SHARED), GraphQLError, code="VALIDATION_FAILED")
    raises(lambda: c.subscribe_to_cluster(FOREIGN), GraphQLError, code="NOT_FOUND")
    raises(lambda: reader.subscribe_to_cluster(SHARED), GraphQLError, code="FORBIDDEN")


done("marketplace")
