//! etcd's write requests as Raft commands: checked before they are proposed, executed when
//! they are applied from the log. Execution is deterministic, so every member reaches the
//! same state and the same response.

use std::collections::HashSet;

use bosun_proto::etcdserverpb::{
    AlarmRequest, CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, PutRequest, PutResponse, RequestOp, ResponseOp, TxnRequest, TxnResponse,
    compare, request_op, response_op,
};
use bosun_proto::mvccpb::KeyValue;
use serde::{Deserialize, Serialize};

use crate::error::{EtcdError, EtcdResult};
use crate::header_at;
use crate::mvcc::{KeyRange, WriteTxn};

mod nesting;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

/// A write request, as it travels through the Raft log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    /// Decoded with a bound on nesting (see [`nesting`]).
    Txn(#[serde(deserialize_with = "nesting::txn")] TxnRequest),
    Compact(CompactionRequest),
    /// The lease ID is chosen by the proposer, so that applying is deterministic.
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    Alarm(AlarmRequest),
    /// Writes proposed together as one log entry, applied in order as if each were an entry
    /// of its own; never nested.
    Batch(#[serde(deserialize_with = "nesting::batch")] Vec<Command>),
}

impl Command {
    /// About the size of the command in the log (its protobuf size).
    pub fn size(&self) -> usize {
        use prost::Message;
        match self {
            Command::Put(m) => m.encoded_len(),
            Command::DeleteRange(m) => m.encoded_len(),
            Command::Txn(m) => m.encoded_len(),
            Command::Compact(m) => m.encoded_len(),
            Command::LeaseGrant(m) => m.encoded_len(),
            Command::LeaseRevoke(m) => m.encoded_len(),
            Command::Alarm(m) => m.encoded_len(),
            Command::Batch(b) => b.iter().map(Command::size).sum(),
        }
    }

    /// How many client writes the command carries.
    pub fn writes(&self) -> u64 {
        match self {
            Command::Batch(b) => b.len() as u64,
            _ => 1,
        }
    }
}

/// The result of applying a [`Command`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandResult {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    /// Alarm changes answer with the alarms now raised; see the state machine.
    Alarm(Vec<bosun_proto::etcdserverpb::AlarmMember>),
    /// For log entries that carry no command (blank and membership entries).
    Done,
    Error(EtcdError),
    /// The result of each command of a [`Command::Batch`], in order.
    Batch(Vec<CommandResult>),
}

impl CommandResult {
    /// The error for a result of the wrong kind (a bug, never a client mistake).
    pub fn unexpected(self) -> EtcdError {
        EtcdError::internal(format!("unexpected result {self:?}"))
    }

    /// The result as a `Result`: [`CommandResult::Error`] becomes `Err`.
    pub fn into_result(self) -> EtcdResult<CommandResult> {
        match self {
            CommandResult::Error(e) => Err(e),
            r => Ok(r),
        }
    }
}

/// Request limits checked before proposing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_txn_ops: usize,
}

/// Checks a put the way etcd does before proposing it.
pub fn check_put(p: &PutRequest) -> EtcdResult<()> {
    if p.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

/// Checks a txn the way etcd does before proposing it: op counts, keys, and that no key is
/// written twice on one path.
///
/// As etcd counts them, a nested txn's operations come out of what its parent leaves: a txn
/// with `n` operations per list leaves `max - n` to each txn nested in it.
pub fn check_txn(t: &TxnRequest, limits: Limits) -> EtcdResult<()> {
    let max = limits.max_txn_ops;
    let ops = t.compare.len().max(t.success.len()).max(t.failure.len());
    if ops > max {
        return Err(EtcdError::TooManyOps);
    }
    let nested = Limits {
        max_txn_ops: max - ops,
    };
    for c in &t.compare {
        if c.key.is_empty() {
            return Err(EtcdError::EmptyKey);
        }
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) if r.key.is_empty() => {
                return Err(EtcdError::EmptyKey);
            }
            Some(request_op::Request::RequestPut(p)) => check_put(p)?,
            Some(request_op::Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                return Err(EtcdError::EmptyKey);
            }
            Some(request_op::Request::RequestTxn(n)) => check_txn(n, nested)?,
            _ => {}
        }
    }
    check_intervals(&t.success)?;
    check_intervals(&t.failure)?;
    Ok(())
}

/// A deleted interval `[key, end)` in etcd's spelling (see [`KeyRange`]).
#[derive(Clone)]
struct Interval {
    key: Vec<u8>,
    end: Vec<u8>,
}

fn intersects(dels: &[Interval], k: &[u8]) -> bool {
    dels.iter()
        .any(|d| KeyRange::new(&d.key, &d.end).contains(k))
}

/// etcd's `checkIntervals`: puts and deletes on one path may not touch the same key.
fn check_intervals(ops: &[RequestOp]) -> EtcdResult<(HashSet<Vec<u8>>, Vec<Interval>)> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Interval {
                key: d.key.clone(),
                end: d.range_end.clone(),
            }),
            _ => None,
        })
        .collect();
    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || intersects(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            // then/else exclude each other: the same key in both is fine.
            if (puts.contains(k) && !puts_then.contains(k)) || intersects(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || intersects(&dels, &p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Executes `cmd` as one command of `tx`.
pub fn execute(tx: &mut WriteTxn<'_>, cmd: &Command) -> CommandResult {
    tx.begin();
    let res = execute_inner(tx, cmd);
    tx.end();
    match res {
        Ok(r) => r,
        Err(e) => CommandResult::Error(e),
    }
}

fn execute_inner(tx: &mut WriteTxn<'_>, cmd: &Command) -> EtcdResult<CommandResult> {
    Ok(match cmd {
        Command::Put(p) => {
            check_put_state(tx, p)?;
            let r = put(tx, p)?;
            CommandResult::Put(PutResponse {
                header: Some(header_at(tx.read_rev())),
                ..r
            })
        }
        Command::DeleteRange(d) => {
            let r = delete(tx, d)?;
            CommandResult::DeleteRange(DeleteRangeResponse {
                header: Some(header_at(tx.read_rev())),
                ..r
            })
        }
        Command::Txn(t) => {
            let mut path = Vec::new();
            compare_path(tx, t, &mut path)?;
            check_path(tx, t, &path, &mut 0)?;
            let r = txn(tx, t, &path, &mut 0)?;
            CommandResult::Txn(r)
        }
        Command::Compact(c) => {
            tx.compact(c.revision)?;
            CommandResult::Compact(CompactionResponse {
                header: Some(header_at(tx.read_rev())),
            })
        }
        Command::LeaseGrant(g) => {
            tx.lease_grant(g.id, g.ttl)?;
            CommandResult::LeaseGrant(LeaseGrantResponse {
                header: Some(header_at(tx.read_rev())),
                id: g.id,
                ttl: g.ttl,
                error: String::new(),
            })
        }
        Command::LeaseRevoke(r) => {
            tx.lease_revoke(r.id)?;
            CommandResult::LeaseRevoke(LeaseRevokeResponse {
                header: Some(header_at(tx.read_rev())),
            })
        }
        // Alarms are state-machine metadata and batches are taken apart by the caller.
        Command::Alarm(_) | Command::Batch(_) => {
            CommandResult::Error(EtcdError::internal("alarm or batch outside state machine"))
        }
    })
}

/// The checks etcd makes against the store before a put: the lease exists, and a key that
/// keeps its value or lease exists.
fn check_put_state(tx: &WriteTxn<'_>, p: &PutRequest) -> EtcdResult<()> {
    if (p.ignore_value || p.ignore_lease)
        && tx
            .state()
            .index
            .get(&p.key)
            .and_then(|h| h.live())
            .is_none()
    {
        return Err(EtcdError::KeyNotFound);
    }
    if p.lease != 0 && !tx.state().leases.contains_key(&p.lease) {
        return Err(EtcdError::LeaseNotFound);
    }
    Ok(())
}

fn put(tx: &mut WriteTxn<'_>, p: &PutRequest) -> EtcdResult<PutResponse> {
    let prev = if p.prev_kv || p.ignore_value || p.ignore_lease {
        tx.get(&p.key)?
    } else {
        None
    };
    let (value, lease) = match &prev {
        Some(kv) => (
            if p.ignore_value {
                kv.value.clone()
            } else {
                p.value.clone()
            },
            if p.ignore_lease { kv.lease } else { p.lease },
        ),
        None if p.ignore_value || p.ignore_lease => return Err(EtcdError::KeyNotFound),
        None => (p.value.clone(), p.lease),
    };
    tx.put(&p.key, value, lease)?;
    Ok(PutResponse {
        header: None,
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

fn delete(tx: &mut WriteTxn<'_>, d: &DeleteRangeRequest) -> EtcdResult<DeleteRangeResponse> {
    let prev = tx.delete_range(KeyRange::new(&d.key, &d.range_end))?;
    Ok(DeleteRangeResponse {
        header: None,
        deleted: i64::try_from(prev.len()).unwrap_or(i64::MAX),
        prev_kvs: if d.prev_kv { prev } else { Vec::new() },
    })
}

/// Evaluates every compare on the path the txn will take (nested txns included) against the
/// store as it is before the txn, as etcd does; appends the branch taken at each txn.
fn compare_path(tx: &WriteTxn<'_>, t: &TxnRequest, path: &mut Vec<bool>) -> EtcdResult<()> {
    let mut ok = true;
    for c in &t.compare {
        if !compare_holds(tx, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let Some(request_op::Request::RequestTxn(n)) = &op.request {
            compare_path(tx, n, path)?;
        }
    }
    Ok(())
}

fn compare_holds(tx: &WriteTxn<'_>, c: &Compare) -> EtcdResult<bool> {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let st = tx.state();
    let at = tx.read_rev();
    let revs: Vec<_> = st
        .index
        .range(KeyRange::new(&c.key, &c.range_end))
        .filter_map(|(_, h)| h.visible_at(at))
        .collect();
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let kvs: Vec<KeyValue> = if revs.is_empty() {
        if target == CompareTarget::Value {
            // A missing key has no value to compare: etcd fails the compare.
            return Ok(false);
        }
        vec![KeyValue::default()]
    } else {
        tx.range(&bosun_proto::etcdserverpb::RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        })?
        .kvs
    };
    let result = CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal);
    for kv in &kvs {
        let ord = match (target, &c.target_union) {
            (CompareTarget::Value, Some(TargetUnion::Value(v))) => {
                kv.value.as_slice().cmp(v.as_slice())
            }
            (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[][..]),
            (CompareTarget::Create, u) => kv.create_revision.cmp(&match u {
                Some(TargetUnion::CreateRevision(r)) => *r,
                _ => 0,
            }),
            (CompareTarget::Mod, u) => kv.mod_revision.cmp(&match u {
                Some(TargetUnion::ModRevision(r)) => *r,
                _ => 0,
            }),
            (CompareTarget::Version, u) => kv.version.cmp(&match u {
                Some(TargetUnion::Version(r)) => *r,
                _ => 0,
            }),
            (CompareTarget::Lease, u) => kv.lease.cmp(&match u {
                Some(TargetUnion::Lease(r)) => *r,
                _ => 0,
            }),
        };
        let holds = match result {
            CompareResult::Equal => ord.is_eq(),
            CompareResult::NotEqual => ord.is_ne(),
            CompareResult::Greater => ord.is_gt(),
            CompareResult::Less => ord.is_lt(),
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks every put on the chosen path before anything is written, so a txn applies whole
/// or not at all.
fn check_path(tx: &WriteTxn<'_>, t: &TxnRequest, path: &[bool], at: &mut usize) -> EtcdResult<()> {
    let ok = path.get(*at).copied().unwrap_or(false);
    *at += 1;
    for op in if ok { &t.success } else { &t.failure } {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => check_put_state(tx, p)?,
            Some(request_op::Request::RequestTxn(n)) => check_path(tx, n, path, at)?,
            _ => {}
        }
    }
    Ok(())
}

fn txn(
    tx: &mut WriteTxn<'_>,
    t: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> EtcdResult<TxnResponse> {
    let ok = path.get(*at).copied().unwrap_or(false);
    *at += 1;
    let ops = if ok { &t.success } else { &t.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let resp = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                response_op::Response::ResponseRange(tx.range(r)?)
            }
            Some(request_op::Request::RequestPut(p)) => {
                let r = put(tx, p)?;
                response_op::Response::ResponsePut(PutResponse {
                    header: Some(header_at(tx.read_rev())),
                    ..r
                })
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                let r = delete(tx, d)?;
                response_op::Response::ResponseDeleteRange(DeleteRangeResponse {
                    header: Some(header_at(tx.read_rev())),
                    ..r
                })
            }
            Some(request_op::Request::RequestTxn(n)) => {
                response_op::Response::ResponseTxn(txn(tx, n, path, at)?)
            }
            None => continue,
        };
        responses.push(ResponseOp {
            response: Some(resp),
        });
    }
    Ok(TxnResponse {
        header: Some(header_at(tx.read_rev())),
        succeeded: ok,
        responses,
    })
}
