//! Bosun's datastore: an etcd v3-compatible key-value store replicated with Raft.
//!
//! Layers, bottom up:
//! - [`mvcc`]: etcd's multi-version data model on RocksDB (revisions, history, compaction).
//! - [`apply`]: etcd's write requests as deterministic Raft commands.
//! - [`storage`]: the member's two RocksDB databases, the state machine's and the Raft log's.
//! - [`raft`]: openraft's log storage, state machine and peer transport.
//! - [`server`]: the etcd v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance).
//! - [`run`]: one member, from flags to serving.

pub mod apply;
pub mod coalesce;
pub mod config;
pub mod error;
pub mod limits;
pub mod listen;
pub mod metrics;
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
