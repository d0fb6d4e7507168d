//! What the batching projectors share: gathering a batch from Kafka,
//! rewinding it after a failure, and the retry loop around both.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset};
use tracing::{info, warn};

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

/// Runs `step` until `shutdown` resolves. A failed step (whose batch the step
/// rewound) is retried with exponential backoff, from 250 ms up to 30 s.
pub async fn run_until<T, E: Display, Fut: Future<Output = Result<T, E>>>(
    projector: &str,
    shutdown: impl Future<Output = ()>,
    mut step: impl FnMut() -> Fut,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        tokio::select! {
            () = &mut shutdown => {
                info!(projector, "projector stopping");
                return;
            }
            result = step() => match result {
                Ok(_) => backoff = Duration::ZERO,
                Err(error) => {
                    backoff = (backoff * 2).clamp(Duration::from_millis(250), Duration::from_secs(30));
                    warn!(projector, %error, retry_in = ?backoff, "batch failed and was rewound");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}
