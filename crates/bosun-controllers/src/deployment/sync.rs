//! `pkg/controller/deployment/sync.go`: scaling events and paused deployments (`sync`,
//! `scale`), revision history cleanup (`cleanupDeployment`) and the status
//! (`calculateStatus`, `syncDeploymentStatus`).

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet};

use super::util::*;
use super::{Action, Error, Syncer, filter_active, rollback};

impl Syncer<'_> {
    /// `syncStatusOnly`: a deployment being deleted only gets its status updated.
    pub(crate) fn sync_status_only(&mut self) -> Result<(), Error> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(false)?;
        let all: Vec<ReplicaSet> = old.into_iter().chain(new_rs.clone()).collect();
        self.sync_deployment_status(&all, new_rs.as_ref());
        Ok(())
    }

    /// `sync`: reconcile a scaling event or a paused deployment.
    pub(crate) fn sync(&mut self) -> Result<(), Error> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(false)?;
        self.scale(new_rs.as_ref(), &old);
        if paused(&self.d) && rollback::rollback_to(&self.d).is_none() {
            self.cleanup_deployment(&old);
        }
        let all: Vec<ReplicaSet> = old.into_iter().chain(new_rs.clone()).collect();
        self.sync_deployment_status(&all, new_rs.as_ref());
        Ok(())
    }

    /// `checkPausedConditions`: Progressing=Unknown when paused or resumed, so time spent
    /// paused never counts against the progress deadline.
    pub(crate) fn check_paused_conditions(&mut self) {
        if !has_progress_deadline(&self.d) {
            return;
        }
        let paused = paused(&self.d);
        let status = self.d.status.get_or_insert_with(Default::default);
        let reason = get_condition(status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT_REASON) {
            return;
        }
        let paused_cond_exists = reason.as_deref() == Some(PAUSED_DEPLOY_REASON);
        let condition = if paused && !paused_cond_exists {
            (PAUSED_DEPLOY_REASON, "Deployment is paused")
        } else if !paused && paused_cond_exists {
            (RESUMED_DEPLOY_REASON, "Deployment is resumed")
        } else {
            return;
        };
        let c = new_condition(
            PROGRESSING,
            "Unknown",
            condition.0,
            condition.1.into(),
            self.now,
        );
        set_condition(status, c);
        self.write_status();
    }

    /// `isScalingEvent`: an active ReplicaSet records a desired size other than the
    /// deployment's replicas.
    pub(crate) fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(false)?;
        let replicas = replicas(&self.d);
        Ok(filter_active(old.iter().chain(new_rs.as_ref()))
            .iter()
            .filter_map(desired_replicas_annotation)
            .any(|desired| desired != replicas))
    }

    /// `scale`: bring the ReplicaSets to the deployment's size. One active (or none): it
    /// takes all replicas. A saturated new one: the old ones go to 0. Otherwise, rolling:
    /// the difference to replicas + maxSurge is spread in proportion to their sizes, the
    /// rounding leftover going to the largest (newer first when growing, older first when
    /// shrinking).
    pub(crate) fn scale(&mut self, new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) {
        let replicas = replicas(&self.d);
        if let Some(rs) = find_active_or_latest(new_rs, old) {
            // Kubernetes returns here without a write when the sizes already match, even if
            // the ReplicaSet's desired-replicas annotation is stale; every later sync then
            // takes the deployment for a scaling event and its rollout never goes on
            // (kubernetes/kubernetes#138036 and #138840, open). scale_replica_set brings
            // the annotations up to date in that case, and does nothing otherwise.
            let rs = rs.clone();
            self.scale_replica_set(&rs, replicas);
            return;
        }
        if is_saturated(&self.d, new_rs) {
            for rs in filter_active(old) {
                self.scale_replica_set_and_record_event(&rs, 0);
            }
            return;
        }
        if !is_rolling_update(&self.d) {
            return;
        }
        let sizes = proportional_sizes(&self.d, old.iter().chain(new_rs));
        for (rs, size) in sizes {
            self.scale_replica_set(&rs, size);
        }
    }

    /// `cleanupDeployment`: delete the oldest revisions beyond revisionHistoryLimit, among
    /// those that have no pods left and whose controller has seen their last change.
    pub(crate) fn cleanup_deployment(&mut self, old: &[ReplicaSet]) {
        if !has_revision_history_limit(&self.d) {
            return;
        }
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(revision_history_limit(&self.d));
        if diff <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(diff as usize) {
            let status = rs.status.clone().unwrap_or_default();
            let observed = status.observed_generation.unwrap_or(0);
            if status.replicas != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.plan.actions.push(Action::DeleteReplicaSet {
                name: rs.metadata.name.clone().unwrap_or_default(),
                uid: rs.metadata.uid.clone(),
            });
        }
    }

    /// `syncDeploymentStatus`: write the calculated status when it differs.
    pub(crate) fn sync_deployment_status(
        &mut self,
        all: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) {
        let new_status = calculate_status(&self.d, all, new_rs, self.now);
        self.write_status_if_changed(new_status);
    }

    /// Writes `new_status` unless it equals the current one; true when written.
    pub(crate) fn write_status_if_changed(&mut self, new_status: DeploymentStatus) -> bool {
        if status_eq(self.d.status.as_ref(), &new_status) {
            return false;
        }
        self.d.status = Some(new_status);
        self.write_status();
        true
    }
}

/// The proportional part of `scale`: each active ReplicaSet's new size.
pub(crate) fn proportional_sizes<'a>(
    d: &k8s_openapi::api::apps::v1::Deployment,
    rss: impl IntoIterator<Item = &'a ReplicaSet>,
) -> Vec<(ReplicaSet, i32)> {
    let mut all = filter_active(rss);
    let replicas = replicas(d);
    let all_replicas = replica_count(&all);
    let allowed = if replicas > 0 {
        replicas.saturating_add(max_surge(d))
    } else {
        0
    };
    let to_add = allowed.saturating_sub(all_replicas);
    if to_add > 0 {
        all.sort_by(by_size_newer);
    } else if to_add < 0 {
        all.sort_by(by_size_older);
    }
    let mut added = 0i32;
    let mut sizes: Vec<(ReplicaSet, i32)> = Vec::with_capacity(all.len());
    for rs in all {
        let size = if to_add != 0 {
            let p = get_proportion(Some(&rs), d, to_add, added);
            added = added.saturating_add(p);
            rs_replicas(&rs).saturating_add(p)
        } else {
            rs_replicas(&rs)
        };
        sizes.push((rs, size));
    }
    // The rounding leftover goes to the first (largest) ReplicaSet.
    if let Some((_, first)) = sizes.first_mut().filter(|_| to_add != 0) {
        *first = first.saturating_add(to_add.saturating_sub(added)).max(0);
    }
    sizes
}

/// `calculateStatus`: the deployment's status from its ReplicaSets, with the Available
/// condition set from minimum availability.
pub fn calculate_status(
    d: &k8s_openapi::api::apps::v1::Deployment,
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all);
    let total = replica_count(all);
    // More available than desired happens while scaling down: never negative.
    let unavailable = total.saturating_sub(available).max(0);
    let nonzero = |n: i32| (n != 0).then_some(n);
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|g| *g != 0),
        replicas: nonzero(actual_replica_count(all)),
        updated_replicas: nonzero(actual_replica_count(new_rs)),
        ready_replicas: nonzero(ready_replica_count(all)),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: current.collision_count,
        conditions: current.conditions.filter(|c| !c.is_empty()),
        terminating_replicas: None,
    };
    let c = if available >= replicas(d).saturating_sub(max_unavailable(d)) {
        new_condition(
            AVAILABLE,
            "True",
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, c);
    status
}

/// Status equality as Kubernetes' `reflect.DeepEqual` sees it after a JSON round trip:
/// zero counts and empty lists are absent.
pub(crate) fn status_eq(current: Option<&DeploymentStatus>, new: &DeploymentStatus) -> bool {
    fn norm(s: &DeploymentStatus) -> DeploymentStatus {
        let nz = |v: Option<i32>| v.filter(|n| *n != 0);
        DeploymentStatus {
            available_replicas: nz(s.available_replicas),
            collision_count: s.collision_count,
            conditions: s.conditions.clone().filter(|c| !c.is_empty()),
            observed_generation: s.observed_generation.filter(|g| *g != 0),
            ready_replicas: nz(s.ready_replicas),
            replicas: nz(s.replicas),
            terminating_replicas: s.terminating_replicas,
            unavailable_replicas: nz(s.unavailable_replicas),
            updated_replicas: nz(s.updated_replicas),
        }
    }
    norm(&current.cloned().unwrap_or_default()) == norm(new)
}
