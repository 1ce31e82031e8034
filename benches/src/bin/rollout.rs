//! `rollout-bench`: create-to-all-Running latency of a Deployment on hollow nodes, with the
//! time each step of the chain took, against a three-member `bosun store`, `bosun apiserver`,
//! `bosun controller-manager`, `bosun scheduler` and one `bosun kubelet --runtime fake
//! --node-count N` on this machine.
//!
//! For each size in `--replicas`, a Deployment is created in its own namespace while watches
//! record when its ReplicaSet first appeared and when each pod was first seen created, bound
//! (`spec.nodeName`) and Running (`status.phase`). It prints, from the Deployment's creation:
//! the ReplicaSet (deployment controller), the first and last pod created (replicaset
//! controller), bound (scheduler) and Running (kubelet), and each pod's median and worst step
//! times. It prints figures; it does not assert them.
//!
//! `BOSUN_BIN=target/release/bosun target/release/rollout-bench --nodes 100 --replicas 100,1000`

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bosun_api_client::k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use bosun_api_client::k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use bosun_api_client::{ApiClient, ListParams, WatchEvent, WatchParams};
use bosun_tests::bench::{ControlPlane, create_namespace, wait_nodes_ready, work_dir};
use bosun_tests::bosun_bin;
use bosun_tests::component::Component;
use clap::Parser;

/// Create-to-all-Running latency of Deployments on hollow nodes.
#[derive(Debug, Parser)]
#[command(name = "rollout-bench")]
struct Cli {
    /// Hollow nodes (one `bosun kubelet --runtime fake --node-count N` process).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Deployment sizes, measured one after the other.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    replicas: Vec<usize>,
    /// The scheduler's --parallelism.
    #[arg(long, default_value_t = 16)]
    parallelism: u32,
    /// The controller-manager's --concurrent-replicaset-syncs and
    /// --concurrent-deployment-syncs.
    #[arg(long, default_value_t = 5)]
    concurrent_syncs: u16,
    /// Worker threads of each store member (`--worker-threads`).
    #[arg(long, default_value_t = 1)]
    store_threads: u16,
    /// Seconds to wait for a Deployment to be all Running.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Directory for the run's data (default: a temporary directory, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// When one pod passed each step.
#[derive(Debug, Default, Clone, Copy)]
struct PodTimes {
    created: Option<Instant>,
    bound: Option<Instant>,
    running: Option<Instant>,
}

fn deployment(name: &str, replicas: usize) -> Deployment {
    let labels: std::collections::BTreeMap<String, String> =
        [("app".to_owned(), name.to_owned())].into();
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "pause".into(),
                        image: Some("registry.k8s.io/pause:3.10".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The resourceVersion of a list of `ns`'s pods and of its ReplicaSets.
async fn list_versions(client: &ApiClient, ns: &str) -> anyhow::Result<(String, String)> {
    let one = ListParams {
        limit: 1,
        ..Default::default()
    };
    let pods = client.list::<Pod>(ns, &one).await?.resource_version;
    let rs = client.list::<ReplicaSet>(ns, &one).await?.resource_version;
    Ok((pods, rs))
}

/// Records the pods' step times in `ns` until `want` are Running.
async fn watch_pods(
    client: ApiClient,
    ns: String,
    from: String,
    want: usize,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, PodTimes>> {
    let mut w = client
        .watch::<Pod>(&ns, &WatchParams::from_version(&from))
        .await?;
    let mut pods: HashMap<String, PodTimes> = HashMap::new();
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
        let now = Instant::now();
        let t = pods
            .entry(p.metadata.name.clone().unwrap_or_default())
            .or_default();
        t.created.get_or_insert(now);
        if t.bound.is_none()
            && p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        {
            t.bound = Some(now);
        }
        if t.running.is_none()
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        {
            t.running = Some(now);
            running += 1;
        }
    }
    Ok(pods)
}

/// Waits for the first ReplicaSet in `ns`; the instant it was seen.
async fn watch_replicaset(
    client: ApiClient,
    ns: String,
    from: String,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let mut w = client
        .watch::<ReplicaSet>(&ns, &WatchParams::from_version(&from))
        .await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, w.next())
            .await
            .map_err(|_| anyhow::anyhow!("no ReplicaSet before the timeout"))??;
        if let Some(WatchEvent::Added(_)) = ev {
            return Ok(Instant::now());
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and maximum of per-pod step durations (ms).
fn median_max(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

fn report(replicas: usize, start: Instant, rs: Instant, pods: &HashMap<String, PodTimes>) {
    let since = |t: Instant| ms(t.duration_since(start));
    let step = |f: fn(&PodTimes) -> Option<Instant>| -> (f64, f64) {
        let mut all: Vec<f64> = pods.values().filter_map(f).map(since).collect();
        all.sort_by(f64::total_cmp);
        (
            all.first().copied().unwrap_or(0.0),
            all.last().copied().unwrap_or(0.0),
        )
    };
    let (c0, c1) = step(|t| t.created);
    let (b0, b1) = step(|t| t.bound);
    let (r0, r1) = step(|t| t.running);
    println!(
        "Deployment of {replicas}: all Running {:.0} ms after its creation",
        r1
    );
    println!("  controller: ReplicaSet seen at {:.0} ms", since(rs));
    println!("  replicaset: pods created {c0:.0} .. {c1:.0} ms");
    println!("  scheduler:  pods bound   {b0:.0} .. {b1:.0} ms");
    println!("  kubelet:    pods Running {r0:.0} .. {r1:.0} ms");
    let per_pod = |a: fn(&PodTimes) -> Option<Instant>, b: fn(&PodTimes) -> Option<Instant>| {
        median_max(
            pods.values()
                .filter_map(|t| Some(ms(b(t)?.duration_since(a(t)?))))
                .collect(),
        )
    };
    let (m1, x1) = per_pod(|t| t.created, |t| t.bound);
    let (m2, x2) = per_pod(|t| t.bound, |t| t.running);
    println!(
        "  per pod: created -> bound median {m1:.0} ms, max {x1:.0} ms; bound -> Running median {m2:.0} ms, max {x2:.0} ms"
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    bosun_tests::bench::until_interrupted(run()).await
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (dir, _tmp) = work_dir(cli.dir.as_deref())?;
    println!(
        "rollout-bench: {} hollow nodes, Deployments of {:?}; bosun: {}",
        cli.nodes,
        cli.replicas,
        bosun_bin().display()
    );
    let cp = ControlPlane::start(&dir, cli.store_threads, &[]).await?;
    let (api, client) = (&cp.api, cp.client.clone());
    let syncs = cli.concurrent_syncs.to_string();
    let _cm = Component::start(
        &dir,
        "controller-manager",
        "controller-manager",
        &api.url,
        &[
            "--leader-elect=false",
            "--concurrent-deployment-syncs",
            &syncs,
            "--concurrent-replicaset-syncs",
            &syncs,
        ],
        &[],
    );
    let parallelism = format!("--parallelism={}", cli.parallelism);
    let _sched = Component::start(
        &dir,
        "scheduler",
        "scheduler",
        &api.url,
        &["--leader-elect=false", &parallelism],
        &[],
    );
    let count = cli.nodes.to_string();
    let _kubelet = Component::start(
        &dir,
        "kubelet",
        "kubelet",
        &api.url,
        &[
            "--runtime",
            "fake",
            "--node-name",
            "hollow",
            "--node-count",
            &count,
        ],
        &[],
    );
    let took = wait_nodes_ready(&client, cli.nodes, Duration::from_secs(300)).await?;
    println!("{} nodes Ready in {:.1} s", cli.nodes, took.as_secs_f64());

    for &replicas in &cli.replicas {
        let ns = format!("rollout-{replicas}");
        create_namespace(&client, &ns).await?;
        let timeout = Duration::from_secs(cli.timeout);
        let (pods_from, rs_from) = list_versions(&client, &ns).await?;
        let pods = tokio::spawn(watch_pods(
            client.clone(),
            ns.clone(),
            pods_from,
            replicas,
            timeout,
        ));
        let rs = tokio::spawn(watch_replicaset(
            client.clone(),
            ns.clone(),
            rs_from,
            timeout,
        ));
        let start = Instant::now();
        client
            .create(&ns, &deployment("web", replicas))
            .await
            .context("create deployment")?;
        let rs = rs.await??;
        let pods = pods.await??;
        report(replicas, start, rs, &pods);
    }
    Ok(())
}
