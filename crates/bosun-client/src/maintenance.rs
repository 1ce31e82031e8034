//! Maintenance: status, alarms, defragment, hashes, snapshots.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bosun_proto::etcdserverpb as pb;
use bosun_proto::etcdserverpb::AlarmType;
use bosun_proto::etcdserverpb::alarm_request::AlarmAction;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::client::{Client, Idempotency};
use crate::error::Error;

/// Length of the sha256 trailer that ends a snapshot.
pub const SNAPSHOT_HASH_LEN: usize = 32;

/// A snapshot being received, as chunks of bytes; see [`Client::snapshot`].
#[derive(Debug)]
pub struct SnapshotStream {
    inner: tonic::Streaming<pb::SnapshotResponse>,
}

impl SnapshotStream {
    /// The next chunk; `Ok(None)` at the end of the snapshot.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        match self.inner.message().await {
            Ok(Some(resp)) => Ok(Some(resp.blob)),
            Ok(None) => Ok(None),
            Err(status) => Err(Error::from(status)),
        }
    }

    /// The next raw response (with `remaining_bytes` and `version`).
    pub async fn next_response(&mut self) -> Result<Option<pb::SnapshotResponse>, Error> {
        self.inner.message().await.map_err(Error::from)
    }
}

impl futures::Stream for SnapshotStream {
    type Item = Result<Vec<u8>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(|resp| resp.blob).map_err(Error::from)))
    }
}

/// Verifies a byte stream whose last 32 bytes are the sha256 of everything before them,
/// without buffering the stream: it hashes all but a rolling 32-byte tail.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrailerVerifier {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl TrailerVerifier {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let pending = self.tail.len() + chunk.len();
        if pending <= SNAPSHOT_HASH_LEN {
            self.tail.extend_from_slice(chunk);
            return;
        }
        let to_hash = pending - SNAPSHOT_HASH_LEN;
        let from_tail = to_hash.min(self.tail.len());
        self.hasher.update(&self.tail[..from_tail]);
        let from_chunk = to_hash - from_tail;
        self.hasher.update(&chunk[..from_chunk]);
        let mut tail = self.tail.split_off(from_tail);
        tail.extend_from_slice(&chunk[from_chunk..]);
        self.tail = tail;
    }

    /// Total bytes seen.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn verify(self) -> Result<(), Error> {
        if self.tail.len() < SNAPSHOT_HASH_LEN {
            return Err(Error::SnapshotCorrupt(format!(
                "snapshot is {} bytes, too short to hold its sha256",
                self.total
            )));
        }
        let digest = self.hasher.finalize();
        if digest.as_slice() == self.tail.as_slice() {
            Ok(())
        } else {
            Err(Error::SnapshotCorrupt(
                "sha256 of the snapshot does not match its trailer".into(),
            ))
        }
    }
}

impl Client {
    /// The current endpoint's status (version, DB size, leader, raft index, ...). For a given
    /// member use [`Client::pinned`]. Retried.
    pub async fn status(&self) -> Result<pb::StatusResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            inner
                .maintenance(ch)
                .status(pb::StatusRequest {})
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// The active alarms of all members. Retried.
    pub async fn alarm_list(&self) -> Result<pb::AlarmResponse, Error> {
        self.alarm_raw(pb::AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
    }

    /// Clears an alarm (`member_id` 0 and `AlarmType::None` = all). Retried (disarming twice
    /// is harmless).
    pub async fn alarm_disarm(
        &self,
        member_id: u64,
        alarm: AlarmType,
    ) -> Result<pb::AlarmResponse, Error> {
        self.alarm_raw(pb::AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id,
            alarm: alarm as i32,
        })
        .await
    }

    /// Sends an `AlarmRequest` as is. Retried unless it activates an alarm.
    pub async fn alarm_raw(&self, req: pb::AlarmRequest) -> Result<pb::AlarmResponse, Error> {
        let idem = if req.action == AlarmAction::Activate as i32 {
            Idempotency::NotIdempotent
        } else {
            Idempotency::Idempotent
        };
        let inner = &self.inner;
        self.call(idem, |ch| async move {
            inner
                .maintenance(ch)
                .alarm(req)
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Defragments the current endpoint's backend (use [`Client::pinned`] for a given
    /// member). Not retried unless provably not applied.
    pub async fn defragment(&self) -> Result<pb::DefragmentResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| async move {
            inner
                .maintenance(ch)
                .defragment(pb::DefragmentRequest {})
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// The hash of the key-value history up to `revision` (0 = latest), to compare members.
    /// Retried.
    pub async fn hash_kv(&self, revision: i64) -> Result<pb::HashKvResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            inner
                .maintenance(ch)
                .hash_kv(pb::HashKvRequest { revision })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Asks the cluster to transfer leadership to member `target_id`. Not retried unless
    /// provably not applied.
    pub async fn move_leader(&self, target_id: u64) -> Result<pb::MoveLeaderResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| async move {
            inner
                .maintenance(ch)
                .move_leader(pb::MoveLeaderRequest { target_id })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Streams a snapshot of the current endpoint's backend. Establishing the stream is
    /// retried; a stream that breaks midway is not resumed (start over).
    pub async fn snapshot(&self) -> Result<SnapshotStream, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            inner
                .maintenance(ch)
                .snapshot(pb::SnapshotRequest {})
                .await
                .map(|r| SnapshotStream {
                    inner: r.into_inner(),
                })
        })
        .await
    }

    /// Saves a snapshot to `path` and returns its size in bytes.
    ///
    /// The data goes to `<path>.part`, is fsynced, and is checked: its last 32 bytes must be
    /// the sha256 of the rest ([`Error::SnapshotCorrupt`] otherwise, and the partial file is
    /// removed). Only then is it renamed to `path` (and the directory fsynced).
    pub async fn snapshot_to_file(&self, path: impl AsRef<Path>) -> Result<u64, Error> {
        let path = path.as_ref();
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let result = self.write_snapshot(&part).await;
        match result {
            Ok(total) => {
                tokio::fs::rename(&part, path).await?;
                if let Some(dir) = path.parent() {
                    let dir = if dir.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        dir
                    };
                    tokio::fs::File::open(dir).await?.sync_all().await?;
                }
                Ok(total)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn write_snapshot(&self, part: &Path) -> Result<u64, Error> {
        let mut stream = self.snapshot().await?;
        let mut file = tokio::fs::File::create(part).await?;
        let mut verifier = TrailerVerifier::new();
        while let Some(chunk) = stream.next_chunk().await? {
            verifier.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        file.sync_all().await?;
        let total = verifier.total();
        verifier.verify()?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_trailer(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.extend_from_slice(&Sha256::digest(data));
        v
    }

    fn verify_in_chunks(bytes: &[u8], chunk: usize) -> Result<(), Error> {
        let mut v = TrailerVerifier::new();
        for c in bytes.chunks(chunk.max(1)) {
            v.update(c);
        }
        assert_eq!(v.total(), bytes.len() as u64);
        v.verify()
    }

    #[test]
    fn trailer_verifies_for_any_chunking() -> Result<(), Error> {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let snap = with_trailer(&data);
        for chunk in [1, 3, 31, 32, 33, 64, 100, 1031, 5000] {
            verify_in_chunks(&snap, chunk)?;
        }
        // Empty payload: the trailer alone.
        verify_in_chunks(&with_trailer(b""), 7)?;
        Ok(())
    }

    #[test]
    fn trailer_detects_corruption_and_truncation() {
        let mut snap = with_trailer(b"hello snapshot");
        snap[2] ^= 1;
        assert!(matches!(
            verify_in_chunks(&snap, 5),
            Err(Error::SnapshotCorrupt(_))
        ));
        assert!(matches!(
            verify_in_chunks(&[0u8; 31], 5),
            Err(Error::SnapshotCorrupt(_))
        ));
        let snap = with_trailer(b"hello snapshot");
        assert!(matches!(
            verify_in_chunks(&snap[..snap.len() - 1], 4),
            Err(Error::SnapshotCorrupt(_))
        ));
    }
}
