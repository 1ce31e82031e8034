//! The namespace lifecycle: nothing is created in a namespace that does not exist or is
//! terminating, and a terminating namespace is emptied (its objects deleted as a client
//! would, so pods on nodes go gracefully) and then removed. Kubernetes runs the second half
//! in the controller-manager; Bosun's apiserver runs it (`lib.rs`, woken by
//! `namespace_deleted`).

use bosun_api::meta::{finalizers, meta_str};
use bosun_api::resources::{NAMESPACES, Resource};
use serde_json::json;

use super::get_list::ListOptions;
use super::store::Store;
use super::{Registry, WriteOptions, parse_rv};
use crate::error::{ApiResult, Status};

impl<S: Store> Registry<S> {
    /// Refuses a write into a namespace that does not exist (404) or is terminating (403).
    pub(super) async fn namespace_check(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
    ) -> ApiResult<()> {
        if !res.namespaced {
            return Ok(());
        }
        let nsres = &NAMESPACES;
        match self.read(nsres, "", ns).await? {
            None => Err(Status::not_found(nsres, ns)),
            Some(n) if !meta_str(&n.obj, "deletionTimestamp").is_empty() => Err(Status::forbidden(
                res,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Empties every terminating namespace (deleting its objects as a client would, so pods
    /// on nodes go gracefully) and removes it once nothing is left: the namespace
    /// lifecycle that kubectl waits for. Returns how many namespaces are still terminating.
    pub async fn finalize_namespaces(&self) -> ApiResult<usize> {
        let namespaces = crate::kinds::namespaces();
        let all = self.list(namespaces, None, &ListOptions::default()).await?;
        let mut pending = 0;
        for ns in all.items {
            if meta_str(&ns, "deletionTimestamp").is_empty() {
                continue;
            }
            let name = meta_str(&ns, "name").to_string();
            let mut left = 0;
            for kind in crate::kinds::all().filter(|k| k.resource().namespaced) {
                self.delete_collection(
                    kind,
                    Some(&name),
                    &ListOptions::default(),
                    &json!({}),
                    WriteOptions::default(),
                )
                .await?;
                let one = ListOptions {
                    limit: 1,
                    ..ListOptions::default()
                };
                left += self.list(kind, Some(&name), &one).await?.items.len();
            }
            if left > 0 || !finalizers(&ns).is_empty() {
                pending += 1;
                continue;
            }
            let rev = parse_rv(meta_str(&ns, "resourceVersion"))?.unwrap_or(0);
            if self
                .swap(namespaces.resource(), "", &name, rev, &ns, true)
                .await?
                .is_none()
            {
                pending += 1;
            }
        }
        Ok(pending)
    }
}
