//! Load driver for the edge daemon's blocking answers: replays every
//! captured blocking trigger (PUSH_REWRITE, USER_NEW, PLAY_REWRITE,
//! PUSH_OUT_START, STREAM_SOURCE, ...) against the trigger endpoint, each
//! answer known to the edge (cached routes; a push's key is always asked
//! of the balancer, here one that answers in memory, so the figure is the
//! edge's own cost), and prints p50/p99 answer
//! times: over loopback HTTP as Mist sees them (a connection per trigger,
//! as Mist opens one), and the decision alone.
//!
//! `cargo bench --bench edge_triggers` runs the full load (release build);
//! under `cargo test` a small smoke load exercises the driver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use frameworks_edge::answers::{
    AnswerSettings, Answers, PlaybackPolicy, PullSource, Resolved, Resolver, Routes,
};
use frameworks_edge::journal::Journal;
use frameworks_edge::server::TriggerEndpoint;
use frameworks_edge_protocol::keys::key_sha256;
use frameworks_edge_protocol::triggers::{TriggerKind, TriggerRequest};
use frameworks_mist_simulator::captures;
use frameworks_mist_simulator::sender::Firing;
use hdrhistogram::Histogram;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn main() {
    let rounds = if std::env::args().any(|a| a == "--bench") {
        400
    } else {
        2
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(rounds));
}

/// A balancer that answers at once: the key "test" publishes to `live+stream-1`.
struct InMemoryBalancer;

impl Resolver for InMemoryBalancer {
    async fn resolve(&self, _: TriggerKind, hash: &str) -> Option<Resolved> {
        Some(Resolved::Ingest {
            key_sha256: hash.to_owned(),
            stream: (hash == key_sha256("test")).then(|| "live+stream-1".into()),
            momentary: false,
        })
    }
}

fn routes() -> Routes {
    let mut routes = Routes::default();
    routes.playback.insert("test".into(), Some("test".into()));
    routes.viewers.insert("test".into(), PlaybackPolicy::Public);
    routes.sources.insert(
        "test".into(),
        PullSource::new("rtmp://origin.example.net/live/test"),
    );
    routes
        .push_targets
        .insert(("test".into(), "/var/lib/mist/rec/test.ts".into()));
    routes
}

/// Prints a histogram of nanoseconds.
fn report(name: &str, histogram: &Histogram<u64>, elapsed: Duration) {
    println!(
        "  {name:<38} {:>9.0} answers/s   p50 {:>9.1} µs   p99 {:>9.1} µs   ({} answers)",
        histogram.len() as f64 / elapsed.as_secs_f64(),
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.len()
    );
}

async fn run(rounds: usize) {
    let dir = std::env::temp_dir().join(format!("fw-edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let journal = Journal::open(&dir.join("journal.redb")).expect("journal");
    let answers = Answers::new(
        InMemoryBalancer,
        AnswerSettings {
            budget: Duration::from_millis(50),
            admit_unknown_viewers: false,
        },
    );
    answers.replace(routes());
    let (forward, mut forwarded) = mpsc::channel(1 << 16);
    tokio::spawn(async move { while forwarded.recv().await.is_some() {} });
    let endpoint = Arc::new(TriggerEndpoint {
        answers: answers.clone(),
        journal,
        forward,
        sessions: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let address = listener.local_addr().expect("address");
    tokio::spawn(frameworks_edge::server::serve(
        listener,
        endpoint.router(),
        std::future::pending(),
    ));

    let blocking: Vec<_> = captures::triggers()
        .iter()
        .filter(|c| {
            c.trigger()
                .parse::<TriggerKind>()
                .is_ok_and(TriggerKind::blocking)
        })
        .collect();
    println!(
        "edge blocking answers: {} captured blocking triggers x {rounds} rounds, cached routes",
        blocking.len()
    );

    // The decision alone, in process.
    let parsed: Vec<TriggerRequest> = blocking
        .iter()
        .map(|c| TriggerRequest::parse(|n| c.header(n), c.body.as_bytes()).expect("captures parse"))
        .collect();
    let mut decisions = Histogram::<u64>::new(3).expect("histogram");
    let started = Instant::now();
    for _ in 0..rounds {
        for request in &parsed {
            let at = Instant::now();
            let answer = answers.answer(request.meta.kind, &request.trigger).await;
            std::hint::black_box(answer);
            decisions
                .record(at.elapsed().as_nanos() as u64)
                .expect("record");
        }
    }
    report("decision (in process)", &decisions, started.elapsed());

    // As Mist sees it: a connection, the request, the answer.
    let firings: Vec<Firing> = blocking
        .iter()
        .map(|c| Firing::from_capture(c, "/trigger"))
        .collect();
    let mut http = Histogram::<u64>::new(3).expect("histogram");
    let started = Instant::now();
    for _ in 0..rounds {
        for firing in &firings {
            let at = Instant::now();
            let reply = firing
                .send(address, Duration::from_secs(5))
                .await
                .expect("answer");
            assert_eq!(reply.status, 200, "{}", reply.body);
            http.record(at.elapsed().as_nanos() as u64).expect("record");
        }
    }
    report("trigger over loopback HTTP", &http, started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
