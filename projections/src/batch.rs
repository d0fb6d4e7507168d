//! What the batching projectors share: gathering a batch from Kafka,
//! rewinding it after a failure, and the retry loop around both.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use frameworks_events::kafka::LagProbe;
use metrics::gauge;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};
use tracing::{debug, info, warn};

/// Waits for one record, then takes more until `max` or until none arrives for `wait`.
pub async fn gather<C: ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    max: usize,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    let mut batch = vec![consumer.recv().await?.detach()];
    while batch.len() < max {
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(error)) => return Err(error),
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// A batch's records by partition, each partition's in offset order.
pub fn by_partition(batch: &[OwnedMessage]) -> BTreeMap<(&str, i32), Vec<&OwnedMessage>> {
    let mut partitions: BTreeMap<(&str, i32), Vec<&OwnedMessage>> = BTreeMap::new();
    for message in batch {
        partitions
            .entry((message.topic(), message.partition()))
            .or_default()
            .push(message);
    }
    partitions
}

/// First and last offset of each partition in a batch.
pub fn partition_ranges(batch: &[OwnedMessage]) -> BTreeMap<(&str, i32), (i64, i64)> {
    let mut ranges: BTreeMap<(&str, i32), (i64, i64)> = BTreeMap::new();
    for message in batch {
        let offset = message.offset();
        ranges
            .entry((message.topic(), message.partition()))
            .and_modify(|(first, last)| {
                *first = (*first).min(offset);
                *last = (*last).max(offset);
            })
            .or_insert((offset, offset));
    }
    ranges
}

/// Seeks every partition of a failed batch back to its first record.
pub fn rewind<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>, batch: &[OwnedMessage]) {
    for ((topic, partition), (first, _)) in partition_ranges(batch) {
        if let Err(error) = consumer.seek(
            topic,
            partition,
            Offset::Offset(first),
            Duration::from_secs(5),
        ) {
            warn!(topic, partition, %error, "rewinding failed; the group position will be re-read from Kafka");
        }
    }
}

/// The longest wait between two attempts of a failed step.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a step that has not finished is looked at.
const STALL_CHECK: Duration = Duration::from_secs(5);
/// A step silent this long while records wait means the consumer is stuck.
const STALL_AFTER: Duration = Duration::from_secs(20);

/// Why a projector's loop gave up on its Kafka consumer: its supervisor
/// makes a new one, which resumes from the group's committed positions.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerLost {
    #[error("the Kafka consumer failed for good: {reason} ({code:?})")]
    Fatal {
        code: RDKafkaErrorCode,
        reason: String,
    },
    #[error("the Kafka consumer is stuck: no progress for {silent:?} while {waiting} records wait")]
    Stalled { silent: Duration, waiting: i64 },
}

/// Runs `step` until `shutdown` resolves. A failed step (which rewound
/// what it took) is retried after a backoff from 250 ms doubling up to 5 s,
/// with jitter, for as long as it fails: the database or broker it waits
/// on comes back. The loop gives up on the consumer, so that its caller
/// makes a new one, only when the consumer cannot go on:
///
/// - librdkafka marked it failed for good (a fatal error, such as a static
///   member fenced after a broker restart: every later read fails);
/// - it made no progress for 20 s while `probe` counts records waiting,
///   either silent (a read that never returns, or a write that hangs, which
///   a new consumer and connection do no harm to) or failing on Kafka. A
///   step that fails on the projector's own store is not the consumer's
///   fault and is retried for as long as it takes.
pub async fn run_until<C, T, E, Fut>(
    projector: &'static str,
    consumer: &StreamConsumer<C>,
    probe: &LagProbe,
    shutdown: impl Future<Output = ()>,
    mut step: impl FnMut() -> Fut,
) -> Result<(), ConsumerLost>
where
    C: ConsumerContext + 'static,
    E: std::error::Error + 'static,
    Fut: Future<Output = Result<T, E>>,
{
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    let mut progress = Progress::new(projector);
    loop {
        let attempt = step();
        tokio::pin!(attempt);
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + STALL_CHECK, STALL_CHECK);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => {
                    info!(projector, "projector stopping");
                    return Ok(());
                }
                result = &mut attempt => break result,
                // Silent for a while: caught up (progress too), or stuck?
                // Asked inside, not as a guard: a guard false when the
                // select starts would leave it waiting on the step alone.
                _ = check.tick() => {
                    if progress.last.elapsed() < STALL_CHECK / 2 {
                        continue;
                    }
                    match probe.waiting(consumer).await {
                        Ok(0) => progress.made(),
                        Ok(waiting) if progress.last.elapsed() >= STALL_AFTER => {
                            return Err(ConsumerLost::Stalled { silent: progress.last.elapsed(), waiting });
                        }
                        Ok(_) => {}
                        Err(error) => debug!(projector, %error, "could not count the records waiting"),
                    }
                }
            }
        };
        let error = match result {
            Ok(_) => {
                backoff = Duration::ZERO;
                progress.made();
                continue;
            }
            Err(error) => error,
        };
        progress.failed();
        if let Some((code, reason)) = consumer.client().fatal_error() {
            return Err(ConsumerLost::Fatal { code, reason });
        }
        if is_kafka_error(&error)
            && progress.last.elapsed() >= STALL_AFTER
            && let Ok(waiting @ 1..) = probe.waiting(consumer).await
        {
            return Err(ConsumerLost::Stalled {
                silent: progress.last.elapsed(),
                waiting,
            });
        }
        backoff = (backoff * 2).clamp(Duration::from_millis(250), RETRY_MAX);
        let wait = jittered(backoff);
        warn!(projector, error = %ErrorChain(&error), retry_in = ?wait, "batch failed and was rewound");
        tokio::time::sleep(wait).await;
    }
}

/// What a projector last did: when it last made progress (applied a
/// batch, or found nothing waiting) and since when its batches fail.
/// Kept per projector name for the role's health, and exported as
/// `frameworks_projector_progress_timestamp_seconds` and
/// `frameworks_projector_failing`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    projector: &'static str,
    pub last: Instant,
    pub failing_since: Option<Instant>,
}

static PROGRESS: Mutex<BTreeMap<&'static str, Progress>> = Mutex::new(BTreeMap::new());

impl Progress {
    fn new(projector: &'static str) -> Self {
        let mut progress = Self {
            projector,
            last: Instant::now(),
            failing_since: None,
        };
        progress.made();
        progress
    }

    fn made(&mut self) {
        self.last = Instant::now();
        self.failing_since = None;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        gauge!("frameworks_projector_progress_timestamp_seconds", "projection" => self.projector)
            .set(unix);
        self.publish();
    }

    fn failed(&mut self) {
        self.failing_since.get_or_insert_with(Instant::now);
        self.publish();
    }

    fn publish(&self) {
        gauge!("frameworks_projector_failing", "projection" => self.projector).set(
            if self.failing_since.is_some() {
                1.0
            } else {
                0.0
            },
        );
        PROGRESS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.projector, *self);
    }

    /// The last state of the projector named `projector` in this process.
    pub fn of(projector: &str) -> Option<Self> {
        PROGRESS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(projector)
            .copied()
    }

    /// Whether the projector is doing its work: its batches not failing for
    /// more than a moment, and progress within the time a stall is
    /// noticed in.
    pub fn healthy(&self) -> bool {
        let failing = self
            .failing_since
            .is_some_and(|since| since.elapsed() >= Duration::from_secs(3));
        !failing && self.last.elapsed() < STALL_AFTER + 2 * STALL_CHECK
    }
}

/// Whether `error` or an error it wraps came from Kafka.
fn is_kafka_error(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |error| error.source()).any(|error| error.is::<KafkaError>())
}

/// Between half and all of `wait`, so that projectors retrying against the
/// same server spread out.
fn jittered(wait: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh RandomState is freshly keyed: a random number without a crate for it.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    wait.mul_f64(fraction)
}

/// An error with its causes, for a log line.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(error) = next {
            write!(f, ": {error}")?;
            next = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_between_half_and_all() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(4));
            assert!(
                wait >= Duration::from_secs(2) && wait <= Duration::from_secs(4),
                "{wait:?}"
            );
        }
    }
}
