//! Every event type travels through a real Kafka topic and comes back equal,
//! and one aggregate's events arrive in the order they were published.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use frameworks_events::kafka::{EventConsumer, EventPublisher};
use frameworks_events::proto::v1::stream::{StreamCreated, StreamDeleted, StreamUpdated};
use frameworks_events::{Event, EventPayload, EventType, Topic};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use support::{drop_topics, kafka_with_topics, within};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_round_trips_through_kafka() {
    let kafka = kafka_with_topics().await;
    let publisher = EventPublisher::new(&kafka, "test-publisher").unwrap();

    // One event of every registered type, each payload filled by proptest.
    let mut runner = TestRunner::deterministic();
    let tenant = Uuid::now_v7();
    let mut sent: HashMap<Uuid, Event> = HashMap::new();
    for &event_type in EventType::ALL {
        let payload = EventPayload::arbitrary(event_type)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let event = Event::new(Uuid::now_v7().to_string(), payload)
            .with_tenant(tenant)
            .with_sequence(1);
        let delivered = publisher.publish(&event).await.unwrap();
        assert_eq!(delivered.topic, kafka.catalogue().name(event_type.topic()));
        sent.insert(event.id, event);
    }
    assert_eq!(sent.len(), EventType::ALL.len());

    let topics = [
        Topic::Tenants,
        Topic::Streams,
        Topic::Infrastructure,
        Topic::StreamTelemetry,
        Topic::NodeTelemetry,
    ];
    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{}-reader", kafka.catalogue.prefix),
        &topics,
    )
    .unwrap();
    let mut received: HashMap<Uuid, Event> = HashMap::new();
    within(
        Duration::from_secs(60),
        "consuming every event type",
        async {
            while received.len() < sent.len() {
                let delivery = consumer.next().await.unwrap();
                assert_eq!(
                    delivery.topic,
                    kafka.catalogue().name(delivery.event.event_type().topic())
                );
                received.insert(delivery.event.id, delivery.event);
            }
        },
    )
    .await;
    for (id, event) in &sent {
        assert_eq!(
            received.get(id),
            Some(event),
            "{} changed on its way through Kafka",
            event.event_type()
        );
    }
    drop_topics(&kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_aggregates_events_stay_in_order() {
    let kafka = kafka_with_topics().await;
    let publisher = EventPublisher::new(&kafka, "test-publisher").unwrap();
    let tenant = Uuid::now_v7();

    // Interleave ten streams' histories; each must come back in sequence order.
    let streams: Vec<String> = (0..10).map(|_| Uuid::now_v7().to_string()).collect();
    let mut expected = 0;
    for sequence in 1..=20u64 {
        for stream in &streams {
            let payload: EventPayload = match sequence {
                1 => StreamCreated {
                    name: format!("s{sequence}"),
                    ..Default::default()
                }
                .into(),
                20 => StreamDeleted::default().into(),
                _ => StreamUpdated {
                    name: Some(format!("rename {sequence}")),
                    ..Default::default()
                }
                .into(),
            };
            let event = Event::new(stream.clone(), payload)
                .with_tenant(tenant)
                .with_sequence(sequence);
            publisher.publish(&event).await.unwrap();
            expected += 1;
        }
    }

    let consumer = EventConsumer::subscribe(
        &kafka,
        &format!("{}-order", kafka.catalogue.prefix),
        &[Topic::Streams],
    )
    .unwrap();
    let mut last_sequence: HashMap<String, u64> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    within(
        Duration::from_secs(60),
        "consuming the stream histories",
        async {
            for _ in 0..expected {
                let delivery = consumer.next().await.unwrap();
                let event = delivery.event;
                let previous = last_sequence
                    .insert(event.aggregate_id.clone(), event.sequence)
                    .unwrap_or(0);
                assert_eq!(
                    event.sequence,
                    previous + 1,
                    "stream {} out of order",
                    event.aggregate_id
                );
                let partition = *partition_of
                    .entry(event.aggregate_id.clone())
                    .or_insert(delivery.partition);
                assert_eq!(
                    partition, delivery.partition,
                    "one stream's events must share a partition"
                );
            }
        },
    )
    .await;
    assert!(last_sequence.values().all(|&s| s == 20));
    assert_eq!(last_sequence.len(), streams.len());
    drop_topics(&kafka).await;
}
