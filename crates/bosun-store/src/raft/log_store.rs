//! The Raft log on RocksDB, with group commit.
//!
//! `append` writes entries to RocksDB at once (so readers see them) and hands the flush
//! callback to one syncer thread. The syncer fsyncs the write-ahead log once for every
//! callback that queued up meanwhile, then reports them flushed in order: one fsync serves
//! many client writes, and nothing is acknowledged before it is on disk.
//!
//! Purging the log behind a snapshot first makes the state machine durable (it is written
//! without RocksDB's WAL, see `mvcc::write`): a memtable flush that takes tens of
//! milliseconds. openraft waits for `purge` before it handles anything else, so the flush and
//! the deletion run on a purger thread and `purge` only queues them: entries stay on disk a
//! little longer, and a crash before the purger finishes leaves extra entries, never a gap.
//!
//! Every entry is read back soon after it is written: by the state machine worker to apply
//! it and, on the leader, by each replication stream. The most recent entries therefore stay
//! in memory too ([`Recent`], bounded by count and bytes), so those reads clone an entry
//! instead of reading and decoding it from RocksDB.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::sync::mpsc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use parking_lot::Mutex;
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};

use super::{Entry, LogId, TypeConfig, Vote, decode, encode, io_err};

/// Column family: log index (big-endian) -> encoded entry.
pub const CF_LOG: &str = "raft_log";
/// Column family: vote, committed and purged log ids.
pub const CF_RAFT_META: &str = "raft_meta";

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// Most entries kept in memory.
const RECENT_MAX_ENTRIES: usize = 16 * 1024;
/// Most encoded bytes of entries kept in memory.
const RECENT_MAX_BYTES: usize = 64 << 20;

/// The most recently appended entries, contiguous by index: a copy of the tail of the log.
#[derive(Default)]
struct Recent {
    /// Entries with their encoded sizes, in index order.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, e: Entry, size: usize) {
        let next = self.entries.back().map(|(l, _)| l.log_id.index + 1);
        if next.is_some_and(|n| n != e.log_id.index) {
            // Not a continuation: start the copy over from this entry.
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.push_back((e, size));
        while self.entries.len() > RECENT_MAX_ENTRIES || self.bytes > RECENT_MAX_BYTES {
            match self.entries.pop_front() {
                Some((_, s)) => self.bytes -= s,
                None => break,
            }
        }
    }

    /// Drops the entries from index `from` on.
    fn truncate_from(&mut self, from: u64) {
        while let Some((_, s)) = self.entries.pop_back_if(|(e, _)| e.log_id.index >= from) {
            self.bytes -= s;
        }
    }

    /// Drops the entries up to and including index `upto`.
    fn purge_upto(&mut self, upto: u64) {
        while let Some((_, s)) = self.entries.pop_front_if(|(e, _)| e.log_id.index <= upto) {
            self.bytes -= s;
        }
    }

    /// Clones of the entries `start..end`, if all of them are here.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        let last = first + self.entries.len() as u64 - 1;
        if start < first || end > last + 1 {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end.max(start) - first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

/// The Raft log storage of one member.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: mpsc::Sender<IOFlushed<TypeConfig>>,
    /// Purge points for the purger thread.
    purger: mpsc::Sender<LogId>,
    recent: Arc<Mutex<Recent>>,
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
    /// Opens the log on `db` and starts its syncer and purger threads, which end when the last
    /// clone of the store is dropped. `state` is the state machine's database, made durable
    /// before entries are purged.
    pub fn open(db: Arc<DB>, state: Arc<DB>) -> io::Result<Self> {
        let (purger, purges) = mpsc::channel::<LogId>();
        let purge_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-purge".into())
            .spawn(move || {
                while let Ok(mut upto) = purges.recv() {
                    // Only the latest of the purge points that queued up matters.
                    upto = purges.try_iter().last().unwrap_or(upto);
                    if let Err(e) = purge_upto(&purge_db, &state, &upto) {
                        // Nothing is lost: the entries stay until a later purge succeeds.
                        tracing::error!(error = %e, upto = %upto, "purging the raft log failed");
                    }
                }
            })?;
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
        Ok(LogStore {
            db,
            syncer: tx,
            purger,
            recent: Arc::default(),
        })
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
        put_meta(&self.db, key, v, sync)
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

fn put_meta<T: serde::Serialize>(db: &DB, key: &[u8], v: &T, sync: bool) -> io::Result<()> {
    let cf = cf(db, CF_RAFT_META)?;
    let opts = if sync {
        sync_opts()
    } else {
        WriteOptions::default()
    };
    db.put_cf_opt(cf, key, encode(v)?, &opts).map_err(io_err)
}

/// Deletes the entries up to and including `upto` from disk, after making durable the state
/// machine that was applied from them (it is only in memtables until flushed).
fn purge_upto(db: &DB, state: &DB, upto: &LogId) -> io::Result<()> {
    crate::mvcc::flush_state(state).map_err(io_err)?;
    // Record the purge point first: a crash in between leaves extra entries, never a gap.
    put_meta(db, KEY_PURGED, upto, true)?;
    let cf = cf(db, CF_LOG)?;
    db.delete_range_cf(cf, 0u64.to_be_bytes(), (upto.index + 1).to_be_bytes())
        .map_err(io_err)
}

fn start_index(r: &impl RangeBounds<u64>) -> u64 {
    match r.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

/// The first index after the range, if it is bounded.
fn end_index(r: &impl RangeBounds<u64>) -> Option<u64> {
    match r.end_bound() {
        Bound::Included(i) => i.checked_add(1),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = start_index(&range);
        if let Some(end) = end_index(&range)
            && let Some(v) = self.recent.lock().get(start, end)
        {
            return Ok(v);
        }
        let cf = cf(&self.db, CF_LOG)?;
        let start = start.to_be_bytes();
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
        // Not fsynced: it is in the log's WAL behind the entries it covers, and losing it only
        // means re-applying from an earlier point. At start openraft applies the log up to it,
        // so a member serves nothing older than it did before it stopped.
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
        let mut kept = Vec::new();
        for e in entries {
            let data = encode(&e)?;
            batch.put_cf(cf, e.log_id.index.to_be_bytes(), &data);
            kept.push((e, data.len()));
        }
        self.db.write(batch).map_err(io_err)?;
        {
            let mut recent = self.recent.lock();
            for (e, size) in kept {
                recent.push(e, size);
            }
        }
        self.syncer
            .send(callback)
            .map_err(|_| io_err("raft log syncer stopped"))
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let cf = cf(&self.db, CF_LOG)?;
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.recent.lock().truncate_from(from);
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
        self.recent.lock().purge_upto(log_id.index);
        self.purger
            .send(log_id)
            .map_err(|_| io_err("the raft log's purger thread has stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64) -> Entry {
        openraft::testing::blank_ent::<TypeConfig>(1, 1, index)
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn recent_serves_only_ranges_it_holds_whole() {
        let mut r = Recent::default();
        assert_eq!(indexes(r.get(0, 1)), None);
        for i in 5..10 {
            r.push(ent(i), 10);
        }
        assert_eq!(indexes(r.get(5, 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(indexes(r.get(7, 9)), Some(vec![7, 8]));
        assert_eq!(indexes(r.get(7, 7)), Some(vec![]));
        assert_eq!(
            indexes(r.get(4, 8)),
            None,
            "starts before the first held entry"
        );
        assert_eq!(
            indexes(r.get(8, 11)),
            None,
            "ends after the last held entry"
        );
    }

    #[test]
    fn recent_follows_truncation_purge_and_gaps() {
        let mut r = Recent::default();
        for i in 1..=6 {
            r.push(ent(i), 10);
        }
        r.truncate_from(5);
        assert_eq!(indexes(r.get(1, 5)), Some(vec![1, 2, 3, 4]));
        assert_eq!(indexes(r.get(1, 6)), None);
        assert_eq!(r.bytes, 40);
        r.push(ent(5), 10);
        r.purge_upto(2);
        assert_eq!(indexes(r.get(3, 6)), Some(vec![3, 4, 5]));
        assert_eq!(indexes(r.get(2, 4)), None);
        // An entry that does not continue the held ones replaces them.
        r.push(ent(9), 10);
        assert_eq!(indexes(r.get(9, 10)), Some(vec![9]));
        assert_eq!(indexes(r.get(5, 6)), None);
        assert_eq!(r.bytes, 10);
    }

    #[test]
    fn recent_is_bounded_by_count_and_bytes() {
        let mut r = Recent::default();
        for i in 0..(RECENT_MAX_ENTRIES as u64 + 10) {
            r.push(ent(i), 1);
        }
        assert_eq!(r.entries.len(), RECENT_MAX_ENTRIES);
        assert_eq!(r.first_index(), Some(10));
        r.push(ent(RECENT_MAX_ENTRIES as u64 + 10), RECENT_MAX_BYTES);
        assert_eq!(r.entries.len(), 1, "one large entry pushes out the rest");
        assert_eq!(r.bytes, RECENT_MAX_BYTES);
    }
}
