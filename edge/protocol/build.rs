//! Compiles the edge control protocol (schemas/proto/frameworks/edge) with
//! protox, so no `protoc` is needed, and generates its tonic client and server.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: the target dir is shared between clones.
    let proto_root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../schemas/proto");
    let control = proto_root.join("frameworks/edge/v1/control.proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());
    let descriptors = protox::compile([&control], [&proto_root])?;
    // Heartbeats carry the node telemetry events' own messages.
    tonic_prost_build::configure()
        .extern_path(".frameworks.events.v1", "::frameworks_events::proto::v1")
        .compile_fds(descriptors)?;
    Ok(())
}
