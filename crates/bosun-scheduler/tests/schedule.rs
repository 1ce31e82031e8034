//! Whole scheduling cycles: node walk, selection, the unschedulable message, and the snapshot's
//! assume / forget bookkeeping.

mod support;

use bosun_scheduler::{
    Error, ScheduleError, Scheduler, SchedulerConfig, SplitMix64, num_feasible_nodes_to_find,
    select_host,
};
use k8s_openapi::api::core::v1::Node;
use support::*;

fn roomy(name: &str) -> Node {
    node(name)
        .capacity(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")])
        .obj()
}

fn unschedulable_message(
    snap: &bosun_scheduler::Snapshot,
    p: &k8s_openapi::api::core::v1::Pod,
) -> String {
    match Scheduler::new(SchedulerConfig::default()).schedule_one(
        snap,
        &prepared(p),
        &mut SplitMix64::new(1),
    ) {
        Err(ScheduleError::Unschedulable(e)) => e.to_string(),
        other => panic!("expected unschedulable, got {other:?}"),
    }
}

// schedule_one_test.go TestNumFeasibleNodesToFind.
#[test]
fn num_feasible_nodes() {
    assert_eq!(num_feasible_nodes_to_find(0, 10), 10);
    assert_eq!(num_feasible_nodes_to_find(40, 10), 10);
    assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
    assert_eq!(num_feasible_nodes_to_find(40, 1000), 400);
    assert_eq!(num_feasible_nodes_to_find(0, 6000), 300);
    assert_eq!(num_feasible_nodes_to_find(40, 6000), 2400);
    assert_eq!(
        num_feasible_nodes_to_find(0, 5000),
        500,
        "the benchmark's size: 10%"
    );
    assert_eq!(
        num_feasible_nodes_to_find(1, 1000),
        100,
        "never fewer than 100"
    );
}

// schedule_one_test.go TestFairEvaluationForNodes: the walk resumes where the last one stopped.
#[test]
fn fair_evaluation_for_nodes() {
    let nodes: Vec<Node> = (0..500).map(|i| roomy(&format!("n{i:03}"))).collect();
    let snap = snapshot(&nodes, &[]);
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let to_find = num_feasible_nodes_to_find(0, 500);
    assert_eq!(to_find, 230);
    let p = prepared(&pod("p").obj());
    for i in 0..1000 {
        let r = sched
            .schedule_one(&snap, &p, &mut SplitMix64::new(i as u64))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.evaluated_nodes, to_find);
        assert_eq!(sched.next_start_node_index(), (i + 1) * to_find % 500);
    }
}

#[test]
fn fit_error_counts_and_sorts_reasons() {
    let nodes = [
        roomy("a"),
        node("b")
            .capacity(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")])
            .taint("k", "secret", "NoSchedule")
            .obj(),
        node("c")
            .capacity(&[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")])
            .unschedulable()
            .obj(),
        node("d")
            .capacity(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "110")])
            .obj(),
    ];
    let snap = snapshot(&nodes, &[]);
    let p = pod("p")
        .req(&[("cpu", "2"), ("memory", "2Gi")])
        .node_selector("disk", "ssd")
        .obj();
    // a: no ssd label (affinity); b: taint first; c: unschedulable first; d: affinity first.
    assert_eq!(
        unschedulable_message(&snap, &p),
        "0/4 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable, \
         2 node(s) didn't match Pod's node affinity/selector."
    );
    let p = pod("p")
        .req(&[("cpu", "8"), ("memory", "16Gi")])
        .toleration("k", "Exists", "", "NoSchedule")
        .obj();
    assert_eq!(
        unschedulable_message(&snap, &p),
        "0/4 nodes are available: 1 node(s) were unschedulable, 3 Insufficient cpu, 3 Insufficient memory.",
        "every insufficient resource of a node counts, the node once per reason"
    );
}

#[test]
fn reasons_sort_as_strings_like_kubernetes() {
    // sortReasonsHistogram sorts "count reason" strings: "10 ..." sorts before "2 ...".
    let mut nodes: Vec<Node> = (0..10)
        .map(|i| {
            node(&format!("small{i}"))
                .capacity(&[("cpu", "1"), ("pods", "110")])
                .obj()
        })
        .collect();
    nodes.push(
        node("c1")
            .capacity(&[("cpu", "4"), ("pods", "110")])
            .unschedulable()
            .obj(),
    );
    nodes.push(
        node("c2")
            .capacity(&[("cpu", "4"), ("pods", "110")])
            .unschedulable()
            .obj(),
    );
    let snap = snapshot(&nodes, &[]);
    assert_eq!(
        unschedulable_message(&snap, &pod("p").req(&[("cpu", "2")]).obj()),
        "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable."
    );
}

#[test]
fn no_nodes() {
    let snap = snapshot(&[], &[]);
    let err = Scheduler::new(SchedulerConfig::default())
        .schedule_one(&snap, &prepared(&pod("p").obj()), &mut SplitMix64::new(1))
        .err();
    assert_eq!(err, Some(ScheduleError::NoNodesAvailable));
    assert_eq!(
        ScheduleError::NoNodesAvailable.to_string(),
        "no nodes available to schedule pods"
    );
}

#[test]
fn node_affinity_by_name_restricts_the_walk() {
    let nodes = [
        roomy("n1"),
        roomy("n2"),
        node("n3").capacity(&[("pods", "10")]).unschedulable().obj(),
    ];
    let snap = snapshot(&nodes, &[]);
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let p = prepared(&pod("p").required_node_name(&["n2"]).obj());
    for seed in 0..20 {
        let r = sched
            .schedule_one(&snap, &p, &mut SplitMix64::new(seed))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.node.as_str(), r.evaluated_nodes), ("n2", 1));
    }
    assert_eq!(
        unschedulable_message(&snap, &pod("p").required_node_name(&["n3"]).obj()),
        "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
    );
    let conflict = pod("p").required_node_name(&["n1"]).obj();
    let mut conflict = conflict;
    if let Some(terms) = conflict
        .spec
        .as_mut()
        .and_then(|s| s.affinity.as_mut())
        .and_then(|a| a.node_affinity.as_mut())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_mut()
        })
        .and_then(|r| r.node_selector_terms.first_mut())
        .and_then(|t| t.match_fields.as_mut())
    {
        terms.push(req("metadata.name", "In", &["n2"]));
    }
    assert_eq!(
        unschedulable_message(&snap, &conflict),
        "0/3 nodes are available: pod affinity terms conflict."
    );
}

#[test]
fn best_node_wins_and_ties_break_by_the_seed() {
    // n2 has room; n1 is half full: LeastAllocated and BalancedAllocation prefer n2.
    let nodes = [roomy("n1"), roomy("n2")];
    let snap = snapshot(
        &nodes,
        &[bound(1, "n1").req(&[("cpu", "2"), ("memory", "4Gi")]).obj()],
    );
    let p = prepared(&pod("p").req(&[("cpu", "100m"), ("memory", "128Mi")]).obj());
    let mut sched = Scheduler::new(SchedulerConfig::default());
    for seed in 0..20 {
        let r = sched
            .schedule_one(&snap, &p, &mut SplitMix64::new(seed))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.node, "n2");
        assert_eq!(r.feasible_nodes, 2);
    }
    // Equal nodes: the seed decides, every node gets picked, and a seed repeats its choice.
    let nodes: Vec<Node> = (0..4).map(|i| roomy(&format!("e{i}"))).collect();
    let snap = snapshot(&nodes, &[]);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let a = Scheduler::new(SchedulerConfig::default()).schedule_one(
            &snap,
            &p,
            &mut SplitMix64::new(seed),
        );
        let b = Scheduler::new(SchedulerConfig::default()).schedule_one(
            &snap,
            &p,
            &mut SplitMix64::new(seed),
        );
        assert_eq!(a, b);
        if let Ok(r) = a {
            seen.insert(r.node);
        }
    }
    assert_eq!(seen.len(), 4);
}

#[test]
fn select_host_is_uniform_over_ties() {
    let totals = [5, 9, 9, 1, 9];
    let mut counts = [0u32; 5];
    let mut rng = SplitMix64::new(7);
    for _ in 0..30_000 {
        counts[select_host(&totals, &mut rng).unwrap_or(99)] += 1;
    }
    assert_eq!((counts[0], counts[3]), (0, 0));
    for i in [1, 2, 4] {
        assert!((9_000..11_000).contains(&counts[i]), "{counts:?}");
    }
    assert_eq!(select_host(&[], &mut rng), None);
}

#[test]
fn nominated_node_is_tried_first() {
    let nodes = [roomy("n1"), roomy("n2")];
    let snap = snapshot(&nodes, &[bound(1, "n2").req(&[("cpu", "3")]).obj()]);
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let r = sched
        .schedule_one(
            &snap,
            &prepared(&pod("p").nominated("n2").obj()),
            &mut SplitMix64::new(1),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((r.node.as_str(), r.evaluated_nodes), ("n2", 1));
    // A nominated node that no longer fits falls back to the normal walk.
    let r = sched
        .schedule_one(
            &snap,
            &prepared(&pod("p").req(&[("cpu", "2")]).nominated("n2").obj()),
            &mut SplitMix64::new(1),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.node, "n1");
}

// node_tree_test.go: nodes are listed zone by zone, round robin.
#[test]
fn nodes_interleave_by_zone() {
    let z = |n: &str, zone: &str| {
        node(n)
            .label("topology.kubernetes.io/region", "r")
            .label("topology.kubernetes.io/zone", zone)
            .obj()
    };
    let nodes = [
        z("n1", "z1"),
        z("n2", "z1"),
        z("n3", "z1"),
        z("n4", "z2"),
        z("n5", "z3"),
        z("n6", "z3"),
        node("n7").obj(),
    ];
    let mut snap = snapshot(&nodes, &[]);
    assert_eq!(
        snap.node_names().collect::<Vec<_>>(),
        ["n1", "n4", "n5", "n7", "n2", "n6", "n3"]
    );
    snap.remove_node("n4");
    assert_eq!(
        snap.node_names().collect::<Vec<_>>(),
        ["n1", "n5", "n7", "n2", "n6", "n3"]
    );
    // A node that changes zone moves to the end of its new zone.
    snap.upsert_node(&z("n1", "z3"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        snap.node_names().collect::<Vec<_>>(),
        ["n2", "n5", "n7", "n3", "n6", "n1"]
    );
}

#[test]
fn assume_then_watch_confirmation_counts_once() {
    let mut snap = snapshot(&[roomy("n1")], &[]);
    let p = pod("p").req(&[("cpu", "1"), ("memory", "1Gi")]).obj();
    let prepared_pod = prepared(&p);
    snap.assume(&prepared_pod, "n1")
        .unwrap_or_else(|e| panic!("{e}"));
    let usage =
        |s: &bosun_scheduler::Snapshot| s.node_usage("n1").map(|u| (u.requested.milli_cpu, u.pods));
    assert_eq!(usage(&snap), Some((1000, 1)));
    assert!(snap.is_assumed(prepared_pod.key()));
    assert_eq!(
        snap.assume(&prepared_pod, "n1"),
        Err(Error::AlreadyInCache("uid-p".into()))
    );
    // The watch delivers the bound pod: it replaces the assumed one.
    let mut bound_pod = p.clone();
    if let Some(spec) = bound_pod.spec.as_mut() {
        spec.node_name = Some("n1".into());
    }
    snap.upsert_pod(&bound_pod)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(usage(&snap), Some((1000, 1)));
    assert!(!snap.is_assumed(prepared_pod.key()));
    assert_eq!(
        snap.forget(prepared_pod.key()),
        Err(Error::NotAssumed("uid-p".into())),
        "a confirmed pod stays"
    );
    assert_eq!(usage(&snap), Some((1000, 1)));
    // It finishes: a terminal pod leaves the node.
    let done = {
        let mut d = bound_pod.clone();
        d.status.get_or_insert_with(Default::default).phase = Some("Succeeded".into());
        d
    };
    snap.upsert_pod(&done).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(usage(&snap), Some((0, 0)));
}

#[test]
fn forget_undoes_a_lost_bind() {
    let mut snap = snapshot(&[roomy("n1")], &[]);
    let p = prepared(&pod("p").req(&[("cpu", "1")]).host_port("", "", 80).obj());
    snap.assume(&p, "n1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.node_usage("n1").map(|u| u.host_ports.len()), Some(1));
    snap.forget(p.key()).unwrap_or_else(|e| panic!("{e}"));
    let u = snap.node_usage("n1").unwrap_or_else(|| panic!("node gone"));
    assert_eq!(
        (
            u.requested.milli_cpu,
            u.non_zero_milli_cpu,
            u.pods,
            u.host_ports.len()
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(snap.num_pods(), 0);
    assert_eq!(snap.forget(p.key()), Err(Error::NotAssumed("uid-p".into())));
    assert_eq!(
        snap.assume(&p, "nowhere"),
        Err(Error::NodeNotFound("nowhere".into()))
    );
}

#[test]
fn a_failed_bind_the_watch_shows_bound_is_not_requeued() {
    let mut snap = snapshot(&[roomy("n1"), roomy("n2")], &[]);
    // Assumed only: the failed bind is undone and the pod goes back to the queue.
    let lost = prepared(&pod("lost").req(&[("cpu", "1")]).obj());
    snap.assume(&lost, "n1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.forget_failed_bind(lost.key()), None);
    assert_eq!(snap.num_pods(), 0);
    // The bind reached the apiserver although its answer was an error: the watch shows the
    // pod bound (here to n2) before the error comes back. Not requeued, still counted once.
    let p = pod("won").req(&[("cpu", "1")]).obj();
    let won = prepared(&p);
    snap.assume(&won, "n1").unwrap_or_else(|e| panic!("{e}"));
    let mut bound = p.clone();
    if let Some(spec) = bound.spec.as_mut() {
        spec.node_name = Some("n2".into());
    }
    snap.upsert_pod(&bound).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(snap.forget_failed_bind(won.key()), Some("n2".to_owned()));
    assert_eq!(snap.num_pods(), 1);
    assert_eq!(snap.node_usage("n2").map(|u| u.pods), Some(1));
    // A pod the snapshot does not hold has no node to report.
    assert_eq!(snap.forget_failed_bind("uid-unknown"), None);
}

#[test]
fn assumed_pods_shape_the_next_decision() {
    // One slot of CPU per node: scheduling and assuming three pods fills three nodes, and
    // the fourth finds no room.
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            node(&format!("n{i}"))
                .capacity(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "110")])
                .obj()
        })
        .collect();
    let mut snap = snapshot(&nodes, &[]);
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let mut placed = std::collections::BTreeSet::new();
    for i in 0..3 {
        let p = prepared(&pod(&format!("p{i}")).req(&[("cpu", "1")]).obj());
        let r = sched
            .schedule_one(&snap, &p, &mut SplitMix64::new(i))
            .unwrap_or_else(|e| panic!("{e}"));
        snap.assume(&p, &r.node).unwrap_or_else(|e| panic!("{e}"));
        placed.insert(r.node);
    }
    assert_eq!(placed.len(), 3);
    let p = prepared(&pod("late").req(&[("cpu", "1")]).obj());
    let err = sched
        .schedule_one(&snap, &p, &mut SplitMix64::new(9))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("0/3 nodes are available: 3 Insufficient cpu.")
    );
}

#[test]
fn pods_on_unknown_nodes_wait_for_the_node() {
    let mut snap = snapshot(&[], &[bound(1, "later").req(&[("cpu", "1")]).obj()]);
    assert_eq!(
        snap.num_nodes(),
        0,
        "a node known only from its pods is not schedulable"
    );
    snap.upsert_node(&roomy("later"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        snap.node_usage("later").map(|u| u.requested.milli_cpu),
        Some(1000)
    );
    snap.remove_node("later");
    assert_eq!(snap.num_nodes(), 0);
    assert_eq!(
        snap.node_usage("later").map(|u| u.pods),
        Some(1),
        "its pods are still accounted"
    );
    snap.remove_pod("uid-later-p1");
    assert!(snap.node_usage("later").is_none());
}

#[test]
fn bad_quantities_are_errors_not_zeroes() {
    let p = pod("p").req(&[("cpu", "lots")]).obj();
    assert!(matches!(
        bosun_scheduler::PreparedPod::new(&p, None),
        Err(Error::InvalidQuantity(_))
    ));
    let mut snap = snapshot(&[roomy("n1")], &[]);
    assert!(
        snap.upsert_pod(&bound(1, "n1").req(&[("memory", "1Zi")]).obj())
            .is_err()
    );
    assert_eq!(snap.num_pods(), 0);
    let bad_node = node("n2").capacity(&[("cpu", "x")]).obj();
    assert!(snap.upsert_node(&bad_node).is_err());
    assert_eq!(snap.num_nodes(), 1);
}
