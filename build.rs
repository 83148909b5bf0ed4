//! Compiles `proto/` with protox (no system `protoc`) and tonic-prost-build, and writes one file
//! descriptor set holding Sluice's API and the vendored Envoy services, for server reflection.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds the migrations: a new one must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");

    let sluice = protox::compile(["sluice/v1/sluice.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(sluice)?;

    let reflection = protox::compile(
        [
            "sluice/v1/sluice.proto",
            "envoy/service/ratelimit/v3/rls.proto",
            "envoy/service/accesslog/v3/als.proto",
        ],
        ["proto", "proto/vendor"],
    )?;
    std::fs::write(
        out.join("reflection_descriptor.bin"),
        reflection.encode_to_vec(),
    )?;
    Ok(())
}
