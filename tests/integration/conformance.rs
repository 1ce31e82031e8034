//! The etcd conformance suite, through the unmodified `etcd-client` crate.
//!
//! Every case runs against a fresh single-member `bosun store` and, when the `etcd` binary is
//! installed, against a real etcd started the same way: the same assertions must hold on both,
//! so "etcd-compatible" is measured, not claimed.

use std::time::Duration;

use bosun_tests::{Kind, Server, targets};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, LeaseGrantOptions,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
    WatchFilterType, WatchOptions,
};
use tonic::Code;

/// Runs `case` against a fresh server of every available kind.
macro_rules! conformance {
    ($name:ident, $extra:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for kind in targets() {
                let dir = tempfile::tempdir().unwrap();
                let server = Server::start(kind, dir.path(), $extra).await;
                let client = Client::connect([server.client_url.as_str()], None)
                    .await
                    .unwrap();
                println!("{} against {kind:?}", stringify!($name));
                cases::$name(client, kind).await;
                drop(server);
            }
        }
    };
    ($name:ident) => {
        conformance!($name, &[]);
    };
}

/// The gRPC status of a failed call.
fn status(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

/// `depth` txns nested in each other, one operation each, the innermost putting `key`.
fn nested_txn(depth: usize, key: &str) -> Txn {
    let mut t = Txn::new().and_then([TxnOp::put(key, "v", None)]);
    for _ in 1..depth {
        t = Txn::new().and_then([TxnOp::txn(t)]);
    }
    t
}

fn assert_status(e: etcd_client::Error, code: Code, msg: &str) {
    let s = status(e);
    assert_eq!((s.code(), s.message()), (code, msg), "status");
}

conformance!(kv_put_get_versions);
conformance!(kv_range_options);
conformance!(kv_put_options);
conformance!(kv_delete_range);
conformance!(txn_compares_and_branches);
conformance!(txn_errors);
conformance!(compaction);
conformance!(watch_streams);
conformance!(watch_history_and_compaction);
conformance!(watch_created_during_writes);
conformance!(leases);
conformance!(
    request_limits,
    &["--max-request-bytes", "4096", "--max-txn-ops", "4"]
);
conformance!(maintenance);

mod cases {
    use super::*;

    pub async fn kv_put_get_versions(mut c: Client, _k: Kind) {
        let r0 = c
            .put("a", "1", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let r1 = c
            .put("a", "2", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        assert_eq!(r1, r0 + 1, "each put makes one revision");
        let g = c.get("a", None).await.unwrap();
        let kv = &g.kvs()[0];
        assert_eq!(
            (
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version()
            ),
            (&b"2"[..], r0, r1, 2)
        );
        assert_eq!(g.header().unwrap().revision(), r1);
        let d = c.delete("a", None).await.unwrap();
        assert_eq!(d.deleted(), 1);
        let r2 = d.header().unwrap().revision();
        assert_eq!(r2, r1 + 1);
        assert!(c.get("a", None).await.unwrap().kvs().is_empty());
        let r3 = c
            .put("a", "3", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let kv = c.get("a", None).await.unwrap().kvs()[0].clone();
        assert_eq!(
            (kv.create_revision(), kv.version()),
            (r3, 1),
            "a re-created key starts over"
        );
        // Reads at old revisions see old values.
        let old = c
            .get("a", Some(GetOptions::new().with_revision(r0)))
            .await
            .unwrap();
        assert_eq!(old.kvs()[0].value(), b"1");
        assert!(
            c.get("a", Some(GetOptions::new().with_revision(r2)))
                .await
                .unwrap()
                .kvs()
                .is_empty()
        );
        let future = c
            .get("a", Some(GetOptions::new().with_revision(r3 + 100)))
            .await
            .unwrap_err();
        assert_status(
            future,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
    }

    pub async fn kv_range_options(mut c: Client, _k: Kind) {
        for (k, v) in [("p/a", "3"), ("p/b", "1"), ("p/c", "2"), ("q", "0")] {
            c.put(k, v, None).await.unwrap();
        }
        c.put("p/b", "11", None).await.unwrap();
        let keys = |r: &etcd_client::GetResponse| -> Vec<String> {
            r.kvs()
                .iter()
                .map(|kv| kv.key_str().unwrap().to_string())
                .collect()
        };
        let all = c
            .get("p/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!(keys(&all), ["p/a", "p/b", "p/c"]);
        assert_eq!(all.count(), 3);
        let lim = c
            .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
            .await
            .unwrap();
        assert_eq!(
            (keys(&lim), lim.more(), lim.count()),
            (vec!["p/a".to_string(), "p/b".into()], true, 3)
        );
        let exact = c
            .get("p/", Some(GetOptions::new().with_prefix().with_limit(3)))
            .await
            .unwrap();
        assert!(!exact.more(), "no more when the limit equals the count");
        let from = c
            .get("p/b", Some(GetOptions::new().with_from_key()))
            .await
            .unwrap();
        assert_eq!(keys(&from), ["p/b", "p/c", "q"]);
        let range = c
            .get("p/a", Some(GetOptions::new().with_range("p/c")))
            .await
            .unwrap();
        assert_eq!(keys(&range), ["p/a", "p/b"]);
        let desc = c
            .get(
                "p/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Key, SortOrder::Descend),
                ),
            )
            .await
            .unwrap();
        assert_eq!(keys(&desc), ["p/c", "p/b", "p/a"]);
        let by_value = c
            .get(
                "p/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Value, SortOrder::Ascend),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            keys(&by_value),
            ["p/b", "p/c", "p/a"],
            "values 11 < 2 < 3 bytewise"
        );
        let by_version = c
            .get(
                "p/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Version, SortOrder::Descend)
                        .with_limit(1),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            (keys(&by_version), by_version.more()),
            (vec!["p/b".to_string()], true)
        );
        let by_mod = c
            .get(
                "p/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_sort(SortTarget::Mod, SortOrder::None),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            keys(&by_mod),
            ["p/a", "p/c", "p/b"],
            "a non-key target with no order sorts ascending"
        );
        let ko = c
            .get("p/", Some(GetOptions::new().with_prefix().with_keys_only()))
            .await
            .unwrap();
        assert!(ko.kvs().iter().all(|kv| kv.value().is_empty()));
        assert_eq!(keys(&ko).len(), 3);
        let co = c
            .get(
                "p/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap();
        assert_eq!((co.kvs().len(), co.count()), (0, 3));
        let b_mod = c.get("p/b", None).await.unwrap().kvs()[0].mod_revision();
        let minmod = c
            .get(
                "p/",
                Some(GetOptions::new().with_prefix().with_min_mod_revision(b_mod)),
            )
            .await
            .unwrap();
        assert_eq!(keys(&minmod), ["p/b"]);
        assert_eq!(minmod.count(), 3, "count ignores the revision filters");
        let a_create = c.get("p/a", None).await.unwrap().kvs()[0].create_revision();
        let maxcreate = c
            .get(
                "p/",
                Some(
                    GetOptions::new()
                        .with_prefix()
                        .with_max_create_revision(a_create),
                ),
            )
            .await
            .unwrap();
        assert_eq!(keys(&maxcreate), ["p/a"]);
        let ser = c
            .get("p/a", Some(GetOptions::new().with_serializable()))
            .await
            .unwrap();
        assert_eq!(ser.kvs()[0].value(), b"3");
        let everything = c
            .get("\0", Some(GetOptions::new().with_from_key()))
            .await
            .unwrap();
        assert_eq!(everything.count(), 4);
        let none = c.get("zzz", None).await.unwrap();
        assert_eq!((none.kvs().len(), none.count(), none.more()), (0, 0, false));
    }

    pub async fn kv_put_options(mut c: Client, _k: Kind) {
        c.put("k", "v1", None).await.unwrap();
        let p = c
            .put("k", "v2", Some(PutOptions::new().with_prev_key()))
            .await
            .unwrap();
        assert_eq!(p.prev_key().unwrap().value(), b"v1");
        let p = c
            .put("new", "x", Some(PutOptions::new().with_prev_key()))
            .await
            .unwrap();
        assert!(p.prev_key().is_none());
        let l = c.lease_grant(60, None).await.unwrap().id();
        c.put("k", "v3", Some(PutOptions::new().with_lease(l)))
            .await
            .unwrap();
        c.put("k", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap();
        let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
        assert_eq!(
            (kv.value(), kv.lease()),
            (&b"v3"[..], 0),
            "ignore_value keeps the value; no lease given detaches"
        );
        c.put("k", "v4", Some(PutOptions::new().with_lease(l)))
            .await
            .unwrap();
        c.put("k", "v5", Some(PutOptions::new().with_ignore_lease()))
            .await
            .unwrap();
        let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
        assert_eq!(
            (kv.value(), kv.lease()),
            (&b"v5"[..], l),
            "ignore_lease keeps the lease"
        );
        let e = c
            .put("absent", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err();
        assert_status(e, Code::InvalidArgument, "etcdserver: key not found");
        let e = c
            .put("k", "x", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err();
        assert_status(e, Code::InvalidArgument, "etcdserver: value is provided");
        let e = c
            .put(
                "k",
                "x",
                Some(PutOptions::new().with_ignore_lease().with_lease(l)),
            )
            .await
            .unwrap_err();
        assert_status(e, Code::InvalidArgument, "etcdserver: lease is provided");
        let e = c
            .put("k", "x", Some(PutOptions::new().with_lease(0x1234)))
            .await
            .unwrap_err();
        assert_status(e, Code::NotFound, "etcdserver: requested lease not found");
        let e = c.put("", "x", None).await.unwrap_err();
        assert_status(e, Code::InvalidArgument, "etcdserver: key is not provided");
    }

    pub async fn kv_delete_range(mut c: Client, _k: Kind) {
        for k in ["d/1", "d/2", "d/3", "e"] {
            c.put(k, k, None).await.unwrap();
        }
        let before = c.get("e", None).await.unwrap().header().unwrap().revision();
        let none = c.delete("nothing", None).await.unwrap();
        assert_eq!(
            (none.deleted(), none.header().unwrap().revision()),
            (0, before),
            "deleting nothing makes no revision"
        );
        let d = c
            .delete(
                "d/1",
                Some(DeleteOptions::new().with_range("d/3").with_prev_key()),
            )
            .await
            .unwrap();
        assert_eq!(d.deleted(), 2);
        let prev: Vec<_> = d.prev_kvs().iter().map(|kv| kv.key().to_vec()).collect();
        assert_eq!(prev, [b"d/1".to_vec(), b"d/2".to_vec()]);
        assert_eq!(
            d.header().unwrap().revision(),
            before + 1,
            "one delete request is one revision"
        );
        let d = c
            .delete("d/", Some(DeleteOptions::new().with_prefix()))
            .await
            .unwrap();
        assert_eq!((d.deleted(), d.prev_kvs().len()), (1, 0));
        let d = c
            .delete("\0", Some(DeleteOptions::new().with_from_key()))
            .await
            .unwrap();
        assert_eq!(d.deleted(), 1);
        assert_eq!(
            c.get("\0", Some(GetOptions::new().with_from_key()))
                .await
                .unwrap()
                .count(),
            0
        );
    }

    pub async fn txn_compares_and_branches(mut c: Client, _k: Kind) {
        c.put("t/a", "1", None).await.unwrap();
        c.put("t/b", "2", None).await.unwrap();
        let a = c.get("t/a", None).await.unwrap().kvs()[0].clone();
        // Compare-and-set on the mod revision: succeeds once.
        let cas = |rev: i64, v: &str| {
            Txn::new()
                .when([Compare::mod_revision("t/a", CompareOp::Equal, rev)])
                .and_then([TxnOp::put("t/a", v, None)])
                .or_else([TxnOp::get("t/a", None)])
        };
        let t = c.txn(cas(a.mod_revision(), "x")).await.unwrap();
        assert!(t.succeeded());
        let rev_after = t.header().unwrap().revision();
        let t = c.txn(cas(a.mod_revision(), "y")).await.unwrap();
        assert!(!t.succeeded());
        match &t.op_responses()[0] {
            TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"x"),
            other => panic!("expected a get response, got {other:?}"),
        }
        assert_eq!(
            t.header().unwrap().revision(),
            rev_after,
            "a failed txn with only reads makes no revision"
        );
        // Every target and result.
        let holds = |cmp: Compare| Txn::new().when([cmp]);
        for (cmp, want) in [
            (Compare::value("t/b", CompareOp::Equal, "2"), true),
            (Compare::value("t/b", CompareOp::Greater, "1"), true),
            (Compare::value("t/b", CompareOp::Less, "1"), false),
            (Compare::value("t/b", CompareOp::NotEqual, "2"), false),
            (Compare::version("t/b", CompareOp::Equal, 1), true),
            (Compare::version("t/a", CompareOp::Greater, 1), true),
            (
                Compare::create_revision("t/b", CompareOp::Greater, a.create_revision()),
                true,
            ),
            (
                Compare::mod_revision("t/a", CompareOp::Less, rev_after + 1),
                true,
            ),
            // A missing key compares as zero, except its value, which always fails.
            (Compare::version("t/none", CompareOp::Equal, 0), true),
            (
                Compare::create_revision("t/none", CompareOp::Equal, 0),
                true,
            ),
            (Compare::value("t/none", CompareOp::Equal, ""), false),
            (Compare::value("t/none", CompareOp::NotEqual, "x"), false),
            // A compare over a range holds only if it holds for every key.
            (
                Compare::version("t/", CompareOp::Greater, 0).with_prefix(),
                true,
            ),
            (
                Compare::version("t/", CompareOp::Greater, 1).with_prefix(),
                false,
            ),
        ] {
            let desc = format!("{cmp:?}");
            assert_eq!(c.txn(holds(cmp)).await.unwrap().succeeded(), want, "{desc}");
        }
        // Reads inside a txn see its own writes; nested txns take their own branch.
        let t = c
            .txn(
                Txn::new().and_then([
                    TxnOp::put("t/c", "3", None),
                    TxnOp::get("t/c", None),
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::value("t/b", CompareOp::Equal, "nope")])
                            .and_then([TxnOp::put("t/d", "then", None)])
                            .or_else([TxnOp::put("t/d", "else", None), TxnOp::delete("t/b", None)]),
                    ),
                ]),
            )
            .await
            .unwrap();
        assert!(t.succeeded(), "no compares means success");
        match &t.op_responses()[1] {
            TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"3"),
            other => panic!("expected get, got {other:?}"),
        }
        match &t.op_responses()[2] {
            TxnOpResponse::Txn(n) => assert!(!n.succeeded()),
            other => panic!("expected txn, got {other:?}"),
        }
        let rev = t.header().unwrap().revision();
        assert_eq!(rev, rev_after + 1, "a txn is one revision");
        let d = c.get("t/d", None).await.unwrap().kvs()[0].clone();
        assert_eq!((d.value(), d.mod_revision()), (&b"else"[..], rev));
        assert!(c.get("t/b", None).await.unwrap().kvs().is_empty());
    }

    pub async fn txn_errors(mut c: Client, _k: Kind) {
        let e = c
            .txn(Txn::new().and_then([TxnOp::put("x", "1", None), TxnOp::put("x", "2", None)]))
            .await
            .unwrap_err();
        assert_status(
            e,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        );
        let e = c
            .txn(Txn::new().and_then([
                TxnOp::delete("a", Some(DeleteOptions::new().with_range("z"))),
                TxnOp::put("m", "2", None),
            ]))
            .await
            .unwrap_err();
        assert_status(
            e,
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request",
        );
        // The same key in then and else of a nested txn is fine.
        c.txn(
            Txn::new().and_then([TxnOp::txn(
                Txn::new()
                    .and_then([TxnOp::put("y", "1", None)])
                    .or_else([TxnOp::put("y", "2", None)]),
            )]),
        )
        .await
        .unwrap();
        let ops: Vec<TxnOp> = (0..129)
            .map(|i| TxnOp::put(format!("k{i}"), "v", None))
            .collect();
        let e = c.txn(Txn::new().and_then(ops)).await.unwrap_err();
        assert_status(
            e,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
        // A txn whose put names a missing lease changes nothing.
        let before = c.get("y", None).await.unwrap().header().unwrap().revision();
        let e = c
            .txn(Txn::new().and_then([
                TxnOp::put("ok", "1", None),
                TxnOp::put("bad", "1", Some(PutOptions::new().with_lease(0x77))),
            ]))
            .await
            .unwrap_err();
        assert_status(e, Code::NotFound, "etcdserver: requested lease not found");
        let after = c.get("ok", None).await.unwrap();
        assert!(after.kvs().is_empty(), "a failed txn applies nothing");
        assert_eq!(after.header().unwrap().revision(), before);
    }

    pub async fn compaction(mut c: Client, _k: Kind) {
        let r1 = c
            .put("c", "1", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let r2 = c
            .put("c", "2", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let r3 = c
            .put("c", "3", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        c.compact(r2, None).await.unwrap();
        let e = c
            .get("c", Some(GetOptions::new().with_revision(r1)))
            .await
            .unwrap_err();
        assert_status(
            e,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        let at = c
            .get("c", Some(GetOptions::new().with_revision(r2)))
            .await
            .unwrap();
        assert_eq!(
            at.kvs()[0].value(),
            b"2",
            "the compacted revision itself stays readable"
        );
        assert_eq!(
            at.header().unwrap().revision(),
            r3,
            "the header carries the current revision"
        );
        let e = c.compact(r2, None).await.unwrap_err();
        assert_status(
            e,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        let e = c.compact(r3 + 10, None).await.unwrap_err();
        assert_status(
            e,
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
        );
        c.compact(
            r3,
            Some(etcd_client::CompactionOptions::new().with_physical()),
        )
        .await
        .unwrap();
        assert_eq!(c.get("c", None).await.unwrap().kvs()[0].value(), b"3");
    }

    async fn next(ws: &mut etcd_client::WatchStream) -> etcd_client::WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), ws.message())
            .await
            .expect("watch response within 10s")
            .unwrap()
            .expect("watch stream open")
    }

    /// Waits for the watch's created response; returns its watch id.
    async fn created(ws: &mut etcd_client::WatchStream) -> i64 {
        let r = next(ws).await;
        assert!(
            r.created() && !r.canceled(),
            "expected a created response, got {r:?}"
        );
        r.watch_id()
    }

    /// Collects `n` events from a watch stream, skipping responses without events.
    async fn events(
        ws: &mut etcd_client::WatchStream,
        n: usize,
    ) -> Vec<(EventType, String, String, Option<String>, i64)> {
        let mut out = Vec::new();
        while out.len() < n {
            let r = next(ws).await;
            assert!(!r.canceled(), "unexpected cancel: {}", r.cancel_reason());
            for e in r.events() {
                let kv = e.kv().unwrap();
                out.push((
                    e.event_type(),
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                    e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
                    kv.mod_revision(),
                ));
            }
        }
        assert_eq!(out.len(), n, "exactly the expected events");
        out
    }

    pub async fn watch_streams(mut c: Client, _k: Kind) {
        let mut ws = c
            .watch(
                "w/",
                Some(WatchOptions::new().with_prefix().with_prev_key()),
            )
            .await
            .unwrap();
        let mut one = c
            .watch(
                "w/one",
                Some(WatchOptions::new().with_filters([WatchFilterType::NoDelete])),
            )
            .await
            .unwrap();
        let mut range = c
            .watch(
                "w/a",
                Some(
                    WatchOptions::new()
                        .with_range("w/c")
                        .with_filters([WatchFilterType::NoPut]),
                ),
            )
            .await
            .unwrap();
        created(&mut ws).await;
        let one_id = created(&mut one).await;
        created(&mut range).await;
        c.put("w/one", "1", None).await.unwrap();
        c.put("w/b", "2", None).await.unwrap();
        c.put("w/one", "3", None).await.unwrap();
        c.delete("w/", Some(DeleteOptions::new().with_prefix()))
            .await
            .unwrap();
        c.put("other", "x", None).await.unwrap();
        let ev = events(&mut ws, 5).await;
        use EventType::{Delete, Put};
        assert_eq!(
            ev.iter()
                .map(|e| (e.0, e.1.as_str(), e.2.as_str(), e.3.as_deref()))
                .collect::<Vec<_>>(),
            [
                (Put, "w/one", "1", None),
                (Put, "w/b", "2", None),
                (Put, "w/one", "3", Some("1")),
                (Delete, "w/b", "", Some("2")),
                (Delete, "w/one", "", Some("3")),
            ]
        );
        assert_eq!(ev[3].4, ev[4].4, "one delete request: one revision");
        let ev = events(&mut one, 2).await;
        assert_eq!(
            ev.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
            ["1", "3"],
            "NODELETE drops deletes"
        );
        let ev = events(&mut range, 1).await;
        assert_eq!(
            (ev[0].0, ev[0].1.as_str()),
            (Delete, "w/b"),
            "NOPUT keeps only deletes in the range"
        );
        // Progress requests answer for the whole stream with watch id -1.
        ws.request_progress().await.unwrap();
        let p = next(&mut ws).await;
        assert!(p.events().is_empty());
        assert_eq!(p.watch_id(), -1);
        let cur = c
            .get("other", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        assert_eq!(p.header().unwrap().revision(), cur);
        // Cancel ends the watch.
        one.cancel(one_id).await.unwrap();
        let r = next(&mut one).await;
        assert!(r.canceled());
    }

    /// Watches created while a writer runs: each gets exactly the writes after the revision
    /// its created response reports, none missing and none twice.
    pub async fn watch_created_during_writes(mut c: Client, _k: Kind) {
        let mut w = c.clone();
        let writer = tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..200 {
                let r = w.put("s", i.to_string(), None).await.unwrap();
                revs.push(r.header().unwrap().revision());
            }
            revs
        });
        let mut watches = Vec::new();
        while !writer.is_finished() && watches.len() < 30 {
            let mut ws = c.watch("s", None).await.unwrap();
            let r = next(&mut ws).await;
            assert!(r.created(), "expected a created response, got {r:?}");
            watches.push((ws, r.header().unwrap().revision()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let revs = writer.await.unwrap();
        assert!(watches.len() > 1, "watches created while the writer ran");
        for (mut ws, at) in watches {
            let want: Vec<i64> = revs.iter().copied().filter(|r| *r > at).collect();
            let got: Vec<i64> = events(&mut ws, want.len())
                .await
                .into_iter()
                .map(|e| e.4)
                .collect();
            assert_eq!(got, want, "watch created at revision {at}");
        }
    }

    pub async fn watch_history_and_compaction(mut c: Client, _k: Kind) {
        let r1 = c
            .put("h", "1", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        c.put("h", "2", None).await.unwrap();
        c.delete("h", None).await.unwrap();
        let mut ws = c
            .watch(
                "h",
                Some(WatchOptions::new().with_start_revision(r1).with_prev_key()),
            )
            .await
            .unwrap();
        let ev = events(&mut ws, 3).await;
        assert_eq!(
            ev.iter()
                .map(|e| (e.0, e.2.as_str(), e.3.as_deref(), e.4 - r1))
                .collect::<Vec<_>>(),
            [
                (EventType::Put, "1", None, 0),
                (EventType::Put, "2", Some("1"), 1),
                (EventType::Delete, "", Some("2"), 2)
            ]
        );
        c.put("h", "live", None).await.unwrap();
        assert_eq!(
            events(&mut ws, 1).await[0].2,
            "live",
            "history then live, no gap"
        );
        let cur = c
            .put("h", "x", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        c.compact(cur, None).await.unwrap();
        let mut old = c
            .watch("h", Some(WatchOptions::new().with_start_revision(r1)))
            .await
            .unwrap();
        let r = loop {
            let r = next(&mut old).await;
            if r.canceled() || !r.events().is_empty() {
                break r;
            }
        };
        assert!(
            r.canceled(),
            "a watch from a compacted revision is canceled"
        );
        assert_eq!(r.compact_revision(), cur);
        let mut at = c
            .watch("h", Some(WatchOptions::new().with_start_revision(cur)))
            .await
            .unwrap();
        assert_eq!(
            events(&mut at, 1).await[0].2,
            "x",
            "a watch from the compacted revision works"
        );
    }

    pub async fn leases(mut c: Client, k: Kind) {
        let g = c.lease_grant(60, None).await.unwrap();
        assert!(g.id() > 0);
        assert_eq!(g.ttl(), 60);
        let own = c
            .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1000)))
            .await
            .unwrap();
        assert_eq!(own.id(), 0x1000);
        let e = c
            .lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1000)))
            .await
            .unwrap_err();
        assert_status(
            e,
            Code::FailedPrecondition,
            "etcdserver: lease already exists",
        );
        let e = c.lease_grant(9_000_000_001, None).await.unwrap_err();
        assert_status(e, Code::OutOfRange, "etcdserver: too large lease TTL");
        let min = c.lease_grant(1, None).await.unwrap();
        assert_eq!(min.ttl(), 2, "TTLs are raised to the minimum");
        c.put("l/1", "a", Some(PutOptions::new().with_lease(g.id())))
            .await
            .unwrap();
        c.put("l/2", "b", Some(PutOptions::new().with_lease(g.id())))
            .await
            .unwrap();
        let ttl = c
            .lease_time_to_live(g.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
            .unwrap();
        assert_eq!(ttl.granted_ttl(), 60);
        assert!((55..=60).contains(&ttl.ttl()), "remaining {}", ttl.ttl());
        let mut keys = ttl.keys().to_vec();
        keys.sort();
        assert_eq!(keys, [b"l/1".to_vec(), b"l/2".to_vec()]);
        let missing = c.lease_time_to_live(0x999, None).await.unwrap();
        assert_eq!((missing.ttl(), missing.granted_ttl()), (-1, 0));
        let mut listed: Vec<i64> = c
            .leases()
            .await
            .unwrap()
            .leases()
            .iter()
            .map(|l| l.id())
            .collect();
        listed.sort();
        let mut want = vec![g.id(), own.id(), min.id()];
        want.sort();
        assert_eq!(listed, want);
        let (mut keeper, mut stream) = c.lease_keep_alive(g.id()).await.unwrap();
        keeper.keep_alive().await.unwrap();
        let ka = stream.message().await.unwrap().unwrap();
        assert_eq!((ka.id(), ka.ttl()), (g.id(), 60));
        // The server answers TTL 0 for an unknown lease, which etcd-client reports as an error.
        let e = c.lease_keep_alive(0x999).await.unwrap_err();
        assert!(
            matches!(e, etcd_client::Error::LeaseKeepAliveError(_)),
            "{e:?}"
        );
        // Revoking deletes the attached keys, each with a delete event.
        let mut ws = c
            .watch("l/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        created(&mut ws).await;
        c.lease_revoke(g.id()).await.unwrap();
        let ev = events(&mut ws, 2).await;
        assert!(ev.iter().all(|e| e.0 == EventType::Delete));
        assert_eq!(ev[0].4, ev[1].4, "one revocation: one revision");
        assert!(
            c.get("l/", Some(GetOptions::new().with_prefix()))
                .await
                .unwrap()
                .kvs()
                .is_empty()
        );
        let e = c.lease_revoke(g.id()).await.unwrap_err();
        assert_status(e, Code::NotFound, "etcdserver: requested lease not found");
        // Expiry: a 2-second lease without keep-alives goes, with its key.
        c.put("l/short", "s", Some(PutOptions::new().with_lease(min.id())))
            .await
            .unwrap();
        let ev = events(&mut ws, 2).await;
        assert_eq!(
            (ev[1].0, ev[1].1.as_str()),
            (EventType::Delete, "l/short"),
            "{k:?}: expiry deletes the key"
        );
        let gone = c.lease_time_to_live(min.id(), None).await.unwrap();
        assert_eq!(gone.ttl(), -1);
    }

    pub async fn request_limits(mut c: Client, _k: Kind) {
        let big = vec![b'x'; 5000];
        let e = c.put("big", big, None).await.unwrap_err();
        assert_status(e, Code::InvalidArgument, "etcdserver: request is too large");
        let ops: Vec<TxnOp> = (0..5)
            .map(|i| TxnOp::put(format!("k{i}"), "v", None))
            .collect();
        let e = c.txn(Txn::new().and_then(ops)).await.unwrap_err();
        assert_status(
            e,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
        let ops: Vec<TxnOp> = (0..4)
            .map(|i| TxnOp::put(format!("k{i}"), "v", None))
            .collect();
        c.txn(Txn::new().and_then(ops)).await.unwrap();
        // A nested txn's operations come out of its parent's: with 4, txns nest 4 deep at most.
        c.txn(nested_txn(4, "n4")).await.unwrap();
        let e = c.txn(nested_txn(5, "n5")).await.unwrap_err();
        assert_status(
            e,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
    }

    pub async fn maintenance(mut c: Client, _k: Kind) {
        c.put("m", "1", None).await.unwrap();
        let st = c.status().await.unwrap();
        assert!(st.version().starts_with("3."), "version {}", st.version());
        assert_eq!(
            st.leader(),
            st.header().unwrap().member_id(),
            "a single member leads"
        );
        assert!(st.db_size() > 0);
        assert!(st.raft_index() >= st.raft_applied_index() && st.raft_applied_index() > 0);
        let h1 = c.hash_kv(0).await.unwrap().hash();
        let h2 = c.hash_kv(0).await.unwrap().hash();
        assert_eq!(h1, h2, "HashKV is stable");
        c.put("m", "2", None).await.unwrap();
        assert_ne!(
            c.hash_kv(0).await.unwrap().hash(),
            h1,
            "HashKV changes with the data"
        );
        c.defragment().await.unwrap();
        let members = c.member_list().await.unwrap();
        assert_eq!(members.members().len(), 1);
        assert_eq!(members.members()[0].name(), "m1");
        let alarms = c
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await
            .unwrap();
        assert!(alarms.alarms().is_empty());
        let mut snap = c.snapshot().await.unwrap();
        let mut bytes = Vec::new();
        while let Some(r) = snap.message().await.unwrap() {
            bytes.extend_from_slice(r.blob());
        }
        assert_eq!(
            bytes.len() % 512,
            32,
            "data in whole sectors, then a sha256"
        );
    }
}

/// The storage quota raises NOSPACE with etcd's error, and deletes still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        Kind::Bosun,
        dir.path(),
        &["--quota-backend-bytes", "262144"],
    )
    .await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let value = vec![b'v'; 16 * 1024];
    let mut err = None;
    for i in 0..200 {
        match c.put(format!("q{i}"), value.clone(), None).await {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let e = err.expect("quota exceeded within 3 MiB of writes");
    assert_status(
        e,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
    let alarms = c
        .alarm(
            etcd_client::AlarmAction::Get,
            etcd_client::AlarmType::None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!(alarms.alarms()[0].alarm(), etcd_client::AlarmType::Nospace);
    c.delete("q", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    let e = c.put("after", "x", None).await.unwrap_err();
    assert_status(
        e,
        Code::ResourceExhausted,
        "etcdserver: mvcc: database space exceeded",
    );
}

/// A txn nested deeper than any operation budget (200 levels: more than the protobuf decoder
/// takes) gets etcd's INVALID_ARGUMENT "too many operations", not an internal decode error;
/// one nested 40 deep is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_txn_gets_etcds_status() {
    for kind in targets() {
        println!("against {kind:?}");
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(kind, dir.path(), &[]).await;
        let mut c = Client::connect([server.client_url.as_str()], None)
            .await
            .unwrap();
        let e = c.txn(nested_txn(200, "deep")).await.unwrap_err();
        assert_status(
            e,
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
        );
        c.txn(nested_txn(40, "forty")).await.unwrap();
        assert_eq!(c.get("forty", None).await.unwrap().kvs().len(), 1);
    }
}

/// A gRPC codec that sends an empty message and ignores what comes back: enough to call a
/// method by path.
#[derive(Debug, Clone, Copy, Default)]
struct EmptyCodec;

impl tonic::codec::Codec for EmptyCodec {
    type Encode = ();
    type Decode = ();
    type Encoder = EmptyCodec;
    type Decoder = EmptyCodec;
    fn encoder(&mut self) -> EmptyCodec {
        EmptyCodec
    }
    fn decoder(&mut self) -> EmptyCodec {
        EmptyCodec
    }
}

impl tonic::codec::Encoder for EmptyCodec {
    type Item = ();
    type Error = tonic::Status;
    fn encode(&mut self, _: (), _: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        Ok(())
    }
}

impl tonic::codec::Decoder for EmptyCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        use prost::bytes::Buf;
        buf.advance(buf.remaining());
        Ok(Some(()))
    }
}

/// Calls of methods and services the server does not have get grpc-go's UNIMPLEMENTED with its
/// message, as from etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_methods_are_unimplemented() {
    for kind in targets() {
        println!("against {kind:?}");
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(kind, dir.path(), &[]).await;
        let channel = tonic::transport::Endpoint::from_shared(server.client_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        for (path, msg) in [
            (
                "/etcdserverpb.KV/Nope",
                "unknown method Nope for service etcdserverpb.KV",
            ),
            (
                "/etcdserverpb.Lease/Nope",
                "unknown method Nope for service etcdserverpb.Lease",
            ),
            (
                "/etcdserverpb.Nope/Range",
                "unknown service etcdserverpb.Nope",
            ),
            ("/no.Such/Thing", "unknown service no.Such"),
        ] {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let e = grpc
                .unary(
                    tonic::Request::new(()),
                    tonic::codegen::http::uri::PathAndQuery::from_static(path),
                    EmptyCodec,
                )
                .await
                .unwrap_err();
            assert_eq!(
                (e.code(), e.message()),
                (Code::Unimplemented, msg),
                "{path}"
            );
        }
    }
}

/// `/health` is false while the NOSPACE alarm is raised, and true when the query excludes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_false_under_an_alarm() {
    for kind in targets() {
        println!("against {kind:?}");
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(kind, dir.path(), &["--quota-backend-bytes", "262144"]).await;
        let health = format!("{}/health", server.client_url);
        let (code, body) = bosun_tests::http_get(&health).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, &json["health"]),
            (200, &serde_json::json!("true")),
            "{body}"
        );
        let mut c = Client::connect([server.client_url.as_str()], None)
            .await
            .unwrap();
        let value = vec![b'v'; 16 * 1024];
        let mut raised = false;
        for i in 0..400 {
            if c.put(format!("q{i}"), value.clone(), None).await.is_err() {
                raised = true;
                break;
            }
        }
        assert!(raised, "NOSPACE within 6 MiB of writes");
        let (code, body) = bosun_tests::http_get(&health).await;
        println!("{kind:?} /health under NOSPACE: {code} {body:?}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, &json["health"]),
            (503, &serde_json::json!("false")),
            "{body}"
        );
        // etcd 3.5 says why, as Bosun does (3.4 leaves the reason out).
        if kind == Kind::Bosun || json.get("reason").is_some() {
            assert_eq!(json["reason"], "ALARM NOSPACE", "{body}");
        }
        let (code, body) = bosun_tests::http_get(&format!("{health}?exclude=NOSPACE")).await;
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (code, &json["health"]),
            (200, &serde_json::json!("true")),
            "{body}"
        );
    }
}
