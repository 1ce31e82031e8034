//! One store member, from its options to serving: opens storage, starts Raft, bootstraps or
//! joins the cluster, and serves the etcd API to clients and the Raft transport to peers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::RawQuery;
use axum::routing::get;
use bosun_proto::etcdserverpb::cluster_server::ClusterServer;
use bosun_proto::etcdserverpb::lease_server::LeaseServer;
use bosun_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use bosun_proto::etcdserverpb::watch_server::WatchServer;
use bosun_proto::raftpb::raft_peer_server::RaftPeerServer;
use futures::FutureExt;
use tokio::sync::watch;
use tracing::info;

use crate::config::{self, StoreConfig, listen_addr};
use crate::limits::{GRPC_OVERHEAD_BYTES, MAX_PEER_MESSAGE};
use crate::mvcc::Mvcc;
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::{META_APPLIED, StateMachine};
use crate::raft::transport::{NetworkFactory, PeerPool};
use crate::raft::{Member, Raft};
use crate::server::Replica;
use crate::server::cluster::ClusterService;
use crate::server::forward::{self, Members, MembersReply};
use crate::server::kv::{KvRoutes, KvService};
use crate::server::lease::{LeaseService, expiry_loop};
use crate::server::maintenance::MaintenanceService;
use crate::server::membership::MemberOp;
use crate::server::peer::PeerService;
use crate::server::watch::{PROGRESS_INTERVAL, WatchService};

/// The gRPC services of the client port.
const CLIENT_SERVICES: [&str; 6] = [
    "grpc.health.v1.Health",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Cluster",
];

/// How long Raft may take to stop when the member shuts down.
const RAFT_STOP: Duration = Duration::from_secs(3);

/// Most log entries kept behind a snapshot.
const KEEP_AFTER_SNAPSHOT: u64 = 1000;

/// The Raft configuration derived from the member's options.
fn raft_config(cfg: &StoreConfig) -> anyhow::Result<openraft::Config> {
    let c = openraft::Config {
        cluster_name: cfg.initial_cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval,
        election_timeout_min: cfg.election_timeout,
        election_timeout_max: cfg.election_timeout * 3 / 2,
        // Snapshots are due by writes, not entries: the member triggers them (see `run`).
        snapshot_policy: openraft::SnapshotPolicy::Never,
        // Entries kept after a snapshot so a slightly slow follower catches up from the log.
        max_in_snapshot_log_to_keep: cfg.snapshot_count.min(KEEP_AFTER_SNAPSHOT),
        // A follower further behind than the retained log gets a snapshot.
        replication_lag_threshold: cfg.snapshot_count + cfg.snapshot_count.min(KEEP_AFTER_SNAPSHOT),
        // So that an append message stays within the peer message limit.
        max_payload_entries: crate::limits::entries_per_append(cfg.max_request_bytes),
        // A member cut off and back must not depose a healthy leader.
        enable_pre_vote: Some(true),
        // A leader that restarts goes through an election, as in Raft, instead of taking its
        // leadership back at once (openraft's default). The state machine reaches disk only
        // with memtable flushes and the committed log id is written without an fsync, which is
        // the case openraft documents as unsafe for a restored leader: it could serve reads
        // and accept writes from a stale state before it learns the commit index again.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    c.validate().context("raft configuration")
}

/// The connection bounds of the client or the peer listeners.
fn conn_options(cfg: &StoreConfig, name: &'static str) -> crate::listen::ConnOptions {
    let peer = name == "peer";
    crate::listen::ConnOptions {
        name,
        handshake_timeout: cfg.handshake_timeout,
        idle_timeout: cfg.idle_connection_timeout,
        max_connections: usize::try_from(if peer {
            cfg.max_peer_connections
        } else {
            cfg.max_client_connections
        })
        .unwrap_or(usize::MAX),
        max_concurrent_streams: cfg.max_concurrent_streams,
        keepalive_interval: cfg.grpc_keepalive_interval,
        keepalive_timeout: cfg.grpc_keepalive_timeout,
        http2_only: peer,
        grpc_deadlines: peer,
    }
}

/// Runs a store member until `shutdown` becomes true.
pub async fn run(cfg: StoreConfig, external: watch::Receiver<bool>) -> anyhow::Result<()> {
    cfg.validate()?;
    // The member stops on the caller's signal, or by itself when it learns it was removed.
    let (stop, mut shutdown) = watch::channel(false);
    {
        let stop = stop.clone();
        let mut external = external;
        tokio::spawn(async move {
            let _ = external.wait_for(|s| *s).await;
            let _ = stop.send(true);
        });
    }
    let initial = cfg.initial_members()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data dir {}", cfg.data_dir.display()))?;
    let pool = PeerPool::with_fault_file(cfg.peer_fault_file.clone());
    let stored = Identity::load(&cfg.data_dir)?;
    let identity = match stored {
        Some(i) => i,
        None if cfg.initial_cluster_state == "new" => {
            let ids: Vec<u64> = initial
                .iter()
                .map(|m| config::member_id(&m.peer_urls, &cfg.initial_cluster_token))
                .collect();
            let me = initial
                .iter()
                .position(|m| m.name == cfg.name)
                .context("own entry in --initial-cluster")?;
            Identity {
                id: ids[me],
                cluster_id: config::cluster_id(&ids),
            }
        }
        None => join_identity(&cfg, &initial, &pool).await?,
    };
    let (id, cluster_id) = (identity.id, identity.cluster_id);

    let crate::storage::Databases {
        state: db,
        log: log_db,
    } = crate::storage::open(&cfg.data_dir)?;
    if crate::snapshot::discard_interrupted_restore(&db, META_APPLIED)
        .context("check state machine")?
    {
        tracing::warn!("discarded the state of a snapshot restore interrupted by a crash");
    }
    let mvcc = Mvcc::open(db.clone()).map_err(|e| anyhow::anyhow!("open mvcc store: {e}"))?;
    let sm = StateMachine::open(mvcc, cfg.data_dir.join("snap"), cfg.snapshot_count)
        .context("open state machine")?;
    let shared = sm.shared();
    if shared.is_removed(id) {
        anyhow::bail!(
            "member {id:x} has been permanently removed from the cluster; \
             start it with a new data directory after `member add`"
        );
    }
    let log = LogStore::open(log_db.clone(), db.clone()).context("open raft log")?;
    let factory = NetworkFactory { pool: pool.clone() };
    let raft = Raft::new(id, Arc::new(raft_config(&cfg)?), factory, log, sm)
        .await
        .context("start raft")?;

    if !raft.is_initialized().await.context("read raft state")? {
        if cfg.initial_cluster_state == "new" {
            let mut members = BTreeMap::new();
            // Client URLs are left out: each member publishes its own once it runs, so the
            // initial membership is the same whichever member proposes it.
            for m in &initial {
                let mid = config::member_id(&m.peer_urls, &cfg.initial_cluster_token);
                members.insert(
                    mid,
                    Member {
                        name: m.name.clone(),
                        peer_urls: m.peer_urls.clone(),
                        client_urls: Vec::new(),
                    },
                );
            }
            info!(
                member = format!("{id:x}"),
                members = members.len(),
                "bootstrapping a new cluster"
            );
            // Every initial member proposes the same membership as log entry 0, so it does not
            // matter which of them the others hear from first.
            if let Err(e) = raft.initialize(members).await {
                info!(error = %e, "cluster already initialised");
            }
        } else {
            info!(
                member = format!("{id:x}"),
                "joining an existing cluster; waiting for the leader"
            );
        }
    }
    if stored.is_none() {
        identity.save(&cfg.data_dir)?;
    }

    let replica = Arc::new(Replica::new(
        id,
        cluster_id,
        raft.clone(),
        shared,
        cfg.clone(),
        pool,
        log_db.clone(),
    ));
    let mut tasks = tokio::task::JoinSet::<anyhow::Result<()>>::new();
    let mut servers = tokio::task::JoinSet::<anyhow::Result<()>>::new();
    {
        let replica = replica.clone();
        tasks.spawn(async move {
            replica.follow_metrics().await;
            Ok(())
        });
    }
    {
        // Raft counts log entries; snapshots are due by writes (see `Shared::snapshot_due`).
        let (shared, raft, mut sd) = (replica.shared.clone(), raft.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shared.snapshot_due() => {}
                    _ = sd.wait_for(|s| *s) => return Ok(()),
                }
                if raft.trigger().snapshot().await.is_err() {
                    return Ok(());
                }
                // Building resets the count; a request meanwhile would only repeat this one.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    // Peer listeners.
    for url in &cfg.listen_peer_urls {
        let addr = listen_addr(url)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on peer URL {url}"))?;
        let svc = RaftPeerServer::new(PeerService {
            replica: replica.clone(),
        })
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE);
        let router = tonic::service::Routes::new(svc).into_axum_router();
        let opts = conn_options(&cfg, "peer");
        servers.spawn(
            crate::listen::serve(
                listener,
                crate::listen::Routes::router(router),
                opts,
                shutdown.clone(),
            )
            .map(Ok),
        );
        info!(url = %url, "serving raft peers");
    }

    // Client listeners: the etcd gRPC API and HTTP /metrics, /health on the same port.
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let max_msg = cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let kv = KvRoutes::new(
        KvService {
            replica: replica.clone(),
        },
        max_msg,
    );
    let routes = tonic::service::Routes::new(health_service)
        .add_service(kv.clone())
        .add_service(
            WatchServer::new(WatchService {
                replica: replica.clone(),
                progress_interval: PROGRESS_INTERVAL,
            })
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            LeaseServer::new(LeaseService {
                replica: replica.clone(),
            })
            .max_decoding_message_size(max_msg),
        )
        .add_service(
            MaintenanceServer::new(MaintenanceService {
                replica: replica.clone(),
            })
            .max_decoding_message_size(max_msg)
            .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            ClusterServer::new(ClusterService {
                replica: replica.clone(),
            })
            .max_decoding_message_size(max_msg),
        );
    let metrics_replica = replica.clone();
    let health_replica = replica.clone();
    let router = routes
        .into_axum_router()
        .route(
            "/metrics",
            get(move || {
                let n = metrics_replica.clone();
                async move { crate::server::metrics::render(&n) }
            }),
        )
        .route(
            "/health",
            get(move |RawQuery(query): RawQuery| {
                let n = health_replica.clone();
                async move { crate::server::http::health(&n, query).await }
            }),
        )
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| {
                crate::server::http::grpc_unknown(&CLIENT_SERVICES, req, next)
            },
        ));
    let routes = crate::listen::Routes {
        router,
        direct: Some((crate::server::kv::METHODS, kv.direct())),
    };
    for url in &cfg.listen_client_urls {
        let addr = listen_addr(url)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on client URL {url}"))?;
        let opts = conn_options(&cfg, "client");
        servers
            .spawn(crate::listen::serve(listener, routes.clone(), opts, shutdown.clone()).map(Ok));
        info!(url = %url, "serving etcd v3 API");
    }

    {
        let replica = replica.clone();
        let sd = shutdown.clone();
        tasks.spawn(async move {
            publish(&replica, sd).await;
            Ok(())
        });
    }
    let expiry_shutdown = shutdown.clone();
    let expiry_replica = replica.clone();
    tasks.spawn(async move {
        expiry_loop(expiry_replica, expiry_shutdown).await;
        Ok(())
    });

    info!(name = %cfg.name, member = format!("{id:x}"), cluster = format!("{cluster_id:x}"), "store member started");
    let mut removed = false;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = check.tick() => {
                if replica.is_removed(id) || replica.peers.told_removed() {
                    tracing::error!(member = format!("{id:x}"), "the member has been permanently removed from the cluster; stopping");
                    removed = true;
                    let _ = stop.send(true);
                    break;
                }
            }
        }
    }
    info!("shutting down");
    // Every step is bounded, so that the member exits promptly whatever its peers, clients
    // and disk are doing: the listeners give connections DRAIN to finish and close the rest
    // (watches and keep-alive streams never finish by themselves); Raft gets RAFT_STOP.
    let drain = async {
        while let Some(r) = servers.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "listener ended with an error");
            }
        }
    };
    if tokio::time::timeout(crate::listen::DRAIN * 2, drain)
        .await
        .is_err()
    {
        tracing::warn!("listeners did not stop in time");
    }
    servers.abort_all();
    tasks.abort_all();
    match tokio::time::timeout(RAFT_STOP, raft.shutdown()).await {
        Ok(r) => r.context("stop raft")?,
        Err(_) => tracing::warn!(
            timeout = ?RAFT_STOP,
            "raft did not stop in time; stopping without it (the log is durable)"
        ),
    }
    log_db.flush_wal(true).context("flush write-ahead log")?;
    // So that a restart need not apply the recent log entries again.
    crate::mvcc::flush_state(&db).map_err(|e| anyhow::anyhow!("flush state: {e}"))?;
    // Compactions (a defragmentation too) stop here instead of holding the exit.
    db.cancel_all_background_work(true);
    log_db.cancel_all_background_work(true);
    info!("stopped");
    if removed {
        anyhow::bail!("member {id:x} was removed from the cluster");
    }
    Ok(())
}

/// Who this member is: fixed when it first starts, kept in the data directory.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Identity {
    id: u64,
    cluster_id: u64,
}

impl Identity {
    const FILE: &str = "member.json";

    fn load(dir: &std::path::Path) -> anyhow::Result<Option<Identity>> {
        let path = dir.join(Self::FILE);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("read {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    fn save(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        let path = dir.join(Self::FILE);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))
    }
}

/// A member started with `--initial-cluster-state existing` learns its ID (given by
/// `member add`) and the cluster ID from the other members named in `--initial-cluster`.
async fn join_identity(
    cfg: &StoreConfig,
    initial: &[config::InitialMember],
    pool: &PeerPool,
) -> anyhow::Result<Identity> {
    let mine = &cfg.initial_advertise_peer_urls;
    let others: Vec<&String> = initial
        .iter()
        .filter(|m| m.name != cfg.name)
        .flat_map(|m| &m.peer_urls)
        .collect();
    anyhow::ensure!(
        !others.is_empty(),
        "--initial-cluster-state existing needs the other members in --initial-cluster"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for url in &others {
            let reply = forward::send(pool, url, Members).await;
            if let Ok(MembersReply {
                cluster_id,
                members,
            }) = reply
            {
                let found = members
                    .iter()
                    .find(|(_, m)| m.peer_urls.iter().any(|u| mine.contains(u)));
                let Some((id, _)) = found else {
                    anyhow::bail!(
                        "this member's peer URLs {} are not in the cluster's membership: \
                         add it first with `etcdctl member add {} --peer-urls={}`",
                        mine.join(","),
                        cfg.name,
                        mine.join(",")
                    );
                };
                info!(member = format!("{id:x}"), cluster = format!("{cluster_id:x}"), via = %url, "found this member in the cluster");
                return Ok(Identity {
                    id: *id,
                    cluster_id,
                });
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no member of --initial-cluster answered within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Publishes this member's name and client URLs into the membership once it has joined, as
/// etcd's members do, so `member list` shows them on every member.
async fn publish(replica: &Replica, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let current = replica
            .member_list()
            .into_iter()
            .find(|(id, _, _)| *id == replica.id);
        let Some((_, m, _)) = current else {
            continue;
        };
        if !replica.has_leader() {
            continue;
        }
        if m.name == replica.cfg.name && m.client_urls == replica.cfg.advertise_client_urls {
            return;
        }
        let op = MemberOp::Publish {
            id: replica.id,
            name: replica.cfg.name.clone(),
            client_urls: replica.cfg.advertise_client_urls.clone(),
        };
        match replica.member_change(op).await {
            Ok(_) => info!("published this member's name and client URLs"),
            Err(e) => tracing::info!(error = %e, "publishing member attributes failed; retrying"),
        }
    }
}
