//! Three-member clusters: unmodified etcdctl across a leader kill, membership changes at
//! runtime, catch-up by snapshot, and leases served by followers across a failover. Each case
//! runs against `bosun store` and, where noted, the same assertions against real etcd.

use std::time::{Duration, Instant};

use bosun_client::{Client, ConnectOptions, GetOptions, PutOptions};
use bosun_tests::{Cluster, Kind, Server, etcdctl, targets, wait_for};

/// etcdctl that must succeed; returns stdout.
fn ctl(ep: &str, args: &[&str]) -> String {
    let (code, out, err) = etcdctl(ep, args, None);
    assert_eq!(code, 0, "etcdctl {args:?} against {ep} failed: {err}");
    out
}

/// etcdctl that must succeed, retried while etcd's reconfiguration check finds members that
/// started too recently ("unhealthy cluster") or etcd times out a request during a leader
/// change it caused.
async fn ctl_reconfig(ep: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, out, err) = etcdctl(ep, args, None);
        if code == 0 {
            return out;
        }
        assert!(
            (err.contains("unhealthy cluster") || err.contains("request timed out"))
                && Instant::now() < deadline,
            "etcdctl {args:?} failed: {err}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A serializable read of `key` from one member only.
async fn local_get(member: &Server, key: &str) -> Option<String> {
    let c = Client::connect([member.endpoint()], ConnectOptions::default())
        .await
        .ok()?;
    let r = c
        .get(key, GetOptions::new().with_serializable())
        .await
        .ok()?;
    r.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// `etcdctl member list` as (id, name, is_learner).
fn members(ep: &str) -> Vec<(String, String, bool)> {
    ctl(ep, &["member", "list"])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            (f[0].to_string(), f[2].to_string(), f[5] == "true")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_across_a_leader_kill() {
    for kind in targets() {
        println!("--- {kind:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::start(kind, dir.path(), 3, &[]).await;
        let eps = cluster.endpoints();
        // Every member publishes its client URLs.
        wait_for(
            "client URLs of all members",
            Duration::from_secs(10),
            || {
                let out = ctl(&eps, &["member", "list"]);
                async move { out.lines().count() == 3 && out.matches("http://").count() == 6 }
            },
        )
        .await;
        let status = ctl(&eps, &["endpoint", "status"]);
        assert_eq!(status.matches(", true, false,").count(), 1, "{status}");

        ctl(&eps, &["put", "k1", "before"]);
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        cluster.members[leader].kill9();
        let killed = Instant::now();
        // The next write is served as soon as a new leader is elected.
        let (mut code, mut err) = (1, String::new());
        while code != 0 && killed.elapsed() < Duration::from_secs(15) {
            (code, _, err) = etcdctl(&eps, &["put", "k2", "after"], None);
        }
        assert_eq!(code, 0, "no write accepted after the leader died: {err}");
        println!(
            "{kind:?}: write accepted {:?} after the leader's kill -9",
            killed.elapsed()
        );
        for (i, m) in cluster.members.iter().enumerate() {
            if i != leader {
                let out = ctl(&m.endpoint(), &["get", "k", "--prefix"]);
                assert_eq!(out, "k1\nbefore\nk2\nafter\n", "member {}", m.name);
            }
        }
        // The old leader comes back as a follower and catches up.
        cluster.members[leader].spawn();
        let back = &cluster.members[leader];
        wait_for(
            "restarted leader catches up",
            Duration::from_secs(20),
            || async { local_get(back, "k2").await.as_deref() == Some("after") },
        )
        .await;
        let (code, _, health) = etcdctl(&eps, &["endpoint", "health"], None);
        assert_eq!(code, 0, "{health}");
        assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_add_promote_remove() {
    for kind in targets() {
        println!("--- {kind:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster::start(kind, dir.path(), 3, &[]).await;
        let eps = cluster.endpoints();
        for i in 0..20 {
            ctl(&eps, &["put", &format!("m/{i:02}"), "x"]);
        }

        // A learner joins: member add, then start it with --initial-cluster-state existing.
        let mut m4 = cluster.new_member("m4");
        let out = ctl_reconfig(
            &eps,
            &[
                "member",
                "add",
                "m4",
                &format!("--peer-urls={}", m4.peer_url),
                "--learner",
            ],
        )
        .await;
        let id4 = out
            .split_whitespace()
            .nth(1)
            .expect("member ID in member add output")
            .to_string();
        assert!(
            out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
            "{out}"
        );
        m4.spawn();
        wait_for("learner m4 replicates", Duration::from_secs(30), || async {
            local_get(&m4, "m/19").await.is_some()
        })
        .await;
        // Once running, it publishes its name (an unstarted member has none).
        wait_for(
            "m4 listed by name as a learner",
            Duration::from_secs(10),
            || {
                let found = members(&eps).contains(&(id4.clone(), "m4".into(), true));
                async move { found }
            },
        )
        .await;
        let list = members(&eps);
        // A voter cannot be promoted.
        let voter = list.iter().find(|m| !m.2).unwrap().0.clone();
        let (code, _, err) = etcdctl(&eps, &["member", "promote", &voter], None);
        assert_ne!(code, 0);
        assert!(
            err.contains("etcdserver: can only promote a learner member"),
            "{err}"
        );
        // The learner is in sync: promote it.
        let mut promoted = String::new();
        wait_for("promote m4", Duration::from_secs(20), || {
            let (code, out, err) = etcdctl(&eps, &["member", "promote", &id4], None);
            promoted = format!("{kind:?}: exit {code}\nstdout: {out}\nstderr: {err}");
            async move { code == 0 }
        })
        .await;
        // etcdctl pads IDs to 16 columns with spaces.
        let words: Vec<&str> = promoted.split_whitespace().collect();
        assert!(
            words
                .windows(3)
                .any(|w| w == ["Member", id4.as_str(), "promoted"]),
            "{promoted}"
        );
        assert!(members(&eps).contains(&(id4.clone(), "m4".into(), false)));

        // Remove m2: it stops by itself, and the rest serve writes. The request goes to the
        // other members: a member that applies its own removal stops at once, and etcd then
        // answers the call it was serving with "server stopped" (outcome unknown to the client).
        let id2 = members(&eps).into_iter().find(|m| m.1 == "m2").unwrap().0;
        let others = [0, 2].map(|i| cluster.members[i].endpoint()).join(",");
        let out = ctl_reconfig(&others, &["member", "remove", &id2]).await;
        let words: Vec<&str> = out.split_whitespace().collect();
        assert!(
            words
                .windows(3)
                .any(|w| w == ["Member", id2.as_str(), "removed"]),
            "{out}"
        );
        let m2 = &mut cluster.members[1];
        let deadline = Instant::now() + Duration::from_secs(20);
        let exited = loop {
            if let Some(st) = m2.try_wait() {
                break Some(st);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(exited.is_some(), "removed member m2 still running");
        let rest = format!(
            "{},{},{}",
            cluster.members[0].endpoint(),
            cluster.members[2].endpoint(),
            m4.endpoint()
        );
        ctl_reconfig(&rest, &["put", "after-remove", "ok"]).await;
        let (code, _, err) = etcdctl(&rest, &["member", "remove", &id2], None);
        assert_ne!(code, 0);
        assert!(err.contains("member not found"), "{err}");

        // Wiped and re-added on the same peer URL: a new ID, and it catches up.
        let m2 = &mut cluster.members[1];
        m2.wipe();
        let out = ctl_reconfig(
            &rest,
            &[
                "member",
                "add",
                "m2",
                &format!("--peer-urls={}", m2.peer_url),
            ],
        )
        .await;
        let new_id = out.split_whitespace().nth(1).unwrap().to_string();
        assert_ne!(new_id, id2, "a removed member's ID was reused");
        m2.initial_state = "existing".into();
        m2.initial_cluster = format!("{},m4={}", m2.initial_cluster, m4.peer_url);
        m2.spawn();
        let m2 = &cluster.members[1];
        wait_for(
            "re-added m2 catches up",
            Duration::from_secs(30),
            || async { local_get(m2, "after-remove").await.as_deref() == Some("ok") },
        )
        .await;
        assert_eq!(members(&rest).len(), 4);
        drop(m4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_behind_member_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster =
        Cluster::start(Kind::Bosun, dir.path(), 3, &["--snapshot-count", "100"]).await;
    let c = Client::connect(cluster.client_urls(), ConnectOptions::default())
        .await
        .unwrap();
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let behind = (leader + 1) % 3;
    cluster.members[behind].kill9();
    let value = "v".repeat(1000);
    for i in 0..1500 {
        c.put(format!("s/{i:05}"), value.clone(), PutOptions::new())
            .await
            .unwrap();
    }
    cluster.members[behind].spawn();
    let m = &cluster.members[behind];
    wait_for("member catches up", Duration::from_secs(30), || async {
        local_get(m, "s/01499").await.is_some()
    })
    .await;
    assert!(
        m.log()
            .contains("installing a snapshot streamed from the leader"),
        "the member caught up without a snapshot"
    );
    let n = Client::connect([m.endpoint()], ConnectOptions::default())
        .await
        .unwrap()
        .get(
            "s/",
            GetOptions::new()
                .with_prefix()
                .with_serializable()
                .with_count_only(),
        )
        .await
        .unwrap()
        .count;
    assert_eq!(n, 1500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_followers_survive_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(Kind::Bosun, dir.path(), 3, &[]).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let f1 = (leader + 1) % 3;
    let f2 = (leader + 2) % 3;
    // Granted, attached and kept alive through one follower.
    let ep = cluster.members[f1].endpoint();
    let out = ctl(&ep, &["lease", "grant", "4"]);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    ctl(&ep, &["put", "--lease", &id, "leased", "yes"]);
    let out = ctl(&ep, &["lease", "keep-alive", "--once", &id]);
    assert!(out.contains("keepalived with TTL(4)"), "{out}");
    let out = ctl(
        &cluster.members[f2].endpoint(),
        &["lease", "timetolive", &id],
    );
    assert!(out.contains("granted with TTL(4s)"), "{out}");

    cluster.members[leader].kill9();
    // Keep it alive through the other follower for longer than its TTL, across the failover.
    let ep2 = cluster.members[f2].endpoint();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        let (code, out, _) = etcdctl(&ep2, &["lease", "keep-alive", "--once", &id], None);
        if code == 0 {
            assert!(out.contains("keepalived with TTL(4)"), "{out}");
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(ctl(&ep2, &["get", "leased"]), "leased\nyes\n");
    // Left alone, it expires under the new leader.
    wait_for("lease expiry", Duration::from_secs(15), || {
        let out = ctl(&ep2, &["get", "leased"]);
        async move { out.is_empty() }
    })
    .await;
}

/// A counter or gauge from a member's `/metrics`.
fn metric(member: &Server, name: &str) -> u64 {
    let (code, text) = bosun_tests::kube::curl(&["-s", &format!("{}/metrics", member.client_url)]);
    assert_eq!(code, 0, "curl {}/metrics", member.client_url);
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in the metrics of {}:\n{text}", member.name))
        as u64
}

/// Writes `count` values of "k" through `writer`, each read back through `reader` (a
/// linearizable read) at once: every read sees the write acknowledged just before it.
async fn write_then_read(writer: &Client, reader: &Client, count: usize, what: &str) {
    for i in 0..count {
        let v = format!("{what} {i}");
        writer
            .put("k", v.as_str(), PutOptions::new())
            .await
            .unwrap();
        let got = reader.get("k", GetOptions::new()).await.unwrap();
        assert_eq!(got.kvs[0].value, v.as_bytes(), "{what}, read {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_index_confirmed_by_one_peer_only_when_a_quorum() {
    // With three voters the leader and any one follower are a quorum: a follower's request
    // confirms the leadership, and for its own reads the leader asks one follower its term;
    // it runs no heartbeat round. With five they are not, and every read index needs a
    // heartbeat round. Either way a linearizable read sees the write acknowledged just
    // before it, on a follower and on the leader.
    for (n, quorum_of_two) in [(3, true), (5, false)] {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Cluster::start(Kind::Bosun, dir.path(), n, &[]).await;
        let leader = cluster.wait_leader(Duration::from_secs(10)).await;
        let follower = &cluster.members[(leader + 1) % n];
        let leader = &cluster.members[leader];
        let on = |m: &Server| {
            let ep = m.endpoint();
            async move {
                Client::connect([ep], ConnectOptions::default())
                    .await
                    .unwrap()
            }
        };
        let (writer, reader) = (on(leader).await, on(follower).await);
        let heartbeats = "bosun_store_read_index_heartbeat_rounds_total";
        let confirmations = "bosun_store_read_index_peer_confirmations_total";
        let rounds = "bosun_store_read_index_rounds_total";
        let counts = || {
            (
                metric(leader, heartbeats),
                metric(leader, confirmations),
                metric(follower, rounds),
            )
        };
        let (hb0, pc0, r0) = counts();
        write_then_read(&writer, &reader, 20, &format!("{n} members, follower")).await;
        let (hb1, pc1, r1) = counts();
        assert!(r1 - r0 >= 20, "{n} members: {} read index rounds", r1 - r0);
        if quorum_of_two {
            assert_eq!(hb1, hb0, "{n} members: the leader ran heartbeat rounds");
        } else {
            assert!(
                hb1 - hb0 >= 20,
                "{n} members: {} heartbeat rounds",
                hb1 - hb0
            );
        }
        // The leader's own reads.
        write_then_read(&writer, &writer, 20, &format!("{n} members, leader")).await;
        let (hb2, pc2, _) = counts();
        if quorum_of_two {
            assert_eq!(hb2, hb1, "{n} members: the leader ran heartbeat rounds");
            assert!(pc2 - pc1 >= 20, "{n} members: {} confirmations", pc2 - pc1);
        } else {
            assert!(
                hb2 - hb1 >= 20,
                "{n} members: {} heartbeat rounds",
                hb2 - hb1
            );
            assert_eq!((pc1, pc2), (pc0, pc0), "{n} members: a pair is no quorum");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_reads_go_on_while_the_peer_it_asks_is_paused() {
    // The leader asks one follower to confirm its read index. With either follower paused,
    // reads go on: the leader waits a heartbeat interval for the paused one, falls back to a
    // heartbeat round (the other follower answers it) and asks the other one from then on.
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(Kind::Bosun, dir.path(), 3, &[]).await;
    let li = cluster.wait_leader(Duration::from_secs(10)).await;
    let leader = &cluster.members[li];
    let client = Client::connect([leader.endpoint()], ConnectOptions::default())
        .await
        .unwrap();
    client.put("k", "before", PutOptions::new()).await.unwrap();
    let confirmations = "bosun_store_read_index_peer_confirmations_total";
    for paused in [(li + 1) % 3, (li + 2) % 3] {
        let f = &cluster.members[paused];
        f.signal("STOP");
        write_then_read(&client, &client, 10, &format!("member {paused} paused")).await;
        let before = metric(leader, confirmations);
        for _ in 0..10 {
            client.get("k", GetOptions::new()).await.unwrap();
        }
        assert!(
            metric(leader, confirmations) - before >= 9,
            "member {paused} paused: the leader kept asking it"
        );
        f.signal("CONT");
    }
}
