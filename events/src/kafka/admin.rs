//! Creating and reconciling the catalogue's topics.
//!
//! [`apply_catalogue`] is idempotent: missing topics are created with their
//! configuration, existing ones get any drifted catalogue-owned setting put
//! back, and a second run reports every topic unchanged. Two roles applying
//! at the same moment is fine: losing a creation race just means the next
//! pass finds the topic and checks it.
//!
//! The catalogue owns the whole topic-level configuration of its topics:
//! Kafka's AlterConfigs (the only form librdkafka's Rust binding offers)
//! replaces a topic's dynamic configuration as a whole, so a hand-made
//! override on a catalogue topic is reset by the next apply.
//!
//! Partition and replica counts are never changed here: raising a partition
//! count remaps keys and breaks per-aggregate ordering, so a difference is
//! reported as [`TopicChange::Drifted`] for an operator to decide.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{info, warn};

use super::KafkaSettings;
use crate::catalogue::{Catalogue, TopicDefinition};

/// What applying the catalogue did to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Created,
    Unchanged,
    /// Catalogue-owned settings were put back: `(key, found, now)`.
    Reconfigured(Vec<(String, Option<String>, String)>),
    /// Partition or replica counts differ from the catalogue; left alone.
    Drifted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// `(topic name, change)` in catalogue order.
    pub topics: Vec<(String, TopicChange)>,
}

impl ApplyReport {
    pub fn is_unchanged(&self) -> bool {
        self.topics
            .iter()
            .all(|(_, c)| *c == TopicChange::Unchanged)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach Kafka at {brokers} for {operation}")]
    Kafka {
        brokers: String,
        operation: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("the metadata request task failed")]
    MetadataTask(#[from] tokio::task::JoinError),
    #[error("{operation} of topic {topic} failed: {code}")]
    Topic {
        topic: String,
        operation: &'static str,
        code: RDKafkaErrorCode,
    },
}

/// Live state of one topic as the cluster reports it.
#[derive(Debug, Clone, Copy)]
struct Layout {
    partitions: i32,
    replicas: i32,
}

/// Creates the catalogue's missing topics and reconciles the existing ones.
pub async fn apply_catalogue(
    settings: &KafkaSettings,
    catalogue: &Catalogue,
) -> Result<ApplyReport, AdminError> {
    let admin: Arc<AdminClient<DefaultClientContext>> = Arc::new(
        settings
            .client_config("frameworks-admin")
            .create()
            .map_err(|source| kafka_error(settings, "creating an admin client", source))?,
    );
    // A lost creation race ends a pass early; the next pass finds the topic and
    // checks it. Metadata about a just-created topic can lag the creation, so
    // passes are spaced out, within the Kafka timeout.
    let deadline = tokio::time::Instant::now() + settings.timeout();
    let mut pause = Duration::from_millis(50);
    loop {
        if let Some(report) = reconcile(&admin, settings, catalogue).await? {
            return Ok(report);
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Err(AdminError::Topic {
                topic: catalogue.settings().prefix.clone(),
                operation: "creation (the cluster says the topics exist but does not list them)",
                code: RDKafkaErrorCode::TopicAlreadyExists,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// One reconciliation pass; `None` if another client created a topic under us.
async fn reconcile(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    settings: &KafkaSettings,
    catalogue: &Catalogue,
) -> Result<Option<ApplyReport>, AdminError> {
    let layouts = describe_layouts(admin, settings).await?;
    let definitions = catalogue.definitions();
    let options = AdminOptions::new()
        .request_timeout(Some(settings.timeout()))
        .operation_timeout(Some(settings.timeout()));
    let mut changes: HashMap<String, TopicChange> = HashMap::new();

    let missing: Vec<&TopicDefinition> = definitions
        .iter()
        .filter(|d| !layouts.contains_key(&d.name))
        .collect();
    if !missing.is_empty() {
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|d| {
                d.config.iter().fold(
                    NewTopic::new(
                        &d.name,
                        d.partitions,
                        TopicReplication::Fixed(d.replication_factor),
                    ),
                    |topic, (key, value)| topic.set(key, value),
                )
            })
            .collect();
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|source| kafka_error(settings, "creating topics", source))?;
        for result in results {
            match result {
                Ok(name) => {
                    info!(topic = %name, "created topic");
                    changes.insert(name, TopicChange::Created);
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => return Ok(None),
                Err((topic, code)) => {
                    return Err(AdminError::Topic {
                        topic,
                        operation: "creation",
                        code,
                    });
                }
            }
        }
    }

    let existing: Vec<&TopicDefinition> = definitions
        .iter()
        .filter(|d| layouts.contains_key(&d.name))
        .collect();
    if !existing.is_empty() {
        let resources: Vec<ResourceSpecifier<'_>> = existing
            .iter()
            .map(|d| ResourceSpecifier::Topic(&d.name))
            .collect();
        let described = admin
            .describe_configs(&resources, &options)
            .await
            .map_err(|source| kafka_error(settings, "describing topic configuration", source))?;
        // librdkafka does not promise to answer in request order: match by name.
        let mut current: HashMap<String, rdkafka::admin::ConfigResource> = HashMap::new();
        for result in described {
            let resource = result.map_err(|code| AdminError::Topic {
                topic: catalogue.settings().prefix.clone() + ".*",
                operation: "describing configuration",
                code,
            })?;
            if let OwnedResourceSpecifier::Topic(name) = &resource.specifier {
                current.insert(name.clone(), resource);
            }
        }
        let mut alterations = Vec::new();
        for definition in &existing {
            let resource = current
                .get(&definition.name)
                .ok_or_else(|| AdminError::Topic {
                    topic: definition.name.clone(),
                    operation: "describing configuration (no answer for the topic)",
                    code: RDKafkaErrorCode::UnknownTopicOrPartition,
                })?;
            let drifted: Vec<(String, Option<String>, String)> = definition
                .config
                .iter()
                .filter_map(|(key, wanted)| {
                    let found = resource.get(key).and_then(|e| e.value.clone());
                    (found.as_deref() != Some(wanted.as_str()))
                        .then(|| ((*key).to_owned(), found, wanted.clone()))
                })
                .collect();
            let layout = layouts[&definition.name];
            let change = if layout.partitions != definition.partitions
                || layout.replicas != definition.replication_factor
            {
                let detail = format!(
                    "has {} partitions x {} replicas, the catalogue says {} x {}",
                    layout.partitions,
                    layout.replicas,
                    definition.partitions,
                    definition.replication_factor
                );
                warn!(topic = %definition.name, "{detail}; not changed automatically");
                TopicChange::Drifted(detail)
            } else if drifted.is_empty() {
                TopicChange::Unchanged
            } else {
                TopicChange::Reconfigured(drifted.clone())
            };
            if !drifted.is_empty() {
                alterations.push(definition.config.iter().fold(
                    AlterConfig::new(ResourceSpecifier::Topic(&definition.name)),
                    |alter, (key, value)| alter.set(key, value),
                ));
                info!(topic = %definition.name, ?drifted, "restoring topic configuration");
            }
            changes.insert(definition.name.clone(), change);
        }
        if !alterations.is_empty() {
            for result in admin
                .alter_configs(&alterations, &options)
                .await
                .map_err(|source| kafka_error(settings, "altering topic configuration", source))?
            {
                if let Err((resource, code)) = result {
                    return Err(AdminError::Topic {
                        topic: format!("{resource:?}"),
                        operation: "altering configuration",
                        code,
                    });
                }
            }
        }
    }

    let topics = definitions
        .iter()
        .map(|d| {
            let change = changes.remove(&d.name).unwrap_or(TopicChange::Unchanged);
            (d.name.clone(), change)
        })
        .collect();
    Ok(Some(ApplyReport { topics }))
}

/// Partition and replica counts of every topic on the cluster.
async fn describe_layouts(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    settings: &KafkaSettings,
) -> Result<HashMap<String, Layout>, AdminError> {
    let admin = Arc::clone(admin);
    let timeout = settings.timeout();
    // librdkafka's metadata call blocks; keep it off the async workers.
    let metadata = tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
        .await?
        .map_err(|source| kafka_error(settings, "reading cluster metadata", source))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| {
            let partitions = t.partitions();
            let layout = Layout {
                partitions: i32::try_from(partitions.len()).unwrap_or(i32::MAX),
                replicas: partitions
                    .first()
                    .map_or(0, |p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX)),
            };
            (t.name().to_owned(), layout)
        })
        .collect())
}

fn kafka_error(
    settings: &KafkaSettings,
    operation: &'static str,
    source: KafkaError,
) -> AdminError {
    AdminError::Kafka {
        brokers: settings.brokers.clone(),
        operation,
        source,
    }
}
