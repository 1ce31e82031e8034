//! Chaos: clients run register operations (put, get, compare-and-set) and watches against a
//! three-member `bosun store` while a nemesis kills -9 and restarts members (the leader
//! included), pauses them with SIGSTOP/SIGCONT and cuts them off from their peers. Every
//! operation is recorded with its invoke and complete times and its outcome; the checker in
//! `bosun_tests::checker` decides whether the history is linearizable, and checks every watch
//! stream against the store's own history: ordered, unique, atomic, never below the revision
//! asked for, reliable up to the final revision, identical across watchers and members, and
//! holding every acknowledged write.
//!
//! Most watchers read the gRPC stream themselves, so that they see exactly what a member
//! sends (the SDK drops what it already delivered): one pinned to each member, which resumes
//! on that member once it is back (after a kill, a pause or a cut); one that resumes on the
//! next member when its stream breaks; one that also moves to the next member every second or
//! two, so that resuming on a member that is behind or just restarted happens often. Two more
//! use the SDK over all members. The members snapshot every few writes, so a member that was
//! down or cut off for a while catches up by installing the leader's snapshot; the run counts
//! those installs.
//!
//! The seed is printed; `BOSUN_CHAOS_SEED=<n>` replays the same schedule of faults and
//! operations (timing still differs run to run). `BOSUN_CHAOS_SECS` sets the length of the
//! run: the test command runs a short one; `chaos_long` (ignored by default, run with
//! `cargo test -p bosun-tests --test integration chaos::chaos_long -- --ignored`) runs ten
//! minutes unless told otherwise. Each run
//! works in a directory of its own (under `BOSUN_CHAOS_DIR`, by default Cargo's target `tmp`
//! directory): the members' data and logs, and the recorded history in text files. It is
//! removed when the run passes and kept, and named in the panic message, when it fails.
//!
//! Two deterministic cases reproduce, one fault each, what the chaos runs are there to catch
//! in watches: a watch resumed on a member that is behind the revision it asks for, and a
//! watch on a member that catches up by installing a snapshot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bosun_client::proto::etcdserverpb::watch_client::WatchClient;
use bosun_client::proto::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use bosun_client::proto::mvccpb;
use bosun_client::{
    Client, Compare, CompareOp, ConnectOptions, EventKind, GetOptions, HasHeader, KeyValue,
    Outcome, PutOptions, Txn, TxnOp, WatchOptions,
};
use bosun_tests::checker::{
    self, Op, OpKind, Resume, WatchBatch, WatchEvent, WatchHistory, watch::revisions_without_events,
};
use bosun_tests::{Cluster, Kind, Server, wait_for};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;

const KEYS: usize = 3;
const CLIENTS: usize = 6;
/// Watchers that use the SDK over all members (besides those reading the gRPC stream).
const SDK_WATCHERS: usize = 2;
const PREFIX: &str = "chaos/";
/// Writes between two snapshots of a member: small, so that a member down or cut off for a
/// second or two is behind the leader's purged log and catches up from a snapshot.
const SNAPSHOT_COUNT: &str = "25";

/// Everything the clients recorded.
#[derive(Default)]
struct Record {
    ops: Vec<Op>,
    /// (revision, key, value) of every acknowledged put.
    acked: Vec<(i64, String, u64)>,
    /// Outcomes, for the summary.
    ok: usize,
    unknown: usize,
    not_applied: usize,
}

fn key(i: usize) -> String {
    format!("{PREFIX}{i}")
}

/// The end of the key range of [`PREFIX`].
fn prefix_end() -> Vec<u8> {
    let mut end = PREFIX.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

fn parse(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected value {v:?}"))
}

/// A watch event as the checker takes it.
fn event(kv: &KeyValue, delete: bool) -> WatchEvent {
    WatchEvent {
        revision: kv.mod_revision,
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: (!delete).then(|| parse(&kv.value)),
        create_revision: kv.create_revision,
        version: kv.version,
    }
}

fn nanos(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn client_options() -> ConnectOptions {
    // Short bounds so a paused or cut-off member is left quickly for another.
    ConnectOptions::default()
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Some(Duration::from_secs(3)))
        .with_keep_alive(Some(Duration::from_secs(1)), Duration::from_secs(1))
}

/// One client: random operations on the registers until `stop`.
async fn client_loop(
    id: usize,
    endpoints: Vec<String>,
    seed: u64,
    origin: Instant,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let c = Client::connect(endpoints, client_options()).await.unwrap();
    let mut seq = 0u64;
    // The value this client last saw in each register, for its compare-and-sets.
    let mut seen: Vec<Option<u64>> = vec![None; KEYS];
    while !stop.load(Ordering::Relaxed) {
        let k = rng.random_range(0..KEYS);
        let choice = rng.random_range(0..10);
        seq += 1;
        let value = ((id as u64 + 1) << 32) | seq;
        let invoke = nanos(origin);
        let (kind, result) = match choice {
            0..=3 => {
                let r = c.put(key(k), value.to_string(), PutOptions::new()).await;
                let rev = r.as_ref().ok().map(|r| r.revision());
                (OpKind::Put { key: key(k), value }, r.map(|_| rev))
            }
            4..=6 => {
                let r = c.get(key(k), GetOptions::new()).await;
                match r {
                    Ok(r) => {
                        let v = r.kvs.first().map(|kv| parse(&kv.value));
                        seen[k] = v;
                        (
                            OpKind::Get {
                                key: key(k),
                                result: v,
                            },
                            Ok(None),
                        )
                    }
                    Err(e) => (
                        OpKind::Get {
                            key: key(k),
                            result: None,
                        },
                        Err(e),
                    ),
                }
            }
            _ => {
                let expected = seen[k];
                let cmp = match expected {
                    Some(v) => Compare::value(key(k), CompareOp::Equal, v.to_string()),
                    None => Compare::create_revision(key(k), CompareOp::Equal, 0),
                };
                let txn = Txn::new().when([cmp]).and_then([TxnOp::put(
                    key(k),
                    value.to_string(),
                    PutOptions::new(),
                )]);
                let r = c.txn(txn).await;
                let ok = r.as_ref().ok().map(|r| r.succeeded);
                let rev = r.as_ref().ok().map(|r| r.revision());
                if ok == Some(true) {
                    seen[k] = Some(value);
                }
                (
                    OpKind::Cas {
                        key: key(k),
                        expected,
                        new: value,
                        succeeded: ok,
                    },
                    r.map(|_| if ok == Some(true) { rev } else { None }),
                )
            }
        };
        let complete = nanos(origin);
        let mut rec = record.lock();
        match result {
            Ok(rev) => {
                rec.ok += 1;
                if let Some(rev) = rev {
                    rec.acked.push((rev, key(k), value));
                }
                rec.ops.push(Op {
                    client: id,
                    invoke,
                    complete: Some(complete),
                    kind,
                });
            }
            Err(e) => match e.outcome() {
                // Never applied: not part of the history.
                Outcome::NotApplied | Outcome::Failed => rec.not_applied += 1,
                Outcome::Unknown => {
                    rec.unknown += 1;
                    // A read that may not have happened says nothing; a write may have
                    // taken effect at any point from its invocation on.
                    if !matches!(kind, OpKind::Get { .. }) {
                        rec.ops.push(Op {
                            client: id,
                            invoke,
                            complete: None,
                            kind,
                        });
                    }
                }
            },
        }
    }
}

/// Whether a watcher that has seen revision `last` is done: `until` is set (to the final
/// revision) once the clients have stopped.
fn caught_up(until: &AtomicI64, last: i64) -> bool {
    let target = until.load(Ordering::Relaxed);
    target > 0 && last >= target
}

/// A watch of [`PREFIX`] on one member through the generated gRPC client, not the SDK: the
/// SDK drops events at or below the last revision it delivered, which would hide a member
/// that sends a revision twice or one below the start revision asked for.
struct RawWatch {
    /// Kept open: a watch stream ends when its request stream does.
    _requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
    /// The header revision of the created response.
    created_revision: i64,
}

impl RawWatch {
    /// Creates the watch from `start_revision` on the member at `url` and waits for the
    /// created response.
    async fn open(url: &str, start_revision: i64) -> Result<RawWatch, String> {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(1);
        let create = WatchCreateRequest {
            key: PREFIX.into(),
            range_end: prefix_end(),
            start_revision,
            ..Default::default()
        };
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .await
        .map_err(|e| e.to_string())?;
        let requests =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        let mut responses = WatchClient::new(channel)
            .watch(requests)
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let created = responses
            .message()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the stream ended before the watch was created")?;
        if !created.created || created.canceled {
            return Err(format!("watch not created: {}", created.cancel_reason));
        }
        Ok(RawWatch {
            _requests: tx,
            responses,
            created_revision: created.header.map_or(0, |h| h.revision),
        })
    }
}

/// The events of a raw watch response, with the member that sent it.
fn raw_batch(r: &WatchResponse) -> WatchBatch {
    WatchBatch {
        events: r
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.clone().unwrap_or_default();
                event(&kv, e.r#type == mvccpb::event::EventType::Delete as i32)
            })
            .collect(),
        member: r.header.as_ref().map_or(0, |h| h.member_id),
    }
}

/// How a watcher that reads the gRPC stream itself moves between members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moves {
    /// Stays on its one member, resuming there once the member is back.
    Pinned,
    /// Resumes on the next member when its stream breaks.
    FailOver,
    /// Also leaves its member every one to three seconds and resumes on the next: resumes
    /// on members that are behind, or just restarted, become frequent.
    Hop,
}

/// A watcher reading the gRPC stream itself: every event under the prefix from `start`, on
/// the members at `urls` (starting with the first), resuming after each broken stream, or hop,
/// from the revision after the last it received, until it has seen `until`. Records into
/// `h` as it goes.
async fn raw_watch_loop(
    urls: Vec<String>,
    moves: Moves,
    seed: u64,
    start: i64,
    until: Arc<AtomicI64>,
    h: Arc<Mutex<WatchHistory>>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last = start - 1;
    let mut at = 0;
    let mut resumed = false;
    loop {
        if caught_up(&until, last) {
            return;
        }
        let url = &urls[at % urls.len()];
        if moves != Moves::Pinned {
            at += 1;
        }
        let Ok(Ok(mut w)) =
            tokio::time::timeout(Duration::from_secs(3), RawWatch::open(url, last + 1)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if resumed {
            let mut h = h.lock();
            let batch = h.batches.len();
            h.resumes.push(Resume {
                batch,
                start_revision: Some(last + 1),
            });
        }
        resumed = true;
        let leave = (moves == Moves::Hop)
            .then(|| Instant::now() + Duration::from_millis(rng.random_range(1000..3000)));
        loop {
            if caught_up(&until, last) {
                return;
            }
            if leave.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let r = match tokio::time::timeout(Duration::from_millis(500), w.responses.message())
                .await
            {
                Err(_) => continue,
                Ok(Ok(Some(r))) => r,
                Ok(Ok(None) | Err(_)) => break,
            };
            if r.canceled {
                h.lock().ended = Some(format!(
                    "canceled by the member: {:?} (compact revision {})",
                    r.cancel_reason, r.compact_revision
                ));
                return;
            }
            if r.events.is_empty() {
                continue;
            }
            let batch = raw_batch(&r);
            last = batch.events.iter().map(|e| e.revision).fold(last, i64::max);
            h.lock().batches.push(batch);
        }
    }
}

/// A watcher using the SDK over `endpoints`: every event under the prefix from revision 1,
/// through the SDK's own resumes and failovers, until it has seen `until`.
async fn sdk_watch_loop(
    endpoints: Vec<String>,
    until: Arc<AtomicI64>,
    h: Arc<Mutex<WatchHistory>>,
) {
    let stream = match Client::connect(endpoints, client_options()).await {
        Ok(c) => {
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(1)
                .with_max_retries(u32::MAX)
                .with_backoff(Duration::from_millis(50), Duration::from_millis(500));
            c.watch(PREFIX, opts).await
        }
        Err(e) => Err(e),
    };
    let mut w = match stream {
        Ok(w) => w,
        Err(e) => {
            h.lock().ended = Some(format!("could not watch: {e}"));
            return;
        }
    };
    let mut last = 0;
    // The member and watch that delivered the last batch: a change means the stream resumed.
    let mut source = None;
    loop {
        if caught_up(&until, last) {
            return;
        }
        let Ok(next) = tokio::time::timeout(Duration::from_millis(500), w.next()).await else {
            continue;
        };
        let batch = match next {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                h.lock().ended = Some(format!("failed: {e}"));
                return;
            }
            None => {
                h.lock().ended = Some("the stream ended".into());
                return;
            }
        };
        if batch.events.is_empty() {
            continue;
        }
        let events: Vec<WatchEvent> = batch
            .events
            .iter()
            .map(|e| event(&e.kv, e.kind == EventKind::Delete))
            .collect();
        last = events.iter().map(|e| e.revision).fold(last, i64::max);
        let from = (batch.header.member_id, batch.watch_id);
        let mut h = h.lock();
        if source.is_some_and(|s| s != from) {
            let at = h.batches.len();
            h.resumes.push(Resume {
                batch: at,
                start_revision: None,
            });
        }
        source = Some(from);
        h.batches.push(WatchBatch {
            events,
            member: batch.header.member_id,
        });
    }
}

/// What the nemesis does to one member.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill,
    Pause,
    Isolate,
}

fn write_faults(path: &Path, urls: &[String]) {
    std::fs::write(path, urls.join("\n")).unwrap();
}

/// Cuts member `target` off from the others, both ways, through the members' fault files.
fn isolate(fault_files: &[PathBuf], peers: &[String], target: usize) {
    for (i, f) in fault_files.iter().enumerate() {
        if i == target {
            let others: Vec<String> = peers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != target)
                .map(|(_, u)| u.clone())
                .collect();
            write_faults(f, &others);
        } else {
            write_faults(f, std::slice::from_ref(&peers[target]));
        }
    }
}

fn heal(fault_files: &[PathBuf]) {
    for f in fault_files {
        write_faults(f, &[]);
    }
}

async fn nemesis(
    cluster: &mut Cluster,
    fault_files: &[PathBuf],
    rng: &mut StdRng,
    until: Instant,
    origin: Instant,
    log: &Mutex<Vec<String>>,
) {
    let peers: Vec<String> = cluster.members.iter().map(|m| m.peer_url.clone()).collect();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        let fault = [Fault::Kill, Fault::Pause, Fault::Isolate][rng.random_range(0..3)];
        // Half of the faults hit the leader.
        let target = if rng.random_bool(0.5) {
            cluster.leader().await.unwrap_or(0)
        } else {
            rng.random_range(0..cluster.members.len())
        };
        // Long enough, often, for the member to fall behind the leader's purged log.
        let hold = Duration::from_millis(rng.random_range(500..4000));
        let name = cluster.members[target].name.clone();
        log.lock().push(format!(
            "{:.3}s: {fault:?} {name} for {hold:?}",
            origin.elapsed().as_secs_f64()
        ));
        match fault {
            Fault::Kill => {
                cluster.members[target].kill9();
                tokio::time::sleep(hold).await;
                cluster.members[target].spawn();
            }
            Fault::Pause => {
                cluster.members[target].signal("STOP");
                tokio::time::sleep(hold).await;
                cluster.members[target].signal("CONT");
            }
            Fault::Isolate => {
                isolate(fault_files, &peers, target);
                tokio::time::sleep(hold).await;
                heal(fault_files);
            }
        }
        // Let the cluster recover before the next fault, so a majority is always there.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
    }
}

/// Lines of `log` (ANSI colours removed) that contain `message`.
fn log_lines(log: &str, message: &str) -> Vec<String> {
    let ansi = regex_lite::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    log.lines()
        .filter(|l| l.contains(message))
        .map(|l| ansi.replace_all(l, "").into_owned())
        .collect()
}

/// Whether member `m` logged `message` with its field `revision` at `rev`.
fn logged(m: &Server, message: &str, rev: i64) -> bool {
    log_lines(&m.log(), message).iter().any(|line| {
        line.split_whitespace()
            .find_map(|t| t.strip_prefix("revision=")?.parse().ok())
            == Some(rev)
    })
}

/// Snapshots each member installed from the leader, from its log (which survives restarts).
fn snapshot_installs(cluster: &Cluster) -> Vec<usize> {
    cluster
        .members
        .iter()
        .map(|m| log_lines(&m.log(), "installed a snapshot from the leader").len())
        .collect()
}

/// A run's working directory: members' data and logs, and the recorded history. Removed when
/// the run passes, kept when it fails.
fn run_dir(seed: u64) -> PathBuf {
    let base = std::env::var_os("BOSUN_CHAOS_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    let dir = base.join(format!("chaos-{seed}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One watch stream as text: a line per batch (its member, and any resume before it), then a
/// line per event.
fn watch_text(h: &WatchHistory) -> String {
    let mut out = format!(
        "# {}: from revision {}, {} events in {} batches, {} resumes\n",
        h.name,
        h.start_revision,
        h.events(),
        h.batches.len(),
        h.resumes.len()
    );
    if let Some(reason) = &h.ended {
        let _ = writeln!(out, "# ended early: {reason}");
    }
    let mut resumes = h.resumes.iter().peekable();
    for (b, batch) in h.batches.iter().enumerate() {
        while let Some(r) = resumes.next_if(|r| r.batch == b) {
            let from = r
                .start_revision
                .map_or_else(String::new, |s| format!(" from revision {s}"));
            let _ = writeln!(out, "resume{from}");
        }
        let _ = writeln!(out, "batch {b} from member {:x}", batch.member);
        for e in &batch.events {
            let _ = writeln!(out, "  {e}");
        }
    }
    out
}

/// What a chaos run keeps for study when it fails.
struct Evidence<'a> {
    dir: &'a Path,
    seed: u64,
    record: &'a Mutex<Record>,
    faults: &'a Mutex<Vec<String>>,
    watchers: &'a [Arc<Mutex<WatchHistory>>],
    stores: &'a [WatchHistory],
    summary: &'a Mutex<Vec<String>>,
}

impl Evidence<'_> {
    /// Writes the history to files in the run's directory.
    fn save(&self) {
        let file = |name: &str, text: String| {
            let _ = std::fs::write(self.dir.join(name), text);
        };
        let rec = self.record.lock();
        file(
            "ops.txt",
            rec.ops.iter().map(|op| format!("{op:?}\n")).collect(),
        );
        file(
            "acknowledged.txt",
            rec.acked
                .iter()
                .map(|(rev, k, v)| format!("{rev} {k} {v}\n"))
                .collect(),
        );
        file("faults.txt", self.faults.lock().join("\n") + "\n");
        for (i, w) in self.watchers.iter().enumerate() {
            file(&format!("watch-w{i}.txt"), watch_text(&w.lock()));
        }
        for (i, s) in self.stores.iter().enumerate() {
            file(&format!("store-m{}.txt", i + 1), watch_text(s));
        }
        let mut summary = vec![format!(
            "seed {0} (replay with BOSUN_CHAOS_SEED={0})",
            self.seed
        )];
        summary.extend(self.summary.lock().iter().cloned());
        file("summary.txt", summary.join("\n") + "\n");
    }

    /// Saves the history and fails the test, naming where it is.
    fn fail(&self, what: &str) -> ! {
        self.save();
        panic!(
            "seed {}: {what}\nhistory, member logs and data kept in {}",
            self.seed,
            self.dir.display()
        );
    }
}

async fn run(secs: u64) {
    let seed = std::env::var("BOSUN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    let dir = run_dir(seed);
    println!(
        "chaos: seed {seed} (replay with BOSUN_CHAOS_SEED={seed}), {secs} s of faults, in {}",
        dir.display()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut cluster, fault_files) =
        fault_cluster(&dir, &["--snapshot-count", SNAPSHOT_COUNT]).await;
    let endpoints = cluster.client_urls();
    let origin = Instant::now();
    let record = Arc::new(Mutex::new(Record::default()));
    let faults = Mutex::new(Vec::new());
    let summary = Mutex::new(Vec::new());
    let stop = Arc::new(AtomicBool::new(false));
    let until_rev = Arc::new(AtomicI64::new(0));

    // Watchers reading the gRPC stream: one pinned to each member, one that fails over, one
    // that hops; then the SDK's, which fail over. Each starts on another member.
    let mut histories = Vec::new();
    let mut watchers = Vec::new();
    let mut shapes: Vec<(Moves, String)> = cluster
        .members
        .iter()
        .map(|m| (Moves::Pinned, format!("pinned to {}", m.name)))
        .collect();
    shapes.push((Moves::FailOver, "fails over".into()));
    shapes.push((Moves::Hop, "hops every 1-3 s".into()));
    for (i, (moves, what)) in shapes.into_iter().enumerate() {
        let mut urls = endpoints.clone();
        urls.rotate_left(i % endpoints.len());
        let h = Arc::new(Mutex::new(WatchHistory::new(format!("w{i} ({what})"), 1)));
        let task = raw_watch_loop(
            urls,
            moves,
            seed ^ i as u64,
            1,
            until_rev.clone(),
            h.clone(),
        );
        watchers.push(tokio::spawn(task));
        histories.push(h);
    }
    for j in 0..SDK_WATCHERS {
        let mut eps = endpoints.clone();
        eps.rotate_left(j % endpoints.len());
        let i = histories.len();
        let h = Arc::new(Mutex::new(WatchHistory::new(
            format!("w{i} (SDK, fails over)"),
            1,
        )));
        watchers.push(tokio::spawn(sdk_watch_loop(
            eps,
            until_rev.clone(),
            h.clone(),
        )));
        histories.push(h);
    }
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            tokio::spawn(client_loop(
                i,
                endpoints.clone(),
                seed,
                origin,
                record.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let no_stores: Vec<WatchHistory> = Vec::new();
    let evidence = Evidence {
        dir: &dir,
        seed,
        record: &record,
        faults: &faults,
        watchers: &histories,
        stores: &no_stores,
        summary: &summary,
    };
    nemesis(
        &mut cluster,
        &fault_files,
        &mut rng,
        Instant::now() + Duration::from_secs(secs),
        origin,
        &faults,
    )
    .await;
    // Heal everything, let the clients run on a healthy cluster for a moment, then stop them.
    heal(&fault_files);
    for m in &cluster.members {
        m.signal("CONT");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        match tokio::time::timeout(Duration::from_secs(30), c).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => evidence.fail(&format!("a client failed: {e}")),
            Err(_) => evidence.fail("the clients did not stop within 30 s"),
        }
    }

    // Final linearizable reads of every register join the history: a lost write shows here.
    let c = Client::connect(endpoints.clone(), client_options())
        .await
        .unwrap();
    let mut final_rev = 0;
    for k in 0..KEYS {
        let invoke = nanos(origin);
        let r = match c.get(key(k), GetOptions::new()).await {
            Ok(r) => r,
            Err(e) => evidence.fail(&format!("final read of {} failed: {e}", key(k))),
        };
        final_rev = final_rev.max(r.revision());
        record.lock().ops.push(Op {
            client: CLIENTS,
            invoke,
            complete: Some(nanos(origin)),
            kind: OpKind::Get {
                key: key(k),
                result: r.kvs.first().map(|kv| parse(&kv.value)),
            },
        });
    }
    until_rev.store(final_rev, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(90);
    for w in watchers {
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, w).await.is_err() {
            let behind: Vec<String> = histories
                .iter()
                .map(|h| h.lock())
                .filter(|h| h.last_revision().unwrap_or(0) < final_rev)
                .map(|h| format!("{} at {}", h.name, h.last_revision().unwrap_or(0)))
                .collect();
            evidence.fail(&format!(
                "watchers did not reach the final revision {final_rev} within 90 s: {}",
                behind.join(", ")
            ));
        }
    }

    // The store's own history, read from each member of the healed cluster.
    let mut stores = Vec::new();
    for m in &cluster.members {
        let h = Arc::new(Mutex::new(WatchHistory::new(
            format!("store history of {}", m.name),
            1,
        )));
        let until = Arc::new(AtomicI64::new(final_rev));
        let read = raw_watch_loop(
            vec![m.client_url.clone()],
            Moves::Pinned,
            seed,
            1,
            until,
            h.clone(),
        );
        if tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .is_err()
        {
            h.lock().ended = Some("not read to the final revision within 60 s".into());
        }
        stores.push(h.lock().clone());
    }
    let evidence = Evidence {
        stores: &stores,
        ..evidence
    };

    let installs = snapshot_installs(&cluster);
    let watched: Vec<WatchHistory> = histories.iter().map(|h| h.lock().clone()).collect();
    {
        let rec = record.lock();
        let fault_log = faults.lock();
        let mut s = summary.lock();
        s.push(format!(
            "faults ({}): {}",
            fault_log.len(),
            fault_log.join("; ")
        ));
        s.push(format!(
            "{} operations recorded: {} ok, {} unknown outcome, {} not applied; {} acknowledged \
             writes; final revision {final_rev}",
            rec.ops.len(),
            rec.ok,
            rec.unknown,
            rec.not_applied,
            rec.acked.len()
        ));
        s.push(format!(
            "snapshots installed from the leader: {} (per member {installs:?})",
            installs.iter().sum::<usize>()
        ));
        for h in &watched {
            s.push(format!(
                "{}: {} events, {} resumes",
                h.name,
                h.events(),
                h.resumes.len()
            ));
        }
        for line in s.iter() {
            println!("chaos: {line}");
        }
    }
    evidence.save();
    assert!(record.lock().ok > 0, "no operation succeeded");

    let started = Instant::now();
    let verdict = checker::check(&record.lock().ops, Duration::from_secs(120));
    println!("chaos: linearizability checked in {:?}", started.elapsed());
    match verdict {
        checker::Outcome::Linearizable => println!("chaos: history is linearizable"),
        other => evidence.fail(&format!("{other:?}")),
    }
    // Every write is under the watched prefix: every revision after the first has events.
    let store = &stores[0];
    let missing = revisions_without_events(store, 2, final_rev);
    if !missing.is_empty() {
        evidence.fail(&format!(
            "the store's history has no events for revisions {missing:?}"
        ));
    }
    let mut streams = watched;
    streams.extend(stores[1..].iter().cloned());
    let acked = record.lock().acked.clone();
    if let Err(e) = checker::check_watches(&streams, store, &acked, final_rev) {
        evidence.fail(&format!("watch check failed:\n{e}"));
    }
    println!(
        "chaos: {} watch streams and 3 members' histories identical up to revision {final_rev}: \
         ordered, unique, atomic, reliable, resumable; no acknowledged write lost",
        histories.len()
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_short() {
    let secs = std::env::var("BOSUN_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    run(secs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "ten minutes; run with --ignored"]
async fn chaos_long() {
    let secs = std::env::var("BOSUN_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    run(secs).await;
}

/// A three-member cluster whose members read peer faults from files in `dir` (one each), with
/// `extra` options.
async fn fault_cluster(dir: &Path, extra: &[&str]) -> (Cluster, Vec<PathBuf>) {
    let fault_files: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("m{i}.faults"))).collect();
    heal(&fault_files);
    let cluster = Cluster::start_with(Kind::Bosun, dir, 3, |i| {
        let mut args: Vec<String> = [
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--peer-fault-file",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(fault_files[i].display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    })
    .await;
    (cluster, fault_files)
}

/// The revision member `m` has applied (a serializable read, answered from its own state).
async fn applied_revision(m: &Server) -> i64 {
    let c = Client::connect([m.client_url.clone()], client_options())
        .await
        .unwrap();
    c.get("health", GetOptions::new().with_serializable())
        .await
        .map_or(0, |r| r.revision())
}

/// Reads `w` until it has delivered revision `until`, within `timeout`; returns every event's
/// revision, in order.
async fn revisions_until(w: &mut RawWatch, until: i64, timeout: Duration) -> Vec<i64> {
    let deadline = Instant::now() + timeout;
    let mut revs: Vec<i64> = Vec::new();
    while revs.last().is_none_or(|&r| r < until) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w.responses.message()).await {
            Ok(Ok(Some(r))) => {
                assert!(!r.canceled, "watch canceled: {}", r.cancel_reason);
                revs.extend(
                    r.events
                        .iter()
                        .filter_map(|e| e.kv.as_ref())
                        .map(|kv| kv.mod_revision),
                );
            }
            Ok(other) => panic!("watch stream ended: {other:?}; got revisions {revs:?}"),
            Err(_) => {
                panic!("revision {until} not delivered within {timeout:?}; got revisions {revs:?}")
            }
        }
    }
    revs
}

/// The set-up of the one-fault cases: a cluster with fault files, a client of its leader, a
/// first write, applied by the member that is to fall behind.
struct OneFault {
    cluster: Cluster,
    fault_files: Vec<PathBuf>,
    peers: Vec<String>,
    leader: usize,
    behind: usize,
    client: Client,
    first: i64,
    /// Dropped after the cluster.
    _dir: tempfile::TempDir,
}

async fn one_fault(extra: &[&str]) -> OneFault {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, fault_files) = fault_cluster(dir.path(), extra).await;
    let peers = cluster.members.iter().map(|m| m.peer_url.clone()).collect();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let behind = (leader + 1) % 3;
    let leader_url = cluster.members[leader].client_url.clone();
    let client = Client::connect([leader_url], client_options())
        .await
        .unwrap();
    let first = client
        .put(key(0), "1", PutOptions::new())
        .await
        .unwrap()
        .revision();
    let m = &cluster.members[behind];
    wait_for(
        "the member to apply the first write",
        Duration::from_secs(10),
        || async { applied_revision(m).await >= first },
    )
    .await;
    OneFault {
        cluster,
        fault_files,
        peers,
        leader,
        behind,
        client,
        first,
        _dir: dir,
    }
}

/// A watch that asks for a revision its member has not applied yet (what a watcher resuming
/// on a member that restarted, or was cut off, asks for) starts at that revision once the
/// member gets there: the member sends nothing below it, as etcd never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_revision_the_member_has_not_reached_starts_there() {
    let t = one_fault(&[]).await;
    let (c, first) = (&t.client, t.first);
    let m = &t.cluster.members[t.behind];
    isolate(&t.fault_files, &t.peers, t.behind);
    // Writes until the cut has taken effect (members read their fault files every 100 ms) and
    // the member is a few revisions behind.
    let mut start = first;
    for v in 2..100 {
        start = c
            .put(key(0), v.to_string(), PutOptions::new())
            .await
            .unwrap()
            .revision();
        if start - applied_revision(m).await >= 3 {
            break;
        }
    }
    let mut w = RawWatch::open(&m.client_url, start).await.unwrap();
    assert!(
        w.created_revision < start - 1,
        "the member is behind: at {} for a watch from {start}",
        w.created_revision
    );
    heal(&t.fault_files);
    let next = c
        .put(key(0), "5", PutOptions::new())
        .await
        .unwrap()
        .revision();
    let revs = revisions_until(&mut w, next, Duration::from_secs(20)).await;
    assert_eq!(revs, [start, next], "asked for revisions from {start} on");
}

/// A watch on a member that catches up by installing the leader's snapshot delivers the
/// revisions the snapshot brought, without waiting for a later write (etcd moves its watchers
/// back to replay from the store when it restores a snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_on_a_member_that_installs_a_snapshot_gets_its_revisions_without_new_writes() {
    // Every write makes a snapshot due (a member starts at most one a second), and the log
    // behind a snapshot is purged.
    let mut t = one_fault(&["--snapshot-count", "1"]).await;
    let (c, first, behind) = (t.client.clone(), t.first, t.behind);

    // The member is down while the others write and snapshot: the leader's log behind its
    // newest snapshot, which holds the last write, is gone.
    t.cluster.members[behind].kill9();
    let mut last = first;
    // Enough writes for the leader to purge its log while no append to the member is in
    // flight (openraft keeps what a replication stream may still send).
    for v in 2..=500 {
        last = c
            .put(key(v % KEYS), v.to_string(), PutOptions::new())
            .await
            .unwrap()
            .revision();
    }
    let l = &t.cluster.members[t.leader];
    wait_for(
        "the leader to snapshot the last write",
        Duration::from_secs(20),
        || async { logged(l, "built a snapshot", last) },
    )
    .await;
    // It comes back cut off from the others, so that a watch is on it before it hears from
    // the leader.
    isolate(&t.fault_files, &t.peers, behind);
    t.cluster.members[behind].spawn();
    let m = &t.cluster.members[behind];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut w = loop {
        match RawWatch::open(&m.client_url, first + 1).await {
            Ok(w) => break w,
            Err(e) => assert!(Instant::now() < deadline, "no watch on the member: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(w.created_revision < last, "the member is behind");
    heal(&t.fault_files);
    wait_for(
        "the member to install the snapshot",
        Duration::from_secs(30),
        || async { logged(m, "installed a snapshot from the leader", last) },
    )
    .await;
    let revs = revisions_until(&mut w, last, Duration::from_secs(10)).await;
    let want: Vec<i64> = (first + 1..=last).collect();
    assert_eq!(revs, want);
}
