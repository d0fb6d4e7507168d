//! Envelope encode and decode cost per event, for three representative
//! payloads: a small domain event, the accounting event edges send most, and
//! the largest routine payload (a track list).
//!
//! Each iteration handles one event, so criterion's `time` is ns per event.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use frameworks_events::Event;
use frameworks_events::proto::v1::common::SealedSecret;
use frameworks_events::proto::v1::stream::{IngestMode, StreamCreated};
use frameworks_events::proto::v1::telemetry::{Track, TrackListUpdated, ViewerSessionEnded};
use uuid::Uuid;

fn samples() -> Vec<(&'static str, Event)> {
    let tenant = Uuid::now_v7();
    let stream = Uuid::now_v7().to_string();
    let created = StreamCreated {
        name: "Saturday night live set".into(),
        description: "Main stage, 1080p60".into(),
        record: true,
        ingest_mode: IngestMode::Pull as i32,
        pull_source: Some(SealedSecret {
            key_id: "k2026-11".into(),
            nonce: vec![7; 12],
            ciphertext: vec![42; 96],
        }),
        playback_id: "pb9x2kq7m4d1".into(),
    };
    let ended = ViewerSessionEnded {
        session_id: Uuid::now_v7().to_string(),
        node_id: "edge-ams-3".into(),
        connector: "HLS".into(),
        bytes_up: 18_204,
        bytes_down: 734_003_200,
        duration_seconds: 2_711,
        reason: "socket closed".into(),
        trigger_id: Uuid::now_v7().to_string(),
    };
    let track = |track_id, kind: &str, codec: &str| Track {
        track_id,
        kind: kind.into(),
        codec: codec.into(),
        width: 1920,
        height: 1080,
        frames_per_second: 60.0,
        sample_rate: 48_000,
        channels: 2,
        bitrate_bps: 6_000_000,
        language: "eng".into(),
    };
    let tracks = TrackListUpdated {
        node_id: "edge-ams-3".into(),
        tracks: vec![
            track(1, "video", "H264"),
            track(2, "audio", "AAC"),
            track(3, "video", "H264"),
        ],
    };
    [
        ("stream.created", Event::new(stream.clone(), created)),
        ("viewer.session_ended", Event::new(stream.clone(), ended)),
        ("stream.track_list_updated", Event::new(stream, tracks)),
    ]
    .into_iter()
    .map(|(name, event)| (name, event.with_tenant(tenant).with_sequence(17)))
    .collect()
}

fn envelope(c: &mut Criterion) {
    for (name, event) in samples() {
        let bytes = event.encode();
        let mut group = c.benchmark_group(format!("envelope/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("encode", |b| b.iter(|| black_box(&event).encode()));
        group.bench_function("decode", |b| {
            b.iter(|| Event::decode(black_box(&bytes)).expect("valid envelope"))
        });
        group.finish();
        println!("envelope/{name}: {} bytes on the wire", bytes.len());
    }
}

criterion_group!(benches, envelope);
criterion_main!(benches);
