//! `bosun`: one binary, one subcommand per component.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Bosun: a small container orchestrator whose state lives in its own Raft datastore.
#[derive(Debug, Parser)]
#[command(name = "bosun", version, about)]
struct Cli {
    /// Log format: `text` or `json`.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Threads that run the process's asynchronous work (network, Raft, serving); default: one
    /// per CPU, except for a store member, which takes its share of the CPUs among the members
    /// of --initial-cluster on this machine (those on loopback or on its own peer host; three
    /// on two CPUs: 1): fewer threads then hand less work to each other. With 1, all of it
    /// runs on the main thread (a single-threaded runtime, no hand-over at all).
    #[arg(long, global = true, env = "BOSUN_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One member of the Raft datastore, serving the etcd v3 API.
    Store(Box<bosun_store::StoreConfig>),
    /// The Kubernetes API (REST for kubectl, gRPC for Bosun's components), over the store.
    Apiserver(bosun_apiserver::ApiserverConfig),
    /// The deployment and replicaset controllers and the garbage collector, watching the
    /// apiserver.
    ControllerManager(bosun_controllers::run::ControllerManagerConfig),
    /// The node agent: registers the node, renews its Lease, runs the pods bound to it
    /// (`--runtime fake`: hollow nodes, `--node-count` of them in one process).
    Kubelet(bosun_kubelet::KubeletConfig),
    /// The scheduler: binds pending pods to nodes (filters, scores, bind).
    Scheduler(bosun_scheduler::run::SchedulerOptions),
    /// A whole cluster on this machine: three store members, the apiserver, the
    /// controller-manager, the scheduler and a kubelet over a private containerd (or hollow
    /// nodes), supervised until Ctrl-C, which stops them and cleans up.
    Up(bosun_up::UpConfig),
}

fn init_tracing(format: &str) {
    let filter =
        EnvFilter::try_from_env("BOSUN_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Flips the shutdown signal on SIGTERM or Ctrl-C.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = tx.send(true);
    });
    rx
}

/// mimalloc: the store allocates many small, short-lived buffers per request (protobuf and
/// log encoding); it spends a tenth of its CPU time in glibc's malloc otherwise.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bosun's own logs at info; openraft's only when something is wrong (its info level traces
/// every election attempt and heartbeat failure; `BOSUN_LOG=info` shows them).
const DEFAULT_LOG: &str = "info,openraft=error";

/// Puts the calling thread, and so every thread it starts from then on, under SCHED_BATCH,
/// keeping its nice value. Called before the runtime or anything else starts a thread.
fn set_batch_scheduling() -> Result<(), String> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
    };
    use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    let batch = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch);
    let nice = rustix::process::getpriority_process(None).map_err(|e| e.to_string())?;
    // The crate sets the policy, then a nice value: 0, the one it can be given here. Put back
    // the one the process was started with (raising it is always allowed).
    let set = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(Default::default()),
        batch,
    );
    if nice != 0 {
        rustix::process::setpriority_process(None, nice).map_err(|e| e.to_string())?;
    }
    match thread_schedule_policy() {
        Ok(p) if p == batch => Ok(()),
        Ok(p) => Err(format!("the policy is still {p:?}: {set:?}")),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let batch = match &cli.command {
        Command::Store(cfg) if cfg.batch_scheduling() => Some(set_batch_scheduling()),
        _ => None,
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = match (&cli.command, cli.worker_threads) {
        (_, Some(n)) => Some(usize::from(n)),
        (Command::Store(cfg), None) => Some(cfg.default_worker_threads(cpus)),
        (_, None) => None,
    };
    let mut runtime = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    runtime.enable_all();
    let runtime = runtime.build()?;
    let result = runtime.block_on(async move {
        init_tracing(&cli.log_format);
        match batch {
            Some(Ok(())) => tracing::info!(
                "scheduling policy: SCHED_BATCH, a woken thread waits for its turn \
                 (--scheduling-policy sets it)"
            ),
            Some(Err(e)) => tracing::warn!(error = %e, "cannot set the SCHED_BATCH policy"),
            None => {}
        }
        if let (Command::Store(cfg), None) = (&cli.command, cli.worker_threads) {
            tracing::info!(
                worker_threads = threads.unwrap_or(cpus),
                cpus,
                members_here = cfg.members_on_this_machine(),
                "worker threads: this machine's CPUs shared among the members on it \
                 (--worker-threads sets them)"
            );
        }
        match cli.command {
            Command::Store(cfg) => bosun_store::run(*cfg, shutdown_signal()).await,
            Command::Apiserver(cfg) => bosun_apiserver::run(cfg, shutdown_signal()).await,
            Command::ControllerManager(cfg) => {
                bosun_controllers::run::run(cfg, shutdown_signal()).await
            }
            Command::Kubelet(cfg) => bosun_kubelet::run(cfg, shutdown_signal()).await,
            Command::Scheduler(opts) => bosun_scheduler::run::run(opts, shutdown_signal()).await,
            Command::Up(cfg) => bosun_up::run(cfg, shutdown_signal()).await,
        }
    });
    // Dropping the runtime would wait for every blocking task however long it runs (a
    // snapshot being copied for a client, say); the component has stopped cleanly by now.
    runtime.shutdown_timeout(EXIT_WAIT);
    result
}

/// How long the process waits for leftover blocking work once a component has stopped.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
