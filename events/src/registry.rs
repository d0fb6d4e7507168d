//! Every event type the platform emits, declared once.
//!
//! The `event_registry!` table below is the single place that binds an
//! event's dotted name to its payload message, the aggregate it belongs to,
//! the topic it travels on and its current schema version. Adding an event is
//! adding a line here and a message in `schemas/proto`.

use std::fmt;

use prost::Message;

use crate::catalogue::Topic;
use crate::proto::v1::{api_token, infrastructure, stream, telemetry, tenant, user};

/// The kind of aggregate an event belongs to; its id is the Kafka key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggregateType {
    Tenant,
    User,
    ApiToken,
    Stream,
    Cluster,
    Node,
}

impl AggregateType {
    pub const ALL: [AggregateType; 6] = [
        Self::Tenant,
        Self::User,
        Self::ApiToken,
        Self::Stream,
        Self::Cluster,
        Self::Node,
    ];

    /// The name carried in [`crate::proto::v1::EventEnvelope::aggregate_type`].
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::User => "user",
            Self::ApiToken => "api_token",
            Self::Stream => "stream",
            Self::Cluster => "cluster",
            Self::Node => "node",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for AggregateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! event_registry {
    ($(
        $(#[$doc:meta])*
        $variant:ident($message:ty) = $name:literal, $aggregate:ident, $topic:ident, $version:literal;
    )*) => {
        /// The type of an event, without its payload.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $($(#[$doc])* $variant,)*
        }

        impl EventType {
            /// Every registered event type, in declaration order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The dotted name carried in the envelope, e.g. `stream.created`.
            pub const fn name(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            pub const fn aggregate_type(self) -> AggregateType {
                match self { $(Self::$variant => AggregateType::$aggregate,)* }
            }

            /// The topic events of this type are published to.
            pub const fn topic(self) -> Topic {
                match self { $(Self::$variant => Topic::$topic,)* }
            }

            /// The payload schema version this build writes and the newest it can read.
            pub const fn schema_version(self) -> u32 {
                match self { $(Self::$variant => $version,)* }
            }

            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }

        /// A decoded event payload: one variant per [`EventType`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventPayload {
            $($(#[$doc])* $variant($message),)*
        }

        impl EventPayload {
            pub fn event_type(&self) -> EventType {
                match self { $(Self::$variant(_) => EventType::$variant,)* }
            }

            pub fn encode_to_vec(&self) -> Vec<u8> {
                match self { $(Self::$variant(m) => m.encode_to_vec(),)* }
            }

            /// Decodes `bytes` as the payload message of `event_type`.
            pub fn decode(event_type: EventType, bytes: &[u8]) -> Result<Self, prost::DecodeError> {
                Ok(match event_type {
                    $(EventType::$variant => Self::$variant(<$message>::decode(bytes)?),)*
                })
            }

            /// A proptest strategy producing arbitrary payloads of `event_type`.
            #[cfg(feature = "arbitrary")]
            pub fn arbitrary(event_type: EventType) -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::strategy::Strategy;
                match event_type {
                    $(EventType::$variant => proptest::arbitrary::any::<$message>()
                        .prop_map(Self::$variant)
                        .boxed(),)*
                }
            }
        }

        $(
            impl From<$message> for EventPayload {
                fn from(message: $message) -> Self {
                    Self::$variant(message)
                }
            }
        )*
    };
}

event_registry! {
    // Variant(payload message) = "name", aggregate, topic, schema version;
    TenantCreated(tenant::TenantCreated) = "tenant.created", Tenant, Tenants, 1;
    TenantSuspended(tenant::TenantSuspended) = "tenant.suspended", Tenant, Tenants, 1;
    TenantReactivated(tenant::TenantReactivated) = "tenant.reactivated", Tenant, Tenants, 1;
    SigningKeyCreated(tenant::SigningKeyCreated)
        = "tenant.signing_key_created", Tenant, Tenants, 1;
    SigningKeyRevoked(tenant::SigningKeyRevoked)
        = "tenant.signing_key_revoked", Tenant, Tenants, 1;
    TenantPreferredClusterSet(tenant::TenantPreferredClusterSet)
        = "tenant.preferred_cluster_set", Tenant, Tenants, 1;

    UserRegistered(user::UserRegistered) = "user.registered", User, Tenants, 1;
    UserPasswordChanged(user::UserPasswordChanged) = "user.password_changed", User, Tenants, 1;
    UserLoginFailed(user::UserLoginFailed) = "user.login_failed", User, Tenants, 1;
    UserLoginSucceeded(user::UserLoginSucceeded) = "user.login_succeeded", User, Tenants, 1;

    ApiTokenCreated(api_token::ApiTokenCreated) = "api_token.created", ApiToken, Tenants, 1;
    ApiTokenRevoked(api_token::ApiTokenRevoked) = "api_token.revoked", ApiToken, Tenants, 1;

    StreamCreated(stream::StreamCreated) = "stream.created", Stream, Streams, 1;
    StreamUpdated(stream::StreamUpdated) = "stream.updated", Stream, Streams, 1;
    StreamDeleted(stream::StreamDeleted) = "stream.deleted", Stream, Streams, 1;
    StreamKeyCreated(stream::StreamKeyCreated) = "stream.key_created", Stream, Streams, 1;
    StreamKeyRotated(stream::StreamKeyRotated) = "stream.key_rotated", Stream, Streams, 1;
    StreamKeyDeleted(stream::StreamKeyDeleted) = "stream.key_deleted", Stream, Streams, 1;
    StreamPlaybackPolicySet(stream::StreamPlaybackPolicySet)
        = "stream.playback_policy_set", Stream, Streams, 1;

    ClusterCreated(infrastructure::ClusterCreated) = "cluster.created", Cluster, Infrastructure, 1;
    ClusterUpdated(infrastructure::ClusterUpdated) = "cluster.updated", Cluster, Infrastructure, 1;
    NodeEnrolmentTokenIssued(infrastructure::NodeEnrolmentTokenIssued)
        = "cluster.enrolment_token_issued", Cluster, Infrastructure, 1;
    NodeEnrolmentTokenConsumed(infrastructure::NodeEnrolmentTokenConsumed)
        = "cluster.enrolment_token_consumed", Cluster, Infrastructure, 1;
    ClusterMarketplaceUpdated(infrastructure::ClusterMarketplaceUpdated)
        = "cluster.marketplace_updated", Cluster, Infrastructure, 1;
    ClusterSubscriptionRequested(infrastructure::ClusterSubscriptionRequested)
        = "cluster.subscription_requested", Cluster, Infrastructure, 1;
    ClusterSubscriptionApproved(infrastructure::ClusterSubscriptionApproved)
        = "cluster.subscription_approved", Cluster, Infrastructure, 1;
    ClusterSubscriptionRejected(infrastructure::ClusterSubscriptionRejected)
        = "cluster.subscription_rejected", Cluster, Infrastructure, 1;
    ClusterSubscriptionCancelled(infrastructure::ClusterSubscriptionCancelled)
        = "cluster.subscription_cancelled", Cluster, Infrastructure, 1;
    ClusterInviteCreated(infrastructure::ClusterInviteCreated)
        = "cluster.invite_created", Cluster, Infrastructure, 1;
    ClusterInviteRevoked(infrastructure::ClusterInviteRevoked)
        = "cluster.invite_revoked", Cluster, Infrastructure, 1;
    ClusterInviteAccepted(infrastructure::ClusterInviteAccepted)
        = "cluster.invite_accepted", Cluster, Infrastructure, 1;
    EdgePreRegistered(infrastructure::EdgePreRegistered)
        = "cluster.edge_pre_registered", Cluster, Infrastructure, 1;
    NodeEnrolled(infrastructure::NodeEnrolled) = "node.enrolled", Node, Infrastructure, 1;
    NodeReenrolled(infrastructure::NodeReenrolled) = "node.reenrolled", Node, Infrastructure, 1;
    NodeDecommissioned(infrastructure::NodeDecommissioned)
        = "node.decommissioned", Node, Infrastructure, 1;
    NodeModeChanged(infrastructure::NodeModeChanged)
        = "node.mode_changed", Node, Infrastructure, 1;
    NodeServicesReported(infrastructure::NodeServicesReported)
        = "node.services_reported", Node, Infrastructure, 1;

    NodeHeartbeat(telemetry::NodeHeartbeat) = "node.heartbeat", Node, NodeTelemetry, 1;
    NodeMetrics(telemetry::NodeMetrics) = "node.metrics", Node, NodeTelemetry, 1;
    MistTriggerReceived(telemetry::MistTriggerReceived)
        = "node.mist_trigger_received", Node, NodeTelemetry, 1;

    ViewerSessionStarted(telemetry::ViewerSessionStarted)
        = "viewer.session_started", Stream, StreamTelemetry, 1;
    ViewerSessionEnded(telemetry::ViewerSessionEnded)
        = "viewer.session_ended", Stream, StreamTelemetry, 1;
    IngestStarted(telemetry::IngestStarted) = "stream.ingest_started", Stream, StreamTelemetry, 1;
    IngestEnded(telemetry::IngestEnded) = "stream.ingest_ended", Stream, StreamTelemetry, 1;
    StreamBufferChanged(telemetry::StreamBufferChanged)
        = "stream.buffer_changed", Stream, StreamTelemetry, 1;
    StreamHealthReported(telemetry::StreamHealthReported)
        = "stream.health_reported", Stream, StreamTelemetry, 1;
    TrackListUpdated(telemetry::TrackListUpdated)
        = "stream.track_list_updated", Stream, StreamTelemetry, 1;
    StreamSampled(telemetry::StreamSampled) = "stream.sampled", Stream, StreamTelemetry, 1;
    PushEnded(telemetry::PushEnded) = "stream.push_ended", Stream, StreamTelemetry, 1;
    RecordingSegmentWritten(telemetry::RecordingSegmentWritten)
        = "stream.recording_segment_written", Stream, StreamTelemetry, 1;
    RecordingEnded(telemetry::RecordingEnded)
        = "stream.recording_ended", Stream, StreamTelemetry, 1;
    InputClosed(telemetry::InputClosed) = "stream.input_closed", Stream, StreamTelemetry, 1;
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_resolve_back() {
        let mut seen = HashSet::new();
        for &event_type in EventType::ALL {
            assert!(
                seen.insert(event_type.name()),
                "duplicate name {event_type}"
            );
            assert_eq!(EventType::from_name(event_type.name()), Some(event_type));
            assert!(event_type.schema_version() >= 1);
        }
        assert_eq!(EventType::from_name("stream.exploded"), None);
    }

    #[test]
    fn names_start_with_their_aggregate_or_family() {
        for &event_type in EventType::ALL {
            let family = event_type.name().split('.').next().unwrap_or_default();
            let aggregate = event_type.aggregate_type().as_str();
            // Viewer sessions are stream facts named for what they describe.
            assert!(
                family == aggregate || (family == "viewer" && aggregate == "stream"),
                "{event_type} is filed under aggregate {aggregate}"
            );
        }
    }

    #[test]
    fn aggregate_names_resolve_back() {
        for aggregate in AggregateType::ALL {
            assert_eq!(
                AggregateType::from_name(aggregate.as_str()),
                Some(aggregate)
            );
        }
        assert_eq!(AggregateType::from_name("playlist"), None);
    }
}
