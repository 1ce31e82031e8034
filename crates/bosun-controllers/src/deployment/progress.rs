//! `pkg/controller/deployment/progress.go`: the Progressing condition against
//! progressDeadlineSeconds (`syncRolloutStatus`), ReplicaFailure copied up from the
//! ReplicaSets (`getReplicaFailures`), and when to come back to check for a timeout
//! (`requeueStuckDeployment`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};

use super::sync::calculate_status;
use super::util::*;
use super::{Requeue, Syncer};

impl Syncer<'_> {
    /// `syncRolloutStatus`.
    pub(crate) fn sync_rollout_status(&mut self, all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) {
        let mut new_status = calculate_status(&self.d, all, new_rs, self.now);
        let has_deadline = has_progress_deadline(&self.d);
        if !has_deadline {
            remove_condition(&mut new_status, PROGRESSING);
        }
        let current = self
            .d
            .status
            .as_ref()
            .and_then(|s| get_condition(s, PROGRESSING))
            .cloned();
        // A resync of a finished rollout estimates no progress.
        let is_complete = new_status.replicas == new_status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE_REASON);
        if has_deadline && !is_complete {
            let subject = match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
                Some(name) => format!("ReplicaSet {name:?}"),
                None => format!("Deployment {:?}", self.name()),
            };
            if deployment_complete(&self.d, &new_status) {
                let msg = format!("{subject} has successfully progressed.");
                let c = new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE_REASON, msg, self.now);
                set_condition(&mut new_status, c);
            } else if deployment_progressing(&self.d, &new_status) {
                let msg = format!("{subject} is progressing.");
                let mut c = new_condition(
                    PROGRESSING,
                    "True",
                    REPLICA_SET_UPDATED_REASON,
                    msg,
                    self.now,
                );
                // Progress refreshes lastUpdateTime even when the reason stays the same,
                // which set_condition alone would not do.
                if let Some(current) = &current {
                    if current.status == "True" {
                        c.last_transition_time = current.last_transition_time.clone();
                    }
                    remove_condition(&mut new_status, PROGRESSING);
                }
                set_condition(&mut new_status, c);
            } else if deployment_timed_out(&self.d, &new_status, self.now) {
                let msg = format!("{subject} has timed out progressing.");
                let c = new_condition(PROGRESSING, "False", TIMED_OUT_REASON, msg, self.now);
                set_condition(&mut new_status, c);
            }
        }
        match replica_failures(all, new_rs).into_iter().next() {
            Some(c) => set_condition(&mut new_status, c),
            None => remove_condition(&mut new_status, REPLICA_FAILURE),
        }
        let requeue = requeue_stuck_deployment(&self.d, &new_status, self.now);
        if !self.write_status_if_changed(new_status) {
            self.plan.requeue = requeue;
        }
    }
}

/// `getReplicaFailures`: the new ReplicaSet's ReplicaFailure conditions, else the old ones'.
fn replica_failures(all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Vec<DeploymentCondition> {
    let failures = |rs: &ReplicaSet| -> Vec<DeploymentCondition> {
        rs.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .filter(|c| c.type_ == REPLICA_FAILURE)
            .map(replica_set_to_deployment_condition)
            .collect()
    };
    let from_new = new_rs.map(failures).unwrap_or_default();
    if !from_new.is_empty() {
        return from_new;
    }
    all.iter().flat_map(failures).collect()
}

/// `requeueStuckDeployment`: when a rollout shows no progress, come back when its deadline
/// passes: the Progressing condition's lastUpdateTime + progressDeadlineSeconds.
pub fn requeue_stuck_deployment(
    d: &Deployment,
    new_status: &DeploymentStatus,
    now: Timestamp,
) -> Option<Requeue> {
    let current = d
        .status
        .as_ref()
        .and_then(|s| get_condition(s, PROGRESSING))?;
    if !has_progress_deadline(d) {
        return None;
    }
    if deployment_complete(d, new_status) || current.reason.as_deref() == Some(TIMED_OUT_REASON) {
        return None;
    }
    let after = progress_deadline(d, current)?.duration_since(now);
    if after < SignedDuration::from_secs(1) {
        return Some(Requeue::RateLimited);
    }
    // A second more, so the check does not land a few milliseconds early.
    let after = Duration::try_from(after).ok()?;
    Some(Requeue::After(after + Duration::from_secs(1)))
}
