//! `tenantEvents`: the tenant's public events, as webhooks deliver them,
//! fed from Kafka like the other subscriptions. `data` is a union with one
//! member per public event type of the contract; this server emits the
//! account, API-token and stream ones its domain has (the others belong to
//! billing, clips, recordings, uploads, custom domains and multistreaming,
//! which it does not have yet, and are declared so that clients validate).

use async_graphql::{Context, Enum, ID, SimpleObject, Subscription, Union};
use frameworks_events::proto::v1::telemetry::BufferState;
use frameworks_events::{Event, EventPayload};
use futures::{Stream as AsyncStream, StreamExt};

use super::live::feed;
use super::scalars::Time;
use crate::auth::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventSuspensionReason")]
pub enum SuspensionReason {
    SuspensionReasonUnspecified,
    SuspensionReasonBalanceExhausted,
    SuspensionReasonPaymentOverdue,
    SuspensionReasonPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventIngestProtocol")]
pub enum IngestProtocol {
    IngestProtocolUnspecified,
    IngestProtocolRtmp,
    IngestProtocolSrt,
    IngestProtocolWhip,
    IngestProtocolPull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventArtifactKind")]
pub enum ArtifactKind {
    ArtifactKindUnspecified,
    ArtifactKindClip,
    ArtifactKindRecording,
    ArtifactKindUpload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventMediaFailureReason")]
pub enum MediaFailureReason {
    MediaFailureReasonUnspecified,
    MediaFailureReasonSourceUnavailable,
    MediaFailureReasonProcessingFailed,
    MediaFailureReasonStorageFailed,
    MediaFailureReasonInvalidInput,
    MediaFailureReasonQuotaExceeded,
    MediaFailureReasonTimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventMultistreamStatus")]
pub enum MultistreamStatus {
    MultistreamStatusUnspecified,
    MultistreamStatusIdle,
    MultistreamStatusPending,
    MultistreamStatusPushing,
    MultistreamStatusRetrying,
    MultistreamStatusStopping,
    MultistreamStatusFailed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventPaymentFailureReason")]
pub enum PaymentFailureReason {
    PaymentFailureReasonUnspecified,
    PaymentFailureReasonDeclined,
    PaymentFailureReasonInsufficientFunds,
    PaymentFailureReasonExpiredMethod,
    PaymentFailureReasonAuthenticationRequired,
    PaymentFailureReasonProcessingError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "EventCustomDomainFailureReason")]
pub enum CustomDomainFailureReason {
    CustomDomainFailureReasonUnspecified,
    CustomDomainFailureReasonVerificationExpired,
    CustomDomainFailureReasonCertificateFailed,
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, SimpleObject)]
pub struct EventMoney {
    pub amount_minor: i64,
    pub currency: String,
}

/// A media artifact (clip, recording, upload) an event is about.
#[derive(Debug, Clone, SimpleObject)]
pub struct EventArtifact {
    pub artifact_id: String,
    pub kind: ArtifactKind,
    pub stream_id: String,
    pub playback_id: String,
}

macro_rules! members {
    ($($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? })*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, SimpleObject)]
            pub struct $name { $(pub $field: $ty,)* }
        )*

        /// Payload of a public event: one member per public event type.
        #[derive(Debug, Clone, Union)]
        #[graphql(name = "PublicEventData")]
        pub enum PublicEventData { $($name($name),)* }
    };
}

members! {
    AccountSuspended { reason: SuspensionReason }
    ApiTokenCreated { token_id: String, name: String, permissions: Vec<String>, expires_at: Option<Time> }
    ApiTokenRevoked { token_id: String }
    BillingDetailsUpdated { changed_fields: Vec<String> }
    InvoiceCreated { invoice_id: String, amount_due: Option<EventMoney>, period_start: Option<Time>, period_end: Option<Time>, due_at: Option<Time> }
    InvoicePaid { invoice_id: String, amount_paid: Option<EventMoney> }
    PaymentFailed { payment_id: String, invoice_id: String, amount: Option<EventMoney>, reason: PaymentFailureReason, provider: String, provider_reference_id: String }
    TopupCredited { topup_id: String, amount: Option<EventMoney> }
    ClipRequested { artifact: Option<EventArtifact>, duration_ms: i64 }
    ClipReady { artifact: Option<EventArtifact>, duration_ms: i64, size_bytes: i64 }
    ClipFailed { artifact: Option<EventArtifact>, reason: MediaFailureReason }
    CustomDomainVerified { domain: String }
    CustomDomainFailed { domain: String, reason: CustomDomainFailureReason }
    MultistreamStatusChanged { stream_id: String, target_id: String, target_name: String, status: MultistreamStatus, previous_status: MultistreamStatus }
    RecordingReady { artifact: Option<EventArtifact>, duration_ms: i64, size_bytes: i64 }
    RecordingFailed { artifact: Option<EventArtifact>, reason: MediaFailureReason }
    StreamConnected { stream_id: String, protocol: IngestProtocol }
    StreamCreated { stream_id: String, name: String, playback_id: String }
    StreamDeleted { stream_id: String }
    StreamIdle { stream_id: String }
    StreamKeyRotated { stream_id: String }
    StreamLive { stream_id: String }
    StreamUpdated { stream_id: String, changed_fields: Vec<String> }
    UploadCreated { artifact: Option<EventArtifact>, filename: String, expected_size_bytes: i64 }
    UploadCompleted { artifact: Option<EventArtifact>, size_bytes: i64 }
    UploadAborted { artifact: Option<EventArtifact> }
    UploadReady { artifact: Option<EventArtifact>, duration_ms: i64, size_bytes: i64 }
    UploadFailed { artifact: Option<EventArtifact>, reason: MediaFailureReason }
}

/// A public tenant event.
#[derive(Debug, Clone, SimpleObject)]
pub struct PublicEvent {
    /// Event id, stable across redeliveries.
    pub id: ID,
    /// Registered event type, e.g. `stream.live`.
    #[graphql(name = "type")]
    pub kind: String,
    pub time: Time,
    /// `<aggregate>/<id>`, e.g. `streams/<stream id>`.
    pub subject: String,
    pub data: PublicEventData,
}

#[derive(Debug, Default)]
pub struct TenantEventSubscription;

#[Subscription]
impl TenantEventSubscription {
    /// The tenant's public events; `types` keeps only those types,
    /// `streamId` only that stream's.
    async fn tenant_events(
        &self,
        ctx: &Context<'_>,
        types: Option<Vec<String>>,
        stream_id: Option<ID>,
    ) -> async_graphql::Result<impl AsyncStream<Item = PublicEvent> + use<>> {
        let (events, principal, only) = feed(ctx, stream_id.as_ref())?;
        Ok(events.filter_map(move |event| {
            let keep = public_event(&event, &principal).filter(|public| {
                types.as_ref().is_none_or(|t| t.contains(&public.kind))
                    && only.is_none_or(|id| event.aggregate_id == id.to_string())
            });
            async move { keep }
        }))
    }
}

/// The public form of an event of the caller's tenant, if it has one.
fn public_event(event: &Event, principal: &Principal) -> Option<PublicEvent> {
    if event.tenant_id != Some(principal.tenant_id()) {
        return None;
    }
    let id = event.aggregate_id.clone();
    let (aggregate, kind, data) = match &event.payload {
        EventPayload::TenantSuspended(p) => (
            "tenants",
            "account.suspended",
            PublicEventData::AccountSuspended(AccountSuspended {
                reason: suspension_reason(&p.reason),
            }),
        ),
        EventPayload::ApiTokenCreated(p) => (
            "api_tokens",
            "api_token.created",
            PublicEventData::ApiTokenCreated(ApiTokenCreated {
                token_id: id,
                name: p.name.clone(),
                permissions: p.scopes.clone(),
                expires_at: (p.expires_at_unix > 0)
                    .then(|| chrono::DateTime::from_timestamp(p.expires_at_unix, 0))
                    .flatten()
                    .map(Time),
            }),
        ),
        EventPayload::ApiTokenRevoked(_) => (
            "api_tokens",
            "api_token.revoked",
            PublicEventData::ApiTokenRevoked(ApiTokenRevoked { token_id: id }),
        ),
        other => {
            let (kind, data) = stream_data(other, id)?;
            ("streams", kind, data)
        }
    };
    Some(PublicEvent {
        id: ID(event.id.to_string()),
        kind: kind.to_owned(),
        time: Time(event.occurred_at),
        subject: format!("{aggregate}/{}", event.aggregate_id),
        data,
    })
}

fn stream_data(
    payload: &EventPayload,
    stream_id: String,
) -> Option<(&'static str, PublicEventData)> {
    Some(match payload {
        EventPayload::StreamCreated(p) => (
            "stream.created",
            PublicEventData::StreamCreated(StreamCreated {
                stream_id,
                name: p.name.clone(),
                playback_id: p.playback_id.clone(),
            }),
        ),
        EventPayload::StreamUpdated(p) => {
            let changed = [
                ("name", p.name.is_some()),
                ("description", p.description.is_some()),
                ("record", p.record.is_some()),
                ("ingestMode", p.ingest_mode.is_some()),
                (
                    "pullSource",
                    p.pull_source.is_some() || p.pull_source_cleared,
                ),
            ];
            (
                "stream.updated",
                PublicEventData::StreamUpdated(StreamUpdated {
                    stream_id,
                    changed_fields: changed
                        .iter()
                        .filter(|(_, changed)| *changed)
                        .map(|(name, _)| (*name).to_owned())
                        .collect(),
                }),
            )
        }
        EventPayload::StreamDeleted(_) => (
            "stream.deleted",
            PublicEventData::StreamDeleted(StreamDeleted { stream_id }),
        ),
        EventPayload::StreamKeyRotated(_) => (
            "stream.key_rotated",
            PublicEventData::StreamKeyRotated(StreamKeyRotated { stream_id }),
        ),
        EventPayload::IngestStarted(p) => (
            "stream.connected",
            PublicEventData::StreamConnected(StreamConnected {
                stream_id,
                protocol: match p.protocol.to_ascii_uppercase().as_str() {
                    "RTMP" | "RTMPS" => IngestProtocol::IngestProtocolRtmp,
                    "SRT" => IngestProtocol::IngestProtocolSrt,
                    "WHIP" | "WEBRTC" => IngestProtocol::IngestProtocolWhip,
                    "PULL" => IngestProtocol::IngestProtocolPull,
                    _ => IngestProtocol::IngestProtocolUnspecified,
                },
            }),
        ),
        // Playable: the edge has a full buffer.
        EventPayload::StreamBufferChanged(p) if p.state() == BufferState::Full => (
            "stream.live",
            PublicEventData::StreamLive(StreamLive { stream_id }),
        ),
        EventPayload::IngestEnded(_) => (
            "stream.idle",
            PublicEventData::StreamIdle(StreamIdle { stream_id }),
        ),
        _ => return None,
    })
}

/// The contract's reason for our machine-readable cause ("billing-overdue",
/// "balance-exhausted", "abuse", "operator", ...).
fn suspension_reason(reason: &str) -> SuspensionReason {
    let reason = reason.to_ascii_lowercase();
    if reason.contains("balance") {
        SuspensionReason::SuspensionReasonBalanceExhausted
    } else if reason.contains("overdue") || reason.contains("payment") {
        SuspensionReason::SuspensionReasonPaymentOverdue
    } else {
        SuspensionReason::SuspensionReasonPolicy
    }
}
