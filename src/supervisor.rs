//! Every long-running task of a role runs under its [`Supervisor`].
//!
//! A task is either *restarting* or *essential*:
//!
//! - a restarting task (the edge's forwarder and control stream, a
//!   projector's loop, the balancer's leadership) that ends for any reason,
//!   an error, a panic or simply returning, is logged, counted
//!   (`frameworks_task_restarts_total{task}`) and started again after a
//!   backoff that doubles from 500 ms to 30 s (reset once an attempt has
//!   run for a minute). While it is down, `/health` answers 503 and names it;
//! - an essential task (a server the role exists for, the check that the
//!   edge's MistServer is one it can drive) ends the role when it ends, with
//!   its error, so the process exits non-zero and its own supervisor
//!   (systemd, compose) sees it.
//!
//! Beside its tasks, a role names the servers it depends on
//! ([`Supervisor::dependency`]): each is probed in the background every
//! 2 s, and while one does not answer (or answers that work is stuck),
//! `/health` answers 503 naming it and `frameworks_dependency_up{dependency}`
//! is 0. The role itself keeps running and retrying: an outage of a server
//! is not a reason to exit.
//!
//! Each attempt passes a failpoint named after the task first (the `fail`
//! crate; compiled in only with its `failpoints` feature, which the test
//! build turns on), so tests can make a real role's task die:
//! `FAILPOINTS=edge-forwarder=3*panic`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{counter, gauge};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

/// The first wait before a dead task is started again.
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An attempt that ran this long was healthy: the next death waits
/// [`BACKOFF_INITIAL`] again.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// What a task's future may answer: nothing (it runs for good) or a result.
pub trait TaskOutput: Send + 'static {
    fn into_result(self) -> anyhow::Result<()>;
}

impl TaskOutput for () {
    fn into_result(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<E: Into<anyhow::Error> + Send + 'static> TaskOutput for Result<(), E> {
    fn into_result(self) -> anyhow::Result<()> {
        self.map_err(Into::into)
    }
}

/// How often each dependency is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// A probe that takes longer than this counts as a failed one.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether the role is healthy: every supervised task up, every dependency answering.
#[derive(Clone, Default)]
pub struct Health {
    /// Task name -> whether it is running now.
    tasks: Arc<Mutex<BTreeMap<&'static str, bool>>>,
    /// Dependency name -> whether its last probe succeeded.
    dependencies: Arc<Mutex<BTreeMap<&'static str, bool>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("down", &self.down())
            .finish_non_exhaustive()
    }
}

/// Names whose value is false in `map`.
fn down_in(map: &Mutex<BTreeMap<&'static str, bool>>) -> Vec<&'static str> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|(_, up)| !**up)
        .map(|(name, _)| *name)
        .collect()
}

impl Health {
    fn set(&self, task: &'static str, up: bool) {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(task, up);
        gauge!("frameworks_task_up", "task" => task).set(if up { 1.0 } else { 0.0 });
    }

    fn set_dependency(&self, dependency: &'static str, up: bool) {
        let was = self
            .dependencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dependency, up);
        gauge!("frameworks_dependency_up", "dependency" => dependency).set(if up {
            1.0
        } else {
            0.0
        });
        match (was, up) {
            (Some(true), false) => warn!(dependency, "dependency down"),
            (Some(false), true) => info!(dependency, "dependency up again"),
            _ => {}
        }
    }

    /// The supervised tasks that are not running now.
    pub fn tasks_down(&self) -> Vec<&'static str> {
        down_in(&self.tasks)
    }

    /// Everything that is down now: tasks, then dependencies.
    pub fn down(&self) -> Vec<&'static str> {
        let mut down = self.tasks_down();
        down.extend(down_in(&self.dependencies));
        down
    }

    /// `GET /health`: 200 `{"status":"ok"}`, or 503 with what is down.
    pub fn router(&self) -> Router {
        let health = self.clone();
        Router::new().route(
            "/health",
            get(move || {
                let health = health.clone();
                async move { health.response() }
            }),
        )
    }

    fn response(&self) -> Response {
        let down = self.down();
        if down.is_empty() {
            axum::Json(json!({ "status": "ok" })).into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "unavailable", "down": down })),
            )
                .into_response()
        }
    }
}

/// The tasks of one role.
#[derive(Debug)]
pub struct Supervisor {
    health: Health,
    tasks: JoinSet<()>,
    ended: mpsc::UnboundedSender<anyhow::Error>,
    ended_rx: mpsc::UnboundedReceiver<anyhow::Error>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        let (ended, ended_rx) = mpsc::unbounded_channel();
        Self {
            health: Health::default(),
            tasks: JoinSet::new(),
            ended,
            ended_rx,
        }
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Probes `probe` every 2 s for as long as the role runs: while it
    /// answers false (or takes over 3 s), the role is unhealthy, naming
    /// `name`. Down until the first probe answers.
    pub fn dependency<F, Fut>(&mut self, name: &'static str, mut probe: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let health = self.health.clone();
        health.set_dependency(name, false);
        self.tasks.spawn(async move {
            loop {
                let up = tokio::time::timeout(PROBE_TIMEOUT, probe())
                    .await
                    .unwrap_or(false);
                health.set_dependency(name, up);
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        });
    }

    /// Runs the task `start` makes for as long as the role runs, starting it
    /// again (with backoff) whenever it ends.
    pub fn restarting<F, Fut>(&mut self, name: &'static str, mut start: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        let health = self.health.clone();
        health.set(name, false);
        self.tasks.spawn(async move {
            let mut backoff = BACKOFF_INITIAL;
            loop {
                health.set(name, true);
                let started = Instant::now();
                let ended = attempt(name, start()).await;
                health.set(name, false);
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = BACKOFF_INITIAL;
                }
                counter!("frameworks_task_restarts_total", "task" => name).increment(1);
                match ended {
                    Ok(()) => warn!(task = name, retry_in = ?backoff, "task ended; starting it again"),
                    Err(error) => {
                        error!(task = name, error = %format!("{error:#}"), retry_in = ?backoff, "task died; starting it again");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        });
    }

    /// Runs `task`; when it ends, however it ends, the role ends with it.
    pub fn essential<Fut>(&mut self, name: &'static str, task: Fut)
    where
        Fut: Future + Send + 'static,
        Fut::Output: TaskOutput,
    {
        let health = self.health.clone();
        let ended = self.ended.clone();
        health.set(name, true);
        self.tasks.spawn(async move {
            let result = attempt(name, task).await;
            health.set(name, false);
            let error = match result {
                Ok(()) => anyhow!("{name} ended"),
                Err(error) => error.context(format!("{name} failed")),
            };
            let _ = ended.send(error);
        });
    }

    /// Runs the role's own future (its server, its main loop) until it ends
    /// or an essential task ends; then stops every task.
    pub async fn run(
        mut self,
        role: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let result = tokio::select! {
            result = role => result,
            Some(error) = self.ended_rx.recv() => Err(error),
        };
        self.tasks.shutdown().await;
        result
    }
}

/// One attempt of a task, in a task of its own so that a panic is an
/// error here rather than the end of the supervisor. The attempt is held
/// in a set of one, so stopping the supervisor's task stops it too.
async fn attempt<Fut>(name: &'static str, task: Fut) -> anyhow::Result<()>
where
    Fut: Future + Send + 'static,
    Fut::Output: TaskOutput,
{
    let mut running = JoinSet::new();
    running.spawn(async move {
        fail::fail_point!(name);
        task.await.into_result()
    });
    match running.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(joined)) if joined.is_panic() => Err(anyhow!("{name} panicked")),
        Some(Err(joined)) => Err(anyhow!("{name} was cancelled: {joined}")),
        None => Err(anyhow!("{name} was not running")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_dead_task_is_down_then_restarted_with_backoff() {
        let mut supervisor = Supervisor::new();
        let health = supervisor.health();
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&attempts);
        supervisor.restarting("flaky", move || {
            let attempt = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match attempt {
                    0 => panic!("first attempt dies"),
                    1 => Err(anyhow!("second attempt fails")),
                    _ => std::future::pending::<anyhow::Result<()>>().await,
                }
            }
        });
        let watch = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                health.tasks_down(),
                ["flaky"],
                "down during the first backoff"
            );
            // 500 ms after the panic, then 1 s after the error: up for good.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(attempts.load(Ordering::SeqCst), 3);
            assert!(health.tasks_down().is_empty());
            Ok(())
        };
        supervisor.run(watch).await.unwrap();
    }

    #[tokio::test]
    async fn an_essential_task_that_ends_ends_the_role() {
        let mut supervisor = Supervisor::new();
        supervisor.essential("server", async { Err::<(), _>(anyhow!("port lost")) });
        let error = supervisor
            .run(std::future::pending())
            .await
            .expect_err("the role ends");
        assert_eq!(format!("{error:#}"), "server failed: port lost");

        let mut supervisor = Supervisor::new();
        supervisor.essential("sync", async {});
        let error = supervisor.run(std::future::pending()).await.unwrap_err();
        assert_eq!(error.to_string(), "sync ended");
    }

    #[tokio::test(start_paused = true)]
    async fn health_names_what_is_down_and_probes_dependencies() {
        let mut supervisor = Supervisor::new();
        let health = supervisor.health();
        assert!(health.down().is_empty());
        health.set("edge-forwarder", false);
        let answering = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probed = Arc::clone(&answering);
        supervisor.dependency("database", move || {
            let up = probed.load(Ordering::SeqCst);
            async move { up }
        });
        let watch = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(health.down(), ["edge-forwarder", "database"]);
            assert_eq!(health.response().status(), StatusCode::SERVICE_UNAVAILABLE);
            health.set("edge-forwarder", true);
            answering.store(true, Ordering::SeqCst);
            // The next probe, 2 s on, finds it answering.
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(health.down().is_empty());
            assert_eq!(health.response().status(), StatusCode::OK);
            Ok(())
        };
        supervisor.run(watch).await.unwrap();
    }
}
