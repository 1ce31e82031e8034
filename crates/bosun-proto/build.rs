//! Generates Rust code from `proto/`: the etcd v3 API, the Raft transport, the apiserver API.

/// The `bytes` fields of the messages that travel through the Raft log.
const BYTES_FIELDS: [&str; 11] = [
    ".mvccpb.KeyValue.key",
    ".mvccpb.KeyValue.value",
    ".etcdserverpb.RangeRequest.key",
    ".etcdserverpb.RangeRequest.range_end",
    ".etcdserverpb.PutRequest.key",
    ".etcdserverpb.PutRequest.value",
    ".etcdserverpb.DeleteRangeRequest.key",
    ".etcdserverpb.DeleteRangeRequest.range_end",
    ".etcdserverpb.Compare.key",
    ".etcdserverpb.Compare.range_end",
    ".etcdserverpb.Compare.target_union.value",
];

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
    let mut config = tonic_prost_build::configure()
        // Requests and responses travel through the Raft log, which is encoded with serde.
        .type_attribute(".mvccpb", serde)
        .type_attribute(".authpb", serde)
        .type_attribute(".etcdserverpb", serde)
        // A watch event's object is the apiserver's cached JSON, shared by every watcher: sent
        // without a copy per watcher.
        .bytes(".bosun.api.v1.WatchEvent.object");
    // Keys and values are byte strings to serde, not sequences of numbers: encoded and decoded
    // in one copy instead of byte by byte (the same bytes in the log's format).
    for field in BYTES_FIELDS {
        config = config.field_attribute(field, "#[serde(with = \"serde_bytes\")]");
    }
    config.compile_protos(&files.map(|f| root.join(f)), &[root])?;
    Ok(())
}
