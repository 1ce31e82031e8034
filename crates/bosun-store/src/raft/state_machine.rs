//! The Raft state machine: applies committed commands to the MVCC store.

use std::collections::BTreeSet;
use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bosun_proto::etcdserverpb::{AlarmMember, alarm_request::AlarmAction};
use futures::StreamExt;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig, decode, encode, io_err};
use crate::apply::{self, Command, CommandResult};
use crate::mvcc::{CF_META, Mvcc, WriteTxn, cf};
use crate::watch::WatchHub;

/// Key of the last applied log id in the meta column family.
pub(crate) const META_APPLIED: &[u8] = b"applied";
const META_MEMBERSHIP: &[u8] = b"membership";
const META_ALARMS: &[u8] = b"alarms";
const META_REMOVED: &[u8] = b"removed_members";

/// What the state machine shares with the services that read it.
#[derive(Debug)]
pub struct Shared {
    pub mvcc: Mvcc,
    pub hub: WatchHub,
    applied: Mutex<(Option<LogId>, StoredMembership)>,
    alarms: Mutex<Vec<AlarmMember>>,
    /// IDs of members removed from the cluster: never given out again, never let back in.
    removed: Mutex<BTreeSet<u64>>,
    /// Client writes applied since the last snapshot began (a log entry may carry many).
    writes_since_snapshot: AtomicU64,
    /// Writes between two snapshots (the member's `--snapshot-count`).
    snapshot_every: u64,
    /// Signalled when a snapshot is due; see [`Shared::snapshot_due`].
    snapshot_due: Notify,
    /// Held by a snapshot build and by an install for as long as each works in the snapshot
    /// directory: openraft builds a snapshot in a task of its own while the state machine
    /// installs one from the leader, and each prunes the directory of all but its own
    /// snapshot (an install pruned the checkpoint a build was making, the build failed, and
    /// that failure stops Raft on the member for good). Serialised, a build's checkpoint
    /// holds whatever an install wrote before it, so the newest snapshot becomes current.
    snapshot_files: Mutex<()>,
}

impl Shared {
    /// The alarms currently raised.
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.lock().clone()
    }

    /// Whether member `id` has been removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.lock().contains(&id)
    }

    /// The index of the last applied log entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.applied.lock().0.map_or(0, |l| l.index)
    }

    /// Waits until `--snapshot-count` writes have been applied since the last snapshot. Raft
    /// counts log entries, and one entry carries up to a batch of writes, so the member asks
    /// for snapshots itself.
    pub async fn snapshot_due(&self) {
        loop {
            self.snapshot_due.notified().await;
            // A signal from before the last snapshot began may still be pending.
            if self.writes_since_snapshot.load(Ordering::Relaxed) >= self.snapshot_every {
                return;
            }
        }
    }

    /// The last applied log id and the membership as of it.
    pub fn applied(&self) -> (Option<LogId>, StoredMembership) {
        self.applied.lock().clone()
    }
}

/// A snapshot on disk: a file holding the records of [`crate::snapshot`] (one received from
/// the leader), or a RocksDB checkpoint directory (one this member built: hard links to the
/// database's files, made in milliseconds whatever the size of the store). A checkpoint is
/// turned into records only when they are needed, to send to a member or to install.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// Extension of a checkpoint directory.
const CHECKPOINT_EXT: &str = "ckpt";
/// Extension of a snapshot being received from the leader.
const INCOMING_EXT: &str = "incoming";

/// Creates the file a snapshot received from the leader is written to, in `snapshot_dir`,
/// removed when the returned path is dropped. Its name is its own, as two transfers may
/// overlap (the leader retries one it gave up on), and of a kind that pruning after a
/// snapshot is built leaves alone: a received snapshot lost while it arrives fails its install,
/// which stops Raft on this member for good. Leftovers of a crash are removed at start.
pub fn incoming_snapshot(
    snapshot_dir: &std::path::Path,
) -> io::Result<(std::fs::File, tempfile::TempPath)> {
    let f = tempfile::Builder::new()
        .prefix("incoming-")
        .suffix(&format!(".{INCOMING_EXT}"))
        .tempfile_in(snapshot_dir)?;
    Ok(f.into_parts())
}

/// Opens the state-machine column families of the checkpoint at `dir`, read-only.
fn open_checkpoint(dir: &std::path::Path) -> io::Result<rocksdb::DB> {
    rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        dir,
        crate::mvcc::STATE_CFS,
        false,
    )
    .map_err(io_err)
}

/// Records the snapshot at `path` as the current one in `meta_path`: written beside it and
/// renamed over it, so that `get_current_snapshot`, which may read it at the same moment,
/// sees the old record or the new one, never half of one.
fn save_current(
    meta_path: &std::path::Path,
    meta: &SnapshotMeta,
    path: &std::path::Path,
) -> io::Result<()> {
    let tmp = meta_path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut f, &encode(&(meta, path))?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, meta_path)
}

impl SnapshotFile {
    /// The path of a file holding the snapshot's records: the snapshot itself, or for a
    /// checkpoint the records written from it beside it (once; later calls reuse them).
    /// Blocking.
    pub fn records(&self) -> io::Result<PathBuf> {
        // Snapshots sent to two members at once would otherwise write the same file together.
        static WRITING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
        if !self.path.is_dir() {
            return Ok(self.path.clone());
        }
        let _writing = WRITING.lock();
        let out = self.path.with_extension("snap");
        if out.exists() {
            return Ok(out);
        }
        let db = open_checkpoint(&self.path)?;
        let tmp = self.path.with_extension("tmp");
        let mut w = BufWriter::new(std::fs::File::create(&tmp)?);
        crate::snapshot::write(&db, &db.snapshot(), &mut w)?;
        w.into_inner().map_err(|e| io_err(e.error()))?.sync_all()?;
        std::fs::rename(&tmp, &out)?;
        Ok(out)
    }
}

/// The state machine handed to openraft.
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
    snapshot_dir: PathBuf,
}

fn get_meta<T: for<'a> serde::Deserialize<'a>>(
    db: &rocksdb::DB,
    key: &[u8],
) -> io::Result<Option<T>> {
    match db
        .get_cf(cf(db, CF_META).map_err(io_err)?, key)
        .map_err(io_err)?
    {
        None => Ok(None),
        Some(b) => decode(&b).map(Some),
    }
}

impl StateMachine {
    /// Opens the state machine over `mvcc`, keeping snapshots in `snapshot_dir`, due every
    /// `snapshot_every` writes.
    pub fn open(mvcc: Mvcc, snapshot_dir: PathBuf, snapshot_every: u64) -> io::Result<Self> {
        std::fs::create_dir_all(&snapshot_dir)?;
        // Snapshots that were arriving when the member stopped.
        for e in std::fs::read_dir(&snapshot_dir)?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == INCOMING_EXT) {
                std::fs::remove_file(p)?;
            }
        }
        let applied = get_meta(mvcc.db(), META_APPLIED)?.flatten();
        let membership = get_meta(mvcc.db(), META_MEMBERSHIP)?.unwrap_or_default();
        let alarms = get_meta(mvcc.db(), META_ALARMS)?.unwrap_or_default();
        let removed = get_meta(mvcc.db(), META_REMOVED)?.unwrap_or_default();
        Ok(StateMachine {
            shared: Arc::new(Shared {
                mvcc,
                hub: WatchHub::new(),
                applied: Mutex::new((applied, membership)),
                alarms: Mutex::new(alarms),
                removed: Mutex::new(removed),
                writes_since_snapshot: AtomicU64::new(0),
                snapshot_every: snapshot_every.max(1),
                snapshot_due: Notify::new(),
                snapshot_files: Mutex::new(()),
            }),
            snapshot_dir,
        })
    }

    /// The state shared with the services.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Applies one command that is not a batch.
    fn apply_command(&self, tx: &mut WriteTxn<'_>, cmd: &Command) -> io::Result<CommandResult> {
        match cmd {
            Command::Alarm(a) => self.apply_alarm(tx, a),
            cmd => Ok(apply::execute(tx, cmd)),
        }
    }

    fn apply_alarm(
        &self,
        tx: &mut WriteTxn<'_>,
        a: &bosun_proto::etcdserverpb::AlarmRequest,
    ) -> io::Result<CommandResult> {
        let mut alarms = self.shared.alarms.lock();
        let m = AlarmMember {
            member_id: a.member_id,
            alarm: a.alarm,
        };
        match AlarmAction::try_from(a.action) {
            Ok(AlarmAction::Activate) if !alarms.contains(&m) => alarms.push(m),
            Ok(AlarmAction::Deactivate) => {
                alarms.retain(|x| {
                    !(x.alarm == m.alarm && (m.member_id == 0 || x.member_id == m.member_id))
                });
            }
            _ => {}
        }
        tx.put_meta(META_ALARMS, &encode(&*alarms)?)
            .map_err(io_err)?;
        Ok(CommandResult::Alarm(alarms.clone()))
    }

    fn snapshot_paths(&self, meta: &SnapshotMeta) -> (PathBuf, PathBuf) {
        let id: String = meta
            .last_log_id
            .as_ref()
            .map_or_else(|| "empty".to_string(), |l| l.to_string())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        (
            self.snapshot_dir.join(format!("{id}.snap")),
            self.snapshot_dir.join("current.meta"),
        )
    }

    /// Makes the snapshot whose records are at `records` this member's current one, copying
    /// them to where `snapshot_paths` keeps it first when `copy` (a snapshot received), durably.
    /// Done before the state machine is replaced by the snapshot: the other way round, a member
    /// that crashed in between found its state machine ahead of every snapshot it had at
    /// start; openraft then purged the log up to the state machine and stopped, its purge point
    /// beyond the current snapshot.
    fn keep_as_current(
        &self,
        meta: &SnapshotMeta,
        records: &std::path::Path,
        copy: bool,
    ) -> io::Result<PathBuf> {
        let (stored, meta_path) = self.snapshot_paths(meta);
        if copy {
            std::fs::copy(records, &stored)?;
            std::fs::File::open(&stored)?.sync_all()?;
        }
        save_current(&meta_path, meta, &stored)?;
        Ok(stored)
    }

    /// Keeps only the snapshot at `keep` (and the records written from it, for a
    /// checkpoint).
    fn prune_snapshots(&self, keep: &std::path::Path) {
        let Ok(dir) = std::fs::read_dir(&self.snapshot_dir) else {
            return;
        };
        let keep_records = keep.with_extension("snap");
        for e in dir.flatten() {
            let p = e.path();
            if p == keep || p == keep_records {
                continue;
            }
            if p.extension().is_some_and(|x| x == "snap") {
                let _ = std::fs::remove_file(p);
            } else if p.extension().is_some_and(|x| x == CHECKPOINT_EXT) {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let this = self.clone();
        // Writes applied from here on count towards the next snapshot.
        self.shared
            .writes_since_snapshot
            .store(0, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _files = this.shared.snapshot_files.lock();
            let db = this.shared.mvcc.db();
            // A checkpoint flushes the memtables (all column families at once) and links the
            // files: the state machine as of one applied entry, read back from the checkpoint
            // itself so that the id and the data agree.
            let building = this.snapshot_dir.join(format!("building.{CHECKPOINT_EXT}"));
            if building.exists() {
                std::fs::remove_dir_all(&building)?;
            }
            rocksdb::checkpoint::Checkpoint::new(db)
                .and_then(|c| c.create_checkpoint(&building))
                .map_err(io_err)?;
            let (applied, membership, revision) = {
                let ck = open_checkpoint(&building)?;
                (
                    get_meta::<Option<LogId>>(&ck, META_APPLIED)?.flatten(),
                    get_meta::<StoredMembership>(&ck, META_MEMBERSHIP)?.unwrap_or_default(),
                    crate::mvcc::read_i64(&ck, CF_META, crate::mvcc::META_REV).map_err(io_err)?,
                )
            };
            let meta = SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
            };
            let (path, meta_path) = this.snapshot_paths(&meta);
            let path = path.with_extension(CHECKPOINT_EXT);
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
            std::fs::rename(&building, &path)?;
            save_current(&meta_path, &meta, &path)?;
            this.prune_snapshots(&path);
            tracing::info!(
                index = meta.last_log_id.as_ref().map_or(0, |l| l.index),
                revision,
                "built a snapshot"
            );
            Ok(Snapshot {
                meta,
                snapshot: SnapshotFile { path },
            })
        })
        .await
        .map_err(io_err)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        Ok(self.shared.applied())
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: futures::Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        while let Some(item) = entries.next().await {
            batch.push(item?);
        }
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let last_log_id = last.0.log_id;
        let mut responses = Vec::with_capacity(batch.len());
        let mut membership: Option<StoredMembership> = None;
        let mut removed_now = Vec::new();
        let mut tx = self.shared.mvcc.write();
        // Checked under the write lock: a watcher subscribes under the read lock.
        if self.shared.hub.watchers() == 0 {
            tx.without_events();
        }
        let mut writes = 0;
        for (entry, responder) in batch {
            writes += match &entry.payload {
                EntryPayload::Normal(cmd) => cmd.writes(),
                _ => 1,
            };
            let result = match &entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(Command::Batch(cmds)) => CommandResult::Batch(
                    cmds.iter()
                        .map(|c| self.apply_command(&mut tx, c))
                        .collect::<io::Result<_>>()?,
                ),
                EntryPayload::Normal(cmd) => self.apply_command(&mut tx, cmd)?,
                EntryPayload::Membership(m) => {
                    // A node that leaves the membership is removed for good.
                    let before = match &membership {
                        Some(b) => b.membership().clone(),
                        None => self.shared.applied.lock().1.membership().clone(),
                    };
                    removed_now.extend(
                        before
                            .nodes()
                            .map(|(id, _)| *id)
                            .filter(|id| m.get_node(id).is_none()),
                    );
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    CommandResult::Done
                }
            };
            if let Some(r) = responder {
                responses.push((r, result));
            }
        }
        tx.put_meta(META_APPLIED, &encode(&Some(last_log_id))?)
            .map_err(io_err)?;
        if let Some(m) = &membership {
            tx.put_meta(META_MEMBERSHIP, &encode(m)?).map_err(io_err)?;
        }
        if !removed_now.is_empty() {
            let mut removed = self.shared.removed.lock();
            removed.extend(removed_now);
            tx.put_meta(META_REMOVED, &encode(&*removed)?)
                .map_err(io_err)?;
        }
        let events = {
            let mut applied = self.shared.applied.lock();
            let events = tx.commit().map_err(io_err)?;
            applied.0 = Some(last_log_id);
            if let Some(m) = membership {
                applied.1 = m;
            }
            events
        };
        self.shared.hub.publish(events);
        for (r, result) in responses {
            r.send(result);
        }
        let since = self
            .shared
            .writes_since_snapshot
            .fetch_add(writes, Ordering::Relaxed);
        if since + writes >= self.shared.snapshot_every {
            self.shared.snapshot_due.notify_one();
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let this = self.clone();
        let meta = meta.clone();
        let revision = tokio::task::spawn_blocking(move || {
            let _files = this.shared.snapshot_files.lock();
            // At start, openraft restores the member's current snapshot, kept where
            // `snapshot_paths` says (a checkpoint of its own beside it); any other was received,
            // from the leader in a file of its own.
            let (stored, _) = this.snapshot_paths(&meta);
            let own_checkpoint = stored.with_extension(CHECKPOINT_EXT);
            let received = snapshot.path != stored && snapshot.path != own_checkpoint;
            let records = snapshot.records()?;
            // A snapshot received becomes this member's current one before the state machine
            // is replaced by it, so that a crash in between restores it at start; one of its
            // own (restored at start) already is.
            let current = received || !snapshot.path.is_dir();
            if current {
                this.keep_as_current(&meta, &records, received)?;
            }
            let mvcc = &this.shared.mvcc;
            let mut state = mvcc.state.write();
            let mut r = BufReader::new(std::fs::File::open(&records)?);
            crate::snapshot::restore(mvcc.db(), &mut r)?;
            *state = Mvcc::load_state(mvcc.db()).map_err(io_err)?;
            *this.shared.alarms.lock() = get_meta(mvcc.db(), META_ALARMS)?.unwrap_or_default();
            *this.shared.removed.lock() = get_meta(mvcc.db(), META_REMOVED)?.unwrap_or_default();
            *this.shared.applied.lock() = (meta.last_log_id, meta.last_membership.clone());
            this.shared
                .writes_since_snapshot
                .store(0, Ordering::Relaxed);
            if current {
                this.prune_snapshots(&stored);
            }
            let (index, revision) = (meta.last_log_id.map_or(0, |l| l.index), state.rev);
            drop(state);
            if received {
                tracing::info!(index, revision, "installed a snapshot from the leader");
            } else {
                tracing::info!(index, revision, "restored the member's current snapshot");
            }
            Ok::<i64, io::Error>(revision)
        })
        .await
        .map_err(io_err)??;
        // Watchers following the hub would otherwise hear of the revisions the snapshot
        // brought only when the next one is applied.
        self.shared.hub.restored(revision);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let meta_path = self.snapshot_dir.join("current.meta");
        let Ok(b) = std::fs::read(&meta_path) else {
            return Ok(None);
        };
        let (meta, path): (SnapshotMeta, PathBuf) = decode(&b)?;
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Snapshot {
            meta,
            snapshot: SnapshotFile { path },
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;

    fn open(dir: &std::path::Path) -> (StateMachine, PathBuf) {
        let dbs = crate::storage::open(dir).unwrap();
        let snapshot_dir = dir.join("snap");
        let sm =
            StateMachine::open(Mvcc::open(dbs.state).unwrap(), snapshot_dir.clone(), 1).unwrap();
        (sm, snapshot_dir)
    }

    fn put(key: &str, lease: i64) -> Command {
        Command::Put(bosun_proto::etcdserverpb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
    }

    async fn apply_all(sm: &mut StateMachine, cmds: Vec<Command>) {
        use openraft::entry::RaftEntry;
        let first = sm
            .applied_state()
            .await
            .unwrap()
            .0
            .map_or(1, |l| l.index + 1);
        let entries: Vec<_> = cmds
            .into_iter()
            .zip(first..)
            .map(|(c, i)| {
                let log_id = openraft::testing::log_id::<TypeConfig>(1, 1, i);
                Ok((super::super::Entry::new_normal(log_id, c), None))
            })
            .collect();
        sm.apply(futures::stream::iter(entries)).await.unwrap();
    }

    fn live(sm: &StateMachine) -> Vec<(String, i64)> {
        sm.shared
            .mvcc
            .range(&bosun_proto::etcdserverpb::RangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), kv.mod_revision))
            .collect()
    }

    /// The writes of a batch apply in order, each at its own revision as if it were an entry
    /// of its own; a refused one changes nothing and takes no revision. Two members applying
    /// the same entries reach the same state.
    #[tokio::test]
    async fn a_batch_applies_its_writes_in_order() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut states = Vec::new();
        for dir in &dirs {
            let (mut sm, _) = open(dir.path());
            apply_all(
                &mut sm,
                vec![
                    put("before", 0),
                    Command::Batch(vec![put("a", 0), put("refused", 99), put("b", 0)]),
                    put("after", 0),
                ],
            )
            .await;
            let (applied, _) = sm.applied_state().await.unwrap();
            assert_eq!(applied.map(|l| l.index), Some(3));
            states.push((live(&sm), sm.shared.mvcc.rev()));
        }
        let want = vec![
            ("a".to_string(), 3),
            ("after".to_string(), 5),
            ("b".to_string(), 4),
            ("before".to_string(), 2),
        ];
        assert_eq!(states[0], (want, 5));
        assert_eq!(states[0], states[1]);
    }

    /// A snapshot arriving from the leader while this member builds one of its own (members
    /// snapshot every `--snapshot-count` writes) must still be there to install once it has
    /// arrived; it was pruned with the member's older snapshots, and the install's failure
    /// stopped Raft on the member.
    #[tokio::test]
    async fn a_snapshot_arriving_survives_building_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut sm, snapshot_dir) = open(dir.path());
        let (mut file, arriving) = incoming_snapshot(&snapshot_dir).unwrap();
        file.write_all(b"the first chunks").unwrap();
        let (_, other) = incoming_snapshot(&snapshot_dir).unwrap();
        assert_ne!(*arriving, *other, "two transfers share a file");
        sm.build_snapshot().await.unwrap();
        sm.build_snapshot().await.unwrap();
        assert_eq!(std::fs::read(&arriving).unwrap(), b"the first chunks");
        // Gone once dropped, and at the next start if the member stopped first.
        let left = arriving.keep().unwrap();
        drop(other);
        drop(sm);
        assert!(left.exists());
        let dir2 = dir.path().to_path_buf();
        let (_sm, _) = open(&dir2);
        assert!(!left.exists(), "a snapshot that was arriving is left over");
        let names: Vec<String> = std::fs::read_dir(&snapshot_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("incoming-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    /// A member builds snapshots of its own (every `--snapshot-count` writes, in a task of
    /// openraft's) while it installs one from the leader: both must succeed. The install
    /// pruned the checkpoint the build was making (`building.ckpt`), the build failed with
    /// "No such file or directory", and openraft stopped Raft on the member for good (seen in
    /// a seeded chaos run: the member's watchers never reached the final revision).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn building_and_installing_snapshots_at_once_both_succeed() {
        let leader_dir = tempfile::tempdir().unwrap();
        let (mut leader, _) = open(leader_dir.path());
        apply_all(&mut leader, (0..200).map(|_| put("k", 0)).collect()).await;
        let sent = leader.build_snapshot().await.unwrap();
        let records = sent.snapshot.records().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (mut sm, snapshot_dir) = open(dir.path());
        for round in 0..40 {
            apply_all(&mut sm, (0..20).map(|_| put("mine", 0)).collect()).await;
            let (mut file, arrived) = incoming_snapshot(&snapshot_dir).unwrap();
            file.write_all(&std::fs::read(&records).unwrap()).unwrap();
            let mut builder = sm.clone();
            let build = tokio::spawn(async move { builder.build_snapshot().await.map(|_| ()) });
            let installed = sm
                .install_snapshot(
                    &sent.meta,
                    SnapshotFile {
                        path: arrived.to_path_buf(),
                    },
                )
                .await;
            let built = build.await.unwrap();
            assert!(installed.is_ok(), "round {round}: install: {installed:?}");
            assert!(built.is_ok(), "round {round}: build: {built:?}");
            // The current snapshot is one that exists.
            assert!(sm.get_current_snapshot().await.unwrap().is_some());
        }
    }

    /// A member that crashes while it installs a snapshot from the leader starts again with
    /// that snapshot as its current one: the snapshot is kept before the state machine is
    /// replaced. Installed the other way round, a crash in between left the state machine at
    /// the snapshot's log id and the current snapshot older; at start openraft purged the log
    /// up to the state machine and stopped ("purge_upto <= snapshot_last_log_id"), for good
    /// (seen in a seeded chaos run, BOSUN_CHAOS_SEED=1010, the member killed twice in 3 s).
    #[tokio::test]
    async fn a_crash_during_an_install_leaves_the_received_snapshot_current() {
        use openraft::storage::RaftLogStorage;
        let leader_dir = tempfile::tempdir().unwrap();
        let (mut leader, _) = open(leader_dir.path());
        apply_all(&mut leader, (0..50).map(|_| put("k", 0)).collect()).await;
        let sent = leader.build_snapshot().await.unwrap();
        let records = sent.snapshot.records().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let (mut sm, snapshot_dir) = open(dir.path());
        apply_all(&mut sm, (0..10).map(|_| put("mine", 0)).collect()).await;
        sm.build_snapshot().await.unwrap();
        // The install's first step, then the crash.
        sm.keep_as_current(&sent.meta, &records, true).unwrap();
        drop(sm);

        let dbs = crate::storage::open(dir.path()).unwrap();
        let mut log =
            crate::raft::log_store::LogStore::open(dbs.log.clone(), dbs.state.clone()).unwrap();
        let mut sm =
            StateMachine::open(Mvcc::open(dbs.state.clone()).unwrap(), snapshot_dir, 1).unwrap();
        let st = openraft::storage::StorageHelper::new(&mut log, &mut sm)
            .with_id(1)
            .get_initial_state()
            .await
            .unwrap();
        assert_eq!(st.snapshot_meta.last_log_id, sent.meta.last_log_id);
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(
            applied, sent.meta.last_log_id,
            "the snapshot was not restored"
        );
        let purged = log.get_log_state().await.unwrap().last_purged_log_id;
        assert!(
            purged <= st.snapshot_meta.last_log_id,
            "purged {purged:?} beyond the snapshot"
        );
        assert_eq!(live(&sm), live(&leader));
    }
}
