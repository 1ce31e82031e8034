//! Decoding of commands with a bound on their nesting.
//!
//! A txn may hold txns, and a command arriving from the peer port (a forwarded write, an entry
//! of an append) is decoded by serde, which recurses once per level with no limit of its own:
//! a message of a few megabytes can nest a million levels and overflow the stack of the task
//! decoding it, which ends the member before any check runs. Batches and txns are therefore
//! decoded here, counting levels, and a command nested deeper than [`MAX_NESTING`] fails to
//! decode. The count is per thread: decoding never awaits, so the levels of one message are
//! counted on the thread that decodes it.
//!
//! The shapes below mirror the generated `TxnRequest`, `RequestOp` and `request_op::Request`
//! field for field and variant for variant, so they read exactly what those types' derived
//! `Serialize` writes (a test checks it); only the recursive edge is counted.

use std::cell::Cell;

use bosun_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, request_op,
};
use serde::{Deserialize, Deserializer};

use super::Command;
use crate::limits::MAX_NESTING;

thread_local! {
    /// Levels of batches and txns being decoded on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One level of nesting, left when dropped (also when decoding fails).
struct Level;

impl Level {
    fn enter<E: serde::de::Error>() -> Result<Level, E> {
        DEPTH.with(|d| {
            let depth = d.get();
            if depth >= MAX_NESTING {
                // postcard drops the message of a custom error: say it here.
                tracing::warn!(limit = MAX_NESTING, "refused a command nested too deep");
                return Err(E::custom(format_args!(
                    "command nested deeper than {MAX_NESTING} levels"
                )));
            }
            d.set(depth + 1);
            Ok(Level)
        })
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Decodes the commands of a [`Command::Batch`] as one level.
pub(super) fn batch<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Command>, D::Error> {
    let _level = Level::enter::<D::Error>()?;
    Vec::<Command>::deserialize(d)
}

/// Decodes a txn, each txn nested in it one level deeper.
pub(super) fn txn<'de, D: Deserializer<'de>>(d: D) -> Result<TxnRequest, D::Error> {
    let _level = Level::enter::<D::Error>()?;
    Txn::deserialize(d).map(TxnRequest::from)
}

/// `TxnRequest`.
#[derive(Deserialize)]
struct Txn {
    compare: Vec<Compare>,
    success: Vec<Op>,
    failure: Vec<Op>,
}

/// `RequestOp`.
#[derive(Deserialize)]
struct Op {
    request: Option<Request>,
}

/// `request_op::Request`, with its variants' names.
#[derive(Deserialize)]
#[allow(clippy::enum_variant_names)]
enum Request {
    RequestRange(RangeRequest),
    RequestPut(PutRequest),
    RequestDeleteRange(DeleteRangeRequest),
    RequestTxn(#[serde(deserialize_with = "txn")] TxnRequest),
}

impl From<Txn> for TxnRequest {
    fn from(t: Txn) -> Self {
        let ops = |ops: Vec<Op>| ops.into_iter().map(RequestOp::from).collect();
        TxnRequest {
            compare: t.compare,
            success: ops(t.success),
            failure: ops(t.failure),
        }
    }
}

impl From<Op> for RequestOp {
    fn from(op: Op) -> Self {
        use request_op::Request as R;
        RequestOp {
            request: op.request.map(|r| match r {
                Request::RequestRange(r) => R::RequestRange(r),
                Request::RequestPut(p) => R::RequestPut(p),
                Request::RequestDeleteRange(d) => R::RequestDeleteRange(d),
                Request::RequestTxn(t) => R::RequestTxn(t),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bosun_proto::etcdserverpb::compare;

    use super::*;
    use crate::apply::{CommandResult, Limits, check_txn, execute};

    /// The log's and the peer messages' encoding.
    fn encode<T: serde::Serialize>(v: &T) -> postcard::Result<Vec<u8>> {
        postcard::to_stdvec(v)
    }

    fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> postcard::Result<T> {
        postcard::from_bytes(b)
    }

    fn nest(depth: usize, inner: TxnRequest) -> TxnRequest {
        (1..depth).fold(inner, |t, _| TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(t)),
            }],
            ..TxnRequest::default()
        })
    }

    /// Every kind of operation, in both branches, with a compare: what the derived encoding
    /// writes, the mirror reads back unchanged.
    #[test]
    fn txns_decode_as_the_generated_types_encode_them() {
        let op = |r| RequestOp { request: Some(r) };
        let inner = TxnRequest {
            compare: vec![Compare {
                key: b"c".to_vec(),
                range_end: b"d".to_vec(),
                result: compare::CompareResult::Greater as i32,
                target: compare::CompareTarget::Value as i32,
                target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
            }],
            success: vec![
                op(request_op::Request::RequestRange(RangeRequest {
                    key: b"r".to_vec(),
                    limit: 3,
                    ..RangeRequest::default()
                })),
                op(request_op::Request::RequestPut(PutRequest {
                    key: b"p".to_vec(),
                    value: b"value".to_vec(),
                    lease: 7,
                    prev_kv: true,
                    ..PutRequest::default()
                })),
                RequestOp { request: None },
            ],
            failure: vec![op(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b"x".to_vec(),
                    range_end: b"y".to_vec(),
                    prev_kv: true,
                },
            ))],
        };
        let cmd = Command::Batch(vec![
            Command::Txn(nest(5, inner.clone())),
            Command::Txn(inner),
        ]);
        let bytes = encode(&cmd).unwrap();
        let back: Command = decode(&bytes).unwrap();
        assert_eq!(encode(&back).unwrap(), bytes);
        let Command::Batch(b) = back else {
            panic!("not a batch")
        };
        assert!(matches!(&b[1], Command::Txn(t) if t.success.len() == 3 && t.compare.len() == 1));
    }

    #[test]
    fn nesting_is_bounded_by_batches_and_txns_together() {
        let txn = |depth| Command::Txn(nest(depth, TxnRequest::default()));
        let at_limit = encode(&txn(MAX_NESTING)).unwrap();
        assert!(decode::<Command>(&at_limit).is_ok());
        let over = encode(&txn(MAX_NESTING + 1)).unwrap();
        assert!(decode::<Command>(&over).is_err());
        // A batch is a level too.
        let batch = encode(&Command::Batch(vec![txn(MAX_NESTING)])).unwrap();
        assert!(decode::<Command>(&batch).is_err());
        let batch = encode(&Command::Batch(vec![txn(MAX_NESTING - 1)])).unwrap();
        assert!(decode::<Command>(&batch).is_ok());
        // Levels are left again after a failure: the next message decodes from zero.
        assert!(decode::<Command>(&over).is_err());
        assert!(decode::<Command>(&at_limit).is_ok());
        DEPTH.with(|d| assert_eq!(d.get(), 0));
    }

    /// Siblings do not add up: only the depth counts.
    #[test]
    fn wide_txns_are_not_deep() {
        let wide = TxnRequest {
            success: (0..1000)
                .map(|_| RequestOp {
                    request: Some(request_op::Request::RequestTxn(nest(
                        MAX_NESTING - 1,
                        TxnRequest::default(),
                    ))),
                })
                .collect(),
            ..TxnRequest::default()
        };
        let bytes = encode(&Command::Txn(wide)).unwrap();
        assert!(decode::<Command>(&bytes).is_ok());
    }

    /// A txn at the nesting limit is decoded, checked, applied, answered and dropped within
    /// half the stack of a runtime worker (2 MiB), in a debug build, whose frames are the
    /// largest.
    #[test]
    fn a_txn_at_the_limit_fits_the_stack() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let put = RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: b"deep".to_vec(),
                        ..PutRequest::default()
                    })),
                };
                let inner = TxnRequest {
                    success: vec![put],
                    ..TxnRequest::default()
                };
                let bytes = encode(&Command::Txn(nest(MAX_NESTING, inner))).unwrap();
                let cmd: Command = decode(&bytes).unwrap();
                let Command::Txn(t) = &cmd else {
                    panic!("not a txn")
                };
                let budget = Limits {
                    max_txn_ops: 1 << 20,
                };
                check_txn(t, budget).unwrap();
                let _ = prost::Message::encoded_len(t);
                let dbs = crate::storage::open(&path).unwrap();
                let mvcc = crate::mvcc::Mvcc::open(dbs.state).unwrap();
                let mut tx = mvcc.write();
                let r = execute(&mut tx, &cmd);
                tx.commit().unwrap();
                assert!(matches!(r, CommandResult::Txn(_)), "{r:?}");
                let _ = encode(&r).unwrap();
                drop((cmd, r));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
