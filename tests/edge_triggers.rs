//! Every trigger a real MistServer sent (the captures the simulator
//! replays) reads as a typed value, and broken ones are refused by name.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use frameworks_edge_protocol::triggers::{
    BufferState, Trigger, TriggerError, TriggerKind, TriggerRequest,
};
use frameworks_mist_simulator::captures::{self, Capture};

fn parse(capture: &Capture) -> Result<TriggerRequest, TriggerError> {
    TriggerRequest::parse(|name| capture.header(name), capture.body.as_bytes())
}

#[test]
fn every_captured_trigger_parses_into_its_typed_value() {
    let all = captures::triggers();
    assert_eq!(all.len(), 248);
    let mut kinds = BTreeSet::new();
    for capture in all {
        let request = parse(capture)
            .unwrap_or_else(|e| panic!("{}: {e}\n{:?}", capture.trigger(), capture.body));
        assert_eq!(request.meta.kind.name(), capture.trigger());
        assert_eq!(
            request.meta.uuid.to_string(),
            capture.header("X-Trigger-UUID").unwrap_or_default()
        );
        assert_eq!(request.meta.version.as_deref(), Some("fw-51c613a4"));
        // The stream a trigger names is its payload's stream field.
        if let Some(stream) = request.trigger.stream() {
            assert!(
                capture.body_lines.iter().any(|line| line == stream),
                "{stream}"
            );
        }
        kinds.insert(request.meta.kind);
    }
    assert_eq!(
        kinds.len(),
        TriggerKind::ALL.len(),
        "every kind the daemon registers occurs in the captures"
    );
}

#[test]
fn the_fields_land_where_mist_puts_them() {
    let end = captures::of("USER_END").next().unwrap();
    let Ok(Trigger::UserEnd {
        session,
        stream,
        connector,
        duration_seconds,
        uploaded_bytes,
        tags,
        extra,
        ..
    }) = parse(end).map(|r| r.trigger)
    else {
        panic!("USER_END parses");
    };
    assert_eq!(
        (session.as_str(), stream.as_str(), connector.as_str()),
        ("3815161789", "test", "HLS")
    );
    assert_eq!((duration_seconds, uploaded_bytes), (2, 104_823));
    assert_eq!(tags, vec!["UA:curl/7.88.1"]);
    assert_eq!(
        extra.last().map(String::len),
        Some(64),
        "the session hash USER_NEW carried"
    );

    let new = captures::of("USER_NEW").next().unwrap();
    let Ok(Trigger::UserNew {
        session_token,
        session_id,
        ..
    }) = parse(new).map(|r| r.trigger)
    else {
        panic!("USER_NEW parses");
    };
    assert_eq!(session_token, "3815161789", "a number Mist made up");
    assert_eq!(Some(&session_id), extra.last());

    let empty = captures::of("STREAM_BUFFER")
        .map(|c| parse(c).unwrap().trigger)
        .find(|t| {
            matches!(
                t,
                Trigger::StreamBuffer {
                    state: BufferState::Empty,
                    ..
                }
            )
        });
    assert!(matches!(
        empty,
        Some(Trigger::StreamBuffer { health: None, .. })
    ));

    let recording = captures::of("RECORDING_END").next().unwrap();
    let Ok(Trigger::RecordingEnd { output, summary }) = parse(recording).map(|r| r.trigger) else {
        panic!("RECORDING_END parses");
    };
    assert_eq!(
        (output.bytes, output.seconds, output.first_ms),
        (667_212, 12, Some(6023))
    );
    assert!(summary.is_some_and(|s| s["tracks"].is_array()));

    let start = captures::of("SYSTEM_START").next().unwrap();
    let request = parse(start).unwrap();
    assert_eq!(
        request.meta.instance, None,
        "SYSTEM_START comes before the instance id"
    );
    assert_eq!(
        request.trigger,
        Trigger::SystemStart {
            version: Some("fw-51c613a4".into())
        }
    );
    let named = captures::of("PROCESS_EXIT").next().unwrap();
    assert_eq!(
        parse(named).unwrap().meta.server_name.as_deref(),
        Some("edge-test-1")
    );
}

#[test]
fn broken_requests_are_refused_with_the_reason() {
    let capture = captures::of("STREAM_END").next().unwrap();
    let header = |replace: &'static str, with: Option<&'static str>| {
        move |name: &str| {
            if name == replace {
                with
            } else {
                capture.header(name)
            }
        }
    };
    let body = capture.body.as_bytes();
    assert_eq!(
        TriggerRequest::parse(header("X-Trigger", None), body),
        Err(TriggerError::MissingHeader("X-Trigger"))
    );
    assert_eq!(
        TriggerRequest::parse(header("X-Trigger", Some("NOT_A_TRIGGER")), body),
        Err(TriggerError::UnknownTrigger("NOT_A_TRIGGER".into()))
    );
    assert!(matches!(
        TriggerRequest::parse(header("X-Trigger-UUID", Some("nope")), body),
        Err(TriggerError::BadHeader {
            header: "X-Trigger-UUID",
            ..
        })
    ));
    assert_eq!(
        TriggerRequest::parse(|n| capture.header(n), &[0xff, 0xfe]),
        Err(TriggerError::NotUtf8)
    );
    assert_eq!(
        TriggerRequest::parse(|n| capture.header(n), &vec![b'a'; 300 * 1024]),
        Err(TriggerError::TooLarge)
    );
    let wrong = TriggerRequest::parse(|n| capture.header(n), b"test\n1\n2\n3\n4\n5\nlots");
    assert_eq!(
        wrong.map_err(|e| e.to_string()),
        Err("STREAM_END field 7 (viewer seconds) is not a number: \"lots\"".into())
    );
}
