//! The replicaset controller's loop (`replica_set.go`): handlers that map ReplicaSet and
//! Pod changes to ReplicaSet keys and record what the cache has seen of the controller's own
//! creations and deletions (expectations), and a sync that claims pods, creates or deletes
//! the difference in slow-start batches, and writes the status.

use anyhow::{anyhow, bail};
use bosun_api_client::ApiClient;
use bosun_runtime::controller::Action as Next;
use bosun_runtime::events::{Recorder, object_ref};
use bosun_runtime::queue::{QueueConfig, WorkQueue};
use bosun_runtime::reflector::{Event, Store};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use tracing::debug;

use super::handlers::{self, Effect};
use super::{Metrics, Reconciler, claim_objects, split_key};
use crate::replicaset::{
    self, BURST_REPLICAS, Expectations, Manage, SLOW_START_INITIAL_BATCH_SIZE, calculate_status,
    claim_pods, manage_replicas, min_ready_resync, needs_manage, pod_from_template,
    slow_start_batches, status_update,
};

/// The replicaset controller: its caches, queue, expectations and event recorder.
pub struct ReplicaSetController {
    client: ApiClient,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue<String>,
    expectations: Mutex<Expectations>,
    recorder: Recorder,
    metrics: Metrics,
}

impl std::fmt::Debug for ReplicaSetController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaSetController")
            .field("expectations", &self.expectations.lock().len())
            .finish_non_exhaustive()
    }
}

impl ReplicaSetController {
    /// A controller over these caches.
    pub fn new(
        client: ApiClient,
        replica_sets: Store<ReplicaSet>,
        pods: Store<Pod>,
        recorder: Recorder,
        metrics: Metrics,
    ) -> Self {
        ReplicaSetController {
            client,
            replica_sets,
            pods,
            queue: WorkQueue::with_metrics("replicaset", QueueConfig::default(), &metrics.queue),
            expectations: Mutex::new(Expectations::new()),
            recorder,
            metrics,
        }
    }

    fn apply(&self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Enqueue(k) => self.queue.add(k),
                Effect::EnqueueAfter(k, d) => self.queue.add_after(k, d),
                Effect::CreationObserved(k) => self.expectations.lock().creation_observed(&k),
                Effect::DeletionObserved { rs, pod } => {
                    self.expectations.lock().deletion_observed(&rs, &pod);
                }
                Effect::DeleteExpectations(k) => self.expectations.lock().delete(&k),
            }
        }
    }

    /// `addRS`, `updateRS`, `deleteRS`.
    pub fn on_replica_set(&self, ev: &Event<ReplicaSet>) {
        let effects = match ev {
            Event::Applied { old: None, new } => {
                vec![Effect::Enqueue(handlers::meta_key(&new.metadata))]
            }
            Event::Applied {
                old: Some(old),
                new,
            } => handlers::replicaset_on_rs_updated(old, new),
            Event::Deleted(rs) => handlers::replicaset_on_rs_deleted(rs),
            Event::Resynced => Vec::new(),
        };
        self.apply(effects);
    }

    /// `addPod`, `updatePod`, `deletePod`.
    pub fn on_pod(&self, ev: &Event<Pod>) {
        let effects = match ev {
            Event::Applied { old: None, new } => {
                handlers::replicaset_on_pod_added(&self.replica_sets, new)
            }
            Event::Applied {
                old: Some(old),
                new,
            } => handlers::replicaset_on_pod_updated(&self.replica_sets, old, new),
            Event::Deleted(pod) => handlers::replicaset_on_pod_deleted(&self.replica_sets, pod),
            Event::Resynced => Vec::new(),
        };
        self.apply(effects);
    }

    /// `syncReplicaSet`.
    pub(crate) async fn sync_key(&self, key: &str) -> anyhow::Result<Next> {
        let (ns, name) = split_key(key);
        let now = Timestamp::now();
        let Some(rs) = self.replica_sets.get(ns, name) else {
            debug!(key, "replicaset has been deleted");
            self.expectations.lock().delete(key);
            return Ok(Next::Done);
        };
        let satisfied = self.expectations.lock().satisfied(key, now);
        let in_namespace: Vec<Pod> = self
            .pods
            .list()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .map(|p| Pod::clone(p))
            .collect();
        let claimed = self.claim_pods(&rs, &in_namespace).await?;

        let mut manage_error = None;
        if needs_manage(&rs, satisfied) {
            let active: Vec<&Pod> = claimed.iter().collect();
            let want = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            // Ranking by co-location matters only when some pods go.
            let siblings: Vec<ReplicaSet>;
            let related = if usize::try_from(want).is_ok_and(|w| active.len() > w) {
                siblings = self
                    .replica_sets
                    .list()
                    .iter()
                    .filter(|r| r.metadata.namespace.as_deref() == Some(ns))
                    .map(|r| ReplicaSet::clone(r))
                    .collect();
                replicaset::related_pods(&rs, &siblings, &in_namespace)
            } else {
                Vec::new()
            };
            let outcome = match manage_replicas(&rs, &active, &related, BURST_REPLICAS, now) {
                Manage::Nothing => Ok(()),
                Manage::Create(n) => self.create_pods(key, &rs, n, now).await,
                Manage::Delete(pods) => self.delete_pods(key, &rs, pods, now).await,
            };
            manage_error = outcome.err();
        }

        let pods: Vec<&Pod> = claimed.iter().collect();
        let message = manage_error.as_ref().map(ToString::to_string);
        let status = calculate_status(&rs, &pods, message.as_deref(), now);
        let written = self.update_status(&rs, &status).await?;
        if let Some(e) = manage_error {
            return Err(e);
        }
        let current = written.as_ref().unwrap_or(&rs);
        Ok(match min_ready_resync(current, &status, true) {
            Some(after) => Next::RequeueAfter(after),
            None => Next::Done,
        })
    }

    /// `claimPods`: the active pods of the namespace the ReplicaSet owns, adopting matching
    /// orphans and releasing its own that stopped matching.
    async fn claim_pods(&self, rs: &ReplicaSet, pods: &[Pod]) -> anyhow::Result<Vec<Pod>> {
        let claims = claim_pods(rs, pods)?;
        let owner = (
            replicaset::CONTROLLER_API_VERSION,
            replicaset::CONTROLLER_KIND,
        );
        claim_objects::<ReplicaSet, _>(&self.client, &rs.metadata, owner, claims).await
    }

    /// Creates `n` pods in slow-start batches (1, 2, 4, ...), stopping after the first batch
    /// with a failure; creations never attempted or failed are no longer expected.
    async fn create_pods(
        &self,
        key: &str,
        rs: &ReplicaSet,
        n: usize,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let obj = object_ref(rs);
        let Some(pod) = pod_from_template(rs) else {
            let msg = "unable to create pods, no labels".to_string();
            self.recorder
                .warning(&obj, "FailedCreate", format!("Error creating: {msg}"));
            bail!(msg);
        };
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        self.expectations.lock().expect_creations(key, n, now);
        let mut created = 0usize;
        for batch in slow_start_batches(n, SLOW_START_INITIAL_BATCH_SIZE) {
            let results = join_all((0..batch).map(|_| self.client.create(ns, &pod))).await;
            let mut first_error = None;
            for r in results {
                match r {
                    Ok(p) => {
                        created += 1;
                        let name = p.metadata.name.unwrap_or_default();
                        self.recorder.normal(
                            &obj,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        );
                    }
                    Err(e) => {
                        self.recorder.warning(
                            &obj,
                            "FailedCreate",
                            format!("Error creating: {}", e.message),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                let skipped = n - created;
                debug!(key, skipped, "slow-start creation stopped at a failure");
                let mut exp = self.expectations.lock();
                for _ in 0..skipped {
                    exp.creation_observed(key);
                }
                return Err(anyhow!(e).context(format!("create pods for ReplicaSet {key}")));
            }
        }
        Ok(())
    }

    /// Deletes these pods (keys) at once; a deletion that fails is no longer expected.
    async fn delete_pods(
        &self,
        key: &str,
        rs: &ReplicaSet,
        pods: Vec<String>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let obj = object_ref(rs);
        self.expectations.lock().expect_deletions(key, &pods, now);
        let results = join_all(pods.iter().map(|k| {
            let (ns, name) = split_key(k);
            self.client.delete::<Pod>(ns, name, None)
        }))
        .await;
        let mut first_error = None;
        for (pod, r) in pods.iter().zip(results) {
            let name = split_key(pod).1;
            match r {
                Ok(_) => {
                    self.recorder
                        .normal(&obj, "SuccessfulDelete", format!("Deleted pod: {name}"));
                }
                Err(e) => {
                    self.expectations.lock().deletion_observed(key, pod);
                    if !e.is_not_found() {
                        self.recorder.warning(
                            &obj,
                            "FailedDelete",
                            format!("Error deleting: {}", e.message),
                        );
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(anyhow!(e).context(format!("delete pods of ReplicaSet {key}"))),
            None => Ok(()),
        }
    }

    /// `updateReplicaSetStatus`: writes the status unless it is already recorded; on a
    /// conflict, once more on a fresh read. The written ReplicaSet, if any.
    async fn update_status(
        &self,
        rs: &ReplicaSet,
        status: &ReplicaSetStatus,
    ) -> anyhow::Result<Option<ReplicaSet>> {
        let Some(new_status) = status_update(rs, status) else {
            return Ok(None);
        };
        let ns = rs.metadata.namespace.as_deref().unwrap_or("");
        let name = rs.metadata.name.as_deref().unwrap_or("");
        let mut copy = rs.clone();
        copy.status = Some(new_status.clone());
        match self.client.update_status(ns, &copy).await {
            Ok(written) => Ok(Some(written)),
            Err(e) if e.is_conflict() => {
                let mut fresh = self.client.get::<ReplicaSet>(ns, name).await?;
                fresh.status = Some(new_status);
                Ok(Some(self.client.update_status(ns, &fresh).await?))
            }
            Err(e) => Err(anyhow!(e).context(format!("update status of ReplicaSet {ns}/{name}"))),
        }
    }
}

impl Reconciler for ReplicaSetController {
    type Key = String;
    const NAME: &'static str = "replicaset";

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
