//! Protocol types generated from the `.proto` files in `proto/`.
//!
//! - [`etcdserverpb`], [`mvccpb`], [`authpb`]: the etcd v3 API, wire-compatible with etcd
//!   (same package, service and method names, same field numbers).
//! - [`raftpb`]: Bosun's Raft peer transport between store members.
//! - [`apipb`]: the apiserver's gRPC API for Bosun's components.

#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

/// etcd's MVCC key-value types (`KeyValue`, `Event`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth types.
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The etcd v3 services and their messages.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Bosun's Raft peer transport.
pub mod raftpb {
    tonic::include_proto!("bosun.raft.v1");
}

/// The apiserver's gRPC API.
pub mod apipb {
    tonic::include_proto!("bosun.api.v1");
}
