//! The apiserver's half of the namespace lifecycle (Kubernetes' `NamespaceLifecycle`
//! admission): nothing is created in a namespace that does not exist or is terminating.
//! Emptying a terminating namespace is the controller-manager's namespace controller's job;
//! the namespace is removed when its `spec.finalizers` and `metadata.finalizers` are empty
//! (see the kind's strategy, `delete.rs` and `update.rs`).
//!
//! Kubernetes checks against its namespace informer, which may lag. Here the check yields the
//! namespace's revision, and the create is one transaction that also requires the namespace
//! key to be at that revision ([`super::store::Guard`]), so a create never lands in a
//! namespace that has begun terminating or is gone. The revision comes from the namespaces'
//! watch cache when it holds the namespace as active (no store read), else from a read.

use bosun_api::meta::meta_str;
use bosun_api::resources::{NAMESPACES, Resource};

use super::Registry;
use super::store::Store;
use crate::error::{ApiResult, Status};

impl<S: Store> Registry<S> {
    /// The revision of namespace `ns` as the namespaces' watch cache holds it, when it holds
    /// it as active; `None` when a read must decide.
    pub(super) fn namespace_guess(&self, ns: &str) -> Option<i64> {
        let cache = self.caches.get(NAMESPACES.plural)?;
        let (rev, obj) = cache.object(&self.key(&NAMESPACES, "", ns))?;
        (!obj.deleting()).then_some(rev)
    }

    /// Reads namespace `ns` and refuses a write into it when it does not exist (404) or is
    /// terminating (403); else its revision. What was read is offered to the watch cache.
    pub(super) async fn namespace_check(
        &self,
        res: &Resource,
        ns: &str,
        name: &str,
    ) -> ApiResult<i64> {
        let nsres = &NAMESPACES;
        let key = self.key(nsres, "", ns);
        let read = self.read(nsres, "", ns).await?;
        if let Some(cache) = self.caches.get(nsres.plural) {
            cache.remember_read(key.as_bytes(), read.as_ref().map(|n| (n.rev, &n.obj)));
        }
        match read {
            None => Err(Status::not_found(nsres, ns)),
            Some(n) if !meta_str(&n.obj, "deletionTimestamp").is_empty() => Err(Status::forbidden(
                res,
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(n) => Ok(n.rev),
        }
    }
}
