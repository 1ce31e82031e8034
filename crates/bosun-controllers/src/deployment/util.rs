//! The arithmetic and bookkeeping of `pkg/controller/deployment/util/deployment_util.go`,
//! plus the ReplicaSet orderings of `pkg/controller/controller_utils.go` it relies on.
//!
//! Function names follow Kubernetes' (snake_case); each says which one it reproduces.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetCondition,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::Error;

/// The rollout sequence number of a deployment's ReplicaSets (and of the deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet served, comma separated (after rollbacks).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// The deployment's replicas when the ReplicaSet was last scaled by it.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// The deployment's replicas + maxSurge when the ReplicaSet was last scaled by it.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// kubectl's client-side apply record, never copied to ReplicaSets.
pub const LAST_APPLIED_CONFIG_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The round-trip of extensions/v1beta1's `spec.rollbackTo`: `kubectl rollout undo` of old.
pub const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// The label that makes each ReplicaSet's selector unique to its template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// How long the revision-history annotation may grow (sync.go's maxRevHistoryLengthInChars).
pub const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;

/// Condition types.
pub const AVAILABLE: &str = "Available";
/// The Progressing condition type.
pub const PROGRESSING: &str = "Progressing";
/// The ReplicaFailure condition type (copied up from ReplicaSets).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Progressing: a ReplicaSet of the deployment was scaled as part of the rollout.
pub const REPLICA_SET_UPDATED_REASON: &str = "ReplicaSetUpdated";
/// Progressing: the new ReplicaSet could not be created.
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
/// Progressing: the new ReplicaSet was created.
pub const NEW_REPLICA_SET_REASON: &str = "NewReplicaSetCreated";
/// Progressing: an existing ReplicaSet matches the template.
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
/// Progressing: the new ReplicaSet is available; the rollout is complete.
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
/// Progressing=False: no progress within progressDeadlineSeconds.
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
/// Progressing=Unknown: the deployment is paused.
pub const PAUSED_DEPLOY_REASON: &str = "DeploymentPaused";
/// Progressing=Unknown: the deployment was resumed.
pub const RESUMED_DEPLOY_REASON: &str = "DeploymentResumed";
/// Available=True.
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
/// Available=False.
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// Event reason of a rollback whose revision does not exist.
pub const ROLLBACK_REVISION_NOT_FOUND: &str = "DeploymentRollbackRevisionNotFound";
/// Event reason of a rollback to the template the deployment already has.
pub const ROLLBACK_TEMPLATE_UNCHANGED: &str = "DeploymentRollbackTemplateUnchanged";
/// Event reason of a rollback done.
pub const ROLLBACK_DONE: &str = "DeploymentRollback";

// ---- reading the spec with apps/v1 defaults ----

/// `spec.replicas`, 1 when absent (apps/v1 default).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas`, 1 when absent (apps/v1 default).
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Sets a ReplicaSet's `spec.replicas`.
pub fn set_rs_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
}

/// A ReplicaSet's `status.availableReplicas`.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// `spec.minReadySeconds`.
pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

/// `spec.paused`.
pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

/// `spec.progressDeadlineSeconds`, 600 when absent (apps/v1 default).
pub fn progress_deadline_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600)
}

/// `spec.revisionHistoryLimit`, 10 when absent (apps/v1 default).
pub fn revision_history_limit(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
}

/// The strategy type, "RollingUpdate" when absent (apps/v1 default).
pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `IsRollingUpdate`.
pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

fn default_quarter() -> IntOrString {
    IntOrString::String("25%".into())
}

/// maxSurge and maxUnavailable with the apps/v1 defaults (25% each) for absent values.
pub fn rolling_params(d: &Deployment) -> (IntOrString, IntOrString) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = ru
        .and_then(|r| r.max_surge.clone())
        .unwrap_or_else(default_quarter);
    let unavailable = ru
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or_else(default_quarter);
    (surge, unavailable)
}

/// `HasProgressDeadline`: a deadline is set and is not "infinite" (MaxInt32).
pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline_seconds(d) != i32::MAX
}

/// `HasRevisionHistoryLimit`: a limit is set and is not "keep all" (MaxInt32).
pub fn has_revision_history_limit(d: &Deployment) -> bool {
    revision_history_limit(d) != i32::MAX
}

// ---- maxSurge / maxUnavailable ----

/// `intstr.GetScaledValueFromIntOrPercent`: an int, or a percentage of `total` rounded up
/// or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(Error::IntOrString(
                    "invalid type: string is not a percentage".into(),
                ));
            };
            let pct: i64 = parse_go_int(number).ok_or_else(|| {
                Error::IntOrString(format!(
                    "invalid value {s:?}: strconv.Atoi: parsing {number:?}: invalid syntax"
                ))
            })?;
            let scaled = pct as f64 * f64::from(total) / 100.0;
            let rounded = if round_up {
                scaled.ceil()
            } else {
                scaled.floor()
            };
            // Go converts with int(); values beyond int32 only come from absurd percentages.
            Ok(rounded.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32)
        }
    }
}

/// `strconv.Atoi`: optional sign, decimal digits.
fn parse_go_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `ResolveFenceposts`: maxSurge rounds up, maxUnavailable rounds down, absent values are 0,
/// and when both come to 0 maxUnavailable becomes 1 (a rollout must be able to move).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), Error> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// `MaxUnavailable`: 0 unless rolling with replicas, never above replicas. Invalid values
/// (which validation refuses) count as 0, as in Kubernetes.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let replicas = replicas(d);
    if !is_rolling_update(d) || replicas == 0 {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    let (_, max) = resolve_fenceposts(Some(&surge), Some(&unavailable), replicas).unwrap_or((0, 0));
    max.min(replicas)
}

/// `MaxSurge`: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    let (surge, unavailable) = rolling_params(d);
    resolve_fenceposts(Some(&surge), Some(&unavailable), replicas(d))
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// `MinAvailable`.
pub fn min_available(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    replicas(d).saturating_sub(max_unavailable(d))
}

// ---- revisions and annotations ----

fn annotations_mut(meta: &mut ObjectMeta) -> &mut BTreeMap<String, String> {
    meta.annotations.get_or_insert_with(BTreeMap::new)
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// `Revision`: the revision annotation; 0 when absent, an error when not an integer.
pub fn revision(meta: &ObjectMeta) -> Result<i64, Error> {
    match annotation(meta, REVISION_ANNOTATION) {
        None => Ok(0),
        Some(v) => parse_go_int(v).ok_or_else(|| Error::Revision(v.to_string())),
    }
}

/// `MaxRevision`: the highest revision among the ReplicaSets (unparsable ones skipped).
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter()
        .filter_map(|rs| revision(&rs.metadata).ok())
        .fold(0, i64::max)
}

/// `LastRevision`: the second highest revision (what "undo" goes back to).
pub fn last_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    let (mut max, mut sec_max) = (0, 0);
    for v in rss.into_iter().filter_map(|rs| revision(&rs.metadata).ok()) {
        if v >= max {
            sec_max = max;
            max = v;
        } else if v > sec_max {
            sec_max = v;
        }
    }
    sec_max
}

/// `SetDeploymentRevision`: true when the deployment's revision annotation changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let a = annotations_mut(&mut d.metadata);
    if a.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    a.insert(REVISION_ANNOTATION.into(), revision.into());
    true
}

/// The annotations a deployment never passes to its ReplicaSets (`annotationsToSkip`).
pub fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_CONFIG_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | DEPRECATED_ROLLBACK_TO
    )
}

/// `copyDeploymentAnnotationsToReplicaSet`: true when the ReplicaSet's annotations changed.
fn copy_deployment_annotations_to_replica_set(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let rs_annotations = annotations_mut(&mut rs.metadata);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || rs_annotations.get(k) == Some(v) {
            continue;
        }
        rs_annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// `SetNewReplicaSetAnnotations`: copy the deployment's annotations, raise the revision to
/// `new_revision` (keeping the old one in the revision history, bounded to `limit` chars),
/// and for a ReplicaSet about to be created set the replicas annotations. True when changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
    limit: usize,
) -> bool {
    let mut changed = copy_deployment_annotations_to_replica_set(d, rs);
    let a = annotations_mut(&mut rs.metadata);
    let old_revision = a.get(REVISION_ANNOTATION).cloned();
    let old_int = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(v) => match parse_go_int(v) {
            Some(i) => i,
            // Kubernetes gives up on this ReplicaSet's annotations ("OldRevision not int").
            None => return false,
        },
    };
    let Some(new_int) = parse_go_int(new_revision) else {
        return false;
    };
    if old_int < new_int {
        a.insert(REVISION_ANNOTATION.into(), new_revision.into());
        changed = true;
    }
    if let Some(old) = old_revision.filter(|_| old_int < new_int) {
        // A known revision raised again means a rollback to this ReplicaSet: keep history.
        let history = a
            .get(REVISION_HISTORY_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if history.is_empty() {
            a.insert(REVISION_HISTORY_ANNOTATION.into(), old);
        } else {
            let mut old_revisions: Vec<&str> = history.split(',').collect();
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > limit && start < old_revisions.len() {
                total -= old_revisions[start].len() + 1;
                start += 1;
            }
            if total <= limit {
                old_revisions.drain(..start);
                old_revisions.push(&old);
                let joined = old_revisions.join(",");
                a.insert(REVISION_HISTORY_ANNOTATION.into(), joined);
            }
        }
    }
    if !exists {
        let desired = replicas(d);
        changed |= set_replicas_annotations(rs, desired, desired.saturating_add(max_surge(d)));
    }
    changed
}

/// `SetDeploymentAnnotationsTo`: on rollback, the deployment takes the ReplicaSet's
/// annotations (except the skipped ones, which it keeps its own of).
pub fn set_deployment_annotations_to(d: &mut Deployment, rollback_to: &ReplicaSet) {
    let mut kept: BTreeMap<String, String> = d
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| skip_copy_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in rollback_to.metadata.annotations.iter().flatten() {
        if !skip_copy_annotation(k) {
            kept.insert(k.clone(), v.clone());
        }
    }
    d.metadata.annotations = Some(kept);
}

/// `getIntFromAnnotation` (`strconv.Atoi`, then int32 as Go converts).
fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)
        .and_then(parse_go_int)
        .map(|v| v as i32)
}

/// `GetDesiredReplicasAnnotation`.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS_ANNOTATION)
}

/// `getMaxReplicasAnnotation`.
pub fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, MAX_REPLICAS_ANNOTATION)
}

/// `SetReplicasAnnotations`: true when either annotation changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = annotations_mut(&mut rs.metadata);
    let mut updated = false;
    for (key, value) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if a.get(key) != Some(&value) {
            a.insert(key.into(), value);
            updated = true;
        }
    }
    updated
}

/// `ReplicasAnnotationsNeedUpdate`.
pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION) != Some(desired.to_string().as_str())
        || annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str())
}

// ---- proportional scaling ----

/// `integer.RoundToInt32`: half away from zero.
fn round_to_i32(a: f64) -> i32 {
    let r = if a < 0.0 { a - 0.5 } else { a + 0.5 };
    r.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// `getReplicaSetFraction`: how many replicas this ReplicaSet gains (or loses) when the
/// deployment goes from the size recorded in its max-replicas annotation to the current
/// replicas + maxSurge.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let rs_replicas = rs_replicas(rs);
    if replicas(d) == 0 {
        return 0i32.saturating_sub(rs_replicas);
    }
    let deployment_max = i64::from(replicas(d)) + i64::from(max_surge(d));
    let before = match max_replicas_annotation(rs) {
        Some(v) if v != 0 => i64::from(v),
        _ => {
            // No usable annotation: fall back to the deployment's current size, staying within
            // limits thanks to the min/max in GetProportion.
            let current = i64::from(d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
            if current == 0 {
                return 0;
            }
            current
        }
    };
    let new_size = (i64::from(rs_replicas) * deployment_max) as f64 / before as f64;
    round_to_i32(new_size).saturating_sub(rs_replicas)
}

/// `GetProportion`: this ReplicaSet's share of `to_add` (negative to remove), never beyond
/// what is left to add after `added`.
pub fn get_proportion(rs: Option<&ReplicaSet>, d: &Deployment, to_add: i32, added: i32) -> i32 {
    let Some(rs) = rs else { return 0 };
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add.saturating_sub(added);
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

// ---- finding ReplicaSets ----

/// Deployment's template without the hash label, as JSON with nulls and empty collections
/// dropped: Kubernetes compares templates with `apiequality.Semantic.DeepEqual`, for which an
/// empty map or slice equals an absent one.
fn template_value(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    let mut v = serde_json::to_value(&t).unwrap_or(Value::Null);
    prune(&mut v);
    v
}

fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => {
            for x in a.iter_mut() {
                prune(x);
            }
            a.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, x| !prune(x));
            o.is_empty()
        }
        _ => false,
    }
}

/// `EqualIgnoreHash`: the templates are equal apart from the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    template_value(a) == template_value(b)
}

/// A ReplicaSet's template (empty when absent).
pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default()
}

/// The deployment's template.
pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// `FindNewReplicaSet`: the oldest ReplicaSet whose template equals the deployment's.
pub fn find_new_replica_set<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let want = template_value(&template(d));
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation_timestamp(a, b));
    sorted
        .into_iter()
        .find(|rs| template_value(&rs_template(rs)) == want)
}

/// `FindOldReplicaSets`: (old ones with replicas, all old ones).
pub fn find_old_replica_sets(
    d: &Deployment,
    rss: &[ReplicaSet],
) -> (Vec<ReplicaSet>, Vec<ReplicaSet>) {
    let new_name = find_new_replica_set(d, rss).and_then(|rs| rs.metadata.name.clone());
    let all: Vec<ReplicaSet> = rss
        .iter()
        .filter(|rs| new_name.is_none() || rs.metadata.name != new_name)
        .cloned()
        .collect();
    let required = all
        .iter()
        .filter(|rs| rs_replicas(rs) != 0)
        .cloned()
        .collect();
    (required, all)
}

/// `FindActiveOrLatest`: the only ReplicaSet with replicas, or the newest one when none has
/// any; `None` when several have replicas (then they scale proportionally).
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut newest_first: Vec<&ReplicaSet> = old.iter().collect();
    newest_first.sort_by(|a, b| by_creation_timestamp(b, a));
    let active: Vec<&ReplicaSet> = newest_first
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|rs| rs_replicas(rs) > 0)
        .collect();
    match active.len() {
        0 => new_rs.or(newest_first.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// `GetReplicaCountForReplicaSets`: the sum of spec.replicas.
pub fn replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter()
        .fold(0, |n, rs| n.saturating_add(rs_replicas(rs)))
}

fn status_sum<'a>(
    rss: impl IntoIterator<Item = &'a ReplicaSet>,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32,
) -> i32 {
    rss.into_iter()
        .filter_map(|rs| rs.status.as_ref())
        .fold(0, |n, s| n.saturating_add(f(s)))
}

/// `GetActualReplicaCountForReplicaSets`: the sum of status.replicas.
pub fn actual_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    status_sum(rss, |s| s.replicas)
}

/// `GetReadyReplicaCountForReplicaSets`.
pub fn ready_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    status_sum(rss, |s| s.ready_replicas.unwrap_or(0))
}

/// `GetAvailableReplicaCountForReplicaSets`.
pub fn available_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    status_sum(rss, |s| s.available_replicas.unwrap_or(0))
}

/// `NewRSNewReplicas`: the size the new ReplicaSet should have now. Rolling: grow by what
/// maxSurge leaves room for, never past the deployment's replicas. Recreate: all of them.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, Error> {
    match strategy_type(d) {
        "RollingUpdate" => {
            let (surge, _) = rolling_params(d);
            let max_surge = scaled_value(&surge, replicas(d), true)?;
            let current = replica_count(all.iter().copied());
            let max_total = replicas(d).saturating_add(max_surge);
            let new_replicas = rs_replicas(new_rs);
            if current >= max_total {
                return Ok(new_replicas);
            }
            let scale_up = max_total
                .saturating_sub(current)
                .min(replicas(d).saturating_sub(new_replicas));
            Ok(new_replicas.saturating_add(scale_up))
        }
        "Recreate" => Ok(replicas(d)),
        other => Err(Error::Strategy(other.to_string())),
    }
}

/// `IsSaturated`: the ReplicaSet has, is annotated with, and has available all the
/// deployment's replicas.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(desired) =
        annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).and_then(parse_go_int)
    else {
        return false;
    };
    let r = replicas(d);
    rs_replicas(rs) == r && desired as i32 == r && rs_available(rs) == r
}

// ---- status and conditions ----

/// `DeploymentComplete`: every desired replica is updated and available, no old pods run,
/// and the status is of the current generation.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    s.updated_replicas.unwrap_or(0) == r
        && s.replicas.unwrap_or(0) == r
        && s.available_replicas.unwrap_or(0) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: compared with the deployment's recorded status, more pods are
/// updated, ready or available, or fewer old pods remain.
pub fn deployment_progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas).saturating_sub(n(old.updated_replicas));
    let new_old = n(s.replicas).saturating_sub(n(s.updated_replicas));
    n(s.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

/// `DeploymentTimedOut`: the Progressing condition was last updated more than
/// progressDeadlineSeconds before `now` (or already says so).
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get_condition(s, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    progress_deadline(d, c).is_some_and(|t| t < now)
}

/// When a Progressing condition's deadline passes: its lastUpdateTime (the last progress)
/// plus progressDeadlineSeconds. `None` beyond the representable range.
pub fn progress_deadline(d: &Deployment, c: &DeploymentCondition) -> Option<Timestamp> {
    let from = c
        .last_update_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let deadline = SignedDuration::from_secs(i64::from(progress_deadline_seconds(d)));
    from.checked_add(deadline).ok()
}

/// `now` as an API time: whole seconds, as it reads back from the apiserver, so a status
/// written and read again compares equal.
pub fn api_time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// `NewDeploymentCondition`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        last_update_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
        reason: Some(reason.into()),
        message: Some(message),
    }
}

/// `GetDeploymentCondition`.
pub fn get_condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// `SetDeploymentCondition`: a condition of the same status and reason is left as it is;
/// one of the same status keeps its lastTransitionTime; it goes to the end of the list.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = get_condition(s, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_with(Vec::new).push(c);
}

/// `RemoveDeploymentCondition`.
pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

/// `ReplicaSetToDeploymentCondition`.
pub fn replica_set_to_deployment_condition(c: &ReplicaSetCondition) -> DeploymentCondition {
    DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        last_transition_time: c.last_transition_time.clone(),
        last_update_time: c.last_transition_time.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    }
}

// ---- orderings (controller_utils.go) ----

/// `ReplicaSetsByCreationTimestamp`: older first, then by name.
pub fn by_creation_timestamp(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    a.metadata
        .creation_timestamp
        .cmp(&b.metadata.creation_timestamp)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// `ReplicaSetsBySizeOlder`: larger first, then older first.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation_timestamp(a, b))
}

/// `ReplicaSetsBySizeNewer`: larger first, then newer first.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation_timestamp(b, a))
}

/// `ReplicaSetsByRevision`: lower revision first; creation time when equal or unparsable.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(&a.metadata), revision(&b.metadata)) {
        (Ok(x), Ok(y)) if x != y => x.cmp(&y),
        _ => by_creation_timestamp(a, b),
    }
}
