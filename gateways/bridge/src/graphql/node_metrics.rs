//! A node's load over time, from the analytics in ClickHouse: every sample
//! (`metricsConnection`) and hourly summaries (`metrics1hConnection`). What
//! counts as healthy is the read model's rule:
//! [`frameworks_projections::queries::node_metrics`].

use async_graphql::{ComplexObject, Context, ID, InputObject, Json, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use clickhouse::Client;
use frameworks_projections::queries::node_metrics::{self as read_model, HourRow, SampleRow};

use super::clusters::InfrastructureNode;
use super::connection::{ConnectionInput, Position, connection, page_of};
use super::errors::{bad_input, internal};
use super::scalars::Time;
use super::{ids, require, state};
use crate::auth::Scope;

const METRIC_TYPE: &str = "NodeMetric";
const HOURLY_TYPE: &str = "NodeMetricHourly";
/// Without a time range: samples of the last day, hours of the last week.
const DEFAULT_SAMPLES_SPAN: Duration = Duration::days(1);
const DEFAULT_HOURS_SPAN: Duration = Duration::days(7);
/// The longest time ranges asked at once.
const MAX_SAMPLES_SPAN: Duration = Duration::days(31);
const MAX_HOURS_SPAN: Duration = Duration::days(366);

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
        let page = page_of(page.as_ref())?;
        let (start, end) = span(time_range, DEFAULT_SAMPLES_SPAN, MAX_SAMPLES_SPAN)?;
        let Some(client) = analytics(ctx).await? else {
            return Ok(NodeMetricsConnection::new(page.finish(
                Vec::new(),
                sample_position,
                0,
            )));
        };
        let (rows, total) = read_model::samples(&client, &self.node_id, start, end, &page)
            .await
            .map_err(|e| internal(&e))?;
        let samples = rows.into_iter().map(|row| self.sample(row)).collect();
        Ok(NodeMetricsConnection::new(page.finish(
            samples,
            sample_position,
            i64::try_from(total).unwrap_or(i64::MAX),
        )))
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
        let page = page_of(page.as_ref())?;
        let (start, end) = span(time_range, DEFAULT_HOURS_SPAN, MAX_HOURS_SPAN)?;
        let Some(client) = analytics(ctx).await? else {
            return Ok(NodeMetricsHourlyConnection::new(page.finish(
                Vec::new(),
                hour_position,
                0,
            )));
        };
        let rows = read_model::hours(&client, &self.node_id, start, end)
            .await
            .map_err(|e| internal(&e))?;
        let total = i64::try_from(rows.len()).unwrap_or(i64::MAX);
        let hours: Vec<NodeMetricHourly> = rows.into_iter().map(|row| self.hour(row)).collect();
        let selected = page.select(hours, hour_position);
        Ok(NodeMetricsHourlyConnection::new(page.finish(
            selected,
            hour_position,
            total,
        )))
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
