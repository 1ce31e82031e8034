//! `sched-bench`: scheduling throughput shaped like Kubernetes' scheduler_perf
//! `SchedulingBasic`, against a three-member `bosun store`, `bosun apiserver` and
//! `bosun scheduler` on this machine.
//!
//! N nodes are created (scheduler_perf's `node-default.yaml`: 4 CPUs, 32Gi, 110 pods, Ready),
//! then M pods are placed (`pod-default.yaml`: 100m CPU and 500Mi requested), then K more are
//! measured. It prints pods bound per second: the average over the measured window and the
//! per-second samples (with scheduler_perf's percentiles), plus each process's CPU time and
//! the scheduler's peak RSS. Two ways to feed the measured pods:
//!
//! - `concurrent` (scheduler_perf's way): the K pods are created while the scheduler runs;
//!   creating and binding share the apiserver and the store.
//! - `precreated`: the scheduler is stopped, the K pods are created, and the scheduler is
//!   started again: the window measures scheduling and binding alone (from the first bind to
//!   the last).
//!
//! It prints figures; it does not assert them.
//!
//! `BOSUN_BIN=target/release/bosun target/release/sched-bench --nodes 5000 --init-pods 1000 --pods 10000`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bosun_api_client::k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use bosun_api_client::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::{ApiClient, ListParams, WatchEvent, WatchParams};
use bosun_tests::bench::{ControlPlane, create_namespace, work_dir};
use bosun_tests::component::Component;
use bosun_tests::{bosun_bin, free_port};
use clap::Parser;

/// Scheduling throughput of `bosun scheduler` (scheduler_perf's SchedulingBasic shape).
#[derive(Debug, Parser)]
#[command(name = "sched-bench")]
struct Cli {
    /// Nodes.
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods placed before the measured ones.
    #[arg(long, default_value_t = 1000)]
    init_pods: usize,
    /// Pods measured.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// How the measured pods arrive.
    #[arg(long, value_enum, default_value = "concurrent")]
    mode: Mode,
    /// Concurrent creators of nodes and pods.
    #[arg(long, default_value_t = 32)]
    creators: usize,
    /// The scheduler's --parallelism (binds in flight).
    #[arg(long, default_value_t = 16)]
    parallelism: u32,
    /// The scheduler's --percentage-of-nodes-to-score (0: adaptive).
    #[arg(long, default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
    /// Worker threads of each store member (`--worker-threads`).
    #[arg(long, default_value_t = 1)]
    store_threads: u16,
    /// Worker threads of the apiserver (default: one per CPU).
    #[arg(long)]
    apiserver_threads: Option<u16>,
    /// Worker threads of the scheduler (default: one per CPU).
    #[arg(long)]
    scheduler_threads: Option<u16>,
    /// Also run `bosun controller-manager` (leader election off) over the same objects from
    /// the start, and report its CPU and peak RSS.
    #[arg(long)]
    controller_manager: bool,
    /// Directory for the run's data (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Create the measured pods while the scheduler runs.
    Concurrent,
    /// Create them with the scheduler stopped, then start it.
    Precreated,
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// scheduler_perf's node-default.yaml.
fn node(i: usize) -> Node {
    let name = format!("scheduler-perf-{i:05}");
    let capacity = quantities(&[("pods", "110"), ("cpu", "4"), ("memory", "32Gi")]);
    Node {
        metadata: ObjectMeta {
            labels: Some([("kubernetes.io/hostname".to_owned(), name.clone())].into()),
            name: Some(name),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

/// scheduler_perf's pod-default.yaml.
fn pod() -> Pod {
    let resources = quantities(&[("cpu", "100m"), ("memory", "500Mi")]);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("pod-".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "pause".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ports: Some(vec![ContainerPort {
                    container_port: 80,
                    ..Default::default()
                }]),
                resources: Some(ResourceRequirements {
                    limits: Some(resources.clone()),
                    requests: Some(resources),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How a batch of creates went.
struct Created {
    /// Seconds from the first call to the last reply.
    secs: f64,
    /// Latency of one create call, median and 99th percentile, in milliseconds.
    p50_ms: f64,
    p99_ms: f64,
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} s (a create took p50 {:.1} ms, p99 {:.1} ms)",
            self.secs, self.p50_ms, self.p99_ms
        )
    }
}

/// Creates `n` objects with `creators` concurrent callers.
async fn create_many<F, Fut>(n: usize, creators: usize, make: F) -> anyhow::Result<Created>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), bosun_api_client::ApiError>> + Send,
{
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let make = Arc::new(make);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..creators.max(1) {
        let next = next.clone();
        let make = make.clone();
        tasks.spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let mut tries = 0;
                loop {
                    let call = Instant::now();
                    match make(i).await {
                        Ok(()) => {
                            took.push(call.elapsed().as_secs_f64() * 1e3);
                            break;
                        }
                        Err(e) => {
                            tries += 1;
                            if tries >= 5 {
                                return Err(e).context("create");
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            Ok::<Vec<f64>, anyhow::Error>(took)
        });
    }
    let mut took = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        took.extend(r??);
    }
    took.sort_by(f64::total_cmp);
    Ok(Created {
        secs: started.elapsed().as_secs_f64(),
        p50_ms: percentile(&took, 0.5),
        p99_ms: percentile(&took, 0.99),
    })
}

/// A `bosun scheduler` process.
struct SchedulerProc {
    child: Child,
}

impl SchedulerProc {
    fn start(cli: &Cli, dir: &Path, apiserver: &str, run: usize) -> anyhow::Result<SchedulerProc> {
        let mut cmd = Command::new(bosun_bin());
        if let Some(t) = cli.scheduler_threads {
            cmd.arg(format!("--worker-threads={t}"));
        }
        cmd.args([
            "scheduler",
            "--apiserver",
            apiserver,
            "--leader-elect=false",
        ])
        .args(["--bind-address", "127.0.0.1"])
        .arg(format!("--port={}", free_port()))
        .arg(format!("--parallelism={}", cli.parallelism))
        .arg(format!(
            "--percentage-of-nodes-to-score={}",
            cli.percentage_of_nodes_to_score
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            dir.join(format!("scheduler-{run}.log")),
        )?);
        Ok(SchedulerProc {
            child: cmd.spawn().context("start bosun scheduler")?,
        })
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for SchedulerProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces): state is field 3; utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident memory (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Current resident memory (VmRSS) of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Watches `namespace` and returns the instants at which its pods were first seen bound,
/// until `want` are bound or `timeout` passes.
/// What the bench reads of a pod: its name and node. Decoding whole pods would load the
/// machine it measures.
#[derive(serde::Deserialize)]
struct BindView {
    metadata: NameOnly,
    #[serde(default)]
    spec: NodeOnly,
}

#[derive(serde::Deserialize)]
struct NameOnly {
    #[serde(default)]
    name: String,
}

#[derive(serde::Deserialize, Default)]
struct NodeOnly {
    #[serde(default, rename = "nodeName")]
    node_name: String,
}

async fn watch_binds(
    client: ApiClient,
    namespace: String,
    from_version: String,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Instant>> {
    let mut w = client
        .watch_as::<BindView>(
            "pods",
            &namespace,
            &WatchParams::from_version(&from_version),
        )
        .await?;
    let mut bound = std::collections::HashSet::new();
    let mut times = Vec::with_capacity(want);
    let deadline = tokio::time::Instant::now() + timeout;
    while times.len() < want {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!("{} of {want} pods bound before the timeout", times.len())
            })??;
        if let Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev
            && !p.spec.node_name.is_empty()
            && bound.insert(p.metadata.name)
        {
            times.push(Instant::now());
        }
    }
    Ok(times)
}

/// Starts recording the binds of the `measured` namespace's pods from now on.
async fn watch_measured(
    client: &ApiClient,
    pods: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<Instant>>>> {
    let version = list_version(client, "measured").await?;
    Ok(tokio::spawn(watch_binds(
        client.clone(),
        "measured".into(),
        version,
        pods,
        Duration::from_secs(1200),
    )))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Prints the window's figures: the average and the per-second samples.
fn report(label: &str, start: Instant, times: &[Instant]) {
    let Some(last) = times.last() else {
        println!("{label}: nothing bound");
        return;
    };
    let first = times[0];
    let window = last.duration_since(start).as_secs_f64();
    let binding = last.duration_since(first).as_secs_f64();
    println!(
        "{label}: {} pods bound in {window:.2} s from the start ({:.0} pods/s); first bind after {:.2} s; first to last bind {binding:.2} s: {:.0} pods/s",
        times.len(),
        times.len() as f64 / window,
        first.duration_since(start).as_secs_f64(),
        (times.len().saturating_sub(1)) as f64 / binding.max(1e-9),
    );
    // Per-second samples from the first bind, as scheduler_perf's throughput collector takes
    // them (a trailing partial second is left out).
    let secs = binding.floor() as usize;
    let mut per_second = vec![0usize; secs.max(1)];
    for t in times {
        let s = t.duration_since(first).as_secs_f64() as usize;
        if s < per_second.len() {
            per_second[s] += 1;
        }
    }
    let mut sorted: Vec<f64> = per_second.iter().map(|&n| n as f64).collect();
    println!("  per second: {per_second:?}");
    sorted.sort_by(f64::total_cmp);
    let avg = sorted.iter().sum::<f64>() / sorted.len() as f64;
    println!(
        "  per-second samples: average {avg:.0}, p50 {:.0}, p90 {:.0}, p95 {:.0}, p99 {:.0}",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        percentile(&sorted, 0.95),
        percentile(&sorted, 0.99),
    );
}

async fn create_pods(
    client: &ApiClient,
    ns: &str,
    n: usize,
    creators: usize,
) -> anyhow::Result<Created> {
    let c = client.clone();
    let ns = ns.to_owned();
    create_many(n, creators, move |_| {
        let c = c.clone();
        let ns = ns.clone();
        async move { c.create(&ns, &pod()).await.map(|_| ()) }
    })
    .await
}

async fn list_version(client: &ApiClient, ns: &str) -> anyhow::Result<String> {
    let l = client
        .list::<Pod>(
            ns,
            &ListParams {
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
    Ok(l.resource_version)
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    bosun_tests::bench::until_interrupted(run()).await
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (dir, _tmp) = work_dir(cli.dir.as_deref())?;
    println!(
        "sched-bench: {} nodes, {} pods placed first, {} measured ({:?}); bosun: {}",
        cli.nodes,
        cli.init_pods,
        cli.pods,
        cli.mode,
        bosun_bin().display()
    );
    let api_threads = cli
        .apiserver_threads
        .map(|t| format!("--worker-threads={t}"));
    let api_flags: Vec<&str> = api_threads.iter().map(String::as_str).collect();
    let cp = ControlPlane::start(&dir, cli.store_threads, &api_flags).await?;
    let (cluster, api, client) = (&cp.cluster, &cp.api, cp.client.clone());
    create_namespace(&client, "init").await?;
    create_namespace(&client, "measured").await?;
    let cm = cli.controller_manager.then(|| {
        Component::start(
            &dir,
            "controller-manager",
            "controller-manager",
            &api.url,
            &["--leader-elect=false", "--bind-address=127.0.0.1"],
            &[],
        )
    });

    let c = client.clone();
    let created = create_many(cli.nodes, cli.creators, move |i| {
        let c = c.clone();
        async move { c.create("", &node(i)).await.map(|_| ()) }
    })
    .await?;
    println!("{} nodes created in {created}", cli.nodes);

    let version = list_version(&client, "init").await?;
    let mut sched = SchedulerProc::start(&cli, &dir, &api.url, 1)?;
    let binds = tokio::spawn(watch_binds(
        client.clone(),
        "init".into(),
        version,
        cli.init_pods,
        Duration::from_secs(600),
    ));
    let start = Instant::now();
    create_pods(&client, "init", cli.init_pods, cli.creators).await?;
    let times = binds.await??;
    report("placed first", start, &times);

    let pids: Vec<(String, u32)> = cluster
        .members
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.pid()?)))
        .chain([("apiserver".to_owned(), api.pid())])
        .chain(
            cm.as_ref()
                .and_then(Component::pid)
                .map(|p| ("controller-manager".to_owned(), p)),
        )
        .collect();
    let (start, times, sched_pid, cpu_before) = match cli.mode {
        Mode::Concurrent => {
            let sched_pid = sched.child.id();
            let cpu_before: Vec<f64> = pids
                .iter()
                .map(|(_, p)| cpu_seconds(*p))
                .chain([cpu_seconds(sched_pid)])
                .collect();
            let binds = watch_measured(&client, cli.pods).await?;
            let start = Instant::now();
            let created = create_pods(&client, "measured", cli.pods, cli.creators).await?;
            println!("{} measured pods created in {created}", cli.pods);
            (start, binds.await??, sched_pid, cpu_before)
        }
        Mode::Precreated => {
            sched.stop();
            let created = create_pods(&client, "measured", cli.pods, cli.creators).await?;
            println!(
                "{} measured pods created in {created} with the scheduler stopped",
                cli.pods
            );
            let binds = watch_measured(&client, cli.pods).await?;
            let cpu_before: Vec<f64> = pids
                .iter()
                .map(|(_, p)| cpu_seconds(*p))
                .chain([0.0])
                .collect();
            let start = Instant::now();
            sched = SchedulerProc::start(&cli, &dir, &api.url, 2)?;
            let sched_pid = sched.child.id();
            (start, binds.await??, sched_pid, cpu_before)
        }
    };
    report("measured", start, &times);
    let elapsed = times
        .last()
        .map_or(0.0, |t| t.duration_since(start).as_secs_f64());
    let mut line = String::from("  CPU over the window (cores):");
    for (i, (name, pid)) in pids
        .iter()
        .chain([&("scheduler".to_owned(), sched_pid)])
        .enumerate()
    {
        let used = cpu_seconds(*pid) - cpu_before[i];
        line.push_str(&format!(" {name} {:.2}", used / elapsed.max(1e-9)));
    }
    println!("{line}");
    println!(
        "  scheduler peak RSS {:.0} MiB, apiserver peak RSS {:.0} MiB",
        peak_rss_mib(sched_pid),
        peak_rss_mib(api.pid())
    );
    if let Some(pid) = cm.as_ref().and_then(Component::pid) {
        println!(
            "  controller-manager peak RSS {:.0} MiB, now {:.0} MiB",
            peak_rss_mib(pid),
            rss_mib(pid)
        );
    }
    if times.len() < cli.pods {
        bail!("only {} of {} pods bound", times.len(), cli.pods);
    }
    sched.stop();
    Ok(())
}
