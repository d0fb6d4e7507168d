//! Accepted means accepted, and a key makes a retry safe: through the
//! bridge's GraphQL endpoint, with the relay and the projector running.
//!
//! - `createStream` sent twice with one `Idempotency-Key` creates one
//!   stream and answers it both times; the key with another input is
//!   refused (`IDEMPOTENCY_KEY_REUSED`), and a malformed key is a 400.
//! - With the projector stopped (SIGSTOP: it holds its place in its group),
//!   a mutation's read-back times out: `createStream` answers
//!   `ACCEPTED_NOT_VISIBLE` naming the stream it made, never a failure, and
//!   `deleteStream` answers `DeleteSuccess { pending: true }`. The same
//!   request again makes nothing new; once the projector runs again it
//!   answers the stream, and the event store holds one creation.

use crate::support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use frameworks_commands::SecretBox;
use frameworks_events::{AggregateType, EventPayload};
use serde_json::{Value, json};
use support::mist::{Fetched, try_post_json, try_post_json_with};
use support::{fresh_database, kafka_with_topics, spawn_bridge, spawn_read_side_role, within};
use uuid::Uuid;

const CREATE: &str = "mutation Create($input: CreateStreamInput!) {
  createStream(input: $input) {
    __typename
    ... on Stream { id name }
    ... on ValidationError { message code }
  }
}";

const DELETE: &str = "mutation Delete($id: ID!) {
  deleteStream(id: $id) {
    __typename
    ... on DeleteSuccess { deletedId pending }
  }
}";

const STREAMS: &str = "query { streamsConnection { totalCount edges { node { id name } } } }";

/// The bridge's GraphQL endpoint, as one tenant's owner.
struct Caller {
    url: String,
    token: String,
}

impl Caller {
    /// POSTs a document with `key` as its Idempotency-Key (if any).
    async fn post(&self, query: &str, variables: Value, key: Option<&str>) -> Fetched {
        let bearer = format!("Bearer {}", self.token);
        let mut headers = vec![("authorization", bearer.as_str())];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        let body = json!({ "query": query, "variables": variables });
        try_post_json_with(&self.url, &headers, &body, Duration::from_secs(20))
            .await
            .expect("the bridge answers")
    }

    async fn graphql(&self, query: &str, variables: Value, key: Option<&str>) -> Value {
        let answer = self.post(query, variables, key).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        serde_json::from_slice(&answer.body).unwrap()
    }

    async fn create(&self, name: &str, key: &str) -> Value {
        let input = json!({ "input": { "name": name } });
        self.graphql(CREATE, input, Some(key)).await
    }

    /// Sends the keyed creation again with its key until its stream is
    /// readable; meanwhile every answer must be ACCEPTED_NOT_VISIBLE.
    async fn create_until_visible(&self, name: &str, key: &str) -> Value {
        within(
            Duration::from_secs(60),
            "the created stream visible",
            async {
                loop {
                    let answer = self.create(name, key).await;
                    if answer["data"]["createStream"]["__typename"] == "Stream" {
                        break answer;
                    }
                    let code = &answer["errors"][0]["extensions"]["code"];
                    assert_eq!(code, "ACCEPTED_NOT_VISIBLE", "{answer}");
                }
            },
        )
        .await
    }
}

/// The UUID behind a stream's global id.
fn stream_uuid(global: &str) -> Uuid {
    let decoded = String::from_utf8(STANDARD.decode(global).unwrap()).unwrap();
    decoded.strip_prefix("Stream:").unwrap().parse().unwrap()
}

/// Sends `signal` (STOP, CONT) to a spawned role.
fn signal(role: &support::RoleProcess, signal: &str) {
    let sent = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(role.0.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_mutations_are_never_failures_and_keyed_retries_run_once() {
    let db = fresh_database().await;
    let kafka = kafka_with_topics().await;
    let prefix = kafka.catalogue.prefix.clone();
    let _relay = spawn_read_side_role("relay", &kafka, &db.url, &prefix);
    let projector = spawn_read_side_role("projector", &kafka, &db.url, &prefix);
    let (_, data_keys) = SecretBox::generate("accepted");
    let clickhouse_base = format!("test_{}", &Uuid::now_v7().simple().to_string()[20..]);
    let (_bridge, port) = spawn_bridge(
        &kafka,
        &db.url,
        &data_keys,
        &prefix,
        &clickhouse_base,
        &[
            ("FRAMEWORKS_SESSION_SECRET", "a".repeat(32)),
            ("FRAMEWORKS_READ_YOUR_WRITES_TIMEOUT_MS", "1000".into()),
        ],
    );
    let register = format!("http://127.0.0.1:{port}/auth/register");
    let email = format!("owner-{}@example.com", Uuid::now_v7().simple());
    let body = json!({ "email": email, "password": "a long enough password" });
    let registered = within(Duration::from_secs(60), "the bridge up", async {
        loop {
            match try_post_json(&register, &body, Duration::from_secs(10)).await {
                Some(answer) if answer.status == 201 => break answer,
                Some(answer) => panic!("register: {} {}", answer.status, answer.text()),
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await;
    let token: Value = serde_json::from_slice(&registered.body).unwrap();
    let caller = Caller {
        url: format!("http://127.0.0.1:{port}/graphql"),
        token: token["token"].as_str().unwrap().to_owned(),
    };

    // One key, sent until answered (a projector that has just started may
    // not have joined its group within the 1 s read-your-writes wait), then
    // once more: one stream, answered the same both times.
    let first = caller
        .create_until_visible("studio", "create-studio-0001")
        .await;
    let again = caller.create("studio", "create-studio-0001").await;
    assert_eq!(
        first["data"]["createStream"]["__typename"], "Stream",
        "{first}"
    );
    assert_eq!(first["data"], again["data"]);
    let studio = first["data"]["createStream"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The key with another request is refused, and creates nothing.
    let reused = caller.create("another", "create-studio-0001").await;
    assert_eq!(
        reused["data"]["createStream"]["code"], "IDEMPOTENCY_KEY_REUSED",
        "{reused}"
    );
    // A malformed key is refused before anything runs.
    let input = json!({ "input": { "name": "short key" } });
    let malformed = caller.post(CREATE, input, Some("short")).await;
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    let malformed: Value = serde_json::from_slice(&malformed.body).unwrap();
    assert_eq!(
        malformed["errors"][0]["extensions"]["code"],
        "IDEMPOTENCY_KEY_INVALID"
    );
    let listed = caller.graphql(STREAMS, json!({}), None).await;
    assert_eq!(
        listed["data"]["streamsConnection"]["totalCount"], 1,
        "{listed}"
    );

    // The projector stopped: the commands are accepted, their effects late.
    signal(&projector, "STOP");
    let late = caller.create("late", "create-late-0001").await;
    let error = &late["errors"][0];
    assert_eq!(
        error["extensions"]["code"], "ACCEPTED_NOT_VISIBLE",
        "{late}"
    );
    assert_eq!(error["extensions"]["resourceType"], "Stream");
    let late_id = error["extensions"]["resourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let late_again = caller.create("late", "create-late-0001").await;
    assert_eq!(
        late_again["errors"][0]["extensions"]["resourceId"], late_id,
        "the same request names the same stream: {late_again}"
    );
    let deleted = caller
        .graphql(DELETE, json!({ "id": studio }), Some("delete-studio-0001"))
        .await;
    assert_eq!(
        deleted["data"]["deleteStream"],
        json!({ "__typename": "DeleteSuccess", "deletedId": studio, "pending": true }),
        "{deleted}"
    );

    // Running again, the projector catches up, and the request answers.
    signal(&projector, "CONT");
    let answered = caller
        .create_until_visible("late", "create-late-0001")
        .await;
    assert_eq!(answered["data"]["createStream"]["id"], late_id.as_str());
    let listed = caller.graphql(STREAMS, json!({}), None).await;
    let names: Vec<&str> = listed["data"]["streamsConnection"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["late"], "{listed}");
    let events = db
        .store
        .load(AggregateType::Stream, &stream_uuid(&late_id).to_string())
        .await
        .unwrap();
    let created = events
        .iter()
        .filter(|event| matches!(event.payload, EventPayload::StreamCreated(_)))
        .count();
    // One command's events (the stream and its primary key), not two.
    assert_eq!(created, 1, "{events:?}");
    assert!(
        events
            .iter()
            .all(|event| event.correlation_id == events[0].correlation_id),
        "{events:?}"
    );
}
