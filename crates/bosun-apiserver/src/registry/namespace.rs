//! The apiserver's half of the namespace lifecycle (Kubernetes' `NamespaceLifecycle`
//! admission): nothing is created in a namespace that does not exist or is terminating.
//! Emptying a terminating namespace is the controller-manager's namespace controller's job;
//! the namespace is removed when its `spec.finalizers` and `metadata.finalizers` are empty
//! (see the kind's strategy, `delete.rs` and `update.rs`).

use bosun_api::meta::meta_str;
use bosun_api::resources::{NAMESPACES, Resource};

use super::Registry;
use super::store::Store;
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
}
