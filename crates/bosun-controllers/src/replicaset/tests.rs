//! Kubernetes' tables (replica_set_test.go, replica_set_utils_test.go,
//! controller_utils_test.go), ported, and property tests.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use proptest::prelude::*;

use super::*;
use crate::podutil::POD_DELETION_COST;
use crate::testutil::{labels, ts};

const NOW: i64 = 1_700_000_000;

fn replica_set(
    replicas: i32,
    selector: &[(&str, &str)],
    template: &[(&str, &str)],
    min_ready: i32,
) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("foobar".into()),
            namespace: Some("default".into()),
            uid: Some("rs-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(min_ready),
            selector: LabelSelector {
                match_labels: Some(labels(selector)),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(template)),
                    ..Default::default()
                }),
                spec: None,
            }),
        }),
        status: None,
    }
}

/// A pod: phase, ready (since when), node.
fn pod(name: &str, phase: &str, ready_since: Option<i64>, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("name", "foo")])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready_since.is_some() {
                    "True"
                } else {
                    "False"
                }
                .into(),
                last_transition_time: ready_since.map(|s| Time(ts(s))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn created(mut p: Pod, at: i64) -> Pod {
    p.metadata.creation_timestamp = Some(Time(ts(at)));
    p
}

fn restarts(mut p: Pod, n: i32) -> Pod {
    p.status.as_mut().expect("status").container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        restart_count: n,
        ..Default::default()
    }]);
    p
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn slow_start_batch_table() {
    // TestSlowStartBatch: (count, calls that succeed, expected successes, expected calls).
    for (count, limit, want_successes, want_calls) in
        [(10, 0, 0, 1), (10, 10, 10, 10), (10, 5, 5, 7)]
    {
        let (mut calls, mut successes) = (0, 0);
        for batch in slow_start_batches(count, SLOW_START_INITIAL_BATCH_SIZE) {
            let mut failed = false;
            for _ in 0..batch {
                calls += 1;
                if calls > limit {
                    failed = true;
                } else {
                    successes += 1;
                }
            }
            if failed {
                break;
            }
        }
        assert_eq!(
            (successes, calls),
            (want_successes, want_calls),
            "count {count} limit {limit}"
        );
    }
    assert_eq!(slow_start_batches(10, 1), [1, 2, 4, 3]);
    assert_eq!(slow_start_batches(0, 1), Vec::<usize>::new());
}

#[test]
fn manage_replicas_diffs_and_bounds_by_burst() {
    let rs = replica_set(5, &[("name", "foo")], &[("name", "foo")], 0);
    let pods: Vec<Pod> = (0..8)
        .map(|i| pod(&format!("p{i}"), "Running", Some(NOW - 100), "n"))
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    assert_eq!(
        manage_replicas(&rs, &refs[..2], &[], BURST_REPLICAS, ts(NOW)),
        Manage::Create(3)
    );
    assert_eq!(
        manage_replicas(&rs, &refs[..2], &[], 2, ts(NOW)),
        Manage::Create(2)
    );
    assert_eq!(
        manage_replicas(&rs, &refs[..5], &[], BURST_REPLICAS, ts(NOW)),
        Manage::Nothing
    );
    let Manage::Delete(keys) = manage_replicas(&rs, &refs, &[], 2, ts(NOW)) else {
        panic!("expected deletions");
    };
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.starts_with("default/p")));
}

#[test]
fn a_deleted_or_waiting_replica_set_is_not_managed() {
    let rs = replica_set(1, &[("name", "foo")], &[("name", "foo")], 0);
    assert!(needs_manage(&rs, true));
    assert!(!needs_manage(&rs, false));
    let mut deleting = rs;
    deleting.metadata.deletion_timestamp = Some(Time(ts(1)));
    assert!(!needs_manage(&deleting, true));
}

#[test]
fn sorting_active_pods() {
    // TestSortingActivePods: listed in the order they should be deleted.
    let expected = [
        created(pod("unscheduled", "Pending", None, ""), NOW - 10),
        created(pod("pending", "Pending", None, "n"), NOW - 10),
        created(pod("unknown", "Unknown", None, "n"), NOW - 10),
        created(pod("running-not-ready", "Running", None, "n"), NOW - 10),
        created(
            pod("ready-recently", "Running", Some(NOW - 10), "n"),
            NOW - 10_000,
        ),
        created(
            restarts(
                pod("ready-long-restarted", "Running", Some(NOW - 5_000), "n"),
                3,
            ),
            NOW - 10_000,
        ),
        created(
            pod("ready-long-newer", "Running", Some(NOW - 5_000), "n"),
            NOW - 6_000,
        ),
        created(
            pod("ready-long-older", "Running", Some(NOW - 5_000), "n"),
            NOW - 100_000,
        ),
    ];
    let mut shuffled: Vec<&Pod> = expected.iter().rev().collect();
    shuffled.sort_by(|a, b| deletion_order(a, 0, b, 0, Some(ts(NOW))));
    assert_eq!(
        names(&shuffled),
        names(&expected.iter().collect::<Vec<_>>())
    );
}

#[test]
fn sorting_active_pods_with_ranks_and_costs() {
    // TestSortingActivePodsWithRanks.
    let ready =
        |name: &str, since: i64| created(pod(name, "Running", Some(since), "n"), since - 10);
    let now = Some(ts(NOW));
    // A lower deletion cost goes first, before rank is looked at.
    let mut cheap = ready("cheap", NOW - 1000);
    cheap.metadata.annotations = Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
    let dear = ready("dear", NOW - 1000);
    assert_eq!(deletion_order(&cheap, 0, &dear, 10, now), Ordering::Less);
    // More co-located related pods goes first.
    let a = ready("a", NOW - 1000);
    let b = ready("b", NOW - 1000);
    assert_eq!(deletion_order(&a, 3, &b, 1, now), Ordering::Less);
    // Ready 10 s vs 12 s ago: the same log2 bucket of nanoseconds, so the time does not
    // decide; with nothing else different the uid does.
    let p10 = ready("p10", NOW - 10);
    let p12 = ready("p12", NOW - 12);
    assert_eq!(
        deletion_order(&p10, 0, &p12, 0, now),
        Ordering::Less,
        "uid-p10 < uid-p12"
    );
    // As in Kubernetes, differing ready times in one bucket go to the uid at once: restarts
    // only count when the ready times are equal.
    let p12_restarted = restarts(ready("p12", NOW - 12), 1);
    assert_eq!(
        deletion_order(&p10, 0, &p12_restarted, 0, now),
        Ordering::Less
    );
    let p10_restarted = restarts(ready("p11", NOW - 10), 1);
    assert_eq!(
        deletion_order(&p10, 0, &p10_restarted, 0, now),
        Ordering::Greater,
        "restarts decide"
    );
    // 10 s vs 100 s: different buckets, the more recently ready goes first.
    let p100 = ready("a100", NOW - 100);
    assert_eq!(deletion_order(&p10, 0, &p100, 0, now), Ordering::Less);
    // Without `now`, plain time order.
    assert_eq!(deletion_order(&p12, 0, &p10, 0, None), Ordering::Greater);
}

#[test]
fn sidecar_restarts_break_ties_after_regular_ones() {
    let with_sidecar = |name: &str, n: i32| {
        let mut p = pod(name, "Running", Some(NOW - 1000), "n");
        p.spec.as_mut().expect("spec").init_containers = Some(vec![Container {
            name: "side".into(),
            restart_policy: Some("Always".into()),
            ..Default::default()
        }]);
        p.status.as_mut().expect("status").init_container_statuses = Some(vec![ContainerStatus {
            name: "side".into(),
            restart_count: n,
            ..Default::default()
        }]);
        p
    };
    let a = with_sidecar("a", 5);
    let b = with_sidecar("b", 1);
    assert_eq!(deletion_order(&a, 0, &b, 0, Some(ts(NOW))), Ordering::Less);
}

#[test]
fn pods_to_delete_prefers_doubled_up_nodes() {
    // TestGetPodsToDelete: with everything else equal, pods on a node crowded with
    // related pods go first.
    let p =
        |name: &str, node: &str| created(pod(name, "Running", Some(NOW - 1000), node), NOW - 2000);
    let pods = [p("a", "n1"), p("b", "n2"), p("c", "n2")];
    let related = [p("a", "n1"), p("b", "n2"), p("c", "n2"), p("x", "n2")];
    let pods_ref: Vec<&Pod> = pods.iter().collect();
    let related_ref: Vec<&Pod> = related.iter().collect();
    let chosen = pods_to_delete(&pods_ref, &related_ref, 2, ts(NOW));
    assert_eq!(names(&chosen), ["b", "c"]);
    // All of them: no ordering needed.
    assert_eq!(pods_to_delete(&pods_ref, &related_ref, 3, ts(NOW)).len(), 3);
}

#[test]
fn calculate_status_table() {
    // TestCalculateStatus: (template labels, pods (fully labelled?, ready), minReadySeconds,
    // expected replicas, fully labeled, ready, available).
    let full = [("name", "foo"), ("type", "production")];
    let partial = [("name", "foo")];
    let p = |name: &str, fully: bool, ready: bool| {
        let mut p = pod(
            name,
            if ready { "Running" } else { "Pending" },
            ready.then_some(NOW - 60),
            "n",
        );
        if fully {
            p.metadata.labels = Some(labels(&full));
        }
        p
    };
    type Case = (&'static str, Vec<Pod>, i32, (i32, i32, i32, i32));
    let cases: Vec<Case> = vec![
        (
            "1 fully labelled pod",
            vec![p("1", true, true)],
            0,
            (1, 1, 1, 1),
        ),
        (
            "1 not fully labelled pod",
            vec![p("1", false, true)],
            0,
            (1, 0, 1, 1),
        ),
        (
            "2 fully labelled pods",
            vec![p("1", true, true), p("2", true, true)],
            0,
            (2, 2, 2, 2),
        ),
        (
            "2 not fully labelled pods",
            vec![p("1", false, true), p("2", false, true)],
            0,
            (2, 0, 2, 2),
        ),
        (
            "1 fully, 1 not",
            vec![p("1", true, true), p("2", false, true)],
            0,
            (2, 1, 2, 2),
        ),
        (
            "1 non-ready pod",
            vec![p("1", true, false)],
            0,
            (1, 1, 0, 0),
        ),
        (
            "1 ready but non-available pod",
            vec![p("1", true, true)],
            3600,
            (1, 1, 1, 0),
        ),
    ];
    for (name, pods, min_ready, (replicas, fully, ready, available)) in cases {
        let rs = replica_set(1, &partial, &full, min_ready);
        let refs: Vec<&Pod> = pods.iter().collect();
        let s = calculate_status(&rs, &refs, None, ts(NOW));
        let got = (
            s.replicas,
            s.fully_labeled_replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        );
        assert_eq!(got, (replicas, fully, ready, available), "{name}");
    }
}

#[test]
fn calculate_status_conditions_table() {
    // TestCalculateStatusConditions.
    let failure = ReplicaSetCondition {
        type_: REPLICA_FAILURE.into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some("earlier".into()),
        last_transition_time: Some(Time(ts(1))),
    };
    let pods = [pod("1", "Running", Some(NOW - 60), "n")];
    let refs: Vec<&Pod> = pods.iter().collect();
    let two = [
        pod("1", "Running", Some(NOW - 60), "n"),
        pod("2", "Running", Some(NOW - 60), "n"),
    ];
    let two_refs: Vec<&Pod> = two.iter().collect();
    let rs2 = replica_set(2, &[("name", "foo")], &[("name", "foo")], 0);
    let rs1 = replica_set(1, &[("name", "foo")], &[("name", "foo")], 0);
    let reason = |s: &ReplicaSetStatus| {
        s.conditions
            .as_ref()
            .and_then(|c| c.first())
            .and_then(|c| c.reason.clone())
    };
    let s = calculate_status(&rs2, &refs, Some("fake manageReplicasErr"), ts(NOW));
    assert_eq!(reason(&s).as_deref(), Some("FailedCreate"));
    assert_eq!(
        s.conditions
            .as_ref()
            .and_then(|c| c[0].message.clone())
            .as_deref(),
        Some("fake manageReplicasErr")
    );
    let s = calculate_status(&rs1, &two_refs, Some("fake manageReplicasErr"), ts(NOW));
    assert_eq!(reason(&s).as_deref(), Some("FailedDelete"));
    let mut failing = rs2.clone();
    failing.status = Some(ReplicaSetStatus {
        conditions: Some(vec![failure.clone()]),
        ..Default::default()
    });
    let s = calculate_status(&failing, &refs, Some("again"), ts(NOW));
    assert_eq!(
        s.conditions,
        Some(vec![failure]),
        "an existing failure is kept as it is"
    );
    let s = calculate_status(&failing, &refs, None, ts(NOW));
    assert_eq!(s.conditions, None, "success clears the failure");
}

#[test]
fn status_update_only_when_something_changed() {
    let rs = replica_set(1, &[("name", "foo")], &[("name", "foo")], 0);
    let pods = [pod("1", "Running", Some(NOW - 60), "n")];
    let refs: Vec<&Pod> = pods.iter().collect();
    let s = calculate_status(&rs, &refs, None, ts(NOW));
    let written = status_update(&rs, &s).expect("first status is written");
    assert_eq!(written.observed_generation, Some(1));
    let mut seen = rs.clone();
    seen.status = Some(written.clone());
    assert_eq!(
        status_update(&seen, &calculate_status(&seen, &refs, None, ts(NOW))),
        None
    );
}

#[test]
fn resync_after_min_ready_seconds() {
    let rs = replica_set(2, &[("name", "foo")], &[("name", "foo")], 30);
    let ready_not_available = ReplicaSetStatus {
        replicas: 2,
        ready_replicas: Some(2),
        available_replicas: Some(1),
        ..Default::default()
    };
    assert_eq!(
        min_ready_resync(&rs, &ready_not_available, true),
        Some(Duration::from_secs(30))
    );
    assert_eq!(min_ready_resync(&rs, &ready_not_available, false), None);
    let all_available = ReplicaSetStatus {
        available_replicas: Some(2),
        ..ready_not_available
    };
    assert_eq!(min_ready_resync(&rs, &all_available, true), None);
}

#[test]
fn claims_by_selector_and_owner() {
    let rs = replica_set(2, &[("name", "foo")], &[("name", "foo")], 0);
    let mut mine = pod("mine", "Running", None, "n");
    mine.metadata.owner_references = Some(vec![crate::podutil::new_controller_ref(
        "apps/v1",
        "ReplicaSet",
        &rs.metadata,
    )]);
    let mut mine_relabelled = mine.clone();
    mine_relabelled.metadata.name = Some("relabelled".into());
    mine_relabelled.metadata.labels = Some(labels(&[("name", "bar")]));
    let orphan = pod("orphan", "Running", None, "n");
    let mut other_orphan = pod("other", "Running", None, "n");
    other_orphan.metadata.labels = None;
    let mut finished = pod("finished", "Succeeded", None, "n");
    finished.metadata.owner_references = mine.metadata.owner_references.clone();
    let pods = [mine, mine_relabelled, orphan, other_orphan, finished];
    let claims: Vec<(String, Claim)> = claim_pods(&rs, &pods)
        .expect("valid selector")
        .into_iter()
        .map(|(p, c)| (p.metadata.name.clone().unwrap_or_default(), c))
        .collect();
    assert_eq!(
        claims,
        [
            ("mine".to_string(), Claim::Owned),
            ("relabelled".to_string(), Claim::Release),
            ("orphan".to_string(), Claim::Adopt),
            ("other".to_string(), Claim::Ignore),
        ]
    );
}

#[test]
fn related_pods_are_those_of_sibling_replica_sets() {
    let owner = ObjectMeta {
        name: Some("web".into()),
        uid: Some("dep".into()),
        ..Default::default()
    };
    let mut a = replica_set(1, &[("v", "1")], &[("v", "1")], 0);
    a.metadata.owner_references = Some(vec![crate::podutil::new_controller_ref(
        "apps/v1",
        "Deployment",
        &owner,
    )]);
    let mut b = a.clone();
    b.metadata.name = Some("b".into());
    b.spec.as_mut().expect("spec").selector.match_labels = Some(labels(&[("v", "2")]));
    let unrelated = replica_set(1, &[("v", "3")], &[("v", "3")], 0);
    let mut pods = Vec::new();
    for v in ["1", "2", "3"] {
        let mut p = pod(&format!("p{v}"), "Running", None, "n");
        p.metadata.labels = Some(labels(&[("v", v)]));
        pods.push(p);
    }
    let related = related_pods(&a, &[a.clone(), b, unrelated.clone()], &pods);
    assert_eq!(names(&related), ["p1", "p2"]);
    assert!(
        related_pods(&unrelated, std::slice::from_ref(&unrelated), &pods).is_empty(),
        "no controller, no relatives"
    );
}

fn arb_pod() -> impl Strategy<Value = Pod> {
    (
        prop_oneof![Just("Pending"), Just("Running"), Just("Unknown"), Just("")],
        proptest::option::of(0..100_000i64),
        prop_oneof![Just(""), Just("n1"), Just("n2")],
        0..5i32,
        proptest::option::of(0..100_000i64),
        -3..3i32,
    )
        .prop_map(|(phase, ready, node, r, created_at, cost)| {
            let mut p = restarts(pod("x", phase, ready.map(|s| NOW - s), node), r);
            p.metadata.creation_timestamp = created_at.map(|s| Time(ts(NOW - s)));
            p.metadata.annotations =
                Some([(POD_DELETION_COST.to_string(), cost.to_string())].into());
            p
        })
}

proptest! {
    /// Batches of slow start double, never exceed what is left, and add up to the count.
    #[test]
    fn slow_start_batches_double_and_sum(count in 0..2000usize, initial in 1..4usize) {
        let b = slow_start_batches(count, initial);
        prop_assert_eq!(b.iter().sum::<usize>(), count);
        prop_assert!(b.windows(2).all(|w| w[1] <= 2 * w[0]));
        prop_assert!(b.first().is_none_or(|f| *f <= initial));
    }

    /// The deletion order is a total order: antisymmetric and transitive on any three pods.
    #[test]
    fn deletion_order_is_consistent(mut pods in proptest::collection::vec(arb_pod(), 3), ranks in proptest::collection::vec(0..3usize, 3)) {
        for (i, p) in pods.iter_mut().enumerate() {
            p.metadata.uid = Some(format!("uid-{i}"));
        }
        let now = Some(ts(NOW));
        let o = |i: usize, j: usize| deletion_order(&pods[i], ranks[i], &pods[j], ranks[j], now);
        for i in 0..3 {
            for j in 0..3 {
                prop_assert_eq!(o(i, j), o(j, i).reverse());
                for k in 0..3 {
                    if o(i, j) != Ordering::Greater && o(j, k) != Ordering::Greater {
                        prop_assert!(o(i, k) != Ordering::Greater, "{} {} {}", i, j, k);
                    }
                }
            }
        }
    }

    /// Scale-down picks exactly the surplus (bounded by the burst), each pod once, and
    /// never a ready pod while an unready one of the same placement is spared.
    #[test]
    fn manage_replicas_deletes_the_surplus_once(pods in proptest::collection::vec(arb_pod(), 0..30), want in 0..30i32, burst in 1..40usize) {
        let pods: Vec<Pod> = pods.into_iter().enumerate().map(|(i, mut p)| {
            p.metadata.name = Some(format!("p{i}"));
            p.metadata.uid = Some(format!("uid-{i}"));
            p
        }).collect();
        let rs = replica_set(want, &[("name", "foo")], &[("name", "foo")], 0);
        let refs: Vec<&Pod> = pods.iter().collect();
        match manage_replicas(&rs, &refs, &refs, burst, ts(NOW)) {
            Manage::Nothing => prop_assert_eq!(pods.len(), want as usize),
            Manage::Create(n) => prop_assert_eq!(n, (want as usize - pods.len()).min(burst)),
            Manage::Delete(keys) => {
                prop_assert_eq!(keys.len(), (pods.len() - want as usize).min(burst));
                prop_assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
                let chosen: HashSet<&String> = keys.iter().collect();
                let unassigned_spared = pods.iter().any(|p| crate::podutil::node_name(p).is_empty() && !chosen.contains(&pod_key(p)));
                let assigned_chosen = pods.iter().any(|p| !crate::podutil::node_name(p).is_empty() && chosen.contains(&pod_key(p)));
                prop_assert!(!(unassigned_spared && assigned_chosen), "unscheduled pods go first");
            }
        }
    }
}

// controller_utils_test.go TestCreatePodsWithGenerateName / GetPodFromTemplate.
#[test]
fn pods_come_from_the_template_with_a_controller_reference() {
    let mut rs = replica_set(3, &[("app", "web")], &[("app", "web"), ("tier", "fe")], 0);
    rs.spec
        .as_mut()
        .expect("spec")
        .template
        .as_mut()
        .expect("template")
        .spec = Some(PodSpec {
        containers: vec![Container {
            name: "c".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let p = pod_from_template(&rs).expect("a pod");
    assert_eq!(p.metadata.generate_name.as_deref(), Some("foobar-"));
    assert_eq!(p.metadata.name, None);
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        p.metadata.labels,
        Some(labels(&[("app", "web"), ("tier", "fe")]))
    );
    let refs = p.metadata.owner_references.expect("owner references");
    assert_eq!(refs.len(), 1);
    let r = &refs[0];
    assert_eq!(
        (
            r.api_version.as_str(),
            r.kind.as_str(),
            r.name.as_str(),
            r.uid.as_str()
        ),
        ("apps/v1", "ReplicaSet", "foobar", "rs-uid")
    );
    assert_eq!(
        (r.controller, r.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(p.spec.expect("spec").containers[0].name, "c");
    // No labels: no pod (it could never be selected).
    assert!(pod_from_template(&replica_set(3, &[("app", "web")], &[], 0)).is_none());
}
