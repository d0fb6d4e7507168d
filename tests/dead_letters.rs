//! A record a consumer cannot read goes to the dead-letter topic with the
//! reason, and the consumer keeps going.

use crate::support;

use std::time::Duration;

use frameworks_events::kafka::{EventConsumer, EventPublisher, read_dead_letters};
use frameworks_events::proto::v1::stream::StreamCreated;
use frameworks_events::{Event, EventType, Topic};
use rdkafka::message::OwnedHeaders;
use support::{drop_topics, kafka_with_topics, within};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_records_are_dead_lettered_and_consumption_goes_on() {
    let kafka = kafka_with_topics().await;
    let catalogue = kafka.catalogue();
    let streams = catalogue.name(Topic::Streams);
    let publisher = EventPublisher::new(&kafka, "test-publisher").unwrap();
    // All on one key: one partition, so the order below is the order read.
    let stream_id = Uuid::now_v7().to_string();
    let key = Some(stream_id.as_bytes());
    let valid = |name: &str| {
        Event::new(
            stream_id.clone(),
            StreamCreated {
                name: name.into(),
                ..Default::default()
            },
        )
        .with_tenant(Uuid::nil())
        .with_sequence(1)
    };
    let raw = |bytes: Vec<u8>| {
        let publisher = &publisher;
        async move {
            publisher
                .send(streams, key, &bytes, OwnedHeaders::new())
                .await
                .unwrap()
        }
    };

    raw(b"\xff\xfe this is not protobuf".to_vec()).await;
    let mut unknown = valid("x").to_envelope();
    unknown.event_type = "stream.teleported".into();
    raw(prost::Message::encode_to_vec(&unknown)).await;
    let mut newer = valid("y").to_envelope();
    newer.schema_version = EventType::StreamCreated.schema_version() + 1;
    raw(prost::Message::encode_to_vec(&newer)).await;
    let first = valid("first");
    publisher.publish(&first).await.unwrap();
    raw(vec![0x0a, 0xff]).await;
    let second = valid("second");
    publisher.publish(&second).await.unwrap();

    let group = format!("{}-projector", kafka.catalogue.prefix);
    let consumer = EventConsumer::subscribe(&kafka, &group, &[Topic::Streams]).unwrap();
    within(
        Duration::from_secs(60),
        "reading past the bad records",
        async {
            let got = consumer.next().await.unwrap();
            assert_eq!(got.event, first);
            consumer.ack(&got).unwrap();
            let got = consumer.next().await.unwrap();
            assert_eq!(got.event, second);
            consumer.ack(&got).unwrap();
        },
    )
    .await;
    consumer.commit().unwrap();

    let letters = within(
        Duration::from_secs(30),
        "reading dead letters",
        read_dead_letters(&kafka, 100),
    )
    .await
    .unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "malformed-envelope",
            "unknown-event-type",
            "unsupported-schema-version",
            "malformed-envelope"
        ]
    );
    for letter in &letters {
        assert_eq!(letter.source_topic, streams);
        assert_eq!(letter.consumer_group, group);
        assert_eq!(letter.key.as_deref(), key, "the original key is kept");
    }
    assert!(
        letters[1].error.contains("stream.teleported"),
        "{}",
        letters[1].error
    );
    assert!(
        letters[2].error.contains("schema version 2"),
        "{}",
        letters[2].error
    );
    // The original bytes are kept untouched, so the record can be replayed later.
    assert_eq!(
        letters[0].payload.as_deref(),
        Some(&b"\xff\xfe this is not protobuf"[..])
    );

    // The group's position moved past the dead letters: a restarted member
    // resumes after `second` and dead-letters nothing twice.
    drop(consumer);
    let third = valid("third");
    publisher.publish(&third).await.unwrap();
    let restarted = EventConsumer::subscribe(&kafka, &group, &[Topic::Streams]).unwrap();
    let got = within(Duration::from_secs(60), "resuming", restarted.next())
        .await
        .unwrap();
    assert_eq!(got.event, third);
    assert_eq!(read_dead_letters(&kafka, 100).await.unwrap().len(), 4);
    drop_topics(&kafka).await;
}
