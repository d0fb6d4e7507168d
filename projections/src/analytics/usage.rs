//! Usage in 5-minute buckets, read from the aggregate tables the materialised
//! views fill: distinct viewers, viewer-seconds, bytes out and the peak of
//! concurrent viewers.

use chrono::{DateTime, TimeZone, Utc};
use clickhouse::{Client, Row};
use serde::Deserialize;
use uuid::Uuid;

/// Whose usage: one stream, or a tenant across its streams.
#[derive(Debug, Clone, Copy)]
pub enum UsageScope<'a> {
    Stream { tenant: Uuid, stream: &'a str },
    Tenant(Uuid),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBucket {
    pub start: DateTime<Utc>,
    /// Distinct sessions seen in the bucket.
    pub viewers: u64,
    /// Seconds watched by sessions that ended in the bucket.
    pub viewer_seconds: u64,
    /// Bytes sent to viewers by sessions that ended in the bucket.
    pub bytes_out: u64,
    pub peak_concurrent_viewers: u64,
}

#[derive(Debug, Row, Deserialize)]
struct RawBucket {
    start: u32,
    viewers: u64,
    viewer_seconds: u64,
    bytes_out: u64,
    /// +1 per session start and -1 per end, in time order.
    deltas: Vec<i8>,
}

/// The buckets in `[from, to)` that saw any session activity, in time order.
pub async fn usage(
    client: &Client,
    scope: UsageScope<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<UsageBucket>, clickhouse::error::Error> {
    let (table, filter) = match scope {
        UsageScope::Stream { .. } => ("stream_usage_5m", "tenant_id = ? AND stream_id = ?"),
        UsageScope::Tenant(_) => ("tenant_usage_5m", "tenant_id = ?"),
    };
    let bind_scope = |query: clickhouse::query::Query| match scope {
        UsageScope::Stream { tenant, stream } => query.bind(tenant.to_string()).bind(stream),
        UsageScope::Tenant(tenant) => query.bind(tenant.to_string()),
    };
    // Sessions still open when the window starts count towards its concurrency.
    let carry: i64 = bind_scope(client.query(&format!(
        "SELECT sumMerge(net_change) FROM {table} WHERE {filter} AND bucket < toDateTime(?)"
    )))
    .bind(from.timestamp())
    .fetch_one()
    .await?;
    // Sorting the (time, delta) pairs puts an end before a start in the same
    // second, so a hand-over does not count as two viewers.
    let raw: Vec<RawBucket> = bind_scope(client.query(&format!(
        "SELECT toUInt32(bucket) AS start, uniqExactMerge(viewers) AS viewers,
                sumMerge(viewer_seconds) AS viewer_seconds, sumMerge(bytes_out) AS bytes_out,
                arrayMap(x -> tupleElement(x, 2), arraySort(groupArrayMerge(changes))) AS deltas
         FROM {table}
         WHERE {filter} AND bucket >= toDateTime(?) AND bucket < toDateTime(?)
         GROUP BY bucket ORDER BY bucket"
    )))
    .bind(from.timestamp())
    .bind(to.timestamp())
    .fetch_all()
    .await?;
    Ok(with_peaks(carry, raw))
}

/// Replays the deltas from the carried-in concurrency. An end without a
/// start (a session older than the log) cannot take the count below zero.
fn with_peaks(carry: i64, raw: Vec<RawBucket>) -> Vec<UsageBucket> {
    let mut concurrent = carry.max(0);
    raw.into_iter()
        .map(|bucket| {
            let mut peak = concurrent;
            for delta in &bucket.deltas {
                concurrent = (concurrent + i64::from(*delta)).max(0);
                peak = peak.max(concurrent);
            }
            UsageBucket {
                start: Utc
                    .timestamp_opt(i64::from(bucket.start), 0)
                    .single()
                    .unwrap_or_default(),
                viewers: bucket.viewers,
                viewer_seconds: bucket.viewer_seconds,
                bytes_out: bucket.bytes_out,
                peak_concurrent_viewers: u64::try_from(peak).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(deltas: &[i8]) -> RawBucket {
        RawBucket {
            start: 0,
            viewers: 0,
            viewer_seconds: 0,
            bytes_out: 0,
            deltas: deltas.to_vec(),
        }
    }

    #[test]
    fn peaks_carry_open_sessions_across_buckets() {
        let buckets = with_peaks(1, vec![raw(&[1, 1, -1, 1]), raw(&[-1, -1]), raw(&[])]);
        let peaks: Vec<u64> = buckets.iter().map(|b| b.peak_concurrent_viewers).collect();
        // 1 open, then 2, 3, 2, 3; the next bucket opens at 3; the last at 1.
        assert_eq!(peaks, [3, 3, 1]);
    }

    #[test]
    fn ends_without_starts_do_not_go_negative() {
        let buckets = with_peaks(-4, vec![raw(&[-1, 1, 1])]);
        assert_eq!(buckets[0].peak_concurrent_viewers, 2);
    }
}
