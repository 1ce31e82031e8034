//! `podstart-bench`: create-to-Running latency of pods with real containers, and where the
//! time goes, against a three-member `bosun store`, `bosun apiserver`, `bosun
//! controller-manager`, `bosun scheduler` and one `bosun kubelet --runtime cri` over a
//! private containerd (its own socket, CNI network, pod range and cgroup root; images
//! imported; removed at the end).
//!
//! For each size in `--pods` (default 1, 10, 30), `--rounds` rounds: that many plain pods
//! (busybox `sleep`, `imagePullPolicy: IfNotPresent`) are created at once; a watch records when
//! each is first seen bound and Running; CRI gives its sandbox's and container's created_at
//! and started_at; the kubelet's `/metrics` gives the CRI calls' durations over the round.
//! Then the pods are deleted and the round waits until they are gone from the apiserver and
//! containerd. It prints p50, p99 and max of create-to-Running, the per-pod steps, and the
//! ratios to the targets (10 at once: p50 <= 1 s, p99 <= 2 s; Kubernetes' SLO p99 <= 5 s).
//! It prints figures; it does not assert them.
//!
//! `BOSUN_BIN=target/release/bosun target/release/podstart-bench --pods 1,10,30 --rounds 5`

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bosun_api_client::k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::{ApiClient, ListParams, WatchEvent, WatchParams};
use bosun_tests::bench::{ControlPlane, create_namespace, wait_nodes_ready, work_dir};
use bosun_tests::bosun_bin;
use bosun_tests::component::{Component, metric_sum};
use bosun_tests::containerd::{CriClient, EVICTION_HARD, PrivateContainerd, cri};
use clap::Parser;

const NODE: &str = "podstart-node";
const NS: &str = "podstart";
const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The CRI calls whose durations are printed, Kubernetes' `operation_type`s.
const OPERATIONS: [&str; 9] = [
    "run_podsandbox",
    "podsandbox_status",
    "image_status",
    "pull_image",
    "create_container",
    "start_container",
    "list_podsandbox",
    "list_containers",
    "container_status",
];

/// Create-to-Running latency of pods on containerd.
#[derive(Debug, Parser)]
#[command(name = "podstart-bench")]
struct Cli {
    /// Pods created at once, one size after the other.
    #[arg(long, value_delimiter = ',', default_value = "1,10,30")]
    pods: Vec<usize>,
    /// Rounds per size (pods deleted and gone between rounds).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The image of the pods (imported into the private containerd).
    #[arg(long, default_value = "busybox")]
    image: String,
    /// Worker threads of each store member (`--worker-threads`).
    #[arg(long, default_value_t = 1)]
    store_threads: u16,
    /// Pods on the host's network (no CNI): the sandbox without its network, to compare.
    #[arg(long)]
    host_network: bool,
    /// More flags for the kubelet (`--kubelet-flag=--workers=32`), repeatable.
    #[arg(long = "kubelet-flag", allow_hyphen_values = true)]
    kubelet_flags: Vec<String>,
    /// Seconds to wait for a round's pods to be Running, and to be gone.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Directory for the run's data (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Nanoseconds since the epoch, now (the clock CRI's timestamps use).
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What one pod went through, in nanoseconds since the epoch (0: not seen).
#[derive(Debug, Default, Clone, Copy)]
struct PodTimes {
    /// The create request was sent.
    create: i64,
    /// First seen bound in the watch.
    bound: i64,
    /// CRI: the sandbox's created_at.
    sandbox: i64,
    /// CRI: the container's created_at.
    container_created: i64,
    /// CRI: the container's started_at.
    container_started: i64,
    /// First seen Running in the watch.
    running: i64,
}

/// The steps of one pod, in ms: total, then each step in [`STEPS`] order.
const STEPS: [&str; 6] = [
    "create -> Running (total)",
    "create -> bound (scheduler)",
    "bound -> sandbox created_at",
    "sandbox -> container created",
    "container created -> started",
    "started -> Running seen (status)",
];

impl PodTimes {
    fn steps(&self) -> [f64; 6] {
        let ms = |a: i64, b: i64| (b - a) as f64 / 1e6;
        [
            ms(self.create, self.running),
            ms(self.create, self.bound),
            ms(self.bound, self.sandbox),
            ms(self.sandbox, self.container_created),
            ms(self.container_created, self.container_started),
            ms(self.container_started, self.running),
        ]
    }
}

fn pod(name: &str, image: &str, host_network: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            termination_grace_period_seconds: Some(1),
            host_network: host_network.then_some(true),
            restart_policy: Some("Never".into()),
            containers: vec![Container {
                name: "main".into(),
                image: Some(image.into()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Records when each pod of `names` is first seen bound and Running, until all are Running.
async fn watch_pods(
    client: ApiClient,
    from: String,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, (i64, i64)>> {
    let mut w = client
        .watch::<Pod>(NS, &WatchParams::from_version(&from))
        .await?;
    let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
    let mut running = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while running < want {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!("{running} of {want} pods Running before the timeout")
            })??;
        let Some(WatchEvent::Added(p) | WatchEvent::Modified(p)) = ev else {
            continue;
        };
        let now = now_ns();
        let t = seen
            .entry(p.metadata.name.clone().unwrap_or_default())
            .or_default();
        if t.0 == 0
            && p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        {
            t.0 = now;
        }
        if t.1 == 0 && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            t.1 = now;
            running += 1;
        }
    }
    Ok(seen)
}

/// CRI's view of the pod `uid`: its sandbox's created_at, its container's created_at and
/// started_at.
async fn cri_times(cri: &CriClient, uid: &str) -> anyhow::Result<(i64, i64, i64)> {
    let mut rt = cri.runtime.clone();
    let sel: HashMap<String, String> = [(LABEL_POD_UID.to_string(), uid.to_string())].into();
    let sandbox = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: sel.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .items
        .iter()
        .map(|s| s.created_at)
        .max()
        .unwrap_or(0);
    let containers = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: sel,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    let Some(c) = containers.first() else {
        return Ok((sandbox, 0, 0));
    };
    let st = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: c.id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .unwrap_or_default();
    Ok((sandbox, st.created_at, st.started_at))
}

/// Sandboxes containerd still has in the bench's namespace.
async fn sandboxes_left(cri: &CriClient) -> anyhow::Result<usize> {
    let sel: HashMap<String, String> = [(LABEL_POD_NAMESPACE.to_string(), NS.to_string())].into();
    Ok(cri
        .runtime
        .clone()
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: sel,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .items
        .len())
}

/// The `_sum` and `_count` of each operation's duration histogram in a `/metrics` text.
fn operation_sums(text: &str) -> HashMap<String, (f64, f64)> {
    let mut out: HashMap<String, (f64, f64)> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("kubelet_runtime_operations_duration_seconds_") else {
            continue;
        };
        let (which, rest) = if let Some(r) = rest.strip_prefix("sum{") {
            (0, r)
        } else if let Some(r) = rest.strip_prefix("count{") {
            (1, r)
        } else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Some(op) = labels
            .split(',')
            .find_map(|l| l.strip_prefix("operation_type=\""))
            .map(|v| v.trim_end_matches('"'))
        else {
            continue;
        };
        let v: f64 = value.trim().parse().unwrap_or(0.0);
        let e = out.entry(op.to_string()).or_default();
        if which == 0 {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    out
}

/// The `_sum` and `_count` of a histogram without labels.
fn histogram_sum_count(text: &str, name: &str) -> (f64, f64) {
    let get = |suffix: &str| {
        let prefix = format!("{name}_{suffix} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get("sum"), get("count"))
}

/// The value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Per size: every pod's steps over all rounds, and the kubelet's CRI call sums over them.
#[derive(Default)]
struct SizeResult {
    pods: Vec<PodTimes>,
    round_max: Vec<f64>,
    ops: BTreeMap<String, (f64, f64)>,
    pod_start: (f64, f64),
    status_writes: f64,
}

async fn round(
    cli: &Cli,
    client: &ApiClient,
    cri: &CriClient,
    kubelet: &Component,
    size: usize,
    r: usize,
    acc: &mut SizeResult,
) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(cli.timeout);
    let before = kubelet.metrics().await.unwrap_or_default();
    let one = ListParams {
        limit: 1,
        ..Default::default()
    };
    let from = client.list::<Pod>(NS, &one).await?.resource_version;
    let watch = tokio::spawn(watch_pods(client.clone(), from, size, timeout));
    let names: Vec<String> = (0..size).map(|i| format!("p{size}-{r}-{i}")).collect();
    let mut created: HashMap<String, (i64, String)> = HashMap::new();
    let started = Instant::now();
    let results = futures::future::join_all(names.iter().map(|n| {
        let p = pod(n, &cli.image, cli.host_network);
        async move {
            let at = now_ns();
            (n.clone(), at, client.create(NS, &p).await)
        }
    }))
    .await;
    for (n, at, made) in results {
        let made = made.with_context(|| format!("create pod {n}"))?;
        created.insert(n, (at, made.metadata.uid.unwrap_or_default()));
    }
    let seen = watch.await??;
    let all_running = started.elapsed();
    // The kubelet's syncs that follow its Running writes (the watch bringing them back).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = kubelet.metrics().await.unwrap_or_default();
    let mut worst: f64 = 0.0;
    for (n, (at, uid)) in &created {
        let (bound, running) = seen.get(n).copied().unwrap_or_default();
        let (sandbox, cc, cs) = cri_times(cri, uid).await?;
        let t = PodTimes {
            create: *at,
            bound,
            sandbox,
            container_created: cc,
            container_started: cs,
            running,
        };
        worst = worst.max(t.steps()[0]);
        acc.pods.push(t);
    }
    acc.round_max.push(worst);
    let (b, a) = (operation_sums(&before), operation_sums(&after));
    for (op, (sum, count)) in &a {
        let (s0, c0) = b.get(op).copied().unwrap_or_default();
        let e = acc.ops.entry(op.clone()).or_default();
        e.0 += sum - s0;
        e.1 += count - c0;
    }
    let name = "kubelet_pod_start_duration_seconds";
    let (s0, c0) = histogram_sum_count(&before, name);
    let (s1, c1) = histogram_sum_count(&after, name);
    acc.pod_start.0 += s1 - s0;
    acc.pod_start.1 += c1 - c0;
    let writes = "kubelet_pod_status_writes_total";
    acc.status_writes += metric_sum(&after, writes) - metric_sum(&before, writes);
    println!(
        "  {size} pods, round {}: all Running in {:.0} ms (slowest pod {worst:.0} ms)",
        r + 1,
        all_running.as_secs_f64() * 1000.0
    );
    // Delete them and wait until they are gone from the apiserver and containerd.
    for n in created.keys() {
        client
            .delete::<Pod>(NS, n, None)
            .await
            .with_context(|| format!("delete pod {n}"))?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        let left = client
            .list::<Pod>(NS, &ListParams::default())
            .await?
            .items
            .len();
        let sandboxes = sandboxes_left(cri).await?;
        if left == 0 && sandboxes == 0 {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("{left} pods and {sandboxes} sandboxes left after the timeout");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn report(size: usize, rounds: usize, res: &SizeResult) {
    println!(
        "\n{size} pod(s) at once, {rounds} rounds, {} pods:",
        res.pods.len()
    );
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9}",
        "step (per pod, ms)", "p50", "p99", "max", "mean"
    );
    let mut totals: Vec<f64> = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        let mut v: Vec<f64> = res.pods.iter().map(|p| p.steps()[i]).collect();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "  {:<34} {:>9.0} {:>9.0} {:>9.0} {:>9.0}",
            step,
            quantile(&v, 0.5),
            quantile(&v, 0.99),
            v.last().copied().unwrap_or(0.0),
            mean
        );
        if i == 0 {
            totals = v;
        }
    }
    println!("  kubelet CRI calls over the rounds (mean ms, calls):");
    for op in OPERATIONS {
        if let Some((sum, count)) = res.ops.get(op).filter(|(_, c)| *c > 0.0) {
            println!(
                "    {:<20} {:>8.1} ms {:>6}",
                op,
                sum / count * 1000.0,
                count
            );
        }
    }
    if res.pod_start.1 > 0.0 {
        println!(
            "  kubelet_pod_start_duration_seconds: mean {:.0} ms over {} pods",
            res.pod_start.0 / res.pod_start.1 * 1000.0,
            res.pod_start.1
        );
    }
    println!(
        "  kubelet pod status writes: {:.2} per pod (until Running)",
        res.status_writes / res.pods.len().max(1) as f64
    );
    let p50 = quantile(&totals, 0.5);
    let p99 = quantile(&totals, 0.99);
    if size == 10 {
        println!(
            "  target (10 at once): p50 {:.0} ms / 1000 = {:.2}x, p99 {:.0} ms / 2000 = {:.2}x",
            p50,
            p50 / 1000.0,
            p99,
            p99 / 2000.0
        );
    }
    println!(
        "  Kubernetes SLO: p99 {:.0} ms / 5000 = {:.2}x",
        p99,
        p99 / 5000.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    bosun_tests::bench::until_interrupted(run()).await
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(ctr) = PrivateContainerd::start() else {
        println!("podstart-bench: skipped (containerd cannot run here)");
        return Ok(());
    };
    let (dir, _tmp) = work_dir(cli.dir.as_deref())?;
    println!(
        "podstart-bench: {:?} pods at once{}, {} rounds each; bosun: {}; containerd pid {}",
        cli.pods,
        if cli.host_network {
            " (hostNetwork)"
        } else {
            ""
        },
        cli.rounds,
        bosun_bin().display(),
        ctr.pid
    );
    let cp = ControlPlane::start(&dir, cli.store_threads, &[]).await?;
    let (api, client) = (&cp.api, cp.client.clone());
    let cm = Component::start(
        &dir,
        "controller-manager",
        "controller-manager",
        &api.url,
        &["--leader-elect=false"],
        &[],
    );
    let sched = Component::start(
        &dir,
        "scheduler",
        "scheduler",
        &api.url,
        &["--leader-elect=false"],
        &[],
    );
    // As tests/integration/cri.rs starts it.
    let mut args: Vec<String> = vec![
        "--runtime=cri".into(),
        format!("--container-runtime-endpoint={}", ctr.endpoint),
        format!("--node-name={NODE}"),
        format!("--root-dir={}", dir.join("kubelet-root").display()),
        format!("--pod-logs-dir={}", dir.join("pod-logs").display()),
        format!("--cgroup-root={}", ctr.cgroup_root),
        format!("--pod-cidr={}", ctr.settings.pod_cidr),
        "--node-status-update-frequency=1s".into(),
        format!("--eviction-hard={EVICTION_HARD}"),
    ];
    args.extend(cli.kubelet_flags.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let kubelet = Component::start(&dir, "kubelet", "kubelet", &api.url, &args, &[]);
    let took = wait_nodes_ready(&client, 1, Duration::from_secs(120)).await?;
    println!("node Ready in {:.1} s", took.as_secs_f64());
    let cri = ctr.client();
    create_namespace(&client, NS).await?;

    let mut results: Vec<(usize, SizeResult)> = Vec::new();
    let mut failed = None;
    'sizes: for &size in &cli.pods {
        let mut acc = SizeResult::default();
        for r in 0..cli.rounds {
            if let Err(e) = round(&cli, &client, &cri, &kubelet, size, r, &mut acc).await {
                failed = Some(e);
                break 'sizes;
            }
        }
        results.push((size, acc));
    }
    for (size, res) in &results {
        report(*size, cli.rounds, res);
    }
    // The components before the apiserver and store, the kubelet before containerd cleans up
    // after it.
    drop(kubelet);
    drop(sched);
    drop(cm);
    drop(cp);
    let left = ctr.stop();
    for l in left {
        eprintln!("cleanup: {l}");
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(())
}
