//! The resources the apiserver serves: names, groups, scopes, subresources and verbs.
//!
//! One static table drives discovery, URL routing, storage keys and the gRPC API, so adding a
//! resource is one entry here plus its kind-specific hooks in [`crate::kinds`].

/// One served resource.
#[derive(Debug)]
pub struct Resource {
    /// Plural name, as in URLs: `pods`.
    pub plural: &'static str,
    /// Singular name: `pod`.
    pub singular: &'static str,
    /// Kind: `Pod`.
    pub kind: &'static str,
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// True when objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names.
    pub short_names: &'static [&'static str],
    /// Categories (`all` makes `kubectl get all` include it).
    pub categories: &'static [&'static str],
    /// Subresources served, besides the object itself.
    pub subresources: &'static [&'static str],
    /// True when `status` is a subresource: updates of the object keep the stored status and
    /// status updates change nothing else.
    pub status_subresource: bool,
    /// True when the object has a spec whose changes bump `metadata.generation`.
    pub generation: bool,
    /// Field selector labels besides `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    /// True when the collection may be deleted in one request (`deletecollection`);
    /// Kubernetes does not serve it for namespaces.
    pub delete_collection: bool,
}

/// Verbs of every served resource.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Every served resource.
pub static RESOURCES: &[Resource] = &[
    Resource {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        version: "v1",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &["status"],
        status_subresource: true,
        generation: false,
        field_labels: &["status.phase"],
        delete_collection: false,
    },
    Resource {
        plural: "nodes",
        singular: "node",
        kind: "Node",
        group: "",
        version: "v1",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &["status"],
        status_subresource: true,
        generation: false,
        field_labels: &["spec.unschedulable"],
        delete_collection: true,
    },
    Resource {
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        subresources: &["status", "binding", "log"],
        status_subresource: true,
        generation: true,
        field_labels: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        delete_collection: true,
    },
    Resource {
        plural: "events",
        singular: "event",
        kind: "Event",
        group: "",
        version: "v1",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        status_subresource: false,
        generation: false,
        field_labels: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        delete_collection: true,
    },
    Resource {
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        group: "apps",
        version: "v1",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &["status", "scale"],
        status_subresource: true,
        generation: true,
        field_labels: &[],
        delete_collection: true,
    },
    Resource {
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        group: "apps",
        version: "v1",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &["status", "scale"],
        status_subresource: true,
        generation: true,
        field_labels: &["status.replicas"],
        delete_collection: true,
    },
    Resource {
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        group: "coordination.k8s.io",
        version: "v1",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        status_subresource: false,
        generation: false,
        field_labels: &[],
        delete_collection: true,
    },
];

impl Resource {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, or `deployments.apps`: how Kubernetes names the resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Pod`, or `Deployment.apps`: how validation messages name the kind.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// True when field selectors may use `field`.
    pub fn field_selectable(&self, field: &str) -> bool {
        field == "metadata.name"
            || (self.namespaced && field == "metadata.namespace")
            || self.field_labels.contains(&field)
    }

    /// The verbs served on the resource, as discovery lists them.
    pub fn verbs(&self) -> Vec<&'static str> {
        VERBS
            .iter()
            .copied()
            .filter(|v| *v != "deletecollection" || self.delete_collection)
            .collect()
    }

    /// True when `sub` is served.
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

/// The resource with this plural name in this group and version.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource with this plural name in any group (names are unique among served ones).
pub fn by_plural(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

/// The served API groups other than core, each with its one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_names_are_unique() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert_ne!(a.plural, b.plural);
            }
        }
    }

    #[test]
    fn names_and_lookups() {
        let d = by_plural("deployments");
        assert!(d.is_some_and(|d| d.qualified() == "deployments.apps"
            && d.api_version() == "apps/v1"
            && d.qualified_kind() == "Deployment.apps"));
        assert!(find("", "v1", "pods").is_some_and(|p| p.api_version() == "v1"));
        assert!(find("apps", "v1", "pods").is_none());
        assert_eq!(
            groups(),
            vec![("apps", "v1"), ("coordination.k8s.io", "v1")]
        );
        let pods = by_plural("pods");
        assert!(pods.is_some_and(|p| p.field_selectable("spec.nodeName")
            && p.field_selectable("metadata.namespace")
            && !p.field_selectable("spec.foo")));
    }
}
