//! The Raft log on RocksDB, with group commit.
//!
//! `append` encodes the entries, keeps them in memory (so readers see them at once) and hands
//! the write to one writer thread, which writes everything that queued up meanwhile to
//! RocksDB, fsyncs the write-ahead log once, then reports the appends flushed in order: one
//! fsync serves many client writes, nothing is acknowledged before it is on disk, and the
//! runtime thread goes on (to replicate the same entries) while the disk works. Truncation
//! goes through the same queue, so it lands after the appends before it.
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
use crate::limits::{RECENT_LOG_BYTES, RECENT_LOG_ENTRIES};
use crate::storage::{CF_LOG, CF_RAFT_META};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"purged";

/// The most recently appended entries, contiguous by index: a copy of the tail of the log,
/// and the only copy of entries the writer has not written yet.
#[derive(Default)]
struct Recent {
    /// Entries with their encoded sizes, in index order.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    /// How many of the newest entries may not be in RocksDB yet (appended, not written; an
    /// overcount after a truncation, until the writer catches up). They stay beyond the bounds
    /// until written: the writer is at most a group of appends behind.
    unwritten: usize,
    /// The latest purge point handed to the purger, which records it on disk a little later.
    purged: Option<LogId>,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
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
        self.evict();
    }

    /// Drops the oldest written entries while over the bounds.
    fn evict(&mut self) {
        while (self.entries.len() > RECENT_LOG_ENTRIES || self.bytes > RECENT_LOG_BYTES)
            && self.entries.len() > self.unwritten
        {
            match self.entries.pop_front() {
                Some((_, s)) => self.bytes -= s,
                None => break,
            }
        }
    }

    /// Records that the writer wrote `n` more of the appended entries.
    fn written(&mut self, n: usize) {
        self.unwritten = self.unwritten.saturating_sub(n);
        self.evict();
    }

    /// Drops the entries from index `from` on.
    fn truncate_from(&mut self, from: u64) {
        while let Some((_, s)) = self.entries.pop_back_if(|(e, _)| e.log_id.index >= from) {
            self.bytes -= s;
        }
    }

    /// Drops the entries up to and including `upto`.
    fn purge_upto(&mut self, upto: LogId) {
        while let Some((_, s)) = self
            .entries
            .pop_front_if(|(e, _)| e.log_id.index <= upto.index)
        {
            self.bytes -= s;
        }
        self.purged = self.purged.max(Some(upto));
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

/// Work for the writer thread, done in the order queued.
enum Job {
    /// `count` entries (encoded) to write; `done` once they are on disk.
    Append {
        batch: WriteBatch,
        count: usize,
        done: IOFlushed<TypeConfig>,
    },
    /// Hand a purge point to the purger: after the appends before it are written, so that
    /// none of them lands after the purge.
    Purge(LogId),
    /// Delete the entries from this index on.
    Truncate {
        from: u64,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
}

/// The Raft log storage of one member.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    writer: mpsc::Sender<Job>,
    recent: Arc<Mutex<Recent>>,
    /// Declared after `writer`: dropped after it, so the last clone's drop waits for the
    /// threads, which end once every sender is gone.
    _threads: Arc<Threads>,
}

/// The syncer and purger threads, joined when the last [`LogStore`] clone is dropped: they
/// hold the database, and a process that exits while one of them still closes it aborts
/// in RocksDB (its mutexes are destroyed under the thread).
struct Threads(Mutex<Vec<std::thread::JoinHandle<()>>>);

impl Drop for Threads {
    fn drop(&mut self) {
        // The syncer first: its end drops the purger's sender, which ends the purger.
        for t in std::mem::take(&mut *self.0.lock()) {
            let _ = t.join();
        }
    }
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
        let purge_thread = std::thread::Builder::new()
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
        let (tx, rx) = mpsc::channel::<Job>();
        let recent: Arc<Mutex<Recent>> = Arc::default();
        let (write_db, written) = (db.clone(), recent.clone());
        let sync_thread = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let jobs = std::iter::once(first).chain(rx.try_iter());
                    write_group(&write_db, &written, &purger, jobs.collect());
                }
            })?;
        Ok(LogStore {
            db,
            writer: tx,
            recent,
            _threads: Arc::new(Threads(Mutex::new(vec![sync_thread, purge_thread]))),
        })
    }

    fn queue(&self, job: Job) -> io::Result<()> {
        self.writer
            .send(job)
            .map_err(|_| io_err("raft log writer stopped"))
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

/// Does a group of queued jobs in order; appends are reported flushed after one fsync at the
/// end (a truncation fsyncs on its own).
fn write_group(db: &DB, recent: &Mutex<Recent>, purger: &mpsc::Sender<LogId>, jobs: Vec<Job>) {
    let mut flushed = Vec::new();
    let mut res: io::Result<()> = Ok(());
    for job in jobs {
        match job {
            Job::Append { batch, count, done } => {
                if res.is_ok() {
                    res = db.write(batch).map_err(io_err);
                    if res.is_ok() {
                        recent.lock().written(count);
                    }
                }
                flushed.push(done);
            }
            Job::Purge(upto) => {
                if purger.send(upto).is_err() {
                    tracing::error!("the raft log's purger thread has stopped");
                }
            }
            Job::Truncate { from, done } => {
                let r = res.as_ref().map_err(io_err).map(|_| ());
                let _ = done.send(r.and_then(|_| truncate_from(db, from)));
            }
        }
    }
    if flushed.is_empty() {
        return;
    }
    if res.is_ok() {
        res = db.flush_wal(true).map_err(io_err);
    }
    for cb in flushed {
        cb.io_completed(res.as_ref().map(|_| ()).map_err(io_err));
    }
}

/// Deletes the entries from index `from` on, durably.
fn truncate_from(db: &DB, from: u64) -> io::Result<()> {
    let cf = cf(db, CF_LOG)?;
    db.delete_range_cf(cf, from.to_be_bytes(), u64::MAX.to_be_bytes())
        .map_err(io_err)?;
    // delete_range excludes the end key itself.
    db.delete_cf(cf, u64::MAX.to_be_bytes()).map_err(io_err)?;
    db.flush_wal(true).map_err(io_err)
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
        let mut out: Vec<Entry> = Vec::new();
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
        // The newest entries may not be written yet: they are in memory.
        let next = out
            .last()
            .map_or(start_index(&range), |e| e.log_id.index + 1);
        let recent = self.recent.lock();
        if let Some(last) = recent.last_index() {
            let end = end_index(&range).map_or(last + 1, |e| e.min(last + 1));
            if next < end
                && let Some(more) = recent.get(next, end)
            {
                out.extend(more);
            }
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
        // A purge is recorded on disk by the purger thread, after `purge` returned.
        let on_disk: Option<LogId> = self.get_meta(KEY_PURGED)?;
        let last_purged_log_id = on_disk.max(self.recent.lock().purged);
        // Entries up to the purge point may still be on disk (the purger records the point
        // before it deletes them), and the point may lie beyond the last entry (a purge behind
        // an installed snapshot): the log ends at the later of the two.
        let last_log_id = self.last_entry_log_id()?.max(last_purged_log_id);
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
        let count = kept.len();
        {
            let mut recent = self.recent.lock();
            recent.unwritten += count;
            for (e, size) in kept {
                recent.push(e, size);
            }
        }
        self.queue(Job::Append {
            batch,
            count,
            done: callback,
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.recent.lock().truncate_from(from);
        let (done, rx) = tokio::sync::oneshot::channel();
        self.queue(Job::Truncate { from, done })?;
        rx.await.map_err(|_| io_err("raft log writer stopped"))?
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.recent.lock().purge_upto(log_id);
        self.queue(Job::Purge(log_id))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use openraft::type_config::TypeConfigExt;

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
        r.purge_upto(ent(2).log_id);
        assert_eq!(indexes(r.get(3, 6)), Some(vec![3, 4, 5]));
        assert_eq!(indexes(r.get(2, 4)), None);
        // An entry that does not continue the held ones replaces them.
        r.push(ent(9), 10);
        assert_eq!(indexes(r.get(9, 10)), Some(vec![9]));
        assert_eq!(indexes(r.get(5, 6)), None);
        assert_eq!(r.bytes, 10);
    }

    #[test]
    fn recent_keeps_unwritten_entries_beyond_its_bounds() {
        let mut r = Recent {
            unwritten: 3,
            ..Recent::default()
        };
        for i in 0..3 {
            r.push(ent(i), RECENT_LOG_BYTES);
        }
        assert_eq!(r.entries.len(), 3, "nothing written yet: nothing dropped");
        r.written(2);
        assert_eq!(
            (r.first_index(), r.entries.len()),
            (Some(2), 1),
            "the two written entries go, the unwritten one stays"
        );
        assert_eq!(r.bytes, RECENT_LOG_BYTES);
    }

    #[tokio::test]
    async fn appends_are_read_at_once_and_reach_disk_in_order_with_truncation() {
        async fn append(s: &mut LogStore, idx: std::ops::RangeInclusive<u64>) {
            let (tx, rx) = TypeConfig::oneshot();
            s.append(idx.map(ent), IOFlushed::signal(tx)).await.unwrap();
            rx.await.unwrap().unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let dbs = crate::storage::open(dir.path()).unwrap();
        let mut s = LogStore::open(dbs.log.clone(), dbs.state.clone()).unwrap();
        let (tx, flushed) = TypeConfig::oneshot();
        s.append((1..=5).map(ent), IOFlushed::signal(tx))
            .await
            .unwrap();
        let got = s.try_get_log_entries(1..6).await.unwrap();
        assert_eq!(indexes(Some(got)), Some(vec![1, 2, 3, 4, 5]));
        flushed.await.unwrap().unwrap();
        s.truncate_after(Some(ent(3).log_id)).await.unwrap();
        append(&mut s, 4..=4).await;
        // A store opened on the same database reads from disk only.
        let mut disk = LogStore::open(dbs.log.clone(), dbs.state.clone()).unwrap();
        let got = disk.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(indexes(Some(got)), Some(vec![1, 2, 3, 4]));
        // A range from before the in-memory copy gets the rest of it too.
        disk.recent.lock().push(ent(5), 1);
        let got = disk.try_get_log_entries(2..).await.unwrap();
        assert_eq!(indexes(Some(got)), Some(vec![2, 3, 4, 5]));
    }

    /// The purger records a purge point, then deletes the entries up to it. A point beyond the
    /// last entry (a purge behind a snapshot installed from the leader), recorded just before a
    /// crash, left the log ending before its purge point: openraft refuses to start on such a
    /// log ("inverted log order"). Until the purger has run, the point is reported too.
    #[tokio::test]
    async fn the_log_ends_no_earlier_than_its_purge_point() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = crate::storage::open(dir.path()).unwrap();
        let mut s = LogStore::open(dbs.log.clone(), dbs.state.clone()).unwrap();
        let (tx, flushed) = TypeConfig::oneshot();
        s.append((1..=10).map(ent), IOFlushed::signal(tx))
            .await
            .unwrap();
        flushed.await.unwrap().unwrap();
        // What a crash between recording the point and deleting the entries leaves.
        put_meta(&dbs.log, KEY_PURGED, &ent(20).log_id, true).unwrap();
        let mut reopened = LogStore::open(dbs.log.clone(), dbs.state.clone()).unwrap();
        let st = reopened.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(ent(20).log_id));
        assert_eq!(st.last_log_id, Some(ent(20).log_id));

        // In memory, before the purger has recorded anything.
        let dir = tempfile::tempdir().unwrap();
        let dbs = crate::storage::open(dir.path()).unwrap();
        let mut s = LogStore::open(dbs.log.clone(), dbs.state.clone()).unwrap();
        s.purge(ent(3).log_id).await.unwrap();
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(ent(3).log_id));
        assert_eq!(st.last_log_id, Some(ent(3).log_id));
    }

    #[test]
    fn recent_is_bounded_by_count_and_bytes() {
        let mut r = Recent::default();
        for i in 0..(RECENT_LOG_ENTRIES as u64 + 10) {
            r.push(ent(i), 1);
        }
        assert_eq!(r.entries.len(), RECENT_LOG_ENTRIES);
        assert_eq!(r.first_index(), Some(10));
        r.push(ent(RECENT_LOG_ENTRIES as u64 + 10), RECENT_LOG_BYTES);
        assert_eq!(r.entries.len(), 1, "one large entry pushes out the rest");
        assert_eq!(r.bytes, RECENT_LOG_BYTES);
    }
}
