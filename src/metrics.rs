//! Prometheus metrics and health for long-running roles.
//!
//! Every crate declares its metrics once (`<crate>::observability::METRICS`,
//! see [`frameworks_events::observability`]); [`install`] hands all of them
//! to the recorder, so each metric has its help text and unit and every
//! histogram exports as a Prometheus histogram with buckets.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use frameworks_events::observability::Metric;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::info;

use crate::supervisor::Supervisor;

/// How often histograms drop samples older than their window.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The binary's own metrics: its supervisor's.
pub const METRICS: &[Metric] = &[
    Metric::counter(
        "frameworks_task_restarts_total",
        "Times a supervised task ended (an error, a panic or returning) and was started again after its backoff.",
        &["task"],
    ),
    Metric::gauge(
        "frameworks_task_up",
        metrics::Unit::Count,
        "1 while a supervised task runs, 0 while it is down (in its backoff, or ended for good).",
        &["task"],
    ),
    Metric::gauge(
        "frameworks_dependency_up",
        metrics::Unit::Count,
        "1 while a server the role depends on answers its probe (every 2 s), 0 while it does not or while the work it does for the role is stuck (an outbox or a projection waiting with no progress).",
        &["dependency"],
    ),
];

/// Every crate's catalogue, the binary's last.
pub fn catalogue() -> impl Iterator<Item = &'static Metric> {
    [
        frameworks_events::observability::METRICS,
        frameworks_commands::observability::METRICS,
        frameworks_projections::observability::METRICS,
        frameworks_bridge::observability::METRICS,
        frameworks_balancer::observability::METRICS,
        frameworks_edge::observability::METRICS,
        METRICS,
    ]
    .into_iter()
    .flatten()
}

/// A Prometheus builder that renders every catalogued histogram with its buckets.
fn builder() -> anyhow::Result<PrometheusBuilder> {
    catalogue().try_fold(PrometheusBuilder::new(), |builder, metric| {
        match metric.buckets {
            Some(buckets) => builder
                .set_buckets_for_metric(Matcher::Full(metric.name.to_owned()), buckets.bounds())
                .with_context(|| format!("buckets of {}", metric.name)),
            None => Ok(builder),
        }
    })
}

/// Installs the Prometheus recorder for this process, with every
/// catalogued metric described; the role serves its rendering itself (see
/// [`serve`], or the bridge's own port).
pub fn install(supervisor: &mut Supervisor) -> anyhow::Result<PrometheusHandle> {
    let handle = builder()?
        .install_recorder()
        .context("installing the metrics recorder")?;
    catalogue().for_each(Metric::describe);
    let upkept = handle.clone();
    supervisor.restarting("metrics-upkeep", move || upkeep(upkept.clone()));
    Ok(handle)
}

async fn upkeep(handle: PrometheusHandle) {
    let mut ticks = tokio::time::interval(UPKEEP_EVERY);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// `GET /metrics` (every `metrics` counter, gauge and histogram) and
/// `GET /health` (every supervised task up) on `listen`.
pub async fn serve(listen: SocketAddr, supervisor: &mut Supervisor) -> anyhow::Result<()> {
    let handle = install(supervisor)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("serving metrics on {listen} (is the port taken?)"))?;
    info!(listen = %listener.local_addr()?, "serving /metrics and /health");
    let router = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .merge(supervisor.health().router());
    supervisor.essential("metrics-server", async move {
        axum::serve(listener, router)
            .await
            .context("serving /metrics")
    });
    Ok(())
}

/// The metrics table of `docs/operations.md`, from the catalogues.
#[cfg(test)]
fn table() -> String {
    let mut table = String::from("| metric | kind | labels | what |\n| --- | --- | --- | --- |\n");
    for metric in catalogue() {
        let labels = metric
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = match metric.buckets {
            Some(frameworks_events::observability::Buckets::Latency) => {
                "histogram (0.5 ms to 10 s)"
            }
            Some(frameworks_events::observability::Buckets::Slow) => "histogram (0.1 s to 5 min)",
            None => metric.kind.as_str(),
        };
        table.push_str(&format!(
            "| `{}` | {kind} | {labels} | {} |\n",
            metric.name, metric.help
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use frameworks_events::observability::Kind;

    use super::*;

    fn repo() -> PathBuf {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
    }

    /// Where each catalogue's crate keeps its code.
    fn crates() -> [(&'static str, &'static [Metric]); 7] {
        [
            ("events/src", frameworks_events::observability::METRICS),
            ("commands/src", frameworks_commands::observability::METRICS),
            (
                "projections/src",
                frameworks_projections::observability::METRICS,
            ),
            (
                "gateways/bridge/src",
                frameworks_bridge::observability::METRICS,
            ),
            (
                "gateways/balancer/src",
                frameworks_balancer::observability::METRICS,
            ),
            ("edge/src", frameworks_edge::observability::METRICS),
            ("src", METRICS),
        ]
    }

    /// Every call of the `counter!`, `gauge!` and `histogram!` macros with a
    /// literal name in the Rust files under `dir`: name -> kinds recorded as.
    fn recorded(dir: &Path, into: &mut BTreeMap<String, BTreeSet<&'static str>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                recorded(&path, into);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for kind in ["counter", "gauge", "histogram"] {
                let call = format!("{kind}!(");
                for (at, _) in source.match_indices(&call) {
                    if source[..at].ends_with("describe_") {
                        continue;
                    }
                    let rest = source[at + call.len()..].trim_start();
                    if let Some(literal) = rest.strip_prefix('"') {
                        let name = &literal[..literal.find('"').unwrap()];
                        into.entry(name.to_owned()).or_default().insert(kind);
                    }
                }
            }
        }
    }

    /// What the code records is exactly what the catalogues declare, each
    /// crate its own, each metric once and as its kind.
    #[test]
    fn the_catalogues_declare_every_metric_the_code_records() {
        let mut all = BTreeSet::new();
        for (dir, catalogue) in crates() {
            let mut used = BTreeMap::new();
            let root = repo().join(dir);
            recorded(&root, &mut used);
            let declared: BTreeMap<String, &'static str> = catalogue
                .iter()
                .map(|m| (m.name.to_owned(), m.kind.as_str()))
                .collect();
            for (name, kinds) in &used {
                let declared_kind = declared.get(name).unwrap_or_else(|| {
                    panic!("{dir} records {name}, which its catalogue does not declare")
                });
                assert_eq!(kinds.len(), 1, "{name} is recorded as {kinds:?}");
                assert!(
                    kinds.contains(declared_kind),
                    "{name} is declared a {declared_kind}, recorded as {kinds:?}"
                );
            }
            for name in declared.keys() {
                assert!(
                    used.contains_key(name),
                    "{dir}'s catalogue declares {name}, which nothing records"
                );
                assert!(all.insert(name.clone()), "{name} is declared twice");
            }
        }
        for metric in catalogue() {
            assert!(metric.name.starts_with("frameworks_"), "{}", metric.name);
            assert!(
                metric.help.ends_with('.'),
                "{}'s help is a sentence",
                metric.name
            );
            assert_eq!(
                metric.kind == Kind::Histogram,
                metric.buckets.is_some(),
                "{}",
                metric.name
            );
        }
    }

    /// Histograms export as Prometheus histograms (buckets), not summaries.
    #[test]
    fn histograms_export_with_buckets() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        let histogram = catalogue()
            .find(|m| m.kind == Kind::Histogram)
            .expect("a catalogued histogram");
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!(histogram.name).record(0.02);
        });
        let rendered = handle.render();
        assert!(
            rendered.contains(&format!("{}_bucket{{le=\"0.025\"}} 1", histogram.name)),
            "{rendered}"
        );
        assert!(!rendered.contains("quantile="), "{rendered}");
    }

    /// docs/operations.md lists the catalogues' metrics.
    #[test]
    fn docs_list_the_catalogued_metrics() {
        const BEGIN: &str = "<!-- metrics: generated from the catalogues, do not edit -->";
        const END: &str = "<!-- end of generated metrics -->";
        let path = repo().join("docs/operations.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("{} lacks the markers {BEGIN} and {END}", path.display());
        };
        let wanted = format!("\n{}", table());
        if doc[begin + BEGIN.len()..end] != wanted
            && std::env::var_os("FRAMEWORKS_UPDATE_DOCS").is_some()
        {
            std::fs::write(
                &path,
                format!("{}{BEGIN}{wanted}{}", &doc[..begin], &doc[end..]),
            )
            .unwrap();
            return;
        }
        assert!(
            doc[begin + BEGIN.len()..end] == wanted,
            "{}'s metrics differ from the catalogues; run with FRAMEWORKS_UPDATE_DOCS=1",
            path.display()
        );
    }
}
