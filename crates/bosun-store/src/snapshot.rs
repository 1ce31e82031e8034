//! A consistent copy of a member's state-machine data, as a stream of records.
//!
//! Used for Raft snapshots (log compaction, catching up a member) and for the Maintenance
//! Snapshot RPC. The format: a magic line, then records `cf:u8 klen:u32 key vlen:u32 value`,
//! then an end record `0xff`. Writing and reading are streamed: memory stays bounded whatever
//! the size of the store.

use std::io::{self, Read, Write};

use rocksdb::{DB, IteratorMode, ReadOptions, WriteBatch};

use crate::limits::MAX_SNAPSHOT_FIELD;
use crate::mvcc::{CF_KV, CF_LEASE, CF_META};

const MAGIC: &[u8] = b"BOSUN-SNAPSHOT-1\n";
const END: u8 = 0xff;
/// The column families a snapshot carries, in record-tag order.
const CFS: [&str; 3] = [CF_KV, CF_LEASE, CF_META];
/// Records per write batch when restoring.
const RESTORE_BATCH: usize = 4096;

fn cf<'a>(db: &'a DB, name: &str) -> io::Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| io::Error::other(format!("missing column family {name}")))
}

/// Writes every state-machine record visible in `snap` to `w`.
pub fn write(db: &DB, snap: &rocksdb::Snapshot<'_>, w: &mut impl Write) -> io::Result<()> {
    w.write_all(MAGIC)?;
    for (tag, name) in CFS.iter().enumerate() {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snap);
        for item in db.iterator_cf_opt(cf(db, name)?, ro, IteratorMode::Start) {
            let (k, v) = item.map_err(io::Error::other)?;
            w.write_all(&[tag as u8])?;
            for field in [&k, &v] {
                let len = u32::try_from(field.len()).map_err(io::Error::other)?;
                w.write_all(&len.to_be_bytes())?;
                w.write_all(field)?;
            }
        }
    }
    w.write_all(&[END])?;
    w.flush()
}

fn read_field(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_SNAPSHOT_FIELD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "snapshot record too large",
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Deletes every state-machine record.
fn clear(db: &DB) -> io::Result<()> {
    for name in CFS {
        let h = cf(db, name)?;
        let mut first = None;
        let mut last = None;
        for item in db.iterator_cf(h, IteratorMode::Start) {
            let (k, _) = item.map_err(io::Error::other)?;
            if first.is_none() {
                first = Some(k.to_vec());
            }
            last = Some(k.to_vec());
        }
        if let (Some(f), Some(l)) = (first, last) {
            db.delete_range_cf(h, &f, &l).map_err(io::Error::other)?;
            db.delete_cf(h, &l).map_err(io::Error::other)?;
        }
    }
    Ok(())
}

/// A state machine with data but no applied log id is what a restore interrupted by a crash
/// leaves (the applied id is restored last): it is emptied, so Raft rebuilds it from the log
/// or a new snapshot. Returns whether anything was discarded.
pub fn discard_interrupted_restore(db: &DB, applied_key: &[u8]) -> io::Result<bool> {
    if db
        .get_cf(cf(db, CF_META)?, applied_key)
        .map_err(io::Error::other)?
        .is_some()
    {
        return Ok(false);
    }
    let mut any = false;
    for name in CFS {
        any |= db
            .iterator_cf(cf(db, name)?, IteratorMode::Start)
            .next()
            .is_some();
    }
    if any {
        clear(db)?;
        db.flush_wal(true).map_err(io::Error::other)?;
    }
    Ok(any)
}

/// Replaces the state-machine column families of `db` with the records read from `r`.
pub fn restore(db: &DB, r: &mut impl Read) -> io::Result<()> {
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a bosun snapshot",
        ));
    }
    clear(db)?;
    let mut batch = WriteBatch::default();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        if tag[0] == END {
            break;
        }
        let name = CFS
            .get(tag[0] as usize)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad snapshot record"))?;
        let k = read_field(r)?;
        let v = read_field(r)?;
        batch.put_cf(cf(db, name)?, k, v);
        if batch.len() >= RESTORE_BATCH {
            db.write(std::mem::take(&mut batch))
                .map_err(io::Error::other)?;
        }
    }
    db.write(batch).map_err(io::Error::other)?;
    db.flush_wal(true).map_err(io::Error::other)
}
