//! Batching of writes on their way into Raft.
//!
//! Under load most client writes reach followers (clients spread over all members), and a
//! `Forward` call per write costs a round of HTTP/2 framing, encoding and task wake-ups on
//! both sides. On the leader, a log entry per write costs Raft's bookkeeping, a log record,
//! its encoding for each follower and a response. Writes queue here instead; a sender takes
//! everything queued (up to [`MAX_BATCH`] writes and [`BATCH_BYTES`]) into one `WriteBatch`
//! call to the leader, or on the leader into one log entry ([`Command::Batch`]), with at most
//! [`IN_FLIGHT`] batches out at once, so a lone write goes out at once and a crowd shares
//! calls and entries. Each write keeps its own revision and outcome.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::apply::{Command, CommandResult};
use crate::error::{EtcdError, EtcdResult};
use crate::limits::{BATCH_BYTES, MAX_BATCH};
use crate::raft::Raft;
use crate::raft::transport::PeerPool;
use crate::server::forward::{self, Write, WriteBatch};

/// Most calls out at once. Fewer means larger batches and less CPU per write under load
/// (put@256, CPU per write over three rounds: 165-182 µs with 2, 173-187 µs with 4, 180-187
/// µs with 8); a lone write still goes out at once.
pub const IN_FLIGHT: usize = 2;
/// Writes queued before callers wait.
const QUEUE: usize = 4096;

/// Where a write goes: proposed here (this member leads) or to the leader at a peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Local,
    Leader(Arc<str>),
}

struct Pending {
    target: Target,
    cmd: Command,
    reply: oneshot::Sender<EtcdResult<CommandResult>>,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct WriteBatcher {
    tx: mpsc::Sender<Pending>,
}

impl WriteBatcher {
    /// Starts the sender task; it ends when the last batcher is dropped.
    pub fn spawn(raft: Raft, peers: PeerPool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, peers, rx));
        WriteBatcher { tx }
    }

    async fn submit(&self, target: Target, cmd: Command) -> EtcdResult<CommandResult> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { target, cmd, reply })
            .await
            .map_err(|_| EtcdError::Stopped)?;
        // The sender dropped the write without an answer: it may have gone out.
        rx.await.map_err(|_| EtcdError::Timeout)?
    }

    /// Forwards one write to the leader at `url`, with [`PeerPool::forward`]'s outcomes:
    /// `NoLeader` when it was certainly not sent, `Timeout` when it may have been applied.
    pub async fn forward(&self, url: Arc<str>, cmd: Command) -> EtcdResult<CommandResult> {
        self.submit(Target::Leader(url), cmd).await
    }

    /// Proposes one write on this member, which leads: `NotLeader` when it was not appended.
    pub async fn propose(&self, cmd: Command) -> EtcdResult<CommandResult> {
        self.submit(Target::Local, cmd).await
    }
}

/// Whether a write of `size` bytes joins a non-empty batch of `len` writes and `bytes`.
fn fits(len: usize, bytes: usize, size: usize) -> bool {
    len < MAX_BATCH && bytes + size <= BATCH_BYTES
}

/// Groups consecutive commands into log entries of at most [`MAX_BATCH`] commands and
/// [`BATCH_BYTES`] (a larger command alone).
fn into_entries(cmds: Vec<Command>) -> Vec<Command> {
    fn close(group: &mut Vec<Command>, entries: &mut Vec<Command>) {
        match group.len() {
            0 => {}
            1 => entries.extend(group.pop()),
            _ => entries.push(Command::Batch(std::mem::take(group))),
        }
    }
    let mut entries = Vec::new();
    let mut group = Vec::new();
    let mut bytes = 0;
    for cmd in cmds {
        let size = cmd.size();
        if !group.is_empty() && !fits(group.len(), bytes, size) {
            close(&mut group, &mut entries);
            bytes = 0;
        }
        bytes += size;
        group.push(cmd);
    }
    close(&mut group, &mut entries);
    entries
}

/// Proposes several writes on this member, the leader, in as few log entries as the limits
/// allow (appended together); `answer` gets each write's outcome, in order, as soon as its
/// entry is applied: one call per command, a write refused when applied as its `Err`
/// (never `Ok(CommandResult::Error)`), `Stopped` (outcome unknown) for those Raft stopped
/// before answering.
pub async fn propose_many(
    raft: &Raft,
    cmds: Vec<Command>,
    mut answer: impl FnMut(EtcdResult<CommandResult>),
) {
    let n = cmds.len();
    let entries = into_entries(cmds);
    let counts: Vec<usize> = entries.iter().map(|e| e.writes() as usize).collect();
    let mut answered = 0;
    if let Ok(mut results) = raft.client_write_many(entries).await {
        let mut counts = counts.into_iter();
        while let Some(r) = results.next().await {
            let count = counts.next().unwrap_or(0);
            let mut all = |e: EtcdError| (0..count).for_each(|_| answer(Err(e.clone())));
            match r {
                Ok(Ok(w)) => match (count, w.response) {
                    (1, r) => answer(r.into_result()),
                    (count, CommandResult::Batch(rs)) if rs.len() == count => {
                        rs.into_iter().for_each(|r| answer(r.into_result()))
                    }
                    (_, other) => all(EtcdError::internal(format!(
                        "unexpected batch result {other:?}"
                    ))),
                },
                Ok(Err(e)) => all(super::write_error(e)),
                Err(_) => all(EtcdError::Stopped),
            }
            answered += count;
        }
    }
    for _ in answered..n {
        answer(Err(EtcdError::Stopped));
    }
}

async fn run(raft: Raft, peers: PeerPool, mut rx: mpsc::Receiver<Pending>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    // A write that did not fit in the last batch starts the next one.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // Everything that queued while the calls in flight were out goes in this one.
        let mut bytes = first.cmd.size();
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            let size = p.cmd.size();
            if !fits(batch.len(), bytes, size) {
                carried = Some(p);
                break;
            }
            bytes += size;
            batch.push(p);
        }
        let (raft, peers) = (raft.clone(), peers.clone());
        tokio::spawn(async move {
            let _permit = permit;
            // Normally all go to the one leader; after a leader change, some to another.
            while let Some(target) = batch.first().map(|p| p.target.clone()) {
                let (same, rest): (Vec<Pending>, Vec<Pending>) =
                    batch.into_iter().partition(|p| p.target == target);
                batch = rest;
                match target {
                    Target::Local => propose(&raft, same).await,
                    Target::Leader(url) => send(&peers, &url, same).await,
                }
            }
        });
    }
}

async fn propose(raft: &Raft, group: Vec<Pending>) {
    let (cmds, replies): (Vec<Command>, Vec<_>) =
        group.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let mut replies = replies.into_iter();
    propose_many(raft, cmds, |r| {
        if let Some(tx) = replies.next() {
            let _ = tx.send(r);
        }
    })
    .await;
}

async fn send(peers: &PeerPool, url: &str, group: Vec<Pending>) {
    let (mut cmds, replies): (Vec<Command>, Vec<_>) =
        group.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let n = cmds.len();
    let results = match n {
        0 => return,
        1 => vec![forward::send(peers, url, Write(cmds.swap_remove(0))).await],
        _ => match forward::send(peers, url, WriteBatch(cmds)).await {
            Ok(rs) if rs.len() == n => rs,
            Ok(rs) => {
                let e = format!("a batch of {n} writes got {} answers", rs.len());
                vec![Err(EtcdError::internal(e)); n]
            }
            Err(e) => vec![Err(e); n],
        },
    };
    for (tx, r) in replies.into_iter().zip(results) {
        let _ = tx.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_proto::etcdserverpb::PutRequest;

    fn put(value_len: usize) -> Command {
        Command::Put(PutRequest {
            key: b"k".to_vec(),
            value: vec![b'v'; value_len],
            ..PutRequest::default()
        })
    }

    fn shape(entries: &[Command]) -> Vec<usize> {
        entries
            .iter()
            .map(|c| {
                let n = c.writes() as usize;
                assert_eq!(
                    matches!(c, Command::Batch(_)),
                    n > 1,
                    "a lone write is no batch"
                );
                n
            })
            .collect()
    }

    #[test]
    fn writes_go_into_entries_within_count_and_byte_limits() {
        assert!(into_entries(Vec::new()).is_empty());
        assert_eq!(shape(&into_entries(vec![put(10)])), vec![1]);
        let many: Vec<Command> = (0..MAX_BATCH * 2 + 3).map(|_| put(10)).collect();
        assert_eq!(shape(&into_entries(many)), vec![MAX_BATCH, MAX_BATCH, 3]);
        // Bytes: three writes of 400 KiB fill a megabyte with two; one larger than the limit
        // goes alone, between its neighbours' entries.
        let big = vec![
            put(400 << 10),
            put(400 << 10),
            put(400 << 10),
            put(2 << 20),
            put(10),
        ];
        let entries = into_entries(big);
        assert_eq!(shape(&entries), vec![2, 1, 1, 1]);
        assert!(matches!(&entries[2], Command::Put(p) if p.value.len() == 2 << 20));
        for c in &entries[..2] {
            assert!(c.size() <= BATCH_BYTES);
        }
    }
}
