//! The topic catalogue: every Kafka topic the platform uses, in one table.
//!
//! Each topic is keyed by aggregate id, so one aggregate's events (one
//! stream's, one node's) land on one partition and stay ordered. Domain
//! topics keep their events forever: they are the log every projection is
//! rebuilt from. Telemetry and dead letters are kept for a finite,
//! configurable time. Every topic uses `cleanup.policy=delete`: compaction
//! would keep only the newest event per aggregate and destroy the history.
//!
//! [`crate::kafka::admin::apply_catalogue`] creates and reconciles the topics.

use std::collections::BTreeMap;
use std::fmt;

/// A topic of the catalogue, independent of the deployment's name prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Tenants, users and API tokens.
    Tenants,
    /// Streams and their keys.
    Streams,
    /// Clusters and nodes: enrolment and lifecycle.
    Infrastructure,
    /// Edge facts about streams: ingest, buffer, health, tracks, viewer sessions.
    StreamTelemetry,
    /// Edge facts about nodes: heartbeats and load.
    NodeTelemetry,
    /// Records a consumer could not read, with the reason in their headers.
    DeadLetter,
}

/// How long a topic keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    Forever,
    Telemetry,
    DeadLetter,
}

/// The fixed part of a topic's definition.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    pub topic: Topic,
    /// Appended to the prefix: `<prefix>.<suffix>`.
    pub suffix: &'static str,
    pub partitions: i32,
    pub retention: Retention,
    /// What the record key is.
    pub key: &'static str,
}

/// The catalogue table. Partition counts are fixed at creation: raising one
/// remaps keys to partitions and breaks per-aggregate ordering across the
/// change, so [`crate::kafka::admin`] never does it unasked.
pub const TOPICS: [TopicSpec; 6] = [
    TopicSpec {
        topic: Topic::Tenants,
        suffix: "tenants",
        partitions: 6,
        retention: Retention::Forever,
        key: "aggregate id (tenant, user or API token)",
    },
    TopicSpec {
        topic: Topic::Streams,
        suffix: "streams",
        partitions: 12,
        retention: Retention::Forever,
        key: "stream id",
    },
    TopicSpec {
        topic: Topic::Infrastructure,
        suffix: "infrastructure",
        partitions: 6,
        retention: Retention::Forever,
        key: "aggregate id (cluster or node)",
    },
    TopicSpec {
        topic: Topic::StreamTelemetry,
        suffix: "stream-telemetry",
        partitions: 12,
        retention: Retention::Telemetry,
        key: "stream id",
    },
    TopicSpec {
        topic: Topic::NodeTelemetry,
        suffix: "node-telemetry",
        partitions: 6,
        retention: Retention::Telemetry,
        key: "node id",
    },
    TopicSpec {
        topic: Topic::DeadLetter,
        suffix: "dead-letter",
        partitions: 3,
        retention: Retention::DeadLetter,
        key: "the original record's key",
    },
];

impl Topic {
    pub const ALL: [Topic; 6] = [
        Self::Tenants,
        Self::Streams,
        Self::Infrastructure,
        Self::StreamTelemetry,
        Self::NodeTelemetry,
        Self::DeadLetter,
    ];

    pub fn spec(self) -> &'static TopicSpec {
        // TOPICS is declared in the order of ALL; the test below keeps it so.
        &TOPICS[self as usize]
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().suffix)
    }
}

/// The deployment-specific part of the catalogue.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogueSettings {
    /// Prefix of every topic name (`<prefix>.streams`, ...), so several
    /// deployments or test runs can share one Kafka cluster.
    #[arg(
        long = "topic-prefix",
        env = "FRAMEWORKS_TOPIC_PREFIX",
        default_value = "frameworks",
        value_parser = parse_prefix
    )]
    pub prefix: String,

    /// Replication factor of every topic (1 for a single-broker cluster).
    #[arg(
        long = "kafka-replication-factor",
        env = "FRAMEWORKS_KAFKA_REPLICATION_FACTOR",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..=32)
    )]
    pub replication_factor: u16,

    /// How long telemetry topics keep records, in hours.
    #[arg(
        long = "telemetry-retention-hours",
        env = "FRAMEWORKS_TELEMETRY_RETENTION_HOURS",
        default_value_t = 168,
        value_parser = clap::value_parser!(u64).range(1..=87_600)
    )]
    pub telemetry_retention_hours: u64,

    /// How long the dead-letter topic keeps records, in hours.
    #[arg(
        long = "dead-letter-retention-hours",
        env = "FRAMEWORKS_DEAD_LETTER_RETENTION_HOURS",
        default_value_t = 720,
        value_parser = clap::value_parser!(u64).range(1..=87_600)
    )]
    pub dead_letter_retention_hours: u64,
}

impl Default for CatalogueSettings {
    fn default() -> Self {
        Self {
            prefix: "frameworks".into(),
            replication_factor: 1,
            telemetry_retention_hours: 168,
            dead_letter_retention_hours: 720,
        }
    }
}

fn parse_prefix(value: &str) -> Result<String, String> {
    // Kafka topic names: [a-zA-Z0-9._-], at most 249 characters; leave room for suffixes.
    if value.is_empty() || value.len() > 200 {
        return Err("must be 1 to 200 characters".into());
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a Kafka topic name (use letters, digits, '.', '_', '-')"
        ));
    }
    Ok(value.to_owned())
}

/// A topic as it should exist on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefinition {
    pub topic: Topic,
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configuration the catalogue owns; reconciled on every apply.
    pub config: BTreeMap<&'static str, String>,
}

/// The catalogue resolved for one deployment.
#[derive(Debug, Clone)]
pub struct Catalogue {
    settings: CatalogueSettings,
    names: [String; 6],
}

impl Catalogue {
    pub fn new(settings: CatalogueSettings) -> Self {
        let names = Topic::ALL.map(|t| format!("{}.{}", settings.prefix, t.spec().suffix));
        Self { settings, names }
    }

    pub fn settings(&self) -> &CatalogueSettings {
        &self.settings
    }

    /// The full topic name for this deployment.
    pub fn name(&self, topic: Topic) -> &str {
        &self.names[topic as usize]
    }

    /// The catalogue topic with this full name, if any.
    pub fn topic_named(&self, name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|&t| self.name(t) == name)
    }

    pub fn definition(&self, topic: Topic) -> TopicDefinition {
        let spec = topic.spec();
        let hours_ms = |hours: u64| (hours * 3_600_000).to_string();
        let retention_ms = match spec.retention {
            Retention::Forever => "-1".to_owned(),
            Retention::Telemetry => hours_ms(self.settings.telemetry_retention_hours),
            Retention::DeadLetter => hours_ms(self.settings.dead_letter_retention_hours),
        };
        let replication_factor = i32::from(self.settings.replication_factor);
        // With three or more replicas an acks=all write must reach two of them.
        let min_insync = if replication_factor >= 3 { 2 } else { 1 };
        let config = BTreeMap::from([
            ("cleanup.policy", "delete".to_owned()),
            ("retention.ms", retention_ms),
            ("retention.bytes", "-1".to_owned()),
            ("min.insync.replicas", min_insync.to_string()),
        ]);
        TopicDefinition {
            topic,
            name: self.name(topic).to_owned(),
            partitions: spec.partitions,
            replication_factor,
            config,
        }
    }

    pub fn definitions(&self) -> Vec<TopicDefinition> {
        Topic::ALL.into_iter().map(|t| self.definition(t)).collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::registry::EventType;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        catalogue: CatalogueSettings,
    }

    #[test]
    fn table_is_in_the_order_of_the_enum() {
        for (index, topic) in Topic::ALL.into_iter().enumerate() {
            assert_eq!(TOPICS[index].topic, topic);
        }
    }

    #[test]
    fn domain_topics_keep_events_forever_and_telemetry_expires() {
        let catalogue = Catalogue::new(CatalogueSettings {
            telemetry_retention_hours: 24,
            ..Default::default()
        });
        for &event_type in EventType::ALL {
            let definition = catalogue.definition(event_type.topic());
            let expected = match event_type.topic() {
                Topic::StreamTelemetry | Topic::NodeTelemetry => "86400000",
                _ => "-1",
            };
            assert_eq!(definition.config["retention.ms"], expected, "{event_type}");
            assert_eq!(definition.config["cleanup.policy"], "delete");
        }
        assert_eq!(
            catalogue.definition(Topic::DeadLetter).config["retention.ms"],
            "2592000000"
        );
    }

    #[test]
    fn names_carry_the_prefix_and_resolve_back() {
        let catalogue = Catalogue::new(CatalogueSettings {
            prefix: "staging".into(),
            ..Default::default()
        });
        assert_eq!(catalogue.name(Topic::Streams), "staging.streams");
        for topic in Topic::ALL {
            assert_eq!(catalogue.topic_named(catalogue.name(topic)), Some(topic));
        }
        assert_eq!(catalogue.topic_named("frameworks.streams"), None);
    }

    #[test]
    fn settings_come_from_flags_and_bad_values_name_the_setting() {
        let cli = Cli::try_parse_from([
            "x",
            "--topic-prefix",
            "dev-1",
            "--telemetry-retention-hours",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.catalogue.prefix, "dev-1");
        assert_eq!(cli.catalogue.telemetry_retention_hours, 2);

        let err = Cli::try_parse_from(["x", "--topic-prefix", "bad/name"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--topic-prefix") && err.contains("'/'"),
            "{err}"
        );
        let err = Cli::try_parse_from(["x", "--kafka-replication-factor", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--kafka-replication-factor"), "{err}");
    }

    #[test]
    fn min_insync_follows_replication() {
        let three = Catalogue::new(CatalogueSettings {
            replication_factor: 3,
            ..Default::default()
        });
        assert_eq!(
            three.definition(Topic::Streams).config["min.insync.replicas"],
            "2"
        );
        let one = Catalogue::new(CatalogueSettings::default());
        assert_eq!(
            one.definition(Topic::Streams).config["min.insync.replicas"],
            "1"
        );
    }
}
