//! A node's load over time, from the analytics in ClickHouse: every sample
//! (`metricsConnection`) and hourly summaries (`metrics1hConnection`).
//!
//! A sample is healthy unless the node was overloaded: CPU at or above
//! [`OVERLOADED_CPU_PERCENT`], memory at or above
//! [`OVERLOADED_MEMORY_RATIO`] of its total, or sending at its bandwidth
//! limit. An hour was healthy when every sample in it was.

use async_graphql::{ComplexObject, Context, ID, InputObject, Json, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use clickhouse::{Client, Row};
use serde::Deserialize;

use super::clusters::InfrastructureNode;
use super::connection::{ConnectionInput, Page, Position, connection};
use super::errors::{bad_input, internal};
use super::scalars::Time;
use super::{ids, require, state};
use crate::auth::Scope;

const METRIC_TYPE: &str = "NodeMetric";
const HOURLY_TYPE: &str = "NodeMetricHourly";
pub const OVERLOADED_CPU_PERCENT: f64 = 90.0;
pub const OVERLOADED_MEMORY_RATIO: f64 = 0.95;
/// Without a time range: samples of the last day, hours of the last week.
const DEFAULT_SAMPLES_SPAN: Duration = Duration::days(1);
const DEFAULT_HOURS_SPAN: Duration = Duration::days(7);
/// The longest time ranges asked at once.
const MAX_SAMPLES_SPAN: Duration = Duration::days(31);
const MAX_HOURS_SPAN: Duration = Duration::days(366);

/// SQL for "this sample was healthy" over `node_metrics`' columns.
fn healthy_sample() -> String {
    format!(
        "(cpu_percent < {OVERLOADED_CPU_PERCENT}
          AND (memory_total_bytes = 0 OR memory_used_bytes < memory_total_bytes * {OVERLOADED_MEMORY_RATIO})
          AND (bandwidth_limit_bps = 0 OR bandwidth_up_bps < bandwidth_limit_bps))"
    )
}

#[derive(Debug, Clone, InputObject)]
pub struct TimeRangeInput {
    pub start: Time,
    pub end: Time,
}

/// One load sample a node reported.
#[derive(Debug, Clone, SimpleObject)]
pub struct NodeMetric {
    pub id: ID,
    pub timestamp: Time,
    pub node_id: String,
    pub cluster_id: Option<String>,
    pub cpu_usage: f64,
    /// MiB.
    pub memory_total: Option<f64>,
    /// MiB.
    pub memory_used: Option<f64>,
    /// Bytes.
    pub disk_total: Option<f64>,
    pub disk_used: Option<f64>,
    /// Bytes of /dev/shm, where MistServer keeps its buffers.
    pub shm_total: Option<f64>,
    pub shm_used: Option<f64>,
    /// Bytes received since the node booted.
    pub network_rx: f64,
    /// Bytes sent since the node booted.
    pub network_tx: f64,
    /// Bytes per second sent.
    pub up_speed: Option<f64>,
    /// Bytes per second received.
    pub down_speed: Option<f64>,
    /// Viewers connected.
    pub connections_current: Option<i32>,
    pub stream_count: Option<i32>,
    /// `healthy` or `overloaded`.
    pub status: String,
    pub is_healthy: Option<bool>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// `bandwidthLimitBps` (0 for none) and `windowMs`, the sampling window.
    pub metadata: Option<Json<serde_json::Value>>,
}

/// A node's load over one hour.
#[derive(Debug, Clone, SimpleObject)]
pub struct NodeMetricHourly {
    pub id: ID,
    /// The start of the hour.
    pub timestamp: Time,
    pub node_id: String,
    pub cluster_id: Option<String>,
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
    /// Bytes received in the hour.
    pub total_bandwidth_in: f64,
    /// Bytes sent in the hour.
    pub total_bandwidth_out: f64,
    /// Whether no sample of the hour was overloaded.
    pub was_healthy: bool,
}

connection!(NodeMetricsConnection, NodeMetricEdge, NodeMetric);
connection!(
    NodeMetricsHourlyConnection,
    NodeMetricHourlyEdge,
    NodeMetricHourly
);

#[derive(Debug, Row, Deserialize)]
struct SampleRow {
    id: String,
    at: u32,
    cpu_percent: f64,
    memory_used_bytes: u64,
    memory_total_bytes: u64,
    disk_used_bytes: u64,
    disk_total_bytes: u64,
    shm_used_bytes: u64,
    shm_total_bytes: u64,
    bandwidth_up_bps: u64,
    bandwidth_down_bps: u64,
    bandwidth_limit_bps: u64,
    network_rx_bytes: u64,
    network_tx_bytes: u64,
    active_streams: u32,
    active_viewers: u32,
    window_ms: u32,
    healthy: u8,
}

#[derive(Debug, Row, Deserialize)]
struct HourRow {
    hour: u32,
    avg_cpu: f64,
    peak_cpu: f64,
    avg_memory: f64,
    peak_memory: f64,
    avg_disk: f64,
    peak_disk: f64,
    avg_shm: f64,
    peak_shm: f64,
    bytes_in: f64,
    bytes_out: f64,
    healthy: u8,
}

#[ComplexObject]
impl InfrastructureNode {
    /// Global unique identifier for Relay compatibility.
    pub async fn id(&self) -> ID {
        self.id.clone()
    }

    /// The node's load samples, newest first (the last day by default).
    async fn metrics_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        time_range: Option<TimeRangeInput>,
    ) -> async_graphql::Result<NodeMetricsConnection> {
        require(ctx, Scope::InfrastructureRead)?;
        let page = Page::from_input(page.as_ref())?;
        let (start, end) = span(time_range, DEFAULT_SAMPLES_SPAN, MAX_SAMPLES_SPAN)?;
        let Some(client) = analytics(ctx).await? else {
            let (edges, info) = page.finish(Vec::new(), sample_position);
            return Ok(NodeMetricsConnection::new(edges, info, 0));
        };
        let range = "node_id = ? AND occurred_at >= toDateTime(?) AND occurred_at < toDateTime(?)";
        let total: u64 = client
            .query(&format!(
                "SELECT count() FROM node_metrics FINAL WHERE {range}"
            ))
            .bind(&self.node_id)
            .bind(start.timestamp())
            .bind(end.timestamp())
            .fetch_one()
            .await
            .map_err(|e| internal(&e))?;
        // Keyset paging on (time, event id), newest first, as the SQL lists do.
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
            .bind(&self.node_id)
            .bind(start.timestamp())
            .bind(end.timestamp());
        if let Some(anchor) = page.anchor() {
            query = query
                .bind(anchor.created_at.timestamp())
                .bind(anchor.created_at.timestamp())
                .bind(&anchor.id);
        }
        let rows: Vec<SampleRow> = query.fetch_all().await.map_err(|e| internal(&e))?;
        let samples = rows.into_iter().map(|row| self.sample(row)).collect();
        let (edges, info) = page.finish(samples, sample_position);
        Ok(NodeMetricsConnection::new(
            edges,
            info,
            i64::try_from(total).unwrap_or(i64::MAX),
        ))
    }

    /// The node's load by hour, newest first (the last week by default).
    #[graphql(name = "metrics1hConnection")]
    async fn metrics1h_connection(
        &self,
        ctx: &Context<'_>,
        page: Option<ConnectionInput>,
        time_range: Option<TimeRangeInput>,
    ) -> async_graphql::Result<NodeMetricsHourlyConnection> {
        require(ctx, Scope::InfrastructureRead)?;
        let page = Page::from_input(page.as_ref())?;
        let (start, end) = span(time_range, DEFAULT_HOURS_SPAN, MAX_HOURS_SPAN)?;
        let Some(client) = analytics(ctx).await? else {
            let (edges, info) = page.finish(Vec::new(), hour_position);
            return Ok(NodeMetricsHourlyConnection::new(edges, info, 0));
        };
        let percent =
            |used: &str, total: &str| format!("if({total} = 0, 0, {used} / {total} * 100)");
        // At most 8,784 hours in a range: they are summed up and paged here.
        let rows: Vec<HourRow> = client
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
            .bind(&self.node_id)
            .bind(start.timestamp())
            .bind(end.timestamp())
            .fetch_all()
            .await
            .map_err(|e| internal(&e))?;
        let total = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let hours: Vec<NodeMetricHourly> = rows.into_iter().map(|row| self.hour(row)).collect();
        let selected = page.select(hours, hour_position);
        let (edges, info) = page.finish(selected, hour_position);
        Ok(NodeMetricsHourlyConnection::new(edges, info, total))
    }
}

impl InfrastructureNode {
    fn sample(&self, row: SampleRow) -> NodeMetric {
        const MIB: f64 = 1_048_576.0;
        let at = DateTime::from_timestamp(i64::from(row.at), 0).unwrap_or_default();
        NodeMetric {
            id: ids::global(METRIC_TYPE, &row.id),
            timestamp: Time(at),
            node_id: self.node_id.clone(),
            cluster_id: Some(self.cluster_id.clone()),
            cpu_usage: row.cpu_percent,
            memory_total: Some(row.memory_total_bytes as f64 / MIB),
            memory_used: Some(row.memory_used_bytes as f64 / MIB),
            disk_total: Some(row.disk_total_bytes as f64),
            disk_used: Some(row.disk_used_bytes as f64),
            shm_total: Some(row.shm_total_bytes as f64),
            shm_used: Some(row.shm_used_bytes as f64),
            network_rx: row.network_rx_bytes as f64,
            network_tx: row.network_tx_bytes as f64,
            up_speed: Some(row.bandwidth_up_bps as f64 / 8.0),
            down_speed: Some(row.bandwidth_down_bps as f64 / 8.0),
            connections_current: Some(i32::try_from(row.active_viewers).unwrap_or(i32::MAX)),
            stream_count: Some(i32::try_from(row.active_streams).unwrap_or(i32::MAX)),
            status: if row.healthy == 1 {
                "healthy"
            } else {
                "overloaded"
            }
            .into(),
            is_healthy: Some(row.healthy == 1),
            latitude: self.latitude,
            longitude: self.longitude,
            metadata: Some(Json(serde_json::json!({
                "bandwidthLimitBps": row.bandwidth_limit_bps,
                "windowMs": row.window_ms,
            }))),
        }
    }

    fn hour(&self, row: HourRow) -> NodeMetricHourly {
        let at = DateTime::from_timestamp(i64::from(row.hour), 0).unwrap_or_default();
        NodeMetricHourly {
            id: ids::global(HOURLY_TYPE, &format!("{}:{}", self.node_id, row.hour)),
            timestamp: Time(at),
            node_id: self.node_id.clone(),
            cluster_id: Some(self.cluster_id.clone()),
            avg_cpu: row.avg_cpu,
            peak_cpu: row.peak_cpu,
            avg_memory: row.avg_memory,
            peak_memory: row.peak_memory,
            avg_disk: row.avg_disk,
            peak_disk: row.peak_disk,
            avg_shm: row.avg_shm,
            peak_shm: row.peak_shm,
            total_bandwidth_in: row.bytes_in,
            total_bandwidth_out: row.bytes_out,
            was_healthy: row.healthy == 1,
        }
    }
}

fn sample_position(metric: &NodeMetric) -> Position {
    Position {
        created_at: metric.timestamp.0,
        id: ids::raw(METRIC_TYPE, &metric.id.0).unwrap_or_default(),
    }
}

fn hour_position(hour: &NodeMetricHourly) -> Position {
    Position {
        created_at: hour.timestamp.0,
        id: hour.node_id.clone(),
    }
}

/// The asked range, or the last `default` span up to now; at most `max` long.
fn span(
    range: Option<TimeRangeInput>,
    default: Duration,
    max: Duration,
) -> async_graphql::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let Some(range) = range else {
        let now = Utc::now();
        return Ok((now - default, now));
    };
    let (start, end) = (range.start.0, range.end.0);
    if start >= end {
        return Err(bad_input("timeRange", "start must be before end"));
    }
    if end - start > max {
        return Err(bad_input(
            "timeRange",
            &format!("may span at most {} days", max.num_days()),
        ));
    }
    Ok((start, end))
}

/// The live analytics database, or `None` before there is one.
async fn analytics(ctx: &Context<'_>) -> async_graphql::Result<Option<Client>> {
    state(ctx)?.analytics.live().await.map_err(|e| internal(&e))
}
