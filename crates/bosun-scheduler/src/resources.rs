//! Resource amounts: `framework.Resource` of pkg/scheduler/framework/types.go and the pod request
//! arithmetic of k8s.io/component-helpers/resource `PodRequests`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::Error;
use crate::quantity::{self, NANO};

/// `schedutil.DefaultMilliCPURequest`: what a container without a CPU request counts as when
/// scoring (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// `schedutil.DefaultMemoryRequest`: what a container without a memory request counts as when
/// scoring (200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// The most distinct extended resources one pod may request: the filter reports insufficient
/// resources in a fixed-size bit set so that checking a node allocates nothing.
pub const MAX_POD_SCALAR_RESOURCES: usize = 60;

/// Amounts of each resource the scheduler accounts for (`framework.Resource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// The `pods` resource (only meaningful for a node's allocatable).
    pub allowed_pods: i64,
    /// Extended, hugepages and attachable-volume resources, sorted by name.
    pub scalars: Vec<(Box<str>, i64)>,
}

impl Resources {
    /// `Resource.Add` of a whole resource list, from a map of nano-unit amounts.
    pub(crate) fn from_nanos(list: &BTreeMap<String, i128>) -> Self {
        let mut r = Resources::default();
        for (name, &nanos) in list {
            match name.as_str() {
                "cpu" => r.milli_cpu = quantity::nanos_to_milli(nanos),
                "memory" => r.memory = quantity::nanos_to_value(nanos),
                "ephemeral-storage" => r.ephemeral_storage = quantity::nanos_to_value(nanos),
                "pods" => r.allowed_pods = quantity::nanos_to_value(nanos),
                other if is_scalar_resource(other) => r
                    .scalars
                    .push((other.into(), quantity::nanos_to_value(nanos))),
                _ => {}
            }
        }
        // BTreeMap iteration already yields names in order.
        r
    }

    /// Parses a `ResourceList` (a node's allocatable).
    pub(crate) fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Result<Self, Error> {
        let mut nanos = BTreeMap::new();
        if let Some(list) = list {
            add_list(&mut nanos, list)?;
        }
        Ok(Self::from_nanos(&nanos))
    }

    /// The amount of extended resource `name` (0 when absent).
    pub fn scalar(&self, name: &str) -> i64 {
        match self.scalars.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) => self.scalars[i].1,
            Err(_) => 0,
        }
    }

    /// Adds (`sign` = 1) or subtracts (`sign` = -1) another amount, as `NodeInfo.update` does when
    /// a pod joins or leaves a node.
    pub(crate) fn add_signed(&mut self, other: &Resources, sign: i64) {
        self.milli_cpu += sign * other.milli_cpu;
        self.memory += sign * other.memory;
        self.ephemeral_storage += sign * other.ephemeral_storage;
        for (name, amount) in &other.scalars {
            match self.scalars.binary_search_by(|(n, _)| n.cmp(name)) {
                Ok(i) => self.scalars[i].1 += sign * amount,
                Err(i) => self.scalars.insert(i, (name.clone(), sign * amount)),
            }
        }
    }

    /// True when nothing at all is requested (the pod is best-effort for the Fit filter).
    pub(crate) fn is_zero_request(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalars.is_empty()
    }
}

/// `schedutil.IsScalarResourceName`: extended resources (a domain-prefixed name outside
/// `kubernetes.io/`, or a prefixed native one), hugepages and attachable volumes. Names are
/// validated by the apiserver, so only their shape is checked here.
pub(crate) fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("requests."))
}

fn add_list(
    acc: &mut BTreeMap<String, i128>,
    list: &BTreeMap<String, Quantity>,
) -> Result<(), Error> {
    for (name, q) in list {
        let n = quantity::parse_nanos(&q.0)?;
        *acc.entry(name.clone()).or_insert(0) += n;
    }
    Ok(())
}

fn max_list(acc: &mut BTreeMap<String, i128>, list: &BTreeMap<String, i128>) {
    for (name, &n) in list {
        let e = acc.entry(name.clone()).or_insert(n);
        *e = (*e).max(n);
    }
}

/// One container's requests; with `non_missing`, a missing `cpu` or `memory` request counts as
/// the scoring default (`NonMissingContainerRequests`).
fn container_requests(c: &Container, non_missing: bool) -> Result<BTreeMap<String, i128>, Error> {
    let mut reqs = BTreeMap::new();
    if let Some(list) = c.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        add_list(&mut reqs, list)?;
    }
    if non_missing {
        reqs.entry("cpu".to_owned())
            .or_insert(i128::from(DEFAULT_MILLI_CPU_REQUEST) * (NANO / 1000));
        reqs.entry("memory".to_owned())
            .or_insert(i128::from(DEFAULT_MEMORY_REQUEST) * NANO);
    }
    Ok(reqs)
}

/// `resourcehelper.PodRequests`: the sum of the app containers, raised to what any init
/// container needs while it runs (itself plus the restartable "sidecar" init containers started
/// before it; sidecars also add to the steady-state sum), plus the pod overhead. Amounts in
/// nano-units by resource name.
pub(crate) fn pod_requests(
    spec: &PodSpec,
    non_missing: bool,
) -> Result<BTreeMap<String, i128>, Error> {
    let mut reqs = BTreeMap::new();
    for c in &spec.containers {
        for (name, n) in container_requests(c, non_missing)? {
            *reqs.entry(name).or_insert(0) += n;
        }
    }
    let mut restartable: BTreeMap<String, i128> = BTreeMap::new();
    let mut init_max: BTreeMap<String, i128> = BTreeMap::new();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_missing)?;
        let while_running = if c.restart_policy.as_deref() == Some("Always") {
            for (name, &n) in &own {
                *reqs.entry(name.clone()).or_insert(0) += n;
                *restartable.entry(name.clone()).or_insert(0) += n;
            }
            restartable.clone()
        } else {
            let mut sum = own;
            for (name, &n) in &restartable {
                *sum.entry(name.clone()).or_insert(0) += n;
            }
            sum
        };
        max_list(&mut init_max, &while_running);
    }
    max_list(&mut reqs, &init_max);
    if let Some(overhead) = &spec.overhead {
        add_list(&mut reqs, overhead)?;
    }
    Ok(reqs)
}

/// A pod's requests as the scheduler accounts them: the real requests (Fit filter,
/// BalancedAllocation, a node's `Requested`) and the CPU and memory with scoring defaults for
/// containers that request none (LeastAllocated, a node's `NonZeroRequested`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// `PodRequests` without defaults.
    pub requests: Resources,
    /// Millicores with the 100m default for containers without a CPU request.
    pub non_zero_milli_cpu: i64,
    /// Bytes with the 200Mi default for containers without a memory request.
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// `calculateResource` of pkg/scheduler/framework/types.go.
    pub fn of(spec: &PodSpec) -> Result<Self, Error> {
        let requests = Resources::from_nanos(&pod_requests(spec, false)?);
        let non_zero = pod_requests(spec, true)?;
        let get = |name: &str| non_zero.get(name).copied().unwrap_or(0);
        Ok(PodRequests {
            requests,
            non_zero_milli_cpu: quantity::nanos_to_milli(get("cpu")),
            non_zero_memory: quantity::nanos_to_value(get("memory")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(reqs: &[(&str, &str)], sidecar: bool) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(
                    reqs.iter()
                        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                        .collect(),
                ),
                ..Default::default()
            }),
            restart_policy: sidecar.then(|| "Always".to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn init_containers_raise_the_sum_of_app_containers() {
        // The example in computePodResourceRequest's comment: result CPU 3, memory 3G.
        let spec = PodSpec {
            init_containers: Some(vec![
                container(&[("cpu", "2"), ("memory", "1G")], false),
                container(&[("cpu", "2"), ("memory", "3G")], false),
            ]),
            containers: vec![
                container(&[("cpu", "2"), ("memory", "1G")], false),
                container(&[("cpu", "1"), ("memory", "1G")], false),
            ],
            ..Default::default()
        };
        let r = PodRequests::of(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.requests.milli_cpu, 3000);
        assert_eq!(r.requests.memory, 3_000_000_000);
    }

    #[test]
    fn sidecars_add_to_the_sum_and_to_later_init_containers() {
        // Cases from component-helpers resource TestPodResourceRequests (restartable init).
        let spec = PodSpec {
            init_containers: Some(vec![
                container(&[("cpu", "1")], true),
                container(&[("cpu", "2")], false),
                container(&[("cpu", "3")], true),
            ]),
            containers: vec![container(&[("cpu", "1")], false)],
            ..Default::default()
        };
        // Steady state: 1 + 1 + 3 = 5; the second init container needs 2 + 1 = 3.
        let r = PodRequests::of(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.requests.milli_cpu, 5000);

        let spec = PodSpec {
            init_containers: Some(vec![
                container(&[("cpu", "1")], true),
                container(&[("cpu", "5")], false),
            ]),
            containers: vec![container(&[("cpu", "1")], false)],
            ..Default::default()
        };
        let r = PodRequests::of(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.requests.milli_cpu, 6000,
            "5 + the sidecar started before it"
        );
    }

    #[test]
    fn missing_requests_count_as_defaults_only_for_scoring() {
        let spec = PodSpec {
            containers: vec![container(&[], false), container(&[("cpu", "0")], false)],
            overhead: Some([("cpu".to_owned(), Quantity("10m".into()))].into()),
            ..Default::default()
        };
        let r = PodRequests::of(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.requests.milli_cpu, 10, "overhead only");
        assert_eq!(
            r.non_zero_milli_cpu, 110,
            "an explicit 0 stays 0, a missing one is 100m"
        );
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn sub_milli_requests_are_summed_before_rounding() {
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "0.0004")], false); 2],
            ..Default::default()
        };
        let r = PodRequests::of(&spec).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.requests.milli_cpu, 1, "0.8m rounds up once, not 1m + 1m");
    }

    #[test]
    fn scalar_resources_are_the_extended_ones() {
        assert!(is_scalar_resource("nvidia.com/gpu"));
        assert!(is_scalar_resource("hugepages-2Mi"));
        assert!(is_scalar_resource("attachable-volumes-aws-ebs"));
        assert!(!is_scalar_resource("cpu"));
        assert!(!is_scalar_resource("storage"));
        assert!(!is_scalar_resource("requests.example.com/foo"));
    }
}
