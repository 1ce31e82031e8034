//! Key-value operations: put, get, delete, txn, compact, and their options.

use bosun_proto::etcdserverpb as pb;
use bosun_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use bosun_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use bosun_proto::etcdserverpb::request_op::Request;

use crate::client::{Client, Idempotency};
use crate::error::Error;

/// The end of the range holding every key that starts with `prefix`, by etcd's rule: drop
/// trailing `0xff` bytes, then increment the last byte. An empty or all-`0xff` prefix has no
/// such end and yields `[0]`, which as a `range_end` means "to the end of the keyspace".
pub fn prefix_end(prefix: impl AsRef<[u8]>) -> Vec<u8> {
    let mut end = prefix.as_ref().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Which keys an operation covers, relative to its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Just the key.
    #[default]
    Single,
    /// Every key with the key as prefix (all keys when the key is empty).
    Prefix,
    /// Every key `>=` the key (all keys when the key is empty).
    FromKey,
    /// `[key, end)`.
    End(Vec<u8>),
}

impl RangeSpec {
    /// `(key, range_end)` as etcd's clients put them on the wire.
    pub(crate) fn resolve(&self, key: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
        match self {
            RangeSpec::Single => (key, Vec::new()),
            RangeSpec::Prefix if key.is_empty() => (vec![0], vec![0]),
            RangeSpec::Prefix => {
                let end = prefix_end(&key);
                (key, end)
            }
            RangeSpec::FromKey if key.is_empty() => (vec![0], vec![0]),
            RangeSpec::FromKey => (key, vec![0]),
            RangeSpec::End(end) => (key, end.clone()),
        }
    }
}

/// Options of [`Client::put`] and [`TxnOp::put`].
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    lease: i64,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl PutOptions {
    /// No options: a plain put without lease.
    pub fn new() -> Self {
        Self::default()
    }
    /// Attaches the key to a lease.
    pub fn with_lease(mut self, lease: i64) -> Self {
        self.lease = lease;
        self
    }
    /// Returns the previous key-value in the response.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Keeps the current value (fails with [`Error::KeyNotFound`] if the key is missing).
    pub fn with_ignore_value(mut self) -> Self {
        self.ignore_value = true;
        self
    }
    /// Keeps the current lease (fails with [`Error::KeyNotFound`] if the key is missing).
    pub fn with_ignore_lease(mut self) -> Self {
        self.ignore_lease = true;
        self
    }
    /// The wire request.
    pub fn to_request(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> pb::PutRequest {
        pb::PutRequest {
            key: key.into(),
            value: value.into(),
            lease: self.lease,
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

/// Options of [`Client::get`] and [`TxnOp::get`].
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    range: RangeSpec,
    limit: i64,
    revision: i64,
    sort_order: SortOrder,
    sort_target: SortTarget,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
    min_mod_revision: i64,
    max_mod_revision: i64,
    min_create_revision: i64,
    max_create_revision: i64,
}

impl GetOptions {
    /// No options: a linearizable read of one key at the latest revision.
    pub fn new() -> Self {
        Self::default()
    }
    /// Reads every key starting with the key ([`prefix_end`]); an empty key reads all keys.
    pub fn with_prefix(mut self) -> Self {
        self.range = RangeSpec::Prefix;
        self
    }
    /// Reads every key `>=` the key.
    pub fn with_from_key(mut self) -> Self {
        self.range = RangeSpec::FromKey;
        self
    }
    /// Reads `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = RangeSpec::End(end.into());
        self
    }
    /// Returns at most `limit` keys (0 = no limit); `more` in the response tells if some
    /// were left out.
    pub fn with_limit(mut self, limit: i64) -> Self {
        self.limit = limit;
        self
    }
    /// Reads at this revision (0 = latest).
    pub fn with_revision(mut self, revision: i64) -> Self {
        self.revision = revision;
        self
    }
    /// Sorts the result.
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.sort_target = target;
        self.sort_order = order;
        self
    }
    /// Serves the read from the member's local state, without a quorum round (may be stale).
    pub fn with_serializable(mut self) -> Self {
        self.serializable = true;
        self
    }
    /// Returns keys without values.
    pub fn with_keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
    /// Returns only the count.
    pub fn with_count_only(mut self) -> Self {
        self.count_only = true;
        self
    }
    /// Only keys whose mod revision is `>= rev`.
    pub fn with_min_mod_revision(mut self, rev: i64) -> Self {
        self.min_mod_revision = rev;
        self
    }
    /// Only keys whose mod revision is `<= rev`.
    pub fn with_max_mod_revision(mut self, rev: i64) -> Self {
        self.max_mod_revision = rev;
        self
    }
    /// Only keys whose create revision is `>= rev`.
    pub fn with_min_create_revision(mut self, rev: i64) -> Self {
        self.min_create_revision = rev;
        self
    }
    /// Only keys whose create revision is `<= rev`.
    pub fn with_max_create_revision(mut self, rev: i64) -> Self {
        self.max_create_revision = rev;
        self
    }
    /// The wire request.
    pub fn to_request(&self, key: impl Into<Vec<u8>>) -> pb::RangeRequest {
        let (key, range_end) = self.range.resolve(key.into());
        pb::RangeRequest {
            key,
            range_end,
            limit: self.limit,
            revision: self.revision,
            sort_order: self.sort_order as i32,
            sort_target: self.sort_target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        }
    }
}

/// Options of [`Client::delete`] and [`TxnOp::delete`].
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    range: RangeSpec,
    prev_kv: bool,
}

impl DeleteOptions {
    /// No options: delete one key.
    pub fn new() -> Self {
        Self::default()
    }
    /// Deletes every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.range = RangeSpec::Prefix;
        self
    }
    /// Deletes every key `>=` the key.
    pub fn with_from_key(mut self) -> Self {
        self.range = RangeSpec::FromKey;
        self
    }
    /// Deletes `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = RangeSpec::End(end.into());
        self
    }
    /// Returns the deleted key-values in the response.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// The wire request.
    pub fn to_request(&self, key: impl Into<Vec<u8>>) -> pb::DeleteRangeRequest {
        let (key, range_end) = self.range.resolve(key.into());
        pb::DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.prev_kv,
        }
    }
}

/// How a [`Compare`] relates the key's attribute to the given operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `>`
    Greater,
    /// `<`
    Less,
}

impl CompareOp {
    fn to_proto(self) -> CompareResult {
        match self {
            CompareOp::Equal => CompareResult::Equal,
            CompareOp::NotEqual => CompareResult::NotEqual,
            CompareOp::Greater => CompareResult::Greater,
            CompareOp::Less => CompareResult::Less,
        }
    }
}

/// One condition of a [`Txn`]: an attribute of a key (or of every key in a range) compared
/// to an operand. A missing key has version, create and mod revision 0, lease 0, and no value.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(pb::Compare);

impl Compare {
    fn new(
        key: impl Into<Vec<u8>>,
        op: CompareOp,
        target: CompareTarget,
        operand: TargetUnion,
    ) -> Self {
        Compare(pb::Compare {
            result: op.to_proto() as i32,
            target: target as i32,
            key: key.into(),
            range_end: Vec::new(),
            target_union: Some(operand),
        })
    }
    /// Compares the key's version (number of puts since creation; 0 = absent).
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Version,
            TargetUnion::Version(version),
        )
    }
    /// Compares the key's create revision (0 = absent).
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Create,
            TargetUnion::CreateRevision(revision),
        )
    }
    /// Compares the key's last modification revision (0 = absent).
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Mod,
            TargetUnion::ModRevision(revision),
        )
    }
    /// Compares the key's value, bytewise.
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Self::new(
            key,
            op,
            CompareTarget::Value,
            TargetUnion::Value(value.into()),
        )
    }
    /// Compares the key's lease ID (0 = none).
    pub fn lease(key: impl Into<Vec<u8>>, op: CompareOp, lease: i64) -> Self {
        Self::new(key, op, CompareTarget::Lease, TargetUnion::Lease(lease))
    }
    /// Applies the comparison to every key in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.0.range_end = end.into();
        self
    }
    /// Applies the comparison to every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        let key = std::mem::take(&mut self.0.key);
        let (key, end) = RangeSpec::Prefix.resolve(key);
        self.0.key = key;
        self.0.range_end = end;
        self
    }
    /// The wire form.
    pub fn into_proto(self) -> pb::Compare {
        self.0
    }
}

impl From<Compare> for pb::Compare {
    fn from(c: Compare) -> Self {
        c.0
    }
}

/// One operation of a [`Txn`] branch.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOp(pb::RequestOp);

impl TxnOp {
    /// A put.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, opts: PutOptions) -> Self {
        TxnOp(pb::RequestOp {
            request: Some(Request::RequestPut(opts.to_request(key, value))),
        })
    }
    /// A range read.
    pub fn get(key: impl Into<Vec<u8>>, opts: GetOptions) -> Self {
        TxnOp(pb::RequestOp {
            request: Some(Request::RequestRange(opts.to_request(key))),
        })
    }
    /// A delete.
    pub fn delete(key: impl Into<Vec<u8>>, opts: DeleteOptions) -> Self {
        TxnOp(pb::RequestOp {
            request: Some(Request::RequestDeleteRange(opts.to_request(key))),
        })
    }
    /// A nested txn.
    pub fn txn(txn: Txn) -> Self {
        TxnOp(pb::RequestOp {
            request: Some(Request::RequestTxn(txn.into_request())),
        })
    }
    /// The wire form.
    pub fn into_proto(self) -> pb::RequestOp {
        self.0
    }
}

impl From<pb::RequestOp> for TxnOp {
    fn from(op: pb::RequestOp) -> Self {
        TxnOp(op)
    }
}

impl From<TxnOp> for pb::RequestOp {
    fn from(op: TxnOp) -> Self {
        op.0
    }
}

/// A transaction: if every comparison holds, run the `and_then` operations, else the
/// `or_else` ones, atomically at one revision.
///
/// ```
/// use bosun_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
/// // Create "k" only if it does not exist; otherwise read it.
/// let txn = Txn::new()
///     .when([Compare::create_revision("k", CompareOp::Equal, 0)])
///     .and_then([TxnOp::put("k", "v", PutOptions::new())])
///     .or_else([TxnOp::get("k", GetOptions::new())]);
/// assert_eq!(txn.into_request().compare.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    compare: Vec<pb::Compare>,
    success: Vec<pb::RequestOp>,
    failure: Vec<pb::RequestOp>,
}

impl Txn {
    /// An empty transaction (no conditions: `and_then` always runs).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds conditions (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compare
            .extend(compares.into_iter().map(Compare::into_proto));
        self
    }
    /// Adds operations to run when the conditions hold.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops.into_iter().map(TxnOp::into_proto));
        self
    }
    /// Adds operations to run when a condition fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops.into_iter().map(TxnOp::into_proto));
        self
    }
    /// The wire request.
    pub fn into_request(self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compare,
            success: self.success,
            failure: self.failure,
        }
    }
}

impl From<Txn> for pb::TxnRequest {
    fn from(t: Txn) -> Self {
        t.into_request()
    }
}

/// True when the txn only reads (in both branches, recursively), so it may be retried.
pub(crate) fn txn_is_read_only(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(inner)) => txn_is_read_only(inner),
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
        })
}

/// A range delivered in parts; see [`Client::range_stream_raw`].
#[derive(Debug)]
pub struct RangeStream {
    inner: tonic::Streaming<pb::RangeStreamResponse>,
}

impl RangeStream {
    /// The next part; `Ok(None)` at the end.
    pub async fn next_part(&mut self) -> Result<Option<pb::RangeResponse>, Error> {
        loop {
            match self.inner.message().await.map_err(Error::from)? {
                Some(pb::RangeStreamResponse {
                    range_response: Some(r),
                }) => return Ok(Some(r)),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }
}

impl futures::Stream for RangeStream {
    type Item = Result<pb::RangeResponse, Error>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let inner = &mut self.get_mut().inner;
        loop {
            match futures::Stream::poll_next(std::pin::Pin::new(&mut *inner), cx) {
                Poll::Ready(Some(Ok(pb::RangeStreamResponse {
                    range_response: Some(r),
                }))) => return Poll::Ready(Some(Ok(r))),
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status.into()))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Client {
    /// Puts `key = value`. Not retried unless provably not applied (see [`Client`]).
    pub async fn put(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        opts: PutOptions,
    ) -> Result<pb::PutResponse, Error> {
        self.put_raw(opts.to_request(key, value)).await
    }

    /// Reads a key or range. Retried on transient failures.
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        opts: GetOptions,
    ) -> Result<pb::RangeResponse, Error> {
        self.range_raw(opts.to_request(key)).await
    }

    /// Deletes a key or range. Not retried unless provably not applied.
    pub async fn delete(
        &self,
        key: impl Into<Vec<u8>>,
        opts: DeleteOptions,
    ) -> Result<pb::DeleteRangeResponse, Error> {
        self.delete_raw(opts.to_request(key)).await
    }

    /// Runs a transaction. Retried on transient failures only when it is read-only.
    pub async fn txn(&self, txn: Txn) -> Result<pb::TxnResponse, Error> {
        self.txn_raw(txn.into_request()).await
    }

    /// Compacts the history up to `revision`; with `physical`, waits until the space is
    /// reclaimed. Not retried unless provably not applied.
    pub async fn compact(
        &self,
        revision: i64,
        physical: bool,
    ) -> Result<pb::CompactionResponse, Error> {
        self.compact_raw(pb::CompactionRequest { revision, physical })
            .await
    }

    /// Sends a `RangeRequest` as is. Retried on transient failures.
    pub async fn range_raw(&self, req: pb::RangeRequest) -> Result<pb::RangeResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| {
            let req = req.clone();
            async move {
                inner
                    .kv(ch)
                    .range(req)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    /// Sends a `RangeRequest` to the `RangeStream` RPC, which returns a large range in
    /// parts (etcd 3.7+; servers without it answer `UNIMPLEMENTED`, i.e. [`Error::Other`]).
    /// Establishing the stream is retried; a stream that breaks midway is not resumed.
    pub async fn range_stream_raw(&self, req: pb::RangeRequest) -> Result<RangeStream, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| {
            let req = req.clone();
            async move {
                inner.kv(ch).range_stream(req).await.map(|r| RangeStream {
                    inner: r.into_inner(),
                })
            }
        })
        .await
    }

    /// Sends a `PutRequest` as is. Not retried unless provably not applied.
    pub async fn put_raw(&self, req: pb::PutRequest) -> Result<pb::PutResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| {
            let req = req.clone();
            async move { inner.kv(ch).put(req).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Sends a `DeleteRangeRequest` as is. Not retried unless provably not applied.
    pub async fn delete_raw(
        &self,
        req: pb::DeleteRangeRequest,
    ) -> Result<pb::DeleteRangeResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| {
            let req = req.clone();
            async move {
                inner
                    .kv(ch)
                    .delete_range(req)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    /// Sends a `TxnRequest` as is. Retried on transient failures only when read-only.
    pub async fn txn_raw(&self, req: pb::TxnRequest) -> Result<pb::TxnResponse, Error> {
        let idem = if txn_is_read_only(&req) {
            Idempotency::Idempotent
        } else {
            Idempotency::NotIdempotent
        };
        let inner = &self.inner;
        self.call(idem, |ch| {
            let req = req.clone();
            async move { inner.kv(ch).txn(req).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Sends a `CompactionRequest` as is. Not retried unless provably not applied.
    pub async fn compact_raw(
        &self,
        req: pb::CompactionRequest,
    ) -> Result<pb::CompactionResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| async move {
            inner
                .kv(ch)
                .compact(req)
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"a"), b"b".to_vec());
        assert_eq!(prefix_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(prefix_end([0x61, 0xff]), vec![0x62]);
        assert_eq!(prefix_end([0x61, 0xfe, 0xff, 0xff]), vec![0x61, 0xff]);
        assert_eq!(prefix_end([0xff, 0xff]), vec![0]);
        assert_eq!(prefix_end([0xff]), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
        assert_eq!(prefix_end([0x00]), vec![0x01]);
    }

    #[test]
    fn get_options_build_range_requests() {
        let r = GetOptions::new().to_request("k");
        assert_eq!(r.key, b"k");
        assert!(r.range_end.is_empty());

        let r = GetOptions::new()
            .with_prefix()
            .with_limit(10)
            .with_revision(7)
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_serializable()
            .with_keys_only()
            .with_min_mod_revision(1)
            .with_max_mod_revision(2)
            .with_min_create_revision(3)
            .with_max_create_revision(4)
            .to_request("/a/");
        assert_eq!(r.key, b"/a/");
        assert_eq!(r.range_end, b"/a0");
        assert_eq!(r.limit, 10);
        assert_eq!(r.revision, 7);
        assert_eq!(r.sort_target, SortTarget::Mod as i32);
        assert_eq!(r.sort_order, SortOrder::Descend as i32);
        assert!(r.serializable && r.keys_only && !r.count_only);
        assert_eq!(
            (
                r.min_mod_revision,
                r.max_mod_revision,
                r.min_create_revision,
                r.max_create_revision
            ),
            (1, 2, 3, 4)
        );

        let r = GetOptions::new().with_prefix().to_request("");
        assert_eq!((r.key, r.range_end), (vec![0], vec![0]));
        let r = GetOptions::new().with_from_key().to_request("m");
        assert_eq!((r.key, r.range_end), (b"m".to_vec(), vec![0]));
        let r = GetOptions::new()
            .with_range_end("z")
            .with_count_only()
            .to_request("a");
        assert_eq!((r.key, r.range_end), (b"a".to_vec(), b"z".to_vec()));
        assert!(r.count_only);
    }

    #[test]
    fn delete_and_put_options() {
        let d = DeleteOptions::new()
            .with_prefix()
            .with_prev_kv()
            .to_request("p");
        assert_eq!(
            (d.key, d.range_end, d.prev_kv),
            (b"p".to_vec(), b"q".to_vec(), true)
        );
        let p = PutOptions::new()
            .with_lease(5)
            .with_prev_kv()
            .to_request("k", "v");
        assert_eq!(p.lease, 5);
        assert!(p.prev_kv && !p.ignore_value && !p.ignore_lease);
        let p = PutOptions::new()
            .with_ignore_value()
            .with_ignore_lease()
            .to_request("k", "");
        assert!(p.ignore_value && p.ignore_lease);
    }

    #[test]
    fn txn_builder_produces_request() {
        let txn = Txn::new()
            .when([
                Compare::mod_revision("k", CompareOp::Equal, 5),
                Compare::value("v", CompareOp::NotEqual, "x"),
            ])
            .when([Compare::version("p/", CompareOp::Greater, 0).with_prefix()])
            .and_then([
                TxnOp::put("k", "new", PutOptions::new().with_lease(9)),
                TxnOp::delete("d", DeleteOptions::new()),
            ])
            .or_else([TxnOp::get("k", GetOptions::new())]);
        let req = txn.into_request();

        let expected = pb::TxnRequest {
            compare: vec![
                pb::Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: b"k".to_vec(),
                    range_end: vec![],
                    target_union: Some(TargetUnion::ModRevision(5)),
                },
                pb::Compare {
                    result: CompareResult::NotEqual as i32,
                    target: CompareTarget::Value as i32,
                    key: b"v".to_vec(),
                    range_end: vec![],
                    target_union: Some(TargetUnion::Value(b"x".to_vec())),
                },
                pb::Compare {
                    result: CompareResult::Greater as i32,
                    target: CompareTarget::Version as i32,
                    key: b"p/".to_vec(),
                    range_end: b"p0".to_vec(),
                    target_union: Some(TargetUnion::Version(0)),
                },
            ],
            success: vec![
                pb::RequestOp {
                    request: Some(Request::RequestPut(pb::PutRequest {
                        key: b"k".to_vec(),
                        value: b"new".to_vec(),
                        lease: 9,
                        ..Default::default()
                    })),
                },
                pb::RequestOp {
                    request: Some(Request::RequestDeleteRange(pb::DeleteRangeRequest {
                        key: b"d".to_vec(),
                        ..Default::default()
                    })),
                },
            ],
            failure: vec![pb::RequestOp {
                request: Some(Request::RequestRange(pb::RangeRequest {
                    key: b"k".to_vec(),
                    ..Default::default()
                })),
            }],
        };
        assert_eq!(req, expected);
        assert!(!txn_is_read_only(&req));
    }

    #[test]
    fn compare_constructors_and_nesting() {
        let c = Compare::create_revision("a", CompareOp::Less, 3).into_proto();
        assert_eq!(c.target, CompareTarget::Create as i32);
        assert_eq!(c.result, CompareResult::Less as i32);
        assert_eq!(c.target_union, Some(TargetUnion::CreateRevision(3)));
        let c = Compare::lease("a", CompareOp::Equal, 77)
            .with_range_end("b")
            .into_proto();
        assert_eq!(c.target, CompareTarget::Lease as i32);
        assert_eq!(c.target_union, Some(TargetUnion::Lease(77)));
        assert_eq!(c.range_end, b"b");

        let inner = Txn::new().and_then([TxnOp::get("x", GetOptions::new())]);
        let outer = Txn::new()
            .and_then([TxnOp::txn(inner.clone())])
            .or_else([TxnOp::get("y", GetOptions::new().with_prefix())])
            .into_request();
        assert!(txn_is_read_only(&outer));
        match &outer.success[0].request {
            Some(Request::RequestTxn(t)) => assert_eq!(*t, inner.into_request()),
            other => panic!("unexpected {other:?}"),
        }
        let writes = Txn::new()
            .and_then([TxnOp::txn(Txn::new().or_else([TxnOp::put(
                "k",
                "v",
                PutOptions::new(),
            )]))])
            .into_request();
        assert!(!txn_is_read_only(&writes));
    }
}
