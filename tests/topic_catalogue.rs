//! Applying the topic catalogue is idempotent and repairs drifted settings.

use crate::support;

use std::time::Duration;

use frameworks_events::Topic;
use frameworks_events::kafka::{TopicChange, apply_catalogue};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use support::{drop_topics, isolated_kafka, within};

#[tokio::test]
async fn applying_twice_changes_nothing_the_second_time() {
    let kafka = isolated_kafka();
    let catalogue = kafka.catalogue();

    let first = apply_catalogue(&kafka, &catalogue).await.unwrap();
    assert_eq!(first.topics.len(), Topic::ALL.len());
    assert!(
        first
            .topics
            .iter()
            .all(|(_, change)| *change == TopicChange::Created),
        "{first:?}"
    );

    let second = apply_catalogue(&kafka, &catalogue).await.unwrap();
    assert!(
        second.is_unchanged(),
        "second apply changed something: {second:?}"
    );

    // The cluster holds what the catalogue says: partitions and settings.
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("test").create().unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    for definition in catalogue.definitions() {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == definition.name)
            .unwrap();
        assert_eq!(
            topic.partitions().len() as i32,
            definition.partitions,
            "{}",
            definition.name
        );
    }
    let streams = catalogue.name(Topic::Streams);
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(streams)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    assert_eq!(
        resource.get("retention.ms").unwrap().value.as_deref(),
        Some("-1")
    );
    assert_eq!(
        resource.get("cleanup.policy").unwrap().value.as_deref(),
        Some("delete")
    );
    drop_topics(&kafka).await;
}

#[tokio::test]
async fn drifted_settings_are_restored_and_reported() {
    let kafka = isolated_kafka();
    let catalogue = kafka.catalogue();
    apply_catalogue(&kafka, &catalogue).await.unwrap();

    // Someone shortens the retention of a domain topic by hand.
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("test").create().unwrap();
    let tenants = catalogue.name(Topic::Tenants);
    let alter = AlterConfig::new(ResourceSpecifier::Topic(tenants))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "60000");
    for result in admin
        .alter_configs(&[alter], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }

    // KRaft brokers apply a committed config change asynchronously; wait until
    // the broker shows the drift, as it would long before an operator's next apply.
    within(
        Duration::from_secs(10),
        "the hand-made change to show",
        async {
            loop {
                let described = admin
                    .describe_configs(&[ResourceSpecifier::Topic(tenants)], &AdminOptions::new())
                    .await
                    .unwrap();
                let resource = described.into_iter().next().unwrap().unwrap();
                if resource
                    .get("retention.ms")
                    .and_then(|e| e.value.as_deref())
                    == Some("60000")
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;

    let repair = apply_catalogue(&kafka, &catalogue).await.unwrap();
    for (name, change) in &repair.topics {
        if name == tenants {
            let TopicChange::Reconfigured(changes) = change else {
                panic!("{name}: expected a reconfiguration, got {change:?}");
            };
            assert!(
                changes.iter().any(|(key, found, now)| key == "retention.ms"
                    && found.as_deref() == Some("60000")
                    && now == "-1"),
                "{changes:?}"
            );
        } else {
            assert_eq!(*change, TopicChange::Unchanged, "{name}");
        }
    }
    let after = apply_catalogue(&kafka, &catalogue).await.unwrap();
    assert!(after.is_unchanged(), "{after:?}");
    drop_topics(&kafka).await;
}
