//! One store member, from its options to serving: opens storage, starts Raft, bootstraps or
//! joins the cluster, and serves the etcd API to clients and the Raft transport to peers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use bosun_proto::etcdserverpb::RangeRequest;
use bosun_proto::etcdserverpb::cluster_server::ClusterServer;
use bosun_proto::etcdserverpb::kv_server::KvServer;
use bosun_proto::etcdserverpb::lease_server::LeaseServer;
use bosun_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use bosun_proto::etcdserverpb::watch_server::WatchServer;
use bosun_proto::raftpb::raft_peer_server::RaftPeerServer;
use rocksdb::{ColumnFamilyDescriptor, DB, Options};
use tokio::sync::watch;
use tracing::info;

use crate::config::{self, StoreConfig, listen_addr};
use crate::mvcc::{CF_KV, CF_LEASE, CF_META, Mvcc};
use crate::raft::log_store::{CF_LOG, CF_RAFT_META, LogStore};
use crate::raft::network::{NetworkFactory, PeerService};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Member, Raft};
use crate::server::Node;
use crate::server::cluster::ClusterService;
use crate::server::kv::KvService;
use crate::server::lease::{LeaseService, expiry_loop};
use crate::server::maintenance::MaintenanceService;
use crate::server::watch::{PROGRESS_INTERVAL, WatchService};

/// gRPC overhead allowed on top of --max-request-bytes, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

fn open_db(cfg: &StoreConfig) -> anyhow::Result<Arc<DB>> {
    let path = cfg.data_dir.join("db");
    std::fs::create_dir_all(&path)
        .with_context(|| format!("create data dir {}", path.display()))?;
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    let cfs = [CF_KV, CF_LEASE, CF_META, CF_LOG, CF_RAFT_META].map(|name| {
        let mut o = Options::default();
        o.set_compression_type(rocksdb::DBCompressionType::Lz4);
        ColumnFamilyDescriptor::new(name, o)
    });
    let db = DB::open_cf_descriptors(&opts, &path, cfs)
        .with_context(|| format!("open rocksdb at {}", path.display()))?;
    Ok(Arc::new(db))
}

/// The Raft configuration derived from the member's options.
fn raft_config(cfg: &StoreConfig) -> anyhow::Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: cfg.initial_cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval,
        election_timeout_min: cfg.election_timeout,
        election_timeout_max: cfg.election_timeout * 3 / 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
        max_in_snapshot_log_to_keep: 1000,
        ..Default::default()
    };
    c.validate().context("raft configuration")
}

/// Runs a store member until `shutdown` becomes true.
pub async fn run(cfg: StoreConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    cfg.validate()?;
    let initial = cfg.initial_members()?;
    let ids: Vec<u64> = initial
        .iter()
        .map(|m| config::member_id(&m.peer_urls, &cfg.initial_cluster_token))
        .collect();
    let me = initial
        .iter()
        .position(|m| m.name == cfg.name)
        .context("own entry in --initial-cluster")?;
    let id = ids[me];
    let cluster_id = config::cluster_id(&ids);

    let db = open_db(&cfg)?;
    let mvcc = Mvcc::open(db.clone()).map_err(|e| anyhow::anyhow!("open mvcc store: {e}"))?;
    let sm = StateMachine::open(mvcc, cfg.data_dir.join("snap")).context("open state machine")?;
    let shared = sm.shared();
    let log = LogStore::open(db.clone()).context("open raft log")?;
    let factory = NetworkFactory::default();
    let raft = Raft::new(id, Arc::new(raft_config(&cfg)?), factory, log, sm)
        .await
        .context("start raft")?;

    if !raft.is_initialized().await.context("read raft state")? {
        if cfg.initial_cluster_state == "new" {
            let mut members = BTreeMap::new();
            for (m, mid) in initial.iter().zip(&ids) {
                let client_urls = if *mid == id {
                    cfg.advertise_client_urls.clone()
                } else {
                    Vec::new()
                };
                members.insert(
                    *mid,
                    Member {
                        name: m.name.clone(),
                        peer_urls: m.peer_urls.clone(),
                        client_urls,
                    },
                );
            }
            info!(
                member = format!("{id:x}"),
                members = members.len(),
                "bootstrapping a new cluster"
            );
            if let Err(e) = raft.initialize(members).await {
                // Another member may have initialised the cluster first: that is fine.
                info!(error = %e, "cluster already initialised");
            }
        } else {
            info!(
                member = format!("{id:x}"),
                "waiting to be added to an existing cluster"
            );
        }
    }

    let node = Arc::new(Node::new(id, cluster_id, raft.clone(), shared, cfg.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    {
        let node = node.clone();
        tasks.spawn(async move {
            node.follow_metrics().await;
            Ok(())
        });
    }

    // Peer listeners.
    for url in &cfg.listen_peer_urls {
        let addr = listen_addr(url)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on peer URL {url}"))?;
        let svc = RaftPeerServer::new(PeerService { node: node.clone() })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let mut sd = shutdown.clone();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = sd.wait_for(|s| *s).await;
                })
                .await
                .context("serve peers")
        });
        info!(url = %url, "serving raft peers");
    }

    // Client listeners: the etcd gRPC API and HTTP /metrics, /health on the same port.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let max_msg = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let routes = tonic::service::Routes::new(health_service)
        .add_service(
            KvServer::new(KvService { node: node.clone() })
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            WatchServer::new(WatchService {
                node: node.clone(),
                progress_interval: PROGRESS_INTERVAL,
            })
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            LeaseServer::new(LeaseService { node: node.clone() })
                .max_decoding_message_size(max_msg),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService { node: node.clone() })
                .max_decoding_message_size(max_msg)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            ClusterServer::new(ClusterService { node: node.clone() })
                .max_decoding_message_size(max_msg),
        );
    let metrics_node = node.clone();
    let health_node = node.clone();
    let router = routes
        .into_axum_router()
        .route(
            "/metrics",
            get(move || {
                let n = metrics_node.clone();
                async move { crate::metrics::render(&n) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let n = health_node.clone();
                async move { http_health(&n).await }
            }),
        );
    for url in &cfg.listen_client_urls {
        let addr = listen_addr(url)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on client URL {url}"))?;
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let router = router.clone();
        let mut sd = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = sd.wait_for(|s| *s).await;
                })
                .await
                .context("serve clients")
        });
        info!(url = %url, "serving etcd v3 API");
    }

    let expiry_shutdown = shutdown.clone();
    tasks.spawn(async move {
        expiry_loop(node, expiry_shutdown).await;
        Ok(())
    });

    info!(name = %cfg.name, member = format!("{id:x}"), cluster = format!("{cluster_id:x}"), "store member started");
    let _ = shutdown.wait_for(|s| *s).await;
    info!("shutting down");
    // Servers stop on the same signal; give in-flight requests a moment.
    let drain = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "task ended with an error");
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    tasks.abort_all();
    raft.shutdown().await.context("stop raft")?;
    db.flush_wal(true).context("flush write-ahead log")?;
    info!("stopped");
    Ok(())
}

/// etcd's `/health`: healthy when a linearizable read succeeds.
async fn http_health(node: &Node) -> (axum::http::StatusCode, String) {
    let ok = node.read_barrier().await.is_ok()
        && node
            .shared
            .mvcc
            .range(&RangeRequest {
                key: b"health".to_vec(),
                ..Default::default()
            })
            .is_ok();
    if ok {
        (
            axum::http::StatusCode::OK,
            "{\"health\":\"true\",\"reason\":\"\"}".into(),
        )
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{\"health\":\"false\",\"reason\":\"RANGE ERROR\"}".into(),
        )
    }
}
