//! How a crate declares its Prometheus metrics: once, in a `METRICS`
//! catalogue of its own (`<crate>::observability::METRICS`), with name,
//! kind, help text, unit, labels and, for histograms, buckets. The binary
//! hands every catalogue to the Prometheus recorder at start (help texts,
//! and buckets so histograms export as Prometheus histograms, not
//! summaries), a test checks that the code records exactly the metrics
//! the catalogues declare, and `docs/operations.md` lists them from here.

use metrics::Unit;

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Histogram bucket sets, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buckets {
    /// Sub-millisecond to ten seconds: answers, requests, batches.
    Latency,
    /// A tenth of a second to five minutes: waits and long operations.
    Slow,
}

impl Buckets {
    /// The upper bounds, in seconds.
    pub fn bounds(self) -> &'static [f64] {
        match self {
            Self::Latency => &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
            Self::Slow => &[
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ],
        }
    }
}

/// One metric, as a crate declares it.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub unit: Unit,
    /// The label keys it is recorded with.
    pub labels: &'static [&'static str],
    pub buckets: Option<Buckets>,
}

impl Metric {
    /// A counter of events (unit: count).
    pub const fn counter(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind: Kind::Counter,
            help,
            unit: Unit::Count,
            labels,
            buckets: None,
        }
    }

    /// A gauge of `unit`s.
    pub const fn gauge(
        name: &'static str,
        unit: Unit,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            kind: Kind::Gauge,
            help,
            unit,
            labels,
            buckets: None,
        }
    }

    /// A histogram of durations in seconds.
    pub const fn histogram(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: Buckets,
    ) -> Self {
        Self {
            name,
            kind: Kind::Histogram,
            help,
            unit: Unit::Seconds,
            labels,
            buckets: Some(buckets),
        }
    }

    /// Gives the installed recorder this metric's unit and help text.
    pub fn describe(&self) {
        match self.kind {
            Kind::Counter => metrics::describe_counter!(self.name, self.unit, self.help),
            Kind::Gauge => metrics::describe_gauge!(self.name, self.unit, self.help),
            Kind::Histogram => metrics::describe_histogram!(self.name, self.unit, self.help),
        }
    }
}

/// The metrics this crate records.
pub const METRICS: &[Metric] = &[Metric::counter(
    "frameworks_feed_events_total",
    "Events a live feed's Kafka reader decoded and handed to its broadcast subscribers, by reader name (unreadable records are skipped and not counted).",
    &["reader"],
)];
