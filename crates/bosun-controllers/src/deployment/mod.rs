//! The deployment controller's decisions: one sync of one Deployment as a [`Plan`].
//!
//! [`sync_deployment`] reproduces `DeploymentController.syncDeployment`
//! (`pkg/controller/deployment/deployment_controller.go`) after the ReplicaSets have been
//! claimed: the empty-selector guard, status-only sync while deleting,
//! `checkPausedConditions`, `sync` for paused deployments and scaling events (`sync.go`:
//! `scale`, proportional scaling with `GetProportion`, `cleanupDeployment`,
//! `calculateStatus`), `rollback` (`rollback.go`), and the strategies `rolloutRolling`
//! (`rolling.go`: `reconcileNewReplicaSet`, `reconcileOldReplicaSets`,
//! `cleanupUnhealthyReplicas`, `scaleDownOldReplicaSetsForRollingUpdate`) and
//! `rolloutRecreate` (`recreate.go`), ending in `syncRolloutStatus` and
//! `requeueStuckDeployment` (`progress.go`). The arithmetic is in [`util`], the
//! pod-template-hash in [`compute_hash`].
//!
//! Kubernetes' controller writes as it goes and keeps working on its in-memory copies; the
//! plan lists those writes in the same order, computed on the same copies, assuming each
//! succeeds. The loop applies them in order and stops at the first failure; the next sync
//! starts again from what the cache then holds. Where Kubernetes would write the same
//! ReplicaSet twice in one sync with a stale resourceVersion (and fail with a conflict), the
//! plan writes it once.

mod hash;
mod progress;
mod recreate;
mod rollback;
mod rolling;
mod sync;
pub mod util;

#[cfg(test)]
mod tests;

pub use hash::{compute_hash, safe_encode};
pub use rollback::rollback_to_revision;

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::podutil;
use util::*;

/// Why a sync could not be planned to its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// maxSurge or maxUnavailable is neither an int nor a percentage.
    #[error("invalid value for IntOrString: {0}")]
    IntOrString(String),
    /// `NewRSNewReplicas` with a strategy it does not know.
    #[error("deployment type {0} isn't supported")]
    Strategy(String),
    /// `syncDeployment` with a strategy it does not know.
    #[error("unexpected deployment strategy type: {0}")]
    UnexpectedStrategy(String),
    /// A revision annotation that is not an integer.
    #[error("strconv.ParseInt: parsing {0:?}: invalid syntax")]
    Revision(String),
}

/// Normal or Warning, as Kubernetes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something happened as intended.
    Normal,
    /// Something an operator may need to look at.
    Warning,
}

/// An event about the deployment, with Kubernetes' reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// The machine-readable reason, e.g. `ScalingReplicaSet`.
    pub reason: String,
    /// The human-readable message.
    pub message: String,
}

/// One write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ReplicaSet (its name is `<deployment>-<hash>`). On AlreadyExists, see
    /// [`on_create_already_exists`]; on another error, [`on_create_failed`].
    CreateReplicaSet(Box<ReplicaSet>),
    /// Update this ReplicaSet to what it holds (replicas, annotations, minReadySeconds).
    UpdateReplicaSet(Box<ReplicaSet>),
    /// Delete this old ReplicaSet (revision history cleanup).
    DeleteReplicaSet {
        /// Its name.
        name: String,
        /// Its uid, as a delete precondition.
        uid: Option<String>,
    },
    /// Write the deployment through its status subresource. Kubernetes' status strategy
    /// (`deploymentStatusStrategy.PrepareForUpdate`) keeps everything of this write but the
    /// spec and the labels, which is how the deployment's revision annotation is set: the
    /// apiserver must keep the annotations of a deployment status write for it to show.
    UpdateStatus(Box<Deployment>),
    /// Update the deployment itself (a rollback changes its template and annotations).
    Update(Box<Deployment>),
    /// Record an event on the deployment.
    Event(Event),
}

/// When to sync this deployment again regardless of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Now, through the rate limiter (the progress deadline is under a second away).
    RateLimited,
    /// After this long (the progress deadline, plus a second against clock skew).
    After(Duration),
}

/// What one sync of a deployment decides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The writes, in order.
    pub actions: Vec<Action>,
    /// A progress check to come back for.
    pub requeue: Option<Requeue>,
    /// Why planning stopped early; the actions before it still stand, and the sync is
    /// retried with back-off, as Kubernetes does with a sync error.
    pub error: Option<Error>,
}

/// What a sync looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The deployment.
    pub deployment: &'a Deployment,
    /// The ReplicaSets it controls, once claimed ([`crate::podutil::claim`]).
    pub replica_sets: &'a [ReplicaSet],
    /// Pods controlled by those ReplicaSets (Recreate waits for old ones to end).
    pub pods: &'a [Pod],
    /// The time of the sync.
    pub now: Timestamp,
}

/// `syncDeployment`: the plan for one sync of a deployment.
pub fn sync_deployment(input: Input<'_>) -> Plan {
    let mut s = Syncer {
        d: input.deployment.clone(),
        rs_list: input.replica_sets.to_vec(),
        pods: input.pods,
        now: input.now,
        plan: Plan::default(),
    };
    if let Err(e) = s.sync_deployment() {
        s.plan.error = Some(e);
    }
    s.plan
}

/// The API version and kind of a deployment's controller references.
pub const CONTROLLER_API_VERSION: &str = "apps/v1";
/// The kind of a deployment's controller references.
pub const CONTROLLER_KIND: &str = "Deployment";

/// The Go controller's state during one sync: its working copy of the deployment and the
/// ReplicaSets it listed.
pub(crate) struct Syncer<'a> {
    pub(crate) d: Deployment,
    pub(crate) rs_list: Vec<ReplicaSet>,
    pub(crate) pods: &'a [Pod],
    pub(crate) now: Timestamp,
    pub(crate) plan: Plan,
}

impl Syncer<'_> {
    fn sync_deployment(&mut self) -> Result<(), Error> {
        let selector = self.d.spec.as_ref().map(|s| &s.selector);
        if selector.is_none_or(crate::selector::is_empty) {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            let generation = self.d.metadata.generation.unwrap_or(0);
            let status = self.d.status.get_or_insert_with(Default::default);
            if status.observed_generation.unwrap_or(0) < generation {
                status.observed_generation = Some(generation);
                self.write_status();
            }
            return Ok(());
        }
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only();
        }
        self.check_paused_conditions();
        if paused(&self.d) {
            return self.sync();
        }
        if rollback::rollback_to(&self.d).is_some() {
            return self.rollback();
        }
        if self.is_scaling_event()? {
            return self.sync();
        }
        match strategy_type(&self.d) {
            "Recreate" => self.rollout_recreate(),
            "RollingUpdate" => self.rollout_rolling(),
            other => Err(Error::UnexpectedStrategy(other.to_string())),
        }
    }

    pub(crate) fn event(&mut self, type_: EventType, reason: &str, message: String) {
        self.plan.actions.push(Action::Event(Event {
            type_,
            reason: reason.into(),
            message,
        }));
    }

    pub(crate) fn write_status(&mut self) {
        self.plan
            .actions
            .push(Action::UpdateStatus(Box::new(self.d.clone())));
    }

    pub(crate) fn name(&self) -> String {
        self.d.metadata.name.clone().unwrap_or_default()
    }

    /// Keeps the working list in step with a ReplicaSet this sync wrote, as the cache will be.
    fn remember(&mut self, rs: &ReplicaSet) {
        match self
            .rs_list
            .iter_mut()
            .find(|x| x.metadata.name == rs.metadata.name)
        {
            Some(x) => *x = rs.clone(),
            None => self.rs_list.push(rs.clone()),
        }
    }

    /// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when asked and
    /// missing) and all old ones, with revisions brought up to date.
    pub(crate) fn get_all_replica_sets_and_sync_revision(
        &mut self,
        create_if_not_existed: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let (_, all_old) = find_old_replica_sets(&self.d, &self.rs_list);
        let new_rs = self.get_new_replica_set(&all_old, create_if_not_existed)?;
        Ok((new_rs, all_old))
    }

    /// `getNewReplicaSet`.
    fn get_new_replica_set(
        &mut self,
        old: &[ReplicaSet],
        create_if_not_existed: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let existing = find_new_replica_set(&self.d, &self.rs_list).cloned();
        let new_revision = max_revision(old).saturating_add(1).to_string();
        if let Some(existing) = existing {
            let mut rs = existing;
            let annotations_updated = set_new_replica_set_annotations(
                &self.d,
                &mut rs,
                &new_revision,
                true,
                MAX_REV_HISTORY_LENGTH_IN_CHARS,
            );
            let min_ready = min_ready_seconds(&self.d);
            let rs_min_ready = rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0);
            if annotations_updated || rs_min_ready != min_ready {
                rs.spec
                    .get_or_insert_with(Default::default)
                    .min_ready_seconds = Some(min_ready);
                self.plan
                    .actions
                    .push(Action::UpdateReplicaSet(Box::new(rs.clone())));
                self.remember(&rs);
                return Ok(Some(rs));
            }
            // The revision recorded on the new ReplicaSet is the one the deployment shows.
            let rs_revision = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let mut needs_update = set_deployment_revision(&mut self.d, &rs_revision);
            let has_deadline = has_progress_deadline(&self.d);
            let status = self.d.status.get_or_insert_with(Default::default);
            if has_deadline && get_condition(status, PROGRESSING).is_none() {
                let msg = format!(
                    "Found new replica set {:?}",
                    rs.metadata.name.as_deref().unwrap_or("")
                );
                let c = new_condition(PROGRESSING, "True", FOUND_NEW_RS_REASON, msg, self.now);
                set_condition(status, c);
                needs_update = true;
            }
            if needs_update {
                self.write_status();
            }
            return Ok(Some(rs));
        }
        if !create_if_not_existed {
            return Ok(None);
        }

        let mut template = template(&self.d);
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collision_count);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{}", self.name(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![podutil::new_controller_ref(
                    CONTROLLER_API_VERSION,
                    CONTROLLER_KIND,
                    &self.d.metadata,
                )]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(min_ready_seconds(&self.d)),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain([&rs]).collect();
        let count = new_rs_new_replicas(&self.d, &all, &rs)?;
        set_rs_replicas(&mut rs, count);
        set_new_replica_set_annotations(
            &self.d,
            &mut rs,
            &new_revision,
            false,
            MAX_REV_HISTORY_LENGTH_IN_CHARS,
        );
        self.plan
            .actions
            .push(Action::CreateReplicaSet(Box::new(rs.clone())));
        self.remember(&rs);
        if count > 0 {
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {count}"),
            );
        }
        let mut needs_update = set_deployment_revision(&mut self.d, &new_revision);
        if has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set {name:?}");
            let c = new_condition(PROGRESSING, "True", NEW_REPLICA_SET_REASON, msg, self.now);
            set_condition(self.d.status.get_or_insert_with(Default::default), c);
            needs_update = true;
        }
        if needs_update {
            self.write_status();
        }
        Ok(Some(rs))
    }

    /// `scaleReplicaSetAndRecordEvent`: scale unless already at `n`.
    pub(crate) fn scale_replica_set_and_record_event(
        &mut self,
        rs: &ReplicaSet,
        n: i32,
    ) -> (bool, ReplicaSet) {
        if rs_replicas(rs) == n {
            return (false, rs.clone());
        }
        self.scale_replica_set(rs, n)
    }

    /// `scaleReplicaSet`: set the size and the replicas annotations; true when the size
    /// changed.
    pub(crate) fn scale_replica_set(&mut self, rs: &ReplicaSet, n: i32) -> (bool, ReplicaSet) {
        let desired = replicas(&self.d);
        let max = desired.saturating_add(max_surge(&self.d));
        let old = rs_replicas(rs);
        let size_needs_update = old != n;
        if !size_needs_update && !replicas_annotations_need_update(rs, desired, max) {
            return (false, rs.clone());
        }
        let mut copy = rs.clone();
        set_rs_replicas(&mut copy, n);
        set_replicas_annotations(&mut copy, desired, max);
        self.plan
            .actions
            .push(Action::UpdateReplicaSet(Box::new(copy.clone())));
        self.remember(&copy);
        if size_needs_update {
            let op = if old < n { "up" } else { "down" };
            let name = copy.metadata.name.clone().unwrap_or_default();
            self.event(
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {name} from {old} to {n}"),
            );
        }
        (size_needs_update, copy)
    }
}

/// `FilterActiveReplicaSets`: the ReplicaSets with replicas.
pub(crate) fn filter_active<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> Vec<ReplicaSet> {
    rss.into_iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .cloned()
        .collect()
}

/// `getReplicaSetsForDeployment` (`ClaimReplicaSets`): each ReplicaSet of the namespace with
/// what the deployment does about it, matching the deployment's selector against the
/// ReplicaSet's own labels. The deployment's set is the `Owned` ones plus the adopted ones.
pub fn claim_replica_sets<'a>(
    d: &Deployment,
    replica_sets: &'a [ReplicaSet],
) -> Result<Vec<(&'a ReplicaSet, podutil::Claim)>, crate::selector::SelectorError> {
    let selector = d.spec.as_ref().map(|s| &s.selector);
    replica_sets
        .iter()
        .map(|rs| {
            let matches = crate::selector::matches(selector, rs.metadata.labels.as_ref())?;
            Ok((rs, podutil::claim(&d.metadata, &rs.metadata, matches)))
        })
        .collect()
}

/// What to do when creating the new ReplicaSet failed with AlreadyExists and `existing` is
/// the one by that name (sync.go): `None` when it is this deployment's with the same
/// template (sync again: it is the new ReplicaSet); otherwise a hash collision, and the
/// deployment to write through its status with `collisionCount` raised, so the next name
/// differs.
pub fn on_create_already_exists(d: &Deployment, existing: &ReplicaSet) -> Option<Deployment> {
    let uid = d.metadata.uid.as_deref().unwrap_or("");
    if podutil::is_controlled_by(&existing.metadata, uid)
        && equal_ignore_hash(&template(d), &rs_template(existing))
    {
        return None;
    }
    let mut d = d.clone();
    let status = d.status.get_or_insert_with(Default::default);
    status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
    Some(d)
}

/// What to do when creating the new ReplicaSet failed otherwise (sync.go): with a progress
/// deadline, a Progressing=False condition written through the status; and a Warning event.
pub fn on_create_failed(d: &Deployment, rs_name: &str, err: &str, now: Timestamp) -> Vec<Action> {
    let msg = format!("Failed to create new replica set {rs_name:?}: {err}");
    let mut actions = Vec::new();
    if has_progress_deadline(d) {
        let mut d = d.clone();
        let c = new_condition(
            PROGRESSING,
            "False",
            FAILED_RS_CREATE_REASON,
            msg.clone(),
            now,
        );
        set_condition(d.status.get_or_insert_with(Default::default), c);
        actions.push(Action::UpdateStatus(Box::new(d)));
    }
    actions.push(Action::Event(Event {
        type_: EventType::Warning,
        reason: FAILED_RS_CREATE_REASON.into(),
        message: msg,
    }));
    actions
}
