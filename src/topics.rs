//! `frameworks topics`: the Kafka topic catalogue.

use std::process::ExitCode;

use anyhow::Context;
use frameworks_events::catalogue::{Retention, TOPICS};
use frameworks_events::kafka::{KafkaSettings, TopicChange, apply_catalogue};

/// Create and reconcile the platform's Kafka topics, or show the catalogue.
#[derive(Debug, clap::Args)]
pub struct TopicsCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create missing topics and restore drifted settings. Idempotent; exits 3
    /// if a topic's partition or replica count differs from the catalogue.
    Apply {
        #[command(flatten)]
        kafka: KafkaSettings,
    },
    /// Print the catalogue as it would be applied, without contacting Kafka.
    List {
        #[command(flatten)]
        kafka: KafkaSettings,
    },
}

impl TopicsCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.action {
            Action::Apply { kafka } => apply(&kafka).await,
            Action::List { kafka } => {
                list(&kafka);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

async fn apply(kafka: &KafkaSettings) -> anyhow::Result<ExitCode> {
    let report = apply_catalogue(kafka, &kafka.catalogue())
        .await
        .context("applying the topic catalogue")?;
    let mut drifted = false;
    for (topic, change) in &report.topics {
        match change {
            TopicChange::Created => println!("{topic:<40} created"),
            TopicChange::Unchanged => println!("{topic:<40} unchanged"),
            TopicChange::Reconfigured(settings) => {
                let detail: Vec<String> = settings
                    .iter()
                    .map(|(key, found, now)| {
                        format!("{key} {} -> {now}", found.as_deref().unwrap_or("unset"))
                    })
                    .collect();
                println!("{topic:<40} reconfigured: {}", detail.join(", "));
            }
            TopicChange::Drifted(detail) => {
                drifted = true;
                println!("{topic:<40} DRIFT: {detail} (not changed automatically)");
            }
        }
    }
    Ok(if drifted {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn list(kafka: &KafkaSettings) {
    let catalogue = kafka.catalogue();
    println!(
        "{:<40} {:>10} {:>8}  {:<12} key",
        "topic", "partitions", "replicas", "retention"
    );
    for spec in TOPICS {
        let definition = catalogue.definition(spec.topic);
        let retention = match spec.retention {
            Retention::Forever => "forever".to_owned(),
            Retention::Telemetry => format!("{}h", kafka.catalogue.telemetry_retention_hours),
            Retention::DeadLetter => format!("{}h", kafka.catalogue.dead_letter_retention_hours),
        };
        println!(
            "{:<40} {:>10} {:>8}  {:<12} {}",
            definition.name,
            definition.partitions,
            definition.replication_factor,
            retention,
            spec.key
        );
    }
}
