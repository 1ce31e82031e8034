//! Bosun's store SDK: a typed, retrying client for the store's etcd v3 API.
//!
//! It works against Bosun and against etcd itself (same wire protocol). The main type is
//! [`Client`]; it is cheap to clone and safe to share.
//!
//! This is the store's side of the line "only the apiserver talks to the store": among Bosun's
//! components only the apiserver depends on it (tools, tests and Rust programs that use the
//! store as an etcd may too). Controllers, the scheduler and the kubelet use the apiserver's
//! client, the `bosun-api-client` crate, which does not depend on this one.
//!
//! - **KV**: [`Client::put`], [`Client::get`], [`Client::delete`], [`Client::txn`] (built
//!   with [`Txn`], [`Compare`] and [`TxnOp`]), [`Client::compact`], and the `*_raw` forms
//!   that take and return the wire messages ([`proto`]) unchanged.
//! - **Watch**: [`Client::watch`] returns a [`WatchStream`] that resumes by itself after a
//!   connection loss, with neither gaps nor duplicates.
//! - **Lease**: grant/revoke/TTL/list, a raw keep-alive stream, and
//!   [`Client::spawn_keep_alive`] which keeps a lease alive in the background.
//! - **Cluster** and **Maintenance**: members, status, alarms, defragment, hashes, snapshots.
//! - **Errors**: [`Error`] tells etcd's failures apart, and [`Error::outcome`] says whether a
//!   failed write may have been applied. The retry policy is described on [`Client`].
//!
//! # Example
//!
//! ```no_run
//! use bosun_client::{
//!     Client, Compare, CompareOp, ConnectOptions, Error, GetOptions, HasHeader, LeaseState,
//!     PutOptions, Txn, TxnOp, WatchOptions,
//! };
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     // `host:port` and `http://host:port` are both accepted.
//!     let client = Client::connect(
//!         ["127.0.0.1:2379", "http://127.0.0.1:22379"],
//!         ConnectOptions::default(),
//!     )
//!     .await?;
//!
//!     // Put, then list a prefix.
//!     client.put("/registry/pods/a", "v1", PutOptions::new()).await?;
//!     let list = client
//!         .get("/registry/pods/", GetOptions::new().with_prefix())
//!         .await?;
//!     for kv in &list.kvs {
//!         println!("{} = {:?}", String::from_utf8_lossy(&kv.key), kv.value);
//!     }
//!
//!     // Compare-and-set: update only if nobody changed the key since we read it.
//!     let seen = list.kvs.first().map_or(0, |kv| kv.mod_revision);
//!     let resp = client
//!         .txn(
//!             Txn::new()
//!                 .when([Compare::mod_revision("/registry/pods/a", CompareOp::Equal, seen)])
//!                 .and_then([TxnOp::put("/registry/pods/a", "v2", PutOptions::new())])
//!                 .or_else([TxnOp::get("/registry/pods/a", GetOptions::new())]),
//!         )
//!         .await?;
//!     println!("CAS succeeded: {}", resp.succeeded);
//!
//!     // Watch from just after the list: the stream resumes across connection loss.
//!     let mut watch = client
//!         .watch(
//!             "/registry/pods/",
//!             WatchOptions::new()
//!                 .with_prefix()
//!                 .with_prev_kv()
//!                 .with_start_revision(list.revision() + 1),
//!         )
//!         .await?;
//!     tokio::spawn(async move {
//!         while let Some(batch) = watch.next().await {
//!             match batch {
//!                 Ok(batch) => {
//!                     for ev in &batch.events {
//!                         println!("{:?} {:?} @{}", ev.kind, ev.kv.key, ev.revision());
//!                     }
//!                 }
//!                 // History is gone: re-list, then watch again.
//!                 Err(Error::Compacted { compact_revision }) => {
//!                     println!("compacted at {compact_revision}");
//!                     break;
//!                 }
//!                 Err(e) => {
//!                     println!("watch ended: {e}");
//!                     break;
//!                 }
//!             }
//!         }
//!     });
//!
//!     // A lease kept alive in the background; keys attached to it vanish when it is lost.
//!     let lease = client.lease_grant(10, 0).await?;
//!     let mut keeper = client.spawn_keep_alive(lease.id, lease.ttl);
//!     client
//!         .put("/leader", "me", PutOptions::new().with_lease(lease.id))
//!         .await?;
//!     keeper.lost().await;
//!     assert_eq!(keeper.state(), LeaseState::Lost);
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]

mod backoff;
mod client;
mod cluster;
mod error;
mod kv;
mod lease;
mod maintenance;
mod transport;
mod watch;

/// The generated protocol types (`etcdserverpb`, `mvccpb`, ...), re-exported.
pub use bosun_proto as proto;

pub use bosun_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
pub use bosun_proto::etcdserverpb::{AlarmType, Member, ResponseHeader};
pub use bosun_proto::mvccpb::KeyValue;
pub use client::{Client, ConnectOptions};
pub use error::{Error, Outcome, messages};
pub use kv::{
    Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, RangeStream, Txn, TxnOp, prefix_end,
};
pub use lease::{KeepAliveHandle, LeaseKeepAliveStream, LeaseKeeper, LeaseState};
pub use maintenance::{SNAPSHOT_HASH_LEN, SnapshotStream};
pub use watch::{EventKind, WatchBatch, WatchEvent, WatchOptions, WatchStream};

use bosun_proto::etcdserverpb as pb;

/// Access to the [`ResponseHeader`] every response carries.
pub trait HasHeader {
    /// The response header, if the server sent one.
    fn response_header(&self) -> Option<&ResponseHeader>;

    /// The store revision when the response was produced (0 without a header).
    fn revision(&self) -> i64 {
        self.response_header().map_or(0, |h| h.revision)
    }

    /// The ID of the member that answered (0 without a header).
    fn member_id(&self) -> u64 {
        self.response_header().map_or(0, |h| h.member_id)
    }
}

macro_rules! has_header {
    ($($t:ty),* $(,)?) => {
        $(impl HasHeader for $t {
            fn response_header(&self) -> Option<&ResponseHeader> {
                self.header.as_ref()
            }
        })*
    };
}

has_header!(
    pb::RangeResponse,
    pb::PutResponse,
    pb::DeleteRangeResponse,
    pb::TxnResponse,
    pb::CompactionResponse,
    pb::LeaseGrantResponse,
    pb::LeaseRevokeResponse,
    pb::LeaseKeepAliveResponse,
    pb::LeaseTimeToLiveResponse,
    pb::LeaseLeasesResponse,
    pb::MemberListResponse,
    pb::MemberAddResponse,
    pb::MemberRemoveResponse,
    pb::MemberUpdateResponse,
    pb::MemberPromoteResponse,
    pb::StatusResponse,
    pb::AlarmResponse,
    pb::DefragmentResponse,
    pb::HashKvResponse,
    pb::MoveLeaderResponse,
    pb::SnapshotResponse,
    pb::WatchResponse,
);

impl HasHeader for WatchBatch {
    fn response_header(&self) -> Option<&ResponseHeader> {
        Some(&self.header)
    }
}
