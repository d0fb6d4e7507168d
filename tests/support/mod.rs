//! Helpers shared by the integration tests. They run against the real
//! services `compose/infra up` starts on 127.0.0.1; each test works under
//! its own topic prefix so tests never see each other's records.

#![allow(dead_code, unused_imports)] // The benches include this module too, each using a part of it.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

pub mod mist;

/// The checkout under test. Read at run time (cargo sets it when it runs
/// tests): the target dir is shared between clones, so a path baked in at
/// compile time may name another, since deleted, clone.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub use frameworks_test_harness::{ScratchDatabase as TestDatabase, drop_topics};

/// Kafka settings with a topic prefix no other test uses.
pub fn isolated_kafka() -> frameworks_events::kafka::KafkaSettings {
    frameworks_test_harness::isolated_kafka("test")
}

/// Isolated settings with the catalogue already applied.
pub async fn kafka_with_topics() -> frameworks_events::kafka::KafkaSettings {
    frameworks_test_harness::kafka_with_topics("test").await
}

/// A migrated database of its own for one test.
pub async fn fresh_database() -> TestDatabase {
    TestDatabase::create("test").await
}

/// Runs `future`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// Runs `compose/infra ARGS` with extra environment; returns (success, stdout, stderr).
pub fn infra(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = std::process::Command::new(repo_root().join("compose/infra"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("compose/infra runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port setting as the scripts see it: the environment, else the default.
pub fn port(setting: &str, default: u16) -> String {
    std::env::var(setting).unwrap_or_else(|_| default.to_string())
}

/// A scratch directory removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("frameworks-{tag}-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for ScratchDir {
    /// Removed, unless FRAMEWORKS_KEEP_SCRATCH is set (to read a failed
    /// test's logs afterwards).
    fn drop(&mut self) {
        if std::env::var_os("FRAMEWORKS_KEEP_SCRATCH").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A spawned role that is SIGKILLed and reaped when dropped, so a failing
/// test never leaves it running.
pub struct RoleProcess(pub std::process::Child);

impl RoleProcess {
    /// SIGKILL and reap (`Child::kill` sends SIGKILL on Unix).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a spawned role's output goes: stdout nowhere and stderr to the
/// test's, or, when FRAMEWORKS_TEST_LOG_DIR names a directory, both to
/// `<role>-<n>.log` in it (to read what a failed test's roles said).
fn role_output(role: &str) -> (std::process::Stdio, std::process::Stdio) {
    use std::process::Stdio;
    let inherited = || (Stdio::null(), Stdio::inherit());
    let Some(dir) = std::env::var_os("FRAMEWORKS_TEST_LOG_DIR") else {
        return inherited();
    };
    let path = PathBuf::from(dir).join(format!("{role}-{}.log", Uuid::now_v7().simple()));
    match std::fs::File::create(&path).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((out, err)) => (Stdio::from(out), Stdio::from(err)),
        Err(_) => inherited(),
    }
}

/// Starts `frameworks <role>` on the test's Kafka prefix, quiet but for
/// warnings (or logging as FRAMEWORKS_TEST_LOG filters, to debug a test),
/// with `env` on top; it is killed when the handle drops.
pub fn spawn_role(
    role: &str,
    kafka: &frameworks_events::kafka::KafkaSettings,
    env: &[(&str, String)],
) -> RoleProcess {
    let (stdout, stderr) = role_output(role);
    RoleProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_frameworks"))
            .arg(role)
            .env("FRAMEWORKS_KAFKA_BROKERS", &kafka.brokers)
            .env("FRAMEWORKS_TOPIC_PREFIX", &kafka.catalogue.prefix)
            .env(
                "FRAMEWORKS_LOG",
                std::env::var("FRAMEWORKS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the frameworks binary starts"),
    )
}

/// Starts one role of the read side (`relay`, `projector` or `live-state`)
/// on the database at `database_url`, with its consumer groups and its live
/// state under `prefix`: each role has a group of its own (sharing one with
/// another run's role on other topics would make each join wait for the
/// other), and reads only the settings that are its.
pub fn spawn_read_side_role(
    role: &str,
    kafka: &frameworks_events::kafka::KafkaSettings,
    database_url: &str,
    prefix: &str,
) -> RoleProcess {
    spawn_role(
        role,
        kafka,
        &[
            ("FRAMEWORKS_DATABASE_URL", database_url.to_owned()),
            ("FRAMEWORKS_PROJECTOR_GROUP", format!("{prefix}-projector")),
            ("FRAMEWORKS_REDIS_URL", redis_url()),
            ("FRAMEWORKS_LIVE_KEY_PREFIX", prefix.to_owned()),
            ("FRAMEWORKS_LIVE_GROUP", format!("{prefix}-live")),
            ("FRAMEWORKS_RELAY_IDLE_POLL_MS", "50".into()),
            ("FRAMEWORKS_RELAY_METRICS_LISTEN", "127.0.0.1:0".into()),
            ("FRAMEWORKS_PROJECTOR_METRICS_LISTEN", "127.0.0.1:0".into()),
            ("FRAMEWORKS_LIVE_METRICS_LISTEN", "127.0.0.1:0".into()),
        ],
    )
}

/// Starts `frameworks bridge` on a free port with the data-key ring
/// `data_keys`, the live state under `live_prefix` and the analytics under
/// `clickhouse_base`, `env` on top: (process, port).
pub fn spawn_bridge(
    kafka: &frameworks_events::kafka::KafkaSettings,
    database_url: &str,
    data_keys: &str,
    live_prefix: &str,
    clickhouse_base: &str,
    env: &[(&str, String)],
) -> (RoleProcess, u16) {
    let port = free_port();
    let mut all = vec![
        ("FRAMEWORKS_DATABASE_URL", database_url.to_owned()),
        ("FRAMEWORKS_DATA_KEYS", data_keys.to_owned()),
        ("FRAMEWORKS_BRIDGE_LISTEN", format!("127.0.0.1:{port}")),
        ("FRAMEWORKS_REDIS_URL", redis_url()),
        ("FRAMEWORKS_LIVE_KEY_PREFIX", live_prefix.to_owned()),
        ("FRAMEWORKS_CLICKHOUSE_DATABASE", clickhouse_base.to_owned()),
    ];
    all.extend(env.iter().cloned());
    (spawn_role("bridge", kafka, &all), port)
}

/// A uniformly random number below `limit`, for random kill moments.
pub fn random_below(limit: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("randomness");
    u64::from_le_bytes(bytes) % limit
}

/// The Redis the scripts run, or FRAMEWORKS_REDIS_URL.
pub fn redis_url() -> String {
    std::env::var("FRAMEWORKS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The ClickHouse the scripts run (or FRAMEWORKS_CLICKHOUSE_URL), with the
/// analytics databases under `base`.
pub fn clickhouse(base: &str) -> frameworks_projections::analytics::ClickHouseSettings {
    frameworks_projections::analytics::ClickHouseSettings {
        url: std::env::var("FRAMEWORKS_CLICKHOUSE_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
        user: "default".into(),
        password: String::new(),
        database: base.into(),
    }
}

/// What an in-process balancer reads besides the write side: the stream
/// directory (read models, live state) and the state instances share, all
/// under the live-state key prefix `live_prefix`.
pub async fn balancer_state(
    pool: sqlx::PgPool,
    live_prefix: &str,
    directory_ttl: Duration,
) -> (
    frameworks_balancer::directory::Directory,
    frameworks_balancer::fleet::SharedState,
    frameworks_projections::live::LiveState,
) {
    let live = frameworks_projections::live::LiveState::connect(&redis_url(), live_prefix)
        .await
        .expect("Redis is up (compose/infra up)");
    (
        frameworks_balancer::directory::Directory::new(pool, live.clone(), directory_ttl),
        frameworks_balancer::fleet::SharedState::new(live.connection(), live_prefix),
        live,
    )
}

/// A cluster of `tenant`'s own and a single-use enrolment token for it:
/// (cluster id, token).
pub async fn enrolment_token(
    bus: &frameworks_commands::CommandBus,
    tenant: Uuid,
) -> (String, String) {
    use frameworks_commands::CommandContext;
    use frameworks_commands::aggregates::infrastructure::{
        Cluster, ClusterCapacity, ClusterCommand, ClusterOutcome,
    };
    let owner = CommandContext::for_tenant(tenant, "test:owner");
    let cluster = Uuid::now_v7().to_string();
    let create = ClusterCommand::Create {
        name: "edges".into(),
        region: "eu-west".into(),
        base_url: "https://edges.example.net".into(),
        shared: false,
        capacity: ClusterCapacity {
            max_concurrent_streams: 10,
            max_concurrent_viewers: 100,
            max_bandwidth_mbps: 1_000,
        },
    };
    bus.execute::<Cluster>(&cluster, &create, &owner, None)
        .await
        .expect("the cluster is created");
    let issue = ClusterCommand::IssueEnrolmentToken {
        ttl_seconds: 600,
        name: "edge".into(),
    };
    let Ok(ClusterOutcome::EnrolmentToken { token, .. }) =
        bus.execute::<Cluster>(&cluster, &issue, &owner, None).await
    else {
        panic!("an enrolment token is issued");
    };
    (cluster, token)
}

/// A port free on 127.0.0.1 now (the OS may hand it out again later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("an ephemeral port on 127.0.0.1")
        .port()
}

/// The client release the GraphQL contract is pinned to.
pub const CLIENT: &str = "livepeer-frameworks==0.4.0";

/// A Python in a virtualenv holding the published client, created on first use.
pub fn client_python() -> PathBuf {
    use std::process::Command;
    let cache = std::env::var("FRAMEWORKS_CACHE_DIR")
        .unwrap_or_else(|_| "/var/cache/frameworks-dev".into());
    let venv = PathBuf::from(cache).join("python/livepeer-frameworks-0.4.0");
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import livepeer_frameworks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(created.success(), "python3 -m venv {}", venv.display());
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", CLIENT])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install {CLIENT}");
    }
    python
}

/// An ES256 playback token signed with the PKCS#8 `private_key_pem`, its
/// header naming `kid`, with `claims`.
pub fn sign_playback_jwt(private_key_pem: &str, kid: &str, claims: &serde_json::Value) -> String {
    use base64::Engine;
    use p256::pkcs8::DecodePrivateKey;
    let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(private_key_pem).expect("a PKCS#8 key");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let input = format!(
        "{}.{}",
        b64(&serde_json::json!({"alg": "ES256", "kid": kid, "typ": "JWT"})),
        b64(claims)
    );
    let signature: p256::ecdsa::Signature =
        p256::ecdsa::signature::Signer::sign(&signing, input.as_bytes());
    format!(
        "{input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// The sum of a Prometheus metric's samples at `http://<listen>/metrics`
/// (those whose labels hold the value `label`, if not empty); 0 while
/// nothing listens there.
pub async fn metric(listen: &str, name: &str, label: &str) -> f64 {
    let Some(answer) =
        mist::fetch_if_listening(&format!("http://{listen}/metrics"), Duration::from_secs(5)).await
    else {
        return 0.0;
    };
    answer
        .text()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| label.is_empty() || l.contains(&format!("\"{label}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}

/// A role's `/health` at `listen`: its status and body, or `None` while
/// nothing listens there.
pub async fn health(listen: &str) -> Option<(u16, String)> {
    let answer =
        mist::fetch_if_listening(&format!("http://{listen}/health"), Duration::from_secs(5))
            .await?;
    Some((answer.status, answer.text()))
}

/// Waits (up to `limit`) until the role at `listen` reports `task` down on
/// `/health` (503, naming it), then until it has restarted `task` at least
/// `restarts` times and is healthy again; answers how long after it was
/// first seen down. Fails if either does not happen in time.
///
/// A restarted task is up from the moment its attempt starts, so `/health`
/// may answer 200 for an instant between two deaths: counting the restarts
/// is what tells the last one from those.
pub async fn down_then_healthy(
    listen: &str,
    task: &str,
    restarts: f64,
    limit: Duration,
) -> Duration {
    let seen_down = within(limit, &format!("/health reports {task} down"), async {
        loop {
            if let Some((503, body)) = health(listen).await
                && body.contains(&format!("\"{task}\""))
            {
                return std::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    within(
        limit,
        &format!("{restarts} restarts of {task}, then /health healthy again"),
        async {
            while metric(listen, "frameworks_task_restarts_total", task).await < restarts
                || !matches!(health(listen).await, Some((200, _)))
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;
    seen_down.elapsed()
}

/// An edge's raw control stream to a balancer: its seed's node id and
/// session token, the sender of what the edge says next, and what the
/// balancer sends after the seed. The session lasts while both are held.
pub struct RawEdge {
    pub node_id: String,
    pub session_token: String,
    pub outbox: tokio::sync::mpsc::Sender<frameworks_edge_protocol::proto::EdgeMessage>,
    pub inbound: tonic::Streaming<frameworks_edge_protocol::proto::BalancerMessage>,
}

/// Registers an edge (in Amsterdam) with the balancer at `address` using the
/// enrolment token `token`, waiting up to 30 s for the balancer to listen.
pub async fn enrol(address: std::net::SocketAddr, token: &str) -> RawEdge {
    use frameworks_edge_protocol::proto::edge_control_client::EdgeControlClient;
    use frameworks_edge_protocol::proto::{
        EdgeMessage, Register, balancer_message, edge_message, register,
    };
    let mut client = None;
    for _ in 0..300 {
        if let Ok(connected) = EdgeControlClient::connect(format!("http://{address}")).await {
            client = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("the balancer listens");
    let (outbox, messages) = tokio::sync::mpsc::channel(16);
    outbox
        .send(EdgeMessage {
            kind: Some(edge_message::Kind::Register(Register {
                credential: Some(register::Credential::EnrolmentToken(token.into())),
                hardware_fingerprint: format!("fp-{}", Uuid::now_v7().simple()),
                hostname: "edge-ams-1".into(),
                edge_version: "0.3.11".into(),
                public_host: "edge-ams-1.example.net:8080".into(),
                latitude: 52.37,
                longitude: 4.9,
            })),
        })
        .await
        .expect("the register message is queued");
    let mut inbound = client
        .open(tokio_stream::wrappers::ReceiverStream::new(messages))
        .await
        .expect("the control stream opens")
        .into_inner();
    let Some(balancer_message::Kind::Seed(seed)) = inbound
        .message()
        .await
        .expect("the balancer answers")
        .expect("the balancer answers")
        .kind
    else {
        panic!("the first message is the seed");
    };
    RawEdge {
        node_id: seed.node_id,
        session_token: seed.session_token,
        outbox,
        inbound,
    }
}
