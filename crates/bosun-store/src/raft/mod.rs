//! The Raft glue: openraft's type configuration, log storage and state machine on RocksDB,
//! and the client side of the gRPC peer transport. Nothing here knows the services of a member
//! (`server`): the peer service that answers the transport's calls is `server::peer`.

pub mod log_store;
pub mod state_machine;
#[cfg(test)]
mod suite;
pub mod transport;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::apply::{Command, CommandResult};

/// A store member as Raft knows it: etcd's member attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name, self.peer_urls.join(","))
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Command::Put(p) => write!(f, "put {}", k(&p.key)),
            Command::DeleteRange(d) => write!(f, "delete {}..{}", k(&d.key), k(&d.range_end)),
            Command::Txn(t) => write!(f, "txn ({} compares)", t.compare.len()),
            Command::Compact(c) => write!(f, "compact {}", c.revision),
            Command::LeaseGrant(g) => write!(f, "lease grant {:x} ttl {}", g.id, g.ttl),
            Command::LeaseRevoke(r) => write!(f, "lease revoke {:x}", r.id),
            Command::Alarm(a) => write!(f, "alarm action {} type {}", a.action, a.alarm),
            Command::Batch(b) => write!(f, "batch of {} writes", b.len()),
        }
    }
}

openraft::declare_raft_types!(
    /// Bosun's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = Member,
);

/// The Raft handle of a store member.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A log id.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// Membership as stored with the state machine.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot as openraft hands it around: metadata and the file holding the data.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, state_machine::SnapshotFile>;
/// Raft metrics of a member.
pub type Metrics = openraft::RaftMetrics<TypeConfig>;

pub(crate) fn io_err(e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

pub(crate) fn encode<T: Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    postcard::to_stdvec(v).map_err(io_err)
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> std::io::Result<T> {
    postcard::from_bytes(b).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use bosun_proto::etcdserverpb::PutRequest;

    use super::*;

    #[test]
    fn keys_and_values_encode_as_length_and_bytes() {
        // The log's format: a byte string is its length then its bytes, as when the fields were
        // encoded as sequences of numbers, so logs written before still decode.
        let cmd = Command::Put(PutRequest {
            key: b"ab".to_vec(),
            value: vec![0xff; 200],
            lease: 0,
            prev_kv: true,
            ignore_value: false,
            ignore_lease: false,
        });
        let bytes = encode(&cmd).expect("encode");
        let mut want = vec![0, 2, b'a', b'b', 200, 1];
        want.extend([0xff; 200]);
        want.extend([0, 1, 0, 0]);
        assert_eq!(bytes, want);
        let back: Command = decode(&bytes).expect("decode");
        assert!(matches!(back, Command::Put(p) if p.key == b"ab" && p.value.len() == 200));
    }
}
