//! The contract's scalars. `JSON` is async-graphql's `Json`; `Time` is here.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// An instant, as RFC 3339 in UTC (`2026-08-22T21:35:31.123456Z`). Inputs may
/// carry any offset, or none (read as UTC, as the Python client sends naive times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub DateTime<Utc>);

#[Scalar(name = "Time")]
impl ScalarType for Time {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(Self(at.with_timezone(&Utc)));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|naive| Self(naive.and_utc()))
            .map_err(|_| InputValueError::custom(format!("{text:?} is not an RFC 3339 time")))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl From<DateTime<Utc>> for Time {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}
