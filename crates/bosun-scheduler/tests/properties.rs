//! Invariants of the scheduling core over generated clusters and pods.

mod support;

use bosun_scheduler::{ScheduleError, Scheduler, SchedulerConfig, Snapshot, SplitMix64};
use k8s_openapi::api::core::v1::{Node, Pod};
use proptest::prelude::*;
use support::*;

#[derive(Clone, Debug)]
struct NodeSpec {
    cpu_milli: u32,
    mem_mi: u32,
    pods: u32,
    zone: Option<u8>,
    taint: Option<(u8, u8)>,
    unschedulable: bool,
    disk_ssd: bool,
}

fn node_spec() -> impl Strategy<Value = NodeSpec> {
    (
        0u32..4000,
        0u32..4096,
        0u32..6,
        proptest::option::of(0u8..3),
        proptest::option::weighted(0.3, (0u8..2, 0u8..3)),
        proptest::bool::weighted(0.1),
        any::<bool>(),
    )
        .prop_map(
            |(cpu_milli, mem_mi, pods, zone, taint, unschedulable, disk_ssd)| NodeSpec {
                cpu_milli,
                mem_mi,
                pods,
                zone,
                taint,
                unschedulable,
                disk_ssd,
            },
        )
}

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn build_node(i: usize, s: &NodeSpec) -> Node {
    let mut b = node(&format!("n{i}")).capacity(&[
        ("cpu", &format!("{}m", s.cpu_milli)),
        ("memory", &format!("{}Mi", s.mem_mi)),
        ("pods", &s.pods.to_string()),
    ]);
    if let Some(z) = s.zone {
        b = b.label("topology.kubernetes.io/zone", &format!("z{z}"));
    }
    if let Some((k, e)) = s.taint {
        b = b.taint(&format!("t{k}"), "", EFFECTS[e as usize]);
    }
    if s.unschedulable {
        b = b.unschedulable();
    }
    if s.disk_ssd {
        b = b.label("disk", "ssd");
    }
    b.obj()
}

#[derive(Clone, Debug)]
struct PodSpecGen {
    cpu_milli: Option<u32>,
    mem_mi: Option<u32>,
    port: Option<u8>,
    app: u8,
    tolerate: Option<u8>,
    ssd: bool,
    spread: Option<(u8, bool, bool)>,
}

fn pod_spec() -> impl Strategy<Value = PodSpecGen> {
    (
        proptest::option::of(0u32..1500),
        proptest::option::of(0u32..1500),
        proptest::option::weighted(0.2, 0u8..3),
        0u8..3,
        proptest::option::of(0u8..2),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.3, (1u8..3, any::<bool>(), any::<bool>())),
    )
        .prop_map(
            |(cpu_milli, mem_mi, port, app, tolerate, ssd, spread)| PodSpecGen {
                cpu_milli,
                mem_mi,
                port,
                app,
                tolerate,
                ssd,
                spread,
            },
        )
}

fn build_pod(name: &str, s: &PodSpecGen, node_name: Option<&str>) -> Pod {
    let mut reqs = Vec::new();
    let cpu = s.cpu_milli.map(|c| format!("{c}m"));
    let mem = s.mem_mi.map(|m| format!("{m}Mi"));
    if let Some(c) = &cpu {
        reqs.push(("cpu", c.as_str()));
    }
    if let Some(m) = &mem {
        reqs.push(("memory", m.as_str()));
    }
    let mut b = pod(name).req(&reqs).label("app", &format!("a{}", s.app));
    if let Some(p) = s.port {
        b = b.host_port("", "", 8000 + i32::from(p));
    }
    if let Some(k) = s.tolerate {
        b = b.toleration(&format!("t{k}"), "Exists", "", "");
    }
    if s.ssd {
        b = b.node_selector("disk", "ssd");
    }
    if let Some((skew, zone, hard)) = s.spread {
        let key = if zone {
            "topology.kubernetes.io/zone"
        } else {
            "kubernetes.io/hostname"
        };
        let when = if hard {
            "DoNotSchedule"
        } else {
            "ScheduleAnyway"
        };
        b = b.spread(
            i32::from(skew),
            key,
            when,
            Some(label_eq("app", &format!("a{}", s.app))),
        );
    }
    if let Some(n) = node_name {
        b = b.node(n);
    }
    b.obj()
}

fn cluster() -> impl Strategy<Value = (Vec<NodeSpec>, Vec<(usize, PodSpecGen)>)> {
    proptest::collection::vec(node_spec(), 1..12).prop_flat_map(|nodes| {
        let n = nodes.len();
        (
            Just(nodes),
            proptest::collection::vec((0..n, pod_spec()), 0..20),
        )
    })
}

fn build_snapshot(nodes: &[NodeSpec], pods: &[(usize, PodSpecGen)]) -> (Snapshot, Vec<String>) {
    let nodes: Vec<Node> = nodes
        .iter()
        .enumerate()
        .map(|(i, s)| build_node(i, s))
        .collect();
    let names = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let pods: Vec<Pod> = pods
        .iter()
        .enumerate()
        .map(|(i, (n, s))| build_pod(&format!("e{i}"), s, Some(&format!("n{n}"))))
        .collect();
    (snapshot(&nodes, &pods), names)
}

fn usages(snap: &Snapshot, names: &[String]) -> Vec<Option<bosun_scheduler::NodeUsage>> {
    names.iter().map(|n| snap.node_usage(n)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The chosen node passes every filter; when none is chosen, every node fails one and
    /// the message accounts for every node.
    #[test]
    fn never_picks_a_node_a_filter_rejects((nodes, pods) in cluster(), incoming in pod_spec(), seed in any::<u64>()) {
        let (snap, names) = build_snapshot(&nodes, &pods);
        let p = prepared(&build_pod("incoming", &incoming, None));
        let mut sched = Scheduler::new(SchedulerConfig::default());
        match sched.schedule_one(&snap, &p, &mut SplitMix64::new(seed)) {
            Ok(r) => {
                prop_assert!(Scheduler::check_node(&snap, &p, &r.node).is_ok(), "{} was rejected", r.node);
                prop_assert!(r.feasible_nodes >= 1 && r.feasible_nodes <= r.evaluated_nodes);
                prop_assert!(r.evaluated_nodes <= names.len());
            }
            Err(ScheduleError::Unschedulable(e)) => {
                for n in &names {
                    prop_assert!(Scheduler::check_node(&snap, &p, n).is_err(), "{} fits but was not chosen", n);
                }
                prop_assert_eq!(e.num_all_nodes, names.len());
                let prefix = format!("0/{} nodes are available: ", names.len());
                prop_assert!(e.to_string().starts_with(&prefix));
                // Each node gives at least one reason (Fit may give several).
                prop_assert!(e.reasons.iter().map(|(_, n)| n).sum::<usize>() >= names.len());
            }
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }

    /// Every plugin scores 0..=100 and the total is their weighted sum.
    #[test]
    fn scores_are_in_range((nodes, pods) in cluster(), incoming in pod_spec()) {
        let (snap, names) = build_snapshot(&nodes, &pods);
        let p = prepared(&build_pod("incoming", &incoming, None));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for s in Scheduler::new(SchedulerConfig::default()).score_nodes(&snap, &p, &refs) {
            for v in [s.taint_toleration, s.node_affinity, s.node_resources_fit, s.balanced_allocation, s.pod_topology_spread] {
                prop_assert!((0..=100).contains(&v), "{:?}", s);
            }
            prop_assert_eq!(
                s.total,
                3 * s.taint_toleration + 2 * s.node_affinity + s.node_resources_fit + s.balanced_allocation + 2 * s.pod_topology_spread
            );
        }
    }

    /// Assuming then forgetting a pod leaves every node exactly as it was; assuming then
    /// confirming it through the watch counts it once.
    #[test]
    fn assume_forget_and_confirm_are_exact((nodes, pods) in cluster(), incoming in pod_spec(), seed in any::<u64>()) {
        let (mut snap, names) = build_snapshot(&nodes, &pods);
        let before = usages(&snap, &names);
        let pod_obj = build_pod("incoming", &incoming, None);
        let p = prepared(&pod_obj);
        let Ok(r) = Scheduler::new(SchedulerConfig::default()).schedule_one(&snap, &p, &mut SplitMix64::new(seed)) else {
            return Ok(());
        };
        snap.assume(&p, &r.node).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let assumed = usages(&snap, &names);
        snap.forget(p.key()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&usages(&snap, &names), &before);

        snap.assume(&p, &r.node).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let bound_pod = build_pod("incoming", &incoming, Some(&r.node));
        snap.upsert_pod(&bound_pod).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&usages(&snap, &names), &assumed);
        snap.remove_pod(p.key());
        prop_assert_eq!(&usages(&snap, &names), &before);
    }

    /// Scheduling and assuming pods until none fits never overcommits a node.
    #[test]
    fn never_overcommits(nodes in proptest::collection::vec(node_spec(), 1..8), incoming in proptest::collection::vec(pod_spec(), 1..40), seed in any::<u64>()) {
        let (mut snap, names) = build_snapshot(&nodes, &[]);
        let mut sched = Scheduler::new(SchedulerConfig::default());
        let mut rng = SplitMix64::new(seed);
        for (i, s) in incoming.iter().enumerate() {
            let p = prepared(&build_pod(&format!("p{i}"), s, None));
            if let Ok(r) = sched.schedule_one(&snap, &p, &mut rng) {
                snap.assume(&p, &r.node).map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
        for (i, spec) in nodes.iter().enumerate() {
            let Some(u) = snap.node_usage(&names[i]) else { continue };
            prop_assert!(u.requested.milli_cpu <= i64::from(spec.cpu_milli) || u.requested.milli_cpu == 0);
            prop_assert!(u.requested.memory <= i64::from(spec.mem_mi) * 1024 * 1024 || u.requested.memory == 0);
            prop_assert!(u.pods <= spec.pods as usize);
            prop_assert!(u.host_ports.iter().all(|(_, n)| *n == 1), "a host port used twice: {:?}", u.host_ports);
        }
    }
}
