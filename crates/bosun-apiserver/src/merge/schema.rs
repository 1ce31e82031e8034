//! The merge keys of the Kubernetes types, as strategic merge patch needs them: for each Go
//! type, the fields that are lists with a `patchStrategy` (and their `patchMergeKey`) or that
//! lead to such lists. Everything else merges as plain JSON.
//!
//! The types shared by several kinds (object metadata, the pod template and everything in
//! it, the workload spec and status) are here; each kind's file declares its root (and any
//! type only it has) and hands it to the registry through `Kind::merge_schema`.

use super::strategic::ListStrategy;
use ListStrategy::{MergeByKey, MergePrimitives, Replace};

/// A Go type as strategic merge patch sees it: its fields that merge specially.
#[derive(Debug)]
pub struct Schema {
    fields: &'static [Field],
}

/// One field of a [`Schema`]: its type and how it merges when it is a list.
#[derive(Debug)]
pub struct Field {
    name: &'static str,
    ty: &'static Schema,
    list: ListStrategy,
}

/// A field of type `ty` that is not a merging list (an object, or an atomic list of them).
pub const fn field(name: &'static str, ty: &'static Schema) -> Field {
    Field {
        name,
        ty,
        list: Replace,
    }
}

/// A list merged by `key`, whose elements are of type `ty`.
pub const fn keyed(name: &'static str, key: &'static str, ty: &'static Schema) -> Field {
    Field {
        name,
        ty,
        list: MergeByKey(key),
    }
}

/// A list of scalars merged as a set.
pub const fn primitives(name: &'static str) -> Field {
    Field {
        name,
        ty: &OPAQUE,
        list: MergePrimitives,
    }
}

impl Schema {
    /// A type with these special fields.
    pub const fn new(fields: &'static [Field]) -> Self {
        Schema { fields }
    }

    /// The type of field `name`, and how it merges when it is a list.
    pub fn field(&self, name: &str) -> (&'static Schema, ListStrategy) {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map_or((&OPAQUE, Replace), |f| (f.ty, f.list))
    }
}

/// A type with no merging lists anywhere inside.
pub static OPAQUE: Schema = Schema::new(&[]);

/// `metav1.ObjectMeta`.
pub static OBJECT_META: Schema = Schema::new(&[
    primitives("finalizers"),
    keyed("ownerReferences", "uid", &OPAQUE),
]);

/// A kind whose only merging lists are in its metadata (Event, Lease, Scale, ...).
pub static METADATA_ONLY: Schema = Schema::new(&[field("metadata", &OBJECT_META)]);

/// `v1.PodTemplateSpec`.
pub static POD_TEMPLATE_SPEC: Schema =
    Schema::new(&[field("metadata", &OBJECT_META), field("spec", &POD_SPEC)]);

/// `v1.PodSpec`.
pub static POD_SPEC: Schema = Schema::new(&[
    keyed("containers", "name", &CONTAINER),
    keyed("initContainers", "name", &CONTAINER),
    keyed("ephemeralContainers", "name", &CONTAINER),
    keyed("volumes", "name", &OPAQUE),
    keyed("imagePullSecrets", "name", &OPAQUE),
    keyed("schedulingGates", "name", &OPAQUE),
    keyed("resourceClaims", "name", &OPAQUE),
    keyed("hostAliases", "ip", &OPAQUE),
    keyed("topologySpreadConstraints", "topologyKey", &OPAQUE),
]);

/// `v1.Container` (and the ephemeral container, which merges the same way).
pub static CONTAINER: Schema = Schema::new(&[
    keyed("ports", "containerPort", &OPAQUE),
    keyed("env", "name", &OPAQUE),
    keyed("volumeMounts", "mountPath", &OPAQUE),
    keyed("volumeDevices", "devicePath", &OPAQUE),
]);

/// `v1.PodStatus`.
pub static POD_STATUS: Schema = Schema::new(&[
    keyed("conditions", "type", &OPAQUE),
    keyed("podIPs", "ip", &OPAQUE),
    keyed("hostIPs", "ip", &OPAQUE),
    keyed("resourceClaimStatuses", "name", &OPAQUE),
    field("containerStatuses", &CONTAINER_STATUS),
    field("initContainerStatuses", &CONTAINER_STATUS),
    field("ephemeralContainerStatuses", &CONTAINER_STATUS),
]);

/// `v1.ContainerStatus`.
pub static CONTAINER_STATUS: Schema = Schema::new(&[
    keyed("volumeMounts", "mountPath", &OPAQUE),
    keyed("allocatedResourcesStatus", "name", &OPAQUE),
]);

/// `apps/v1` `DeploymentSpec` and `ReplicaSetSpec`.
pub static WORKLOAD_SPEC: Schema = Schema::new(&[field("template", &POD_TEMPLATE_SPEC)]);

/// `apps/v1` `DeploymentStatus` and `ReplicaSetStatus`.
pub static WORKLOAD_STATUS: Schema = Schema::new(&[keyed("conditions", "type", &OPAQUE)]);

/// `apps/v1` `Deployment` and `ReplicaSet`.
pub static WORKLOAD: Schema = Schema::new(&[
    field("metadata", &OBJECT_META),
    field("spec", &WORKLOAD_SPEC),
    field("status", &WORKLOAD_STATUS),
]);
