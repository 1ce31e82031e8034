//! Writes: the changes one batch of applied Raft entries makes, under the store's write lock.

use std::collections::HashMap;

use bosun_proto::etcdserverpb::{RangeRequest, RangeResponse};
use bosun_proto::mvccpb::{Event, KeyValue, event::EventType};
use parking_lot::RwLockWriteGuard;
use rocksdb::WriteBatch;

use super::read::{RevEvents, range_request};
use super::{
    CF_KV, CF_LEASE, CF_META, KeyRange, LeaseState, META_COMPACT, META_REV, Mvcc, Rev, State, cf,
    encode_change,
};
use crate::error::{EtcdError, EtcdResult};

/// A write transaction over the store. Changes are visible to the transaction's own reads at
/// once, to other readers after [`WriteTxn::commit`].
pub struct WriteTxn<'a> {
    mvcc: &'a Mvcc,
    state: RwLockWriteGuard<'a, State>,
    batch: WriteBatch,
    /// Values written by this transaction and not yet in RocksDB.
    pending: HashMap<Rev, KeyValue>,
    /// Events of finished commands, one entry per revision.
    events: Vec<RevEvents>,
    /// The command in progress: its main revision and next sub revision.
    main: i64,
    sub: i64,
    cmd_events: Vec<Event>,
    /// Whether changes are recorded as events (see [`WriteTxn::without_events`]).
    record_events: bool,
}

impl<'a> WriteTxn<'a> {
    pub(super) fn new(mvcc: &'a Mvcc) -> Self {
        let state = mvcc.state.write();
        let main = state.rev + 1;
        WriteTxn {
            mvcc,
            state,
            batch: WriteBatch::default(),
            pending: HashMap::new(),
            events: Vec::new(),
            main,
            sub: 0,
            cmd_events: Vec::new(),
            record_events: true,
        }
    }

    /// Records no events: [`WriteTxn::commit`] returns none. For a transaction that starts
    /// while nobody watches; a watcher that subscribes later (under the read lock, see
    /// [`Mvcc::at_rev`]) starts after this transaction's revisions.
    pub fn without_events(&mut self) {
        self.record_events = false;
    }

    /// Starts a command: its changes share one main revision.
    pub fn begin(&mut self) {
        self.main = self.state.rev + 1;
        self.sub = 0;
        self.cmd_events.clear();
    }

    /// Ends a command; the revision advances only if it changed something.
    pub fn end(&mut self) {
        if self.sub > 0 {
            self.state.rev = self.main;
            if !self.record_events {
                return;
            }
            self.events.push(RevEvents {
                rev: self.main,
                events: std::mem::take(&mut self.cmd_events),
            });
        }
    }

    /// The revision reads inside the command see: its own changes included.
    pub fn read_rev(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.state.rev
        }
    }

    /// The store's state (index, revisions, leases) as this transaction sees it.
    pub fn state(&self) -> &State {
        &self.state
    }

    fn fetch(&self, revs: &[Rev]) -> EtcdResult<Vec<KeyValue>> {
        let mut out = Vec::with_capacity(revs.len());
        let mut missing = Vec::new();
        for r in revs {
            if !self.pending.contains_key(r) {
                missing.push(*r);
            }
        }
        let mut from_db = self.mvcc.fetch(&missing)?.into_iter();
        for r in revs {
            match self.pending.get(r) {
                Some(kv) => out.push(kv.clone()),
                None => out.push(
                    from_db
                        .next()
                        .ok_or_else(|| EtcdError::internal("value fetch came back short"))?,
                ),
            }
        }
        Ok(out)
    }

    /// A Range inside the command, seeing its earlier changes.
    pub fn range(&self, r: &RangeRequest) -> EtcdResult<RangeResponse> {
        let cur = self.read_rev();
        range_request(&self.state, cur, r, &mut |revs| self.fetch(revs))
    }

    /// The live value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> EtcdResult<Option<KeyValue>> {
        match self.state.index.get(key).and_then(|h| h.live()) {
            Some(r) => Ok(self.fetch(&[r])?.pop()),
            None => Ok(None),
        }
    }

    fn next_rev(&mut self) -> Rev {
        let r = Rev::new(self.main, self.sub);
        self.sub += 1;
        r
    }

    /// Puts `key` = `value` attached to `lease` (0 = none). The lease must exist.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> EtcdResult<()> {
        if lease != 0 && !self.state.leases.contains_key(&lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        let rev = self.next_rev();
        let put = self.state.index.put(key, rev, lease);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: put.create_revision,
            mod_revision: rev.main,
            version: put.version,
            value,
            lease,
        };
        let cf_kv = cf(&self.mvcc.db, CF_KV)?;
        self.batch
            .put_cf(cf_kv, rev.to_key(), encode_change(&kv, false));
        if put.old_lease != lease {
            if let Some(l) = self.state.leases.get_mut(&put.old_lease) {
                l.keys.remove(key);
            }
            if let Some(l) = self.state.leases.get_mut(&lease) {
                l.keys.insert(key.to_vec());
            }
        }
        if self.record_events {
            self.cmd_events.push(Event {
                r#type: EventType::Put as i32,
                kv: Some(kv.clone()),
                prev_kv: None,
            });
        }
        self.pending.insert(rev, kv);
        Ok(())
    }

    /// Deletes every live key in `range`; returns the deleted values.
    pub fn delete_range(&mut self, range: KeyRange<'_>) -> EtcdResult<Vec<KeyValue>> {
        let live: Vec<Rev> = self
            .state
            .index
            .range(range)
            .filter_map(|(_, h)| h.live())
            .collect();
        let prev = self.fetch(&live)?;
        let cf_kv = cf(&self.mvcc.db, CF_KV)?;
        for p in &prev {
            let rev = self.next_rev();
            self.state.index.tombstone(&p.key, rev);
            if let Some(l) = self.state.leases.get_mut(&p.lease) {
                l.keys.remove(&p.key);
            }
            let kv = KeyValue {
                key: p.key.clone(),
                mod_revision: rev.main,
                ..KeyValue::default()
            };
            self.batch
                .put_cf(cf_kv, rev.to_key(), encode_change(&kv, true));
            if self.record_events {
                self.cmd_events.push(Event {
                    r#type: EventType::Delete as i32,
                    kv: Some(kv),
                    prev_kv: None,
                });
            }
        }
        Ok(prev)
    }

    /// Compacts history below `rev`: no read at an earlier revision succeeds afterwards.
    pub fn compact(&mut self, rev: i64) -> EtcdResult<()> {
        if rev <= self.state.compact_rev {
            return Err(EtcdError::Compacted);
        }
        if rev > self.state.rev {
            return Err(EtcdError::FutureRev);
        }
        let dropped = self.state.index.compact(rev);
        let cf_kv = cf(&self.mvcc.db, CF_KV)?;
        for r in dropped {
            self.batch.delete_cf(cf_kv, r.to_key());
        }
        self.state.compact_rev = rev;
        let cf_meta = cf(&self.mvcc.db, CF_META)?;
        self.batch.put_cf(cf_meta, META_COMPACT, rev.to_be_bytes());
        Ok(())
    }

    /// Grants lease `id` with `ttl` seconds.
    pub fn lease_grant(&mut self, id: i64, ttl: i64) -> EtcdResult<()> {
        if self.state.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        self.state.leases.insert(
            id,
            LeaseState {
                ttl,
                keys: Default::default(),
            },
        );
        let cf_lease = cf(&self.mvcc.db, CF_LEASE)?;
        self.batch
            .put_cf(cf_lease, id.to_be_bytes(), ttl.to_be_bytes());
        Ok(())
    }

    /// Revokes lease `id`, deleting its keys in this command.
    pub fn lease_revoke(&mut self, id: i64) -> EtcdResult<()> {
        let lease = self.state.leases.get(&id).ok_or(EtcdError::LeaseNotFound)?;
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        for k in keys {
            self.delete_range(KeyRange::new(&k, b""))?;
        }
        self.state.leases.remove(&id);
        let cf_lease = cf(&self.mvcc.db, CF_LEASE)?;
        self.batch.delete_cf(cf_lease, id.to_be_bytes());
        Ok(())
    }

    /// Writes an opaque metadata record in the same atomic batch.
    pub fn put_meta(&mut self, key: &[u8], value: &[u8]) -> EtcdResult<()> {
        let cf_meta = cf(&self.mvcc.db, CF_META)?;
        self.batch.put_cf(cf_meta, key, value);
        Ok(())
    }

    /// Writes the batch to RocksDB's memtables and releases the lock; returns the events of
    /// every revision made, in order.
    ///
    /// Not through RocksDB's write-ahead log: the Raft log is the durable record. A crash loses
    /// the state written since the last memtable flush, consistently across the column
    /// families (the database flushes atomically, and the applied log id is in the same batch),
    /// and the member applies those log entries again at start. [`super::flush_state`] runs
    /// before log entries are purged.
    pub fn commit(mut self) -> EtcdResult<Vec<RevEvents>> {
        let cf_meta = cf(&self.mvcc.db, CF_META)?;
        self.batch
            .put_cf(cf_meta, META_REV, self.state.rev.to_be_bytes());
        let batch = std::mem::take(&mut self.batch);
        let mut opts = rocksdb::WriteOptions::default();
        opts.disable_wal(true);
        self.mvcc
            .db
            .write_opt(batch, &opts)
            .map_err(EtcdError::internal)?;
        Ok(std::mem::take(&mut self.events))
    }
}
