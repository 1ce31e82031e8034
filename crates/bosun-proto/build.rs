//! Generates Rust code from `proto/`: the etcd v3 API, the Raft transport, the apiserver API.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): a build script compiled for one clone may be reused by
    // another clone that shares the target directory.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "etcd/mvccpb/kv.proto",
        "etcd/authpb/auth.proto",
        "etcd/etcdserverpb/rpc.proto",
        "bosun/raft.proto",
        "bosun/api.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let serde = "#[derive(serde::Serialize, serde::Deserialize)]";
    tonic_prost_build::configure()
        // Requests and responses travel through the Raft log, which is encoded with serde.
        .type_attribute(".mvccpb", serde)
        .type_attribute(".authpb", serde)
        .type_attribute(".etcdserverpb", serde)
        .compile_protos(&files.map(|f| root.join(f)), &[root])?;
    Ok(())
}
