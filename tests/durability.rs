//! Durability: a write acknowledged by `bosun store` survives `kill -9` and a restart.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_tests::{Kind, Server};
use etcd_client::{Client, GetOptions};
use tokio::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(Kind::Bosun, dir.path(), &[]).await;
    let url = server.client_url.clone();
    let acked: Arc<Mutex<BTreeMap<String, (String, i64)>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..16 {
        let acked = acked.clone();
        let url = url.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut c = Client::connect([url.as_str()], None).await.unwrap();
            for i in 0..100_000u64 {
                let key = format!("d/{w:02}/{:06}", i % 50);
                let value = format!("{i}");
                let put = c.put(key.clone(), value.clone(), None);
                tokio::select! {
                    r = put => match r {
                        Ok(r) => {
                            acked.lock().await.insert(key, (value, r.header().unwrap().revision()));
                        }
                        Err(_) => return,
                    },
                    _ = stop.notified() => return,
                }
            }
        }));
    }
    // Let writes flow, then kill the member mid-stream.
    bosun_tests::wait_for("500 acknowledged writes", Duration::from_secs(60), || {
        let acked = acked.clone();
        async move { acked.lock().await.len() >= 500 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill9();
    stop.notify_waiters();
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 500);
    server.restart().await;
    let mut c = Client::connect([url.as_str()], None).await.unwrap();
    let all = c
        .get("d/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let found: BTreeMap<String, (String, i64)> = all
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                (kv.value_str().unwrap().to_string(), kv.mod_revision()),
            )
        })
        .collect();
    let mut lost = 0;
    for (k, (v, rev)) in &acked {
        match found.get(k) {
            // A later write to the same key may have been applied without its ack arriving.
            Some((_, frev)) if frev >= rev => {}
            other => {
                lost += 1;
                eprintln!("lost {k}={v}@{rev}: found {other:?}");
            }
        }
    }
    println!(
        "{} keys acknowledged before kill -9, {} present after restart, {lost} lost",
        acked.len(),
        found.len()
    );
    assert_eq!(lost, 0, "acknowledged writes lost");
}

/// A clean stop (SIGTERM) exits with success and loses nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(Kind::Bosun, dir.path(), &[]).await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let rev = c
        .put("k", "v", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let status = server.terminate().expect("process was running");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        server.log()
    );
    server.restart().await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!((kv.value(), kv.mod_revision()), (&b"v"[..], rev));
}

/// The state machine is written without RocksDB's WAL and the Raft log is purged behind
/// snapshots: what was applied from purged entries must survive `kill -9` all the same (from
/// the flushed state, or the snapshot and the log after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_applied_from_purged_log_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(Kind::Bosun, dir.path(), &["--snapshot-count", "50"]).await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let mut last_rev = 0;
    for i in 0..400 {
        let r = c
            .put(format!("p/{i:04}"), format!("v{i}"), None)
            .await
            .unwrap();
        last_rev = r.header().unwrap().revision();
    }
    // A snapshot was taken (its record names it current), so the log behind it is purged.
    let current = server.data_dir.join("snap").join("current.meta");
    bosun_tests::wait_for("a snapshot", Duration::from_secs(10), || {
        let current = current.clone();
        async move { current.exists() }
    })
    .await;
    server.kill9();
    server.restart().await;
    let mut c = Client::connect([server.client_url.as_str()], None)
        .await
        .unwrap();
    let all = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), 400, "keys after restart");
    for (i, kv) in all.kvs().iter().enumerate() {
        assert_eq!(kv.value_str().unwrap(), format!("v{i}"));
    }
    assert!(all.header().unwrap().revision() >= last_rev);
}
