//! Update and patch: read the object, build the new version (the client's body, or the
//! patch applied to the stored object), keep what the server owns (system metadata, the
//! status or the rest per the status subresource, the generation, bumped when the spec
//! changes), default and validate it, and compare-and-swap it on the revision read. A lost
//! race is retried unless the client pinned a resourceVersion.

use bosun_api::meta::{finalizers, meta_str, now_rfc3339, set_resource_version};
use serde_json::{Value, json};

use super::store::Store;
use super::{CAS_RETRIES, Registry, WriteOptions, check_identity, meta_mut, parse_rv};
use crate::error::{ApiResult, Status};
use crate::kinds::{Kind, Part, Warnings};
use crate::merge::patch::{self, PatchType};

impl<S: Store> Registry<S> {
    /// Replaces an object (or its status).
    pub async fn update(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        body: Value,
        part: Part,
        opts: WriteOptions,
    ) -> ApiResult<(Value, Warnings)> {
        check_identity(kind.resource(), ns, name, &body, false)?;
        let precondition = parse_rv(meta_str(&body, "resourceVersion"))?;
        self.modify(
            kind,
            ns,
            name,
            opts,
            precondition,
            |_| Ok(body.clone()),
            part,
        )
        .await
    }

    /// Applies a patch to an object (or its status).
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        ptype: PatchType,
        patch_body: &[u8],
        part: Part,
        opts: WriteOptions,
    ) -> ApiResult<(Value, Warnings)> {
        let res = kind.resource();
        let parsed: Value = serde_json::from_slice(patch_body)
            .map_err(|e| Status::bad_request(format!("error decoding patch: {e}")))?;
        self.modify(
            kind,
            ns,
            name,
            opts,
            None,
            |cur| {
                let out = patch::apply(
                    ptype,
                    kind.merge_schema(),
                    cur,
                    &parsed,
                    self.limits.patch_copy_bytes(),
                )?;
                // A patch cannot rename, move or retype the object.
                check_identity(res, ns, name, &out, true)?;
                // A resourceVersion in the patch is a precondition.
                let want = meta_str(&out, "resourceVersion");
                if !want.is_empty() && want != meta_str(cur, "resourceVersion") {
                    return Err(Status::conflict(res, name));
                }
                Ok(out)
            },
            part,
        )
        .await
    }

    /// Read, change, compare-and-swap; retried on a lost race unless the client pinned a
    /// version. `change` gets the current object and returns the client's new version.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn modify(
        &self,
        kind: &dyn Kind,
        ns: &str,
        name: &str,
        opts: WriteOptions,
        precondition: Option<i64>,
        change: impl Fn(&Value) -> ApiResult<Value>,
        part: Part,
    ) -> ApiResult<(Value, Warnings)> {
        let res = kind.resource();
        let ns = if res.namespaced { ns } else { "" };
        for _ in 0..CAS_RETRIES {
            let cur = self.read_existing(res, ns, name).await?;
            if precondition.is_some_and(|p| p != cur.rev) {
                return Err(Status::conflict(res, name));
            }
            let body = change(&cur.obj)?;
            let (mut new, warnings) = merge_update(kind, &cur.obj, body, part, opts)?;
            // managedFields belong to the server: the client's copy is not taken.
            let cur_managed = cur.obj.pointer("/metadata/managedFields").cloned();
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                match cur_managed {
                    Some(v) => m.insert("managedFields".into(), v),
                    None => m.remove("managedFields"),
                };
            }
            if new == cur.obj {
                return Ok((cur.obj, warnings));
            }
            let subresource = match part {
                Part::Main => "",
                Part::Status => "status",
                Part::Finalize => "finalize",
            };
            super::managed::record(
                &mut new,
                Some(&cur.obj),
                opts.field_manager,
                subresource,
                &now_rfc3339(),
            );
            if opts.dry_run {
                let encoded =
                    serde_json::to_vec(&new).map_err(|e| Status::internal(e.to_string()))?;
                self.limits.check_object(encoded.len())?;
                return Ok((new, warnings));
            }
            // The last finalizer removed from an object being deleted deletes it, unless its
            // holder still has to finish (a pod's kubelet, which deletes it with grace 0) or
            // it is held otherwise (a namespace's `spec.finalizers`): Kubernetes'
            // `ShouldDeleteDuringUpdate`.
            let finished = !meta_str(&new, "deletionTimestamp").is_empty()
                && finalizers(&new).is_empty()
                && !graceful_pending(&new)
                && !kind.deletion_held(&new);
            match self
                .swap(res, ns, name, cur.rev, &mut new, finished)
                .await?
            {
                Some(rev) => {
                    set_resource_version(&mut new, rev);
                    return Ok((new, warnings));
                }
                None if precondition.is_some() => return Err(Status::conflict(res, name)),
                None => continue,
            }
        }
        Err(Status::conflict(res, name))
    }
}

/// An object whose graceful deletion waits for its holder: only kinds with a deletion grace
/// (pods) are ever marked with a grace period above 0.
fn graceful_pending(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0)
}

/// Builds the object an update stores from the current one and the client's version.
fn merge_update(
    kind: &dyn Kind,
    cur: &Value,
    body: Value,
    part: Part,
    opts: WriteOptions,
) -> ApiResult<(Value, Warnings)> {
    let res = kind.resource();
    let mut new = body;
    kind.prepare_for_update(&mut new, cur, part);
    if let Some(o) = new.as_object_mut() {
        o.insert("kind".into(), json!(res.kind));
        o.insert("apiVersion".into(), json!(res.api_version()));
    }
    // System-owned metadata comes from the stored object.
    let keep = [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ];
    let cur_meta = cur
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if cur_meta.contains_key("deletionTimestamp") {
        let old_fins = finalizers(cur);
        if finalizers(&new).iter().any(|f| !old_fins.contains(f)) {
            return Err(Status::forbidden(
                res,
                meta_str(cur, "name"),
                "no new finalizers can be added if the object is being deleted",
            ));
        }
    }
    let m = meta_mut(&mut new)?;
    for k in keep {
        match cur_meta.get(k) {
            Some(v) => m.insert(k.into(), v.clone()),
            None => m.remove(k),
        };
    }
    m.insert(
        "resourceVersion".into(),
        cur_meta
            .get("resourceVersion")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let warnings = kind.decode_update(&mut new, cur, opts.field_validation)?;
    // The typed round trip may drop an empty resourceVersion; restore it for comparison.
    set_resource_version(
        &mut new,
        meta_str(cur, "resourceVersion").parse().unwrap_or(0),
    );
    if res.generation && new.get("spec") != cur.get("spec") {
        let g = cur
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new)?.insert("generation".into(), json!(g + 1));
    }
    Ok((new, warnings))
}
