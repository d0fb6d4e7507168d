//! A node's load over time, from the analytics read model in ClickHouse:
//! every sample, and hourly summaries.
//!
//! A sample is healthy unless the node was overloaded: CPU at or above
//! [`OVERLOADED_CPU_PERCENT`], memory at or above
//! [`OVERLOADED_MEMORY_RATIO`] of its total, or sending at its bandwidth
//! limit. An hour was healthy when every sample in it was.

use chrono::{DateTime, Utc};
use clickhouse::{Client, Row};
use serde::Deserialize;

use super::page::Page;

pub const OVERLOADED_CPU_PERCENT: f64 = 90.0;
pub const OVERLOADED_MEMORY_RATIO: f64 = 0.95;

/// SQL for "this sample was healthy" over `node_metrics`' columns.
fn healthy_sample() -> String {
    format!(
        "(cpu_percent < {OVERLOADED_CPU_PERCENT}
          AND (memory_total_bytes = 0 OR memory_used_bytes < memory_total_bytes * {OVERLOADED_MEMORY_RATIO})
          AND (bandwidth_limit_bps = 0 OR bandwidth_up_bps < bandwidth_limit_bps))"
    )
}

/// One load sample a node reported.
#[derive(Debug, Clone, Row, Deserialize)]
pub struct SampleRow {
    /// The event's id: with `at`, the sample's position.
    pub id: String,
    /// Unix seconds.
    pub at: u32,
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub shm_used_bytes: u64,
    pub shm_total_bytes: u64,
    pub bandwidth_up_bps: u64,
    pub bandwidth_down_bps: u64,
    /// 0 for none.
    pub bandwidth_limit_bps: u64,
    pub network_rx_bytes: u64,
    pub network_tx_bytes: u64,
    pub active_streams: u32,
    pub active_viewers: u32,
    /// The sampling window.
    pub window_ms: u32,
    /// 1 when healthy.
    pub healthy: u8,
}

/// Node `node`'s samples in [`start`, `end`): one page of them, newest
/// first and keyset-paged on (time, event id) as the SQL lists are, in
/// query order (for [`Page::finish`]), and how many the range holds.
pub async fn samples(
    client: &Client,
    node: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    page: &Page,
) -> Result<(Vec<SampleRow>, u64), clickhouse::error::Error> {
    let range = "node_id = ? AND occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?)";
    let total: u64 = client
        .query(&format!(
            "SELECT count() FROM node_metrics FINAL WHERE {range}"
        ))
        .bind(node)
        .bind(start.timestamp())
        .bind(end.timestamp())
        .fetch_one()
        .await?;
    let (keyset, order) = match (page.anchor(), page.backward()) {
        (None, backward) => ("", if backward { "ASC" } else { "DESC" }),
        (Some(_), false) => (
            " AND (occurred_at < toDateTime(?) OR (occurred_at = toDateTime(?) AND toString(event_id) < ?))",
            "DESC",
        ),
        (Some(_), true) => (
            " AND (occurred_at > toDateTime(?) OR (occurred_at = toDateTime(?) AND toString(event_id) > ?))",
            "ASC",
        ),
    };
    let mut query = client
        .query(&format!(
            "SELECT toString(event_id) AS id, toUInt32(occurred_at) AS at, cpu_percent,
                    memory_used_bytes, memory_total_bytes, disk_used_bytes, disk_total_bytes,
                    shm_used_bytes, shm_total_bytes, bandwidth_up_bps, bandwidth_down_bps,
                    bandwidth_limit_bps, network_rx_bytes, network_tx_bytes, active_streams,
                    active_viewers, window_ms, toUInt8({healthy}) AS healthy
             FROM node_metrics FINAL
             WHERE {range}{keyset}
             ORDER BY occurred_at {order}, id {order} LIMIT {limit}",
            healthy = healthy_sample(),
            limit = page.fetch_limit(),
        ))
        .bind(node)
        .bind(start.timestamp())
        .bind(end.timestamp());
    if let Some(anchor) = page.anchor() {
        query = query
            .bind(anchor.created_at.timestamp())
            .bind(anchor.created_at.timestamp())
            .bind(&anchor.id);
    }
    Ok((query.fetch_all().await?, total))
}

/// A node's load over one hour.
#[derive(Debug, Clone, Row, Deserialize)]
pub struct HourRow {
    /// The start of the hour, Unix seconds.
    pub hour: u32,
    /// Percent.
    pub avg_cpu: f64,
    pub peak_cpu: f64,
    /// Percent of the node's memory.
    pub avg_memory: f64,
    pub peak_memory: f64,
    /// Percent of the node's disk.
    pub avg_disk: f64,
    pub peak_disk: f64,
    /// Percent of /dev/shm.
    pub avg_shm: f64,
    pub peak_shm: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    /// 1 when no sample of the hour was overloaded.
    pub healthy: u8,
}

/// Node `node`'s hours in [`start`, `end`), newest first. A range holds at
/// most 8,784 hours: they are all summed up, and paged by the caller.
pub async fn hours(
    client: &Client,
    node: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<HourRow>, clickhouse::error::Error> {
    let percent = |used: &str, total: &str| format!("if({total} = 0, 0, {used} / {total} * 100)");
    client
        .query(&format!(
            "SELECT toUInt32(toStartOfHour(occurred_at)) AS hour,
                    avg(cpu_percent), max(cpu_percent),
                    avg({memory}), max({memory}),
                    avg({disk}), max({disk}),
                    avg({shm}), max({shm}),
                    sum(bandwidth_down_bps * window_ms / 8000),
                    sum(bandwidth_up_bps * window_ms / 8000),
                    toUInt8(min({healthy}))
             FROM node_metrics FINAL
             WHERE node_id = ? AND occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?)
             GROUP BY hour ORDER BY hour DESC",
            memory = percent("memory_used_bytes", "memory_total_bytes"),
            disk = percent("disk_used_bytes", "disk_total_bytes"),
            shm = percent("shm_used_bytes", "shm_total_bytes"),
            healthy = healthy_sample(),
        ))
        .bind(node)
        .bind(start.timestamp())
        .bind(end.timestamp())
        .fetch_all()
        .await
}
