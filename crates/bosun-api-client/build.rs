//! Generates the client side of the apiserver's gRPC API from `proto/bosun/api.proto`.
//!
//! `bosun-proto` generates the same messages for the apiserver, next to the store's etcd API
//! and the Raft transport; generating them here keeps those out of every component's
//! dependencies. Both are generated from the one `.proto` file, so they cannot drift apart.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): a build script compiled for one clone may be reused by
    // another clone that shares the target directory.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("bosun/api.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&[file], &[root])?;
    Ok(())
}
