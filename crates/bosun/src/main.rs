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
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One member of the Raft datastore, serving the etcd v3 API.
    Store(bosun_store::StoreConfig),
    /// The Kubernetes API (REST for kubectl, gRPC for Bosun's components), over the store.
    Apiserver(bosun_apiserver::ApiserverConfig),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    match cli.command {
        Command::Store(cfg) => bosun_store::run(cfg, shutdown_signal()).await,
        Command::Apiserver(cfg) => bosun_apiserver::run(cfg, shutdown_signal()).await,
    }
}
