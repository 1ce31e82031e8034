//! Chaos: clients run register operations (put, get, compare-and-set) and watches against a
//! three-member `bosun store` while a nemesis kills -9 and restarts members (the leader
//! included), pauses them with SIGSTOP/SIGCONT and cuts them off from their peers. Every
//! operation is recorded with its invoke and complete times and its outcome; the checker in
//! `bosun_tests::checker` decides whether the history is linearizable, and checks that the
//! watch streams are ordered, unique, atomic, reliable and resumable and that no acknowledged
//! write is lost.
//!
//! The seed is printed; `BOSUN_CHAOS_SEED=<n>` replays the same schedule of faults and
//! operations (timing still differs run to run). `BOSUN_CHAOS_SECS` sets the length of the
//! run: the test command runs a short one; `chaos_long` (ignored by default, run with
//! `cargo test --test chaos -- --ignored`) runs ten minutes unless told otherwise.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_client::{
    Client, Compare, CompareOp, ConnectOptions, EventKind, GetOptions, HasHeader, Outcome,
    PutOptions, Txn, TxnOp, WatchOptions,
};
use bosun_tests::checker::{self, Op, OpKind, WatchBatch, WatchEvent, WatchHistory};
use bosun_tests::{Cluster, Kind};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: usize = 3;
const CLIENTS: usize = 6;
const WATCHERS: usize = 2;
const PREFIX: &str = "chaos/";

/// Everything the run recorded.
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

fn parse(v: &[u8]) -> u64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected value {v:?}"))
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
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9));
    let c = Client::connect(endpoints, client_options()).await.unwrap();
    let mut seq = 0u64;
    // The value this client last saw in each register, for its compare-and-sets.
    let mut seen: Vec<Option<u64>> = vec![None; KEYS];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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

/// One watcher: every event under the prefix from revision 1, through failovers, until it has
/// seen `until` (set once the clients have stopped).
async fn watch_loop(
    id: usize,
    endpoints: Vec<String>,
    until: Arc<std::sync::atomic::AtomicI64>,
) -> WatchHistory {
    let c = Client::connect(endpoints, client_options()).await.unwrap();
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(1)
        .with_max_retries(u32::MAX)
        .with_backoff(Duration::from_millis(50), Duration::from_millis(500));
    let mut w = c.watch(PREFIX, opts).await.unwrap();
    let mut h = WatchHistory {
        watcher: id,
        start_revision: 1,
        batches: Vec::new(),
        resumed_at: Vec::new(),
    };
    let mut last = 0;
    // The member and watch that delivered the last batch: a change means the stream resumed.
    let mut source = None;
    loop {
        let target = until.load(std::sync::atomic::Ordering::Relaxed);
        if target > 0 && last >= target {
            return h;
        }
        let Ok(next) = tokio::time::timeout(Duration::from_millis(500), w.next()).await else {
            continue;
        };
        let batch = match next {
            Some(Ok(b)) => b,
            Some(Err(e)) => panic!("watcher {id} failed: {e}"),
            None => panic!("watcher {id} ended"),
        };
        let events: Vec<WatchEvent> = batch
            .events
            .iter()
            .map(|e| WatchEvent {
                revision: e.revision(),
                key: String::from_utf8_lossy(&e.kv.key).into_owned(),
                value: match e.kind {
                    EventKind::Put => Some(parse(&e.kv.value)),
                    EventKind::Delete => None,
                },
            })
            .collect();
        if let Some(e) = events.last() {
            last = last.max(e.revision);
        }
        if !events.is_empty() {
            let from = (batch.header.member_id, batch.watch_id);
            if source.is_some_and(|s| s != from) {
                h.resumed_at.push(h.batches.len());
            }
            source = Some(from);
            h.batches.push(WatchBatch { events });
        }
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

async fn nemesis(
    cluster: &mut Cluster,
    fault_files: &[PathBuf],
    rng: &mut StdRng,
    until: Instant,
) -> Vec<String> {
    let mut log = Vec::new();
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
        let hold = Duration::from_millis(rng.random_range(500..3000));
        let name = cluster.members[target].name.clone();
        log.push(format!("{:?} {name} for {hold:?}", fault));
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
                tokio::time::sleep(hold).await;
                for f in fault_files {
                    write_faults(f, &[]);
                }
            }
        }
        // Let the cluster recover before the next fault, so a majority is always there.
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
    }
    log
}

async fn run(secs: u64) {
    let seed = std::env::var("BOSUN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("chaos: seed {seed} (replay with BOSUN_CHAOS_SEED={seed}), {secs} s of faults");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let fault_files: Vec<PathBuf> = (1..=3)
        .map(|i| dir.path().join(format!("m{i}.faults")))
        .collect();
    for f in &fault_files {
        write_faults(f, &[]);
    }
    // Each member gets its own fault file.
    let mut cluster = Cluster::start_with(Kind::Bosun, dir.path(), 3, |i| {
        vec![
            "--heartbeat-interval".into(),
            "50".into(),
            "--election-timeout".into(),
            "500".into(),
            "--snapshot-count".into(),
            "500".into(),
            "--peer-fault-file".into(),
            fault_files[i].display().to_string(),
        ]
    })
    .await;
    let endpoints = cluster.client_urls();
    let origin = Instant::now();
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let until_rev = Arc::new(std::sync::atomic::AtomicI64::new(0));

    let watchers: Vec<_> = (0..WATCHERS)
        .map(|i| tokio::spawn(watch_loop(i, endpoints.clone(), until_rev.clone())))
        .collect();
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

    let faults = nemesis(
        &mut cluster,
        &fault_files,
        &mut rng,
        Instant::now() + Duration::from_secs(secs),
    )
    .await;
    // Heal everything, let the clients run on a healthy cluster for a moment, then stop them.
    for f in &fault_files {
        write_faults(f, &[]);
    }
    for m in &cluster.members {
        m.signal("CONT");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("clients stop")
            .unwrap();
    }

    // Final linearizable reads of every register join the history: a lost write shows here.
    let c = Client::connect(endpoints.clone(), client_options())
        .await
        .unwrap();
    let mut final_rev = 0;
    for k in 0..KEYS {
        let invoke = nanos(origin);
        let r = c.get(key(k), GetOptions::new()).await.unwrap();
        final_rev = final_rev.max(r.header.as_ref().map_or(0, |h| h.revision));
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
    until_rev.store(final_rev, std::sync::atomic::Ordering::Relaxed);
    let mut histories = Vec::new();
    for w in watchers {
        histories.push(
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("watchers catch up")
                .unwrap(),
        );
    }

    let rec = record.lock();
    println!("chaos: faults: {}", faults.join("; "));
    println!(
        "chaos: {} operations recorded: {} ok, {} unknown outcome, {} not applied; {} acknowledged writes; final revision {final_rev}",
        rec.ops.len(),
        rec.ok,
        rec.unknown,
        rec.not_applied,
        rec.acked.len()
    );
    let events: usize = histories
        .iter()
        .map(|h| h.batches.iter().map(|b| b.events.len()).sum::<usize>())
        .sum();
    let resumes: usize = histories.iter().map(|h| h.resumed_at.len()).sum();
    println!("chaos: {WATCHERS} watchers saw {events} events, resuming {resumes} times");
    assert!(rec.ok > 0, "no operation succeeded");
    let started = Instant::now();
    let verdict = checker::check(&rec.ops, Duration::from_secs(120));
    println!("chaos: linearizability checked in {:?}", started.elapsed());
    match verdict {
        checker::Outcome::Linearizable => println!("chaos: history is linearizable"),
        other => panic!("seed {seed}: {other:?}"),
    }
    checker::check_watches(&histories, &rec.acked)
        .unwrap_or_else(|e| panic!("seed {seed}: watch check failed: {e}"));
    println!("chaos: watch streams ordered, unique, atomic, reliable; no acknowledged write lost");
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
