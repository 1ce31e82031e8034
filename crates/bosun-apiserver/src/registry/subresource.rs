//! The subresources that are not the object itself: a pod's `binding` (the scheduler's
//! write) and a workload's `scale` (`kubectl scale`).

use bosun_api::field::{invalid, required};
use bosun_api::meta::{meta_str, set_condition};
use bosun_api::selectors::LabelSelector;
use serde_json::{Value, json};

use super::store::Store;
use super::{CAS_RETRIES, Registry, Stored, WriteOptions};
use crate::error::{ApiResult, Status};
use crate::kinds::{Kind, Part};
use crate::merge::patch::{self, PatchType};
use crate::merge::schema::METADATA_ONLY;

/// The `Scale` of a deployment or replicaset.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector")
        .map(|s| {
            LabelSelector::from_api(s)
                .map(|l| l.to_string())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m.get("name"),
            "namespace": m.get("namespace"),
            "uid": m.get("uid"),
            "resourceVersion": m.get("resourceVersion"),
            "creationTimestamp": m.get("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// Refuses to bind a pod that is being deleted or is already assigned (kube-apiserver's
/// `assignPod` / `setPodHostAndAnnotations`, 409).
fn check_bindable(res: &bosun_api::resources::Resource, name: &str, pod: &Value) -> ApiResult<()> {
    if !meta_str(pod, "deletionTimestamp").is_empty() {
        return Err(Status::conflict_msg(
            res,
            name,
            "pod is being deleted, cannot be assigned to a host",
        ));
    }
    let assigned = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !assigned.is_empty() {
        return Err(Status::conflict_msg(
            res,
            name,
            &format!("pod {name} is already assigned to node \"{assigned}\""),
        ));
    }
    Ok(())
}

/// What a successful binding returns: a `Status` with code 201, as kube-apiserver's.
pub fn binding_success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

impl<S: Store> Registry<S> {
    /// Binds a pod to a node (`pods/<name>/binding`). Kubernetes answers a binding with
    /// [`binding_success`], not the pod.
    pub async fn bind(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        binding: &Value,
    ) -> ApiResult<()> {
        let res = kind.resource();
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if node.is_empty() {
            let e = required("target.name", "");
            return Err(Status::invalid("core", "Binding", name, &[e])
                .with_details_kind(res.group, res.kind));
        }
        // As kube-apiserver's GuaranteedUpdate through its cacher: start from the pod in the
        // watch cache and compare-and-swap on its revision; the store is read only when that
        // guess was stale (the swap lost) or refused (the cached pod may be an older one).
        let key = self.key(res, ns, name);
        let mut guess = self
            .caches
            .get(res.plural)
            .and_then(|c| c.object(&key))
            .map(|(rev, obj)| Stored {
                obj: obj.value(),
                rev,
            });
        for _ in 0..CAS_RETRIES {
            let (cur, current) = match guess.take() {
                Some(g) => (g, false),
                None => (self.read_existing(res, ns, name).await?, true),
            };
            let mut pod = cur.obj;
            if let Err(refused) = check_bindable(res, name, &pod) {
                if current {
                    return Err(refused);
                }
                continue;
            }
            pod["spec"]["nodeName"] = json!(node);
            set_condition(&mut pod, "PodScheduled", "True", "", "");
            if self
                .swap(res, ns, name, cur.rev, &mut pod, false)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(Status::conflict(res, name))
    }

    /// Reads the scale of a deployment or replicaset.
    pub async fn get_scale(&self, kind: &dyn Kind, ns: &str, name: &str) -> ApiResult<Value> {
        Ok(scale_of(&self.get(kind, ns, name).await?))
    }

    /// Patches the `Scale` of a deployment or replicaset.
    pub async fn patch_scale(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch: &Value,
        opts: WriteOptions,
    ) -> ApiResult<Value> {
        let copy_limit = self.limits.patch_copy_bytes();
        self.set_scale(
            kind,
            ns,
            name,
            |cur| patch::apply(ptype, &METADATA_ONLY, cur, patch, copy_limit),
            opts,
        )
        .await
    }

    /// Sets the replicas from a new `Scale` (or a patch of the current one).
    pub async fn set_scale(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        change: impl Fn(&Value) -> ApiResult<Value>,
        opts: WriteOptions,
    ) -> ApiResult<Value> {
        let res = kind.resource();
        let (obj, _) = self
            .modify(
                kind,
                ns,
                name,
                opts,
                None,
                |cur| {
                    let scale = change(&scale_of(cur))?;
                    let want = meta_str(&scale, "resourceVersion");
                    if !want.is_empty() && want != meta_str(cur, "resourceVersion") {
                        return Err(Status::conflict(res, name));
                    }
                    let replicas = scale
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if replicas < 0 {
                        let e = invalid(
                            "spec.replicas",
                            replicas.to_string(),
                            "must be greater than or equal to 0",
                        );
                        return Err(Status::invalid("autoscaling", "Scale", name, &[e])
                            .with_details_kind(res.group, res.kind));
                    }
                    let mut next = cur.clone();
                    next["spec"]["replicas"] = json!(replicas);
                    Ok(next)
                },
                Part::Main,
            )
            .await?;
        Ok(scale_of(&obj))
    }
}
