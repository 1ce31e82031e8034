//! What the registry needs from the store, and nothing more: read a key, read a range at a
//! revision a page at a time, create a key if it is absent, and compare-and-swap a put or a
//! delete on the key's mod_revision; plus leases, which Events expire with.
//!
//! [`EtcdStore`] is the real one, over `bosun-client` (a Bosun store or etcd). The
//! registry's unit tests use an in-memory one (`mem.rs`).

use std::future::Future;

use bosun_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    proto::etcdserverpb::response_op::Response, proto::mvccpb::KeyValue,
};

use crate::error::{Status, from_store};

/// One key as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// The revision of its last change (the object's resourceVersion).
    pub mod_revision: i64,
}

/// A page of a range read.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// The keys in order, at most the limit asked for.
    pub kvs: Vec<Kv>,
    /// The revision the range was read at.
    pub revision: i64,
    /// True when keys beyond the page remain in the range.
    pub more: bool,
    /// How many keys the whole range holds.
    pub count: i64,
}

/// A second condition of a create: the key `key` still has mod_revision `revision` (a
/// namespace the object is created in, as it was checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard<'a> {
    /// The guarding key.
    pub key: &'a str,
    /// Its mod_revision when it was checked.
    pub revision: i64,
}

/// What a create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The key was put, at this revision.
    At(i64),
    /// The key exists already; nothing was written.
    Exists,
    /// The guard's key changed (or is gone); nothing was written.
    GuardChanged,
}

/// Why a range read at a revision failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RangeError {
    /// The revision has been compacted away.
    #[error("revision compacted")]
    Compacted,
    /// The revision is ahead of the store.
    #[error("revision in the future")]
    FutureRevision,
    /// Anything else, as the API error it is answered with.
    #[error("{0}")]
    Other(Status),
}

/// The store operations the registry uses. Every write is conditional, so concurrent
/// writers never lose each other's changes; a write whose condition fails answers `None`
/// and changes nothing.
pub trait Store: Send + Sync + 'static {
    /// The key, if it exists.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Kv>, Status>> + Send;

    /// Up to `limit` keys (0: all) in `[start, end)` at `revision` (0: the current one).
    fn range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Range, RangeError>> + Send;

    /// Puts the key only if it does not exist (attached to `lease` if given) and, with a
    /// guard, only if the guard's key is unchanged: both conditions in one atomic write.
    fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
        guard: Option<Guard<'_>>,
    ) -> impl Future<Output = Result<Created, Status>> + Send;

    /// Puts the key only if its mod_revision is `revision`, keeping its lease; the new
    /// revision, or `None` when it changed (or is gone).
    fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: i64,
    ) -> impl Future<Output = Result<Option<i64>, Status>> + Send;

    /// Deletes the key only if its mod_revision is `revision`; the new revision, or `None`
    /// when it changed (or is gone).
    fn delete(
        &self,
        key: &str,
        revision: i64,
    ) -> impl Future<Output = Result<Option<i64>, Status>> + Send;

    /// A lease that expires after `ttl` seconds; its ID.
    fn grant_lease(&self, ttl: i64) -> impl Future<Output = Result<i64, Status>> + Send;
}

/// The store through the etcd v3 API (`bosun-client`).
#[derive(Debug, Clone)]
pub struct EtcdStore {
    kv: Client,
}

impl EtcdStore {
    /// The store behind `kv`.
    pub fn new(kv: Client) -> Self {
        EtcdStore { kv }
    }

    /// The client, for what is not the registry's (health probes, compaction).
    pub fn client(&self) -> &Client {
        &self.kv
    }

    /// A txn of one operation under one comparison; the new revision if it succeeded.
    async fn txn_if(&self, compare: Compare, op: TxnOp) -> Result<Option<i64>, Status> {
        let resp = self
            .kv
            .txn(Txn::new().when([compare]).and_then([op]))
            .await
            .map_err(from_store)?;
        Ok(resp
            .succeeded
            .then(|| resp.header.map_or(0, |h| h.revision)))
    }
}

fn kv_of(kv: KeyValue) -> Kv {
    Kv {
        key: kv.key,
        value: kv.value,
        mod_revision: kv.mod_revision,
    }
}

impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Kv>, Status> {
        let resp = self
            .kv
            .get(key, GetOptions::new())
            .await
            .map_err(from_store)?;
        Ok(resp.kvs.into_iter().next().map(kv_of))
    }

    async fn range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        revision: i64,
        limit: i64,
    ) -> Result<Range, RangeError> {
        let mut g = GetOptions::new().with_range_end(end);
        if limit > 0 {
            g = g.with_limit(limit);
        }
        if revision > 0 {
            g = g.with_revision(revision);
        }
        let resp = self.kv.get(start, g).await.map_err(|e| match e {
            bosun_client::Error::Compacted { .. } => RangeError::Compacted,
            bosun_client::Error::FutureRevision => RangeError::FutureRevision,
            other => RangeError::Other(from_store(other)),
        })?;
        Ok(Range {
            revision: resp.header.as_ref().map_or(0, |h| h.revision),
            more: resp.more,
            count: resp.count,
            kvs: resp.kvs.into_iter().map(kv_of).collect(),
        })
    }

    async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
        guard: Option<Guard<'_>>,
    ) -> Result<Created, Status> {
        let mut put = PutOptions::new();
        if let Some(id) = lease {
            put = put.with_lease(id);
        }
        let mut txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, put)]);
        if let Some(g) = guard {
            // On failure, read the guard's key: unchanged means the object exists.
            txn = txn
                .when([Compare::mod_revision(g.key, CompareOp::Equal, g.revision)])
                .or_else([TxnOp::get(g.key, GetOptions::new())]);
        }
        let resp = self.kv.txn(txn).await.map_err(from_store)?;
        if resp.succeeded {
            return Ok(Created::At(resp.header.map_or(0, |h| h.revision)));
        }
        let Some(g) = guard else {
            return Ok(Created::Exists);
        };
        let guard_now = resp.responses.into_iter().find_map(|r| match r.response {
            Some(Response::ResponseRange(range)) => {
                Some(range.kvs.first().map(|kv| kv.mod_revision))
            }
            _ => None,
        });
        Ok(if guard_now == Some(Some(g.revision)) {
            Created::Exists
        } else {
            Created::GuardChanged
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: i64,
    ) -> Result<Option<i64>, Status> {
        self.txn_if(
            Compare::mod_revision(key, CompareOp::Equal, revision),
            TxnOp::put(key, value, PutOptions::new().with_ignore_lease()),
        )
        .await
    }

    async fn delete(&self, key: &str, revision: i64) -> Result<Option<i64>, Status> {
        self.txn_if(
            Compare::mod_revision(key, CompareOp::Equal, revision),
            TxnOp::delete(key, DeleteOptions::new()),
        )
        .await
    }

    async fn grant_lease(&self, ttl: i64) -> Result<i64, Status> {
        let resp = self.kv.lease_grant(ttl, 0).await.map_err(from_store)?;
        Ok(resp.id)
    }
}
