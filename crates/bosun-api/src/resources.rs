//! The resource table: every resource of Bosun's API with its names, group and version,
//! scope, short names, categories, subresources and selectable fields.
//!
//! One static table drives discovery, URL routing, storage keys and the gRPC API. The
//! apiserver pairs each row with the kind's strategy (its `kinds/` directory); clients use
//! the rows to name resources.

/// One resource of the API.
#[derive(Debug, PartialEq, Eq)]
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

/// `namespaces`: the Namespace kind.
pub static NAMESPACES: Resource = Resource {
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    group: "",
    version: "v1",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &["status", "finalize"],
    status_subresource: true,
    generation: false,
    field_labels: &["status.phase"],
    delete_collection: false,
};

/// `nodes`: the Node kind.
pub static NODES: Resource = Resource {
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
};

/// `pods`: the Pod kind.
pub static PODS: Resource = Resource {
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    group: "",
    version: "v1",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &["status", "binding", "log", "exec"],
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
};

/// `events`: the Event kind.
pub static EVENTS: Resource = Resource {
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
};

/// `configmaps`: the ConfigMap kind.
pub static CONFIGMAPS: Resource = Resource {
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    group: "",
    version: "v1",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    status_subresource: false,
    generation: false,
    field_labels: &[],
    delete_collection: true,
};

/// `secrets`: the Secret kind.
pub static SECRETS: Resource = Resource {
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    group: "",
    version: "v1",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    status_subresource: false,
    generation: false,
    field_labels: &["type"],
    delete_collection: true,
};

/// `deployments`: the Deployment kind.
pub static DEPLOYMENTS: Resource = Resource {
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
};

/// `replicasets`: the ReplicaSet kind.
pub static REPLICASETS: Resource = Resource {
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
};

/// `leases`: the Lease kind.
pub static LEASES: Resource = Resource {
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
};

/// Every resource of the API, in discovery order.
pub static RESOURCES: &[&Resource] = &[
    &NAMESPACES,
    &NODES,
    &PODS,
    &EVENTS,
    &CONFIGMAPS,
    &SECRETS,
    &DEPLOYMENTS,
    &REPLICASETS,
    &LEASES,
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
        .copied()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource with this plural name in any group (names are unique among served ones).
pub fn by_plural(plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().copied().find(|r| r.plural == plural)
}

/// The resource of a kind (`Pod`, `Deployment`); kinds are unique among the rows.
pub fn by_kind(kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().copied().find(|r| r.kind == kind)
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
                assert_ne!(a.kind, b.kind);
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
        assert!(by_kind("ReplicaSet").is_some_and(|r| std::ptr::eq(r, &REPLICASETS)));
        assert!(by_kind("Scale").is_none());
        let pods = by_plural("pods");
        assert!(pods.is_some_and(|p| p.field_selectable("spec.nodeName")
            && p.field_selectable("metadata.namespace")
            && !p.field_selectable("spec.foo")));
    }
}
