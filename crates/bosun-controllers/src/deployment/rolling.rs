//! `pkg/controller/deployment/rolling.go`: the RollingUpdate strategy.
//!
//! Each sync grows the new ReplicaSet if the surge allows; if it did not, it shrinks old
//! ones: first their unhealthy replicas (`cleanupUnhealthyReplicas`), then, oldest first,
//! as many as keep `replicas - maxUnavailable` pods available
//! (`scaleDownOldReplicaSetsForRollingUpdate`).

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::util::*;
use super::{Error, Syncer, filter_active};

/// A scale-down to a larger size: Kubernetes' "got invalid request to scale down" error,
/// which stops the scale-down of old ReplicaSets for this sync.
pub(crate) struct InvalidScaleDown;

impl Syncer<'_> {
    /// `rolloutRolling`.
    pub(crate) fn rollout_rolling(&mut self) -> Result<(), Error> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(true)?;
        let Some(new_rs) = new_rs else {
            // Creating always yields a ReplicaSet; nothing to roll without one.
            return Ok(());
        };
        let all: Vec<ReplicaSet> = old.iter().cloned().chain([new_rs.clone()]).collect();
        if self.reconcile_new_replica_set(&all, &new_rs)? {
            self.sync_rollout_status(&all, Some(&new_rs));
            return Ok(());
        }
        if self.reconcile_old_replica_sets(&all, filter_active(&old), &new_rs) {
            self.sync_rollout_status(&all, Some(&new_rs));
            return Ok(());
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old);
        }
        self.sync_rollout_status(&all, Some(&new_rs));
        Ok(())
    }

    /// `reconcileNewReplicaSet`: true when the new ReplicaSet was scaled.
    pub(crate) fn reconcile_new_replica_set(
        &mut self,
        all: &[ReplicaSet],
        new_rs: &ReplicaSet,
    ) -> Result<bool, Error> {
        let replicas = replicas(&self.d);
        let current = rs_replicas(new_rs);
        if current == replicas {
            return Ok(false);
        }
        if current > replicas {
            return Ok(self.scale_replica_set_and_record_event(new_rs, replicas).0);
        }
        let all: Vec<&ReplicaSet> = all.iter().collect();
        let n = new_rs_new_replicas(&self.d, &all, new_rs)?;
        Ok(self.scale_replica_set_and_record_event(new_rs, n).0)
    }

    /// `reconcileOldReplicaSets`: true when old ReplicaSets were scaled down.
    pub(crate) fn reconcile_old_replica_sets(
        &mut self,
        all: &[ReplicaSet],
        old: Vec<ReplicaSet>,
        new_rs: &ReplicaSet,
    ) -> bool {
        if replica_count(&old) == 0 {
            return false;
        }
        let all_pods = replica_count(all);
        let min_available = replicas(&self.d).saturating_sub(max_unavailable(&self.d));
        let new_unavailable = rs_replicas(new_rs).saturating_sub(rs_available(new_rs));
        // Unavailable pods of the new ReplicaSet count against the budget, so that a broken
        // new template never lets old pods go.
        let max_scaled_down = all_pods
            .saturating_sub(min_available)
            .saturating_sub(new_unavailable);
        if max_scaled_down <= 0 {
            return false;
        }
        let Ok((old, cleaned)) = self.cleanup_unhealthy_replicas(old, max_scaled_down) else {
            return false;
        };
        let all: Vec<ReplicaSet> = old.iter().cloned().chain([new_rs.clone()]).collect();
        let Ok(scaled) = self.scale_down_old_replica_sets_for_rolling_update(&all, old) else {
            return false;
        };
        cleaned.saturating_add(scaled) > 0
    }

    /// `cleanupUnhealthyReplicas`: oldest first, scale each old ReplicaSet down by its
    /// unavailable replicas, `max_cleanup` in all.
    pub(crate) fn cleanup_unhealthy_replicas(
        &mut self,
        mut old: Vec<ReplicaSet>,
        max_cleanup: i32,
    ) -> Result<(Vec<ReplicaSet>, i32), InvalidScaleDown> {
        old.sort_by(by_creation_timestamp);
        let mut total = 0i32;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let spec = rs_replicas(rs);
            let available = rs_available(rs);
            if spec == 0 || spec == available {
                continue;
            }
            let count = max_cleanup
                .saturating_sub(total)
                .min(spec.saturating_sub(available));
            let new_count = spec.saturating_sub(count);
            if new_count > spec {
                return Err(InvalidScaleDown);
            }
            let (_, updated) = self.scale_replica_set_and_record_event(rs, new_count);
            total = total.saturating_add(count);
            *rs = updated;
        }
        Ok((old, total))
    }

    /// `scaleDownOldReplicaSetsForRollingUpdate`: oldest first, scale down by as many as are
    /// available above `replicas - maxUnavailable`.
    pub(crate) fn scale_down_old_replica_sets_for_rolling_update(
        &mut self,
        all: &[ReplicaSet],
        mut old: Vec<ReplicaSet>,
    ) -> Result<i32, InvalidScaleDown> {
        let min_available = replicas(&self.d).saturating_sub(max_unavailable(&self.d));
        let available = available_replica_count(all);
        if available <= min_available {
            return Ok(0);
        }
        old.sort_by(by_creation_timestamp);
        let total_to_scale_down = available.saturating_sub(min_available);
        let mut total = 0i32;
        for rs in &old {
            if total >= total_to_scale_down {
                break;
            }
            let spec = rs_replicas(rs);
            if spec == 0 {
                continue;
            }
            let count = spec.min(total_to_scale_down.saturating_sub(total));
            let new_count = spec.saturating_sub(count);
            if new_count > spec {
                return Err(InvalidScaleDown);
            }
            self.scale_replica_set_and_record_event(rs, new_count);
            total = total.saturating_add(count);
        }
        Ok(total)
    }
}
