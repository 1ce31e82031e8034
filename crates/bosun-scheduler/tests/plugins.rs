//! The filter and score plugins against cases ported from Kubernetes' own tests
//! (pkg/scheduler/framework/plugins/*/..._test.go); each test names its source.

mod support;

use bosun_scheduler::{NodeScores, Scheduler, SchedulerConfig, Snapshot};
use k8s_openapi::api::core::v1::{Node, Pod};
use support::*;

fn scores(snap: &Snapshot, pod: &Pod, nodes: &[&str]) -> Vec<NodeScores> {
    Scheduler::new(SchedulerConfig::default()).score_nodes(snap, &prepared(pod), nodes)
}

fn fit_scores(nodes: &[Node], existing: &[Pod], pod: &Pod) -> Vec<i64> {
    let snap = snapshot(nodes, existing);
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    scores(&snap, pod, &names)
        .iter()
        .map(|s| s.node_resources_fit)
        .collect()
}

fn balanced_scores(nodes: &[Node], existing: &[Pod], pod: &Pod) -> Vec<i64> {
    let snap = snapshot(nodes, existing);
    let names: Vec<String> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    scores(&snap, pod, &names)
        .iter()
        .map(|s| s.balanced_allocation)
        .collect()
}

/// The reasons the filters give for one node, or empty when it fits.
fn reasons(snap: &Snapshot, pod: &Pod, node: &str) -> Vec<String> {
    match Scheduler::check_node(snap, &prepared(pod), node) {
        Ok(()) => Vec::new(),
        Err(bosun_scheduler::Error::Rejected(r)) => r,
        Err(e) => panic!("{e}"),
    }
}

fn sized(name: &str, cpu: &str, memory: &str) -> Node {
    node(name)
        .capacity(&[("cpu", cpu), ("memory", memory), ("pods", "110")])
        .obj()
}

// least_allocated_test.go TestLeastAllocatedScoringStrategy.
#[test]
fn least_allocated() {
    let two = |c1, c2| vec![sized("node1", c1, "10000"), sized("node2", c2, "10000")];
    let req_pod = || {
        pod("p")
            .req(&[("cpu", "1000"), ("memory", "2000")])
            .req(&[("cpu", "2000"), ("memory", "3000")])
            .obj()
    };
    assert_eq!(
        fit_scores(&two("4000", "4000"), &[], &pod("p").obj()),
        [100, 100],
        "nothing scheduled, nothing requested"
    );
    assert_eq!(
        fit_scores(&two("4000", "6000"), &[], &req_pod()),
        [37, 50],
        "differently sized nodes"
    );
    let empty = [
        bound(1, "node1").obj(),
        bound(2, "node1").obj(),
        bound(3, "node2").obj(),
        bound(4, "node2").obj(),
    ];
    assert_eq!(
        fit_scores(&two("4000", "4000"), &empty, &pod("p").obj()),
        [100, 100],
        "no resources requested, pods scheduled"
    );

    let big = || {
        vec![
            sized("node1", "10000", "20000"),
            sized("node2", "10000", "20000"),
        ]
    };
    let existing = [
        bound(1, "node1")
            .req(&[("cpu", "3000"), ("memory", "0")])
            .obj(),
        bound(2, "node1")
            .req(&[("cpu", "3000"), ("memory", "0")])
            .obj(),
        bound(3, "node2")
            .req(&[("cpu", "3000"), ("memory", "0")])
            .obj(),
        bound(4, "node2")
            .req(&[("cpu", "3000"), ("memory", "5000")])
            .obj(),
    ];
    assert_eq!(
        fit_scores(&big(), &existing, &pod("p").obj()),
        [70, 57],
        "pods scheduled with resources"
    );
    let existing = [
        bound(1, "node1")
            .req(&[("cpu", "3000"), ("memory", "0")])
            .obj(),
        bound(2, "node2")
            .req(&[("cpu", "3000"), ("memory", "5000")])
            .obj(),
    ];
    assert_eq!(
        fit_scores(&big(), &existing, &req_pod()),
        [57, 45],
        "requested and scheduled"
    );
    let nodes = [
        sized("node1", "10000", "20000"),
        sized("node2", "10000", "50000"),
    ];
    assert_eq!(
        fit_scores(&nodes, &existing, &req_pod()),
        [57, 60],
        "differently sized, scheduled"
    );
    let cpu_pod = pod("p").req(&[("cpu", "3000"), ("memory", "0")]).obj();
    assert_eq!(
        fit_scores(&two("4000", "4000"), &existing, &cpu_pod),
        [50, 25],
        "requests exceed capacity"
    );
    let bare = [node("node1").obj(), node("node2").obj()];
    assert_eq!(
        fit_scores(&bare, &existing, &pod("p").obj()),
        [0, 0],
        "zero node resources"
    );
}

#[test]
fn least_allocated_counts_missing_requests_as_defaults() {
    // One container without requests counts as 100m and 200Mi.
    let nodes = [node("n")
        .capacity(&[("cpu", "1"), ("memory", "1000Mi"), ("pods", "110")])
        .obj()];
    // cpu (1000-100)*100/1000 = 90, memory (1000-200)*100/1000 = 80: (90+80)/2 = 85.
    assert_eq!(fit_scores(&nodes, &[], &pod("p").container().obj()), [85]);
}

// balanced_allocation_test.go TestNodeResourcesBalancedAllocation (the standard-deviation
// version: score = (1 - |f_cpu - f_mem| / 2) * 100).
#[test]
fn balanced_allocation() {
    let mk = |n: &str, milli: &str, mem: &str| {
        node(n)
            .capacity(&[("cpu", milli), ("memory", mem), ("pods", "110")])
            .obj()
    };
    let cpu_and_memory = |p: PodBuilder| {
        p.req(&[("cpu", "1000m"), ("memory", "2000")])
            .req(&[("cpu", "2000m"), ("memory", "3000")])
    };
    let cpu_only = |p: PodBuilder| {
        p.req(&[("cpu", "1000m"), ("memory", "0")])
            .req(&[("cpu", "2000m"), ("memory", "0")])
    };

    let nodes = [mk("machine1", "4", "10000"), mk("machine2", "6", "10000")];
    assert_eq!(
        balanced_scores(&nodes, &[], &cpu_and_memory(pod("p")).obj()),
        [87, 100]
    );

    let nodes = [mk("machine1", "10", "20000"), mk("machine2", "10", "20000")];
    let existing = [
        cpu_only(bound(1, "machine1")).obj(),
        cpu_and_memory(bound(2, "machine2")).obj(),
    ];
    assert_eq!(
        balanced_scores(&nodes, &existing, &cpu_and_memory(pod("p")).obj()),
        [82, 95]
    );

    let nodes = [mk("machine1", "10", "20000"), mk("machine2", "10", "50000")];
    assert_eq!(
        balanced_scores(&nodes, &existing, &cpu_and_memory(pod("p")).obj()),
        [82, 80]
    );

    let nodes = [mk("machine1", "4", "10000"), mk("machine2", "4", "10000")];
    assert_eq!(
        balanced_scores(&nodes, &existing, &cpu_only(pod("p")).obj()),
        [50, 75],
        "fractions cap at 1"
    );

    // Best-effort pods skip the plugin (kubernetes#129138): every node scores 0.
    let nodes = [mk("machine1", "10", "20000"), mk("machine2", "10", "20000")];
    assert_eq!(balanced_scores(&nodes, &existing, &pod("p").obj()), [0, 0]);
}

// fit_test.go TestEnoughRequests: node allocatable cpu 10m, memory 20, pods 32.
#[test]
fn resources_fit() {
    let n = || {
        node("n")
            .capacity(&[
                ("cpu", "10m"),
                ("memory", "20"),
                ("pods", "32"),
                ("example.com/aaa", "5"),
            ])
            .obj()
    };
    let used = |cpu: &str, mem: &str| bound(1, "n").req(&[("cpu", cpu), ("memory", mem)]).obj();
    let check = |existing: Pod, p: Pod| reasons(&snapshot(&[n()], &[existing]), &p, "n");
    let none: Vec<String> = Vec::new();

    assert_eq!(
        check(used("10m", "20"), pod("p").obj()),
        none,
        "no resources requested always fits"
    );
    assert_eq!(
        check(
            used("10m", "20"),
            pod("p").req(&[("cpu", "1m"), ("memory", "1")]).obj()
        ),
        ["Insufficient cpu", "Insufficient memory"],
        "too many resources fails"
    );
    assert_eq!(
        check(
            used("8m", "19"),
            pod("p")
                .req(&[("cpu", "1m"), ("memory", "1")])
                .init_req(&[("cpu", "3m"), ("memory", "1")])
                .obj()
        ),
        ["Insufficient cpu"],
        "too many resources fails due to init container cpu"
    );
    assert_eq!(
        check(
            used("8m", "19"),
            pod("p")
                .req(&[("cpu", "1m"), ("memory", "1")])
                .init_req(&[("cpu", "1m"), ("memory", "1")])
                .obj()
        ),
        none,
        "init container fits because it's the max, not sum, of containers and init containers"
    );
    assert_eq!(
        check(
            used("5m", "5"),
            pod("p").req(&[("cpu", "1m"), ("memory", "1")]).obj()
        ),
        none,
        "both resources fit"
    );
    assert_eq!(
        check(
            used("9m", "5"),
            pod("p").req(&[("cpu", "2m"), ("memory", "1")]).obj()
        ),
        ["Insufficient cpu"]
    );
    assert_eq!(
        check(
            used("5m", "19"),
            pod("p").req(&[("cpu", "1m"), ("memory", "2")]).obj()
        ),
        ["Insufficient memory"]
    );
    assert_eq!(
        check(
            used("5m", "1"),
            pod("p").req(&[("cpu", "5m"), ("memory", "19")]).obj()
        ),
        none,
        "equal edge case"
    );
    assert_eq!(
        check(
            used("0m", "0"),
            pod("p").req(&[("example.com/aaa", "10")]).obj()
        ),
        ["Insufficient example.com/aaa"],
        "extended resource capacity enforced"
    );
    assert_eq!(
        check(
            used("0m", "0"),
            pod("p").req(&[("example.com/bbb", "1")]).obj()
        ),
        ["Insufficient example.com/bbb"],
        "extended resource the node does not have"
    );
    assert_eq!(
        check(
            used("0m", "0"),
            pod("p").req(&[("example.com/bbb", "0")]).obj()
        ),
        none,
        "zero quantity is skipped"
    );
    assert_eq!(
        check(
            used("0m", "0"),
            pod("p").req(&[("example.com/aaa", "5")]).obj()
        ),
        none
    );
}

// fit_test.go TestPodsFit ("Too many pods").
#[test]
fn pod_count_limit() {
    let n = node("n")
        .capacity(&[("cpu", "10"), ("memory", "20"), ("pods", "1")])
        .obj();
    let snap = snapshot(&[n], &[bound(1, "n").obj()]);
    assert_eq!(reasons(&snap, &pod("p").obj(), "n"), ["Too many pods"]);
    let snap = snapshot(&[node("empty").obj()], &[]);
    assert_eq!(
        reasons(&snap, &pod("p").obj(), "empty"),
        ["Too many pods"],
        "no pods resource: none fit"
    );
}

// taint_toleration_test.go TestTaintTolerationFilter.
#[test]
fn taint_filter() {
    let n = |t: NodeBuilder| t.capacity(&[("pods", "10")]).obj();
    let untolerated = vec!["node(s) had untolerated taint(s)".to_owned()];
    let check = |node: Node, p: Pod| reasons(&snapshot(&[node], &[]), &p, "n");
    assert_eq!(
        check(
            n(node("n").taint("dedicated", "user1", "NoSchedule")),
            pod("p").obj()
        ),
        untolerated
    );
    assert!(
        check(
            n(node("n").taint("dedicated", "user1", "NoSchedule")),
            pod("p")
                .toleration("dedicated", "Equal", "user1", "NoSchedule")
                .obj()
        )
        .is_empty()
    );
    assert_eq!(
        check(
            n(node("n").taint("dedicated", "user1", "NoSchedule")),
            pod("p")
                .toleration("dedicated", "Equal", "user2", "NoSchedule")
                .obj()
        ),
        untolerated
    );
    assert!(
        check(
            n(node("n").taint("foo", "bar", "NoSchedule")),
            pod("p").toleration("foo", "Exists", "", "NoSchedule").obj()
        )
        .is_empty()
    );
    assert!(
        check(
            n(node("n").taint("dedicated", "user2", "NoSchedule").taint(
                "foo",
                "bar",
                "NoSchedule"
            )),
            pod("p")
                .toleration("dedicated", "Equal", "user2", "NoSchedule")
                .toleration("foo", "Exists", "", "NoSchedule")
                .obj()
        )
        .is_empty()
    );
    assert_eq!(
        check(
            n(node("n").taint("foo", "bar", "NoSchedule")),
            pod("p")
                .toleration("foo", "Equal", "bar", "PreferNoSchedule")
                .obj()
        ),
        untolerated,
        "a PreferNoSchedule toleration does not tolerate a NoSchedule taint"
    );
    assert!(
        check(
            n(node("n").taint("foo", "bar", "PreferNoSchedule")),
            pod("p").obj()
        )
        .is_empty(),
        "PreferNoSchedule never blocks"
    );
    assert_eq!(
        check(
            n(node("n").taint("foo", "bar", "NoExecute")),
            pod("p").obj()
        ),
        untolerated
    );
}

// taint_toleration_test.go TestTaintTolerationScore.
#[test]
fn taint_score() {
    let taint_scores = |nodes: Vec<Node>, p: Pod| {
        let names: Vec<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        scores(&snapshot(&nodes, &[]), &p, &names)
            .iter()
            .map(|s| s.taint_toleration)
            .collect::<Vec<_>>()
    };
    let tolerating = pod("p")
        .toleration("foo", "Equal", "bar", "PreferNoSchedule")
        .obj();
    assert_eq!(
        taint_scores(
            vec![
                node("a").taint("foo", "bar", "PreferNoSchedule").obj(),
                node("b").taint("foo", "blah", "PreferNoSchedule").obj()
            ],
            tolerating.clone()
        ),
        [100, 0]
    );
    let tolerating2 = pod("p")
        .toleration("cpu-type", "Equal", "arm64", "PreferNoSchedule")
        .toleration("disk-type", "Equal", "ssd", "PreferNoSchedule")
        .obj();
    assert_eq!(
        taint_scores(
            vec![
                node("a").obj(),
                node("b")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .obj(),
                node("c")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .taint("disk-type", "ssd", "PreferNoSchedule")
                    .obj()
            ],
            tolerating2
        ),
        [100, 100, 100],
        "all taints tolerated: same score however many"
    );
    let some = pod("p")
        .toleration("foo", "Equal", "bar", "PreferNoSchedule")
        .obj();
    assert_eq!(
        taint_scores(
            vec![
                node("a").obj(),
                node("b")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .obj(),
                node("c")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .taint("disk-type", "ssd", "PreferNoSchedule")
                    .obj()
            ],
            some
        ),
        [100, 50, 0],
        "the more intolerable taints, the lower the score"
    );
    let no_schedule_only = pod("p")
        .toleration("cpu-type", "Equal", "arm64", "NoSchedule")
        .toleration("disk-type", "Equal", "ssd", "NoSchedule")
        .obj();
    assert_eq!(
        taint_scores(
            vec![
                node("a").obj(),
                node("b").taint("cpu-type", "arm64", "NoSchedule").obj(),
                node("c")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .obj()
            ],
            no_schedule_only
        ),
        [100, 100, 0],
        "only PreferNoSchedule taints and tolerations count"
    );
    assert_eq!(
        taint_scores(
            vec![
                node("a").obj(),
                node("b")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .obj()
            ],
            pod("p").obj()
        ),
        [100, 0]
    );
}

// node_affinity_test.go TestNodeAffinity (filter).
#[test]
fn node_affinity_filter() {
    let mismatch = vec!["node(s) didn't match Pod's node affinity/selector".to_owned()];
    let n = |labels: &[(&str, &str)]| {
        let mut b = node("n").capacity(&[("pods", "10")]);
        for (k, v) in labels {
            b = b.label(k, v);
        }
        b.obj()
    };
    let check = |node: Node, p: Pod| reasons(&snapshot(&[node], &[]), &p, "n");
    assert!(check(n(&[]), pod("p").obj()).is_empty(), "no selector");
    assert_eq!(
        check(n(&[]), pod("p").node_selector("foo", "bar").obj()),
        mismatch,
        "missing labels"
    );
    assert!(
        check(
            n(&[("foo", "bar")]),
            pod("p").node_selector("foo", "bar").obj()
        )
        .is_empty()
    );
    assert_eq!(
        check(
            n(&[("foo", "bar")]),
            pod("p")
                .node_selector("foo", "bar")
                .node_selector("baz", "blah")
                .obj()
        ),
        mismatch
    );
    assert!(
        check(
            n(&[("foo", "bar")]),
            pod("p")
                .required_term("foo", "In", &["bar", "value2"])
                .obj()
        )
        .is_empty()
    );
    assert!(
        check(
            n(&[("kernel-version", "0206")]),
            pod("p")
                .required_term("kernel-version", "Gt", &["0204"])
                .obj()
        )
        .is_empty()
    );
    assert_eq!(
        check(
            n(&[("mem-type", "DDR3")]),
            pod("p")
                .required_term("mem-type", "NotIn", &["DDR", "DDR2"])
                .required_term("x", "Exists", &[])
                .obj()
        )
        .len(),
        0,
        "terms are ORed"
    );
    assert_eq!(
        check(
            n(&[("GPU", "NVIDIA-GRID-K1")]),
            pod("p")
                .required_term("GPU", "Exists", &[])
                .node_selector("foo", "bar")
                .obj()
        ),
        mismatch,
        "selector and affinity both apply"
    );
    assert_eq!(
        check(
            n(&[("foo", "bar")]),
            pod("p").required_term("foo", "DoesNotExist", &[]).obj()
        ),
        mismatch
    );
    assert_eq!(
        check(
            n(&[("foo", "bar")]),
            pod("p").required_term("foo", "Gt", &["bar"]).obj()
        ),
        mismatch,
        "invalid Gt value matches nothing"
    );
}

// node_affinity_test.go TestNodeAffinityPriority.
#[test]
fn node_affinity_score() {
    let nodes = vec![
        node("node1").label("foo", "bar").obj(),
        node("node5")
            .label("foo", "bar")
            .label("key", "value")
            .label("az", "az1")
            .obj(),
        node("node2").label("key", "value").obj(),
    ];
    let snap = snapshot(&nodes, &[]);
    let names = ["node1", "node5", "node2"];
    let affinity = |p: Pod| {
        scores(&snap, &p, &names)
            .iter()
            .map(|s| s.node_affinity)
            .collect::<Vec<_>>()
    };
    assert_eq!(affinity(pod("p").obj()), [0, 0, 0], "no affinity");
    assert_eq!(
        affinity(
            pod("p")
                .preferred_term(2, vec![req("foo", "In", &["baz"])])
                .obj()
        ),
        [0, 0, 0],
        "no node matches"
    );
    assert_eq!(
        affinity(
            pod("p")
                .preferred_term(
                    2,
                    vec![req("foo", "In", &["bar"]), req("key", "In", &["value"])]
                )
                .obj()
        ),
        [0, 100, 0]
    );
    let three = pod("p")
        .preferred_term(2, vec![req("foo", "In", &["bar"])])
        .preferred_term(4, vec![req("key", "In", &["value"])])
        .preferred_term(
            5,
            vec![
                req("foo", "In", &["bar"]),
                req("key", "In", &["value"]),
                req("az", "In", &["az1"]),
            ],
        )
        .obj();
    assert_eq!(affinity(three), [18, 100, 36], "different weights");
}

// node_ports_test.go TestNodePorts.
#[test]
fn node_ports() {
    let busy = vec!["node(s) didn't have free ports for the requested pod ports".to_owned()];
    let cases: [(Pod, Pod, bool); 7] = [
        (
            pod("p").obj(),
            bound(1, "n").host_port("127.0.0.1", "UDP", 8080).obj(),
            true,
        ),
        (
            pod("p").host_port("127.0.0.1", "UDP", 8080).obj(),
            bound(1, "n").host_port("127.0.0.1", "UDP", 9090).obj(),
            true,
        ),
        (
            pod("p").host_port("127.0.0.1", "UDP", 8080).obj(),
            bound(1, "n").host_port("127.0.0.1", "UDP", 8080).obj(),
            false,
        ),
        (
            pod("p").host_port("127.0.0.2", "TCP", 8080).obj(),
            bound(1, "n").host_port("127.0.0.1", "TCP", 8080).obj(),
            true,
        ),
        (
            pod("p").host_port("127.0.0.1", "TCP", 8080).obj(),
            bound(1, "n").host_port("127.0.0.1", "UDP", 8080).obj(),
            true,
        ),
        (
            pod("p").host_port("0.0.0.0", "TCP", 8001).obj(),
            bound(1, "n").host_port("127.0.0.1", "TCP", 8001).obj(),
            false,
        ),
        (
            pod("p").host_port("127.0.0.1", "TCP", 8001).obj(),
            bound(1, "n").host_port("", "", 8001).obj(),
            false,
        ),
    ];
    for (i, (p, existing, fits)) in cases.into_iter().enumerate() {
        let snap = snapshot(&[node("n").capacity(&[("pods", "10")]).obj()], &[existing]);
        let got = reasons(&snap, &p, "n");
        assert_eq!(got.is_empty(), fits, "case {i}: {got:?}");
        if !fits {
            assert_eq!(got, busy);
        }
    }
}

// node_name_test.go and node_unschedulable_test.go.
#[test]
fn node_name_and_unschedulable() {
    let snap = snapshot(
        &[
            node("n").capacity(&[("pods", "10")]).obj(),
            node("cordoned")
                .capacity(&[("pods", "10")])
                .unschedulable()
                .obj(),
        ],
        &[],
    );
    assert!(reasons(&snap, &pod("p").node("n").obj(), "n").is_empty());
    assert_eq!(
        reasons(&snap, &pod("p").node("other").obj(), "n"),
        ["node(s) didn't match the requested node name"]
    );
    assert_eq!(
        reasons(&snap, &pod("p").obj(), "cordoned"),
        ["node(s) were unschedulable"]
    );
    assert!(
        reasons(
            &snap,
            &pod("p")
                .toleration(
                    "node.kubernetes.io/unschedulable",
                    "Exists",
                    "",
                    "NoSchedule"
                )
                .obj(),
            "cordoned"
        )
        .is_empty()
    );
}

/// Four nodes in two zones, as podtopologyspread's tests lay them out.
fn spread_nodes() -> Vec<Node> {
    ["node-a", "node-b", "node-x", "node-y"]
        .iter()
        .map(|n| {
            let zone = if *n < "node-x" { "zone1" } else { "zone2" };
            node(n)
                .capacity(&[("pods", "100")])
                .label("zone", zone)
                .label("node", n)
                .obj()
        })
        .collect()
}

// filtering_test.go TestSingleConstraint.
#[test]
fn spread_filter_single_constraint() {
    let spread_pod = || {
        pod("p")
            .label("foo", "")
            .spread(1, "zone", "DoNotSchedule", exists("foo"))
    };
    let fits = |existing: &[Pod], p: &Pod| -> Vec<bool> {
        let snap = snapshot(&spread_nodes(), existing);
        ["node-a", "node-b", "node-x", "node-y"]
            .iter()
            .map(|n| reasons(&snap, p, n).is_empty())
            .collect()
    };
    assert_eq!(
        fits(&[], &spread_pod().obj()),
        [true; 4],
        "no existing pods"
    );
    let other_ns = [
        bound(1, "node-a").namespace("ns1").label("foo", "").obj(),
        bound(2, "node-x").namespace("ns2").label("foo", "").obj(),
    ];
    assert_eq!(
        fits(&other_ns, &spread_pod().obj()),
        [true; 4],
        "pods in other namespaces do not count"
    );
    let three_three = [
        bound(1, "node-a").label("foo", "").obj(),
        bound(2, "node-b").label("foo", "").obj(),
        bound(3, "node-b").label("foo", "").obj(),
        bound(4, "node-x").label("foo", "").obj(),
        bound(5, "node-y").label("foo", "").obj(),
        bound(6, "node-y").label("foo", "").obj(),
    ];
    assert_eq!(
        fits(&three_three, &spread_pod().obj()),
        [true; 4],
        "3/3: all fit"
    );
    let three_one = [
        bound(1, "node-a").label("foo", "").obj(),
        bound(2, "node-a").label("foo", "").obj(),
        bound(3, "node-b").label("foo", "").obj(),
        bound(4, "node-y").label("foo", "").obj(),
    ];
    assert_eq!(
        fits(&three_one, &spread_pod().obj()),
        [false, false, true, true],
        "3/1: only zone2 fits"
    );
    let snap = snapshot(&spread_nodes(), &three_one);
    assert_eq!(
        reasons(&snap, &spread_pod().obj(), "node-a"),
        ["node(s) didn't match pod topology spread constraints"]
    );
    // The incoming pod does not match its own selector: no self-match, so skew 3 - 1 = 2 > 1 still.
    let no_self = pod("p")
        .spread(1, "zone", "DoNotSchedule", exists("foo"))
        .obj();
    assert_eq!(fits(&three_one, &no_self), [false, false, true, true]);
    let terminating = [
        bound(1, "node-a").label("foo", "").terminating().obj(),
        bound(2, "node-a").label("foo", "").terminating().obj(),
        bound(3, "node-b").label("foo", "").obj(),
        bound(4, "node-y").label("foo", "").obj(),
    ];
    assert_eq!(
        fits(&terminating, &spread_pod().obj()),
        [true; 4],
        "terminating pods do not count"
    );
}

#[test]
fn spread_filter_missing_label_and_min_domains() {
    let mut nodes = spread_nodes();
    nodes.push(node("node-z").capacity(&[("pods", "100")]).obj());
    let snap = snapshot(&nodes, &[bound(1, "node-a").label("foo", "").obj()]);
    let p = pod("p")
        .label("foo", "")
        .spread(1, "zone", "DoNotSchedule", exists("foo"))
        .obj();
    assert_eq!(
        reasons(&snap, &p, "node-z"),
        ["node(s) didn't match pod topology spread constraints (missing required label)"]
    );
    // zone1 has 1, zone2 has 0: zone1 is at skew 2.
    assert!(!reasons(&snap, &p, "node-a").is_empty());
    assert!(reasons(&snap, &p, "node-x").is_empty());
    // filtering_test.go "pods spread across zone as 2/1, minDomains: 3": fewer domains than
    // minDomains makes the global minimum 0.
    let existing = [
        bound(1, "node-a").label("foo", "").obj(),
        bound(2, "node-b").label("foo", "").obj(),
        bound(3, "node-x").label("foo", "").obj(),
    ];
    let snap = snapshot(&spread_nodes(), &existing);
    let p = pod("p")
        .label("foo", "")
        .spread(2, "zone", "DoNotSchedule", exists("foo"))
        .spread_min_domains(3)
        .obj();
    let fits: Vec<bool> = ["node-a", "node-b", "node-x", "node-y"]
        .iter()
        .map(|n| reasons(&snap, &p, n).is_empty())
        .collect();
    assert_eq!(fits, [false, false, true, true]);
}

// scoring_test.go TestPodTopologySpreadScore (hostname constraint, maxSkew 1, 4 candidates):
// weight ln(4+2); raw scores a: round(2w) = 4, b: round(w) = 2, c: 0, d: round(3w) = 5;
// normalised 100 * (max + min - s) / max.
#[test]
fn spread_score_hostname() {
    let nodes: Vec<Node> = ["node-a", "node-b", "node-c", "node-d"]
        .iter()
        .map(|n| node(n).capacity(&[("pods", "100")]).obj())
        .collect();
    let existing = [
        bound(1, "node-a").label("foo", "").obj(),
        bound(2, "node-a").label("foo", "").obj(),
        bound(3, "node-b").label("foo", "").obj(),
        bound(4, "node-d").label("foo", "").obj(),
        bound(5, "node-d").label("foo", "").obj(),
        bound(6, "node-d").label("foo", "").obj(),
    ];
    let snap = snapshot(&nodes, &existing);
    let p = pod("p")
        .label("foo", "")
        .spread(1, "kubernetes.io/hostname", "ScheduleAnyway", exists("foo"))
        .obj();
    let got: Vec<i64> = scores(&snap, &p, &["node-a", "node-b", "node-c", "node-d"])
        .iter()
        .map(|s| s.pod_topology_spread)
        .collect();
    assert_eq!(got, [20, 60, 100, 0]);
    // A node without the topology key is not scored (explicit constraints need every key).
    let mut nodes = nodes;
    nodes.push(
        node("bare")
            .capacity(&[("pods", "100")])
            .no_hostname()
            .obj(),
    );
    let snap = snapshot(&nodes, &existing);
    let got = scores(&snap, &p, &["node-c", "bare"]);
    assert_eq!(
        (got[0].pod_topology_spread, got[1].pod_topology_spread),
        (100, 0)
    );
}

#[test]
fn system_default_spreading_spreads_one_owners_replicas() {
    // Two zones; zone1's node already runs two replicas of the owner, zone2's none.
    let nodes: Vec<Node> = [("a", "zone1"), ("b", "zone1"), ("c", "zone2")]
        .iter()
        .map(|(n, z)| {
            node(n)
                .capacity(&[("pods", "100")])
                .label("topology.kubernetes.io/zone", z)
                .obj()
        })
        .collect();
    let existing = [
        bound(1, "a").label("app", "web").obj(),
        bound(2, "a").label("app", "web").obj(),
        bound(3, "b").label("app", "other").obj(),
    ];
    let snap = snapshot(&nodes, &existing);
    let rs_selector = label_eq("app", "web");
    let default = bosun_scheduler::default_spread_selector(&[], Some(&rs_selector));
    let p = pod("p").label("app", "web").obj();
    let prepared =
        bosun_scheduler::PreparedPod::new(&p, default.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let got =
        Scheduler::new(SchedulerConfig::default()).score_nodes(&snap, &prepared, &["a", "b", "c"]);
    let spread: Vec<i64> = got.iter().map(|s| s.pod_topology_spread).collect();
    assert!(
        spread[2] > spread[1] && spread[1] > spread[0],
        "fewer replicas score higher: {spread:?}"
    );
    assert_eq!(spread[2], 100);
    // Without an owner selector there is no default spreading.
    let plain = scores(&snap, &p, &["a", "b", "c"]);
    assert!(plain.iter().all(|s| s.pod_topology_spread == 0));
}
