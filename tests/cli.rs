//! The `frameworks` binary: help everywhere, settings validated up front,
//! failures that say what is wrong.

use crate::support;

use std::net::TcpListener;
use std::process::{Command, Output};

use support::isolated_kafka;

fn frameworks(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_frameworks"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("frameworks runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["topics", "--help"],
        &["topics", "apply", "--help"],
        &["topics", "list", "--help"],
        &["dead-letters", "--help"],
        &["dead-letters", "list", "--help"],
    ] {
        let output = frameworks(args, &[]);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(stdout(&output).contains("Usage: frameworks"), "{args:?}");
    }
    // Each setting documents its one environment variable.
    let help = stdout(&frameworks(&["topics", "apply", "--help"], &[]));
    for variable in [
        "FRAMEWORKS_KAFKA_BROKERS",
        "FRAMEWORKS_TOPIC_PREFIX",
        "FRAMEWORKS_KAFKA_REPLICATION_FACTOR",
        "FRAMEWORKS_TELEMETRY_RETENTION_HOURS",
        "FRAMEWORKS_DEAD_LETTER_RETENTION_HOURS",
        "FRAMEWORKS_KAFKA_TIMEOUT_MS",
        "FRAMEWORKS_LOG",
    ] {
        assert!(help.contains(variable), "{variable} missing from help");
    }
}

/// Arguments, environment, and the setting the error must name.
type BadSetting<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_settings_fail_before_anything_runs_and_name_the_setting() {
    let cases: [BadSetting<'_>; 5] = [
        (
            &["topics", "apply"],
            &[("FRAMEWORKS_KAFKA_BROKERS", "nohost")],
            "--kafka-brokers",
        ),
        (
            &["topics", "apply", "--telemetry-retention-hours", "0"],
            &[],
            "--telemetry-retention-hours",
        ),
        (
            &["topics", "list"],
            &[("FRAMEWORKS_TOPIC_PREFIX", "no spaces")],
            "--topic-prefix",
        ),
        (
            &["topics", "list"],
            &[("FRAMEWORKS_LOG", "=[broken")],
            "--log",
        ),
        (&["dead-letters", "list", "--limit", "0"], &[], "--limit"),
    ];
    for (args, env, setting) in cases {
        let output = frameworks(args, env);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
        assert!(
            stderr(&output).contains(setting),
            "{setting}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn unreachable_kafka_is_reported_with_its_address() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let brokers = format!("127.0.0.1:{closed}");
    let output = frameworks(
        &[
            "topics",
            "apply",
            "--kafka-brokers",
            &brokers,
            "--kafka-timeout-ms",
            "1000",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(&format!("cannot reach Kafka at {brokers}")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn topics_apply_is_idempotent_from_the_command_line() {
    let kafka = isolated_kafka();
    let prefix = kafka.catalogue.prefix.clone();
    let env = [
        ("FRAMEWORKS_TOPIC_PREFIX", prefix.as_str()),
        ("FRAMEWORKS_KAFKA_BROKERS", kafka.brokers.as_str()),
    ];

    let listed = stdout(&frameworks(&["topics", "list"], &env));
    assert!(listed.contains(&format!("{prefix}.streams")), "{listed}");

    let first = frameworks(&["topics", "apply"], &env);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&first).matches(" created").count(),
        6,
        "{}",
        stdout(&first)
    );
    let second = frameworks(&["topics", "apply"], &env);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        stdout(&second).matches(" unchanged").count(),
        6,
        "{}",
        stdout(&second)
    );

    let letters = frameworks(&["dead-letters", "list"], &env);
    assert!(letters.status.success(), "{}", stderr(&letters));
    assert!(stderr(&letters).contains("0 dead letter(s)"));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(support::drop_topics(&kafka));
}
