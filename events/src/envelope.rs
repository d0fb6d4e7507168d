//! [`Event`]: one envelope plus its decoded payload, and the wire codec.
//!
//! Decoding is strict where guessing would corrupt read models (unknown event
//! types, schema versions newer than this build, envelopes that disagree with
//! the registry) and lenient only where protobuf itself is (unknown fields).
//! Every failure is a [`DecodeError`] whose [`DecodeError::reason`] is a
//! stable token, used as the dead-letter reason.

use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

use crate::proto::v1::EventEnvelope;
use crate::registry::{AggregateType, EventPayload, EventType};

/// A decoded event.
///
/// The event type, aggregate type and schema version are not stored: they
/// follow from the payload through the registry, so they cannot disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Uuid,
    /// The aggregate's id; also the Kafka key.
    pub aggregate_id: String,
    /// 1-based position in the aggregate's history; 0 for telemetry.
    pub sequence: u64,
    /// `None` for platform-owned infrastructure.
    pub tenant_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub causation_id: Option<Uuid>,
    pub correlation_id: Uuid,
    pub payload: EventPayload,
}

impl Event {
    /// A new event that starts its own correlation chain, occurring and recorded now.
    pub fn new(aggregate_id: impl Into<String>, payload: impl Into<EventPayload>) -> Self {
        let id = Uuid::now_v7();
        let now = Utc::now();
        Self {
            id,
            aggregate_id: aggregate_id.into(),
            sequence: 0,
            tenant_id: None,
            occurred_at: now,
            recorded_at: now,
            causation_id: None,
            correlation_id: id,
            payload: payload.into(),
        }
    }

    pub fn with_tenant(mut self, tenant_id: Uuid) -> Self {
        self.tenant_id = Some(tenant_id);
        self
    }

    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }

    pub fn occurred_at(mut self, at: DateTime<Utc>) -> Self {
        self.occurred_at = at;
        self
    }

    /// Marks this event as caused by `cause` (a command or an event id) within
    /// the correlation chain `correlation_id`.
    pub fn caused_by(mut self, cause: Uuid, correlation_id: Uuid) -> Self {
        self.causation_id = Some(cause);
        self.correlation_id = correlation_id;
        self
    }

    pub fn event_type(&self) -> EventType {
        self.payload.event_type()
    }

    pub fn aggregate_type(&self) -> AggregateType {
        self.event_type().aggregate_type()
    }

    pub fn to_envelope(&self) -> EventEnvelope {
        let event_type = self.event_type();
        EventEnvelope {
            event_id: self.id.to_string(),
            event_type: event_type.name().to_owned(),
            aggregate_type: event_type.aggregate_type().as_str().to_owned(),
            aggregate_id: self.aggregate_id.clone(),
            aggregate_sequence: self.sequence,
            tenant_id: self.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
            occurred_at: Some(timestamp(self.occurred_at)),
            recorded_at: Some(timestamp(self.recorded_at)),
            causation_id: self.causation_id.map(|c| c.to_string()).unwrap_or_default(),
            correlation_id: self.correlation_id.to_string(),
            schema_version: event_type.schema_version(),
            payload: self.payload.encode_to_vec(),
        }
    }

    /// The protobuf encoding of the envelope, as stored and published.
    pub fn encode(&self) -> Vec<u8> {
        self.to_envelope().encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope = EventEnvelope::decode(bytes).map_err(DecodeError::Envelope)?;
        Self::from_envelope(envelope)
    }

    pub fn from_envelope(envelope: EventEnvelope) -> Result<Self, DecodeError> {
        let event_type = EventType::from_name(&envelope.event_type)
            .ok_or_else(|| DecodeError::UnknownEventType(envelope.event_type.clone()))?;
        let known = event_type.schema_version();
        match envelope.schema_version {
            0 => return Err(DecodeError::invalid("schema_version", "must be at least 1")),
            version if version > known => {
                return Err(DecodeError::UnsupportedSchemaVersion {
                    event_type,
                    version,
                    known,
                });
            }
            _ => {}
        }
        let expected = event_type.aggregate_type();
        if envelope.aggregate_type != expected.as_str() {
            return Err(DecodeError::AggregateMismatch {
                event_type,
                expected,
                found: envelope.aggregate_type,
            });
        }
        if envelope.aggregate_id.is_empty() {
            return Err(DecodeError::invalid("aggregate_id", "must not be empty"));
        }
        let payload = EventPayload::decode(event_type, &envelope.payload)
            .map_err(|source| DecodeError::Payload { event_type, source })?;
        Ok(Self {
            id: uuid("event_id", &envelope.event_id)?,
            aggregate_id: envelope.aggregate_id,
            sequence: envelope.aggregate_sequence,
            tenant_id: optional_uuid("tenant_id", &envelope.tenant_id)?,
            occurred_at: datetime("occurred_at", envelope.occurred_at)?,
            recorded_at: datetime("recorded_at", envelope.recorded_at)?,
            causation_id: optional_uuid("causation_id", &envelope.causation_id)?,
            correlation_id: uuid("correlation_id", &envelope.correlation_id)?,
            payload,
        })
    }
}

/// Why bytes could not become an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Envelope(#[source] prost::DecodeError),
    #[error("envelope field {field} {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    #[error("{event_type} schema version {version} is newer than this build reads (up to {known})")]
    UnsupportedSchemaVersion {
        event_type: EventType,
        version: u32,
        known: u32,
    },
    #[error("{event_type} belongs to aggregate {expected}, but the envelope says {found:?}")]
    AggregateMismatch {
        event_type: EventType,
        expected: AggregateType,
        found: String,
    },
    #[error("{event_type} payload does not decode: {source}")]
    Payload {
        event_type: EventType,
        #[source]
        source: prost::DecodeError,
    },
}

impl DecodeError {
    fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            problem: problem.into(),
        }
    }

    /// A stable token naming the failure, for dead-letter records and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Envelope(_) => "malformed-envelope",
            Self::InvalidField { .. } => "invalid-envelope-field",
            Self::UnknownEventType(_) => "unknown-event-type",
            Self::UnsupportedSchemaVersion { .. } => "unsupported-schema-version",
            Self::AggregateMismatch { .. } => "aggregate-mismatch",
            Self::Payload { .. } => "malformed-payload",
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        // Always below 2e9 (a leap second reads as 1e9 + n), so it fits an i32.
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(i32::MAX),
    }
}

fn datetime(
    field: &'static str,
    value: Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, DecodeError> {
    let ts = value.ok_or_else(|| DecodeError::invalid(field, "is missing"))?;
    u32::try_from(ts.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
        .ok_or_else(|| DecodeError::invalid(field, format!("is out of range ({ts})")))
}

fn uuid(field: &'static str, value: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(value)
        .map_err(|e| DecodeError::invalid(field, format!("is not a UUID ({value:?}: {e})")))
}

fn optional_uuid(field: &'static str, value: &str) -> Result<Option<Uuid>, DecodeError> {
    if value.is_empty() {
        Ok(None)
    } else {
        uuid(field, value).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::proto::v1::stream::StreamCreated;
    use crate::proto::v1::tenant::TenantCreated;

    fn sample() -> Event {
        let tenant = Uuid::now_v7();
        Event::new(
            Uuid::now_v7().to_string(),
            StreamCreated {
                name: "launch".into(),
                playback_id: "pb123".into(),
                ..Default::default()
            },
        )
        .with_tenant(tenant)
        .with_sequence(1)
    }

    fn arbitrary_event() -> impl Strategy<Value = Event> {
        let payload =
            proptest::sample::select(EventType::ALL).prop_flat_map(EventPayload::arbitrary);
        (
            payload,
            any::<u64>(),
            any::<bool>(),
            0i64..4_102_444_800,
            0u32..1_000_000_000,
        )
            .prop_map(|(payload, sequence, has_tenant, seconds, nanos)| {
                let mut event =
                    Event::new(Uuid::now_v7().to_string(), payload).with_sequence(sequence);
                if has_tenant {
                    event = event.with_tenant(Uuid::now_v7());
                }
                let at = DateTime::from_timestamp(seconds, nanos).unwrap_or_default();
                event
                    .caused_by(Uuid::now_v7(), Uuid::now_v7())
                    .occurred_at(at)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any event of any registered type survives encode then decode unchanged.
        #[test]
        fn every_event_type_round_trips(event in arbitrary_event()) {
            let decoded = Event::decode(&event.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decoded, event);
        }
    }

    #[test]
    fn every_registered_type_is_covered_by_the_strategy() {
        // The property above samples from EventType::ALL; make sure each type's
        // strategy actually produces its own type.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for &event_type in EventType::ALL {
            let value = EventPayload::arbitrary(event_type)
                .new_tree(&mut runner)
                .map(|tree| tree.current())
                .expect("strategy produces a value");
            assert_eq!(value.event_type(), event_type);
        }
    }

    #[test]
    fn garbage_is_a_malformed_envelope() {
        let err = Event::decode(&[0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert_eq!(err.reason(), "malformed-envelope");
    }

    #[test]
    fn unknown_type_is_refused() {
        let mut envelope = sample().to_envelope();
        envelope.event_type = "stream.teleported".into();
        let err = Event::from_envelope(envelope).unwrap_err();
        assert_eq!(err.reason(), "unknown-event-type");
        assert!(err.to_string().contains("stream.teleported"));
    }

    #[test]
    fn newer_schema_version_is_refused_not_guessed() {
        let mut envelope = sample().to_envelope();
        envelope.schema_version = EventType::StreamCreated.schema_version() + 1;
        let err = Event::from_envelope(envelope).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnsupportedSchemaVersion {
                version: 2,
                known: 1,
                ..
            }
        ));
    }

    #[test]
    fn older_or_equal_schema_versions_are_read() {
        let event = sample();
        let envelope = event.to_envelope();
        assert_eq!(envelope.schema_version, 1);
        assert_eq!(Event::from_envelope(envelope).unwrap(), event);
    }

    #[test]
    fn payload_fields_added_by_a_newer_writer_are_ignored() {
        // Simulates an additive change: field 99 does not exist in this build.
        let event = sample();
        let mut envelope = event.to_envelope();
        prost::encoding::string::encode(99, &"from the future".to_owned(), &mut envelope.payload);
        assert_eq!(Event::from_envelope(envelope).unwrap(), event);
    }

    #[test]
    fn envelope_must_agree_with_the_registry() {
        let mut envelope = sample().to_envelope();
        envelope.aggregate_type = "tenant".into();
        assert_eq!(
            Event::from_envelope(envelope).unwrap_err().reason(),
            "aggregate-mismatch"
        );

        let mut envelope = Event::new("t1", TenantCreated::default()).to_envelope();
        envelope.payload = vec![0x0a, 0x05, b'x'];
        assert_eq!(
            Event::from_envelope(envelope).unwrap_err().reason(),
            "malformed-payload"
        );
    }

    #[test]
    fn broken_envelope_fields_are_named() {
        let mut envelope = sample().to_envelope();
        envelope.event_id = "not-a-uuid".into();
        let err = Event::from_envelope(envelope).unwrap_err();
        assert!(err.to_string().contains("event_id"), "{err}");

        let mut envelope = sample().to_envelope();
        envelope.occurred_at = None;
        assert!(
            Event::from_envelope(envelope)
                .unwrap_err()
                .to_string()
                .contains("occurred_at")
        );

        let mut envelope = sample().to_envelope();
        envelope.aggregate_id.clear();
        assert!(
            Event::from_envelope(envelope)
                .unwrap_err()
                .to_string()
                .contains("aggregate_id")
        );
    }
}
