//! Watches that survive connection loss, without gaps or duplicates.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bosun_proto::etcdserverpb as pb;
use bosun_proto::etcdserverpb::watch_create_request::FilterType;
use bosun_proto::etcdserverpb::watch_request::RequestUnion;
use bosun_proto::mvccpb;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::client::{Client, require_leader};
use crate::error::Error;
use crate::kv::RangeSpec;

/// Options of [`Client::watch`].
#[derive(Debug, Clone)]
pub struct WatchOptions {
    range: RangeSpec,
    start_revision: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    fragment: bool,
    max_fragment_bytes: usize,
    max_retries: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    buffer: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            range: RangeSpec::Single,
            start_revision: 0,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            progress_notify: false,
            fragment: false,
            max_fragment_bytes: 64 << 20,
            max_retries: 10,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            buffer: 128,
        }
    }
}

impl WatchOptions {
    /// Watch one key from the current revision on.
    pub fn new() -> Self {
        Self::default()
    }
    /// Watches every key starting with the key (all keys when the key is empty).
    pub fn with_prefix(mut self) -> Self {
        self.range = RangeSpec::Prefix;
        self
    }
    /// Watches every key `>=` the key.
    pub fn with_from_key(mut self) -> Self {
        self.range = RangeSpec::FromKey;
        self
    }
    /// Watches `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> Self {
        self.range = RangeSpec::End(end.into());
        self
    }
    /// Delivers events from this revision on (inclusive). 0 (default) = after the revision
    /// current when the watch is created. Typically `list_revision + 1`.
    pub fn with_start_revision(mut self, revision: i64) -> Self {
        self.start_revision = revision;
        self
    }
    /// Includes each event's previous key-value.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Filters out put events (server side).
    pub fn with_filter_no_put(mut self) -> Self {
        self.no_put = true;
        self
    }
    /// Filters out delete events (server side).
    pub fn with_filter_no_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }
    /// Asks the server for periodic progress notifications (empty batches whose revision
    /// tells how far the watch has caught up).
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
    /// Lets the server split large responses into fragments, which the stream reassembles.
    pub fn with_fragment(mut self) -> Self {
        self.fragment = true;
        self
    }
    /// Bound on a reassembled fragmented response, in encoded event bytes (default 64 MiB);
    /// past it the stream ends with [`Error::FragmentTooLarge`].
    pub fn with_max_fragment_bytes(mut self, limit: usize) -> Self {
        self.max_fragment_bytes = limit;
        self
    }
    /// How many consecutive failed attempts to (re-)establish the watch are tolerated before
    /// the stream ends with the last error (default 10). The count resets whenever the
    /// server confirms the watch.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }
    /// Back-off between re-establishing attempts (default 50 ms doubling to 2 s).
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }
    /// How many batches may wait, unread, in the stream (default 128; at least 1). When it
    /// is full the watch stops reading from the server (back-pressure).
    pub fn with_buffer(mut self, batches: usize) -> Self {
        self.buffer = batches;
        self
    }

    /// The create request for `key`, starting at `start_revision`.
    pub(crate) fn create_request(&self, key: &[u8], start_revision: i64) -> pb::WatchRequest {
        let (key, range_end) = self.range.resolve(key.to_vec());
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        pb::WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key,
                range_end,
                start_revision,
                progress_notify: self.progress_notify,
                filters,
                prev_kv: self.prev_kv,
                watch_id: 0,
                fragment: self.fragment,
            })),
        }
    }
}

/// The kind of a [`WatchEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted (or its lease expired).
    Delete,
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change; for a delete, the key and the deletion's mod revision.
    pub kv: mvccpb::KeyValue,
    /// The key-value before the change, when requested with
    /// [`WatchOptions::with_prev_kv`] and the key existed.
    pub prev_kv: Option<mvccpb::KeyValue>,
}

impl WatchEvent {
    /// The revision of the change.
    pub fn revision(&self) -> i64 {
        self.kv.mod_revision
    }
}

impl From<mvccpb::Event> for WatchEvent {
    fn from(e: mvccpb::Event) -> Self {
        let kind = if e.r#type == mvccpb::event::EventType::Delete as i32 {
            EventKind::Delete
        } else {
            EventKind::Put
        };
        WatchEvent {
            kind,
            kv: e.kv.unwrap_or_default(),
            prev_kv: e.prev_kv,
        }
    }
}

/// One response of a watch: a batch of events in revision order, or a progress notification.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchBatch {
    /// The server's response header (cluster, member, revision, term).
    pub header: pb::ResponseHeader,
    /// The server's ID of the watch (it may change when the watch is resumed).
    pub watch_id: i64,
    /// The events; empty for a progress notification.
    pub events: Vec<WatchEvent>,
    /// True for a progress notification: every event up to [`WatchBatch::revision`] has been
    /// delivered.
    pub progress_notify: bool,
    /// Set on the final batch after [`WatchStream::cancel`].
    pub canceled: bool,
    /// The server's reason, on a canceled batch.
    pub cancel_reason: String,
    /// The compaction revision the server reported, if any (a compaction that invalidates the
    /// watch is reported as [`Error::Compacted`] instead).
    pub compact_revision: i64,
}

impl WatchBatch {
    /// The header revision: the store's revision when the response was sent.
    pub fn revision(&self) -> i64 {
        self.header.revision
    }
}

/// Reassembles fragmented watch responses: those with `fragment = true` are buffered until
/// the final one (`fragment = false`) arrives, up to a byte bound.
#[derive(Debug)]
pub(crate) struct FragmentAssembler {
    pending: Option<pb::WatchResponse>,
    bytes: usize,
    max_bytes: usize,
}

impl FragmentAssembler {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            pending: None,
            bytes: 0,
            max_bytes,
        }
    }

    /// Feeds one response; returns the complete response once its last fragment is in.
    pub(crate) fn push(
        &mut self,
        resp: pb::WatchResponse,
    ) -> Result<Option<pb::WatchResponse>, Error> {
        let size: usize = resp.events.iter().map(Message::encoded_len).sum();
        let Some(mut acc) = self.pending.take() else {
            if !resp.fragment {
                return Ok(Some(resp));
            }
            if size > self.max_bytes {
                return Err(Error::FragmentTooLarge {
                    limit: self.max_bytes,
                });
            }
            self.bytes = size;
            self.pending = Some(resp);
            return Ok(None);
        };
        if acc.watch_id != resp.watch_id {
            self.reset();
            return Err(Error::Protocol(format!(
                "fragment of watch {} interleaved with fragments of watch {}",
                resp.watch_id, acc.watch_id
            )));
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.max_bytes {
            self.reset();
            return Err(Error::FragmentTooLarge {
                limit: self.max_bytes,
            });
        }
        acc.events.extend(resp.events);
        if resp.fragment {
            self.pending = Some(acc);
            return Ok(None);
        }
        acc.fragment = false;
        if resp.header.is_some() {
            acc.header = resp.header;
        }
        acc.canceled |= resp.canceled;
        acc.compact_revision = acc.compact_revision.max(resp.compact_revision);
        if !resp.cancel_reason.is_empty() {
            acc.cancel_reason = resp.cancel_reason;
        }
        self.bytes = 0;
        Ok(Some(acc))
    }

    /// Drops any partial response (after the stream broke).
    pub(crate) fn reset(&mut self) {
        self.pending = None;
        self.bytes = 0;
    }
}

enum Command {
    Progress,
    Cancel,
}

#[derive(Debug, Default)]
struct Shared {
    watch_id: AtomicI64,
    last_revision: AtomicI64,
}

/// A watch's events, as [`WatchBatch`]es; see [`Client::watch`].
///
/// Read it with [`WatchStream::next`] or as a [`futures::Stream`]. Dropping it cancels the
/// watch.
pub struct WatchStream {
    rx: mpsc::Receiver<Result<WatchBatch, Error>>,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    created_revision: i64,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("watch_id", &self.watch_id())
            .field("last_revision", &self.last_revision())
            .finish()
    }
}

impl WatchStream {
    /// The next batch; `None` once the stream has ended (after an error, or after a
    /// [`WatchStream::cancel`]).
    pub async fn next(&mut self) -> Option<Result<WatchBatch, Error>> {
        self.rx.recv().await
    }

    /// Asks the server for a progress notification, which arrives as a batch with
    /// `progress_notify` set once the watch has caught up.
    pub async fn request_progress(&self) -> Result<(), Error> {
        self.commands
            .send(Command::Progress)
            .await
            .map_err(|_| closed())
    }

    /// Cancels the watch: batches already sent are still delivered, then a batch with
    /// `canceled` set (none if the watch was being resumed at that moment), then `None`.
    pub async fn cancel(&mut self) -> Result<(), Error> {
        self.commands
            .send(Command::Cancel)
            .await
            .map_err(|_| closed())
    }

    /// The server's ID of the watch (it may change after a resume).
    pub fn watch_id(&self) -> i64 {
        self.shared.watch_id.load(Ordering::Relaxed)
    }

    /// The store revision when the watch was first created.
    pub fn created_revision(&self) -> i64 {
        self.created_revision
    }

    /// The highest revision up to which all events have been handed to this stream
    /// (including progress notifications); a resume starts right after it.
    pub fn last_revision(&self) -> i64 {
        self.shared.last_revision.load(Ordering::Relaxed)
    }
}

impl futures::Stream for WatchStream {
    type Item = Result<WatchBatch, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn closed() -> Error {
    Error::Unavailable {
        message: "watch stream has ended".into(),
        connect_failed: false,
    }
}

impl Client {
    /// Watches a key or range (see [`WatchOptions`]) and returns once the server has
    /// confirmed the watch.
    ///
    /// The watch **resumes** by itself: when the connection breaks or the member fails, it
    /// is re-created, on the next endpoint, with `start_revision` set just past the last
    /// revision delivered, so the caller sees neither a gap nor a duplicate. Re-creating
    /// backs off (see [`WatchOptions::with_backoff`]) and gives up after
    /// [`WatchOptions::with_max_retries`] consecutive failures, ending the stream with the
    /// last error. If the history needed has been compacted the stream ends with
    /// [`Error::Compacted`]; the caller must then re-list and watch again.
    ///
    /// The stream is requested with etcd's `hasleader` metadata, so a member that loses
    /// its leader ends the stream and the watch moves to another member.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        opts: WatchOptions,
    ) -> Result<WatchStream, Error> {
        let (tx, rx) = mpsc::channel(opts.buffer.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (created_tx, created_rx) = oneshot::channel();
        let shared = Arc::new(Shared::default());
        let last_rev = if opts.start_revision > 0 {
            opts.start_revision - 1
        } else {
            0
        };
        shared.last_revision.store(last_rev, Ordering::Relaxed);
        let task = WatchTask {
            client: self.clone(),
            key: key.into(),
            opts,
            out: tx,
            commands: cmd_rx,
            shared: shared.clone(),
            created: Some(created_tx),
            last_rev,
            canceling: false,
        };
        let task = tokio::spawn(task.run());
        match created_rx.await {
            Ok(Ok(created_revision)) => Ok(WatchStream {
                rx,
                commands: cmd_tx,
                shared,
                created_revision,
                task,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(closed()),
        }
    }
}

/// What ended one gRPC stream of a watch.
enum StreamEnd {
    /// The watch is over (error delivered, canceled, or nobody listens).
    Done,
    /// The stream broke; the watch should be re-created.
    Broken { err: Error, established: bool },
}

/// What to do after one response.
enum Step {
    Continue,
    End(StreamEnd),
}

struct WatchTask {
    client: Client,
    key: Vec<u8>,
    opts: WatchOptions,
    out: mpsc::Sender<Result<WatchBatch, Error>>,
    commands: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    /// Present until the first creation is confirmed (or fails).
    created: Option<oneshot::Sender<Result<i64, Error>>>,
    /// Every event with a revision `<= last_rev` has been delivered.
    last_rev: i64,
    canceling: bool,
}

impl WatchTask {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.opts.backoff_initial, self.opts.backoff_max);
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let (err, established) = match self.run_stream().await {
                StreamEnd::Done => return,
                StreamEnd::Broken { .. } if self.canceling => return,
                StreamEnd::Broken { err, established } => (err, established),
            };
            if established {
                failures = 0;
                if started.elapsed() >= backoff.max() {
                    backoff.reset();
                }
            }
            failures += 1;
            if failures > self.opts.max_retries {
                tracing::warn!(error = %err, failures, "watch: giving up");
                self.finish(Err(err)).await;
                return;
            }
            let delay = backoff.next_delay();
            tracing::debug!(error = %err, failures, ?delay, last_rev = self.last_rev, "watch: stream broken, resuming");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.out.closed() => return,
            }
        }
    }

    /// Delivers a final item: to `watch()`'s caller if the watch was never created,
    /// otherwise on the stream.
    async fn finish(&mut self, item: Result<WatchBatch, Error>) {
        match (self.created.take(), item) {
            (Some(created), Err(e)) => {
                let _ = created.send(Err(e));
            }
            (_, item) => {
                let _ = self.out.send(item).await;
            }
        }
    }

    fn start_revision(&self) -> i64 {
        if self.created.is_some() && self.opts.start_revision <= 0 {
            // Never created: "from now", as the caller asked.
            0
        } else {
            self.last_rev + 1
        }
    }

    async fn run_stream(&mut self) -> StreamEnd {
        let inner = self.client.inner.clone();
        let (idx, channel) = inner.pick();
        let (req_tx, req_rx) = mpsc::channel::<pb::WatchRequest>(16);
        let create = self.opts.create_request(&self.key, self.start_revision());
        if req_tx.try_send(create).is_err() {
            return StreamEnd::Done;
        }
        let setup = inner.stream_setup_timeout();
        let mut client = inner.watch(channel);
        let request = require_leader(ReceiverStream::new(req_rx));
        let response = tokio::select! {
            r = tokio::time::timeout(setup, client.watch(request)) => r,
            _ = self.out.closed() => return StreamEnd::Done,
        };
        let mut inbound = match response {
            Ok(Ok(resp)) => resp.into_inner(),
            Ok(Err(status)) => {
                let err = Error::from(status);
                return self.on_stream_error(idx, err, false).await;
            }
            Err(_) => {
                inner.failover(idx);
                return StreamEnd::Broken {
                    err: Error::Timeout {
                        message: format!("watch not established within {setup:?}"),
                    },
                    established: false,
                };
            }
        };
        let mut assembler = FragmentAssembler::new(self.opts.max_fragment_bytes);
        let mut established = false;
        let create_deadline = tokio::time::sleep(setup);
        tokio::pin!(create_deadline);
        loop {
            tokio::select! {
                biased;
                _ = self.out.closed() => return StreamEnd::Done,
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Progress) => {
                        let req = pb::WatchRequest {
                            request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                        };
                        let _ = req_tx.try_send(req);
                    }
                    Some(Command::Cancel) => {
                        self.canceling = true;
                        if !established {
                            // Mid-resume: there is no server-side watch to cancel.
                            return StreamEnd::Done;
                        }
                        let req = pb::WatchRequest {
                            request_union: Some(RequestUnion::CancelRequest(pb::WatchCancelRequest {
                                watch_id: self.shared.watch_id.load(Ordering::Relaxed),
                            })),
                        };
                        let _ = req_tx.try_send(req);
                    }
                    None => return StreamEnd::Done,
                },
                _ = &mut create_deadline, if !established => {
                    inner.failover(idx);
                    return StreamEnd::Broken {
                        err: Error::Timeout { message: format!("watch not created within {setup:?}") },
                        established,
                    };
                }
                msg = inbound.message() => match msg {
                    Ok(Some(resp)) => {
                        match self.on_response(resp, &mut assembler, &mut established).await {
                            Step::Continue => {}
                            Step::End(end) => {
                                if let StreamEnd::Broken { .. } = end {
                                    inner.failover(idx);
                                }
                                return end;
                            }
                        }
                    }
                    Ok(None) => {
                        if self.canceling {
                            return StreamEnd::Done;
                        }
                        inner.failover(idx);
                        return StreamEnd::Broken {
                            err: Error::Unavailable {
                                message: "watch stream closed by server".into(),
                                connect_failed: false,
                            },
                            established,
                        };
                    }
                    Err(status) => {
                        let err = Error::from(status);
                        return self.on_stream_error(idx, err, established).await;
                    }
                },
            }
        }
    }

    async fn on_stream_error(&mut self, idx: usize, err: Error, established: bool) -> StreamEnd {
        if err.is_transient() {
            self.client.inner.failover(idx);
            StreamEnd::Broken { err, established }
        } else {
            self.finish(Err(err)).await;
            StreamEnd::Done
        }
    }

    async fn on_response(
        &mut self,
        resp: pb::WatchResponse,
        assembler: &mut FragmentAssembler,
        established: &mut bool,
    ) -> Step {
        if resp.created {
            if resp.canceled || resp.compact_revision > 0 {
                let err = Error::from_watch_cancel(resp.compact_revision, &resp.cancel_reason);
                return self.fail_or_retry(err, *established).await;
            }
            *established = true;
            self.shared.watch_id.store(resp.watch_id, Ordering::Relaxed);
            let header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
            if let Some(created) = self.created.take() {
                if self.opts.start_revision <= 0 {
                    // Events start right after the revision current at creation.
                    self.last_rev = header_rev;
                    self.shared
                        .last_revision
                        .store(header_rev, Ordering::Relaxed);
                }
                if created.send(Ok(header_rev)).is_err() {
                    return Step::End(StreamEnd::Done);
                }
            }
            if resp.events.is_empty() {
                return Step::Continue;
            }
        }
        if resp.canceled || resp.compact_revision > 0 {
            assembler.reset();
            if self.canceling && resp.compact_revision == 0 {
                let batch = WatchBatch {
                    header: resp.header.unwrap_or_default(),
                    watch_id: resp.watch_id,
                    events: Vec::new(),
                    progress_notify: false,
                    canceled: true,
                    cancel_reason: resp.cancel_reason,
                    compact_revision: 0,
                };
                let _ = self.out.send(Ok(batch)).await;
                return Step::End(StreamEnd::Done);
            }
            let err = Error::from_watch_cancel(resp.compact_revision, &resp.cancel_reason);
            return self.fail_or_retry(err, *established).await;
        }
        let resp = match assembler.push(resp) {
            Ok(Some(r)) => r,
            Ok(None) => return Step::Continue,
            Err(e) => {
                self.finish(Err(e)).await;
                return Step::End(StreamEnd::Done);
            }
        };
        match self.batch_from(resp) {
            Some(batch) => {
                if self.out.send(Ok(batch)).await.is_err() {
                    return Step::End(StreamEnd::Done);
                }
                self.shared
                    .last_revision
                    .store(self.last_rev, Ordering::Relaxed);
                Step::Continue
            }
            None => Step::Continue,
        }
    }

    /// Turns a complete response into a batch, dropping events already delivered, and
    /// advances `last_rev`. `None` when nothing is left to deliver.
    fn batch_from(&mut self, resp: pb::WatchResponse) -> Option<WatchBatch> {
        let header = resp.header.unwrap_or_default();
        if resp.events.is_empty() {
            // A progress notification: all events up to the header revision were sent. One
            // from a member that lags behind what was already delivered says nothing new and
            // would make the revision go backwards: drop it.
            if header.revision < self.last_rev {
                return None;
            }
            self.last_rev = header.revision;
            return Some(WatchBatch {
                header,
                watch_id: resp.watch_id,
                events: Vec::new(),
                progress_notify: true,
                canceled: false,
                cancel_reason: String::new(),
                compact_revision: resp.compact_revision,
            });
        }
        let last = self.last_rev;
        let events: Vec<WatchEvent> = resp
            .events
            .into_iter()
            .map(WatchEvent::from)
            .filter(|e| e.revision() > last)
            .collect();
        let max_rev = events.iter().map(WatchEvent::revision).max()?;
        self.last_rev = self.last_rev.max(max_rev);
        Some(WatchBatch {
            header,
            watch_id: resp.watch_id,
            events,
            progress_notify: false,
            canceled: false,
            cancel_reason: String::new(),
            compact_revision: resp.compact_revision,
        })
    }

    async fn fail_or_retry(&mut self, err: Error, established: bool) -> Step {
        if err.is_transient() {
            Step::End(StreamEnd::Broken { err, established })
        } else {
            self.finish(Err(err)).await;
            Step::End(StreamEnd::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rev: i64, key: &str) -> mvccpb::Event {
        mvccpb::Event {
            r#type: mvccpb::event::EventType::Put as i32,
            kv: Some(mvccpb::KeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                value: vec![b'x'; 10],
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn resp(watch_id: i64, fragment: bool, revs: &[i64]) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                revision: 100,
                ..Default::default()
            }),
            watch_id,
            fragment,
            events: revs.iter().map(|r| event(*r, "k")).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn unfragmented_passes_through() -> Result<(), Error> {
        let mut a = FragmentAssembler::new(1 << 20);
        let out = a.push(resp(1, false, &[1, 2]))?;
        assert_eq!(out.map(|r| r.events.len()), Some(2));
        Ok(())
    }

    #[test]
    fn fragments_are_reassembled_in_order() -> Result<(), Error> {
        let mut a = FragmentAssembler::new(1 << 20);
        assert!(a.push(resp(1, true, &[1, 2]))?.is_none());
        assert!(a.push(resp(1, true, &[3]))?.is_none());
        let full = a.push(resp(1, false, &[4, 5]))?;
        let full = full.ok_or(Error::Protocol("expected a response".into()))?;
        assert!(!full.fragment);
        let revs: Vec<i64> = full
            .events
            .iter()
            .filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision))
            .collect();
        assert_eq!(revs, vec![1, 2, 3, 4, 5]);
        // The assembler is ready for the next response.
        assert_eq!(
            a.push(resp(1, false, &[6]))?.map(|r| r.events.len()),
            Some(1)
        );
        Ok(())
    }

    #[test]
    fn fragments_are_bounded() {
        let one = event(1, "k").encoded_len();
        let mut a = FragmentAssembler::new(one * 3);
        assert!(matches!(a.push(resp(1, true, &[1, 2])), Ok(None)));
        assert!(matches!(
            a.push(resp(1, true, &[3, 4])),
            Err(Error::FragmentTooLarge { .. })
        ));
        // After the error the partial response is gone.
        assert!(matches!(a.push(resp(1, false, &[5])), Ok(Some(r)) if r.events.len() == 1));
        let mut a = FragmentAssembler::new(one);
        assert!(matches!(
            a.push(resp(1, true, &[1, 2])),
            Err(Error::FragmentTooLarge { .. })
        ));
    }

    #[test]
    fn interleaved_fragments_are_rejected() {
        let mut a = FragmentAssembler::new(1 << 20);
        assert!(matches!(a.push(resp(1, true, &[1])), Ok(None)));
        assert!(matches!(
            a.push(resp(2, false, &[2])),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn create_request_carries_options() {
        let req = WatchOptions::new()
            .with_prefix()
            .with_prev_kv()
            .with_filter_no_put()
            .with_filter_no_delete()
            .with_progress_notify()
            .with_fragment()
            .create_request(b"/a/", 42);
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                assert_eq!(c.key, b"/a/");
                assert_eq!(c.range_end, b"/a0");
                assert_eq!(c.start_revision, 42);
                assert!(c.prev_kv && c.progress_notify && c.fragment);
                assert_eq!(
                    c.filters,
                    vec![FilterType::Noput as i32, FilterType::Nodelete as i32]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn event_conversion() {
        let mut e = event(3, "a");
        e.r#type = mvccpb::event::EventType::Delete as i32;
        let w = WatchEvent::from(e);
        assert_eq!(w.kind, EventKind::Delete);
        assert_eq!(w.revision(), 3);
    }
}
