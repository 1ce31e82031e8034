//! The etcd Maintenance service: status, alarms, defragmentation, hashes, snapshots.

use std::pin::Pin;
use std::sync::Arc;

use bosun_proto::etcdserverpb::maintenance_server::Maintenance;
use bosun_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse, alarm_request::AlarmAction,
};
use futures::Stream;
use rocksdb::{Direction, IteratorMode};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::Replica;
use crate::apply::{Command, CommandResult};
use crate::error::EtcdError;
use crate::limits::CLIENT_SNAPSHOT_CHUNK;
use crate::mvcc::{CF_KV, Rev, cf};

/// The etcd API version this store speaks; clients gate features on it.
pub const ETCD_VERSION: &str = "3.5.17";

/// The Maintenance service of one member.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    pub replica: Arc<Replica>,
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// A writer that fails once the receiving end of `tx` is gone.
struct UntilClosed<'a, W, T> {
    inner: W,
    tx: &'a mpsc::Sender<T>,
}

impl<W: std::io::Write, T> std::io::Write for UntilClosed<'_, W, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.tx.is_closed() {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl MaintenanceService {
    /// crc32 over the stored changes up to `rev` (0 = all): equal on members with equal data.
    fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), EtcdError> {
        let mvcc = &self.replica.shared.mvcc;
        let db = mvcc.db();
        let (cur, compact) = (mvcc.rev(), mvcc.compact_rev());
        let at = if rev <= 0 { cur } else { rev };
        if at > cur {
            return Err(EtcdError::FutureRev);
        }
        if at < compact {
            return Err(EtcdError::Compacted);
        }
        let snap = db.snapshot();
        let mut h = crc32fast::Hasher::new();
        let start = Rev::new(compact, 0).to_key();
        for item in snap.iterator_cf(
            cf(db, CF_KV)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item.map_err(EtcdError::internal)?;
            let r = Rev::from_key(&k).ok_or_else(|| EtcdError::internal("corrupt kv key"))?;
            if r.main > at {
                break;
            }
            h.update(&k);
            h.update(&v);
        }
        Ok((h.finalize(), compact, at))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let r = req.into_inner();
        let alarms = match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => {
                let all = self.replica.shared.alarms();
                all.into_iter()
                    .filter(|a| {
                        (r.member_id == 0 || a.member_id == r.member_id)
                            && (r.alarm == AlarmType::None as i32 || a.alarm == r.alarm)
                    })
                    .collect()
            }
            Ok(_) => match self.replica.propose(Command::Alarm(r)).await? {
                CommandResult::Alarm(a) => a,
                other => {
                    return Err(other.unexpected().into());
                }
            },
            Err(_) => return Err(Status::invalid_argument("unknown alarm action")),
        };
        Ok(Response::new(AlarmResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            alarms,
        }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let m = self.replica.metrics();
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push(EtcdError::NoLeader.to_string());
        }
        for a in self.replica.shared.alarms() {
            let name = AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
            errors.push(format!("memberID:{} alarm:{}", a.member_id, name));
        }
        let size = i64::try_from(self.replica.db_size()).unwrap_or(i64::MAX);
        let learner = m
            .membership_config
            .membership()
            .learner_ids()
            .any(|id| id == self.replica.id);
        Ok(Response::new(StatusResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            version: ETCD_VERSION.to_string(),
            db_size: size,
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.as_ref().map_or(0, |l| l.index),
            errors,
            db_size_in_use: size,
            is_learner: learner,
            storage_version: String::new(),
            db_size_quota: i64::try_from(self.replica.cfg.quota()).unwrap_or(i64::MAX),
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let replica = self.replica.clone();
        // Full compaction rewrites the files without deleted data; RocksDB serves reads and
        // writes meanwhile, so unlike etcd's defrag this does not stop the member.
        tokio::task::spawn_blocking(move || {
            for (db, name) in replica.databases() {
                if let Some(h) = db.cf_handle(name) {
                    db.compact_range_cf(h, None::<&[u8]>, None::<&[u8]>);
                }
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
        }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let (hash, _, _) = self.hash_kv(0)?;
        Ok(Response::new(HashResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let (hash, compact_revision, hash_revision) =
            MaintenanceService::hash_kv(self, req.get_ref().revision)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.replica.header(self.replica.shared.mvcc.rev())),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let db = self.replica.shared.mvcc.db().clone();
        let (tx, rx) = mpsc::channel::<Result<SnapshotResponse, Status>>(4);
        // The copy is written to a temporary file first so that remaining_bytes is exact; the
        // file is read back in chunks, so memory stays bounded.
        let dir = self.replica.cfg.data_dir.join("snap");
        tokio::task::spawn_blocking(move || {
            let res = (|| -> std::io::Result<()> {
                use std::io::{Read, Seek, Write};
                let mut f = tempfile::tempfile_in(&dir)?;
                {
                    let snap = db.snapshot();
                    // The copy stops once nobody waits for it (the client went away, or the
                    // member stops and closes its connections).
                    let mut w = std::io::BufWriter::new(UntilClosed {
                        inner: &mut f,
                        tx: &tx,
                    });
                    crate::snapshot::write(&db, &snap, &mut w)?;
                }
                // etcd's clients expect the data to fill whole 512-byte sectors, then a 32-byte
                // sha256 of it; pad with zeros past the end record.
                let len = f.stream_position()?;
                let pad = (512 - len % 512) % 512;
                f.write_all(&vec![0u8; pad as usize])?;
                let total = len + pad;
                f.seek(std::io::SeekFrom::Start(0))?;
                let mut h = Sha256::new();
                let mut sent = 0u64;
                let mut buf = vec![0u8; CLIENT_SNAPSHOT_CHUNK];
                while sent < total {
                    let n = f.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    sent += n as u64;
                    h.update(&buf[..n]);
                    let msg = SnapshotResponse {
                        header: None,
                        remaining_bytes: total - sent,
                        blob: buf[..n].to_vec(),
                        version: String::new(),
                    };
                    if tx.blocking_send(Ok(msg)).is_err() {
                        return Ok(());
                    }
                }
                let _ = tx.blocking_send(Ok(SnapshotResponse {
                    header: None,
                    remaining_bytes: 0,
                    blob: h.finalize().to_vec(),
                    version: String::new(),
                }));
                Ok(())
            })();
            if let Err(e) = res {
                tracing::warn!(error = %e, "snapshot stream failed");
                let _ = tx.blocking_send(Err(Status::internal(e.to_string())));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn move_leader(
        &self,
        _req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("MoveLeader is not supported yet"))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("Downgrade is not supported"))
    }
}
