//! The CRI runtime (`--runtime cri`): drives containerd through CRI v1 as the kubelet's
//! `kubeGenericRuntimeManager` does. Each sync observes the pod (ListPodSandbox and
//! ListContainers by the pod's uid label, PodSandboxStatus, ContainerStatus), asks the pure
//! planner ([`super::plan`]) what to do, does it (RunPodSandbox, image pull per policy,
//! CreateContainer + StartContainer, StopContainer), removes dead containers and sandboxes
//! beyond the newest, and reports the pod as CRI sees it. A restarted kubelet finds its
//! pods by their labels and adopts running containers as they are.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_api_client::ApiClient;
use jiff::Timestamp;
use k8s_cri::v1::{
    ContainerFilter, ContainerStatusRequest, CreateContainerRequest, ImageSpec, ImageStatusRequest,
    ListContainersRequest, ListPodSandboxRequest, NamespaceMode, PodSandboxConfig,
    PodSandboxFilter, PodSandboxStatusRequest, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, ReopenContainerLogRequest, RunPodSandboxRequest,
    StartContainerRequest, StatusRequest, StopContainerRequest, StopPodSandboxRequest,
    VersionRequest,
};
use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectReference, Pod, Secret};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::CriClient;
use super::atomic;
use super::convert::{
    self, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, NodeContext,
};
use super::host;
use super::logs;
use super::plan::{self, Backoff, CState, ContainerObs, PodObs, ProbeVerdict, SandboxObs};
use super::sources::{self, Sources};
use crate::node::NodeHealth;
use crate::probe::{self, ProbeManager};
use crate::runtime::{ContainerState, ContainerStatus, PodStatus, Runtime, RuntimeError, Stopped};
use bosun_runtime::events::{Recorder, object_ref};

/// The kubelet's `--runtime-request-timeout` default: every CRI call is bounded by it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Waiting reasons kept at most (the kubelet's reason cache is an LRU of 1000).
const REASONS_MAX: usize = 1000;
/// The least grace a container gets after its preStop hook (the kubelet's
/// `minimumGracePeriodInSeconds`).
const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// A CRI call's failure as a runtime error with Kubernetes' reason.
fn rpc(reason: &str) -> impl Fn(tonic::Status) -> RuntimeError + '_ {
    move |s| RuntimeError {
        reason: reason.into(),
        message: format!("rpc error: code = {:?} desc = {}", s.code(), s.message()),
    }
}

fn ts(ns: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn cstate(v: i32) -> CState {
    match v {
        0 => CState::Created,
        1 => CState::Running,
        2 => CState::Exited,
        _ => CState::Unknown,
    }
}

/// What one observation of a pod found.
#[derive(Debug, Default)]
struct Observed {
    obs: PodObs,
    statuses: HashMap<String, k8s_cri::v1::ContainerStatus>,
    /// The newest sandbox's address.
    ip: String,
    /// `namespace/name` from the labels.
    key: Option<(String, String)>,
}

/// The last relist's view of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    namespace: String,
    name: String,
    /// Container and sandbox ids -> state.
    states: BTreeMap<String, i32>,
}

#[derive(Debug, Default)]
struct State {
    crash: Backoff,
    pulls: Backoff,
    /// (uid, container) -> (reason, message) of its last failed start (`reasonCache`).
    reasons: HashMap<(String, String), (String, String)>,
    /// uid -> what the last relist saw.
    seen: HashMap<String, Seen>,
    /// When the relist last checked the running containers' log sizes.
    logs_checked: Option<Instant>,
    /// When the running pods' configMap, secret and projected volumes were last refreshed.
    volumes_refreshed: Option<Instant>,
}

/// How often the relist checks whether container logs need rotating (the kubelet's
/// ContainerLogMonitorInterval).
const LOG_CHECK_EVERY: Duration = Duration::from_secs(10);

/// A failed start of one container: its waiting reason, message and when to retry.
struct StartError {
    reason: String,
    message: String,
    retry: Option<Duration>,
}

/// The CRI runtime of one node.
#[derive(Debug)]
pub struct CriRuntime {
    client: CriClient,
    ctx: NodeContext,
    /// `containerd`.
    runtime_name: String,
    /// `containerd://1.6.20`.
    version: String,
    recorder: Recorder,
    state: Mutex<State>,
    /// Liveness, readiness and startup probes of the running containers.
    probes: Arc<ProbeManager>,
    /// Pods whose probe results changed, by uid (reported by the next relist).
    probe_wakes: Mutex<mpsc::UnboundedReceiver<String>>,
    /// The pod last synced, by uid: what a kill needs of its spec (preStop hooks).
    pods: Mutex<HashMap<String, Arc<Pod>>>,
    /// The apiserver: the ConfigMaps and Secrets pods refer to.
    api: ApiClient,
}

/// The reference events about `container` of `pod` carry.
fn container_ref(pod: &Pod, container: &str, init: bool) -> ObjectReference {
    let mut r = object_ref(pod);
    let list = if init { "initContainers" } else { "containers" };
    r.field_path = Some(format!("spec.{list}{{{container}}}"));
    r
}

/// `defaultImagePullPolicy`: Always for `:latest` or no tag, IfNotPresent otherwise.
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.clone().filter(|p| !p.is_empty()) {
        return p;
    }
    let image = c.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or_default();
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent".into(),
        _ => "Always".into(),
    }
}

impl CriRuntime {
    /// Asks the runtime at `endpoint` its name and version (`containerd`, `1.6.20`): the
    /// kubelet refuses to start when the runtime does not answer.
    pub async fn version_of(
        client: &CriClient,
        endpoint: &str,
    ) -> anyhow::Result<(String, String)> {
        let v = client
            .runtime
            .clone()
            .version(VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|e| anyhow::anyhow!("the container runtime at {endpoint}: {}", e.message()))?
            .into_inner();
        Ok((v.runtime_name, v.runtime_version))
    }

    /// The runtime over `client` (`name`/`version` from [`Self::version_of`]), recording
    /// events with `recorder`.
    pub fn new(
        client: CriClient,
        (name, version): (String, String),
        ctx: NodeContext,
        recorder: Recorder,
        api: ApiClient,
    ) -> Self {
        let (wake, probe_wakes) = mpsc::unbounded_channel();
        let probes = ProbeManager::new(Arc::new(client.clone()), recorder.clone(), wake);
        CriRuntime {
            client,
            ctx,
            version: format!("{name}://{version}"),
            runtime_name: name,
            recorder,
            state: Mutex::new(State::default()),
            probes,
            probe_wakes: Mutex::new(probe_wakes),
            pods: Mutex::new(HashMap::new()),
            api,
        }
    }

    /// The ConfigMaps and Secrets `pod` refers to, read from the apiserver (none read when
    /// it refers to none). A missing one is `None`; any other failure is an error.
    async fn sources(&self, pod: &Pod) -> Result<Sources, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let (cms, secrets) = sources::referenced(pod);
        let mut out = Sources::default();
        for name in cms {
            let got = match self.api.get::<ConfigMap>(ns, &name).await {
                Ok(cm) => Some(cm),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(format!("couldn't get configMap {ns}/{name}: {e}")),
            };
            out.config_maps.insert(name, got);
        }
        for name in secrets {
            let got = match self.api.get::<Secret>(ns, &name).await {
                Ok(s) => Some(s),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(format!("couldn't get secret {ns}/{name}: {e}")),
            };
            out.secrets.insert(name, got);
        }
        Ok(out)
    }

    /// The node context the conversion uses.
    pub fn context(&self) -> &NodeContext {
        &self.ctx
    }

    fn uid_filter(uid: &str) -> HashMap<String, String> {
        HashMap::from([(LABEL_POD_UID.to_string(), uid.to_string())])
    }

    /// Everything CRI has of the pod `uid`.
    async fn observe(&self, uid: &str) -> Result<Observed, RuntimeError> {
        let mut rt = self.client.runtime.clone();
        let sandboxes = rt
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(PodSandboxFilter {
                    label_selector: Self::uid_filter(uid),
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc("RuntimeUnavailable"))?
            .into_inner()
            .items;
        let containers = rt
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: Self::uid_filter(uid),
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc("RuntimeUnavailable"))?
            .into_inner()
            .containers;
        let mut o = Observed::default();
        for s in &sandboxes {
            if o.key.is_none()
                && let (Some(ns), Some(n)) = (
                    s.labels.get(LABEL_POD_NAMESPACE),
                    s.labels.get(LABEL_POD_NAME),
                )
            {
                o.key = Some((ns.clone(), n.clone()));
            }
            o.obs.sandboxes.push(SandboxObs {
                id: s.id.clone(),
                attempt: s.metadata.as_ref().map_or(0, |m| m.attempt),
                ready: s.state == 0,
                created_at: s.created_at,
                ip: String::new(),
                host_network: false,
            });
        }
        for c in &containers {
            let status = match rt
                .container_status(ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                })
                .await
            {
                Ok(r) => r.into_inner().status,
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                Err(e) => return Err(rpc("RuntimeUnavailable")(e)),
            };
            let Some(st) = status else { continue };
            o.obs.containers.push(ContainerObs {
                id: c.id.clone(),
                name: c
                    .labels
                    .get(LABEL_CONTAINER_NAME)
                    .cloned()
                    .unwrap_or_else(|| {
                        c.metadata
                            .as_ref()
                            .map(|m| m.name.clone())
                            .unwrap_or_default()
                    }),
                attempt: c.metadata.as_ref().map_or(0, |m| m.attempt),
                state: cstate(st.state),
                exit_code: st.exit_code,
                created_at: st.created_at,
                finished_at: ts(st.finished_at),
                sandbox_id: c.pod_sandbox_id.clone(),
            });
            o.statuses.insert(c.id.clone(), st);
        }
        o.obs.sort();
        if let Some(newest) = o.obs.sandboxes.first_mut() {
            match rt
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: newest.id.clone(),
                    verbose: false,
                })
                .await
            {
                Ok(r) => {
                    if let Some(s) = r.into_inner().status {
                        newest.ip = s.network.map(|n| n.ip).unwrap_or_default();
                        newest.host_network = s
                            .linux
                            .and_then(|l| l.namespaces)
                            .and_then(|n| n.options)
                            .is_some_and(|o| o.network == NamespaceMode::Node as i32);
                        newest.ready = s.state == 0;
                    }
                }
                Err(e) if e.code() == tonic::Code::NotFound => newest.ready = false,
                Err(e) => return Err(rpc("RuntimeUnavailable")(e)),
            }
            o.ip = newest.ip.clone();
        }
        Ok(o)
    }

    /// The pod's status from an observation: each container's newest run, its previous one
    /// as `lastState`, and a cached waiting reason for one that failed to start.
    fn pod_status(&self, pod: &Pod, o: &Observed, resync: Option<Duration>) -> PodStatus {
        let spec = pod.spec.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let sandbox_ready = o.obs.sandboxes.first().is_some_and(|s| s.ready);
        let st = self.state.lock();
        let build = |c: &Container| -> Option<ContainerStatus> {
            let reason = st.reasons.get(&(uid.clone(), c.name.clone()));
            let mut runs = o.obs.containers.iter().filter(|r| r.name == c.name);
            let image = c.image.clone().unwrap_or_default();
            let Some(newest) = runs.next() else {
                // Never created: a cached reason (ErrImagePull, ...) tells why.
                let (reason, message) = reason?;
                return Some(ContainerStatus {
                    name: c.name.clone(),
                    id: String::new(),
                    image,
                    image_id: String::new(),
                    state: ContainerState::Waiting {
                        reason: reason.clone(),
                        message: message.clone(),
                    },
                    restart_count: 0,
                    last_state: None,
                    ready: false,
                    started: false,
                });
            };
            let state_of = |r: &ContainerObs| {
                let s = o.statuses.get(&r.id);
                let started = s.map_or(Timestamp::UNIX_EPOCH, |s| ts(s.started_at));
                match r.state {
                    CState::Running => ContainerState::Running {
                        started_at: started,
                    },
                    CState::Exited => ContainerState::Terminated {
                        exit_code: r.exit_code,
                        reason: s
                            .map(|s| s.reason.clone())
                            .filter(|r| !r.is_empty())
                            .unwrap_or_else(|| {
                                if r.exit_code == 0 {
                                    "Completed"
                                } else {
                                    "Error"
                                }
                                .into()
                            }),
                        started_at: started,
                        finished_at: r.finished_at,
                    },
                    CState::Created => ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    },
                    CState::Unknown => ContainerState::Waiting {
                        reason: "ContainerStatusUnknown".into(),
                        message: "The container could not be located when the pod was terminated"
                            .into(),
                    },
                }
            };
            let mut state = state_of(newest);
            let mut last_state = runs
                .next()
                .filter(|r| r.state == CState::Exited)
                .map(state_of);
            if let Some((reason, message)) = reason
                && plan::should_restart(&c.name, &spec, &o.obs, false)
            {
                if matches!(state, ContainerState::Terminated { .. }) {
                    last_state = Some(state);
                }
                state = ContainerState::Waiting {
                    reason: reason.clone(),
                    message: message.clone(),
                };
            }
            let running = newest.state == CState::Running;
            Some(ContainerStatus {
                name: c.name.clone(),
                id: format!("{}://{}", self.runtime_name, newest.id),
                image,
                image_id: o
                    .statuses
                    .get(&newest.id)
                    .map(|s| s.image_ref.clone())
                    .unwrap_or_default(),
                state,
                restart_count: i32::try_from(newest.attempt).unwrap_or(i32::MAX),
                last_state,
                // Probes decide; a container without them is ready and started once running.
                ready: running && self.probes.ready(&uid, &newest.id, c),
                started: running && self.probes.started(&uid, &newest.id, c),
            })
        };
        let init_containers = spec
            .init_containers
            .iter()
            .flatten()
            .filter_map(build)
            .collect();
        let containers = spec.containers.iter().filter_map(build).collect();
        let ips = if !sandbox_ready {
            Vec::new()
        } else if host_network {
            vec![self.ctx.host_ip.clone()]
        } else if o.ip.is_empty() {
            Vec::new()
        } else {
            vec![o.ip.clone()]
        };
        PodStatus {
            ips,
            sandbox_ready,
            init_containers,
            containers,
            resync_after: resync,
        }
    }

    /// Writes the files of the pod's configMap, secret or projected volume `volume` from
    /// `sources` (Kubernetes' atomic writer: a running container sees the old files or the
    /// new ones); `create` makes its directory first (a tmpfs for secret and projected
    /// volumes, which may hold secrets). True when the files changed.
    fn write_file_volume(
        &self,
        pod: &Pod,
        volume: &str,
        sources: &Sources,
        create: bool,
    ) -> Result<bool, String> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let Some(v) = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .and_then(|vs| vs.iter().find(|v| v.name == volume))
        else {
            return Ok(false);
        };
        let Some(plugin) = convert::file_volume_plugin(v) else {
            return Ok(false);
        };
        let io = |e: std::io::Error, what: &Path| format!("{}: {e}", what.display());
        let downward = |items: &[_]| convert::downward_api_items(pod, items, &self.ctx);
        let files = sources
            .volume_files(pod, volume, &downward)
            .unwrap_or(Ok(Vec::new()))
            .map_err(|e| format!("MountVolume.SetUp failed for volume {volume:?} : {e}"))?;
        let d = convert::file_volume_path(&self.ctx, uid, plugin, volume);
        if create {
            std::fs::create_dir_all(&d).map_err(|e| io(e, &d))?;
            // Secrets stay off the disk, as the kubelet keeps them: on a tmpfs bounded by
            // the most a Secret may hold per source, and room for the atomic swap.
            if v.config_map.is_none() {
                let sources = v
                    .projected
                    .as_ref()
                    .and_then(|p| p.sources.as_ref())
                    .map_or(1, Vec::len);
                let size = u64::try_from(sources.max(1))
                    .unwrap_or(u64::MAX)
                    .saturating_mul(2 * (1 << 20) + (64 << 10));
                host::mount_tmpfs(&d, Some(size)).map_err(|e| io(e, &d))?;
            }
        }
        atomic::write(&d, &files).map_err(|e| io(e, &d))
    }

    /// Brings the configMap, secret and projected volumes of the pods this runtime runs up
    /// to date with their ConfigMaps and Secrets (the kubelet's periodic sync). A source
    /// that cannot be read leaves the files as they are, as in Kubernetes.
    async fn refresh_file_volumes(&self) {
        let pods: Vec<Arc<Pod>> = self.pods.lock().values().cloned().collect();
        for pod in pods {
            let volumes: Vec<(String, &str)> = pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| Some((v.name.clone(), convert::file_volume_plugin(v)?)))
                .collect();
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            if volumes.is_empty() || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let sources = match self.sources(&pod).await {
                Ok(s) => s,
                Err(e) => {
                    debug!(uid, error = %e, "refresh volumes");
                    continue;
                }
            };
            for (v, plugin) in volumes {
                // Only a volume its sandbox made (a pod not started yet has none).
                if !convert::file_volume_path(&self.ctx, uid, plugin, &v).exists() {
                    continue;
                }
                match self.write_file_volume(&pod, &v, &sources, false) {
                    Ok(true) => debug!(uid, volume = %v, "volume files updated"),
                    Ok(false) => {}
                    Err(e) => debug!(uid, volume = %v, error = %e, "refresh volume"),
                }
            }
        }
    }

    /// Creates what the pod's volumes need on the host: its directory, emptyDir dirs,
    /// downwardAPI files, hostPath dirs or files per type, termination-log files, log dir.
    fn prepare_dirs(&self, pod: &Pod, sources: &Sources) -> Result<(), String> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let io = |e: std::io::Error, what: &Path| format!("{}: {e}", what.display());
        for v in spec.volumes.iter().flatten() {
            if convert::file_volume_plugin(v).is_some() {
                self.write_file_volume(pod, &v.name, sources, true)?;
                continue;
            }
            if let Some(ed) = &v.empty_dir {
                let d = convert::empty_dir_path(&self.ctx, uid, &v.name);
                std::fs::create_dir_all(&d).map_err(|e| io(e, &d))?;
                if ed.medium.as_deref() == Some("Memory") {
                    let size = ed
                        .size_limit
                        .as_ref()
                        .and_then(|q| crate::quantity::parse_units(&q.0))
                        .and_then(|b| u64::try_from(b).ok());
                    host::mount_tmpfs(&d, size).map_err(|e| io(e, &d))?;
                }
            } else if let Some(h) = &v.host_path {
                let p = Path::new(&h.path);
                let existing = std::fs::metadata(p).ok().map(|m| m.is_dir());
                match convert::host_path_check(
                    h.type_.as_deref().unwrap_or_default(),
                    &h.path,
                    existing,
                )? {
                    Some(true) => std::fs::create_dir_all(p).map_err(|e| io(e, p))?,
                    Some(false) => {
                        if let Some(parent) = p.parent() {
                            std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
                        }
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(p)
                            .map_err(|e| io(e, p))?;
                    }
                    None => {}
                }
            } else if v.downward_api.is_some() {
                let d = convert::downward_api_path(&self.ctx, uid, &v.name);
                std::fs::create_dir_all(&d).map_err(|e| io(e, &d))?;
                for (rel, content) in convert::downward_api_files(pod, &v.name, &self.ctx)? {
                    let f = d.join(rel);
                    if let Some(parent) = f.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
                    }
                    std::fs::write(&f, content).map_err(|e| io(e, &f))?;
                }
            }
        }
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let f = convert::termination_log_path(&self.ctx, uid, &c.name);
            if let Some(parent) = f.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(e, parent))?;
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&f)
                .map_err(|e| io(e, &f))?;
            let logs = convert::pod_log_dir(&self.ctx, pod).join(&c.name);
            std::fs::create_dir_all(&logs).map_err(|e| io(e, &logs))?;
        }
        Ok(())
    }

    /// `EnsureImageExists`: the image's reference, pulling it per the container's policy.
    async fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        init: bool,
    ) -> Result<String, StartError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let image = c.image.clone().unwrap_or_default();
        let r = container_ref(pod, &c.name, init);
        let policy = pull_policy(c);
        let spec = ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = self
            .client
            .images
            .clone()
            .image_status(ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
            .map_err(|e| StartError {
                reason: "ErrImageInspect".into(),
                message: format!("Failed to inspect image {image:?}: {}", e.message()),
                retry: None,
            })?
            .into_inner()
            .image
            .map(|i| i.id);
        if policy == "Never" {
            return present.ok_or_else(|| {
                let message =
                    format!("Container image {image:?} is not present with pull policy of Never");
                self.recorder
                    .warning(&r, "ErrImageNeverPull", message.clone());
                StartError {
                    reason: "ErrImageNeverPull".into(),
                    message,
                    retry: None,
                }
            });
        }
        if let Some(id) = present.clone()
            && policy != "Always"
        {
            self.recorder.normal(
                &r,
                "Pulled",
                format!("Container image {image:?} already present on machine"),
            );
            return Ok(id);
        }
        let key = format!("{uid}_{image}");
        let now = Timestamp::now();
        {
            let st = self.state.lock();
            if st.pulls.in_backoff_since_update(&key, now) {
                drop(st);
                let message = format!("Back-off pulling image {image:?}");
                self.recorder.normal(&r, "BackOff", message.clone());
                let st = self.state.lock();
                return Err(StartError {
                    reason: "ImagePullBackOff".into(),
                    message,
                    retry: Some(st.pulls.get(&key)),
                });
            }
        }
        self.recorder
            .normal(&r, "Pulling", format!("Pulling image {image:?}"));
        let started = Instant::now();
        match self
            .client
            .images
            .clone()
            .pull_image(PullImageRequest {
                image: Some(spec),
                ..Default::default()
            })
            .await
        {
            Ok(resp) => {
                self.state.lock().pulls.reset(&key);
                let took = plan::go_duration(started.elapsed());
                self.recorder.normal(
                    &r,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {took} ({took} including waiting)"
                    ),
                );
                Ok(resp.into_inner().image_ref)
            }
            Err(e) => {
                let message = format!("rpc error: code = {:?} desc = {}", e.code(), e.message());
                let delay = {
                    let mut st = self.state.lock();
                    st.pulls.next(&key, now, now);
                    st.pulls.get(&key)
                };
                self.recorder.warning(
                    &r,
                    "Failed",
                    format!("Failed to pull image {image:?}: {message}"),
                );
                self.recorder
                    .warning(&r, "Failed", "Error: ErrImagePull".into());
                Err(StartError {
                    reason: "ErrImagePull".into(),
                    message,
                    retry: Some(delay),
                })
            }
        }
    }

    /// `startContainer` after the back-off check: image, config, create, start.
    #[allow(clippy::too_many_arguments)]
    async fn start_container(
        &self,
        pod: &Pod,
        c: &Container,
        init: bool,
        obs: &PodObs,
        (sandbox_id, sandbox_cfg, pod_ip): (&str, &PodSandboxConfig, &str),
        sources: &Result<Sources, String>,
    ) -> Result<(), StartError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let (name, ns) = (
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let r = container_ref(pod, &c.name, init);
        let key = format!("{uid}/{}", c.name);
        let now = Timestamp::now();
        let last = obs.find(&c.name);
        if let Some(l) = last.filter(|l| l.state == CState::Exited) {
            let mut st = self.state.lock();
            if st.crash.in_backoff_since(&key, l.finished_at, now) {
                let delay = st.crash.get(&key);
                let left = st.crash.remaining(&key, l.finished_at, now);
                drop(st);
                let p = plan::format_pod(name, ns, uid);
                self.recorder.warning(
                    &r,
                    "BackOff",
                    format!("Back-off restarting failed container {} in pod {p}", c.name),
                );
                return Err(StartError {
                    reason: "CrashLoopBackOff".into(),
                    message: plan::crash_loop_message(delay, &c.name, &p),
                    retry: Some(left),
                });
            }
            st.crash.next(&key, l.finished_at, now);
        }
        let image_ref = self.ensure_image(pod, c, init).await?;
        let attempt = last.map_or(0, |l| l.attempt + 1);
        let fail = |reason: &str, message: String| {
            self.recorder
                .warning(&r, "Failed", format!("Error: {message}"));
            StartError {
                reason: reason.into(),
                message,
                retry: None,
            }
        };
        let sources = sources
            .as_ref()
            .map_err(|m| fail("CreateContainerConfigError", m.clone()))?;
        if let Ok((_, skipped)) = sources.env_from(pod, c) {
            for message in skipped {
                self.recorder
                    .warning(&object_ref(pod), "InvalidEnvironmentVariableNames", message);
            }
        }
        let cfg =
            convert::container_config(&self.ctx, pod, c, attempt, pod_ip, &image_ref, sources)
                .map_err(|m| fail("CreateContainerConfigError", m))?;
        if convert::manages_etc_hosts(pod, c, pod_ip) {
            let f = convert::etc_hosts_path(&self.ctx, uid);
            std::fs::write(&f, convert::etc_hosts(&self.ctx, pod, pod_ip)).map_err(|e| {
                fail(
                    "CreateContainerConfigError",
                    format!("{}: {e}", f.display()),
                )
            })?;
        }
        let mut rt = self.client.runtime.clone();
        let id = rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(cfg),
                sandbox_config: Some(sandbox_cfg.clone()),
            })
            .await
            .map_err(|e| fail("CreateContainerError", e.message().to_string()))?
            .into_inner()
            .container_id;
        self.recorder
            .normal(&r, "Created", format!("Created container: {}", c.name));
        rt.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map_err(|e| fail("RunContainerError", e.message().to_string()))?;
        self.recorder
            .normal(&r, "Started", format!("Started container {}", c.name));
        debug!(pod = %name, container = %c.name, %id, attempt, "container started");
        if !init {
            self.post_start(pod, c, &id, pod_ip).await;
        }
        Ok(())
    }

    /// Remembers the pod last synced (its spec for a later kill's preStop hooks).
    /// Renames the log of running container `id` aside, has the runtime reopen it, and
    /// deletes the oldest renamed files beyond `--container-log-max-files`.
    async fn rotate_log(&self, id: &str, log: &Path) {
        let rotated = logs::rotated_path(log, Timestamp::now());
        if let Err(e) = std::fs::rename(log, &rotated) {
            warn!(log = %log.display(), error = %e, "rotate container log");
            return;
        }
        let mut rt = self.client.runtime.clone();
        let reopened = rt
            .reopen_container_log(ReopenContainerLogRequest {
                container_id: id.to_string(),
            })
            .await;
        if let Err(e) = reopened {
            // As the kubelet: put the file back, so that the runtime's writes stay readable.
            let _ = std::fs::rename(&rotated, log);
            warn!(container = id, error = %e.message(), "reopen container log");
            return;
        }
        debug!(log = %log.display(), "container log rotated");
        for old in logs::to_remove(logs::rotated_files(log), self.ctx.log_rotation.max_files) {
            if let Err(e) = std::fs::remove_file(&old) {
                warn!(log = %old.display(), error = %e, "remove rotated container log");
            }
        }
    }

    fn remember(&self, uid: &str, pod: &Arc<Pod>) {
        self.pods.lock().insert(uid.to_string(), Arc::clone(pod));
    }

    /// Stops container `id` (named `name` in `pod`'s spec): its preStop hook first, within
    /// the grace period, then StopContainer with what is left of it (at least 2 s, as the
    /// kubelet's `minimumGracePeriodInSeconds`).
    async fn stop_with_hook(
        &self,
        pod: Option<&Pod>,
        name: &str,
        id: &str,
        pod_ip: &str,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let c = pod.and_then(|p| p.spec.as_ref()?.containers.iter().find(|c| c.name == name));
        let hook = c.and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref());
        let host_network = pod
            .and_then(|p| p.spec.as_ref()?.host_network)
            .unwrap_or(false);
        let pod_ip = if host_network {
            self.ctx.host_ip.as_str()
        } else {
            pod_ip
        };
        let mut grace = grace;
        if let (Some(pod), Some(c), Some(hook)) = (pod, c, hook)
            && !grace.is_zero()
        {
            let started = Instant::now();
            let run = probe::run_hook(&self.client, pod, c, id, pod_ip, hook, grace);
            if let Ok(Err(message)) = tokio::time::timeout(grace, run).await {
                self.recorder.warning(
                    &container_ref(pod, name, false),
                    "FailedPreStopHook",
                    message,
                );
            }
            grace = grace
                .saturating_sub(started.elapsed())
                .max(MIN_GRACE_AFTER_HOOK);
        }
        self.stop_container(id, grace).await
    }

    /// Runs the container's postStart hook; on failure records `FailedPostStartHook` and
    /// kills the container (the kubelet's `startContainer`), so that it restarts per policy.
    async fn post_start(&self, pod: &Pod, c: &Container, id: &str, pod_ip: &str) {
        let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
            return;
        };
        let grace = Self::grace_of(pod);
        let timeout = if grace.is_zero() {
            MIN_GRACE_AFTER_HOOK
        } else {
            grace
        };
        let result = tokio::time::timeout(
            timeout,
            probe::run_hook(&self.client, pod, c, id, pod_ip, hook, timeout),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "PostStartHook timed out after {}s",
                timeout.as_secs()
            ))
        });
        if let Err(message) = result {
            let r = container_ref(pod, &c.name, false);
            self.recorder
                .warning(&r, "FailedPostStartHook", message.clone());
            self.recorder
                .normal(&r, "Killing", "FailedPostStartHook".into());
            if let Err(e) = self.stop_container(id, MIN_GRACE_AFTER_HOOK).await {
                debug!(%id, error = %e, "kill after a failed postStart hook");
            }
        }
    }

    /// Stops one container within `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        match self
            .client
            .runtime
            .clone()
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(rpc("KillContainerError")(e)),
        }
    }

    /// Stops every running container (with events) and every sandbox of an observation.
    async fn stop_all(
        &self,
        pod_ref: &ObjectReference,
        o: &Observed,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let pod = pod_ref
            .uid
            .as_deref()
            .and_then(|u| self.pods.lock().get(u).cloned());
        let running: Vec<&ContainerObs> = o
            .obs
            .containers
            .iter()
            .filter(|c| matches!(c.state, CState::Running | CState::Created | CState::Unknown))
            .collect();
        let stops = running.iter().map(|c| {
            let mut r = pod_ref.clone();
            r.field_path = Some(format!("spec.containers{{{}}}", c.name));
            self.recorder
                .normal(&r, "Killing", format!("Stopping container {}", c.name));
            self.stop_with_hook(pod.as_deref(), &c.name, &c.id, &o.ip, grace)
        });
        for res in futures::future::join_all(stops).await {
            res?;
        }
        let mut rt = self.client.runtime.clone();
        for s in &o.obs.sandboxes {
            match rt
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(rpc("KillPodSandboxError")(e)),
            }
        }
        Ok(())
    }

    /// Removes dead containers beyond the newest dead one of each name and dead sandboxes (other than
    /// `keep`) that hold no container any more (container GC).
    async fn gc(&self, o: &Observed, keep: &str) {
        let mut rt = self.client.runtime.clone();
        // Kept: what is not dead, and the newest dead run of each container (the kubelet's
        // `MaxPerPodContainer` 1: the pod's `lastState` and `logs --previous` come from it).
        let mut dead_kept: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut kept_in: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for c in &o.obs.containers {
            if c.state != CState::Exited || dead_kept.insert(c.name.as_str()) {
                kept_in.insert(c.sandbox_id.as_str());
                continue;
            }
            if let Err(e) = rt
                .remove_container(RemoveContainerRequest {
                    container_id: c.id.clone(),
                })
                .await
            {
                debug!(id = %c.id, error = %e.message(), "remove dead container");
            }
        }
        for s in &o.obs.sandboxes {
            if s.ready || s.id == keep || kept_in.contains(s.id.as_str()) {
                continue;
            }
            let _ = rt
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await;
            if let Err(e) = rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
            {
                debug!(id = %s.id, error = %e.message(), "remove dead sandbox");
            }
        }
    }

    /// Removes the pod's directories and cgroups.
    fn cleanup_host(&self, uid: &str, key: Option<&(String, String)>) {
        let dir = convert::pod_dir(&self.ctx, uid);
        for plugin in [
            "kubernetes.io~empty-dir",
            "kubernetes.io~secret",
            "kubernetes.io~projected",
        ] {
            host::unmount_children(&dir.join("volumes").join(plugin));
        }
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            warn!(dir = %dir.display(), error = %e, "remove pod directory");
        }
        if let Some((ns, name)) = key {
            let logs = self.ctx.pod_logs_dir.join(format!("{ns}_{name}_{uid}"));
            let _ = std::fs::remove_dir_all(logs);
        }
        host::remove_pod_cgroups(&self.ctx.cgroup_root, uid);
    }

    fn grace_of(pod: &Pod) -> Duration {
        let secs = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }
}

impl Runtime for CriRuntime {
    fn version(&self) -> String {
        self.version.clone()
    }

    async fn sync_pod(&self, pod: &Pod) -> Result<PodStatus, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ref = object_ref(pod);
        let o = self.observe(&uid).await?;
        let pod_arc = Arc::new(pod.clone());
        self.remember(&uid, &pod_arc);
        let verdict = |id: &str| {
            let (liveness_failed, startup_failed) = self.probes.failed(&uid, id);
            ProbeVerdict {
                liveness_failed,
                startup_failed,
            }
        };
        let actions = plan::compute(&spec, &o.obs, false, &verdict);
        let grace = Self::grace_of(pod);
        if actions.kill_pod && !o.obs.sandboxes.is_empty() {
            if actions.create_sandbox {
                self.recorder.normal(
                    &pod_ref,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".into(),
                );
            }
            self.stop_all(&pod_ref, &o, grace).await?;
        }
        if actions.kill_pod && !actions.create_sandbox {
            let o = self.observe(&uid).await?;
            return Ok(self.pod_status(pod, &o, None));
        }
        for k in &actions.kill {
            let mut r = pod_ref.clone();
            r.field_path = Some(format!("spec.containers{{{}}}", k.name));
            let msg = if k.message.is_empty() {
                format!("Stopping container {}", k.name)
            } else {
                k.message.clone()
            };
            self.recorder.normal(&r, "Killing", msg);
            self.stop_with_hook(Some(pod), &k.name, &k.id, &o.ip, grace)
                .await?;
        }
        let mut sandbox_id = actions.sandbox_id.clone();
        let mut ip = o.ip.clone();
        let sandbox_cfg = convert::sandbox_config(&self.ctx, pod, actions.attempt);
        // The ConfigMaps and Secrets the pod refers to, read once per sync for the sandbox's
        // volumes and the containers' environment.
        let sources =
            if actions.create_sandbox || actions.next_init.is_some() || !actions.start.is_empty() {
                self.sources(pod).await
            } else {
                Ok(Sources::default())
            };
        if actions.create_sandbox {
            let prepared = sources
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|s| self.prepare_dirs(pod, s));
            if let Err(message) = prepared {
                return Err(RuntimeError {
                    reason: "FailedMount".into(),
                    message,
                });
            }
            let mut rt = self.client.runtime.clone();
            let created = rt
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(sandbox_cfg.clone()),
                    runtime_handler: String::new(),
                })
                .await;
            sandbox_id = match created {
                Ok(r) => r.into_inner().pod_sandbox_id,
                Err(e) => {
                    let message = format!("Failed to create pod sandbox: {}", e.message());
                    // The kubelet's sync records the error as the pod's event.
                    // A failed sandbox leaves a NOTREADY record: the next sync removes it.
                    return Err(RuntimeError {
                        reason: "FailedCreatePodSandBox".into(),
                        message,
                    });
                }
            };
            if let Ok(r) = rt
                .pod_sandbox_status(PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    verbose: false,
                })
                .await
            {
                ip = r
                    .into_inner()
                    .status
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .unwrap_or_default();
            }
        }
        if spec.host_network.unwrap_or(false) {
            ip = self.ctx.host_ip.clone();
        }
        let mut to_start: Vec<(&Container, bool)> = Vec::new();
        if let Some(i) = actions.next_init {
            to_start.extend(
                spec.init_containers
                    .iter()
                    .flatten()
                    .nth(i)
                    .map(|c| (c, true)),
            );
        } else {
            to_start.extend(
                actions
                    .start
                    .iter()
                    .filter_map(|i| spec.containers.get(*i))
                    .map(|c| (c, false)),
            );
        }
        // In a new sandbox, the containers of the old one do not count as runs to back off.
        let fresh = PodObs::default();
        let obs_for_start = if actions.create_sandbox && o.obs.sandboxes.is_empty() {
            &fresh
        } else {
            &o.obs
        };
        let mut resync: Option<Duration> = None;
        for (c, init) in to_start {
            let k = (uid.clone(), c.name.clone());
            match self
                .start_container(
                    pod,
                    c,
                    init,
                    obs_for_start,
                    (&sandbox_id, &sandbox_cfg, &ip),
                    &sources,
                )
                .await
            {
                Ok(()) => {
                    self.state.lock().reasons.remove(&k);
                }
                Err(e) => {
                    if let Some(d) = e.retry {
                        resync = Some(resync.map_or(d, |r: Duration| r.min(d)));
                    }
                    let mut st = self.state.lock();
                    if st.reasons.len() >= REASONS_MAX {
                        st.reasons.clear();
                    }
                    st.reasons.insert(k, (e.reason, e.message));
                }
            }
        }
        self.gc(&o, &sandbox_id).await;
        let o = self.observe(&uid).await?;
        let running: Vec<probe::Running> = o
            .obs
            .containers
            .iter()
            .filter(|c| c.state == CState::Running)
            .map(|c| probe::Running {
                name: c.name.clone(),
                id: c.id.clone(),
                started_at: o
                    .statuses
                    .get(&c.id)
                    .map_or_else(Timestamp::now, |s| ts(s.started_at)),
            })
            .collect();
        self.probes.sync(&pod_arc, &ip, &running);
        // A back-off that ends needs a sync then (a second late, to be past it).
        let resync = resync.map(|d| d + Duration::from_secs(1));
        Ok(self.pod_status(pod, &o, resync))
    }

    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<Stopped, RuntimeError> {
        let o = self.observe(uid).await?;
        let (ns, name) = o.key.clone().unwrap_or_default();
        let pod_ref = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: Some(uid.into()),
            ..Default::default()
        };
        if !o.obs.sandboxes.is_empty() || !o.obs.containers.is_empty() {
            // preStop hooks run first, within the grace period (`stop_with_hook`).
            self.stop_all(&pod_ref, &o, grace).await?;
        }
        let after = self.observe(uid).await?;
        // The containers' last states, newest run per name.
        let mut last: Vec<ContainerStatus> = Vec::new();
        for c in &after.obs.containers {
            if last.iter().any(|l| l.name == c.name) {
                continue;
            }
            let s = after.statuses.get(&c.id);
            let started = s.map_or(Timestamp::UNIX_EPOCH, |s| ts(s.started_at));
            let state = match c.state {
                CState::Exited => ContainerState::Terminated {
                    exit_code: c.exit_code,
                    reason: s
                        .map(|s| s.reason.clone())
                        .filter(|r| !r.is_empty())
                        .unwrap_or_else(|| {
                            if c.exit_code == 0 {
                                "Completed"
                            } else {
                                "Error"
                            }
                            .into()
                        }),
                    started_at: started,
                    finished_at: c.finished_at,
                },
                _ => ContainerState::Terminated {
                    exit_code: 137,
                    reason: "ContainerStatusUnknown".into(),
                    started_at: started,
                    finished_at: Timestamp::now(),
                },
            };
            last.push(ContainerStatus {
                name: c.name.clone(),
                id: format!("{}://{}", self.runtime_name, c.id),
                image: s
                    .and_then(|s| s.image.as_ref())
                    .map(|i| i.user_specified_image.clone())
                    .unwrap_or_default(),
                image_id: s.map(|s| s.image_ref.clone()).unwrap_or_default(),
                state,
                restart_count: i32::try_from(c.attempt).unwrap_or(i32::MAX),
                last_state: None,
                ready: false,
                started: false,
            });
        }
        let mut rt = self.client.runtime.clone();
        for c in &after.obs.containers {
            match rt
                .remove_container(RemoveContainerRequest {
                    container_id: c.id.clone(),
                })
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(rpc("KillContainerError")(e)),
            }
        }
        for s in &after.obs.sandboxes {
            match rt
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => return Err(rpc("KillPodSandboxError")(e)),
            }
        }
        self.cleanup_host(uid, o.key.as_ref());
        self.probes.remove_pod(uid);
        self.pods.lock().remove(uid);
        {
            let mut st = self.state.lock();
            st.reasons.retain(|(u, _), _| u != uid);
            st.seen.remove(uid);
        }
        Ok(Stopped::Done(PodStatus {
            ips: Vec::new(),
            sandbox_ready: false,
            init_containers: last.clone(),
            containers: last,
            resync_after: None,
        }))
    }

    fn pod_uids(&self) -> Vec<String> {
        self.state.lock().seen.keys().cloned().collect()
    }

    async fn relist(&self) -> Vec<(String, String)> {
        let mut rt = self.client.runtime.clone();
        let sandboxes = match rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
        {
            Ok(r) => r.into_inner().items,
            Err(e) => {
                debug!(error = %e.message(), "relist sandboxes");
                return Vec::new();
            }
        };
        let containers = match rt
            .list_containers(ListContainersRequest { filter: None })
            .await
        {
            Ok(r) => r.into_inner().containers,
            Err(e) => {
                debug!(error = %e.message(), "relist containers");
                return Vec::new();
            }
        };
        let mut now: HashMap<String, Seen> = HashMap::new();
        let labels = |l: &HashMap<String, String>| {
            Some((
                l.get(LABEL_POD_UID)?.clone(),
                l.get(LABEL_POD_NAMESPACE)?.clone(),
                l.get(LABEL_POD_NAME)?.clone(),
            ))
        };
        for (l, id, state) in sandboxes
            .iter()
            .map(|s| (&s.labels, &s.id, s.state))
            .chain(containers.iter().map(|c| (&c.labels, &c.id, c.state + 10)))
        {
            let Some((uid, namespace, name)) = labels(l) else {
                continue;
            };
            now.entry(uid)
                .or_insert_with(|| Seen {
                    namespace,
                    name,
                    states: BTreeMap::new(),
                })
                .states
                .insert(id.clone(), state);
        }
        let mut changed = Vec::new();
        let check_logs = {
            let mut st = self.state.lock();
            for (uid, s) in &now {
                if st.seen.get(uid) != Some(s) {
                    changed.push((uid.clone(), format!("{}/{}", s.namespace, s.name)));
                }
            }
            for (uid, s) in &st.seen {
                if !now.contains_key(uid) {
                    changed.push((uid.clone(), format!("{}/{}", s.namespace, s.name)));
                }
            }
            st.seen = now;
            let t = Timestamp::now();
            st.crash.gc(t);
            st.pulls.gc(t);
            let check_logs = st
                .logs_checked
                .is_none_or(|at| at.elapsed() >= LOG_CHECK_EVERY);
            if check_logs {
                st.logs_checked = Some(Instant::now());
            }
            let refresh = st
                .volumes_refreshed
                .is_none_or(|at| at.elapsed() >= self.ctx.sync_frequency);
            if refresh {
                st.volumes_refreshed = Some(Instant::now());
            }
            (check_logs, refresh)
        };
        let (check_logs, refresh) = check_logs;
        let mut rotate = Vec::new();
        if check_logs {
            for c in containers
                .iter()
                .filter(|c| cstate(c.state) == CState::Running)
            {
                let (Some((uid, namespace, name)), Some(m)) = (labels(&c.labels), &c.metadata)
                else {
                    continue;
                };
                let log = convert::pod_log_dir_of(&self.ctx, &namespace, &name, &uid)
                    .join(convert::container_log_path(&m.name, m.attempt));
                if logs::needs_rotation(&log, self.ctx.log_rotation) {
                    rotate.push((c.id.clone(), log));
                }
            }
        }
        // Pods whose probe results changed since the last relist.
        {
            let mut wakes = self.probe_wakes.lock();
            while let Ok(uid) = wakes.try_recv() {
                if changed.iter().any(|(u, _)| *u == uid) {
                    continue;
                }
                if let Some(p) = self.pods.lock().get(&uid) {
                    changed.push((uid, crate::pods::pod_key(p)));
                }
            }
        }
        for (id, log) in rotate {
            self.rotate_log(&id, &log).await;
        }
        if refresh {
            self.refresh_file_volumes().await;
        }
        changed
    }

    async fn node_health(&self) -> NodeHealth {
        let mut health = host::pressure(&self.ctx.root_dir, &self.ctx.eviction_hard);
        let status = self
            .client
            .runtime
            .clone()
            .status(StatusRequest { verbose: false })
            .await;
        health.not_ready = match status {
            Err(e) => Some(format!("container runtime is down: {}", e.message())),
            Ok(r) => host::runtime_not_ready(
                &r.into_inner()
                    .status
                    .map(|s| s.conditions)
                    .unwrap_or_default(),
            ),
        };
        health
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn default_pull_policies() {
        let c = |image: &str, policy: Option<&str>| -> Container {
            serde_json::from_value(json!({"name": "c", "image": image, "imagePullPolicy": policy}))
                .unwrap()
        };
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:1.36", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox@sha256:abc", None)), "IfNotPresent");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
    }
}
