//! Bosun's datastore: an etcd v3-compatible key-value store replicated with Raft.
//!
//! # Layers
//!
//! Each layer imports only the layers below it (the test `layers` below checks every file):
//!
//! 0. Foundations, which know nothing of the store: [`error`] (etcd's client-visible errors),
//!    [`limits`] (every size limit, and how they derive), [`config`] (the member's flags),
//!    [`coalesce`] and [`listen`] (TCP streams and the accept loop of both ports).
//! 1. [`mvcc`]: etcd's multi-version data model on RocksDB (revisions, history, compaction),
//!    with [`snapshot`] (its streamed copy) and [`watch`] (the hub that fans out applied
//!    revisions). No Raft, no network.
//! 2. [`apply`]: etcd's write requests as deterministic Raft commands, checked before they are
//!    proposed and executed on the MVCC store when applied; [`storage`]: the member's two
//!    RocksDB databases, the state machine's and the Raft log's.
//! 3. [`raft`]: openraft's log storage, state machine and the client side of the peer
//!    transport. It carries `Forward` calls without knowing what they ask.
//! 4. [`server`]: the services, over a [`server::Replica`]: the etcd v3 gRPC services clients
//!    call, and the peer service (Raft messages and typed `Forward` requests) peers call.
//! 5. [`run`] (`member.rs`): one member, from flags to serving.

pub mod apply;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod limits;
pub mod listen;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod snapshot;
pub mod storage;
pub mod watch;

mod member;

pub use config::StoreConfig;
pub use member::run;

use bosun_proto::etcdserverpb::ResponseHeader;

/// A header carrying only a revision; the serving member fills in the rest.
pub fn header_at(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..ResponseHeader::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod layers {
    use std::path::Path;

    /// The layer of each top-level module (and item of this file), as the crate docs give them.
    fn layer(module: &str) -> Option<u8> {
        Some(match module {
            "error" | "limits" | "config" | "coalesce" | "listen" | "header_at" => 0,
            "mvcc" | "snapshot" | "watch" => 1,
            "apply" | "storage" => 2,
            "raft" => 3,
            "server" => 4,
            "member" | "run" => 5,
            _ => return None,
        })
    }

    /// The top-level modules a source file names as `crate::<module>`.
    fn imports(text: &str) -> Vec<String> {
        text.match_indices("crate::")
            .filter(|(at, _)| {
                // Not part of a longer path such as `bosun_crate::`.
                !text[..*at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
            .map(|(at, m)| {
                text[at + m.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// No module imports one of a higher layer: the Raft transport does not know the services,
    /// the MVCC store knows neither Raft nor the network, and so on.
    #[test]
    fn every_module_imports_only_lower_layers() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let mut wrong = Vec::new();
        for path in all {
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
            if module == "lib" {
                continue;
            }
            let own = layer(&module).unwrap_or_else(|| panic!("no layer for module {module}"));
            let text = std::fs::read_to_string(&path).unwrap();
            for import in imports(&text) {
                let theirs =
                    layer(&import).unwrap_or_else(|| panic!("{rel:?}: no layer for {import}"));
                if theirs > own {
                    wrong.push(format!(
                        "{} (layer {own}) imports {import} (layer {theirs})",
                        rel.display()
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn imports_are_found_in_paths_and_use_lines() {
        let text = "use crate::mvcc::Mvcc;\nlet x = crate::raft::encode(1); bosun_crate::no;";
        assert_eq!(imports(text), vec!["mvcc", "raft"]);
    }
}
