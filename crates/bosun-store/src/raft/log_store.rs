//! The Raft log on RocksDB, with group commit.
//!
//! `append` writes entries to RocksDB at once (so readers see them) and hands the flush
//! callback to one syncer thread. The syncer fsyncs the write-ahead log once for every
//! callback that queued up meanwhile, then reports them flushed in order: one fsync serves
//! many client writes, and nothing is acknowledged before it is on disk.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::mpsc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{Entry, LogId, TypeConfig, Vote, decode, encode, io_err};

/// Column family: log index (big-endian) -> encoded entry.
pub const CF_LOG: &str = "raft_log";
/// Column family: vote, committed and purged log ids.
pub const CF_RAFT_META: &str = "raft_meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// The Raft log storage of one member.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: mpsc::Sender<IOFlushed<TypeConfig>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStore")
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| io_err(format!("missing column family {name}")))
}

fn sync_opts() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

impl LogStore {
    /// Opens the log on `db` and starts its syncer thread, which ends when the last clone of
    /// the store is dropped.
    pub fn open(db: Arc<DB>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<IOFlushed<TypeConfig>>();
        let sync_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    group.extend(rx.try_iter());
                    let res = sync_db.flush_wal(true).map_err(io_err);
                    for cb in group {
                        cb.io_completed(res.as_ref().map(|_| ()).map_err(io_err));
                    }
                }
            })?;
        Ok(LogStore { db, syncer: tx })
    }

    fn get_meta<T: for<'a> serde::Deserialize<'a>>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self
            .db
            .get_cf(cf(&self.db, CF_RAFT_META)?, key)
            .map_err(io_err)?
        {
            None => Ok(None),
            Some(b) => decode(&b).map(Some),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T, sync: bool) -> io::Result<()> {
        let cf = cf(&self.db, CF_RAFT_META)?;
        let opts = if sync {
            sync_opts()
        } else {
            WriteOptions::default()
        };
        self.db
            .put_cf_opt(cf, key, encode(v)?, &opts)
            .map_err(io_err)
    }

    fn last_entry_log_id(&self) -> io::Result<Option<LogId>> {
        let cf = cf(&self.db, CF_LOG)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (_, v) = item.map_err(io_err)?;
                let e: Entry = decode(&v)?;
                Ok(Some(e.log_id))
            }
        }
    }
}

fn start_index(r: &impl RangeBounds<u64>) -> u64 {
    match r.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let cf = cf(&self.db, CF_LOG)?;
        let start = start_index(&range).to_be_bytes();
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(io_err)?;
            let idx = u64::from_be_bytes(k.as_ref().try_into().map_err(io_err)?);
            if !range.contains(&idx) {
                break;
            }
            out.push(decode(&v)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last_log_id = self.last_entry_log_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.put_meta(KEY_VOTE, vote, true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not fsynced: losing it only means re-applying from an earlier point.
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = cf(&self.db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(cf, e.log_id.index.to_be_bytes(), encode(&e)?);
        }
        self.db.write(batch).map_err(io_err)?;
        self.syncer
            .send(callback)
            .map_err(|_| io_err("raft log syncer stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let cf = cf(&self.db, CF_LOG)?;
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.db
            .delete_range_cf(cf, from.to_be_bytes(), u64::MAX.to_be_bytes())
            .map_err(io_err)?;
        // delete_range excludes the end key itself.
        self.db
            .delete_cf(cf, u64::MAX.to_be_bytes())
            .map_err(io_err)?;
        self.db.flush_wal(true).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.put_meta(KEY_PURGED, &log_id, true)?;
        let cf = cf(&self.db, CF_LOG)?;
        self.db
            .delete_range_cf(cf, 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes())
            .map_err(io_err)
    }
}
