//! The MVCC key-value store: etcd's data model on RocksDB.
//!
//! Every change is stored under its revision in the `kv` column family (so history, watch
//! replay and compaction are range scans), and the in-memory [`Index`] maps keys to their
//! revisions. Writes arrive only from the Raft state machine ([`WriteTxn`]); reads may come
//! from any task. One `RwLock` keeps the index and the column family in step: a writer holds
//! it from its first change until its batch is in RocksDB, so readers never see half a batch.

pub mod index;
pub mod read;
mod write;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bosun_proto::mvccpb::KeyValue;
use parking_lot::RwLock;
use prost::Message;
use rocksdb::{ColumnFamily, DB, IteratorMode};

use crate::error::{EtcdError, EtcdResult};
pub use index::{Index, KeyRange, Rev};
pub use read::RangeOpts;
pub use write::WriteTxn;

/// Column family: revision -> stored change.
pub const CF_KV: &str = "kv";
/// Column family: lease ID -> granted TTL.
pub const CF_LEASE: &str = "lease";
/// Column family: state-machine metadata (applied log id, membership, revisions, alarms).
pub const CF_META: &str = "meta";

/// The column families of the state machine.
pub const STATE_CFS: [&str; 3] = [CF_KV, CF_LEASE, CF_META];

/// Writes the state machine's memtables to disk, all column families at once (the database
/// flushes atomically). The state machine writes without RocksDB's WAL (see
/// [`WriteTxn::commit`]), so this is what makes applied state durable: it must run before
/// the Raft log entries it came from are purged.
pub fn flush_state(db: &DB) -> EtcdResult<()> {
    let cfs = STATE_CFS
        .iter()
        .map(|name| cf(db, name))
        .collect::<EtcdResult<Vec<_>>>()?;
    db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
        .map_err(EtcdError::internal)
}

/// Meta keys written by the MVCC layer.
pub(crate) const META_REV: &[u8] = b"rev";
pub(crate) const META_COMPACT: &[u8] = b"compact";

/// A stored change: a flag byte (0 = value, 1 = tombstone) followed by the encoded KeyValue.
pub(crate) fn encode_change(kv: &KeyValue, tombstone: bool) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1 + kv.encoded_len());
    buf.push(u8::from(tombstone));
    // Encoding into a Vec cannot fail: it grows as needed.
    let _ = kv.encode(&mut buf);
    buf
}

pub(crate) fn decode_change(buf: &[u8]) -> EtcdResult<(KeyValue, bool)> {
    let (flag, rest) = buf
        .split_first()
        .ok_or_else(|| EtcdError::internal("corrupt store: empty change record"))?;
    let kv = KeyValue::decode(rest)
        .map_err(|e| EtcdError::internal(format!("corrupt store: decode change: {e}")))?;
    Ok((kv, *flag == 1))
}

/// One key's lease attachment state.
#[derive(Debug, Clone, Default)]
pub struct LeaseState {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// The in-memory part of the store, guarded by one lock.
#[derive(Debug, Default)]
pub struct State {
    pub index: Index,
    /// The store's current revision (the last write's main revision).
    pub rev: i64,
    /// The highest compacted revision (0 when never compacted).
    pub compact_rev: i64,
    /// Granted leases and the keys attached to each.
    pub leases: HashMap<i64, LeaseState>,
}

/// The MVCC store.
pub struct Mvcc {
    pub(crate) db: Arc<DB>,
    pub(crate) state: RwLock<State>,
}

impl std::fmt::Debug for Mvcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.read();
        f.debug_struct("Mvcc")
            .field("rev", &s.rev)
            .field("compact_rev", &s.compact_rev)
            .finish()
    }
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> EtcdResult<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| EtcdError::internal(format!("missing column family {name}")))
}

pub(crate) fn read_i64(db: &DB, cf_name: &str, key: &[u8]) -> EtcdResult<i64> {
    let v = db
        .get_cf(cf(db, cf_name)?, key)
        .map_err(EtcdError::internal)?;
    match v {
        None => Ok(0),
        Some(b) => Ok(i64::from_be_bytes(b.as_slice().try_into().map_err(
            |_| {
                EtcdError::internal(format!(
                    "corrupt store: meta key {}",
                    String::from_utf8_lossy(key)
                ))
            },
        )?)),
    }
}

impl Mvcc {
    /// Opens the store on `db` (which must have the `kv`, `lease` and `meta` column
    /// families) and rebuilds the key index from disk.
    pub fn open(db: Arc<DB>) -> EtcdResult<Self> {
        let state = Self::load_state(&db)?;
        Ok(Mvcc {
            db,
            state: RwLock::new(state),
        })
    }

    /// Reads the store's state from `db`: revisions, leases, and the key index.
    pub(crate) fn load_state(db: &DB) -> EtcdResult<State> {
        let mut st = State {
            // An empty store is at revision 1, as etcd's: the first write makes revision 2.
            rev: read_i64(db, CF_META, META_REV)?.max(1),
            compact_rev: read_i64(db, CF_META, META_COMPACT)?,
            ..State::default()
        };
        for item in db.iterator_cf(cf(db, CF_LEASE)?, IteratorMode::Start) {
            let (k, v) = item.map_err(EtcdError::internal)?;
            let id = i64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| EtcdError::internal("corrupt lease key"))?,
            );
            let ttl = i64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| EtcdError::internal("corrupt lease value"))?,
            );
            st.leases.insert(
                id,
                LeaseState {
                    ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        for item in db.iterator_cf(cf(db, CF_KV)?, IteratorMode::Start) {
            let (k, v) = item.map_err(EtcdError::internal)?;
            let rev = Rev::from_key(&k).ok_or_else(|| EtcdError::internal("corrupt kv key"))?;
            let (kv, tombstone) = decode_change(&v)?;
            st.index.restore(
                &kv.key,
                index::Change { rev, tombstone },
                kv.create_revision,
                kv.version,
                kv.lease,
            );
        }
        // Attach keys to their leases from the live values.
        let mut attached: Vec<(i64, Vec<u8>)> = Vec::new();
        for (k, h) in st.index.range(KeyRange::new(b"\0", b"\0")) {
            if h.live().is_some() && h.lease != 0 {
                attached.push((h.lease, k.to_vec()));
            }
        }
        for (lease, key) in attached {
            if let Some(l) = st.leases.get_mut(&lease) {
                l.keys.insert(key);
            }
        }
        Ok(st)
    }

    /// The current revision.
    pub fn rev(&self) -> i64 {
        self.state.read().rev
    }

    /// Calls `f` with the current revision while no write transaction can run: what `f`
    /// starts (a watch hub subscription) sees every later revision, and only those.
    pub fn at_rev<T>(&self, f: impl FnOnce(i64) -> T) -> T {
        let state = self.state.read();
        f(state.rev)
    }

    /// The compacted revision.
    pub fn compact_rev(&self) -> i64 {
        self.state.read().compact_rev
    }

    /// Starts a write transaction: holds the store's write lock until it is committed.
    pub fn write(&self) -> WriteTxn<'_> {
        WriteTxn::new(self)
    }

    /// The underlying database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }
}

impl Mvcc {
    /// The value `key` had just before revision `rev`, if it existed and is not compacted.
    pub fn value_before(&self, key: &[u8], rev: i64) -> EtcdResult<Option<KeyValue>> {
        let st = self.state.read();
        match st.index.get(key).and_then(|h| h.visible_at(rev - 1)) {
            Some(r) => Ok(self.fetch(&[r])?.pop()),
            None => Ok(None),
        }
    }

    /// Lease IDs with their granted TTLs.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.state
            .read()
            .leases
            .iter()
            .map(|(id, l)| (*id, l.ttl))
            .collect()
    }

    /// A lease's granted TTL and attached keys, if it exists.
    pub fn lease(&self, id: i64) -> Option<(i64, Vec<Vec<u8>>)> {
        let st = self.state.read();
        st.leases
            .get(&id)
            .map(|l| (l.ttl, l.keys.iter().cloned().collect()))
    }
}
