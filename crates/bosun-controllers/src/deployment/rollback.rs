//! `pkg/controller/deployment/rollback.go`: rolling back to an earlier revision, asked for
//! through the `deprecated.deployment.rollback.to` annotation (revision 0 = the previous
//! one). The deployment takes the template and annotations of that revision's ReplicaSet;
//! the rollout that follows is an ordinary one.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::util::*;
use super::{Action, Error, EventType, Syncer};

/// `getRollbackTo`: the revision asked for, if the annotation holds an integer.
pub(crate) fn rollback_to(d: &Deployment) -> Option<i64> {
    let v = d
        .metadata
        .annotations
        .as_ref()?
        .get(DEPRECATED_ROLLBACK_TO)?;
    if v.is_empty() {
        return None;
    }
    v.parse().ok()
}

/// The deployment with a rollback to `revision` asked for (what `kubectl rollout undo`
/// asked of extensions/v1beta1 deployments); 0 means the previous revision.
pub fn rollback_to_revision(d: &Deployment, revision: i64) -> Deployment {
    let mut d = d.clone();
    d.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(DEPRECATED_ROLLBACK_TO.into(), revision.to_string());
    d
}

/// `SetFromReplicaSetTemplate`: the deployment's template becomes the ReplicaSet's, without
/// the hash label.
fn set_from_replica_set_template(d: &mut Deployment, t: PodTemplateSpec) {
    let spec = d.spec.get_or_insert_with(Default::default);
    spec.template = t;
    if let Some(labels) = spec
        .template
        .metadata
        .as_mut()
        .and_then(|m| m.labels.as_mut())
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
}

impl Syncer<'_> {
    /// `rollback`.
    pub(crate) fn rollback(&mut self) -> Result<(), Error> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(true)?;
        let all: Vec<ReplicaSet> = old.into_iter().chain(new_rs).collect();
        let mut revision = rollback_to(&self.d).unwrap_or(0);
        if revision == 0 {
            revision = last_revision(&all);
            if revision == 0 {
                self.event(
                    EventType::Warning,
                    ROLLBACK_REVISION_NOT_FOUND,
                    "Unable to find last revision.".into(),
                );
                self.update_deployment_and_clear_rollback_to();
                return Ok(());
            }
        }
        for rs in &all {
            let Ok(v) = super::util::revision(&rs.metadata) else {
                continue;
            };
            if v == revision {
                if self.rollback_to_template(rs) {
                    let msg = format!(
                        "Rolled back deployment {:?} to revision {revision}",
                        self.name()
                    );
                    self.event(EventType::Normal, ROLLBACK_DONE, msg);
                }
                return Ok(());
            }
        }
        self.event(
            EventType::Warning,
            ROLLBACK_REVISION_NOT_FOUND,
            "Unable to find the revision to rollback to.".into(),
        );
        self.update_deployment_and_clear_rollback_to();
        Ok(())
    }

    /// `rollbackToTemplate`: true when the template changed.
    fn rollback_to_template(&mut self, rs: &ReplicaSet) -> bool {
        let performed = if !equal_ignore_hash(&template(&self.d), &rs_template(rs)) {
            set_from_replica_set_template(&mut self.d, rs_template(rs));
            // The deployment takes the old revision's annotations, or the current ones would
            // be copied onto that ReplicaSet after the rollback.
            set_deployment_annotations_to(&mut self.d, rs);
            true
        } else {
            let msg = format!(
                "The rollback revision contains the same template as current deployment {:?}",
                self.name()
            );
            self.event(EventType::Warning, ROLLBACK_TEMPLATE_UNCHANGED, msg);
            false
        };
        self.update_deployment_and_clear_rollback_to();
        performed
    }

    /// `updateDeploymentAndClearRollbackTo`.
    fn update_deployment_and_clear_rollback_to(&mut self) {
        if let Some(a) = self.d.metadata.annotations.as_mut() {
            a.remove(DEPRECATED_ROLLBACK_TO);
        }
        self.plan
            .actions
            .push(Action::Update(Box::new(self.d.clone())));
    }
}
