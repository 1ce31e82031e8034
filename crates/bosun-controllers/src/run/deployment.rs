//! The deployment controller's loop (`deployment_controller.go`): handlers that map
//! Deployment, ReplicaSet and Pod changes to deployment keys, and a sync that claims the
//! deployment's ReplicaSets, asks [`crate::deployment::sync_deployment`] for a plan and
//! applies it in order through the apiserver, stopping at the first failure.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, anyhow, bail};
use bosun_api_client::ApiClient;
use bosun_runtime::controller::Action as Next;
use bosun_runtime::events::{Recorder, object_ref};
use bosun_runtime::queue::{QueueConfig, WorkQueue};
use bosun_runtime::reflector::{Event, Store};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tracing::debug;

use super::handlers::{self, Effect, meta_key};
use super::{Metrics, Reconciler, claim_objects, split_key};
use crate::deployment::{
    self, Action, EventType, Input, Requeue, on_create_already_exists, on_create_failed,
    sync_deployment, util::strategy_type,
};
use crate::podutil;
use crate::selector;

/// The deployment controller: its caches, queue and event recorder.
pub struct DeploymentController {
    client: ApiClient,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue<String>,
    recorder: Recorder,
    metrics: Metrics,
}

impl std::fmt::Debug for DeploymentController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentController")
            .finish_non_exhaustive()
    }
}

impl DeploymentController {
    /// A controller over these caches.
    pub fn new(
        client: ApiClient,
        deployments: Store<Deployment>,
        replica_sets: Store<ReplicaSet>,
        pods: Store<Pod>,
        recorder: Recorder,
        metrics: Metrics,
    ) -> Self {
        DeploymentController {
            client,
            deployments,
            replica_sets,
            pods,
            queue: WorkQueue::with_metrics("deployment", QueueConfig::default(), &metrics.queue),
            recorder,
            metrics,
        }
    }

    fn apply(&self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Enqueue(k) => self.queue.add(k),
                Effect::EnqueueAfter(k, d) => self.queue.add_after(k, d),
                // Expectations are the replicaset controller's.
                Effect::CreationObserved(_)
                | Effect::DeletionObserved { .. }
                | Effect::DeleteExpectations(_) => {}
            }
        }
    }

    /// `addDeployment`, `updateDeployment`, `deleteDeployment`.
    pub fn on_deployment(&self, ev: &Event<Deployment>) {
        match ev {
            Event::Applied { new, .. } => self.queue.add(meta_key(&new.metadata)),
            Event::Deleted(d) => self.queue.add(meta_key(&d.metadata)),
            Event::Resynced => {}
        }
    }

    /// `addReplicaSet`, `updateReplicaSet`, `deleteReplicaSet`.
    pub fn on_replica_set(&self, ev: &Event<ReplicaSet>) {
        let effects = match ev {
            Event::Applied { old: None, new } => {
                handlers::deployment_on_rs_added(&self.deployments, new)
            }
            Event::Applied {
                old: Some(old),
                new,
            } => handlers::deployment_on_rs_updated(&self.deployments, old, new),
            Event::Deleted(rs) => handlers::deployment_on_rs_deleted(&self.deployments, rs),
            Event::Resynced => Vec::new(),
        };
        self.apply(effects);
    }

    /// `deletePod` (Recreate waits for old pods to be gone).
    pub fn on_pod(&self, ev: &Event<Pod>) {
        if let Event::Deleted(pod) = ev {
            self.apply(handlers::deployment_on_pod_deleted(
                &self.deployments,
                &self.replica_sets,
                pod,
            ));
        }
    }

    /// `syncDeployment`.
    pub(crate) async fn sync_key(&self, key: &str) -> anyhow::Result<Next> {
        let (ns, name) = split_key(key);
        let Some(d) = self.deployments.get(ns, name) else {
            debug!(key, "deployment has been deleted");
            return Ok(Next::Done);
        };
        let now = Timestamp::now();
        let in_namespace: Vec<ReplicaSet> = self
            .replica_sets
            .list()
            .iter()
            .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns))
            .map(|rs| ReplicaSet::clone(rs))
            .collect();
        let replica_sets = self.claim_replica_sets(&d, &in_namespace).await?;
        let pods = if strategy_type(&d) == "Recreate" {
            self.pods_of(&d, &replica_sets)
        } else {
            Vec::new()
        };
        let plan = sync_deployment(Input {
            deployment: &d,
            replica_sets: &replica_sets,
            pods: &pods,
            now,
        });
        let mut writer = Writer {
            c: self,
            d: &d,
            ns,
            deployment_rv: None,
            rs_rv: HashMap::new(),
        };
        for action in plan.actions {
            writer.apply(action, now).await?;
        }
        if let Some(e) = plan.error {
            bail!(e);
        }
        Ok(match plan.requeue {
            None => Next::Done,
            Some(Requeue::After(after)) => Next::RequeueAfter(after),
            Some(Requeue::RateLimited) => {
                self.queue.add_rate_limited(key.to_string());
                Next::Done
            }
        })
    }

    /// `getReplicaSetsForDeployment`: the namespace's ReplicaSets the deployment owns,
    /// adopting matching orphans and releasing its own that stopped matching.
    async fn claim_replica_sets(
        &self,
        d: &Deployment,
        in_namespace: &[ReplicaSet],
    ) -> anyhow::Result<Vec<ReplicaSet>> {
        let claims = deployment::claim_replica_sets(d, in_namespace)?;
        let owner = (
            deployment::CONTROLLER_API_VERSION,
            deployment::CONTROLLER_KIND,
        );
        claim_objects::<Deployment, _>(&self.client, &d.metadata, owner, claims).await
    }

    /// `getPodMapForDeployment`, flattened: the pods of the namespace that the deployment
    /// selects and that one of its ReplicaSets controls.
    fn pods_of(&self, d: &Deployment, replica_sets: &[ReplicaSet]) -> Vec<Pod> {
        let uids: HashSet<&str> = replica_sets
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        let sel = d.spec.as_ref().map(|s| &s.selector);
        self.pods
            .list()
            .iter()
            .filter(|p| p.metadata.namespace == d.metadata.namespace)
            .filter(|p| selector::matches(sel, p.metadata.labels.as_ref()).unwrap_or(false))
            .filter(|p| {
                podutil::controller_of(&p.metadata).is_some_and(|r| uids.contains(r.uid.as_str()))
            })
            .map(|p| Pod::clone(p))
            .collect()
    }
}

/// Applies one plan's actions in order. The plan computed every write on in-memory copies
/// read from the cache, assuming each earlier write succeeded; an object written twice in
/// one sync is sent the second time with the version the first write returned.
struct Writer<'a> {
    c: &'a DeploymentController,
    d: &'a Deployment,
    ns: &'a str,
    deployment_rv: Option<String>,
    rs_rv: HashMap<String, String>,
}

impl Writer<'_> {
    async fn apply(&mut self, action: Action, now: Timestamp) -> anyhow::Result<()> {
        let ns = self.ns;
        match action {
            Action::CreateReplicaSet(rs) => {
                let name = rs.metadata.name.clone().unwrap_or_default();
                match self.c.client.create(ns, &*rs).await {
                    Ok(created) => self.remember_rs(&name, &created),
                    Err(e) if e.is_already_exists() => {
                        let existing = self
                            .c
                            .client
                            .get::<ReplicaSet>(ns, &name)
                            .await
                            .with_context(|| format!("get ReplicaSet {ns}/{name}"))?;
                        match on_create_already_exists(self.d, &existing) {
                            // Ours, with this template: the new ReplicaSet already exists.
                            None => self.remember_rs(&name, &existing),
                            // A hash collision: count it, so the next name differs.
                            Some(bumped) => {
                                self.update_status(bumped).await?;
                                bail!("create ReplicaSet {ns}/{name}: {e} (hash collision)");
                            }
                        }
                    }
                    Err(e) => {
                        // Kubernetes writes the Progressing=False condition best-effort.
                        for a in on_create_failed(self.d, &name, &e.message, now) {
                            match a {
                                Action::UpdateStatus(d) => {
                                    let _ = self.update_status(*d).await;
                                }
                                Action::Event(ev) => self.record(ev),
                                _ => {}
                            }
                        }
                        return Err(anyhow!(e).context(format!("create ReplicaSet {ns}/{name}")));
                    }
                }
            }
            Action::UpdateReplicaSet(mut rs) => {
                let name = rs.metadata.name.clone().unwrap_or_default();
                if let Some(rv) = self.rs_rv.get(&name) {
                    rs.metadata.resource_version = Some(rv.clone());
                }
                let updated = self
                    .c
                    .client
                    .update(ns, &*rs)
                    .await
                    .with_context(|| format!("update ReplicaSet {ns}/{name}"))?;
                self.remember_rs(&name, &updated);
            }
            Action::DeleteReplicaSet { name, uid } => {
                let options = json!({"preconditions": {"uid": uid}});
                match self
                    .c
                    .client
                    .delete::<ReplicaSet>(ns, &name, Some(&options))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => {
                        return Err(anyhow!(e).context(format!("delete ReplicaSet {ns}/{name}")));
                    }
                }
            }
            Action::UpdateStatus(d) => self.update_status(*d).await?,
            Action::Update(mut d) => {
                if let Some(rv) = &self.deployment_rv {
                    d.metadata.resource_version = Some(rv.clone());
                }
                let updated = self
                    .c
                    .client
                    .update(ns, &*d)
                    .await
                    .with_context(|| format!("update Deployment {}", meta_key(&d.metadata)))?;
                self.deployment_rv = updated.metadata.resource_version;
            }
            Action::Event(e) => self.record(e),
        }
        Ok(())
    }

    fn record(&self, e: deployment::Event) {
        let obj = object_ref(self.d);
        match e.type_ {
            EventType::Normal => self.c.recorder.normal(&obj, &e.reason, e.message),
            EventType::Warning => self.c.recorder.warning(&obj, &e.reason, e.message),
        }
    }

    async fn update_status(&mut self, mut d: Deployment) -> anyhow::Result<()> {
        if let Some(rv) = &self.deployment_rv {
            d.metadata.resource_version = Some(rv.clone());
        }
        let updated = self
            .c
            .client
            .update_status(self.ns, &d)
            .await
            .with_context(|| format!("update status of Deployment {}", meta_key(&d.metadata)))?;
        self.deployment_rv = updated.metadata.resource_version;
        Ok(())
    }

    fn remember_rs(&mut self, name: &str, rs: &ReplicaSet) {
        if let Some(rv) = &rs.metadata.resource_version {
            self.rs_rv.insert(name.to_string(), rv.clone());
        }
    }
}

impl Reconciler for DeploymentController {
    type Key = String;
    const NAME: &'static str = "deployment";

    fn queue(&self) -> &WorkQueue<String> {
        &self.queue
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn reconcile(&self, key: String) -> anyhow::Result<Next> {
        self.sync_key(&key).await
    }
}
