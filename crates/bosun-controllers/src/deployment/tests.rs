//! Kubernetes' own test tables (rolling_test.go, sync_test.go, progress_test.go,
//! recreate_test.go, deployment_util_test.go), ported, and property tests of the rollout
//! invariants.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, DeploymentStrategy,
    ReplicaSet, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::util::*;
use super::*;
use crate::testutil::{labels, ts};

fn int(i: i32) -> IntOrString {
    IntOrString::Int(i)
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

/// deployment_controller_test.go newDeployment: RollingUpdate with maxSurge and
/// maxUnavailable 0 unless given.
fn new_deployment(
    name: &str,
    replicas: i32,
    revision_history_limit: Option<i32>,
    max_surge: Option<IntOrString>,
    max_unavailable: Option<IntOrString>,
    selector: &[(&str, &str)],
) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            annotations: Some(BTreeMap::new()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(selector)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(max_surge.unwrap_or(int(0))),
                    max_unavailable: Some(max_unavailable.unwrap_or(int(0))),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(selector)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("app:1".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            revision_history_limit,
            progress_deadline_seconds: Some(i32::MAX),
            ..Default::default()
        }),
        status: None,
    }
}

/// The "foo" deployment of Kubernetes' tables with maxSurge and maxUnavailable.
fn foo(replicas_: i32, surge: i32, unavailable: i32, selector: &[(&str, &str)]) -> Deployment {
    new_deployment(
        "foo",
        replicas_,
        None,
        Some(int(surge)),
        Some(int(unavailable)),
        selector,
    )
}

/// deployment_controller_test.go rs().
fn rs(name: &str, replicas: i32, selector: &[(&str, &str)], created: Option<i64>) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: created.map(|s| Time(ts(s))),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(selector)),
                match_expressions: None,
            },
            template: Some(PodTemplateSpec::default()),
            ..Default::default()
        }),
        status: None,
    }
}

fn with_status(mut r: ReplicaSet, status_replicas: i32, available: i32) -> ReplicaSet {
    r.status = Some(ReplicaSetStatus {
        replicas: status_replicas,
        available_replicas: Some(available),
        ..Default::default()
    });
    r
}

fn syncer<'a>(d: &Deployment, rss: &[ReplicaSet], pods: &'a [Pod]) -> Syncer<'a> {
    Syncer {
        d: d.clone(),
        rs_list: rss.to_vec(),
        pods,
        now: ts(1_700_000_000),
        plan: Plan::default(),
    }
}

/// The replicas each ReplicaSet update in a plan sets, by name.
fn updated_sizes(plan: &Plan) -> BTreeMap<String, i32> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::UpdateReplicaSet(rs) => Some((
                rs.metadata.name.clone().unwrap_or_default(),
                rs_replicas(rs),
            )),
            _ => None,
        })
        .collect()
}

// ---- deployment_util_test.go ----

#[test]
fn resolve_fenceposts_table() {
    // TestResolveFenceposts.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, i32, i32, i32, bool);
    let cases: &[Case] = &[
        (Some("0%"), Some("0%"), 0, 0, 1, false),
        (Some("39%"), Some("39%"), 10, 4, 3, false),
        (Some("oops"), Some("39%"), 10, 0, 0, true),
        (Some("55%"), Some("urg"), 10, 0, 0, true),
        (None, Some("39%"), 10, 0, 3, false),
        (Some("39%"), None, 10, 4, 0, false),
        (None, None, 10, 0, 1, false),
    ];
    for &(surge, unavailable, desired, want_surge, want_unavailable, want_err) in cases {
        let surge = surge.map(pct);
        let unavailable = unavailable.map(pct);
        let got = resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), desired);
        match got {
            Ok((s, u)) => {
                assert!(!want_err, "{surge:?}/{unavailable:?}: expected an error");
                assert_eq!(
                    (s, u),
                    (want_surge, want_unavailable),
                    "{surge:?}/{unavailable:?}"
                );
            }
            Err(e) => assert!(want_err, "{surge:?}/{unavailable:?}: unexpected {e}"),
        }
    }
    assert_eq!(
        scaled_value(&pct("oops"), 10, true).map_err(|e| e.to_string()),
        Err("invalid value for IntOrString: invalid type: string is not a percentage".into())
    );
}

#[test]
fn max_unavailable_table() {
    // TestMaxUnavailable.
    let d = |replicas: i32, mu: IntOrString| {
        new_deployment("foo", replicas, None, Some(int(1)), Some(mu), &[])
    };
    assert_eq!(max_unavailable(&d(10, int(5))), 5);
    assert_eq!(max_unavailable(&d(10, int(10))), 10);
    assert_eq!(max_unavailable(&d(5, int(10))), 5);
    assert_eq!(max_unavailable(&d(0, int(10))), 0);
    assert_eq!(max_unavailable(&d(10, pct("50%"))), 5);
    assert_eq!(max_unavailable(&d(10, pct("100%"))), 10);
    assert_eq!(max_unavailable(&d(5, pct("100%"))), 5);
    let mut recreate = d(10, int(5));
    recreate.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    assert_eq!(max_unavailable(&recreate), 0);
}

#[test]
fn defaults_are_a_quarter_each() {
    let mut d = new_deployment("foo", 10, None, None, None, &[]);
    d.spec.as_mut().expect("spec").strategy = None;
    assert_eq!(
        (max_surge(&d), max_unavailable(&d)),
        (3, 2),
        "25% up and 25% down of 10"
    );
}

#[test]
fn new_rs_new_replicas_table() {
    // TestNewRSNewReplicas: (strategy, deployment replicas, new RS replicas, maxSurge,
    // old RS replicas, expected).
    let cases = [
        ("RollingUpdate", 1, 5, 1, 5, 5),
        ("RollingUpdate", 6, 2, 10, 4, 6),
        ("Recreate", 3, 1, 1, 1, 3),
    ];
    for (strategy, dep, new, surge, old, want) in cases {
        let mut d = foo(dep, surge, 1, &[]);
        d.spec
            .as_mut()
            .expect("spec")
            .strategy
            .as_mut()
            .expect("strategy")
            .type_ = Some(strategy.into());
        let new_rs = rs("foo-new", new, &[], None);
        let old_rs = rs("foo-old", old, &[], None);
        assert_eq!(
            new_rs_new_replicas(&d, &[&old_rs], &new_rs),
            Ok(want),
            "{strategy} {dep} {new}"
        );
    }
}

fn status(replicas: i32, updated: i32, ready: i32, available: i32) -> DeploymentStatus {
    DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        ..Default::default()
    }
}

#[test]
fn deployment_complete_table() {
    // TestDeploymentComplete: (desired, current, updated, available, maxUnavailable,
    // maxSurge, expected).
    let cases = [
        (5, 5, 5, 4, 1, 0, false),
        (5, 5, 5, 3, 1, 0, false),
        (5, 5, 5, 5, 0, 0, true),
        (5, 5, 4, 5, 0, 0, false),
        (1, 2, 1, 1, 0, 1, false),
        (1, 1, 1, 0, 1, 1, false),
    ];
    for (desired, current, updated, available, mu, ms, want) in cases {
        let mut d = foo(desired, ms, mu, &[]);
        d.status = Some(status(current, updated, 0, available));
        let s = d.status.clone().expect("status");
        assert_eq!(
            deployment_complete(&d, &s),
            want,
            "{desired} {current} {updated} {available}"
        );
    }
}

#[test]
fn deployment_progressing_table() {
    // TestDeploymentProgressing: old (current, updated, ready, available) -> new.
    let cases = [
        ((10, 4, 4, 4), (10, 6, 4, 4), true),
        ((10, 4, 4, 4), (10, 4, 4, 4), false),
        ((10, 4, 6, 6), (8, 4, 6, 6), true),
        ((10, 7, 3, 3), (10, 6, 3, 3), false),
        ((10, 4, 7, 7), (8, 8, 5, 5), true),
        ((10, 10, 9, 8), (10, 10, 10, 8), true),
        ((10, 10, 10, 9), (10, 10, 10, 10), true),
    ];
    for (old, new, want) in cases {
        let d = Deployment {
            status: Some(status(old.0, old.1, old.2, old.3)),
            ..Default::default()
        };
        assert_eq!(
            deployment_progressing(&d, &status(new.0, new.1, new.2, new.3)),
            want,
            "{old:?} -> {new:?}"
        );
    }
}

fn progressing(status_: &str, reason: &str, updated_at: Option<i64>) -> DeploymentCondition {
    DeploymentCondition {
        type_: PROGRESSING.into(),
        status: status_.into(),
        reason: Some(reason.into()),
        last_update_time: updated_at.map(|s| Time(ts(s))),
        last_transition_time: updated_at.map(|s| Time(ts(s))),
        message: None,
    }
}

#[test]
fn deployment_timed_out_table() {
    // TestDeploymentTimedOut (a nil deadline is defaulted to 600 s here, so the "no
    // deadline" case is the infinite one).
    let d = |pds: i32, c: DeploymentCondition| {
        let mut d = new_deployment("foo", 1, None, None, None, &[("a", "b")]);
        d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(pds);
        d.status = Some(DeploymentStatus {
            conditions: Some(vec![c]),
            ..Default::default()
        });
        d
    };
    let t = |min: i64, sec: i64| 1_451_606_400 + min * 60 + sec; // 2016-01-01T00:min:sec
    let cases = [
        (
            d(i32::MAX, progressing("Unknown", "", Some(t(1, 9)))),
            t(1, 20),
            false,
        ),
        (
            d(10, progressing("Unknown", "", Some(t(1, 9)))),
            t(1, 20),
            true,
        ),
        (
            d(10, progressing("Unknown", "", Some(t(1, 11)))),
            t(1, 20),
            false,
        ),
        (
            d(10, progressing("True", NEW_RS_AVAILABLE_REASON, None)),
            t(1, 20),
            false,
        ),
        (
            d(10, progressing("False", TIMED_OUT_REASON, Some(t(1, 19)))),
            t(1, 20),
            true,
        ),
    ];
    for (i, (d, now, want)) in cases.into_iter().enumerate() {
        let s = d.status.clone().expect("status");
        assert_eq!(deployment_timed_out(&d, &s, ts(now)), want, "case {i}");
    }
}

#[test]
fn revision_annotations_and_history() {
    // TestAnnotationUtils: the new ReplicaSet's revision is raised to max old + 1 and the
    // deployment's annotations (but not the skipped ones) are copied.
    let mut d = new_deployment("foo", 1, None, None, None, &[]);
    let a = d.metadata.annotations.get_or_insert_with(Default::default);
    a.insert("team".into(), "web".into());
    a.insert(LAST_APPLIED_CONFIG_ANNOTATION.into(), "{}".into());
    let mut r = rs("foo-1", 1, &[], None);
    for i in 1..=5 {
        assert!(set_new_replica_set_annotations(
            &d,
            &mut r,
            &i.to_string(),
            true,
            MAX_REV_HISTORY_LENGTH_IN_CHARS
        ));
        assert_eq!(revision(&r.metadata), Ok(i));
    }
    let ann = r.metadata.annotations.clone().expect("annotations");
    assert_eq!(ann.get("team").map(String::as_str), Some("web"));
    assert!(!ann.contains_key(LAST_APPLIED_CONFIG_ANNOTATION));
    assert_eq!(
        ann.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
        Some("1,2,3,4")
    );
    // A lower revision never lowers it.
    assert!(!set_new_replica_set_annotations(
        &d,
        &mut r,
        "3",
        true,
        MAX_REV_HISTORY_LENGTH_IN_CHARS
    ));
    assert_eq!(revision(&r.metadata), Ok(5));
    // The history is cut from the front to stay within the limit.
    let mut r = rs("foo-1", 1, &[], None);
    for i in 1..=6 {
        set_new_replica_set_annotations(&d, &mut r, &i.to_string(), true, 5);
    }
    let ann = r.metadata.annotations.clone().expect("annotations");
    assert_eq!(
        ann.get(REVISION_HISTORY_ANNOTATION).map(String::as_str),
        Some("3,4,5"),
        "at most 5 characters"
    );
}

#[test]
fn max_and_last_revision() {
    let with_rev = |name: &str, rev: &str| {
        let mut r = rs(name, 1, &[], None);
        r.metadata.annotations = Some([(REVISION_ANNOTATION.to_string(), rev.to_string())].into());
        r
    };
    let rss = [
        with_rev("a", "3"),
        with_rev("b", "7"),
        with_rev("c", "junk"),
        with_rev("d", "5"),
    ];
    assert_eq!(max_revision(&rss), 7);
    assert_eq!(last_revision(&rss), 5);
    assert_eq!(max_revision(&[]), 0);
}

#[test]
fn find_new_and_old_replica_sets() {
    // TestFindNewReplicaSet / TestFindOldReplicaSets: the oldest ReplicaSet with the
    // deployment's template is the new one, the hash label aside.
    let d = new_deployment("foo", 1, None, None, None, &[("app", "web")]);
    let mut same_newer = rs("foo-b", 1, &[], Some(20));
    let mut t = template(&d);
    t.metadata
        .as_mut()
        .expect("meta")
        .labels
        .as_mut()
        .expect("labels")
        .insert(POD_TEMPLATE_HASH_LABEL.into(), "h1".into());
    same_newer.spec.as_mut().expect("spec").template = Some(t.clone());
    let mut same_older = same_newer.clone();
    same_older.metadata.name = Some("foo-a".into());
    same_older.metadata.creation_timestamp = Some(Time(ts(10)));
    let other = rs("foo-c", 0, &[], Some(5));
    let rss = [same_newer.clone(), other.clone(), same_older.clone()];
    let new = find_new_replica_set(&d, &rss).expect("new rs");
    assert_eq!(new.metadata.name.as_deref(), Some("foo-a"));
    let (required, all) = find_old_replica_sets(&d, &rss);
    assert_eq!(all.len(), 2);
    assert_eq!(
        required.len(),
        1,
        "the old one with 0 replicas is not required"
    );
    // Semantic equality: an empty label map equals none.
    let mut a = PodTemplateSpec::default();
    let b = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::new()),
            ..Default::default()
        }),
        spec: None,
    };
    assert!(equal_ignore_hash(&a, &b));
    a.metadata = Some(ObjectMeta {
        labels: Some(labels(&[("x", "y")])),
        ..Default::default()
    });
    assert!(!equal_ignore_hash(&a, &b));
}

// ---- rolling_test.go ----

#[test]
fn reconcile_new_replica_set_table() {
    // TestDeploymentController_reconcileNewReplicaSet: (deployment replicas, maxSurge, old
    // replicas, new replicas, expected new replicas when scaled).
    let cases = [
        (10, 0, 10, 0, None),
        (10, 2, 10, 0, Some(2)),
        (10, 2, 5, 0, Some(7)),
        (10, 2, 10, 2, None),
        (10, 2, 2, 11, Some(10)),
    ];
    for (dep, surge, old, new, want) in cases {
        let new_rs = rs("foo-v2", new, &[], None);
        let old_rs = rs("foo-v1", old, &[], None);
        let d = foo(dep, surge, 0, &[]);
        let mut s = syncer(&d, &[], &[]);
        let scaled = s.reconcile_new_replica_set(&[new_rs.clone(), old_rs], &new_rs);
        assert_eq!(scaled, Ok(want.is_some()), "{dep} {surge} {old} {new}");
        let sizes = updated_sizes(&s.plan);
        assert_eq!(
            sizes.get("foo-v2").copied(),
            want,
            "{dep} {surge} {old} {new}"
        );
    }
}

#[test]
fn reconcile_old_replica_sets_table() {
    // TestDeploymentController_reconcileOldReplicaSets: (deployment replicas,
    // maxUnavailable, old replicas, new replicas, available old, available new,
    // expected old replicas when scaled).
    let cases = [
        (10, 0, 10, 0, 10, 0, Some(9)),
        (10, 2, 10, 0, 10, 0, Some(8)),
        (10, 2, 10, 0, 8, 0, Some(8)),
        (10, 2, 10, 0, 9, 0, Some(8)),
        (10, 2, 8, 2, 8, 0, None),
    ];
    for (dep, mu, old, new, ready_old, ready_new, want) in cases {
        let new_rs = with_status(rs("foo-new", new, &[("foo", "new")], None), new, ready_new);
        let old_rs = with_status(rs("foo-old", old, &[("foo", "old")], None), old, ready_old);
        let d = foo(dep, 0, mu, &[("foo", "new")]);
        let mut s = syncer(&d, &[], &[]);
        let all = [old_rs.clone(), new_rs.clone()];
        let scaled = s.reconcile_old_replica_sets(&all, vec![old_rs], &new_rs);
        assert_eq!(
            scaled,
            want.is_some(),
            "case {dep} {mu} {old} {new} {ready_old}"
        );
        // The last update of the old ReplicaSet is its final size.
        assert_eq!(
            updated_sizes(&s.plan).get("foo-old").copied(),
            want,
            "case {dep} {mu} {old}"
        );
    }
}

#[test]
fn cleanup_unhealthy_replicas_table() {
    // TestDeploymentController_cleanupUnhealthyReplicas: (old replicas, available,
    // max cleanup, expected cleaned up).
    for (old, ready, max, want) in [(10, 8, 1, 1), (10, 8, 3, 2), (10, 8, 0, 0), (10, 10, 3, 0)] {
        let old_rs = with_status(rs("foo-v2", old, &[], None), old, ready);
        let d = foo(10, 2, 2, &[]);
        let mut s = syncer(&d, &[], &[]);
        let Ok((_, cleaned)) = s.cleanup_unhealthy_replicas(vec![old_rs], max) else {
            panic!("unexpected error");
        };
        assert_eq!(cleaned, want, "{old} {ready} {max}");
    }
}

#[test]
fn scale_down_old_replica_sets_for_rolling_update_table() {
    // TestDeploymentController_scaleDownOldReplicaSetsForRollingUpdate: (deployment
    // replicas, maxUnavailable, available, old replicas, expected old replicas).
    let cases = [
        (10, 0, 10, 10, Some(9)),
        (10, 2, 10, 10, Some(8)),
        (10, 2, 8, 10, None),
        (10, 2, 10, 0, None),
        (10, 2, 1, 10, None),
    ];
    for (dep, mu, ready, old, want) in cases {
        let old_rs = with_status(rs("foo-v2", old, &[], None), old, ready);
        let d = foo(dep, 0, mu, &[("foo", "bar")]);
        let mut s = syncer(&d, &[], &[]);
        let scaled = s.scale_down_old_replica_sets_for_rolling_update(
            std::slice::from_ref(&old_rs),
            vec![old_rs.clone()],
        );
        assert!(scaled.is_ok());
        assert_eq!(
            updated_sizes(&s.plan).get("foo-v2").copied(),
            want,
            "{dep} {mu} {ready} {old}"
        );
    }
}

// ---- sync_test.go ----

#[test]
fn scale_table() {
    // TestScale.
    let (new_t, old_t, older_t) = (Some(7200), Some(3600), Some(0));
    // (name, deployment, deployment before, new RS, old RSs, expected new size,
    // expected old sizes, desired-replicas annotations other than the old deployment's).
    type Case = (
        &'static str,
        Deployment,
        Deployment,
        Option<ReplicaSet>,
        Vec<ReplicaSet>,
        Option<i32>,
        Vec<i32>,
        &'static [(&'static str, i32)],
    );
    let nd = |r: i32| new_deployment("foo", r, None, None, None, &[]);
    let nds = |r: i32, surge: i32| new_deployment("foo", r, None, Some(int(surge)), None, &[]);
    let updated_template = |r: i32| {
        let mut d = new_deployment("foo", r, None, None, None, &[("foo", "bar")]);
        let t = &mut d.spec.as_mut().expect("spec").template;
        t.metadata
            .as_mut()
            .expect("meta")
            .labels
            .as_mut()
            .expect("labels")
            .insert("another".into(), "label".into());
        d
    };
    let broken = {
        let mut r = rs("foo-v2", 2, &[], new_t);
        r.status = Some(ReplicaSetStatus {
            available_replicas: Some(0),
            ..Default::default()
        });
        r
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("normal scaling event: 10 -> 12", nd(12), nd(10), Some(rs("foo-v1", 10, &[], new_t)), vec![], Some(12), vec![], &[]),
        ("normal scaling event: 10 -> 5", nd(5), nd(10), Some(rs("foo-v1", 10, &[], new_t)), vec![], Some(5), vec![], &[]),
        ("proportional scaling: 5 -> 10", nd(10), nd(5), Some(rs("foo-v2", 2, &[], new_t)), vec![rs("foo-v1", 3, &[], old_t)], Some(4), vec![6], &[]),
        ("proportional scaling: 5 -> 3", nd(3), nd(5), Some(rs("foo-v2", 2, &[], new_t)), vec![rs("foo-v1", 3, &[], old_t)], Some(1), vec![2], &[]),
        ("proportional scaling: 9 -> 4", nd(4), nd(9), Some(rs("foo-v2", 8, &[], new_t)), vec![rs("foo-v1", 1, &[], old_t)], Some(4), vec![0], &[]),
        ("proportional scaling: 7 -> 10", nd(10), nd(7), Some(rs("foo-v3", 2, &[], new_t)), vec![rs("foo-v2", 3, &[], old_t), rs("foo-v1", 2, &[], older_t)], Some(3), vec![4, 3], &[]),
        ("proportional scaling: 13 -> 8", nd(8), nd(13), Some(rs("foo-v3", 2, &[], new_t)), vec![rs("foo-v2", 8, &[], old_t), rs("foo-v1", 3, &[], older_t)], Some(1), vec![5, 2], &[]),
        ("leftover distribution: 3 -> 4", nd(4), nd(3), Some(rs("foo-v3", 1, &[], new_t)), vec![rs("foo-v2", 1, &[], old_t), rs("foo-v1", 1, &[], older_t)], Some(2), vec![1, 1], &[]),
        ("leftover distribution: 3 -> 2", nd(2), nd(3), Some(rs("foo-v3", 1, &[], new_t)), vec![rs("foo-v2", 1, &[], old_t), rs("foo-v1", 1, &[], older_t)], Some(1), vec![1, 0], &[]),
        ("proportional scaling (no new rs): 4 -> 5", nd(5), nd(4), None, vec![rs("foo-v2", 2, &[], old_t), rs("foo-v1", 2, &[], older_t)], None, vec![3, 2], &[]),
        ("proportional scaling: 6 -> 0", nd(0), nd(6), Some(rs("foo-v3", 3, &[], new_t)), vec![rs("foo-v2", 2, &[], old_t), rs("foo-v1", 1, &[], older_t)], Some(0), vec![0, 0], &[]),
        ("proportional scaling: 0 -> 6", nd(6), nd(6), Some(rs("foo-v3", 0, &[], new_t)), vec![rs("foo-v2", 0, &[], old_t), rs("foo-v1", 0, &[], older_t)], Some(6), vec![0, 0], &[]),
        ("failed rs update", nd(5), nd(5), Some(rs("foo-v3", 2, &[], new_t)), vec![rs("foo-v2", 1, &[], old_t), rs("foo-v1", 1, &[], older_t)], Some(2), vec![2, 1], &[("foo-v2", 3)]),
        ("deployment with surge pods", nds(20, 2), nds(10, 2), Some(rs("foo-v2", 6, &[], new_t)), vec![rs("foo-v1", 6, &[], old_t)], Some(11), vec![11], &[]),
        ("change both surge and size", nds(50, 6), nds(10, 3), Some(rs("foo-v2", 5, &[], new_t)), vec![rs("foo-v1", 8, &[], old_t)], Some(22), vec![34], &[]),
        ("change both size and template", updated_template(14), new_deployment("foo", 10, None, None, None, &[("foo", "bar")]), None, vec![rs("foo-v2", 7, &[], new_t), rs("foo-v1", 3, &[], old_t)], None, vec![10, 4], &[]),
        ("saturated but broken new replica set does not affect old pods", foo(2, 1, 1, &[]), foo(2, 1, 1, &[]), Some(broken), vec![rs("foo-v1", 1, &[], old_t)], Some(2), vec![1], &[]),
    ];
    for (
        name,
        deployment,
        old_deployment,
        mut new_rs,
        mut old_rss,
        expected_new,
        expected_old,
        desired,
    ) in cases
    {
        let annotate = |r: &mut ReplicaSet| {
            let name = r.metadata.name.clone().unwrap_or_default();
            let desired = desired
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| *d)
                .unwrap_or_else(|| replicas(&old_deployment));
            set_replicas_annotations(r, desired, desired + max_surge(&old_deployment));
        };
        if let Some(r) = new_rs.as_mut() {
            annotate(r);
        }
        old_rss.iter_mut().for_each(annotate);
        let mut s = syncer(&deployment, &[], &[]);
        s.scale(new_rs.as_ref(), &old_rss);
        let sizes = updated_sizes(&s.plan);
        let size = |r: &ReplicaSet| {
            let name = r.metadata.name.clone().unwrap_or_default();
            sizes.get(&name).copied().unwrap_or_else(|| rs_replicas(r))
        };
        if let (Some(want), Some(r)) = (expected_new, new_rs.as_ref()) {
            assert_eq!(size(r), want, "{name}: new");
        }
        let got: Vec<i32> = old_rss.iter().map(size).collect();
        assert_eq!(got, expected_old, "{name}: old");
    }
}

fn rs_with_status_and_generation(name: &str, spec: i32, status_replicas: i32) -> ReplicaSet {
    with_status(rs(name, spec, &[("foo", "bar")], None), status_replicas, 0)
}

#[test]
fn cleanup_deployment_table() {
    // TestDeploymentController_cleanupDeployment.
    let mut already_deleted = rs_with_status_and_generation("foo-1", 0, 0);
    already_deleted.metadata.deletion_timestamp = Some(Time(ts(1)));
    let n = rs_with_status_and_generation;
    let cases = [
        (
            vec![n("foo-1", 0, 0), n("foo-2", 0, 0), n("foo-3", 0, 0)],
            1,
            2,
        ),
        (
            vec![
                n("foo-1", 0, 0),
                n("foo-2", 0, 1),
                n("foo-3", 1, 0),
                n("foo-4", 1, 1),
            ],
            0,
            1,
        ),
        (vec![n("foo-1", 0, 0), n("foo-2", 0, 0)], 0, 2),
        (vec![n("foo-1", 1, 1), n("foo-2", 1, 1)], 0, 0),
        (vec![already_deleted], 0, 0),
        (
            vec![n("foo-1", 0, 0), n("foo-2", 0, 0), n("foo-3", 0, 0)],
            i32::MAX,
            0,
        ),
    ];
    for (i, (old, limit, want)) in cases.into_iter().enumerate() {
        let d = new_deployment("foo", 1, Some(limit), None, None, &[("foo", "bar")]);
        let mut s = syncer(&d, &[], &[]);
        s.cleanup_deployment(&old);
        let deletions = s
            .plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::DeleteReplicaSet { .. }))
            .count();
        assert_eq!(deletions, want, "case {i}");
    }
}

#[test]
fn cleanup_deletes_lowest_revisions_and_waits_for_observed_generation() {
    let with_rev = |name: &str, rev: i64, created: i64| {
        let mut r = rs_with_status_and_generation(name, 0, 0);
        r.metadata.creation_timestamp = Some(Time(ts(created)));
        r.metadata.annotations = Some([(REVISION_ANNOTATION.to_string(), rev.to_string())].into());
        r
    };
    // Created in the opposite order of their revisions: revision decides.
    let old = vec![
        with_rev("a", 3, 1),
        with_rev("b", 1, 2),
        with_rev("c", 2, 3),
    ];
    let d = new_deployment("foo", 1, Some(1), None, None, &[("foo", "bar")]);
    let mut s = syncer(&d, &[], &[]);
    s.cleanup_deployment(&old);
    let deleted: Vec<&str> = s
        .plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteReplicaSet { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["b", "c"]);
    let mut unobserved = with_rev("x", 1, 1);
    unobserved.metadata.generation = Some(2);
    let mut s = syncer(&d, &[], &[]);
    s.cleanup_deployment(&[unobserved, with_rev("y", 2, 2)]);
    assert!(
        s.plan.actions.is_empty(),
        "a generation the ReplicaSet controller has not seen is kept"
    );
}

// ---- progress_test.go ----

const TEST_TIME: i64 = 1_487_184_540; // 2017-02-15T18:49:00Z

fn current_deployment(
    pds: i32,
    replicas: i32,
    status_replicas: i32,
    updated: i32,
    available: i32,
    conditions: Vec<DeploymentCondition>,
) -> Deployment {
    let mut d = new_deployment("progress-test", replicas, None, None, None, &[("a", "b")]);
    let spec = d.spec.as_mut().expect("spec");
    spec.progress_deadline_seconds = Some(pds);
    spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    d.status = Some(DeploymentStatus {
        replicas: Some(status_replicas),
        updated_replicas: Some(updated),
        available_replicas: Some(available),
        conditions: Some(conditions),
        ..Default::default()
    });
    d
}

#[test]
fn requeue_stuck_deployment_table() {
    // TestRequeueStuckDeployment; the expected durations are Kubernetes' plus the second
    // it adds before enqueueing.
    let failed = vec![progressing("False", TIMED_OUT_REASON, None)];
    let stuck = vec![DeploymentCondition {
        type_: PROGRESSING.into(),
        status: "True".into(),
        last_update_time: Some(Time(ts(TEST_TIME))),
        ..Default::default()
    }];
    let st = |r, u, a| DeploymentStatus {
        replicas: Some(r),
        updated_replicas: Some(u),
        available_replicas: Some(a),
        ..Default::default()
    };
    let now = |s: i64, n: i32| Timestamp::new(TEST_TIME + s, n).expect("valid");
    use std::time::Duration as D;
    let cases = [
        (
            current_deployment(i32::MAX, 4, 3, 3, 2, vec![]),
            st(3, 3, 2),
            now(0, 0),
            None,
        ),
        (
            current_deployment(60, 4, 3, 3, 2, vec![]),
            st(3, 3, 2),
            now(0, 0),
            None,
        ),
        (
            current_deployment(60, 3, 3, 3, 3, vec![]),
            st(3, 3, 3),
            now(0, 0),
            None,
        ),
        (
            current_deployment(60, 3, 3, 3, 0, failed),
            st(3, 3, 0),
            now(0, 0),
            None,
        ),
        (
            current_deployment(60, 3, 3, 3, 1, stuck.clone()),
            st(3, 3, 1),
            now(30, 0),
            Some(Requeue::After(D::from_secs(31))),
        ),
        (
            current_deployment(60, 3, 3, 3, 1, stuck.clone()),
            st(3, 3, 1),
            now(59, 0),
            Some(Requeue::After(D::from_secs(2))),
        ),
        (
            current_deployment(60, 3, 3, 3, 1, stuck.clone()),
            st(3, 3, 1),
            now(59, 1),
            Some(Requeue::RateLimited),
        ),
        (
            current_deployment(60, 3, 3, 3, 1, stuck.clone()),
            st(3, 3, 1),
            now(60, 0),
            Some(Requeue::RateLimited),
        ),
        (
            current_deployment(60, 3, 3, 3, 1, stuck.clone()),
            st(3, 3, 1),
            now(61, 0),
            Some(Requeue::RateLimited),
        ),
        (
            current_deployment(60, 3, 3, 3, 1, stuck),
            st(3, 3, 1),
            now(120, 0),
            Some(Requeue::RateLimited),
        ),
    ];
    for (i, (d, s, now, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            progress::requeue_stuck_deployment(&d, &s, now),
            want,
            "case {i}"
        );
    }
}

fn rs_available_named(name: &str, spec: i32, status_replicas: i32, available: i32) -> ReplicaSet {
    with_status(rs(name, spec, &[], None), status_replicas, available)
}

#[test]
fn sync_rollout_status_table() {
    // TestSyncRolloutStatus: (deployment, all RSs, new RS, expected Progressing
    // (status, reason), whether lastUpdateTime and lastTransitionTime stay at TEST_TIME).
    let at = |s: &str, r: &str| progressing(s, r, Some(TEST_TIME));
    let new_rs_available = at("True", NEW_RS_AVAILABLE_REASON);
    let rs_updated = at("True", REPLICA_SET_UPDATED_REASON);
    let timed_out = at("False", TIMED_OUT_REASON);
    type Expect = Option<(&'static str, &'static str, bool, bool)>;
    type Case = (
        &'static str,
        Deployment,
        Vec<ReplicaSet>,
        Option<ReplicaSet>,
        Expect,
    );
    let cases: Vec<Case> = vec![
        (
            "no deadline: no Progressing",
            current_deployment(i32::MAX, 3, 2, 2, 2, vec![]),
            vec![rs_available_named("bar", 0, 1, 1)],
            Some(rs_available_named("foo", 3, 2, 2)),
            None,
        ),
        (
            "one active ReplicaSet: no estimate",
            current_deployment(60, 3, 3, 3, 3, vec![new_rs_available.clone()]),
            vec![rs_available_named("bar", 3, 3, 3)],
            None,
            Some(("True", NEW_RS_AVAILABLE_REASON, true, true)),
        ),
        (
            "progressing: keep lastTransitionTime",
            current_deployment(60, 3, 2, 2, 2, vec![rs_updated.clone()]),
            vec![rs_available_named("bar", 0, 1, 1)],
            Some(rs_available_named("foo", 3, 2, 2)),
            Some(("True", REPLICA_SET_UPDATED_REASON, false, true)),
        ),
        (
            "progressing: update all after Progressing=False",
            current_deployment(60, 3, 2, 2, 2, vec![timed_out.clone()]),
            vec![rs_available_named("bar", 0, 1, 1)],
            Some(rs_available_named("foo", 3, 2, 2)),
            Some(("True", REPLICA_SET_UPDATED_REASON, false, false)),
        ),
        (
            "progressing: create the condition",
            current_deployment(60, 3, 2, 2, 2, vec![]),
            vec![rs_available_named("bar", 0, 1, 1)],
            Some(rs_available_named("foo", 3, 2, 2)),
            Some(("True", REPLICA_SET_UPDATED_REASON, false, false)),
        ),
        (
            "complete: keep lastTransitionTime",
            current_deployment(60, 3, 3, 3, 3, vec![rs_updated.clone()]),
            vec![],
            Some(rs_available_named("foo", 3, 3, 3)),
            Some(("True", NEW_RS_AVAILABLE_REASON, false, true)),
        ),
        (
            "complete: update all after Progressing=False",
            current_deployment(60, 3, 3, 3, 3, vec![timed_out.clone()]),
            vec![],
            Some(rs_available_named("foo", 3, 3, 3)),
            Some(("True", NEW_RS_AVAILABLE_REASON, false, false)),
        ),
        (
            "complete: create the condition",
            current_deployment(60, 3, 3, 3, 3, vec![]),
            vec![],
            Some(rs_available_named("foo", 3, 3, 3)),
            Some(("True", NEW_RS_AVAILABLE_REASON, false, false)),
        ),
        (
            "timed out: set",
            current_deployment(60, 3, 2, 2, 2, vec![rs_updated]),
            vec![],
            Some(rs_available_named("foo", 3, 2, 2)),
            Some(("False", TIMED_OUT_REASON, false, false)),
        ),
        (
            "timed out: already",
            current_deployment(60, 3, 2, 2, 2, vec![timed_out]),
            vec![],
            Some(rs_available_named("foo", 3, 2, 2)),
            Some(("False", TIMED_OUT_REASON, true, true)),
        ),
    ];
    for (name, d, mut all, new_rs, want) in cases {
        if let Some(n) = &new_rs {
            all.push(n.clone());
        }
        let mut s = syncer(&d, &[], &[]);
        s.now = ts(TEST_TIME + 3600);
        s.sync_rollout_status(&all, new_rs.as_ref());
        let status = s.d.status.clone().unwrap_or_default();
        let got = get_condition(&status, PROGRESSING);
        match want {
            None => assert!(got.is_none(), "{name}: {got:?}"),
            Some((st, reason, same_update, same_transition)) => {
                let c = got.unwrap_or_else(|| panic!("{name}: no Progressing condition"));
                assert_eq!(
                    (c.status.as_str(), c.reason.as_deref()),
                    (st, Some(reason)),
                    "{name}"
                );
                let is_test_time =
                    |t: &Option<Time>| t.as_ref().map(|t| t.0) == Some(ts(TEST_TIME));
                assert_eq!(
                    is_test_time(&c.last_update_time),
                    same_update,
                    "{name}: lastUpdateTime"
                );
                assert_eq!(
                    is_test_time(&c.last_transition_time),
                    same_transition,
                    "{name}: lastTransitionTime"
                );
            }
        }
    }
}

// ---- whole syncs ----

fn owned(mut r: ReplicaSet, d: &Deployment, template: PodTemplateSpec, rev: i64) -> ReplicaSet {
    r.metadata.owner_references = Some(vec![crate::podutil::new_controller_ref(
        "apps/v1",
        "Deployment",
        &d.metadata,
    )]);
    r.spec.as_mut().expect("spec").template = Some(template);
    let desired = replicas(d);
    set_replicas_annotations(&mut r, desired, desired.saturating_add(max_surge(d)));
    r.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(REVISION_ANNOTATION.into(), rev.to_string());
    r
}

/// A pod controlled by `owner`, in `phase`.
fn pod_of(owner: &ReplicaSet, phase: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-x",
                owner.metadata.name.as_deref().unwrap_or("")
            )),
            owner_references: Some(vec![crate::podutil::new_controller_ref(
                "apps/v1",
                "ReplicaSet",
                &owner.metadata,
            )]),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn plan_for(d: &Deployment, rss: &[ReplicaSet], pods: &[Pod], now: Timestamp) -> Plan {
    sync_deployment(Input {
        deployment: d,
        replica_sets: rss,
        pods,
        now,
    })
}

fn first_created(plan: &Plan) -> Option<Box<ReplicaSet>> {
    plan.actions.iter().find_map(|a| match a {
        Action::CreateReplicaSet(r) => Some(r.clone()),
        _ => None,
    })
}

fn first_status_write(plan: &Plan) -> Option<Box<Deployment>> {
    plan.actions.iter().find_map(|a| match a {
        Action::UpdateStatus(d) => Some(d.clone()),
        _ => None,
    })
}

fn first_update(plan: &Plan) -> Option<Box<Deployment>> {
    plan.actions.iter().find_map(|a| match a {
        Action::Update(d) => Some(d.clone()),
        _ => None,
    })
}

/// A ReplicaSet of `d` with its template, annotations, revision and status counts.
fn live_rs(
    name: &str,
    d: &Deployment,
    replicas_: i32,
    status_replicas: i32,
    available: i32,
    created: i64,
    rev: i64,
) -> ReplicaSet {
    let r = owned(
        rs(name, replicas_, &[("app", "web")], Some(created)),
        d,
        template(d),
        rev,
    );
    with_status(r, status_replicas, available)
}

/// The "web" deployment with maxSurge and maxUnavailable.
fn web(replicas_: i32, surge: i32, unavailable: i32) -> Deployment {
    new_deployment(
        "web",
        replicas_,
        None,
        Some(int(surge)),
        Some(int(unavailable)),
        &[("app", "web")],
    )
}

fn changed_template(d: &Deployment, image: &str) -> Deployment {
    let mut d = d.clone();
    let spec = d
        .spec
        .as_mut()
        .expect("spec")
        .template
        .spec
        .as_mut()
        .expect("pod spec");
    spec.containers[0].image = Some(image.into());
    d
}

#[test]
fn a_new_template_creates_the_new_replica_set_named_by_its_hash() {
    let old_d = web(4, 1, 1);
    let old_rs = live_rs("web-old", &old_d, 4, 4, 4, 1, 1);
    let mut d = changed_template(&old_d, "app:2");
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(600);
    let plan = plan_for(&d, &[old_rs], &[], ts(1_000));
    assert_eq!(plan.error, None);
    let created = first_created(&plan).expect("a ReplicaSet is created");
    let hash = compute_hash(&template(&d), None);
    assert_eq!(created.metadata.name, Some(format!("web-{hash}")));
    assert_eq!(rs_replicas(&created), 1, "4 + maxSurge 1 - 4 existing");
    let sel = &created.spec.as_ref().expect("spec").selector;
    assert_eq!(
        sel.match_labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)),
        Some(&hash)
    );
    assert_eq!(revision(&created.metadata), Ok(2));
    assert_eq!(desired_replicas_annotation(&created), Some(4));
    assert_eq!(max_replicas_annotation(&created), Some(5));
    assert!(crate::podutil::is_controlled_by(
        &created.metadata,
        "uid-web"
    ));
    // The deployment records the revision and the Progressing condition.
    let status_write = first_status_write(&plan).expect("status written");
    assert_eq!(revision(&status_write.metadata), Ok(2));
    let c = get_condition(status_write.status.as_ref().expect("status"), PROGRESSING)
        .expect("Progressing");
    assert_eq!(c.reason.as_deref(), Some(NEW_REPLICA_SET_REASON));
    assert_eq!(
        c.message,
        Some(format!("Created new replica set \"web-{hash}\""))
    );
}

#[test]
fn recreate_scales_old_down_then_waits_for_old_pods() {
    let mut old_d = new_deployment("web", 3, None, None, None, &[("app", "web")]);
    old_d.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let old_rs = live_rs("web-old", &old_d, 3, 3, 3, 1, 1);
    let d = changed_template(&old_d, "app:2");
    // First sync: old to 0, nothing created.
    let plan = plan_for(&d, std::slice::from_ref(&old_rs), &[], ts(1_000));
    assert_eq!(updated_sizes(&plan).get("web-old"), Some(&0));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet(_)))
    );
    // Scaled down, but a pod of it still runs: still nothing created.
    let mut drained = old_rs.clone();
    crate::deployment::util::set_rs_replicas(&mut drained, 0);
    drained.status = Some(ReplicaSetStatus::default());
    let pod = pod_of(&old_rs, "Running");
    let pods = [pod];
    let plan = plan_for(&d, std::slice::from_ref(&drained), &pods, ts(1_000));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet(_))),
        "{plan:?}"
    );
    // The pod ended: the new ReplicaSet comes with all replicas at once.
    let mut done = pods[0].clone();
    done.status.as_mut().expect("status").phase = Some("Succeeded".into());
    let plan = plan_for(&d, &[drained], &[done], ts(1_000));
    assert_eq!(first_created(&plan).map(|r| rs_replicas(&r)), Some(3));
}

#[test]
fn rollback_takes_the_old_template_and_clears_the_request() {
    let d1 = web(2, 1, 0);
    let d2 = changed_template(&d1, "app:2");
    let rs1 = live_rs("web-1", &d1, 0, 0, 0, 1, 1);
    let rs2 = live_rs("web-2", &d2, 2, 2, 2, 2, 2);
    let asked = rollback_to_revision(&d2, 0);
    let plan = plan_for(&asked, &[rs1, rs2], &[], ts(1_000));
    let updated = first_update(&plan).expect("the deployment is updated");
    assert!(equal_ignore_hash(&template(&updated), &template(&d1)));
    assert!(
        !updated
            .metadata
            .annotations
            .as_ref()
            .expect("annotations")
            .contains_key(DEPRECATED_ROLLBACK_TO)
    );
    assert!(plan.actions.iter().any(
        |a| matches!(a, Action::Event(e) if e.reason == ROLLBACK_DONE
        && e.message == "Rolled back deployment \"web\" to revision 1")
    ));
    // Nothing to go back to.
    let plan = plan_for(&rollback_to_revision(&d1, 7), &[], &[], ts(1_000));
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Event(e) if e.reason == ROLLBACK_REVISION_NOT_FOUND))
    );
}

#[test]
fn paused_deployment_gets_paused_condition_and_no_rollout() {
    let d1 = web(2, 1, 0);
    let rs1 = live_rs("web-1", &d1, 2, 2, 2, 1, 1);
    let mut d2 = changed_template(&d1, "app:2");
    let spec = d2.spec.as_mut().expect("spec");
    spec.paused = Some(true);
    spec.progress_deadline_seconds = Some(600);
    let plan = plan_for(&d2, &[rs1], &[], ts(1_000));
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::CreateReplicaSet(_)))
    );
    let first_status = first_status_write(&plan);
    let c = first_status
        .as_ref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| get_condition(s, PROGRESSING))
        .expect("Progressing");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("Unknown", Some(PAUSED_DEPLOY_REASON))
    );
}

#[test]
fn selecting_everything_is_refused() {
    let mut d = new_deployment("web", 2, None, None, None, &[]);
    d.metadata.generation = Some(3);
    let plan = plan_for(&d, &[], &[], ts(1));
    assert!(matches!(&plan.actions[0], Action::Event(e) if e.reason == "SelectingAll"));
    assert!(
        matches!(&plan.actions[1], Action::UpdateStatus(d) if d.status.as_ref().and_then(|s| s.observed_generation) == Some(3))
    );
    assert_eq!(plan.actions.len(), 2);
}

#[test]
fn a_deployment_being_deleted_only_gets_its_status() {
    let d1 = web(2, 1, 0);
    let rs1 = live_rs("web-1", &d1, 2, 2, 2, 1, 1);
    let mut d = changed_template(&d1, "app:2");
    d.metadata.deletion_timestamp = Some(Time(ts(1)));
    let plan = plan_for(&d, &[rs1], &[], ts(10));
    assert!(
        plan.actions
            .iter()
            .all(|a| matches!(a, Action::UpdateStatus(_))),
        "{plan:?}"
    );
    assert_eq!(plan.actions.len(), 1);
}

#[test]
fn a_failed_create_is_reported() {
    let mut d = web(2, 1, 0);
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(600);
    let actions = on_create_failed(&d, "web-abc", "quota exceeded", ts(10));
    let Action::UpdateStatus(written) = &actions[0] else {
        panic!("status first: {actions:?}");
    };
    let c = get_condition(written.status.as_ref().expect("status"), PROGRESSING).expect("cond");
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some(FAILED_RS_CREATE_REASON))
    );
    assert_eq!(
        c.message.as_deref(),
        Some("Failed to create new replica set \"web-abc\": quota exceeded")
    );
    assert!(matches!(&actions[1], Action::Event(e) if e.type_ == EventType::Warning));
}

#[test]
fn hash_collision_bumps_collision_count() {
    let d = new_deployment("web", 2, None, None, None, &[("app", "web")]);
    let mut theirs = rs("web-x", 1, &[], None);
    theirs.spec.as_mut().expect("spec").template = Some(PodTemplateSpec::default());
    let bumped = on_create_already_exists(&d, &theirs).expect("a collision");
    assert_eq!(bumped.status.and_then(|s| s.collision_count), Some(1));
    let ours = owned(rs("web-x", 1, &[], None), &d, template(&d), 1);
    assert_eq!(on_create_already_exists(&d, &ours), None);
}

// ---- property tests ----

fn arb_int_or_percent() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        (0..6i32).prop_map(IntOrString::Int),
        (0..=100i32).prop_map(|p| IntOrString::String(format!("{p}%")))
    ]
}

/// Simulates the ReplicaSet controller: scaling down removes unavailable pods first.
fn available_after(rss: &[ReplicaSet], sizes: &BTreeMap<String, i32>) -> i32 {
    rss.iter()
        .map(|r| {
            let size = sizes
                .get(r.metadata.name.as_deref().unwrap_or(""))
                .copied()
                .unwrap_or_else(|| rs_replicas(r));
            rs_available(r).min(size)
        })
        .sum()
}

proptest! {
    /// A rolling-update step never takes the pods above replicas + maxSurge (unless they
    /// already were), and never drops availability below replicas - maxUnavailable (unless
    /// it already was below, in which case it drops none).
    #[test]
    fn rolling_step_stays_within_surge_and_availability(
        replicas_ in 0..12i32,
        surge in arb_int_or_percent(),
        unavailable in arb_int_or_percent(),
        new_spec in 0..14i32,
        new_avail_frac in 0.0..=1.0f64,
        olds in proptest::collection::vec((0..14i32, 0.0..=1.0f64), 0..4),
    ) {
        let base = new_deployment("web", replicas_, None, Some(surge), Some(unavailable), &[("app", "web")]);
        let d = changed_template(&base, "app:new");
        let mut rss = Vec::new();
        let avail = |spec: i32, f: f64| ((f64::from(spec)) * f).floor() as i32;
        let new_rs = owned(rs("web-new", new_spec, &[("app", "web")], Some(100)), &d, template(&d), 10);
        rss.push(with_status(new_rs, new_spec, avail(new_spec, new_avail_frac)));
        for (i, (spec, f)) in olds.iter().enumerate() {
            let old_d = changed_template(&base, &format!("app:{i}"));
            let r = owned(rs(&format!("web-old{i}"), *spec, &[("app", "web")], Some(i as i64)), &old_d, template(&old_d), i as i64 + 1);
            rss.push(with_status(r, *spec, avail(*spec, *f)));
        }
        let plan = plan_for(&d, &rss, &[], ts(1_000));
        prop_assert_eq!(plan.error.clone(), None);
        prop_assert!(!plan.actions.iter().any(|a| matches!(a, Action::CreateReplicaSet(_))));
        let sizes = updated_sizes(&plan);
        let before: i32 = rss.iter().map(rs_replicas).sum();
        let after: i32 = rss.iter().map(|r| sizes.get(r.metadata.name.as_deref().unwrap_or("")).copied().unwrap_or_else(|| rs_replicas(r))).sum();
        let max_total = replicas_ + max_surge(&d);
        prop_assert!(after <= before.max(max_total), "after {} before {} max {}", after, before, max_total);
        let min_available = replicas_ - max_unavailable(&d);
        let avail_before: i32 = rss.iter().map(|r| rs_available(r).min(rs_replicas(r))).sum();
        let avail_after = available_after(&rss, &sizes);
        prop_assert!(avail_after >= avail_before.min(min_available), "available {} -> {} (min {})", avail_before, avail_after, min_available);
        prop_assert!(sizes.values().all(|n| *n >= 0));
    }

    /// Proportional scaling of a paused or mid-rollout deployment lands exactly on the new
    /// replicas + maxSurge, with no ReplicaSet below zero.
    #[test]
    fn proportional_scaling_sums_to_the_target(
        sizes in proptest::collection::vec(1..20i32, 2..5),
        surge0 in 0..4i32,
        new_replicas in 0..60i32,
        surge1 in 0..4i32,
    ) {
        let total: i32 = sizes.iter().sum();
        prop_assume!(total > surge0);
        let old_d = new_deployment("web", total - surge0, None, Some(int(surge0)), Some(int(1)), &[("app", "web")]);
        let d = new_deployment("web", new_replicas, None, Some(int(surge1)), Some(int(1)), &[("app", "web")]);
        let rss: Vec<ReplicaSet> = sizes.iter().enumerate().map(|(i, n)| {
            let mut r = rs(&format!("web-{i}"), *n, &[], Some(i as i64));
            set_replicas_annotations(&mut r, replicas(&old_d), replicas(&old_d) + max_surge(&old_d));
            r
        }).collect();
        let got = sync::proportional_sizes(&d, &rss);
        let sum: i32 = got.iter().map(|(_, n)| *n).sum();
        let target = if new_replicas > 0 { new_replicas + max_surge(&d) } else { 0 };
        prop_assert_eq!(sum, target);
        prop_assert!(got.iter().all(|(_, n)| *n >= 0));
    }

    /// Fenceposts never come out both zero, and percentages round surge up and
    /// unavailability down.
    #[test]
    fn fenceposts_always_allow_progress(s in 0..=100i32, u in 0..=100i32, desired in 0..1000i32) {
        let (surge, unavailable) = resolve_fenceposts(Some(&pct(&format!("{s}%"))), Some(&pct(&format!("{u}%"))), desired).expect("valid");
        prop_assert!(surge > 0 || unavailable > 0);
        prop_assert_eq!(surge, (i64::from(s) * i64::from(desired) + 99).div_euclid(100) as i32);
        if surge > 0 || (i64::from(u) * i64::from(desired)) / 100 > 0 {
            prop_assert_eq!(unavailable, ((i64::from(u) * i64::from(desired)) / 100) as i32);
        }
    }
}

#[test]
fn replica_sets_are_claimed_by_their_labels() {
    let d = new_deployment("web", 1, None, None, None, &[("app", "web")]);
    let mut orphan = rs("orphan", 1, &[], None);
    orphan.metadata.labels = Some(labels(&[("app", "web")]));
    let mut mine = owned(rs("mine", 1, &[], None), &d, template(&d), 1);
    mine.metadata.labels = Some(labels(&[("app", "other")]));
    let unrelated = rs("unrelated", 1, &[], None);
    let rss = [orphan, mine, unrelated];
    let claims: Vec<crate::podutil::Claim> = claim_replica_sets(&d, &rss)
        .expect("valid selector")
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    use crate::podutil::Claim;
    assert_eq!(claims, [Claim::Adopt, Claim::Release, Claim::Ignore]);
}

fn arb_count() -> impl Strategy<Value = i32> {
    prop_oneof![0..20i32, any::<i32>(), Just(i32::MAX), Just(i32::MIN)]
}

fn arb_annotation() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        (0..30i64).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("junk".to_string()),
        Just(String::new()),
        Just("+3".to_string()),
    ])
}

fn arb_any_int_or_string() -> impl Strategy<Value = IntOrString> {
    prop_oneof![
        any::<i32>().prop_map(IntOrString::Int),
        (-200..2000i32).prop_map(|p| IntOrString::String(format!("{p}%"))),
        Just(IntOrString::String("abc".into())),
        Just(IntOrString::String("%".into())),
    ]
}

proptest! {
    /// Whatever the counts, percentages and annotations (validation would refuse many of
    /// them), a sync plans without panicking or overflowing.
    #[test]
    fn sync_never_panics_on_bad_input(
        replicas_ in arb_count(),
        surge in arb_any_int_or_string(),
        unavailable in arb_any_int_or_string(),
        strategy in prop_oneof![Just("RollingUpdate"), Just("Recreate"), Just("Other")],
        paused_ in any::<bool>(),
        pds in arb_count(),
        rhl in arb_count(),
        rollback in arb_annotation(),
        status_counts in proptest::collection::vec(arb_count(), 4),
        rss in proptest::collection::vec((arb_count(), arb_count(), arb_count(), arb_annotation(), arb_annotation(), any::<bool>()), 0..4),
    ) {
        let mut d = new_deployment("web", replicas_, Some(rhl), Some(surge), Some(unavailable), &[("app", "web")]);
        let spec = d.spec.as_mut().expect("spec");
        spec.strategy.as_mut().expect("strategy").type_ = Some(strategy.into());
        spec.paused = Some(paused_);
        spec.progress_deadline_seconds = Some(pds);
        if let Some(r) = rollback {
            d.metadata.annotations.get_or_insert_with(Default::default).insert(DEPRECATED_ROLLBACK_TO.into(), r);
        }
        d.status = Some(DeploymentStatus {
            replicas: Some(status_counts[0]),
            updated_replicas: Some(status_counts[1]),
            ready_replicas: Some(status_counts[2]),
            available_replicas: Some(status_counts[3]),
            conditions: Some(vec![progressing("True", REPLICA_SET_UPDATED_REASON, Some(0))]),
            ..Default::default()
        });
        let mut list = Vec::new();
        for (i, (spec_n, status_n, avail, rev, desired, same_template)) in rss.into_iter().enumerate() {
            let t = if same_template { template(&d) } else { template(&changed_template(&d, &format!("v{i}"))) };
            let mut r = owned(rs(&format!("web-{i}"), spec_n, &[("app", "web")], Some(i as i64)), &d, t, 1);
            r = with_status(r, status_n, avail);
            let a = r.metadata.annotations.get_or_insert_with(Default::default);
            for (key, v) in [(REVISION_ANNOTATION, rev), (DESIRED_REPLICAS_ANNOTATION, desired.clone()), (MAX_REPLICAS_ANNOTATION, desired)] {
                match v {
                    Some(v) => { a.insert(key.into(), v); }
                    None => { a.remove(key); }
                }
            }
            list.push(r);
        }
        let _ = plan_for(&d, &list, &[], ts(1_000));
    }
}

#[test]
fn old_pods_running_table() {
    // recreate_test.go TestOldPodsRunning.
    let old_rs = |status_replicas: i32| with_status(rs("rs-1", 0, &[], None), status_replicas, 0);
    let new_rs = rs("new", 1, &[], None);
    let cases: Vec<(&str, Vec<ReplicaSet>, Vec<&str>, bool)> = vec![
        ("no old RSs", vec![], vec![], false),
        ("non-zero status replicas", vec![old_rs(1)], vec![], true),
        (
            "no pods, zero status replicas",
            vec![old_rs(0)],
            vec![],
            false,
        ),
        (
            "terminal pods only",
            vec![old_rs(0)],
            vec!["Failed", "Succeeded"],
            false,
        ),
        ("unknown phase", vec![old_rs(0)], vec!["Unknown"], true),
        ("pending", vec![old_rs(0)], vec!["Pending"], true),
        ("running", vec![old_rs(0)], vec!["Running"], true),
        (
            "terminal and pending",
            vec![old_rs(0)],
            vec!["Failed", "Succeeded", "Pending"],
            true,
        ),
    ];
    for (name, old, phases, want) in cases {
        let pods: Vec<Pod> = old
            .first()
            .map(|o| phases.iter().map(|p| pod_of(o, p)).collect())
            .unwrap_or_default();
        let mut list = old.clone();
        list.push(new_rs.clone());
        assert_eq!(
            recreate::old_pods_running(Some(&new_rs), &old, &list, &pods),
            want,
            "{name}"
        );
    }
    // Pods of the new ReplicaSet never count.
    let new_pod = pod_of(&new_rs, "Running");
    assert!(!recreate::old_pods_running(
        Some(&new_rs),
        &[],
        std::slice::from_ref(&new_rs),
        &[new_pod]
    ));
}

/// A cluster in miniature for whole rollouts: the deployment controller's plans applied as
/// the apiserver would, a ReplicaSet controller that creates and deletes pods at once
/// (unavailable ones first), and pods that become available one tick after they appear.
struct Cluster {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    now: i64,
    next_uid: u32,
}

impl Cluster {
    fn new(d: Deployment, rss: Vec<ReplicaSet>) -> Self {
        Self {
            d,
            rss,
            now: 10_000,
            next_uid: 0,
        }
    }

    fn apply(&mut self, plan: Plan) {
        assert_eq!(plan.error, None);
        for a in plan.actions {
            match a {
                Action::CreateReplicaSet(r) => {
                    let mut r = *r;
                    self.next_uid += 1;
                    r.metadata.uid = Some(format!("rs-uid-{}", self.next_uid));
                    r.metadata.creation_timestamp = Some(Time(ts(self.now)));
                    r.metadata.generation = Some(1);
                    r.status = Some(ReplicaSetStatus::default());
                    assert!(
                        !self.rss.iter().any(|x| x.metadata.name == r.metadata.name),
                        "created twice"
                    );
                    self.rss.push(r);
                }
                Action::UpdateReplicaSet(r) => {
                    let x = self
                        .rss
                        .iter_mut()
                        .find(|x| x.metadata.name == r.metadata.name)
                        .expect("updated ReplicaSet exists");
                    x.metadata.annotations = r.metadata.annotations.clone();
                    x.spec = r.spec.clone();
                    x.metadata.generation = Some(x.metadata.generation.unwrap_or(1) + 1);
                }
                Action::DeleteReplicaSet { name, .. } => {
                    self.rss
                        .retain(|x| x.metadata.name.as_deref() != Some(name.as_str()));
                }
                Action::UpdateStatus(d) => {
                    self.d.status = d.status.clone();
                    self.d.metadata.annotations = d.metadata.annotations.clone();
                }
                Action::Update(d) => {
                    let generation = self.d.metadata.generation.unwrap_or(1) + 1;
                    self.d = *d;
                    self.d.metadata.generation = Some(generation);
                }
                Action::Event(_) => {}
            }
        }
    }

    /// The ReplicaSet controller and the pods, one tick.
    fn pods_tick(&mut self) {
        for r in &mut self.rss {
            let spec = rs_replicas(r);
            let generation = r.metadata.generation;
            let s = r.status.get_or_insert_with(Default::default);
            // Pods that existed a tick ago are available now; deletions take unavailable
            // pods first.
            let available = s.replicas.min(spec);
            s.available_replicas = Some(available);
            s.ready_replicas = Some(available);
            s.replicas = spec;
            s.observed_generation = generation;
        }
        self.now += 1;
    }

    fn sync(&mut self) {
        let plan = plan_for(&self.d, &self.rss, &[], ts(self.now));
        self.apply(plan);
    }

    fn spec_total(&self) -> i32 {
        self.rss.iter().map(rs_replicas).sum()
    }

    fn pods_total(&self) -> i32 {
        self.rss
            .iter()
            .map(|r| r.status.as_ref().map_or(0, |s| s.replicas))
            .sum()
    }

    fn available_total(&self) -> i32 {
        available_replica_count(&self.rss)
    }

    fn active(&self) -> usize {
        self.rss.iter().filter(|r| rs_replicas(r) > 0).count()
    }
}

/// Runs a deployment at `d1` to completion, then rolls it to `d2`, checking `check` after
/// every tick; returns the cluster once the rollout is complete.
fn roll(d1: Deployment, d2: Deployment, check: &mut dyn FnMut(&Cluster)) -> Cluster {
    let mut c = Cluster::new(d1, vec![]);
    for _ in 0..100 {
        c.sync();
        c.pods_tick();
    }
    let generation = c.d.metadata.generation.unwrap_or(1) + 1;
    let status = c.d.status.clone();
    let annotations = c.d.metadata.annotations.clone();
    c.d = d2;
    c.d.metadata.generation = Some(generation);
    c.d.status = status;
    c.d.metadata.annotations = annotations;
    for _ in 0..500 {
        c.sync();
        c.pods_tick();
        check(&c);
        let status = c.d.status.clone().unwrap_or_default();
        if deployment_complete(&c.d, &status) && c.active() == 1 {
            // One more sync for the Progressing condition and the history cleanup.
            c.sync();
            return c;
        }
    }
    panic!("rollout did not complete: {:?}", c.rss);
}

#[test]
fn a_rollout_completes_and_reports_it() {
    let d1 = web(10, 3, 2);
    let mut d2 = changed_template(&d1, "app:2");
    d2.spec.as_mut().expect("spec").progress_deadline_seconds = Some(600);
    let mut max_pods = 0;
    let mut min_available = i32::MAX;
    let c = roll(d1, d2, &mut |c| {
        max_pods = max_pods.max(c.spec_total());
        min_available = min_available.min(c.available_total());
    });
    // The rollout uses all its room, and no more.
    assert_eq!(max_pods, 13, "at most replicas + maxSurge");
    assert_eq!(min_available, 8, "at least replicas - maxUnavailable");
    let status = c.d.status.clone().expect("status");
    let p = get_condition(&status, PROGRESSING).expect("Progressing");
    assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE_REASON));
    let a = get_condition(&status, AVAILABLE).expect("Available");
    assert_eq!(a.status, "True");
    assert_eq!(revision(&c.d.metadata), Ok(2));
    assert_eq!(status.updated_replicas, Some(10));
}

#[test]
fn revision_history_limit_keeps_the_newest_old_replica_sets() {
    let mut d = web(2, 1, 0);
    d.spec.as_mut().expect("spec").revision_history_limit = Some(2);
    let mut c = Cluster::new(d.clone(), vec![]);
    for v in 0..6 {
        let next = changed_template(&d, &format!("app:{v}"));
        let generation = c.d.metadata.generation.unwrap_or(1) + 1;
        let keep = (c.d.status.clone(), c.d.metadata.annotations.clone());
        c.d = next;
        c.d.metadata.generation = Some(generation);
        (c.d.status, c.d.metadata.annotations) = keep;
        for _ in 0..30 {
            c.sync();
            c.pods_tick();
        }
    }
    assert_eq!(c.rss.len(), 3, "the new ReplicaSet and 2 old ones");
    let mut revisions: Vec<i64> = c
        .rss
        .iter()
        .map(|r| revision(&r.metadata).expect("revision"))
        .collect();
    revisions.sort();
    assert_eq!(revisions, [4, 5, 6]);
}

#[test]
fn recreate_never_runs_old_and_new_pods_together() {
    let mut d1 = web(4, 0, 0);
    d1.spec.as_mut().expect("spec").strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let d2 = changed_template(&d1, "app:2");
    let c = roll(d1, d2, &mut |c| {
        let running = c
            .rss
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.replicas > 0))
            .count();
        assert!(running <= 1, "old and new pods at once: {:?}", c.rss);
    });
    assert_eq!(c.pods_total(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A whole rolling update completes, never with more than replicas + maxSurge pods
    /// asked for, nor fewer than replicas - maxUnavailable available.
    #[test]
    fn rollouts_complete_within_their_bounds(
        replicas_ in 1..15i32,
        surge in arb_int_or_percent(),
        unavailable in arb_int_or_percent(),
    ) {
        let d1 = new_deployment("web", replicas_, None, Some(surge), Some(unavailable), &[("app", "web")]);
        let d2 = changed_template(&d1, "app:2");
        let max_pods = replicas_ + max_surge(&d2);
        let min_available = replicas_ - max_unavailable(&d2);
        let mut violation = None;
        roll(d1, d2, &mut |c| {
            if c.spec_total() > max_pods || c.available_total() < min_available {
                violation.get_or_insert((c.spec_total(), c.available_total()));
            }
        });
        prop_assert_eq!(violation, None, "max pods {}, min available {}", max_pods, min_available);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Scaling a deployment in the middle of a rollout (proportional scaling across the old
    /// and new ReplicaSets) still ends with exactly the new size, all on the new template.
    #[test]
    fn scaling_during_a_rollout_completes(
        replicas_ in 1..15i32,
        scaled_to in 0..25i32,
        at_tick in 0..6usize,
        surge in 0..4i32,
        unavailable in 0..4i32,
    ) {
        let d1 = web(replicas_, surge, unavailable);
        let d2 = changed_template(&d1, "app:2");
        let mut tick = 0;
        let mut c = Cluster::new(d1, vec![]);
        for _ in 0..60 {
            c.sync();
            c.pods_tick();
        }
        let keep = (c.d.status.clone(), c.d.metadata.annotations.clone());
        c.d = d2;
        c.d.metadata.generation = Some(2);
        (c.d.status, c.d.metadata.annotations) = keep;
        let mut done = false;
        for _ in 0..500 {
            if tick == at_tick {
                c.d.spec.as_mut().expect("spec").replicas = Some(scaled_to);
                c.d.metadata.generation = Some(3);
            }
            tick += 1;
            c.sync();
            c.pods_tick();
            let status = c.d.status.clone().unwrap_or_default();
            if tick > at_tick && deployment_complete(&c.d, &status) && c.active() <= 1 {
                done = true;
                break;
            }
        }
        prop_assert!(done, "{:?}", c.rss.iter().map(|r| (r.metadata.name.clone(), rs_replicas(r))).collect::<Vec<_>>());
        let new_rs = find_new_replica_set(&c.d, &c.rss).expect("new ReplicaSet");
        prop_assert_eq!(rs_replicas(new_rs), scaled_to);
        prop_assert_eq!(c.spec_total(), scaled_to);
    }
}

/// Scaling down mid-rollout to the size the one active (old) ReplicaSet already has: the
/// ReplicaSet's desired-replicas annotation must still be brought up to date, or every
/// later sync takes the deployment for a scaling event and the rollout never goes on
/// (Kubernetes' scale() returns early here: kubernetes/kubernetes#138036 and #138840).
#[test]
fn a_scale_to_the_active_size_does_not_stall_the_rollout() {
    let d1 = web(2, 0, 0);
    let d2 = changed_template(&d1, "app:2");
    let mut c = Cluster::new(d1, vec![]);
    for _ in 0..10 {
        c.sync();
        c.pods_tick();
    }
    c.d = Deployment {
        metadata: ObjectMeta {
            generation: Some(2),
            ..c.d.metadata.clone()
        },
        status: c.d.status.clone(),
        ..d2
    };
    // One step of the rollout: the old ReplicaSet goes to 1, the new one exists at 0.
    c.sync();
    c.pods_tick();
    assert_eq!(c.spec_total(), 1);
    // Scaled to 1: the old ReplicaSet already has 1, annotated with the old size 2.
    c.d.spec.as_mut().expect("spec").replicas = Some(1);
    c.d.metadata.generation = Some(3);
    for _ in 0..20 {
        c.sync();
        c.pods_tick();
    }
    let new_rs = find_new_replica_set(&c.d, &c.rss).expect("new ReplicaSet");
    assert_eq!(rs_replicas(new_rs), 1, "the rollout went on: {:?}", c.rss);
    assert_eq!(c.spec_total(), 1);
}
