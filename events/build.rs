//! Compiles schemas/proto with protox (a protobuf compiler in Rust, so no
//! `protoc` is needed on any machine), generates the prost types and writes
//! the contract's descriptor set.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): the target dir is shared between
    // clones, and a build script compiled in one must not carry its path.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../schemas/proto");
    let files: Vec<PathBuf> = std::fs::read_dir(proto_root.join("frameworks/events/v1"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    let mut files: Vec<PathBuf> = files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::compile(&files, [&proto_root])?;
    // The contract as a descriptor set, without comments and source
    // positions: `contract::DESCRIPTOR_SET`, compared with the committed
    // snapshot so a breaking change to a stored event fails a test.
    let mut contract = descriptors.clone();
    for file in &mut contract.file {
        file.source_code_info = None;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("frameworks.events.v1.binpb"),
        prost::Message::encode_to_vec(&contract),
    )?;
    let mut config = prost_build::Config::new();
    // Payload messages (every package below frameworks.events.v1) get proptest's
    // Arbitrary so property tests can cover every event type without fixtures.
    for family in [
        "common",
        "tenant",
        "user",
        "api_token",
        "stream",
        "infrastructure",
        "telemetry",
    ] {
        config.type_attribute(
            format!(".frameworks.events.v1.{family}"),
            "#[cfg_attr(feature = \"arbitrary\", derive(proptest_derive::Arbitrary))]",
        );
    }
    config.compile_fds(descriptors)?;
    Ok(())
}
