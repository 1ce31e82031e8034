//! The hollow runtime (`--runtime fake`): pods "run" as soon as they are synced, with an
//! address from the node's pod range (a `hostNetwork` pod gets the node's), every container
//! running, started and ready; a stop takes `--fake-stop-delay` (capped by the grace
//! period) and frees the address. No process runs: one process can host thousands of nodes,
//! as kwok's and kubemark's hollow nodes do.
//!
//! A restarted kubelet finds the pods it ran in the apiserver, not here: a pod whose status
//! shows an address of this node's range keeps it, and its containers keep their start time,
//! so adoption looks like it does over a real runtime that kept its containers.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;

use crate::cidr::{IpAllocator, Ipv4Cidr};
use crate::runtime::{ContainerState, ContainerStatus, PodStatus, Runtime, RuntimeError, Stopped};

/// The version the fake runtime reports (`containerRuntimeVersion`).
pub const VERSION: &str = concat!("fake://", env!("CARGO_PKG_VERSION"));

/// The hollow runtime of one node.
#[derive(Debug)]
pub struct FakeRuntime {
    host_ip: String,
    stop_delay: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    ips: Option<IpAllocator>,
    range: Option<Ipv4Cidr>,
    pods: HashMap<String, FakePod>,
}

#[derive(Debug)]
struct FakePod {
    ip: Option<Ipv4Addr>,
    status: PodStatus,
    stop_deadline: Option<Instant>,
}

/// 64-bit FNV-1a: stable fake IDs from names.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A 64-hex-digit ID (the length of containerd's) derived from `parts`.
fn fake_id(parts: &[&str]) -> String {
    let a = fnv(parts);
    let b = fnv(&[&a.to_string()]);
    let c = fnv(&[&b.to_string()]);
    let d = fnv(&[&c.to_string()]);
    format!("{a:016x}{b:016x}{c:016x}{d:016x}")
}

impl FakeRuntime {
    /// The runtime of a node with pod range `pod_cidr` (`None`: only `hostNetwork` pods get
    /// an address) and address `host_ip`.
    pub fn new(host_ip: &str, pod_cidr: Option<Ipv4Cidr>, stop_delay: Duration) -> Self {
        FakeRuntime {
            host_ip: host_ip.to_string(),
            stop_delay,
            state: Mutex::new(State {
                ips: pod_cidr.and_then(IpAllocator::new),
                range: pod_cidr,
                pods: HashMap::new(),
            }),
        }
    }

    /// Pods running.
    pub fn len(&self) -> usize {
        self.state.lock().pods.len()
    }

    /// Whether no pod runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pod's address: the node's for `hostNetwork`; the one its status already shows
    /// when it is free and in range (adoption); else the next free one.
    fn address(&self, st: &mut State, pod: &Pod) -> Result<Option<Ipv4Addr>, RuntimeError> {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if host_network {
            return Ok(None);
        }
        let range = st.range;
        let Some(ips) = st.ips.as_mut() else {
            return Err(RuntimeError {
                reason: "FailedCreatePodSandBox".into(),
                message: "network is not ready: the node has no pod CIDR".into(),
            });
        };
        let known = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        if let Some(ip) = known
            && ips.reserve(ip)
        {
            return Ok(Some(ip));
        }
        ips.allocate().map(Some).ok_or_else(|| RuntimeError {
            reason: "FailedCreatePodSandBox".into(),
            message: format!(
                "failed to allocate for range 0: no IP addresses available in range set: {}",
                range.map(|r| r.to_string()).unwrap_or_default()
            ),
        })
    }
}

fn started_at(pod: &Pod, container: &str, now: Timestamp) -> Timestamp {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map_or(now, |t| t.0)
}

/// The run of an init container the pod's status already shows completed (adoption).
fn finished_at(pod: &Pod, container: &str) -> Option<(Timestamp, Timestamp)> {
    let t = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .terminated
        .clone()?;
    Some((t.started_at?.0, t.finished_at?.0))
}

impl Runtime for FakeRuntime {
    fn version(&self) -> String {
        VERSION.to_string()
    }

    async fn sync_pod(&self, pod: &Pod) -> Result<PodStatus, RuntimeError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut st = self.state.lock();
        if let Some(p) = st.pods.get(&uid) {
            return Ok(p.status.clone());
        }
        let ip = self.address(&mut st, pod)?;
        let now = Timestamp::now();
        let spec = pod.spec.clone().unwrap_or_default();
        let container =
            |c: &k8s_openapi::api::core::v1::Container, state: ContainerState, ok: bool| {
                let image = c.image.clone().unwrap_or_default();
                ContainerStatus {
                    name: c.name.clone(),
                    id: format!("fake://{}", fake_id(&[&uid, &c.name])),
                    image_id: format!("sha256:{}", fake_id(&[&image])),
                    image,
                    state,
                    restart_count: 0,
                    last_state: None,
                    ready: ok,
                    started: ok,
                }
            };
        let init_containers = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| {
                let (started_at, finished_at) = finished_at(pod, &c.name).unwrap_or((now, now));
                let state = ContainerState::Terminated {
                    exit_code: 0,
                    reason: "Completed".into(),
                    started_at,
                    finished_at,
                };
                container(c, state, false)
            })
            .collect();
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let state = ContainerState::Running {
                    started_at: started_at(pod, &c.name, now),
                };
                container(c, state, true)
            })
            .collect();
        let status = PodStatus {
            ips: vec![ip.map_or_else(|| self.host_ip.clone(), |ip| ip.to_string())],
            sandbox_ready: true,
            init_containers,
            containers,
            resync_after: None,
        };
        st.pods.insert(
            uid,
            FakePod {
                ip,
                status: status.clone(),
                stop_deadline: None,
            },
        );
        Ok(status)
    }

    async fn kill_pod(&self, uid: &str, grace: Duration) -> Result<Stopped, RuntimeError> {
        let mut st = self.state.lock();
        let Some(p) = st.pods.get_mut(uid) else {
            return Ok(Stopped::Done(PodStatus::default()));
        };
        let delay = self.stop_delay.min(grace);
        let now = Instant::now();
        let deadline = *p.stop_deadline.get_or_insert(now + delay);
        if deadline > now {
            return Ok(Stopped::InProgress(deadline - now));
        }
        let Some(p) = st.pods.remove(uid) else {
            return Ok(Stopped::Done(PodStatus::default()));
        };
        if let (Some(ip), Some(ips)) = (p.ip, st.ips.as_mut()) {
            ips.release(ip);
        }
        let finished = Timestamp::now();
        let mut last = p.status;
        last.sandbox_ready = false;
        for c in &mut last.containers {
            if let ContainerState::Running { started_at } = c.state {
                c.state = ContainerState::Terminated {
                    exit_code: 0,
                    reason: "Completed".into(),
                    started_at,
                    finished_at: finished,
                };
            }
            c.ready = false;
            c.started = false;
        }
        Ok(Stopped::Done(last))
    }

    fn pod_uids(&self) -> Vec<String> {
        self.state.lock().pods.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod(uid: &str, extra: serde_json::Value) -> Pod {
        let mut v = json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "app", "image": "busybox"}],
                     "initContainers": [{"name": "init", "image": "busybox"}]},
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn runtime(cidr: &str, delay: Duration) -> FakeRuntime {
        FakeRuntime::new("127.0.0.1", Some(cidr.parse().unwrap()), delay)
    }

    #[tokio::test]
    async fn pods_run_at_once_with_an_address_of_the_range() {
        let rt = runtime("10.244.7.0/24", Duration::ZERO);
        let s = rt.sync_pod(&pod("u1", json!({}))).await.unwrap();
        assert_eq!(s.ips, ["10.244.7.2"]);
        assert!(s.sandbox_ready);
        assert!(matches!(
            s.containers[0].state,
            ContainerState::Running { .. }
        ));
        assert!(s.containers[0].ready && s.containers[0].started);
        assert!(s.containers[0].id.starts_with("fake://"));
        assert_eq!(s.containers[0].id.len(), "fake://".len() + 64);
        assert!(matches!(
            s.init_containers[0].state,
            ContainerState::Terminated { exit_code: 0, .. }
        ));
        // Syncing again observes; it does not start anew.
        assert_eq!(rt.sync_pod(&pod("u1", json!({}))).await.unwrap(), s);
        let host = rt
            .sync_pod(&pod(
                "u2",
                json!({"spec": {"hostNetwork": true, "containers": [{"name": "a"}]}}),
            ))
            .await
            .unwrap();
        assert_eq!(host.ips, ["127.0.0.1"]);
        assert_eq!(rt.pod_uids().len(), 2);
    }

    #[tokio::test]
    async fn a_stop_frees_the_address_and_reports_the_last_states() {
        let rt = runtime("10.244.7.0/30", Duration::ZERO);
        rt.sync_pod(&pod("u1", json!({}))).await.unwrap();
        let full = rt.sync_pod(&pod("u2", json!({}))).await.unwrap_err();
        assert_eq!(full.reason, "FailedCreatePodSandBox");
        assert_eq!(
            full.message,
            "failed to allocate for range 0: no IP addresses available in range set: 10.244.7.0/30"
        );
        let Stopped::Done(last) = rt.kill_pod("u1", Duration::from_secs(30)).await.unwrap() else {
            panic!("a fake stop without delay is immediate");
        };
        assert!(matches!(
            last.containers[0].state,
            ContainerState::Terminated { exit_code: 0, .. }
        ));
        assert!(rt.is_empty());
        assert_eq!(
            rt.sync_pod(&pod("u2", json!({}))).await.unwrap().ips,
            ["10.244.7.2"]
        );
        assert_eq!(
            rt.kill_pod("nope", Duration::ZERO).await.unwrap(),
            Stopped::Done(PodStatus::default())
        );
    }

    #[tokio::test]
    async fn a_stop_delay_is_capped_by_the_grace_period() {
        let rt = runtime("10.244.7.0/24", Duration::from_secs(3600));
        rt.sync_pod(&pod("u1", json!({}))).await.unwrap();
        let Stopped::InProgress(left) = rt.kill_pod("u1", Duration::from_secs(30)).await.unwrap()
        else {
            panic!("stops take the delay");
        };
        assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(29));
        assert!(
            matches!(
                rt.kill_pod("u1", Duration::ZERO).await.unwrap(),
                Stopped::InProgress(_)
            ),
            "the first deadline holds"
        );
        rt.sync_pod(&pod("u2", json!({}))).await.unwrap();
        assert!(
            matches!(
                rt.kill_pod("u2", Duration::ZERO).await.unwrap(),
                Stopped::Done(_)
            ),
            "grace 0 stops at once"
        );
    }

    #[tokio::test]
    async fn an_adopted_pod_keeps_its_address_and_start_time() {
        let rt = runtime("10.244.7.0/24", Duration::ZERO);
        let p = pod(
            "u1",
            json!({"status": {"podIP": "10.244.7.9", "containerStatuses": [{
                "name": "app", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}}]}}),
        );
        let s = rt.sync_pod(&p).await.unwrap();
        assert_eq!(s.ips, ["10.244.7.9"]);
        let ContainerState::Running { started_at } = s.containers[0].state else {
            panic!("running")
        };
        assert_eq!(started_at.to_string(), "2026-01-02T03:04:05Z");
        // An address outside the range is not taken.
        let p = pod("u2", json!({"status": {"podIP": "10.9.9.9"}}));
        assert_eq!(rt.sync_pod(&p).await.unwrap().ips, ["10.244.7.2"]);
    }
}
