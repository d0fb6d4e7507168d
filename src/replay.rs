//! `frameworks replay <projection>`: rebuilds a projection from the beginning
//! of its topics into a new generation while queries keep reading the live
//! one, then switches queries over atomically once the new one has caught up.
//!
//! Interrupting (Ctrl-C) leaves the generation building with its positions
//! stored beside its data; running the same command again resumes it.
//! `--restart` throws a building generation away and starts afresh.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use frameworks_commands::{DatabaseSettings, EventStore};
use frameworks_events::Topic;
use frameworks_events::kafka::KafkaSettings;
use frameworks_projections::analytics::{
    self, AnalyticsProjector, AnalyticsSettings, ClickHouseSettings,
};
use frameworks_projections::control_plane;
use frameworks_projections::generations::Generations;
use frameworks_projections::generations::clickhouse::ClickHouseGenerations;
use frameworks_projections::generations::postgres::PostgresGenerations;
use frameworks_projections::live::{self, LiveStateProjector, LiveStateSettings};
use frameworks_projections::postgres::{PostgresProjector, ProjectorSettings};
use frameworks_projections::status::offset_ranges;
use futures::future::try_join_all;
use indicatif::{ProgressBar, ProgressStyle};

use crate::relay::shutdown_signal;

/// Rebuild a projection from the log into a new generation and switch queries to it.
#[derive(Debug, clap::Args)]
pub struct ReplayCommand {
    /// Which projection to rebuild.
    #[arg(value_enum)]
    projection: Projection,

    /// Discard a replay in progress instead of resuming it.
    #[arg(long)]
    restart: bool,

    /// Only rebuild when the live generation's tables are older than this
    /// build's definitions (after an upgrade); otherwise do nothing.
    #[arg(long)]
    if_outdated: bool,

    /// Retired generations to keep after the switch (for going back by hand).
    #[arg(long, env = "FRAMEWORKS_REPLAY_KEEP_RETIRED", default_value_t = 1)]
    keep_retired: usize,

    /// Projectors replaying side by side, as members of one consumer group:
    /// the log's partitions are shared out among them.
    #[arg(long, env = "FRAMEWORKS_REPLAY_PARALLEL", default_value_t = 2,
        value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,

    /// Seconds between progress lines when stderr is not a terminal.
    #[arg(long, env = "FRAMEWORKS_REPLAY_REPORT_SECONDS", default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    report_seconds: u64,

    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    kafka: KafkaSettings,
    #[command(flatten)]
    projector: ProjectorSettings,
    #[command(flatten)]
    live: LiveStateSettings,
    #[command(flatten)]
    clickhouse: ClickHouseSettings,
    #[command(flatten)]
    analytics: AnalyticsSettings,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Projection {
    /// The control-plane read models in PostgreSQL.
    ControlPlane,
    /// The live state in Redis.
    LiveState,
    /// The analytics in ClickHouse.
    Analytics,
}

impl ReplayCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let options = ReplayOptions {
            kafka: &self.kafka,
            restart: self.restart,
            if_outdated: self.if_outdated,
            keep_retired: self.keep_retired,
            report_every: Duration::from_secs(self.report_seconds),
        };
        match self.projection {
            Projection::ControlPlane => {
                let store = EventStore::connect(&self.database)
                    .await
                    .context("connecting to PostgreSQL (FRAMEWORKS_DATABASE_URL)")?;
                store.migrate().await.context("migrating the database")?;
                let generations = PostgresGenerations::new(store.pool().clone());
                replay(
                    &generations,
                    &control_plane::TOPICS,
                    options,
                    |generation| {
                        let pool = store.pool().clone();
                        let (kafka, settings) = (&self.kafka, self.projector.clone());
                        async move {
                            let projectors =
                                worker_ids(settings.instance_id.as_deref(), self.parallel)
                                    .into_iter()
                                    .map(|instance_id| {
                                        let settings = ProjectorSettings {
                                            instance_id,
                                            ..settings.clone()
                                        };
                                        PostgresProjector::for_generation(
                                            pool.clone(),
                                            kafka,
                                            settings,
                                            generation,
                                        )
                                    })
                                    .collect::<Result<Vec<_>, _>>()?;
                            try_join_all(projectors.iter().map(|p| p.run(std::future::pending())))
                                .await?;
                            Ok(())
                        }
                    },
                )
                .await
            }
            Projection::LiveState => {
                let generations = LiveStateProjector::generations(&self.live)
                    .await
                    .context("connecting to Redis (FRAMEWORKS_REDIS_URL)")?;
                replay(&generations, &live::TOPICS, options, |generation| {
                    let (kafka, settings) = (&self.kafka, self.live.clone());
                    async move {
                        let ids = worker_ids(settings.instance_id.as_deref(), self.parallel);
                        let projectors = open_each(ids, |instance_id| {
                            let settings = LiveStateSettings {
                                instance_id,
                                ..settings.clone()
                            };
                            LiveStateProjector::for_generation(kafka, settings, generation)
                        })
                        .await?;
                        try_join_all(projectors.iter().map(|p| p.run(std::future::pending())))
                            .await?;
                        Ok(())
                    }
                })
                .await
            }
            Projection::Analytics => {
                let generations = ClickHouseGenerations::open(&self.clickhouse)
                    .await
                    .context("connecting to ClickHouse (FRAMEWORKS_CLICKHOUSE_URL)")?;
                replay(&generations, &analytics::TOPICS, options, |generation| {
                    let (clickhouse, kafka, settings) =
                        (&self.clickhouse, &self.kafka, self.analytics.clone());
                    async move {
                        let ids = worker_ids(settings.instance_id.as_deref(), self.parallel);
                        let projectors = open_each(ids, |instance_id| {
                            let settings = AnalyticsSettings {
                                instance_id,
                                ..settings.clone()
                            };
                            AnalyticsProjector::for_generation(
                                clickhouse, kafka, settings, generation,
                            )
                        })
                        .await?;
                        try_join_all(projectors.iter().map(|p| p.run(std::future::pending())))
                            .await?;
                        Ok(())
                    }
                })
                .await
            }
        }
    }
}

/// The static instance id of each of `count` projectors of one group: a
/// configured id gets a suffix per worker (two members with one id would
/// fence each other out of the group).
fn worker_ids(instance_id: Option<&str>, count: u16) -> Vec<Option<String>> {
    (0..count)
        .map(|worker| instance_id.map(|id| format!("{id}-replay-{worker}")))
        .collect()
}

/// One projector per worker id, opened one after another with `open`.
async fn open_each<P, E, Fut>(
    ids: Vec<Option<String>>,
    mut open: impl FnMut(Option<String>) -> Fut,
) -> Result<Vec<P>, E>
where
    Fut: Future<Output = Result<P, E>>,
{
    let mut projectors = Vec::with_capacity(ids.len());
    for id in ids {
        projectors.push(open(id).await?);
    }
    Ok(projectors)
}

#[derive(Debug, Clone, Copy)]
struct ReplayOptions<'a> {
    kafka: &'a KafkaSettings,
    restart: bool,
    if_outdated: bool,
    keep_retired: usize,
    report_every: Duration,
}

async fn replay<G, F, Fut>(
    generations: &G,
    topics: &[Topic],
    options: ReplayOptions<'_>,
    project: F,
) -> anyhow::Result<ExitCode>
where
    G: Generations,
    F: FnOnce(u32) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let name = generations.projection();
    if options.if_outdated {
        match generations.live().await? {
            None => {
                eprintln!("{name}: no live generation yet; the projector role builds the first");
                return Ok(ExitCode::SUCCESS);
            }
            Some(live) if generations.schema_current(live).await? => {
                eprintln!("{name}: generation {live} is up to date");
                return Ok(ExitCode::SUCCESS);
            }
            Some(live) => {
                eprintln!("{name}: generation {live} has outdated tables; rebuilding");
            }
        }
    }
    let mut building = generations.building().await?;
    if let Some(stale) = building {
        // A replay begun by an older build would finish with the old tables.
        if options.restart || !generations.schema_current(stale).await? {
            generations.discard(stale).await?;
            eprintln!("{name}: discarded generation {stale}, which was building");
            building = None;
        }
    }
    let generation = match building {
        Some(generation) => {
            eprintln!("{name}: resuming generation {generation}");
            generation
        }
        None => {
            let generation = generations.begin().await?;
            eprintln!("{name}: building generation {generation} from the beginning of the log");
            generation
        }
    };

    let started = Instant::now();
    let mut progress = Progress::new(name, options.report_every);
    // Boxed so that it can be dropped (leaving its consumer group) before the switch.
    let mut projector = Box::pin(project(generation));
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let events = loop {
        tokio::select! {
            result = &mut projector => {
                progress.abandon();
                result.with_context(|| format!("replaying {name}"))?;
                return Err(anyhow!("the {name} projector stopped before catching up"));
            }
            () = &mut shutdown => {
                progress.abandon();
                eprintln!("{name}: interrupted; generation {generation} keeps what it applied. Run the same command again to resume.");
                return Ok(ExitCode::from(130));
            }
            _ = tick.tick() => {
                let ranges = offset_ranges(options.kafka, topics).await?;
                let applied = generations.applied(generation).await?;
                let (done, total, caught_up) = measure(&ranges, &applied);
                progress.show(done, total);
                if caught_up {
                    break done;
                }
            }
        }
    };
    // Stopping the projector mid-batch is safe; the live role takes over from
    // the positions stored in the generation.
    drop(projector);
    generations.switch(generation).await?;
    progress.finish();
    let elapsed = started.elapsed();
    eprintln!(
        "{name}: generation {generation} is live: {events} events in {:.1}s ({:.0} events/s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64().max(0.001)
    );
    let retired = generations.retired().await?;
    let excess = retired.len().saturating_sub(options.keep_retired);
    for old in &retired[..excess] {
        generations.discard(*old).await?;
        eprintln!("{name}: discarded retired generation {old}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Records applied and records in the log (from the low watermark), and
/// whether every partition has reached its high watermark.
fn measure(ranges: &[(String, i32, i64, i64)], applied: &[(String, i32, i64)]) -> (u64, u64, bool) {
    let mut done = 0u64;
    let mut total = 0u64;
    let mut caught_up = true;
    for (topic, partition, low, high) in ranges {
        let next = applied
            .iter()
            .find(|(t, p, _)| t == topic && p == partition)
            .map_or(*low, |(_, _, next)| *next);
        total += u64::try_from(high - low).unwrap_or(0);
        done += u64::try_from(next.clamp(*low, *high) - low).unwrap_or(0);
        caught_up &= next >= *high;
    }
    (done, total, caught_up)
}

/// A progress bar on a terminal, plain lines elsewhere (logs, CI).
struct Progress {
    name: &'static str,
    bar: Option<ProgressBar>,
    report_every: Duration,
    last_report: Option<Instant>,
    started: Instant,
    first_done: Option<u64>,
}

impl Progress {
    fn new(name: &'static str, report_every: Duration) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {human_pos}/{human_len} events, {per_sec}, ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(name);
            bar
        });
        Self {
            name,
            bar,
            report_every,
            last_report: None,
            started: Instant::now(),
            first_done: None,
        }
    }

    fn show(&mut self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            return;
        }
        // A resumed replay's rate counts only what this run applied.
        let first = *self.first_done.get_or_insert(done);
        if self
            .last_report
            .is_some_and(|last| last.elapsed() < self.report_every)
        {
            return;
        }
        self.last_report = Some(Instant::now());
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = (done.saturating_sub(first)) as f64 / elapsed;
        let left = total.saturating_sub(done);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "unknown".into()
        };
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        eprintln!(
            "{}: {done}/{total} events ({percent:.1}%), {rate:.0} events/s, ETA {eta}",
            self.name
        );
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::measure;

    #[test]
    fn progress_counts_from_the_low_watermark_and_waits_for_every_partition() {
        let ranges = vec![
            ("t".to_owned(), 0, 100, 200),
            ("t".to_owned(), 1, 0, 50),
            ("u".to_owned(), 0, 0, 0),
        ];
        let applied = vec![("t".to_owned(), 0, 150), ("t".to_owned(), 1, 50)];
        assert_eq!(measure(&ranges, &applied), (100, 150, false));
        let applied = vec![("t".to_owned(), 0, 200), ("t".to_owned(), 1, 50)];
        assert_eq!(measure(&ranges, &applied), (150, 150, true));
    }
}
