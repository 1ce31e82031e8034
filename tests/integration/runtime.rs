//! The controller runtime (`bosun-runtime`) against a real three-member store and real
//! apiservers: the reflector follows creates, updates and deletes, resumes across an
//! apiserver kill and restart on the same port and re-lists after a 410 (the store compacted
//! meanwhile; a slow consumer pushed out of the watch cache), sending exactly the difference;
//! leader election hands over when the leader stops renewing and when it releases the lease;
//! recorded events show in `kubectl get events` and `kubectl describe`, repeats counted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bosun_api_client::k8s_openapi::api::coordination::v1::Lease;
use bosun_api_client::k8s_openapi::api::core::v1::{Event as KubeEvent, Pod};
use bosun_api_client::{ApiClient, ListParams, Patch};
use bosun_runtime::leader::{LeaderElectionConfig, LeaderError, run_leader};
use bosun_runtime::reflector::{Config, Event, Store, reflector};
use bosun_runtime::{Recorder, object_ref};
use bosun_tests::kube::{Apiserver, curl, kubectl_120, kubectl_132};
use bosun_tests::{Cluster, Kind, bosun_bin, free_port, wait_for};
use tokio::sync::{mpsc, watch};

/// A `bosun apiserver` this module starts itself, so that it can come back on the same port.
struct OwnApiserver {
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl OwnApiserver {
    async fn start(dir: &Path, endpoints: &str, extra: &[&str]) -> OwnApiserver {
        std::fs::create_dir_all(dir).unwrap();
        let mut a = OwnApiserver {
            args: extra.iter().map(|s| s.to_string()).collect(),
            port: free_port(),
            log: dir.join("apiserver.log"),
            child: None,
        };
        a.args
            .extend(["--etcd-servers".to_string(), endpoints.to_string()]);
        a.spawn().await;
        a
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(bosun_bin())
                .arg("apiserver")
                .args(&self.args)
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start bosun apiserver"),
        );
        let url = format!("{}/readyz", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, out) = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
            if code == 0 && out.trim() == "200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "apiserver not ready: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnApiserver {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A pod without labels or filler.
fn pod(name: &str) -> Pod {
    crate::grpc_api::pod(name, &[], 0)
}

/// name -> resourceVersion of the pods in default, as the apiserver has them.
async fn server_view(client: &ApiClient) -> BTreeMap<String, String> {
    client
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.unwrap(),
                p.metadata.resource_version.unwrap(),
            )
        })
        .collect()
}

fn store_view(store: &Store<Pod>) -> BTreeMap<String, String> {
    store
        .list()
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect()
}

/// An event as (kind, name, old rv, new rv) for comparison.
fn describe(ev: &Event<Pod>) -> (String, String, Option<String>, Option<String>) {
    match ev {
        Event::Applied { old, new } => (
            "Applied".into(),
            new.metadata.name.clone().unwrap(),
            old.as_ref()
                .and_then(|o| o.metadata.resource_version.clone()),
            new.metadata.resource_version.clone(),
        ),
        Event::Deleted(o) => (
            "Deleted".into(),
            o.metadata.name.clone().unwrap(),
            o.metadata.resource_version.clone(),
            None,
        ),
        Event::Resynced => ("Resynced".into(), String::new(), None, None),
    }
}

/// The next `n` events, failing after 60 s.
async fn next_events(
    rx: &mut mpsc::Receiver<Event<Pod>>,
    n: usize,
) -> Vec<(String, String, Option<String>, Option<String>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event after {out:?}"))
            .expect("reflector ended");
        out.push(describe(&ev));
    }
    out
}

fn rv(p: &Pod) -> Option<String> {
    p.metadata.resource_version.clone()
}

fn label(v: &str) -> Patch {
    Patch::Merge(serde_json::json!({"metadata": {"labels": {"v": v}}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_follows_changes_restarts_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Kind::Bosun, dir.path(), 3, &[]).await;
    let endpoints = cluster.client_urls().join(",");
    // The reflector's apiserver (killed and restarted) and another one for writes meanwhile.
    let mut api = OwnApiserver::start(&dir.path().join("a"), &endpoints, &[]).await;
    let other = Apiserver::start(&dir.path().join("b"), &endpoints, &[]).await;
    let writer = ApiClient::connect(&other.url).await.unwrap();
    for n in ["p1", "p2", "p3"] {
        writer.create("default", &pod(n)).await.unwrap();
    }

    let (stop_tx, stop) = watch::channel(false);
    let client = ApiClient::connect(&api.url()).await.unwrap();
    let (store, mut rx, task) = reflector::<Pod>(
        client,
        Some("default".into()),
        Config {
            page_size: 2,
            ..Config::default()
        },
        stop,
    );
    tokio::time::timeout(Duration::from_secs(30), store.wait_synced())
        .await
        .unwrap();
    let mut first = next_events(&mut rx, 4).await;
    assert_eq!(first.pop().unwrap().0, "Resynced");
    first.sort();
    let names: Vec<_> = first
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str(), e.2.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("Applied", "p1", None),
            ("Applied", "p2", None),
            ("Applied", "p3", None)
        ],
        "the first list, over two pages"
    );
    assert_eq!(store_view(&store), server_view(&writer).await);

    // Live changes: create, update, delete, each once and in order, the store updated first.
    let p4 = writer.create("default", &pod("p4")).await.unwrap();
    let old_p1 = store.get("default", "p1").unwrap();
    let old_p2 = store.get("default", "p2").unwrap();
    let p1: Pod = writer.patch("default", "p1", &label("1")).await.unwrap();
    assert!(
        writer
            .delete::<Pod>("default", "p2", None)
            .await
            .unwrap()
            .gone
    );
    assert_eq!(
        next_events(&mut rx, 3).await,
        [
            ("Applied".into(), "p4".into(), None, rv(&p4)),
            ("Applied".into(), "p1".into(), rv(&old_p1), rv(&p1)),
            // A Deleted event carries the last state the cache had.
            ("Deleted".into(), "p2".into(), rv(&old_p2), None),
        ]
    );
    assert_eq!(store_view(&store), server_view(&writer).await);
    assert_eq!(
        store
            .get("default", "p1")
            .unwrap()
            .metadata
            .labels
            .as_ref()
            .unwrap()["v"],
        "1"
    );

    // The reflector's apiserver dies; meanwhile pods change through the other one, and the
    // store compacts its history past the reflector's version.
    let old_p3 = store.get("default", "p3").unwrap();
    api.kill9();
    let p5 = writer.create("default", &pod("p5")).await.unwrap();
    writer.delete::<Pod>("default", "p3", None).await.unwrap();
    let p4b: Pod = writer.patch("default", "p4", &label("2")).await.unwrap();
    cluster.compact_to_head().await;
    // Nothing changed in the cache while the apiserver was away.
    assert_eq!(store.len(), 3);
    api.spawn().await;

    // Back on the same port: the old version is gone (410), so it re-lists and sends the
    // difference, then Resynced.
    let mut diff = next_events(&mut rx, 4).await;
    assert_eq!(diff.pop().unwrap().0, "Resynced", "{diff:?}");
    diff.sort();
    assert_eq!(
        diff,
        [
            ("Applied".into(), "p4".into(), rv(&p4), rv(&p4b)),
            ("Applied".into(), "p5".into(), None, rv(&p5)),
            ("Deleted".into(), "p3".into(), rv(&old_p3), None),
        ]
    );
    assert_eq!(store_view(&store), server_view(&writer).await);

    // And it watches again from the new list.
    let p6 = writer.create("default", &pod("p6")).await.unwrap();
    assert_eq!(
        next_events(&mut rx, 1).await,
        [("Applied".into(), "p6".into(), None, rv(&p6))]
    );
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the reflector stops on shutdown")
        .unwrap();
}

/// A consumer that stops reading fills the event channel; the reflector stops reading its
/// watch, the apiserver drops it as slow, and by the time it resumes its version has left the
/// apiserver's watch cache: 410, re-list, and the difference arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_relists_when_its_version_expires() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Kind::Bosun, dir.path(), 3, &[]).await;
    let api = Apiserver::start(
        &dir.path().join("a"),
        &cluster.client_urls().join(","),
        &["--watch-cache-size", "5", "--watch-buffer", "2"],
    )
    .await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let (_stop_tx, stop) = watch::channel(false);
    let (store, mut rx, _task) = reflector::<Pod>(
        client.clone(),
        None,
        Config {
            events_capacity: 1,
            ..Config::default()
        },
        stop,
    );
    store.wait_synced().await;
    assert_eq!(next_events(&mut rx, 1).await[0].0, "Resynced");
    let big = 100;
    for i in 0..big {
        // Big enough that the stream's transport buffers fill and the apiserver drops it.
        let p = crate::grpc_api::pod(&format!("q{i:03}"), &[], 64 * 1024);
        client.create("default", &p).await.unwrap();
    }
    let dropped = || {
        let (_, metrics) = curl(&["-s", &format!("{}/metrics", api.url)]);
        metrics
            .lines()
            .find(|l| l.starts_with("bosun_apiserver_watchers_dropped_total{resource=\"pods\"}"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for(
        "the slow watch to be dropped",
        Duration::from_secs(30),
        || async { dropped() >= 1 },
    )
    .await;
    // More changes than the watch cache holds: where the watch would resume is gone.
    for i in big..big + 10 {
        client
            .create("default", &pod(&format!("q{i:03}")))
            .await
            .unwrap();
    }
    let n = big + 10;
    // Now read everything: every pod arrives once as Applied (from the watch or from the
    // re-list's difference), and a re-list happened (its Resynced follows the difference).
    let mut applied = std::collections::BTreeSet::new();
    let mut resynced = 0;
    while applied.len() < n || resynced == 0 {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("stalled at {} pods, {resynced} re-lists", applied.len()))
            .unwrap();
        match ev {
            Event::Applied { old, new } => {
                assert!(old.is_none(), "only creates happened");
                assert!(applied.insert(new.metadata.name.clone().unwrap()), "twice");
            }
            Event::Deleted(o) => panic!("nothing was deleted: {:?}", o.metadata.name),
            Event::Resynced => resynced += 1,
        }
    }
    assert_eq!(store_view(&store), server_view(&client).await);
}

fn election(name: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        namespace: "kube-system".into(),
        name: name.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
    }
}

/// Runs an elector whose `lead` marks `leading` until told to stop.
fn elector(
    client: &ApiClient,
    config: LeaderElectionConfig,
    leading: Arc<AtomicUsize>,
    max_leading: Arc<AtomicUsize>,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), LeaderError>>,
    Arc<AtomicUsize>,
) {
    let (tx, rx) = watch::channel(false);
    let led = Arc::new(AtomicUsize::new(0));
    let handle = tokio::spawn(run_leader(client.clone(), config, rx, {
        let led = led.clone();
        move |mut stop: watch::Receiver<bool>| async move {
            led.fetch_add(1, Ordering::SeqCst);
            let now = leading.fetch_add(1, Ordering::SeqCst) + 1;
            max_leading.fetch_max(now, Ordering::SeqCst);
            let _ = stop.wait_for(|s| *s).await;
            leading.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }));
    (tx, handle, led)
}

async fn holder(client: &ApiClient, name: &str) -> Option<String> {
    client
        .get::<Lease>("kube-system", name)
        .await
        .ok()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Kind::Bosun, dir.path(), 3, &[]).await;
    let api = Apiserver::start(&dir.path().join("a"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let leading = Arc::new(AtomicUsize::new(0));
    let max_leading = Arc::new(AtomicUsize::new(0));

    let (_a_stop, a, a_led) = elector(
        &client,
        election("comp", "a"),
        leading.clone(),
        max_leading.clone(),
    );
    wait_for("a to lead", Duration::from_secs(10), || async {
        a_led.load(Ordering::SeqCst) == 1
    })
    .await;
    let (b_stop, b, b_led) = elector(
        &client,
        election("comp", "b"),
        leading.clone(),
        max_leading.clone(),
    );
    // b waits while a renews: several lease durations.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        b_led.load(Ordering::SeqCst),
        0,
        "b never led while a renewed"
    );
    assert_eq!(holder(&client, "comp").await.as_deref(), Some("a"));

    // a stops renewing without releasing (as a paused or killed process): b takes over
    // within the lease duration (plus a retry period and the request times).
    a.abort();
    let _ = a.await;
    leading.fetch_sub(1, Ordering::SeqCst);
    let stopped = Instant::now();
    wait_for("b to lead", Duration::from_secs(10), || async {
        b_led.load(Ordering::SeqCst) == 1
    })
    .await;
    let took = stopped.elapsed();
    assert!(
        took <= Duration::from_millis(3000 + 300 * 2 + 1000),
        "took over after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(2000),
        "not before the lease could expire: {took:?}"
    );
    let lease = client.get::<Lease>("kube-system", "comp").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    assert_eq!(
        max_leading.load(Ordering::SeqCst),
        1,
        "never two leaders at once"
    );

    // b shuts down cleanly: it releases the lease, and c takes it at once.
    b_stop.send(true).unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(holder(&client, "comp").await, None, "released");
    let released = Instant::now();
    let (c_stop, c, c_led) = elector(
        &client,
        election("comp", "c"),
        leading.clone(),
        max_leading.clone(),
    );
    wait_for("c to lead", Duration::from_secs(10), || async {
        c_led.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        released.elapsed() < Duration::from_secs(2),
        "no wait for expiry"
    );

    // Someone else takes the lease from under c (as after a partition): c notices at its
    // next renewal, its `lead` is told to stop, and it returns LostLeadership.
    loop {
        let mut lease = client.get::<Lease>("kube-system", "comp").await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".into());
        spec.lease_duration_seconds = Some(60);
        match client.update("kube-system", &lease).await {
            Ok(_) => break,
            // c renewed in between.
            Err(e) if e.is_conflict() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let r = tokio::time::timeout(Duration::from_secs(10), c)
        .await
        .expect("c gives up")
        .unwrap();
    assert!(matches!(r, Err(LeaderError::LostLeadership)), "{r:?}");
    assert_eq!(leading.load(Ordering::SeqCst), 0, "c's lead stopped");
    drop(c_stop);
    assert_eq!(holder(&client, "comp").await.as_deref(), Some("intruder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_in_kubectl_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Kind::Bosun, dir.path(), 3, &[]).await;
    let api = Apiserver::start(&dir.path().join("a"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let p = client.create("default", &pod("web-1")).await.unwrap();
    let (recorder, task) = Recorder::new(client.clone(), "bosun-test", "host-1");
    let r = object_ref(&p);
    for _ in 0..3 {
        recorder.normal(
            &r,
            "Scheduled",
            "Successfully assigned default/web-1 to n1".into(),
        );
    }
    recorder.warning(&r, "FailedMount", "volume x not found".into());
    drop(recorder);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the writer drains and ends")
        .unwrap();

    let events = client
        .list::<KubeEvent>(
            "default",
            &ListParams {
                field_selector: format!(
                    "involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.kind=Pod,involvedObject.uid={}",
                    p.metadata.uid.clone().unwrap()
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .items;
    let mut by_reason: BTreeMap<String, &KubeEvent> = BTreeMap::new();
    for e in &events {
        by_reason.insert(e.reason.clone().unwrap(), e);
    }
    assert_eq!(events.len(), 2, "{events:?}");
    let s = by_reason["Scheduled"];
    assert_eq!(s.count, Some(3), "repeats counted in one Event");
    assert_eq!(s.type_.as_deref(), Some("Normal"));
    assert!(s.metadata.name.as_deref().unwrap().starts_with("web-1."));
    assert_eq!(
        s.source.as_ref().unwrap().component.as_deref(),
        Some("bosun-test")
    );
    assert_eq!(s.reporting_component.as_deref(), Some("bosun-test"));
    assert!(s.first_timestamp.as_ref().unwrap().0 <= s.last_timestamp.as_ref().unwrap().0);
    assert_eq!(s.involved_object, r);
    assert_eq!(by_reason["FailedMount"].type_.as_deref(), Some("Warning"));

    for k in [kubectl_132(&api, dir.path()), kubectl_120(&api, dir.path())]
        .into_iter()
        .flatten()
    {
        // Wide output: ... SOURCE, MESSAGE, FIRST SEEN, COUNT, NAME.
        let out = k.run(&["get", "events", "-o", "wide"]);
        let text = out.ok();
        let line = text
            .lines()
            .find(|l| l.contains("Scheduled"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("pod/web-1"), "{line}");
        assert!(line.contains("bosun-test, host-1"), "{line}");
        let toks: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(toks[toks.len() - 2], "3", "the count: {line}");
        assert!(
            text.lines()
                .any(|l| l.contains("Warning") && l.contains("FailedMount")),
            "{text}"
        );
        let described = k.run(&["describe", "pod", "web-1"]);
        let d = described.ok();
        let events_part = d.split("Events:").nth(1).unwrap_or_else(|| panic!("{d}"));
        assert!(
            events_part.contains("Scheduled") && events_part.contains("bosun-test"),
            "{d}"
        );
        assert!(events_part.contains("(x3 over"), "{d}");
        assert!(events_part.contains("FailedMount"), "{d}");
    }
}
