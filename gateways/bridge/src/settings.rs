//! The bridge's settings: each a flag with one environment variable.

use std::net::SocketAddr;

use frameworks_commands::aggregates::infrastructure::ClusterCapacity;

#[derive(Debug, Clone, clap::Args)]
pub struct BridgeSettings {
    /// Where the bridge serves /graphql, /graphql/ws, /auth/*, /health and /metrics.
    #[arg(
        long = "bridge-listen",
        env = "FRAMEWORKS_BRIDGE_LISTEN",
        default_value = "127.0.0.1:18000"
    )]
    pub listen: SocketAddr,

    /// Secret that signs session tokens (HS256), at least 32 bytes.
    #[arg(
        long = "session-secret",
        env = "FRAMEWORKS_SESSION_SECRET",
        hide_env_values = true,
        value_parser = parse_session_secret
    )]
    pub session_secret: String,

    /// How long a session token from /auth/login or /auth/register is valid, in seconds.
    #[arg(
        long = "session-ttl-seconds",
        env = "FRAMEWORKS_SESSION_TTL_SECONDS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(60..=2_592_000)
    )]
    pub session_ttl_seconds: u64,

    /// The data-key ring that seals stream keys and pull sources:
    /// `KEY_ID:BASE64,...`, the first key active (32 bytes each).
    #[arg(
        long = "data-keys",
        env = "FRAMEWORKS_DATA_KEYS",
        hide_env_values = true,
        value_parser = parse_data_keys
    )]
    pub data_keys: String,

    /// Serve GraphiQL at GET /graphql.
    #[arg(
        long = "graphiql",
        env = "FRAMEWORKS_BRIDGE_GRAPHIQL",
        default_value_t = false
    )]
    pub graphiql: bool,

    /// GraphiQL's browser assets (`compose/graphiql dir`), served by the
    /// bridge itself; required with --graphiql.
    #[arg(long = "graphiql-assets", env = "FRAMEWORKS_BRIDGE_GRAPHIQL_ASSETS")]
    pub graphiql_assets: Option<std::path::PathBuf>,

    /// Largest request body accepted, in bytes.
    #[arg(
        long = "bridge-max-body-bytes",
        env = "FRAMEWORKS_BRIDGE_MAX_BODY_BYTES",
        default_value_t = 1_048_576,
        value_parser = clap::value_parser!(u64).range(1_024..=67_108_864)
    )]
    pub max_body_bytes: u64,

    /// Requests each token (or anonymous client address) may make per minute.
    #[arg(
        long = "bridge-rate-limit-per-minute",
        env = "FRAMEWORKS_BRIDGE_RATE_LIMIT_PER_MINUTE",
        default_value_t = 1_200,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rate_limit_per_minute: u32,

    /// How long a mutation waits for its change to reach the read model, in milliseconds.
    #[arg(
        long = "read-your-writes-timeout-ms",
        env = "FRAMEWORKS_READ_YOUR_WRITES_TIMEOUT_MS",
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    pub read_your_writes_timeout_ms: u64,

    #[command(flatten)]
    pub edges: EdgeSettings,
}

/// What createEdgeCluster and bootstrapEdge hand out.
#[derive(Debug, Clone, clap::Args)]
pub struct EdgeSettings {
    /// The DNS zone of edge clusters: a cluster answers at `<slug>.<zone>`
    /// and each of its nodes at `<node>.<slug>.<zone>`.
    #[arg(
        long = "edge-domain",
        env = "FRAMEWORKS_EDGE_DOMAIN",
        default_value = "edge.frameworks.localhost",
        value_parser = parse_domain
    )]
    pub domain: String,

    /// The balancer's gRPC address that edges connect to (host:port).
    #[arg(
        long = "balancer-grpc-addr",
        env = "FRAMEWORKS_BALANCER_GRPC_ADDR",
        default_value = "127.0.0.1:18029",
        value_parser = parse_host_port
    )]
    pub balancer_grpc_addr: String,

    /// Region of an edge cluster created without a control cluster.
    #[arg(
        long = "edge-cluster-region",
        env = "FRAMEWORKS_EDGE_CLUSTER_REGION",
        default_value = "global"
    )]
    pub region: String,

    /// Capacity a new edge cluster starts with: `streams,viewers,mbps`.
    #[arg(
        long = "edge-cluster-capacity",
        env = "FRAMEWORKS_EDGE_CLUSTER_CAPACITY",
        default_value = "100,5000,10000",
        value_parser = parse_capacity
    )]
    pub capacity: ClusterCapacity,
}

fn parse_domain(value: &str) -> Result<String, String> {
    let domain = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid_label = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if domain.len() <= 200 && domain.split('.').count() >= 2 && domain.split('.').all(valid_label) {
        Ok(domain)
    } else {
        Err(format!("{value:?} is not a DNS name like edge.example.com"))
    }
}

fn parse_host_port(value: &str) -> Result<String, String> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(value.to_owned())
        }
        _ => Err(format!("{value:?} is not host:port")),
    }
}

fn parse_capacity(value: &str) -> Result<ClusterCapacity, String> {
    let parts: Vec<u32> = value
        .split(',')
        .map(|part| part.trim().parse::<u32>().ok().filter(|n| *n > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{value:?} is not three positive numbers: streams,viewers,mbps"))?;
    match parts[..] {
        [streams, viewers, mbps] => Ok(ClusterCapacity {
            max_concurrent_streams: streams,
            max_concurrent_viewers: viewers,
            max_bandwidth_mbps: mbps,
        }),
        _ => Err(format!(
            "{value:?} is not three numbers: streams,viewers,mbps"
        )),
    }
}

fn parse_session_secret(value: &str) -> Result<String, String> {
    if value.len() < 32 {
        return Err("must be at least 32 bytes (e.g. `openssl rand -base64 48`)".into());
    }
    Ok(value.to_owned())
}

fn parse_data_keys(value: &str) -> Result<String, String> {
    frameworks_commands::SecretBox::from_spec(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}
