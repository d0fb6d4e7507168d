//! compose/infra: idempotent start, clear failures, and stopping only what it started.

use crate::support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use support::{ScratchDir, infra, port};
use uuid::Uuid;

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn psql(sql: &str) -> String {
    let pg_port = port("FRAMEWORKS_POSTGRES_PORT", 5432);
    run(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &pg_port,
            "-U",
            "postgres",
            "-d",
            "frameworks",
            "-Atqc",
            sql,
        ],
    )
}

fn redis(args: &[&str]) -> String {
    let redis_port = port("FRAMEWORKS_REDIS_PORT", 6379);
    let mut all = vec!["-h", "127.0.0.1", "-p", &redis_port];
    all.extend_from_slice(args);
    run("redis-cli", &all)
}

fn clickhouse(sql: &str) -> String {
    let ch_port = port("FRAMEWORKS_CLICKHOUSE_TCP_PORT", 9000);
    run(
        "clickhouse-client",
        &["--host", "127.0.0.1", "--port", &ch_port, "--query", sql],
    )
}

#[test]
fn running_up_twice_changes_nothing() {
    let (ok, _, stderr) = infra(&["up"], &[]);
    assert!(ok, "first up failed: {stderr}");
    let (ok, before, _) = infra(&["status"], &[]);
    assert!(ok, "status after up reports a component down:\n{before}");

    // Data written between the two runs must survive the second one.
    let token = Uuid::now_v7().to_string();
    psql("CREATE TABLE IF NOT EXISTS infra_idempotence (token text PRIMARY KEY)");
    psql(&format!("INSERT INTO infra_idempotence VALUES ('{token}')"));
    redis(&["SET", &format!("infra-idempotence:{token}"), &token]);
    clickhouse("CREATE DATABASE IF NOT EXISTS infra_test");
    clickhouse("CREATE TABLE IF NOT EXISTS infra_test.idempotence (token String) ENGINE = Log");
    clickhouse(&format!(
        "INSERT INTO infra_test.idempotence VALUES ('{token}')"
    ));

    let (ok, _, stderr) = infra(&["up"], &[]);
    assert!(ok, "second up failed: {stderr}");
    for component in ["kafka", "postgres", "redis", "clickhouse"] {
        assert!(
            stderr.contains(&format!("{component}: already running")),
            "second up touched {component}:\n{stderr}"
        );
    }
    let (ok, after, _) = infra(&["status"], &[]);
    assert!(ok);
    assert_eq!(
        before, after,
        "the second up changed a process or an endpoint"
    );

    assert_eq!(
        psql(&format!(
            "SELECT token FROM infra_idempotence WHERE token = '{token}'"
        )),
        token
    );
    assert_eq!(
        redis(&["GET", &format!("infra-idempotence:{token}")]),
        token
    );
    assert_eq!(
        clickhouse(&format!(
            "SELECT count() FROM infra_test.idempotence WHERE token = '{token}'"
        )),
        "1"
    );
}

#[test]
fn a_taken_port_is_named_and_nothing_starts() {
    let scratch = ScratchDir::new("port");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap().port().to_string();

    let (ok, _, stderr) = infra(
        &["up", "redis"],
        &[
            ("FRAMEWORKS_DATA_DIR", scratch.path()),
            ("FRAMEWORKS_REDIS_PORT", &taken),
        ],
    );
    assert!(!ok, "up succeeded on a taken port");
    assert!(
        stderr.contains("FRAMEWORKS_REDIS_PORT") && stderr.contains(&taken),
        "{stderr}"
    );
    assert!(!Path::new(scratch.path()).join("run/redis.pid").exists());
}

#[test]
fn a_missing_java_is_named() {
    let scratch = ScratchDir::new("java");
    let (ok, _, stderr) = infra(
        &["up", "kafka"],
        &[
            ("FRAMEWORKS_DATA_DIR", scratch.path()),
            ("JAVA_HOME", "/nonexistent/jdk"),
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("Java 17") && stderr.contains("/nonexistent/jdk"),
        "{stderr}"
    );
}

#[test]
fn bad_settings_are_named() {
    let scratch = ScratchDir::new("settings");
    let cases = [
        ("FRAMEWORKS_KAFKA_HEAP", "lots"),
        ("FRAMEWORKS_POSTGRES_PORT", "70000"),
        ("FRAMEWORKS_START_TIMEOUT", "soon"),
        ("FRAMEWORKS_DATA_DIR", "relative/dir"),
    ];
    for (setting, value) in cases {
        let data_dir = if setting == "FRAMEWORKS_DATA_DIR" {
            value
        } else {
            scratch.path()
        };
        let env = [("FRAMEWORKS_DATA_DIR", data_dir), (setting, value)];
        let (ok, _, stderr) = infra(&["up"], &env);
        assert!(!ok, "{setting}={value} was accepted");
        assert!(stderr.contains(setting), "{setting}: {stderr}");
    }
    let (ok, _, stderr) = infra(
        &["up", "zookeeper"],
        &[("FRAMEWORKS_DATA_DIR", scratch.path())],
    );
    assert!(
        !ok && stderr.contains("unknown component 'zookeeper'"),
        "{stderr}"
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn down_stops_only_what_the_scripts_started_and_reset_wipes_the_data() {
    let scratch = ScratchDir::new("down");
    let data_dir = Path::new(scratch.path()).join("data");
    let data = data_dir.to_str().unwrap();
    let ours_port = support::free_port().to_string();
    let env = [
        ("FRAMEWORKS_DATA_DIR", data),
        ("FRAMEWORKS_REDIS_PORT", ours_port.as_str()),
    ];
    let (ok, _, stderr) = infra(&["up", "redis"], &env);
    assert!(ok, "{stderr}");
    let ours: u32 = std::fs::read_to_string(data_dir.join("run/redis.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // A Redis the scripts did not start, and a pid file that points at it
    // under another component's name (as after pid reuse).
    let foreign_port = support::free_port().to_string();
    let mut foreign = KillOnDrop(
        Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &foreign_port,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(
        data_dir.join("run/clickhouse.pid"),
        format!(
            "{}\n{}/clickhouse/etc/config.xml\n8123\n",
            foreign.0.id(),
            data
        ),
    )
    .unwrap();

    let (ok, _, stderr) = infra(&["down"], &env);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!("redis: stopped (pid {ours})")),
        "{stderr}"
    );
    assert!(stderr.contains("clickhouse: not running"), "{stderr}");
    assert!(
        !Path::new(&format!("/proc/{ours}")).exists(),
        "our redis still runs"
    );
    assert!(
        foreign.0.try_wait().unwrap().is_none(),
        "down killed a process it did not start"
    );

    // The platform's own stack is untouched by a down under another data directory.
    let (ok, status, _) = infra(&["status"], &[]);
    assert!(ok, "{status}");

    let (ok, _, stderr) = infra(&["reset"], &env);
    assert!(ok, "{stderr}");
    assert!(!data_dir.exists(), "reset left {data} behind");
}

/// compose/supervise, which compose/up runs every role under: a command
/// that fails is started again after a growing wait, with its restarts and
/// last status in the state file; SIGTERM stops the command and then the
/// supervisor; a command that exits with status 0 is not started again.
#[test]
fn supervise_restarts_what_fails_and_stops_with_it() {
    let scratch = ScratchDir::new("supervise");
    let dir = Path::new(scratch.path());
    let (runs, state, pid_file) = (dir.join("runs"), dir.join("state"), dir.join("pid"));
    // Fails on its first two runs, then runs until stopped.
    let command = format!(
        "n=$(( $(cat {runs} 2>/dev/null || echo 0) + 1 )); echo $n > {runs}; \
         [ $n -le 2 ] && exit 3; echo $$ > {pid}; exec sleep 600",
        runs = runs.display(),
        pid = pid_file.display(),
    );
    let supervisor = Command::new(support::repo_root().join("compose/supervise"))
        .arg("flaky")
        .arg(&state)
        .args(["bash", "-c", &command])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Backoff 1 s, then 2 s: running well within 20 s.
    let mut running = None;
    for _ in 0..200 {
        running = std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| !p.is_empty());
        if running.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let child = running.expect("the command runs after two restarts");
    let recorded = std::fs::read_to_string(&state).unwrap();
    let fields: Vec<&str> = recorded.split_whitespace().collect();
    assert_eq!((fields[0], fields[2]), ("2", "3"), "{recorded}");
    run("kill", &["-TERM", &supervisor.id().to_string()]);
    let output = supervisor.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        !Path::new(&format!("/proc/{}", child.trim())).exists(),
        "the command outlived its supervisor"
    );
    for line in [
        "flaky exited with status 3 after",
        "; restart 1 in 1s",
        "; restart 2 in 2s",
        "flaky stopped (status 143)",
    ] {
        assert!(log.contains(line), "{line:?} not in:\n{log}");
    }

    let done = Command::new(support::repo_root().join("compose/supervise"))
        .arg("done")
        .arg(dir.join("done-state"))
        .args(["bash", "-c", "exit 0"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{log}");
    assert!(log.contains("done exited by itself with status 0"), "{log}");
}
