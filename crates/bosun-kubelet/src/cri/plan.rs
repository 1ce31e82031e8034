//! What a sync does to a pod, as a pure function of its spec and of what CRI reports:
//! Kubernetes' `computePodActions` (pkg/kubelet/kuberuntime/kuberuntime_manager.go) with
//! `PodSandboxChanged`, `findNextInitContainerToRun` and `ShouldContainerBeRestarted`, and the
//! kubelet's container back-off (`flowcontrol.Backoff`: 10 s doubling to 5 min, forgotten
//! after 10 min without a failure) with its `CrashLoopBackOff` message.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodSpec;

/// A container's state as CRI reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// Unknown (the runtime lost track of it).
    Unknown,
}

/// One sandbox of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxObs {
    /// Its CRI id.
    pub id: String,
    /// `metadata.attempt`.
    pub attempt: u32,
    /// `SANDBOX_READY`.
    pub ready: bool,
    /// Creation time (ns), newest first in [`PodObs::sandboxes`].
    pub created_at: i64,
    /// Its address ("" for none).
    pub ip: String,
    /// It shares the node's network namespace.
    pub host_network: bool,
}

/// One container of the pod (any sandbox, any attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerObs {
    /// Its CRI id.
    pub id: String,
    /// The spec container's name.
    pub name: String,
    /// `metadata.attempt` (the restart count).
    pub attempt: u32,
    /// Its state.
    pub state: CState,
    /// Exit code, when exited.
    pub exit_code: i32,
    /// Creation time (ns), newest first in [`PodObs::containers`].
    pub created_at: i64,
    /// When it exited (exited ones).
    pub finished_at: Timestamp,
    /// The sandbox it belongs to.
    pub sandbox_id: String,
}

/// What CRI reports of one pod, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObs {
    /// Sandboxes, newest first.
    pub sandboxes: Vec<SandboxObs>,
    /// Containers, newest first.
    pub containers: Vec<ContainerObs>,
}

impl PodObs {
    /// Sorts sandboxes and containers newest first, as the kubelet's `GetPodStatus` does.
    pub fn sort(&mut self) {
        self.sandboxes.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.attempt.cmp(&a.attempt))
        });
        self.containers.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.attempt.cmp(&a.attempt))
        });
    }

    /// The newest container named `name` (`FindContainerStatusByName`).
    pub fn find(&self, name: &str) -> Option<&ContainerObs> {
        self.containers.iter().find(|c| c.name == name)
    }
}

/// A container to stop, with the kubelet's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// CRI id.
    pub id: String,
    /// Spec name.
    pub name: String,
    /// Why (`Container app definition changed, will be restarted`), empty for none.
    pub message: String,
}

/// What one sync does (`podActions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodActions {
    /// Stop every container and sandbox of the pod first.
    pub kill_pod: bool,
    /// Then create a sandbox.
    pub create_sandbox: bool,
    /// The sandbox to use (the newest one; empty without one).
    pub sandbox_id: String,
    /// The attempt of the sandbox to create.
    pub attempt: u32,
    /// The init container to start next (index in the spec).
    pub next_init: Option<usize>,
    /// Containers to start (indexes in the spec).
    pub start: Vec<usize>,
    /// Containers to stop.
    pub kill: Vec<Kill>,
}

fn policy(spec: &PodSpec) -> &str {
    spec.restart_policy.as_deref().unwrap_or("Always")
}

/// `shouldRestartOnFailure`.
fn restart_on_failure(spec: &PodSpec) -> bool {
    policy(spec) != "Never"
}

/// `PodSandboxChanged`: whether a new sandbox is needed, its attempt and the current one's id.
pub fn sandbox_changed(spec: &PodSpec, obs: &PodObs) -> (bool, u32, String) {
    let Some(newest) = obs.sandboxes.first() else {
        return (true, 0, String::new());
    };
    let ready = obs.sandboxes.iter().filter(|s| s.ready).count();
    let next = newest.attempt + 1;
    let host_network = spec.host_network.unwrap_or(false);
    if ready > 1 || !newest.ready {
        return (true, next, newest.id.clone());
    }
    if newest.host_network != host_network {
        return (true, next, String::new());
    }
    if !host_network && newest.ip.is_empty() {
        return (true, next, newest.id.clone());
    }
    (false, newest.attempt, newest.id.clone())
}

fn init_failed(c: &ContainerObs) -> bool {
    match c.state {
        CState::Exited => c.exit_code != 0,
        CState::Unknown => true,
        _ => false,
    }
}

/// `findNextInitContainerToRun`: the last status of a failed init container, the next init
/// container to run, and whether initialization is done.
pub fn next_init<'a>(
    spec: &PodSpec,
    obs: &'a PodObs,
) -> (Option<&'a ContainerObs>, Option<usize>, bool) {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    if inits.is_empty() {
        return (None, None, true);
    }
    if spec.containers.iter().any(|c| {
        obs.find(&c.name)
            .is_some_and(|s| s.state == CState::Running)
    }) {
        return (None, None, true);
    }
    for (i, c) in inits.iter().enumerate().rev() {
        if let Some(s) = obs.find(&c.name)
            && init_failed(s)
        {
            return (Some(s), Some(i), false);
        }
    }
    for (i, c) in inits.iter().enumerate().rev() {
        let Some(s) = obs.find(&c.name) else { continue };
        if s.state == CState::Running {
            return (None, None, false);
        }
        if s.state == CState::Exited {
            if i == inits.len() - 1 {
                return (None, None, true);
            }
            return (Some(s), Some(i + 1), false);
        }
    }
    (None, Some(0), false)
}

/// `ShouldContainerBeRestarted`.
pub fn should_restart(name: &str, spec: &PodSpec, obs: &PodObs, deleting: bool) -> bool {
    if deleting {
        return false;
    }
    let Some(s) = obs.find(name) else {
        return true;
    };
    match s.state {
        CState::Running => false,
        CState::Unknown | CState::Created => true,
        CState::Exited => match policy(spec) {
            "Never" => false,
            "OnFailure" => s.exit_code != 0,
            _ => true,
        },
    }
}

/// Probe results the sync consults for a running container (from the probe manager;
/// without probes nothing fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProbeVerdict {
    /// The liveness probe failed.
    pub liveness_failed: bool,
    /// The startup probe failed.
    pub startup_failed: bool,
}

/// `computePodActions`. `probe` tells, for a running container's id, what its probes say
/// (the probe manager's results).
pub fn compute(
    spec: &PodSpec,
    obs: &PodObs,
    deleting: bool,
    probe: &dyn Fn(&str) -> ProbeVerdict,
) -> PodActions {
    let (create, attempt, sandbox_id) = sandbox_changed(spec, obs);
    let mut a = PodActions {
        kill_pod: create,
        create_sandbox: create,
        sandbox_id,
        attempt,
        ..Default::default()
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    if create {
        if !restart_on_failure(spec) && attempt != 0 && !obs.containers.is_empty() {
            // A pod that must not restart is not given a new sandbox.
            a.create_sandbox = false;
            return a;
        }
        let start: Vec<usize> = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !(policy(spec) == "OnFailure"
                    && obs
                        .find(&c.name)
                        .is_some_and(|s| s.state == CState::Exited && s.exit_code == 0))
            })
            .map(|(i, _)| i)
            .collect();
        if start.is_empty() && next_init(spec, obs).2 {
            a.create_sandbox = false;
            return a;
        }
        if !inits.is_empty() {
            a.next_init = Some(0);
            return a;
        }
        a.start = start;
        return a;
    }
    let (last, next, done) = next_init(spec, obs);
    if !done {
        if let Some(next) = next {
            let failed = last.is_some_and(init_failed);
            if failed && !restart_on_failure(spec) {
                a.kill_pod = true;
            } else {
                if let Some(l) = last
                    && l.state == CState::Unknown
                {
                    a.kill.push(Kill {
                        id: l.id.clone(),
                        name: l.name.clone(),
                        message: String::new(),
                    });
                }
                if !deleting {
                    a.next_init = Some(next);
                }
            }
        }
        return a;
    }
    let mut keep = 0;
    for (i, c) in spec.containers.iter().enumerate() {
        let status = obs.find(&c.name);
        let Some(s) = status.filter(|s| s.state == CState::Running) else {
            if should_restart(&c.name, spec, obs, deleting) {
                a.start.push(i);
                if let Some(s) = status.filter(|s| s.state == CState::Unknown) {
                    a.kill.push(Kill {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        message: String::new(),
                    });
                }
            }
            continue;
        };
        let verdict = probe(&s.id);
        let message = if verdict.liveness_failed {
            format!("Container {} failed liveness probe", c.name)
        } else if verdict.startup_failed {
            format!("Container {} failed startup probe", c.name)
        } else {
            keep += 1;
            continue;
        };
        let restart = restart_on_failure(spec) && !deleting;
        let message = if restart {
            a.start.push(i);
            format!("{message}, will be restarted")
        } else {
            message
        };
        a.kill.push(Kill {
            id: s.id.clone(),
            name: c.name.clone(),
            message,
        });
    }
    if keep == 0 && a.start.is_empty() {
        a.kill_pod = true;
    }
    a
}

/// The kubelet's container restart back-off initial delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Its cap (`MaxContainerBackOff`).
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Entries at most (bounded; the oldest are dropped).
const BACKOFF_ENTRIES: usize = 4096;

/// `flowcontrol.Backoff` without jitter, over explicit times: per key, the current delay and
/// when it was last bumped. An entry is forgotten once `2 * max` passed since its last bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, (Duration, Timestamp)>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BACKOFF_INITIAL, BACKOFF_MAX)
    }
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    later
        .duration_since(earlier)
        .try_into()
        .unwrap_or(Duration::ZERO)
}

impl Backoff {
    /// A back-off from `initial` doubling to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, event: Timestamp, last: Timestamp) -> bool {
        since(event, last) > self.max * 2
    }

    /// The current delay of `key` (zero without one).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.0)
    }

    /// `Next`: bumps the delay of `key` (from the initial one after expiry) at `now`;
    /// `event` is the failure's time.
    pub fn next(&mut self, key: &str, event: Timestamp, now: Timestamp) {
        let delay = match self.entries.get(key) {
            Some(&(d, last)) if !self.expired(event, last) => (d * 2).min(self.max),
            _ => self.initial,
        };
        if self.entries.len() >= BACKOFF_ENTRIES && !self.entries.contains_key(key) {
            self.gc(now);
            if self.entries.len() >= BACKOFF_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|e| e.1.1)
                    .map(|e| e.0.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key.to_string(), (delay, now));
    }

    /// `IsInBackOffSince`: whether `now` is within the delay counted from `event`.
    pub fn in_backoff_since(&self, key: &str, event: Timestamp, now: Timestamp) -> bool {
        match self.entries.get(key) {
            Some(&(d, last)) if !self.expired(event, last) => since(now, event) < d,
            _ => false,
        }
    }

    /// `IsInBackOffSinceUpdate`: whether `now` is within the delay counted from the last bump.
    pub fn in_backoff_since_update(&self, key: &str, now: Timestamp) -> bool {
        match self.entries.get(key) {
            Some(&(d, last)) if !self.expired(now, last) => since(now, last) < d,
            _ => false,
        }
    }

    /// How long until `key`'s delay counted from `event` ends (zero if it has).
    pub fn remaining(&self, key: &str, event: Timestamp, now: Timestamp) -> Duration {
        self.get(key).saturating_sub(since(now, event))
    }

    /// Forgets `key`.
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops entries expired at `now`.
    pub fn gc(&mut self, now: Timestamp) {
        let max2 = self.max * 2;
        self.entries.retain(|_, e| since(now, e.1) <= max2);
    }
}

/// `format.Pod`: `name_namespace(uid)`.
pub fn format_pod(name: &str, namespace: &str, uid: &str) -> String {
    format!("{name}_{namespace}({uid})")
}

/// The waiting reason and message of a container in back-off.
pub fn crash_loop_message(delay: Duration, container: &str, pod: &str) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod}",
        go_duration(delay)
    )
}

/// A duration as Go's `time.Duration.String` writes it (`10s`, `1m20s`, `5m0s`, `1.5s`).
pub fn go_duration(d: Duration) -> String {
    let total_ms = d.as_millis();
    if total_ms == 0 {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return format!("{total_ms}ms");
    }
    let h = d.as_secs() / 3600;
    let m = (d.as_secs() % 3600) / 60;
    let s = d.as_secs() % 60;
    let ms = d.subsec_millis();
    let secs = if ms == 0 {
        format!("{s}s")
    } else {
        let frac = format!("{ms:03}");
        format!("{s}.{}s", frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn two() -> PodSpec {
        spec(json!({"containers": [{"name": "a"}, {"name": "b"}]}))
    }

    fn sandbox(id: &str, attempt: u32, ready: bool, at: i64) -> SandboxObs {
        SandboxObs {
            id: id.into(),
            attempt,
            ready,
            created_at: at,
            ip: "10.0.0.2".into(),
            host_network: false,
        }
    }

    fn c(id: &str, name: &str, state: CState, exit: i32, at: i64) -> ContainerObs {
        ContainerObs {
            id: id.into(),
            name: name.into(),
            attempt: 0,
            state,
            exit_code: exit,
            created_at: at,
            finished_at: Timestamp::UNIX_EPOCH,
            sandbox_id: "s".into(),
        }
    }

    fn obs(sandboxes: Vec<SandboxObs>, containers: Vec<ContainerObs>) -> PodObs {
        let mut o = PodObs {
            sandboxes,
            containers,
        };
        o.sort();
        o
    }

    fn no_probe(_: &str) -> ProbeVerdict {
        ProbeVerdict::default()
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_all_its_containers() {
        let a = compute(&two(), &PodObs::default(), false, &no_probe);
        assert!(a.kill_pod && a.create_sandbox);
        assert_eq!((a.attempt, a.start.clone()), (0, vec![0, 1]));
        assert_eq!(a.next_init, None);
    }

    #[test]
    fn a_running_pod_is_left_alone() {
        let o = obs(
            vec![sandbox("s", 0, true, 1)],
            vec![
                c("1", "a", CState::Running, 0, 2),
                c("2", "b", CState::Running, 0, 3),
            ],
        );
        let a = compute(&two(), &o, false, &no_probe);
        assert_eq!(
            a,
            PodActions {
                sandbox_id: "s".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn a_dead_sandbox_is_replaced_with_the_next_attempt() {
        let o = obs(
            vec![sandbox("old", 0, false, 1)],
            vec![c("1", "a", CState::Exited, 0, 2)],
        );
        let a = compute(&two(), &o, false, &no_probe);
        assert!(a.kill_pod && a.create_sandbox);
        assert_eq!((a.attempt, a.sandbox_id.as_str()), (1, "old"));
        // A sandbox without an address, or two ready ones, are replaced too.
        let mut s = sandbox("s", 2, true, 1);
        s.ip.clear();
        let a = compute(&two(), &obs(vec![s], vec![]), false, &no_probe);
        assert!(a.create_sandbox && a.attempt == 3);
        let a = compute(
            &two(),
            &obs(
                vec![sandbox("x", 0, true, 1), sandbox("y", 1, true, 2)],
                vec![],
            ),
            false,
            &no_probe,
        );
        assert!(a.create_sandbox && a.sandbox_id == "y" && a.attempt == 2);
    }

    #[test]
    fn a_network_change_replaces_the_sandbox() {
        let host = spec(json!({"hostNetwork": true, "containers": [{"name": "a"}]}));
        let a = compute(
            &host,
            &obs(vec![sandbox("s", 0, true, 1)], vec![]),
            false,
            &no_probe,
        );
        assert!(a.create_sandbox && a.sandbox_id.is_empty());
        // A host-network sandbox needs no address.
        let mut s = sandbox("s", 0, true, 1);
        s.host_network = true;
        s.ip.clear();
        let a = compute(&host, &obs(vec![s], vec![]), false, &no_probe);
        assert!(!a.create_sandbox && a.start == vec![0]);
    }

    #[test]
    fn never_restarting_pods_get_no_new_sandbox() {
        let never = spec(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
        let o = obs(
            vec![sandbox("s", 0, false, 1)],
            vec![c("1", "a", CState::Exited, 1, 2)],
        );
        let a = compute(&never, &o, false, &no_probe);
        assert!(a.kill_pod && !a.create_sandbox && a.start.is_empty());
    }

    #[test]
    fn on_failure_skips_succeeded_containers_in_a_new_sandbox() {
        let of = spec(
            json!({"restartPolicy": "OnFailure", "containers": [{"name": "a"}, {"name": "b"}]}),
        );
        let o = obs(
            vec![sandbox("s", 0, false, 1)],
            vec![
                c("1", "a", CState::Exited, 0, 2),
                c("2", "b", CState::Exited, 3, 3),
            ],
        );
        let a = compute(&of, &o, false, &no_probe);
        assert_eq!(a.start, vec![1]);
        // All succeeded: no new sandbox.
        let o = obs(
            vec![sandbox("s", 0, false, 1)],
            vec![
                c("1", "a", CState::Exited, 0, 2),
                c("2", "b", CState::Exited, 0, 3),
            ],
        );
        let a = compute(&of, &o, false, &no_probe);
        assert!(!a.create_sandbox && a.kill_pod);
    }

    #[test]
    fn exited_containers_restart_per_policy() {
        let sb = || vec![sandbox("s", 0, true, 1)];
        let run_b = || c("2", "b", CState::Running, 0, 3);
        for (policy, code, restarts) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("Never", 0, false),
            ("Never", 1, false),
        ] {
            let s = spec(
                json!({"restartPolicy": policy, "containers": [{"name": "a"}, {"name": "b"}]}),
            );
            let o = obs(sb(), vec![c("1", "a", CState::Exited, code, 2), run_b()]);
            let a = compute(&s, &o, false, &no_probe);
            assert_eq!(a.start == vec![0], restarts, "{policy} exit {code}");
            assert!(!a.kill_pod, "b still runs");
        }
        // Nothing runs and nothing restarts: the pod is killed.
        let never = spec(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
        let o = obs(sb(), vec![c("1", "a", CState::Exited, 0, 2)]);
        assert!(compute(&never, &o, false, &no_probe).kill_pod);
        // A deleted pod restarts nothing.
        let o = obs(sb(), vec![c("1", "a", CState::Exited, 1, 2), run_b()]);
        assert!(compute(&two(), &o, true, &no_probe).start.is_empty());
    }

    #[test]
    fn the_newest_container_of_a_name_decides() {
        let o = obs(
            vec![sandbox("s", 0, true, 1)],
            vec![
                c("old", "a", CState::Exited, 1, 2),
                c("new", "a", CState::Running, 0, 5),
                c("b", "b", CState::Running, 0, 3),
            ],
        );
        assert!(compute(&two(), &o, false, &no_probe).start.is_empty());
    }

    #[test]
    fn unknown_containers_are_killed_and_started() {
        let o = obs(
            vec![sandbox("s", 0, true, 1)],
            vec![
                c("u", "a", CState::Unknown, 0, 2),
                c("b", "b", CState::Running, 0, 3),
            ],
        );
        let a = compute(&two(), &o, false, &no_probe);
        assert_eq!(a.start, vec![0]);
        assert_eq!(a.kill[0].id, "u");
    }

    #[test]
    fn init_containers_run_in_order_to_completion() {
        let s = spec(json!({"initContainers": [{"name": "i1"}, {"name": "i2"}],
                            "containers": [{"name": "a"}]}));
        let sb = || vec![sandbox("s", 0, true, 1)];
        let a = compute(&s, &PodObs::default(), false, &no_probe);
        assert!(a.create_sandbox && a.next_init == Some(0) && a.start.is_empty());
        let a = compute(&s, &obs(sb(), vec![]), false, &no_probe);
        assert_eq!(a.next_init, Some(0));
        let o = obs(sb(), vec![c("1", "i1", CState::Running, 0, 2)]);
        let a = compute(&s, &o, false, &no_probe);
        assert_eq!((a.next_init, a.start.len(), a.kill_pod), (None, 0, false));
        let o = obs(sb(), vec![c("1", "i1", CState::Exited, 0, 2)]);
        assert_eq!(compute(&s, &o, false, &no_probe).next_init, Some(1));
        let o = obs(
            sb(),
            vec![
                c("1", "i1", CState::Exited, 0, 2),
                c("2", "i2", CState::Exited, 0, 3),
            ],
        );
        let a = compute(&s, &o, false, &no_probe);
        assert_eq!((a.next_init, a.start.clone()), (None, vec![0]));
        // Once a regular container runs, init is done even if its records are gone.
        let o = obs(sb(), vec![c("3", "a", CState::Running, 0, 4)]);
        let a = compute(&s, &o, false, &no_probe);
        assert_eq!(a.next_init, None);
        assert!(a.start.is_empty() && !a.kill_pod);
    }

    #[test]
    fn a_failed_init_container_restarts_or_fails_the_pod() {
        let mk = |p: &str| {
            spec(
                json!({"restartPolicy": p, "initContainers": [{"name": "i1"}, {"name": "i2"}],
                        "containers": [{"name": "a"}]}),
            )
        };
        let o = obs(
            vec![sandbox("s", 0, true, 1)],
            vec![
                c("1", "i1", CState::Exited, 0, 2),
                c("2", "i2", CState::Exited, 1, 3),
            ],
        );
        let a = compute(&mk("Always"), &o, false, &no_probe);
        assert_eq!((a.next_init, a.kill_pod), (Some(1), false));
        let a = compute(&mk("OnFailure"), &o, false, &no_probe);
        assert_eq!(a.next_init, Some(1));
        let a = compute(&mk("Never"), &o, false, &no_probe);
        assert_eq!((a.next_init, a.kill_pod), (None, true));
    }

    #[test]
    fn failed_liveness_kills_and_restarts() {
        let o = obs(
            vec![sandbox("s", 0, true, 1)],
            vec![
                c("1", "a", CState::Running, 0, 2),
                c("2", "b", CState::Running, 0, 3),
            ],
        );
        let probe = |id: &str| ProbeVerdict {
            liveness_failed: id == "1",
            startup_failed: false,
        };
        let a = compute(&two(), &o, false, &probe);
        assert_eq!(a.start, vec![0]);
        assert_eq!(
            a.kill[0].message,
            "Container a failed liveness probe, will be restarted"
        );
        assert!(!a.kill_pod);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_ten_minutes() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let mut b = Backoff::default();
        assert!(!b.in_backoff_since("k", t0, t0));
        b.next("k", t0, t0);
        assert_eq!(b.get("k"), Duration::from_secs(10));
        assert!(b.in_backoff_since("k", t0, at(9)));
        assert!(!b.in_backoff_since("k", t0, at(10)));
        assert_eq!(b.remaining("k", t0, at(4)), Duration::from_secs(6));
        let mut t = 10;
        for want in [20, 40, 80, 160, 300, 300] {
            b.next("k", at(t), at(t));
            assert_eq!(b.get("k"), Duration::from_secs(want));
            t += want as i64;
        }
        // A failure more than 10 minutes after the last bump starts over.
        b.next("k", at(t + 601), at(t + 601));
        assert_eq!(b.get("k"), Duration::from_secs(10));
        b.gc(at(t + 601 + 601));
        assert_eq!(b.get("k"), Duration::ZERO);
        b.next("p", t0, t0);
        assert!(b.in_backoff_since_update("p", at(5)));
        assert!(!b.in_backoff_since_update("p", at(11)));
    }

    #[test]
    fn messages_as_kubernetes_writes_them() {
        assert_eq!(
            crash_loop_message(
                Duration::from_secs(10),
                "app",
                &format_pod("web", "default", "u-1")
            ),
            "back-off 10s restarting failed container=app pod=web_default(u-1)"
        );
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
    }

    proptest::proptest! {
        /// Whatever CRI reports, the plan never starts a container that runs, never both
        /// starts init and regular containers, and starts indexes of the spec only.
        #[test]
        fn plans_are_consistent(
            states in proptest::collection::vec((0u8..5, 0i32..3), 0..4),
            policy in 0u8..3,
            inits in 0usize..3,
            sandbox_ready in proptest::option::of(proptest::bool::ANY),
        ) {
            let policy = ["Always", "OnFailure", "Never"][policy as usize];
            let init: Vec<_> = (0..inits).map(|i| json!({"name": format!("i{i}")})).collect();
            let s = spec(json!({"restartPolicy": policy, "initContainers": init,
                                "containers": [{"name": "a"}, {"name": "b"}]}));
            let names = ["a", "b", "i0", "i1"];
            let containers: Vec<ContainerObs> = states.iter().enumerate().filter_map(|(i, (st, code))| {
                let state = match st { 0 => CState::Created, 1 => CState::Running,
                    2 => CState::Exited, 3 => CState::Unknown, _ => return None };
                Some(c(&i.to_string(), names[i], state, *code, i as i64 + 2))
            }).collect();
            let sandboxes = sandbox_ready.map(|r| vec![sandbox("s", 0, r, 1)]).unwrap_or_default();
            let o = obs(sandboxes, containers);
            let a = compute(&s, &o, false, &no_probe);
            proptest::prop_assert!(a.next_init.is_none() || a.start.is_empty());
            for i in &a.start {
                proptest::prop_assert!(*i < 2);
                if !a.kill_pod {
                    let running = o.find(names[*i]).is_some_and(|c| c.state == CState::Running);
                    let killed = a.kill.iter().any(|k| k.name == names[*i]);
                    proptest::prop_assert!(!running || killed);
                }
            }
            if let Some(i) = a.next_init { proptest::prop_assert!(i < inits); }
            proptest::prop_assert!(!a.create_sandbox || a.kill_pod);
        }
    }
}
