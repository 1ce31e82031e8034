//! `bosun-bench`: starts a three-member Bosun store on loopback, drives it with N concurrent
//! etcd v3 clients over M gRPC connections (put, linearizable get, serializable get, txn),
//! then does the same against a three-member etcd, one cluster at a time, and prints ops/s,
//! p50 and p99 side by side with the Bosun/etcd ratios and the targets. It prints figures; it
//! does not assert them.

mod grpc;
mod load;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_tests::{Cluster, Kind};
use clap::Parser;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::load::{ClientKind, KeySpace, RunResult, Scenario, Workload};
use crate::report::{KindRun, Outcome};

/// Backend quota both kinds run with (etcd's largest recommended value), so that no run
/// trips the default quota.
const QUOTA_BACKEND_BYTES: &str = "8589934592";

/// How long a fresh cluster may take to agree on a leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Members per cluster.
const MEMBERS: usize = 3;

/// Concurrent writers and connections that populate the key space.
const POPULATE_WORKERS: usize = 256;

/// Which clusters to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// Only the Bosun store.
    Bosun,
    /// Only etcd.
    Etcd,
}

/// Throughput and latency of a three-member Bosun store next to a three-member etcd.
#[derive(Debug, Parser)]
#[command(name = "bosun-bench", version, about)]
struct Cli {
    /// Measure only this kind of cluster (default: Bosun, then etcd when installed).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Measured time per scenario and round, e.g. `5`, `5s`, `500ms`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Rounds per scenario: each round runs the scenario on every cluster in turn, so that
    /// the machine's ups and downs fall on both alike; the figures cover all rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Unmeasured warm-up before each scenario.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Number of distinct keys (all written once before the scenarios run).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    keys: u64,
    /// Size of every value written, in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Run only this workload (a custom scenario sized by --clients and --conns) instead of
    /// the default list.
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Concurrent clients of the custom scenario (default 64).
    #[arg(long, requires = "workload", value_parser = clap::value_parser!(u64).range(1..))]
    clients: Option<u64>,
    /// gRPC connections the clients share. With --workload: of that scenario (default
    /// min(clients, 16)); without: of every multi-client default scenario (default 16).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    conns: Option<u64>,
    /// Drive the members through these client libraries, comma-separated (default:
    /// `lean,etcd-client`: each scenario with both, in that order).
    #[arg(long, value_enum, value_delimiter = ',')]
    client: Vec<ClientKind>,
    /// Run each Bosun member with `--worker-threads N` (default: no such flag, the members'
    /// own default, as a user runs them).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    /// Directory in which each run's data directory is created (default: the system
    /// temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the members' data and logs after the run (the path is printed).
    #[arg(long)]
    keep: bool,
    /// Threads of the load generator. One keeps its tasks from waking each other across
    /// threads (a futex and an eventfd write per hand-over): on two CPUs shared with six
    /// members, a put then costs it 25 µs of CPU instead of 30–40, and it still needs less
    /// than a core at the highest rates measured here.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    client_threads: u64,
}

/// Parses `10`, `2.5`, `10s` or `500ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 10, 10s or 500ms)"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

impl Cli {
    /// The client libraries to measure with, in order.
    fn clients(&self) -> Vec<ClientKind> {
        if self.client.is_empty() {
            vec![ClientKind::Lean, ClientKind::EtcdClient]
        } else {
            self.client.clone()
        }
    }

    /// The scenarios to run, in order: each workload with each client library.
    fn scenarios(&self) -> Vec<Scenario> {
        let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let shapes = if let Some(workload) = self.workload {
            let clients = self.clients.map_or(64, to_usize);
            let conns = self.conns.map_or(clients.min(16), to_usize);
            vec![(workload, clients, conns)]
        } else {
            let conns = self.conns.map_or(16, to_usize);
            [
                (Workload::Put, 1),
                (Workload::Put, 256),
                (Workload::GetLinearizable, 64),
                (Workload::GetSerializable, 64),
                (Workload::Txn, 64),
            ]
            .map(|(w, clients)| (w, clients, conns.min(clients)))
            .to_vec()
        };
        shapes
            .into_iter()
            .flat_map(|(workload, clients, conns)| {
                self.clients().into_iter().map(move |client| Scenario {
                    workload,
                    client,
                    clients,
                    conns,
                })
            })
            .collect()
    }

    /// The key space the workloads use.
    fn key_space(&self) -> KeySpace {
        KeySpace {
            keys: self.keys,
            value_size: self.value_size,
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if cli.only != Some(Only::Etcd) && std::env::var_os("BOSUN_BIN").is_none() {
        // The launcher finds `bosun` through BOSUN_BIN; point it at the binary next to this
        // one and run again (this process has started nothing yet).
        let exe = std::env::current_exe().context("locate bosun-bench")?;
        let sibling = exe.with_file_name("bosun");
        if !sibling.is_file() {
            bail!(
                "no bosun binary: set BOSUN_BIN or build it next to {} (deploy/bench.sh does both)",
                exe.display()
            );
        }
        let status = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .env("BOSUN_BIN", &sibling)
            .status()
            .context("run bosun-bench with BOSUN_BIN")?;
        let code = status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1);
        return Ok(ExitCode::from(code));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::try_from(cli.client_threads).unwrap_or(1))
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(bench(cli))
}

/// Signals that stop the benchmark (Ctrl-C, SIGTERM).
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    /// Listens for Ctrl-C and SIGTERM from now on.
    fn new() -> anyhow::Result<Stop> {
        Ok(Stop {
            int: signal(SignalKind::interrupt()).context("listen for SIGINT")?,
            term: signal(SignalKind::terminate()).context("listen for SIGTERM")?,
        })
    }

    /// Resolves when either signal arrives.
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Runs the whole benchmark: each kind in turn, then the tables.
async fn bench(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut stop = Stop::new()?;
    let etcd_bin = bosun_tests::which("etcd");
    let mut kinds = Vec::new();
    if cli.only != Some(Only::Etcd) {
        kinds.push(Kind::Bosun);
    }
    if cli.only != Some(Only::Bosun) {
        if etcd_bin.is_some() {
            kinds.push(Kind::Etcd);
        } else {
            println!("etcd is not installed (not on PATH): measuring Bosun only, no ratios");
        }
    }
    if kinds.is_empty() {
        bail!("nothing to measure: etcd is not installed");
    }

    let base = cli.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let dir = tempfile::Builder::new()
        .prefix("bosun-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("create a data directory in {}", base.display()))?;

    print_header(&cli, etcd_bin.as_deref(), dir.path());
    let settings = Settings {
        dir: dir.path().to_path_buf(),
        scenarios: cli.scenarios(),
        space: cli.key_space(),
        warmup: cli.warmup,
        duration: cli.duration,
        rounds: cli.rounds,
        conns: cli.conns.map_or(16, |c| usize::try_from(c).unwrap_or(16)),
        worker_threads: cli.worker_threads,
    };
    // The clusters live inside one task: aborting it on a signal drops (kills) them.
    let mut task = tokio::spawn(run_all(kinds, settings));
    let runs = tokio::select! {
        r = &mut task => r.context("benchmark task failed")?,
        _ = stop.wait() => {
            eprintln!("interrupted: stopping the clusters");
            task.abort();
            let _ = task.await;
            return Ok(ExitCode::from(130));
        }
    };
    for run in &runs {
        report::print_kind(run);
    }
    if let [bosun, etcd] = runs.as_slice() {
        report::print_comparison(bosun, etcd);
        report::print_targets(bosun, etcd);
    }
    if cli.keep {
        let kept = dir.keep();
        println!();
        println!("data and member logs kept in {}", kept.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What a benchmark run needs.
#[derive(Debug)]
struct Settings {
    dir: PathBuf,
    scenarios: Vec<Scenario>,
    space: KeySpace,
    warmup: Duration,
    duration: Duration,
    rounds: u32,
    conns: usize,
    /// `--worker-threads` of the Bosun members, when set.
    worker_threads: Option<u16>,
}

/// One running cluster and what has been measured on it.
struct Side {
    cluster: Cluster,
    /// Client URLs, the leader's first.
    urls: Vec<String>,
    last_leader: usize,
    run: KindRun,
}

/// Starts a cluster of every kind and fills its key space, then runs each scenario round by
/// round, one cluster after the other within a round. A cluster that cannot start is
/// reported as such and the others still run.
async fn run_all(kinds: Vec<Kind>, s: Settings) -> Vec<KindRun> {
    let mut sides: Vec<Result<Side, KindRun>> = Vec::new();
    for kind in kinds {
        let name = kind_name(kind);
        let dir = s.dir.join(name);
        // Started in its own task: a panic in the launcher becomes a failed run.
        let flags = member_flags(kind, s.worker_threads);
        let started = tokio::spawn(start_side(kind, dir, flags, s.space.clone(), s.conns)).await;
        sides.push(match started {
            Ok(Ok(side)) => Ok(side),
            Ok(Err(e)) => Err(failed_run(name, &s.scenarios, format!("{e:#}"))),
            Err(e) if e.is_panic() => Err(failed_run(
                name,
                &s.scenarios,
                panic_message(e.into_panic()),
            )),
            Err(e) => Err(failed_run(name, &s.scenarios, e.to_string())),
        });
    }
    for sc in &s.scenarios {
        let mut totals: Vec<Option<anyhow::Result<RunResult>>> =
            sides.iter().map(|_| None).collect();
        for round in 1..=s.rounds {
            for (side, total) in sides.iter_mut().zip(totals.iter_mut()) {
                let Ok(side) = side else { continue };
                if matches!(total, Some(Err(_))) {
                    continue;
                }
                let name = side.run.name;
                eprintln!(
                    "{name}: {} ({} clients, {} conns), round {round} of {}, for {:?}",
                    sc.label(),
                    sc.clients,
                    sc.conns,
                    s.rounds,
                    s.duration
                );
                let pids: Vec<u32> = side
                    .cluster
                    .members
                    .iter()
                    .filter_map(|m| m.pid())
                    .collect();
                let res = load::run(&side.urls, &pids, sc, &s.space, s.warmup, s.duration).await;
                match &res {
                    Ok(r) => eprintln!(
                        "{name}: {}: {:.1} ops/s, p50 {:.3} ms, p99 {:.3} ms, \
                         {:.1} µs server CPU/op, {:.1} µs client CPU/op, {} errors",
                        sc.label(),
                        r.ops_per_sec(),
                        r.quantile_ms(0.5).unwrap_or(f64::NAN),
                        r.quantile_ms(0.99).unwrap_or(f64::NAN),
                        r.server_cpu_us_per_op().unwrap_or(f64::NAN),
                        r.client_cpu_us_per_op().unwrap_or(f64::NAN),
                        r.errors
                    ),
                    Err(e) => eprintln!("{name}: {}: {e:#}", sc.label()),
                }
                *total = Some(match (total.take(), res) {
                    (Some(Ok(mut acc)), Ok(r)) => acc.merge(r).map(|()| acc),
                    (_, res) => res,
                });
                side.note_changes(&sc.label()).await;
            }
        }
        for (side, total) in sides.iter_mut().zip(totals) {
            let Ok(side) = side else { continue };
            let outcome = match total {
                Some(Ok(r)) if r.all_failed() => Outcome::Failed(format!(
                    "every request failed ({} errors): {}",
                    r.errors,
                    r.error_samples.first().map_or("", String::as_str)
                )),
                Some(Ok(r)) => Outcome::Done(r),
                Some(Err(e)) => Outcome::Failed(format!("{e:#}")),
                None => Outcome::Failed("not run".into()),
            };
            side.run.outcomes.push((sc.clone(), outcome));
        }
    }
    sides
        .into_iter()
        .map(|side| match side {
            Ok(mut side) => {
                for (m, member) in side.cluster.members.iter().enumerate() {
                    if let Some(n) = log_findings(&member.log()) {
                        side.run.notes.push(format!("m{} log: {n}", m + 1));
                    }
                }
                side.run
            }
            Err(run) => run,
        })
        .collect()
}

/// `bosun` or `etcd`.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bosun => "bosun",
        Kind::Etcd => "etcd",
    }
}

/// A run where nothing could be measured, with the reason on every scenario.
fn failed_run(name: &'static str, scenarios: &[Scenario], why: String) -> KindRun {
    KindRun {
        name,
        outcomes: scenarios
            .iter()
            .map(|s| (s.clone(), Outcome::Failed("cluster run failed".into())))
            .collect(),
        notes: vec![format!("run failed: {why}")],
    }
}

/// The text of a panic payload.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic".to_string()
    }
}

/// Extra command-line flags for the members of `kind`; `worker_threads` is given to Bosun's.
fn member_flags(kind: Kind, worker_threads: Option<u16>) -> Vec<String> {
    let mut v = vec![
        "--quota-backend-bytes".to_string(),
        QUOTA_BACKEND_BYTES.to_string(),
    ];
    match kind {
        // Structured logs at warn: etcd's per-request info lines would flood the member logs.
        // Go's scheduler keeps its default (GOMAXPROCS = all CPUs): etcd measured slower with
        // a share of them (benches/README.md).
        Kind::Etcd => v.extend(["--logger", "zap", "--log-level", "warn"].map(String::from)),
        Kind::Bosun => {
            if let Some(n) = worker_threads {
                v.extend(["--worker-threads".to_string(), n.to_string()]);
            }
        }
    }
    v
}

/// Starts a fresh cluster of `kind` with its data in `dir`, waits for a leader and writes
/// every key of `space` once.
async fn start_side(
    kind: Kind,
    dir: PathBuf,
    flags: Vec<String>,
    space: KeySpace,
    conns: usize,
) -> anyhow::Result<Side> {
    let name = kind_name(kind);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    eprintln!("{name}: starting {MEMBERS} members in {}", dir.display());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start(kind, &dir, MEMBERS, &flags).await;
    let leader = cluster.wait_leader(LEADER_TIMEOUT).await;
    let mut run = KindRun {
        name,
        outcomes: Vec::new(),
        notes: vec![format!(
            "leader m{} at start; connections are spread round-robin starting with it",
            leader + 1
        )],
    };
    // Connection i goes to urls[i % 3]: starting at the leader makes the single-connection
    // scenario talk to the leader on both kinds, whichever member won the election.
    let mut urls = cluster.client_urls();
    urls.rotate_left(leader);

    eprintln!(
        "{name}: leader m{}; writing {} keys",
        leader + 1,
        space.keys
    );
    match load::populate(&urls, &space, POPULATE_WORKERS, conns).await {
        Ok(took) => {
            let rate = space.keys as f64 / took.as_secs_f64();
            run.notes.push(format!(
                "populate: {} keys in {:.2} s ({rate:.0} puts/s, {POPULATE_WORKERS} writers)",
                space.keys,
                took.as_secs_f64()
            ));
        }
        Err(e) => run.notes.push(format!("populate failed: {e:#}")),
    }
    Ok(Side {
        cluster,
        urls,
        last_leader: leader,
        run,
    })
}

impl Side {
    /// Notes members that exited and a change of leader during the scenario `label`.
    async fn note_changes(&mut self, label: &str) {
        for (m, member) in self.cluster.members.iter().enumerate() {
            if member.pid().is_some_and(exited) {
                let note = format!("m{} exited during {label}", m + 1);
                if !self.run.notes.contains(&note) {
                    self.run.notes.push(note);
                }
            }
        }
        if let Some(now) = self.cluster.leader().await
            && now != self.last_leader
        {
            self.run.notes.push(format!(
                "leader changed from m{} to m{} during {label}",
                self.last_leader + 1,
                now + 1
            ));
            self.last_leader = now;
        }
    }
}

/// Whether the process `pid` (a child of this process) has exited and awaits reaping.
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

/// Counts of error, warning and panic lines in a member log, with the first error line;
/// `None` when the log has none.
fn log_findings(log: &str) -> Option<String> {
    let is_error = |l: &&str| l.contains("ERROR") || l.contains("\"level\":\"error\"");
    let is_warn = |l: &&str| l.contains("WARN") || l.contains("\"level\":\"warn\"");
    let is_panic = |l: &&str| l.contains("panicked") || l.contains("\"level\":\"panic\"");
    let errors = log.lines().filter(is_error).count();
    let warns = log.lines().filter(is_warn).count();
    let panics = log.lines().filter(is_panic).count();
    if errors + warns + panics == 0 {
        return None;
    }
    let mut s = format!("{errors} error, {warns} warning, {panics} panic lines");
    if let Some(first) = log.lines().find(|l| is_panic(l) || is_error(l)) {
        let first: String = strip_ansi(first).chars().take(300).collect();
        s.push_str(&format!("; first: {first}"));
    }
    Some(s)
}

/// `line` without terminal colour sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints what is measured and with what.
fn print_header(cli: &Cli, etcd_bin: Option<&Path>, dir: &Path) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "bosun-bench: {MEMBERS}-member clusters on loopback, one at a time, on {cpus} CPUs \
         (the load generator shares them)"
    );
    if cli.only != Some(Only::Etcd) {
        let bin = std::env::var("BOSUN_BIN").unwrap_or_default();
        match cli.worker_threads {
            Some(n) => println!("  bosun: {bin} (--worker-threads {n} per member)"),
            None => println!("  bosun: {bin} (default flags)"),
        }
        if bin.contains("/debug/") {
            println!("  WARNING: this bosun is a debug build; its figures mean little");
        }
    }
    if cli.only != Some(Only::Bosun)
        && let Some(etcd) = etcd_bin
    {
        let version = Command::new(etcd)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        println!("  etcd:  {} ({version})", etcd.display());
    }
    println!(
        "  {} keys, {}-byte values; per scenario {} rounds of warm-up {:?} and {:?} measured \
         on each cluster in turn",
        cli.keys, cli.value_size, cli.rounds, cli.warmup, cli.duration
    );
    println!("  data in {}", dir.display());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn colours_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2mts\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m boom"),
            "ts ERROR boom"
        );
    }

    #[test]
    fn default_scenarios_are_the_targets() {
        let cli = Cli::parse_from(["bosun-bench"]);
        let labels: Vec<String> = cli.scenarios().iter().map(Scenario::label).collect();
        let shapes = [
            "put@1",
            "put@256",
            "get-linearizable@64",
            "get-serializable@64",
            "txn@64",
        ];
        let both: Vec<String> = shapes
            .iter()
            .flat_map(|s| [format!("{s} lean"), format!("{s} etcd-client")])
            .collect();
        assert_eq!(labels, both);
        let custom = Cli::parse_from([
            "bosun-bench",
            "--workload",
            "put",
            "--clients",
            "32",
            "--client",
            "etcd-client",
        ]);
        let s = custom.scenarios();
        assert_eq!((s.len(), s[0].clients, s[0].conns), (1, 32, 16));
        assert_eq!(s[0].label(), "put@32 etcd-client");
        assert!(Cli::try_parse_from(["bosun-bench", "--clients", "32"]).is_err());
    }

    #[test]
    fn keys_are_padded() {
        let space = KeySpace {
            keys: 100_000,
            value_size: 1,
        };
        assert_eq!(space.key(123), b"bench/000123");
        let big = KeySpace {
            keys: 10_000_001,
            value_size: 1,
        };
        assert_eq!(big.key(7), b"bench/00000007");
    }
}
