//! The client against small in-process mock servers on 127.0.0.1: watch resume, compaction,
//! progress, fragments, retry policy, endpoint failover, lease keep-alive, snapshots.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bosun_client::proto::etcdserverpb as pb;
use bosun_client::proto::etcdserverpb::kv_server::{Kv, KvServer};
use bosun_client::proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use bosun_client::proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use bosun_client::proto::etcdserverpb::watch_request::RequestUnion;
use bosun_client::proto::etcdserverpb::watch_server::{Watch, WatchServer};
use bosun_client::proto::mvccpb;
use bosun_client::{
    Client, ConnectOptions, Error, GetOptions, LeaseState, Outcome, PutOptions, WatchOptions,
};
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

type TestResult = Result<(), Box<dyn StdError + Send + Sync>>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

async fn serve(router: tonic::transport::server::Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    Ok(format!("127.0.0.1:{}", addr.port()))
}

/// An address on which nothing listens (connections are refused).
async fn dead_endpoint() -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(format!("127.0.0.1:{}", addr.port()))
}

fn fast_opts() -> ConnectOptions {
    ConnectOptions::default()
        .with_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .with_request_timeout(Some(Duration::from_secs(5)))
}

fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn put_event(rev: i64) -> mvccpb::Event {
    mvccpb::Event {
        r#type: mvccpb::event::EventType::Put as i32,
        kv: Some(mvccpb::KeyValue {
            key: format!("/k/{rev}").into_bytes(),
            mod_revision: rev,
            create_revision: rev,
            version: 1,
            value: b"v".to_vec(),
            lease: 0,
        }),
        prev_kv: None,
    }
}

fn events(watch_id: i64, fragment: bool, revs: &[i64]) -> pb::WatchResponse {
    pb::WatchResponse {
        header: header(revs.iter().copied().max().unwrap_or(0)),
        watch_id,
        fragment,
        events: revs.iter().map(|r| put_event(*r)).collect(),
        ..Default::default()
    }
}

/// One scripted watch connection: what to send after the create request.
type Script = Arc<
    dyn Fn(usize, pb::WatchCreateRequest, mpsc::Sender<Result<pb::WatchResponse, Status>>) -> BoxFut
        + Send
        + Sync,
>;
type BoxFut = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[derive(Clone)]
struct MockWatch {
    connections: Arc<AtomicUsize>,
    creates: Arc<Mutex<Vec<i64>>>,
    progress_requests: Arc<AtomicUsize>,
    script: Script,
}

impl MockWatch {
    fn new(script: Script) -> Self {
        Self {
            connections: Arc::new(AtomicUsize::new(0)),
            creates: Arc::new(Mutex::new(Vec::new())),
            progress_requests: Arc::new(AtomicUsize::new(0)),
            script,
        }
    }
}

#[tonic::async_trait]
impl Watch for MockWatch {
    type WatchStream = BoxStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let conn = self.connections.fetch_add(1, Ordering::SeqCst);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                match req.request_union {
                    Some(RequestUnion::CreateRequest(c)) => {
                        this.creates.lock().await.push(c.start_revision);
                        tokio::spawn((this.script)(conn, c, tx.clone()));
                    }
                    Some(RequestUnion::ProgressRequest(_)) => {
                        this.progress_requests.fetch_add(1, Ordering::SeqCst);
                        let _ = tx
                            .send(Ok(pb::WatchResponse {
                                header: header(20),
                                watch_id: -1,
                                ..Default::default()
                            }))
                            .await;
                    }
                    Some(RequestUnion::CancelRequest(c)) => {
                        let _ = tx
                            .send(Ok(pb::WatchResponse {
                                header: header(20),
                                watch_id: c.watch_id,
                                canceled: true,
                                ..Default::default()
                            }))
                            .await;
                    }
                    None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn created(watch_id: i64, rev: i64) -> pb::WatchResponse {
    pb::WatchResponse {
        header: header(rev),
        watch_id,
        created: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn watch_resumes_without_gap_or_duplicate() -> TestResult {
    let script: Script = Arc::new(|conn, _create, tx| {
        Box::pin(async move {
            if conn == 0 {
                let _ = tx.send(Ok(created(1, 10))).await;
                let _ = tx.send(Ok(events(1, false, &[11]))).await;
                let _ = tx.send(Ok(events(1, false, &[12]))).await;
                // The connection breaks.
                let _ = tx.send(Err(Status::unavailable("connection lost"))).await;
            } else {
                let _ = tx.send(Ok(created(7, 12))).await;
                // A duplicate the client must drop, then new events, one response fragmented.
                let _ = tx.send(Ok(events(7, false, &[12, 13]))).await;
                let _ = tx.send(Ok(events(7, true, &[14]))).await;
                let _ = tx.send(Ok(events(7, true, &[15]))).await;
                let _ = tx.send(Ok(events(7, false, &[16]))).await;
                // Keep the stream open.
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        })
    });
    let mock = MockWatch::new(script);
    let live =
        serve(tonic::transport::Server::builder().add_service(WatchServer::new(mock.clone())))
            .await?;
    let dead = dead_endpoint().await?;
    // The dead endpoint first: the first attempt fails over to the live one.
    let client = Client::connect([dead, live], fast_opts()).await?;
    let mut stream = client
        .watch("/k/", WatchOptions::new().with_prefix().with_fragment())
        .await?;
    assert_eq!(stream.created_revision(), 10);

    let mut revs = Vec::new();
    let mut batch_sizes = Vec::new();
    while revs.len() < 6 {
        let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await?
            .ok_or("stream ended")??;
        batch_sizes.push(batch.events.len());
        revs.extend(batch.events.iter().map(|e| e.revision()));
    }
    assert_eq!(revs, vec![11, 12, 13, 14, 15, 16]);
    // The fragmented response arrived as one batch.
    assert_eq!(batch_sizes, vec![1, 1, 1, 3]);
    assert_eq!(stream.last_revision(), 16);
    assert_eq!(stream.watch_id(), 7);
    // First create "from now", the resume right after the last delivered revision.
    assert_eq!(*mock.creates.lock().await, vec![0, 13]);

    // Progress on request.
    stream.request_progress().await?;
    let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .ok_or("stream ended")??;
    assert!(batch.progress_notify);
    assert!(batch.events.is_empty());
    assert_eq!(batch.revision(), 20);
    assert_eq!(mock.progress_requests.load(Ordering::SeqCst), 1);

    // Cancel: a final canceled batch, then the end.
    stream.cancel().await?;
    let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .ok_or("stream ended")??;
    assert!(batch.canceled);
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test]
async fn watch_resume_from_explicit_start_revision() -> TestResult {
    let script: Script = Arc::new(|conn, create, tx| {
        Box::pin(async move {
            let _ = tx.send(Ok(created(conn as i64, 50))).await;
            if conn == 0 {
                // Broken before any event: resume must start at the same revision.
                let _ = tx.send(Err(Status::unavailable("reset"))).await;
            } else {
                let _ = tx
                    .send(Ok(events(1, false, &[create.start_revision])))
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        })
    });
    let mock = MockWatch::new(script);
    let live =
        serve(tonic::transport::Server::builder().add_service(WatchServer::new(mock.clone())))
            .await?;
    let client = Client::connect([live], fast_opts()).await?;
    let mut stream = client
        .watch("/k", WatchOptions::new().with_start_revision(5))
        .await?;
    let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await?
        .ok_or("stream ended")??;
    assert_eq!(batch.events.first().map(|e| e.revision()), Some(5));
    assert_eq!(*mock.creates.lock().await, vec![5, 5]);
    Ok(())
}

#[tokio::test]
async fn watch_compaction_is_typed_and_final() -> TestResult {
    let script: Script = Arc::new(|_conn, _create, tx| {
        Box::pin(async move {
            let _ = tx.send(Ok(created(3, 100))).await;
            let _ = tx
                .send(Ok(pb::WatchResponse {
                    header: header(100),
                    watch_id: 3,
                    canceled: true,
                    compact_revision: 42,
                    cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                    ..Default::default()
                }))
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        })
    });
    let mock = MockWatch::new(script);
    let live =
        serve(tonic::transport::Server::builder().add_service(WatchServer::new(mock.clone())))
            .await?;
    let client = Client::connect([live], fast_opts()).await?;
    let mut stream = client
        .watch("/k", WatchOptions::new().with_start_revision(2))
        .await?;
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await? {
        Some(Err(Error::Compacted { compact_revision })) => assert_eq!(compact_revision, 42),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await?
            .is_none()
    );
    // Not resumed.
    assert_eq!(mock.connections.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn watch_gives_up_after_bounded_failures() -> TestResult {
    let dead = dead_endpoint().await?;
    let client = Client::connect([dead], fast_opts()).await?;
    let res = client
        .watch(
            "/k",
            WatchOptions::new()
                .with_max_retries(2)
                .with_backoff(Duration::from_millis(1), Duration::from_millis(5)),
        )
        .await;
    match res {
        Err(Error::Unavailable { connect_failed, .. }) => assert!(connect_failed),
        other => return Err(format!("unexpected {other:?}").into()),
    }
    Ok(())
}

#[derive(Default)]
struct MockKv {
    ranges: AtomicUsize,
    puts: AtomicUsize,
    fail_with: Option<(tonic::Code, &'static str)>,
}

#[tonic::async_trait]
impl Kv for MockKv {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.ranges.fetch_add(1, Ordering::SeqCst);
        if let Some((code, msg)) = self.fail_with {
            return Err(Status::new(code, msg));
        }
        let req = request.into_inner();
        Ok(Response::new(pb::RangeResponse {
            header: header(9),
            kvs: vec![mvccpb::KeyValue {
                key: req.key,
                value: req.range_end,
                ..Default::default()
            }],
            more: false,
            count: 1,
        }))
    }

    type RangeStreamStream = BoxStream<pb::RangeStreamResponse>;

    async fn range_stream(
        &self,
        _request: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented("range_stream"))
    }

    async fn put(
        &self,
        _request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if let Some((code, msg)) = self.fail_with {
            return Err(Status::new(code, msg));
        }
        Ok(Response::new(pb::PutResponse {
            header: header(10),
            prev_kv: None,
        }))
    }

    async fn delete_range(
        &self,
        _request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("delete_range"))
    }

    async fn txn(
        &self,
        _request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        Err(Status::unimplemented("txn"))
    }

    async fn compact(
        &self,
        _request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Err(Status::new(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ))
    }
}

#[tokio::test]
async fn connection_refused_is_not_applied_and_fails_over() -> TestResult {
    let dead = dead_endpoint().await?;
    // Alone, a dead endpoint gives a typed "never sent" error, for reads and writes.
    let only_dead = Client::connect([dead.clone()], fast_opts()).await?;
    let err = only_dead
        .put("k", "v", PutOptions::new())
        .await
        .err()
        .ok_or("put succeeded")?;
    assert!(
        matches!(
            err,
            Error::Unavailable {
                connect_failed: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.outcome(), Outcome::NotApplied);

    // With a live endpoint behind it, both reads and writes fail over.
    let kv = Arc::new(MockKv::default());
    let live =
        serve(tonic::transport::Server::builder().add_service(KvServer::from_arc(kv.clone())))
            .await?;
    let client = Client::connect([dead.clone(), live.clone()], fast_opts()).await?;
    client.put("k", "v", PutOptions::new()).await?;
    assert_eq!(kv.puts.load(Ordering::SeqCst), 1);
    let resp = client.get("/p/", GetOptions::new().with_prefix()).await?;
    assert_eq!(
        resp.kvs.first().map(|kv| kv.value.clone()),
        Some(b"/p0".to_vec())
    );
    assert_eq!(client.current_endpoint(), format!("http://{live}"));

    // An RPC the server lacks is a definite, non-retried failure.
    match client
        .range_stream_raw(GetOptions::new().to_request("k"))
        .await
    {
        Err(
            e @ Error::Other {
                code: tonic::Code::Unimplemented,
                ..
            },
        ) => assert_eq!(e.outcome(), Outcome::Failed),
        other => return Err(format!("unexpected {other:?}").into()),
    }

    // Typed server errors pass through.
    match client.compact(1, false).await {
        Err(Error::Compacted { .. }) => {}
        other => return Err(format!("unexpected {other:?}").into()),
    }
    Ok(())
}

#[tokio::test]
async fn writes_with_unknown_outcome_are_not_retried_but_reads_are() -> TestResult {
    let kv = Arc::new(MockKv {
        fail_with: Some((tonic::Code::Unavailable, "connection lost mid-request")),
        ..Default::default()
    });
    let live =
        serve(tonic::transport::Server::builder().add_service(KvServer::from_arc(kv.clone())))
            .await?;
    let client = Client::connect([live], fast_opts().with_max_attempts(3)).await?;

    let err = client
        .put("k", "v", PutOptions::new())
        .await
        .err()
        .ok_or("put succeeded")?;
    assert_eq!(err.outcome(), Outcome::Unknown);
    assert_eq!(
        kv.puts.load(Ordering::SeqCst),
        1,
        "a write must not be re-sent"
    );

    let err = client
        .get("k", GetOptions::new())
        .await
        .err()
        .ok_or("get succeeded")?;
    assert!(err.is_transient());
    assert_eq!(kv.ranges.load(Ordering::SeqCst), 3, "reads are retried");

    // "No leader" proves the write was not proposed: it is retried, up to the bound.
    let kv = Arc::new(MockKv {
        fail_with: Some((tonic::Code::Unavailable, "etcdserver: no leader")),
        ..Default::default()
    });
    let live =
        serve(tonic::transport::Server::builder().add_service(KvServer::from_arc(kv.clone())))
            .await?;
    let client = Client::connect([live], fast_opts().with_max_attempts(2)).await?;
    match client.put("k", "v", PutOptions::new()).await {
        Err(Error::NoLeader) => {}
        other => return Err(format!("unexpected {other:?}").into()),
    }
    assert_eq!(kv.puts.load(Ordering::SeqCst), 2);
    Ok(())
}

#[derive(Default)]
struct MockLease {
    keep_alives: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Lease for MockLease {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::LeaseGrantResponse {
            header: header(1),
            id: 77,
            ttl: req.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        _request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        Err(Status::not_found("etcdserver: requested lease not found"))
    }

    type LeaseKeepAliveStream = BoxStream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let count = self.keep_alives.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let n = count.fetch_add(1, Ordering::SeqCst);
                // Alive for three keep-alives, then gone.
                let ttl = if n < 3 { 1 } else { 0 };
                let _ = tx
                    .send(Ok(pb::LeaseKeepAliveResponse {
                        header: header(1),
                        id: req.id,
                        ttl,
                    }))
                    .await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: header(1),
            id: req.id,
            ttl: 5,
            granted_ttl: 10,
            keys: if req.keys {
                vec![b"a".to_vec()]
            } else {
                vec![]
            },
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: header(1),
            leases: vec![pb::LeaseStatus { id: 77 }],
        }))
    }
}

#[tokio::test]
async fn keep_alive_reports_lost_lease() -> TestResult {
    let lease = MockLease::default();
    let count = lease.keep_alives.clone();
    let live =
        serve(tonic::transport::Server::builder().add_service(LeaseServer::new(lease))).await?;
    let client = Client::connect([live], fast_opts()).await?;

    let granted = client.lease_grant(1, 0).await?;
    assert_eq!((granted.id, granted.ttl), (77, 1));
    let ttl = client.lease_time_to_live(77, true).await?;
    assert_eq!(ttl.keys, vec![b"a".to_vec()]);
    assert_eq!(client.lease_leases().await?.leases.len(), 1);
    assert!(matches!(
        client.lease_revoke(5).await,
        Err(Error::LeaseNotFound)
    ));

    let mut handle = client.spawn_keep_alive(granted.id, granted.ttl);
    assert_eq!(handle.id(), 77);
    tokio::time::timeout(Duration::from_secs(10), handle.lost()).await?;
    assert_eq!(handle.state(), LeaseState::Lost);
    assert!(handle.is_lost());
    // Three "alive" answers, then the TTL-0 answer: keep-alives went every ~TTL/3.
    assert_eq!(count.load(Ordering::SeqCst), 4);

    // The raw stream.
    let (mut keeper, mut stream) = client.lease_keep_alive(77).await?;
    let first = stream.message().await?.ok_or("no response")?;
    assert_eq!((first.id, first.ttl), (77, 0));
    keeper.keep_alive().await?;
    let second = stream.message().await?.ok_or("no response")?;
    assert_eq!(second.ttl, 0);
    Ok(())
}

struct MockMaintenance {
    snapshot: Vec<u8>,
}

#[tonic::async_trait]
impl Maintenance for MockMaintenance {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(pb::AlarmResponse {
            header: header(1),
            alarms: vec![pb::AlarmMember {
                member_id: req.member_id,
                alarm: req.action,
            }],
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            header: header(3),
            version: "3.6.0".into(),
            leader: 1,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Ok(Response::new(pb::DefragmentResponse { header: header(3) }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Err(Status::unimplemented("hash"))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Ok(Response::new(pb::HashKvResponse {
            header: header(3),
            hash: 1234,
            compact_revision: 0,
            hash_revision: request.into_inner().revision,
        }))
    }

    type SnapshotStream = BoxStream<pb::SnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = self
            .snapshot
            .chunks(100)
            .map(|c| {
                Ok(pb::SnapshotResponse {
                    header: header(3),
                    remaining_bytes: 0,
                    blob: c.to_vec(),
                    version: "3.6.0".into(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        _request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("move_leader"))
    }

    async fn downgrade(
        &self,
        _request: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented("downgrade"))
    }
}

#[tokio::test]
async fn maintenance_and_snapshot_to_file() -> TestResult {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();
    let mut good = payload.clone();
    good.extend_from_slice(&Sha256::digest(&payload));
    let mut bad = good.clone();
    bad[10] ^= 0xff;

    let live = serve(
        tonic::transport::Server::builder().add_service(MaintenanceServer::new(MockMaintenance {
            snapshot: good.clone(),
        })),
    )
    .await?;
    let client = Client::connect([live.clone()], fast_opts()).await?;
    let status = client.status().await?;
    assert_eq!(status.version, "3.6.0");
    let pinned = client.pinned(&live).ok_or("pinned")?;
    assert_eq!(pinned.status().await?.leader, 1);
    assert_eq!(client.hash_kv(5).await?.hash_revision, 5);
    assert_eq!(client.alarm_list().await?.alarms.len(), 1);
    client.defragment().await?;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("snap.db");
    let size = client.snapshot_to_file(&path).await?;
    assert_eq!(size, good.len() as u64);
    assert_eq!(std::fs::read(&path)?, good);

    let live_bad = serve(
        tonic::transport::Server::builder()
            .add_service(MaintenanceServer::new(MockMaintenance { snapshot: bad })),
    )
    .await?;
    let client = Client::connect([live_bad], fast_opts()).await?;
    let bad_path = dir.path().join("bad.db");
    match client.snapshot_to_file(&bad_path).await {
        Err(Error::SnapshotCorrupt(_)) => {}
        other => return Err(format!("unexpected {other:?}").into()),
    }
    assert!(!bad_path.exists());
    assert!(!dir.path().join("bad.db.part").exists());
    Ok(())
}
