//! Writes forwarded on the peer port get the same checks as a client's writes: the peer port
//! takes messages of up to 64 MiB from whoever connects, so a `Forward` call must not be a
//! way around the request size cap, the txn limits, etcd's validation or the storage quota.
//! Against the real `bosun store` binary on loopback, calling its peer port as a peer would.

#![allow(clippy::unwrap_used)]

use bosun_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest, request_op};
use bosun_proto::raftpb::raft_peer_client::RaftPeerClient;
use bosun_store::apply::{Command, CommandResult};
use bosun_store::error::{EtcdError, EtcdResult};
use bosun_store::server::forward::{Forward, ForwardRequest, Write, WriteBatch};
use bosun_tests::{Kind, Server};
use etcd_client::Client;

/// A client of the member's peer port, as a peer has.
async fn peer_client(server: &Server) -> RaftPeerClient<tonic::transport::Channel> {
    RaftPeerClient::connect(server.peer_url.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// Sends `req` to the member's peer port as a `Forward` call.
async fn forward<R: Forward>(server: &Server, req: R) -> EtcdResult<R::Reply> {
    let req: ForwardRequest = req.into();
    let reply = peer_client(server)
        .await
        .forward(bosun_proto::raftpb::ForwardRequest {
            data: postcard::to_stdvec(&req).unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.error, "");
    postcard::from_bytes(&reply.data).unwrap()
}

fn put(key: &str, value_len: usize) -> Command {
    Command::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: vec![b'v'; value_len],
        ..Default::default()
    })
}

/// A txn of `depth` txns nested in each other, the innermost putting `key`.
fn nested(depth: usize, key: &str) -> TxnRequest {
    let mut t = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    };
    for _ in 1..depth {
        t = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(t)),
            }],
            ..Default::default()
        };
    }
    t
}

fn error_of(r: &EtcdResult<CommandResult>) -> Option<&EtcdError> {
    match r {
        Err(e) => Some(e),
        Ok(CommandResult::Error(e)) => Some(e),
        _ => None,
    }
}

async fn present(c: &mut Client, key: &str) -> bool {
    !c.get(key, None).await.unwrap().kvs().is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_get_the_client_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(Kind::Bosun, dir.path(), &[]).await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();

    // Above --max-request-bytes (1.5 MiB), within the peer message limit.
    let r = forward(&server, Write(put("big", 3 << 20))).await;
    assert_eq!(error_of(&r), Some(&EtcdError::RequestTooLarge), "{r:?}");
    assert!(
        !present(&mut c, "big").await,
        "an oversized forwarded put was stored"
    );

    let many = TxnRequest {
        success: (0..200)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("many/{i}").into_bytes(),
                    ..Default::default()
                })),
            })
            .collect(),
        ..Default::default()
    };
    let r = forward(&server, Write(Command::Txn(many))).await;
    assert_eq!(error_of(&r), Some(&EtcdError::TooManyOps), "{r:?}");
    assert!(!present(&mut c, "many/0").await);

    // Nested txns share the operation budget (128), as etcd counts them.
    let r = forward(&server, Write(Command::Txn(nested(130, "deep")))).await;
    assert_eq!(error_of(&r), Some(&EtcdError::TooManyOps), "{r:?}");
    assert!(!present(&mut c, "deep").await);

    let r = forward(&server, Write(put("", 1))).await;
    assert_eq!(error_of(&r), Some(&EtcdError::EmptyKey), "{r:?}");
    let r = forward(
        &server,
        Write(Command::Put(PutRequest {
            key: b"iv".to_vec(),
            value: b"x".to_vec(),
            ignore_value: true,
            ..Default::default()
        })),
    )
    .await;
    assert_eq!(error_of(&r), Some(&EtcdError::ValueProvided), "{r:?}");

    let r = forward(
        &server,
        Write(Command::LeaseGrant(
            bosun_proto::etcdserverpb::LeaseGrantRequest {
                ttl: 9_000_000_001,
                id: 7,
            },
        )),
    )
    .await;
    assert_eq!(error_of(&r), Some(&EtcdError::LeaseTtlTooLarge), "{r:?}");

    // Batches are the leader's: one arriving from outside is refused whole.
    let r = forward(
        &server,
        Write(Command::Batch(vec![put("b1", 1), put("b2", 1)])),
    )
    .await;
    assert!(error_of(&r).is_some(), "{r:?}");
    assert!(!present(&mut c, "b1").await);

    // In a batch of forwarded writes each is checked on its own, and answered in order.
    let r = forward(
        &server,
        WriteBatch(vec![put("w1", 1), put("w2", 3 << 20), put("w3", 1)]),
    )
    .await;
    let Ok(rs) = r else {
        panic!("not a batch reply: {r:?}");
    };
    assert_eq!(rs.len(), 3);
    assert!(matches!(rs[0], Ok(CommandResult::Put(_))), "{:?}", rs[0]);
    assert_eq!(error_of(&rs[1]), Some(&EtcdError::RequestTooLarge));
    assert!(matches!(rs[2], Ok(CommandResult::Put(_))), "{:?}", rs[2]);
    assert!(present(&mut c, "w1").await && present(&mut c, "w3").await);
    assert!(!present(&mut c, "w2").await);

    // A well-formed forwarded write still goes through.
    let r = forward(&server, Write(put("fine", 10))).await;
    assert!(matches!(r, Ok(CommandResult::Put(_))), "{r:?}");
    assert!(present(&mut c, "fine").await);
}

/// The storage quota holds for forwarded writes too: they end in NOSPACE, as a client's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_respect_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        Kind::Bosun,
        dir.path(),
        &["--quota-backend-bytes", "262144"],
    )
    .await;
    let mut refused = None;
    for i in 0..200 {
        let r = forward(&server, Write(put(&format!("q{i}"), 64 << 10))).await;
        if let Some(e) = error_of(&r) {
            refused = Some((i, e.clone()));
            break;
        }
    }
    let (i, e) = refused.expect("12 MiB of forwarded puts into a 256 KiB quota were all stored");
    println!("forwarded put {i} refused: {e}");
    assert_eq!(e, EtcdError::NoSpace);
}

/// The postcard encoding of `Command::Txn` holding `depth` txns nested in each other, the
/// innermost with no operations (or, with `needle`, a put of that key), built byte by byte:
/// encoding a structure this deep with serde would itself recurse once per level.
fn deep_txn_command(depth: usize, needle: Option<&[u8]>) -> Vec<u8> {
    // Command::Txn is variant 2. A level: no compares, one success op (Some, RequestTxn = 3),
    // then, after the nested txn, no failure ops.
    let mut b = vec![2];
    for _ in 1..depth {
        b.extend([0, 1, 1, 3]);
    }
    match needle {
        None => b.extend([0, 0, 0]),
        Some(key) => {
            // One success op: Some, RequestPut = 1, the put, then no failure ops.
            b.extend([0, 1, 1, 1]);
            b.extend(
                postcard::to_stdvec(&PutRequest {
                    key: key.to_vec(),
                    ..Default::default()
                })
                .unwrap(),
            );
            b.push(0);
        }
    }
    b.extend(std::iter::repeat_n(0, depth - 1));
    b
}

fn empty_nested(depth: usize) -> TxnRequest {
    let mut t = TxnRequest::default();
    for _ in 1..depth {
        t = TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(t)),
            }],
            ..Default::default()
        };
    }
    t
}

#[test]
fn deep_txn_bytes_are_what_serde_writes() {
    for depth in 1..5 {
        assert_eq!(
            deep_txn_command(depth, None),
            postcard::to_stdvec(&Command::Txn(empty_nested(depth))).unwrap(),
            "depth {depth}"
        );
        assert_eq!(
            deep_txn_command(depth, Some(b"needle")),
            postcard::to_stdvec(&Command::Txn(nested(depth, "needle"))).unwrap(),
            "depth {depth} with a put"
        );
    }
}

/// A million levels of txns: a few megabytes, well within the peer message limit, and far
/// deeper than any stack.
const TOO_DEEP: usize = 1_000_000;

/// Whether the member still serves its clients, and still runs.
async fn survives(server: &mut Server) {
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    c.put("after", "deep", None).await.unwrap();
    assert!(present(&mut c, "after").await);
    assert!(
        server.try_wait().is_none(),
        "the member exited; log:\n{}",
        server.log()
    );
}

/// A message nested deeper than the decoder allows is refused before it is decoded whole: it
/// used to overflow the stack of the task decoding it, and so crash the member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_peer_messages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(Kind::Bosun, dir.path(), &[]).await;
    let mut c = peer_client(&server).await;

    // A Forward call: ForwardRequest::Write (variant 0) of the deep txn.
    let mut data = vec![0];
    data.extend(deep_txn_command(TOO_DEEP, None));
    let r = c
        .forward(bosun_proto::raftpb::ForwardRequest { data })
        .await;
    println!("deep forward: {r:?}");
    let e = r.expect_err("a deep forwarded txn was taken");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    survives(&mut server).await;

    // A Raft append carrying the deep txn in an entry: an append of one shallow txn, with the
    // txn's bytes (found by the key it puts) replaced.
    let shallow = Command::Txn(nested(1, "needle"));
    let entry = <bosun_store::raft::Entry as openraft::entry::RaftEntry>::new_normal(
        openraft::testing::log_id::<bosun_store::raft::TypeConfig>(1, 1, 1),
        shallow,
    );
    let rpc = openraft::raft::AppendEntriesRequest::<bosun_store::raft::TypeConfig> {
        vote: bosun_store::raft::Vote::new_committed(1, 1),
        prev_log_id: None,
        entries: vec![entry],
        leader_commit: None,
    };
    let bytes = postcard::to_stdvec(&rpc).unwrap();
    let needle = deep_txn_command(1, Some(b"needle"));
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("the txn in the encoded append");
    let mut data = bytes[..at].to_vec();
    data.extend(deep_txn_command(TOO_DEEP, Some(b"needle")));
    data.extend(&bytes[at + needle.len()..]);
    let r = c
        .append_entries(bosun_proto::raftpb::RaftRequest { data })
        .await;
    println!("deep append: {r:?}");
    let e = r.expect_err("a deep appended txn was taken");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    survives(&mut server).await;
}
