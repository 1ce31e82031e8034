//! `pkg/controller/deployment/recreate.go`: the Recreate strategy. Old ReplicaSets go to 0
//! first; the new one is created and scaled up only once no old pod is running.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::util::*;
use super::{Error, Syncer, filter_active};
use crate::podutil;

impl Syncer<'_> {
    /// `rolloutRecreate`.
    pub(crate) fn rollout_recreate(&mut self) -> Result<(), Error> {
        // No new ReplicaSet yet: creating it now would scale up before scaling down.
        let (mut new_rs, mut old) = self.get_all_replica_sets_and_sync_revision(false)?;
        let mut all: Vec<ReplicaSet> = old.iter().cloned().chain(new_rs.clone()).collect();
        if self.scale_down_old_replica_sets_for_recreate(filter_active(&old)) {
            self.sync_rollout_status(&all, new_rs.as_ref());
            return Ok(());
        }
        if old_pods_running(new_rs.as_ref(), &old, &self.rs_list, self.pods) {
            self.sync_rollout_status(&all, new_rs.as_ref());
            return Ok(());
        }
        if new_rs.is_none() {
            (new_rs, old) = self.get_all_replica_sets_and_sync_revision(true)?;
            all = old.iter().cloned().chain(new_rs.clone()).collect();
        }
        if let Some(rs) = &new_rs {
            let replicas = replicas(&self.d);
            self.scale_replica_set_and_record_event(rs, replicas);
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old);
        }
        self.sync_rollout_status(&all, new_rs.as_ref());
        Ok(())
    }

    /// `scaleDownOldReplicaSetsForRecreate`: every active old ReplicaSet to 0.
    fn scale_down_old_replica_sets_for_recreate(&mut self, old: Vec<ReplicaSet>) -> bool {
        let mut scaled = false;
        for rs in &old {
            if rs_replicas(rs) == 0 {
                continue;
            }
            scaled |= self.scale_replica_set_and_record_event(rs, 0).0;
        }
        scaled
    }
}

/// `oldPodsRunning`: an old ReplicaSet still reports pods, or a pod of one (of any
/// ReplicaSet of the deployment but the new one) is not Succeeded or Failed.
pub(crate) fn old_pods_running(
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    rs_list: &[ReplicaSet],
    pods: &[Pod],
) -> bool {
    if actual_replica_count(old) > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.as_deref());
    pods.iter().any(|pod| {
        let Some(owner) = podutil::controller_of(&pod.metadata) else {
            return false;
        };
        let of_deployment = rs_list
            .iter()
            .any(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()));
        of_deployment
            && Some(owner.uid.as_str()) != new_uid
            && !matches!(podutil::phase(pod), "Failed" | "Succeeded")
    })
}
