//! Commands checked and executed against a real MVCC store on RocksDB in a temporary
//! directory.

use bosun_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, compare, request_op, response_op,
};
use bosun_proto::mvccpb::KeyValue;

use super::*;
use crate::mvcc::{KeyRange, Mvcc};

/// A fresh store.
struct Store {
    _dir: tempfile::TempDir,
    mvcc: Mvcc,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dbs = crate::storage::open(dir.path()).unwrap();
        let mvcc = Mvcc::open(dbs.state).unwrap();
        Store { _dir: dir, mvcc }
    }

    /// Executes `cmd` as the state machine does: one command of one write transaction.
    fn run(&self, cmd: Command) -> CommandResult {
        let mut tx = self.mvcc.write();
        let r = execute(&mut tx, &cmd);
        tx.commit().unwrap();
        r
    }

    /// Like [`Store::run`], for a command that must succeed.
    fn ok(&self, cmd: Command) -> CommandResult {
        match self.run(cmd) {
            CommandResult::Error(e) => panic!("refused: {e}"),
            r => r,
        }
    }

    fn err(&self, cmd: Command) -> EtcdError {
        match self.run(cmd) {
            CommandResult::Error(e) => e,
            r => panic!("not refused: {r:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        self.get_at(key, 0).unwrap()
    }

    fn get_at(&self, key: &str, revision: i64) -> EtcdResult<Option<KeyValue>> {
        Ok(self
            .mvcc
            .range(&RangeRequest {
                key: key.as_bytes().to_vec(),
                revision,
                ..RangeRequest::default()
            })?
            .kvs
            .pop())
    }

    fn value(&self, key: &str) -> Option<String> {
        self.get(key).map(|kv| String::from_utf8(kv.value).unwrap())
    }

    /// Every live key with its value, revisions, version and lease.
    fn everything(&self) -> Vec<KeyValue> {
        self.mvcc
            .range(&RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..RangeRequest::default()
            })
            .unwrap()
            .kvs
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(put(key, value))),
    }
}

fn delete(key: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        prev_kv: true,
    }
}

fn delete_op(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(delete(key, end))),
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.as_bytes().to_vec(),
            ..RangeRequest::default()
        })),
    }
}

fn txn_op(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestTxn(t)),
    }
}

fn value_is(key: &str, value: &str) -> Compare {
    Compare {
        key: key.as_bytes().to_vec(),
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        target_union: Some(compare::TargetUnion::Value(value.as_bytes().to_vec())),
        ..Compare::default()
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn revision(r: &CommandResult) -> i64 {
    let h = match r {
        CommandResult::Put(p) => &p.header,
        CommandResult::DeleteRange(d) => &d.header,
        CommandResult::Txn(t) => &t.header,
        CommandResult::Compact(c) => &c.header,
        CommandResult::LeaseGrant(g) => &g.header,
        CommandResult::LeaseRevoke(r) => &r.header,
        other => panic!("no header in {other:?}"),
    };
    h.as_ref().unwrap().revision
}

const LIMITS: Limits = Limits {
    max_txn_ops: crate::limits::DEFAULT_MAX_TXN_OPS,
};

#[test]
fn puts_and_deletes_make_revisions_as_etcd() {
    let s = Store::new();
    assert_eq!(s.mvcc.rev(), 1, "an empty store is at revision 1");
    let r = s.ok(Command::Put(put("a", "1")));
    assert_eq!(revision(&r), 2);
    let r = s.ok(Command::Put(PutRequest {
        prev_kv: true,
        ..put("a", "2")
    }));
    assert_eq!(revision(&r), 3);
    let CommandResult::Put(p) = r else { panic!() };
    assert_eq!(p.prev_kv.unwrap().value, b"1");
    let a = s.get("a").unwrap();
    assert_eq!(
        (a.create_revision, a.mod_revision, a.version),
        (2, 3, 2),
        "{a:?}"
    );

    s.ok(Command::Put(put("b1", "x")));
    s.ok(Command::Put(put("b2", "y")));
    let r = s.ok(Command::DeleteRange(delete("b", "c")));
    let CommandResult::DeleteRange(d) = &r else {
        panic!()
    };
    assert_eq!(d.deleted, 2);
    assert_eq!(d.prev_kvs.len(), 2);
    assert_eq!(revision(&r), 6, "one revision for both deletions");
    assert_eq!(s.value("b1"), None);
    // Deleting nothing makes no revision.
    let r = s.ok(Command::DeleteRange(delete("zz", "")));
    assert_eq!((revision(&r), s.mvcc.rev()), (6, 6));
    // A key put again starts a new life.
    s.ok(Command::Put(put("b1", "again")));
    let b1 = s.get("b1").unwrap();
    assert_eq!((b1.create_revision, b1.version), (7, 1));
    // The old value is still there at its revision.
    assert_eq!(s.get_at("b1", 5).unwrap().unwrap().value, b"x");
}

#[test]
fn a_refused_put_changes_nothing() {
    let s = Store::new();
    let keep = |key: &str| PutRequest {
        ignore_value: true,
        ..put(key, "")
    };
    assert_eq!(s.err(Command::Put(keep("missing"))), EtcdError::KeyNotFound);
    let with_lease = PutRequest {
        lease: 42,
        ..put("k", "v")
    };
    assert_eq!(s.err(Command::Put(with_lease)), EtcdError::LeaseNotFound);
    assert_eq!(s.mvcc.rev(), 1);
    assert!(s.everything().is_empty());
    // Keeping the value of a key that exists.
    s.ok(Command::Put(put("k", "v")));
    s.ok(Command::Put(keep("k")));
    let k = s.get("k").unwrap();
    assert_eq!((k.value.as_slice(), k.version), (&b"v"[..], 2));
}

#[test]
fn txn_compares_see_the_store_as_it_was_before_the_txn() {
    let s = Store::new();
    s.ok(Command::Put(put("a", "1")));
    // The outer txn changes a; the nested txn's compare on a still sees 1, as etcd evaluates
    // every compare on the path before any operation runs. Reads inside see the txn's writes.
    let t = txn(
        vec![value_is("a", "1")],
        vec![
            put_op("a", "2"),
            range_op("a"),
            txn_op(txn(
                vec![value_is("a", "1")],
                vec![put_op("nested", "then")],
                vec![put_op("nested", "else")],
            )),
        ],
        vec![put_op("failed", "x")],
    );
    let r = s.ok(Command::Txn(t));
    let CommandResult::Txn(resp) = &r else {
        panic!()
    };
    assert!(resp.succeeded);
    assert_eq!(revision(&r), 3, "a txn is one revision");
    let Some(response_op::Response::ResponseRange(read)) = &resp.responses[1].response else {
        panic!("{:?}", resp.responses[1])
    };
    assert_eq!(read.kvs[0].value, b"2", "a read in a txn sees its writes");
    let Some(response_op::Response::ResponseTxn(inner)) = &resp.responses[2].response else {
        panic!("{:?}", resp.responses[2])
    };
    assert!(inner.succeeded);
    assert_eq!(s.value("nested").as_deref(), Some("then"));
    assert_eq!(s.value("failed"), None);
    // Both writes share the revision, in order.
    let nested = s.get("nested").unwrap();
    assert_eq!(nested.mod_revision, 3);

    // A compare that fails takes the else branch; a missing key has no value to compare.
    let r = s.ok(Command::Txn(txn(
        vec![value_is("missing", "")],
        vec![put_op("then", "x")],
        vec![put_op("else", "x")],
    )));
    let CommandResult::Txn(resp) = r else {
        panic!()
    };
    assert!(!resp.succeeded);
    assert!(s.value("then").is_none() && s.value("else").is_some());
}

#[test]
fn a_txn_applies_whole_or_not_at_all() {
    let s = Store::new();
    let t = txn(
        vec![],
        vec![
            put_op("first", "x"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    ignore_lease: true,
                    ..put("missing", "")
                })),
            },
        ],
        vec![],
    );
    assert_eq!(s.err(Command::Txn(t)), EtcdError::KeyNotFound);
    assert_eq!(s.value("first"), None);
    assert_eq!(s.mvcc.rev(), 1);
}

#[test]
fn check_txn_applies_etcds_duplicate_key_rules() {
    let check = |t: TxnRequest| check_txn(&t, LIMITS);
    assert_eq!(
        check(txn(
            vec![],
            vec![put_op("k", "1"), put_op("k", "2")],
            vec![]
        )),
        Err(EtcdError::DuplicateKey)
    );
    assert_eq!(
        check(txn(
            vec![],
            vec![put_op("k2", "1"), delete_op("k", "l")],
            vec![]
        )),
        Err(EtcdError::DuplicateKey),
        "a put inside a deleted range"
    );
    // Then and else exclude each other.
    assert_eq!(
        check(txn(vec![], vec![put_op("k", "1")], vec![put_op("k", "2")])),
        Ok(())
    );
    let nested = |then: &str, other: &str| {
        txn_op(txn(vec![], vec![put_op(then, "")], vec![put_op(other, "")]))
    };
    assert_eq!(
        check(txn(vec![], vec![nested("k", "k")], vec![])),
        Ok(()),
        "the same key in then and else of a nested txn"
    );
    assert_eq!(
        check(txn(vec![], vec![nested("k", "x"), put_op("k", "")], vec![])),
        Err(EtcdError::DuplicateKey),
        "a nested put and an outer put of one key"
    );
    assert_eq!(
        check(txn(
            vec![],
            vec![nested("k", "x"), delete_op("a", "z")],
            vec![]
        )),
        Err(EtcdError::DuplicateKey),
        "a nested put inside an outer delete"
    );
    assert_eq!(
        check(txn(
            vec![],
            vec![nested("k", "x"), nested("y", "k")],
            vec![]
        )),
        Err(EtcdError::DuplicateKey),
        "two nested txns putting one key"
    );
    // Deletes may overlap each other.
    assert_eq!(
        check(txn(
            vec![],
            vec![delete_op("a", "c"), delete_op("b", "d")],
            vec![]
        )),
        Ok(())
    );
}

#[test]
fn check_txn_applies_etcds_limits_and_key_rules() {
    let check = |t: TxnRequest| check_txn(&t, Limits { max_txn_ops: 3 });
    let puts = |n: usize| (0..n).map(|i| put_op(&format!("k{i}"), "")).collect();
    assert_eq!(check(txn(vec![], puts(3), vec![])), Ok(()));
    assert_eq!(
        check(txn(vec![], puts(4), vec![])),
        Err(EtcdError::TooManyOps)
    );
    // A nested txn gets what its parent leaves: 3 - 2 = 1 operation per list.
    let inner = |n| txn_op(txn(vec![], puts(n), vec![]));
    assert_eq!(
        check(txn(vec![], vec![inner(1), put_op("x", "")], vec![])),
        Ok(())
    );
    assert_eq!(
        check(txn(vec![], vec![inner(2), put_op("x", "")], vec![])),
        Err(EtcdError::TooManyOps)
    );
    let empty_compare = Compare::default();
    assert_eq!(
        check(txn(vec![empty_compare], vec![], vec![])),
        Err(EtcdError::EmptyKey)
    );
    assert_eq!(
        check(txn(vec![], vec![range_op("")], vec![])),
        Err(EtcdError::EmptyKey)
    );
    assert_eq!(
        check(txn(vec![], vec![], vec![delete_op("", "")])),
        Err(EtcdError::EmptyKey)
    );
    let with_value = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            ignore_value: true,
            ..put("k", "v")
        })),
    };
    assert_eq!(
        check(txn(vec![], vec![with_value], vec![])),
        Err(EtcdError::ValueProvided)
    );
}

#[test]
fn leases_hold_keys_until_revoked() {
    let s = Store::new();
    let grant = |id, ttl| Command::LeaseGrant(LeaseGrantRequest { id, ttl });
    let r = s.ok(grant(7, 60));
    assert_eq!(revision(&r), 1, "a grant changes no key");
    assert_eq!(s.err(grant(7, 30)), EtcdError::LeaseExist);
    s.ok(Command::Put(PutRequest {
        lease: 7,
        ..put("held/1", "x")
    }));
    s.ok(Command::Put(PutRequest {
        lease: 7,
        ..put("held/2", "y")
    }));
    s.ok(Command::Put(PutRequest {
        lease: 7,
        ..put("moved", "z")
    }));
    // Put again without the lease: the key leaves it.
    s.ok(Command::Put(put("moved", "z2")));
    assert_eq!(s.get("held/1").unwrap().lease, 7);
    let (ttl, mut keys) = s.mvcc.lease(7).unwrap();
    keys.sort();
    assert_eq!(ttl, 60);
    assert_eq!(keys, vec![b"held/1".to_vec(), b"held/2".to_vec()]);

    let before = s.mvcc.rev();
    let r = s.ok(Command::LeaseRevoke(LeaseRevokeRequest { id: 7 }));
    assert_eq!(revision(&r), before + 1, "one revision deletes every key");
    assert_eq!(s.value("held/1"), None);
    assert_eq!(s.value("held/2"), None);
    assert_eq!(s.value("moved").as_deref(), Some("z2"));
    assert!(s.mvcc.lease(7).is_none());
    assert_eq!(
        s.err(Command::LeaseRevoke(LeaseRevokeRequest { id: 7 })),
        EtcdError::LeaseNotFound
    );
    assert_eq!(
        s.err(Command::Put(PutRequest {
            lease: 7,
            ..put("late", "")
        })),
        EtcdError::LeaseNotFound
    );
}

#[test]
fn compaction_drops_history_below_its_revision() {
    let s = Store::new();
    for v in ["1", "2", "3"] {
        s.ok(Command::Put(put("k", v)));
    }
    s.ok(Command::Put(put("gone", "x")));
    s.ok(Command::DeleteRange(delete("gone", "")));
    let compact = |revision| {
        Command::Compact(CompactionRequest {
            revision,
            physical: false,
        })
    };
    assert_eq!(s.err(compact(100)), EtcdError::FutureRev);
    assert_eq!(s.get_at("k", 2).unwrap().unwrap().value, b"1");
    s.ok(compact(4));
    assert_eq!(s.mvcc.compact_rev(), 4);
    assert_eq!(s.get_at("k", 3).unwrap_err(), EtcdError::Compacted);
    assert_eq!(s.get_at("k", 4).unwrap().unwrap().value, b"3");
    assert_eq!(s.value("k").as_deref(), Some("3"));
    assert_eq!(s.err(compact(4)), EtcdError::Compacted);
    assert_eq!(s.err(compact(2)), EtcdError::Compacted);
    let (events, _) = s
        .mvcc
        .history(KeyRange::new(b"\0", b"\0"), 4, false, 100)
        .unwrap();
    let revs: Vec<i64> = events.iter().map(|e| e.rev).collect();
    assert_eq!(revs, vec![4, 5, 6]);
    assert_eq!(
        s.mvcc
            .history(KeyRange::new(b"\0", b"\0"), 3, false, 100)
            .unwrap_err(),
        EtcdError::Compacted
    );
}

#[test]
fn batches_and_alarms_are_the_state_machines() {
    let s = Store::new();
    let batch = Command::Batch(vec![Command::Put(put("a", "1"))]);
    assert!(matches!(s.err(batch), EtcdError::Internal(_)));
    assert_eq!(s.value("a"), None);
    assert_eq!(s.mvcc.rev(), 1);
}

/// Every kind of command, some refused.
fn workload() -> Vec<Command> {
    let mut cmds = vec![Command::LeaseGrant(LeaseGrantRequest { id: 5, ttl: 10 })];
    for i in 0..30 {
        let key = format!("k{}", i % 7);
        cmds.push(match i % 6 {
            0 => Command::Put(put(&key, &format!("v{i}"))),
            1 => Command::Put(PutRequest {
                lease: 5,
                prev_kv: true,
                ..put(&key, "leased")
            }),
            2 => Command::DeleteRange(delete("k3", "k5")),
            3 => Command::Txn(txn(
                vec![value_is("k0", "v0")],
                vec![put_op(&key, "then"), range_op("k")],
                vec![delete_op(&key, ""), put_op("else", &format!("{i}"))],
            )),
            4 => Command::Put(PutRequest {
                ignore_value: true,
                ..put(&format!("absent{i}"), "")
            }),
            _ => Command::Compact(CompactionRequest {
                revision: i64::from(i) / 2,
                physical: false,
            }),
        });
    }
    cmds.push(Command::LeaseRevoke(LeaseRevokeRequest { id: 5 }));
    cmds.push(Command::Put(put("last", "x")));
    cmds
}

/// Applying is deterministic: the same commands on two fresh stores give the same results,
/// the same revisions and the same history.
#[test]
fn the_same_commands_make_the_same_store() {
    let run = || {
        let s = Store::new();
        let results: Vec<CommandResult> = workload().into_iter().map(|c| s.run(c)).collect();
        let refused = results
            .iter()
            .filter(|r| matches!(r, CommandResult::Error(_)))
            .count();
        let results: Vec<Vec<u8>> = results
            .iter()
            .map(|r| postcard::to_stdvec(r).unwrap())
            .collect();
        let history = s
            .mvcc
            .history(
                KeyRange::new(b"\0", b"\0"),
                s.mvcc.compact_rev(),
                true,
                10_000,
            )
            .unwrap()
            .0;
        let history: Vec<(i64, Vec<u8>)> = history
            .iter()
            .map(|r| {
                let events: Vec<Vec<u8>> = r
                    .events
                    .iter()
                    .map(|e| postcard::to_stdvec(e).unwrap())
                    .collect();
                (r.rev, events.concat())
            })
            .collect();
        (
            s.mvcc.rev(),
            s.mvcc.compact_rev(),
            s.everything(),
            s.mvcc.leases(),
            results,
            history,
            refused,
        )
    };
    let (a, b) = (run(), run());
    assert!(a.0 > 20 && a.1 > 0, "the workload wrote and compacted");
    assert!(a.6 > 0, "the workload had refused commands");
    assert_eq!(a, b);
}
