//! The store's limits in one place, and how they derive from each other.
//!
//! A client's write crosses three boundaries, and each limit must hold the one before it:
//!
//! 1. The request: at most `--max-request-bytes` ([`DEFAULT_MAX_REQUEST_BYTES`], at most
//!    [`MAX_REQUEST_BYTES_LIMIT`]) and `--max-txn-ops` operations per txn list
//!    ([`DEFAULT_MAX_TXN_OPS`]). Checked by the member the client reached, and again by the
//!    leader when the write arrives forwarded, so the peer port is no way around them.
//! 2. The batch: writes travel to the leader and into the log in batches of at most
//!    [`MAX_BATCH`] writes and [`BATCH_BYTES`] (a larger request goes alone). A forwarded
//!    batch with more writes is refused whole.
//! 3. The peer message: every call between members (a forwarded batch, an append of
//!    [`entries_per_append`] entries) is at most [`MAX_PEER_MESSAGE`]. A batch, or a request
//!    at the largest `--max-request-bytes`, fits with [`GRPC_OVERHEAD_BYTES`] to spare (checked
//!    at compile time below).
//!
//! Nesting is bounded too: a txn may hold txns, and decoding, checking and applying one
//! recurse once per level, so a message from the peer port is refused when it nests deeper
//! than [`MAX_NESTING`], before it can exhaust the stack.
//!
//! What grows with clients (watch streams, replay, the broadcast ring, the log's memory copy,
//! snapshot transfers) is bounded by the constants at the end.

/// Largest message between members, either way: the peer port's gRPC decoding and encoding
/// limit.
pub const MAX_PEER_MESSAGE: usize = 64 << 20;

/// gRPC framing allowed on top of `--max-request-bytes`, as etcd allows: the client port's
/// message limit is the sum of the two.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// `--max-request-bytes` by default (etcd's).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// The largest `--max-request-bytes` accepted: half a peer message, so that a request alone
/// always fits one message, with room for the encoding around it.
pub const MAX_REQUEST_BYTES_LIMIT: usize = MAX_PEER_MESSAGE / 2;

/// `--max-txn-ops` by default (etcd's): most operations in one list of a txn. A nested txn's
/// lists share what their parent leaves (see `apply::check_txn`).
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Most writes in one forwarded `WriteBatch` call or one `Command::Batch` log entry.
pub const MAX_BATCH: usize = 256;

/// Most bytes of writes (their protobuf size) in one batch; a larger write goes alone.
pub const BATCH_BYTES: usize = 1 << 20;

/// Most levels of nesting a command decoded from a peer may have: a batch and each txn,
/// nested txns included, count one level. Above the levels any checked write can have: a
/// client's txn reaches a member through the protobuf decoder, which stops at
/// [`PROTOBUF_TXN_DEPTH`], and a txn nested past the default `--max-txn-ops` budget (each level
/// spends an operation of it) still decodes, so that a forwarded one gets etcd's "too many
/// operations" from `apply::check_txn` as before. Far deeper ones would overflow the stack of
/// the task decoding them; one at this bound is decoded, checked, applied and dropped within
/// half a runtime worker's stack (a test in `apply::nesting` checks it).
pub const MAX_NESTING: usize = 160;

/// Levels of txns the client port's protobuf decoder takes: prost stops at 100 levels of
/// messages, and each txn level is two (the txn and its operation). A txn nested deeper gets
/// etcd's "too many operations in txn request".
pub const PROTOBUF_TXN_DEPTH: usize = 50;

const _: () = assert!(BATCH_BYTES + GRPC_OVERHEAD_BYTES <= MAX_PEER_MESSAGE);
const _: () = assert!(MAX_REQUEST_BYTES_LIMIT + GRPC_OVERHEAD_BYTES <= MAX_PEER_MESSAGE);
const _: () = assert!(DEFAULT_MAX_REQUEST_BYTES <= MAX_REQUEST_BYTES_LIMIT);
const _: () = assert!(PROTOBUF_TXN_DEPTH + 1 < MAX_NESTING);
const _: () = assert!(DEFAULT_MAX_TXN_OPS + 2 < MAX_NESTING);

/// Most entries in one append message, so that it stays within [`MAX_PEER_MESSAGE`]: an entry
/// is a batch of at most [`BATCH_BYTES`], or a single request of up to `max_request_bytes`.
pub fn entries_per_append(max_request_bytes: usize) -> u64 {
    (MAX_PEER_MESSAGE / (max_request_bytes.max(BATCH_BYTES) + GRPC_OVERHEAD_BYTES)).clamp(1, 300)
        as u64
}

/// Size of one chunk of a Raft snapshot streamed to a member.
pub const PEER_SNAPSHOT_CHUNK: usize = 1 << 20;

/// Size of one chunk of the Maintenance Snapshot stream (etcd's).
pub const CLIENT_SNAPSHOT_CHUNK: usize = 32 * 1024;

/// Largest key or value a snapshot file may hold: a bound against corrupt input, above any
/// request ([`MAX_REQUEST_BYTES_LIMIT`]).
pub const MAX_SNAPSHOT_FIELD: u32 = MAX_PEER_MESSAGE as u32;

const _: () = assert!(MAX_REQUEST_BYTES_LIMIT < MAX_SNAPSHOT_FIELD as usize);

/// Revisions kept in the watch hub's broadcast ring; a watcher further behind replays from
/// the store.
pub const WATCH_RING_REVISIONS: usize = 4096;

/// Responses buffered per watch stream before its watches wait for the client.
pub const WATCH_STREAM_BUFFER: usize = 128;

/// Most events read from the store in one replay step of a watch.
pub const WATCH_REPLAY_BATCH: usize = 1000;

/// Most watches on one watch stream.
pub const MAX_WATCHES_PER_STREAM: usize = 10_000;

/// Most log entries kept in memory for the state machine and the replication streams to read
/// back (entries not yet written stay beyond it until they are).
pub const RECENT_LOG_ENTRIES: usize = 16 * 1024;

/// Most encoded bytes of log entries kept in memory.
pub const RECENT_LOG_BYTES: usize = 64 << 20;

/// Bytes a connection may have waiting for its writer before writes wait for room.
pub const CONNECTION_WRITE_BUFFER: usize = bosun_net::coalesce::CONNECTION_WRITE_BUFFER;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_of_the_largest_entries_fits_a_peer_message() {
        for max_request in [
            1,
            DEFAULT_MAX_REQUEST_BYTES,
            BATCH_BYTES,
            4 << 20,
            MAX_REQUEST_BYTES_LIMIT,
        ] {
            let n = entries_per_append(max_request) as usize;
            let entry = max_request.max(BATCH_BYTES) + GRPC_OVERHEAD_BYTES;
            assert!(n >= 1);
            assert!(n * entry <= MAX_PEER_MESSAGE, "{max_request}: {n} entries");
        }
        assert_eq!(entries_per_append(DEFAULT_MAX_REQUEST_BYTES), 32);
    }
}
