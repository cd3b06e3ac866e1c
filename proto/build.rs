//! Generates the tonic/prost code with the vendored `protoc`, so building
//! needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/raft.proto", "proto/admin.proto"],
        &["proto"],
    )?;
    Ok(())
}
