//! A member's two RocksDB databases, under its data directory:
//! - `db/`: the state machine (column families `kv`, `lease`, `meta`), written without
//!   RocksDB's WAL and flushed atomically (see `mvcc::write`);
//! - `raft/`: the Raft log (`raft_log`, `raft_meta`), every write through the WAL.
//!
//! Apart, flushing one does not write out the other: a snapshot flushes only the state, and
//! log entries purged behind it are dropped from the log's memtable instead of being written
//! to a table file first.
//!
//! Data directories from before the split keep the log in `db/`; [`open`] moves it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch};

use crate::mvcc::STATE_CFS;

/// Column family of the log database: log index (big-endian) -> encoded entry.
pub const CF_LOG: &str = "raft_log";
/// Column family of the log database: vote, committed and purged log ids.
pub const CF_RAFT_META: &str = "raft_meta";

/// The column families of the log database.
pub const LOG_CFS: [&str; 2] = [CF_LOG, CF_RAFT_META];

/// Records copied per write while moving a log.
const MOVE_BATCH: usize = 1024;

/// The state machine's and the Raft log's databases.
pub struct Databases {
    pub state: Arc<DB>,
    pub log: Arc<DB>,
}

/// How a database is written, which decides its options.
#[derive(Clone, Copy)]
enum Kind {
    /// The state machine: written without the WAL, its column families flushed together.
    State,
    /// The Raft log: every write through the WAL, which is fsynced.
    Log,
}

/// WAL files the log database keeps for reuse. A reused file is overwritten in place, so its
/// fsync writes the data alone; a new file grows with every append, and each fsync also writes
/// its inode (on this machine's ext4, 3 device round trips instead of 2).
const RECYCLED_WALS: usize = 2;

fn options(kind: Kind) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    match kind {
        // Written without the WAL: its column families must reach disk together.
        Kind::State => opts.set_atomic_flush(true),
        Kind::Log => {
            opts.set_recycle_log_file_num(RECYCLED_WALS);
            // Flushing both column families at once frees a WAL as soon as the entries'
            // memtable is flushed: otherwise the vote and committed index, written all the
            // time, would keep old WALs alive until they reached `max_total_wal_size`.
            opts.set_atomic_flush(true);
        }
    }
    opts
}

fn cf_options(kind: Kind) -> Options {
    let mut o = Options::default();
    o.set_compression_type(match kind {
        Kind::State => rocksdb::DBCompressionType::Lz4,
        // Entries are deleted soon after they are written (the log is purged behind each
        // snapshot), and those a memtable flush writes out seldom live to be compacted:
        // compressing them costs CPU and saves nothing that lasts.
        Kind::Log => rocksdb::DBCompressionType::None,
    });
    o
}

fn open_db(path: &Path, cfs: &[&str], kind: Kind) -> anyhow::Result<DB> {
    open_db_with(path, cfs, &options(kind), &cf_options(kind))
}

fn open_db_with(
    path: &Path,
    cfs: &[&str],
    opts: &Options,
    cf_opts: &Options,
) -> anyhow::Result<DB> {
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
    let mut opts = opts.clone();
    // Flushes and compactions then write SST files past the page cache: at put@256 the
    // kernel's copying of them into it took about 5% of the members' CPU.
    opts.set_use_direct_io_for_flush_and_compaction(direct_io_works(path));
    let cfs = cfs
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_opts.clone()));
    DB::open_cf_descriptors(&opts, path, cfs)
        .with_context(|| format!("open rocksdb at {}", path.display()))
}

/// The alignment of a direct write: 4 KiB covers the usual logical block sizes.
const DIRECT_ALIGN: usize = 4096;

/// Whether a file in `dir` can be written with `O_DIRECT`: not every file system takes it.
fn direct_io_works(dir: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    let probe = dir.join(".direct-io-probe");
    let write = || -> rustix::io::Result<()> {
        let flags = OFlags::CREATE | OFlags::TRUNC | OFlags::WRONLY | OFlags::DIRECT;
        let fd = rustix::fs::open(&probe, flags | OFlags::CLOEXEC, Mode::from_raw_mode(0o600))?;
        let buf = vec![0u8; 2 * DIRECT_ALIGN];
        let at = buf.as_ptr().align_offset(DIRECT_ALIGN).min(DIRECT_ALIGN);
        rustix::io::write(&fd, &buf[at..at + DIRECT_ALIGN]).map(drop)
    };
    let works = write();
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = &works {
        tracing::info!(dir = %dir.display(), error = %e, "no direct I/O here: SST files go through the page cache");
    }
    works.is_ok()
}

/// Opens (creating if need be) both databases under `data_dir`, first moving a log kept in
/// the state database by an earlier version.
pub fn open(data_dir: &Path) -> anyhow::Result<Databases> {
    let state_path = data_dir.join("db");
    let existing = if state_path.join("CURRENT").exists() {
        DB::list_cf(&Options::default(), &state_path)
            .with_context(|| format!("list column families of {}", state_path.display()))?
    } else {
        Vec::new()
    };
    let old: Vec<&str> = LOG_CFS
        .into_iter()
        .filter(|cf| existing.iter().any(|e| e == cf))
        .collect();
    let mut state_cfs = STATE_CFS.to_vec();
    state_cfs.extend(&old);
    let mut state = open_db(&state_path, &state_cfs, Kind::State)?;
    let log = open_db(&data_dir.join("raft"), &LOG_CFS, Kind::Log)?;
    if !old.is_empty() {
        move_log(&mut state, &log).context("move the raft log out of the state database")?;
    }
    Ok(Databases {
        state: Arc::new(state),
        log: Arc::new(log),
    })
}

/// Moves the log's column families from `from` to `to`: copies them over whatever `to` holds
/// (a move a crash interrupted), makes the copy durable, then drops them from `from`. The log
/// column family goes last but one, so while it exists in `from` the copy is not known to be
/// whole; a crash before the second drop leaves an empty `raft_meta` there, dropped next time.
fn move_log(from: &mut DB, to: &DB) -> anyhow::Result<()> {
    if from.cf_handle(CF_LOG).is_some() {
        tracing::info!("moving the raft log to its own database");
        for name in LOG_CFS {
            let dst = to.cf_handle(name).context("log column family")?;
            // Start from nothing: a move a crash interrupted left part of a copy. Every key of
            // the log's column families sorts before 64 bytes of 0xff.
            let mut clear = WriteBatch::default();
            clear.delete_range_cf(dst, &[0u8; 0][..], &[0xffu8; 64][..]);
            to.write(clear)?;
            let Some(src) = from.cf_handle(name) else {
                continue;
            };
            let mut batch = WriteBatch::default();
            for item in from.iterator_cf(src, IteratorMode::Start) {
                let (k, v) = item?;
                batch.put_cf(dst, k, v);
                if batch.len() >= MOVE_BATCH {
                    to.write(std::mem::take(&mut batch))?;
                }
            }
            to.write(batch)?;
        }
        to.flush_wal(true)?;
    }
    for name in LOG_CFS {
        if from.cf_handle(name).is_some() {
            from.drop_cf(name)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys(db: &DB, cf: &str) -> Vec<Vec<u8>> {
        db.iterator_cf(db.cf_handle(cf).unwrap(), IteratorMode::Start)
            .map(|i| i.unwrap().0.to_vec())
            .collect()
    }

    #[test]
    fn sst_files_are_written_past_the_page_cache_where_the_file_system_allows_it() {
        use crate::mvcc::CF_KV;
        assert!(!direct_io_works(Path::new("/nonexistent/bosun")));
        let dir = tempfile::tempdir().unwrap();
        let works = direct_io_works(dir.path());
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the probe leaves nothing behind"
        );
        let path = dir.path().join("db");
        let db = open_db(&path, &STATE_CFS, Kind::State).unwrap();
        let kv = db.cf_handle(CF_KV).unwrap();
        for i in 0u32..1000 {
            db.put_cf(kv, i.to_be_bytes(), vec![b'v'; 300]).unwrap();
        }
        db.flush_cf(kv).unwrap();
        drop(db);
        // RocksDB runs with what the probe found, and what it flushed reads back.
        let options = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("OPTIONS-")
            })
            .unwrap();
        let text = std::fs::read_to_string(options).unwrap();
        assert!(text.contains(&format!("use_direct_io_for_flush_and_compaction={works}")));
        let db = open_db(&path, &STATE_CFS, Kind::State).unwrap();
        assert_eq!(keys(&db, CF_KV).len(), 1000);
    }

    /// Writes a data directory the way versions before the split did: the log in `db/`.
    fn old_layout(dir: &Path, entries: u64) {
        let cfs: Vec<&str> = STATE_CFS.iter().chain(&LOG_CFS).copied().collect();
        let db = open_db(&dir.join("db"), &cfs, Kind::State).unwrap();
        let log = db.cf_handle(CF_LOG).unwrap();
        for i in 1..=entries {
            db.put_cf(log, i.to_be_bytes(), format!("entry {i}"))
                .unwrap();
        }
        db.put_cf(db.cf_handle(CF_RAFT_META).unwrap(), b"vote", b"v1")
            .unwrap();
        db.put_cf(db.cf_handle(crate::mvcc::CF_KV).unwrap(), b"k", b"state")
            .unwrap();
        db.flush_wal(true).unwrap();
    }

    #[test]
    fn a_log_kept_in_the_state_database_moves_to_its_own() {
        let dir = tempfile::tempdir().unwrap();
        old_layout(dir.path(), 3000);
        let dbs = open(dir.path()).unwrap();
        let log_keys = keys(&dbs.log, CF_LOG);
        assert_eq!(log_keys.len(), 3000);
        assert_eq!(log_keys[0], 1u64.to_be_bytes());
        assert_eq!(
            dbs.log
                .get_cf(dbs.log.cf_handle(CF_LOG).unwrap(), 3000u64.to_be_bytes())
                .unwrap()
                .as_deref(),
            Some(&b"entry 3000"[..])
        );
        assert_eq!(keys(&dbs.log, CF_RAFT_META), vec![b"vote".to_vec()]);
        assert!(dbs.state.cf_handle(CF_LOG).is_none());
        assert!(dbs.state.cf_handle(CF_RAFT_META).is_none());
        assert_eq!(keys(&dbs.state, crate::mvcc::CF_KV), vec![b"k".to_vec()]);
        drop(dbs);
        // Opened again, nothing moves and nothing is lost.
        let dbs = open(dir.path()).unwrap();
        assert_eq!(keys(&dbs.log, CF_LOG).len(), 3000);
        let cfs = DB::list_cf(&Options::default(), dir.path().join("db")).unwrap();
        assert!(
            !cfs.iter().any(|c| c == CF_LOG || c == CF_RAFT_META),
            "{cfs:?}"
        );
    }

    #[test]
    fn a_move_interrupted_by_a_crash_is_done_again_whole() {
        let dir = tempfile::tempdir().unwrap();
        old_layout(dir.path(), 10);
        // A crash during the copy: the new log holds a stray entry beyond the old log's and
        // part of the copy.
        {
            let log = open_db(&dir.path().join("raft"), &LOG_CFS, Kind::Log).unwrap();
            let cf = log.cf_handle(CF_LOG).unwrap();
            log.put_cf(cf, 1u64.to_be_bytes(), b"entry 1").unwrap();
            log.put_cf(cf, 99u64.to_be_bytes(), b"stray").unwrap();
        }
        let dbs = open(dir.path()).unwrap();
        let expect: Vec<Vec<u8>> = (1..=10u64).map(|i| i.to_be_bytes().to_vec()).collect();
        assert_eq!(keys(&dbs.log, CF_LOG), expect);
        drop(dbs);
        // A crash between the two drops: only an empty raft_meta is left, and dropped.
        {
            let cfs: Vec<&str> = STATE_CFS.iter().chain([&CF_RAFT_META]).copied().collect();
            let db = open_db(&dir.path().join("db"), &cfs, Kind::State).unwrap();
            assert!(db.cf_handle(CF_RAFT_META).is_some());
        }
        let dbs = open(dir.path()).unwrap();
        assert_eq!(keys(&dbs.log, CF_LOG), expect);
        assert_eq!(keys(&dbs.log, CF_RAFT_META), vec![b"vote".to_vec()]);
        assert!(dbs.state.cf_handle(CF_RAFT_META).is_none());
    }

    #[test]
    fn the_log_reuses_its_wal_files_and_recovers_from_a_reused_one() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("raft");
        // Small memtables, so that writes alone fill them and RocksDB flushes on its own; and
        // WALs allowed to grow far beyond them, as they do by default beyond 64 MiB memtables,
        // so that only a flush of both column families frees one.
        let mut small = cf_options(Kind::Log);
        small.set_write_buffer_size(256 << 10);
        let mut opts = options(Kind::Log);
        opts.set_max_total_wal_size(1 << 30);
        let open_log = || open_db_with(&log_dir, &LOG_CFS, &opts, &small).unwrap();
        let put = |db: &DB, from: u64, to: u64| {
            let cf = db.cf_handle(CF_LOG).unwrap();
            for i in from..to {
                db.put_cf(cf, i.to_be_bytes(), vec![b'e'; 512]).unwrap();
                // The committed index, written all the time as a member does.
                db.put_cf(
                    db.cf_handle(CF_RAFT_META).unwrap(),
                    b"committed",
                    i.to_be_bytes(),
                )
                .unwrap();
            }
            db.flush_wal(true).unwrap();
        };
        let db = open_log();
        // RocksDB's own account, in its info log: "reusing log N from recycle list".
        let reused = || {
            std::fs::read_to_string(log_dir.join("LOG"))
                .unwrap()
                .contains("reusing log")
        };
        // About 1.5 MiB of entries, six memtables: a WAL freed only when it reached
        // `max_total_wal_size` would not be reused by then.
        const ENOUGH: u64 = 3000;
        let mut written = 0;
        // A full memtable of entries is flushed with the vote and committed index, which frees
        // the WAL holding them; the freed file is kept, and a later WAL is that file renamed
        // and written over in place.
        while !reused() && written < ENOUGH {
            put(&db, written, written + 250);
            written += 250;
            // Let the background job that frees WALs run.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(reused(), "no WAL reused after {written} entries");
        // Written over stale records, the newest entries come back after a reopen, and
        // nothing from the stale records does.
        put(&db, written, written + 100);
        written += 100;
        drop(db);
        let db = open_log();
        let keys = keys(&db, CF_LOG);
        assert_eq!(keys.len() as u64, written);
        assert_eq!(keys.last().unwrap(), &(written - 1).to_be_bytes());
        assert_eq!(
            db.get_cf(db.cf_handle(CF_RAFT_META).unwrap(), b"committed")
                .unwrap()
                .as_deref(),
            Some(&(written - 1).to_be_bytes()[..])
        );
    }

    #[test]
    fn a_new_data_directory_gets_both_databases() {
        let dir = tempfile::tempdir().unwrap();
        let dbs = open(dir.path()).unwrap();
        assert!(dbs.state.cf_handle(crate::mvcc::CF_KV).is_some());
        assert!(dbs.state.cf_handle(CF_LOG).is_none());
        assert!(dbs.log.cf_handle(CF_LOG).is_some());
        assert!(dir.path().join("raft").join("CURRENT").exists());
    }
}
