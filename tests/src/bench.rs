//! What the control-plane benchmarks (`sched-bench`, `rollout-bench`, `podstart-bench`) share:
//! their working directory, a three-member store with an apiserver over it, waiting for
//! nodes to be Ready, namespaces to work in, and stopping cleanly on Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bosun_api_client::k8s_openapi::api::core::v1::{Namespace, Node};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::{ApiClient, ListParams};

use crate::kube::Apiserver;
use crate::{Cluster, Kind};

/// Runs a benchmark to its end, or until Ctrl-C or SIGTERM: then the benchmark's future is
/// dropped, which stops the processes it started and removes what they made (its
/// components, store members and containerd, in the reverse order of their start), and the
/// exit code is 130.
pub async fn until_interrupted(
    bench: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<std::process::ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    tokio::select! {
        r = bench => r.map(|()| std::process::ExitCode::SUCCESS),
        _ = int.recv() => interrupted(),
        _ = term.recv() => interrupted(),
    }
}

fn interrupted() -> anyhow::Result<std::process::ExitCode> {
    eprintln!("interrupted: stopping what the benchmark started");
    Ok(std::process::ExitCode::from(130))
}

/// The directory a benchmark works in: `given`, or a temporary one removed with the guard.
pub fn work_dir(given: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match given {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let tmp = tempfile::tempdir()?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// Three store members (each with `--worker-threads store_threads` and an 8 GiB quota) and
/// an apiserver over them with a large watch cache and `api_flags`.
pub struct ControlPlane {
    /// The store.
    pub cluster: Cluster,
    /// The apiserver.
    pub api: Apiserver,
    /// A client of the apiserver.
    pub client: ApiClient,
}

impl ControlPlane {
    /// Starts it in `dir` and waits until the store has a leader and the apiserver answers.
    pub async fn start(
        dir: &Path,
        store_threads: u16,
        api_flags: &[&str],
    ) -> anyhow::Result<ControlPlane> {
        let threads = format!("--worker-threads={store_threads}");
        let cluster = Cluster::start(
            Kind::Bosun,
            dir,
            3,
            &[&threads, "--quota-backend-bytes", "8589934592"],
        )
        .await;
        cluster.wait_leader(Duration::from_secs(30)).await;
        let mut flags = vec!["--watch-cache-size=100000"];
        flags.extend_from_slice(api_flags);
        let api =
            Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &flags).await;
        let client = ApiClient::connect(&api.url).await?;
        Ok(ControlPlane {
            cluster,
            api,
            client,
        })
    }
}

/// Waits until `count` nodes are Ready; how long it took.
pub async fn wait_nodes_ready(
    client: &ApiClient,
    count: usize,
    within: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let nodes = client.list::<Node>("", &ListParams::default()).await?;
        let ready = nodes
            .items
            .iter()
            .filter(|n| {
                n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if ready >= count {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            anyhow::bail!(
                "{ready} of {count} nodes Ready after {} s",
                within.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates namespace `name` (one that exists already will do).
pub async fn create_namespace(client: &ApiClient, name: &str) -> anyhow::Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match client.create("", &ns).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e).context("create namespace"),
    }
}
