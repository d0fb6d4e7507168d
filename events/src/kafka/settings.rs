use std::time::Duration;

use rdkafka::ClientConfig;

use crate::catalogue::{Catalogue, CatalogueSettings};

/// How a role reaches Kafka; flattened into every subcommand that needs it.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaSettings {
    /// Kafka bootstrap brokers, comma-separated host:port pairs.
    #[arg(
        long = "kafka-brokers",
        env = "FRAMEWORKS_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        value_parser = parse_brokers
    )]
    pub brokers: String,

    /// How long one Kafka request (metadata, admin call, delivery) may take, in milliseconds.
    #[arg(
        long = "kafka-timeout-ms",
        env = "FRAMEWORKS_KAFKA_TIMEOUT_MS",
        default_value_t = 30_000,
        value_parser = clap::value_parser!(u64).range(500..=600_000)
    )]
    pub timeout_ms: u64,

    #[command(flatten)]
    pub catalogue: CatalogueSettings,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            timeout_ms: 30_000,
            catalogue: CatalogueSettings::default(),
        }
    }
}

impl KafkaSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn catalogue(&self) -> Catalogue {
        Catalogue::new(self.catalogue.clone())
    }

    /// The librdkafka configuration every client starts from.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id)
            .set("socket.timeout.ms", self.timeout_ms.to_string())
            // Keep librdkafka's own log lines at warning and above; ours go through tracing.
            .set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        config
    }
}

impl KafkaSettings {
    /// The configuration of an at-least-once consumer group member: offsets
    /// are stored only when the caller has processed a record (and committed
    /// in the background), a new group starts at the beginning of the log,
    /// and aborted transactional records are never seen. With `instance_id`
    /// the member is static: a restart takes its partitions back at once.
    /// Records fetched ahead are held to 16 MiB, not librdkafka's 64 MiB: a
    /// lagging projector's memory is mostly that queue, and 16 MiB is still
    /// a fraction of a second of records at full speed.
    pub fn group_consumer_config(&self, group_id: &str, instance_id: Option<&str>) -> ClientConfig {
        let mut config = self.client_config(group_id);
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("queued.max.messages.kbytes", "16384");
        if let Some(instance) = instance_id {
            config.set("group.instance.id", instance);
        }
        config
    }
}

fn parse_brokers(value: &str) -> Result<String, String> {
    let brokers: Vec<&str> = value.split(',').map(str::trim).collect();
    for broker in &brokers {
        let (host, port) = broker
            .rsplit_once(':')
            .ok_or_else(|| format!("{broker:?} is not host:port"))?;
        if host.is_empty() {
            return Err(format!("{broker:?} has no host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("{broker:?} has no valid port (1-65535)")),
        }
    }
    Ok(brokers.join(","))
}

#[cfg(test)]
mod tests {
    use super::parse_brokers;

    #[test]
    fn brokers_are_host_port_lists() {
        assert_eq!(parse_brokers("127.0.0.1:9092").unwrap(), "127.0.0.1:9092");
        assert_eq!(parse_brokers("a:1, b:2").unwrap(), "a:1,b:2");
        for bad in ["", "localhost", ":9092", "host:0", "host:99999", "a:1,,b:2"] {
            assert!(parse_brokers(bad).is_err(), "{bad:?} accepted");
        }
    }
}
