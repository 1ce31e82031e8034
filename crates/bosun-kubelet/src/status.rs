//! The pod status the kubelet writes, as a pure function of the pod and of what the runtime
//! observes: kubelet's `generateAPIPodStatus` (phase, conditions, container statuses) and its
//! status manager's merge with the status the apiserver has (transition times kept while a
//! condition's status holds, `startTime` set once, conditions the kubelet does not own left
//! alone, a terminal phase never left), and the decision to write only when something changed.
//! The hollow runtime and the CRI one share all of it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState as ApiState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as ApiContainerStatus, HostIP, Pod, PodCondition, PodIP,
    PodSpec, PodStatus as ApiPodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::runtime::{ContainerState, ContainerStatus, PodStatus};

/// Condition types the kubelet owns (`kubetypes.PodConditionsByKubelet`).
pub const KUBELET_CONDITIONS: &[&str] = &[
    "PodScheduled",
    "Ready",
    "Initialized",
    "ContainersReady",
    "PodReadyToStartContainers",
];

/// Status fields the kubelet writes; a status patch carries exactly these.
const KUBELET_FIELDS: &[&str] = &[
    "phase",
    "conditions",
    "message",
    "reason",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "initContainerStatuses",
    "containerStatuses",
];

/// `now` to the second: API times carry whole seconds, so a status built with a finer time
/// would never compare equal to the one read back.
pub fn whole_seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Whether the apiserver's status says the pod finished (kubelet never runs it again).
pub fn pod_is_terminal(pod: &Pod) -> bool {
    is_terminal(pod.status.as_ref().and_then(|s| s.phase.as_deref()))
}

fn spec(pod: &Pod) -> PodSpec {
    pod.spec.clone().unwrap_or_default()
}

/// kubelet's `getPhase`: the phase from the containers' states. `terminal` is true once the
/// kubelet has stopped the pod for good (deleted): containers that will not restart then
/// make it Succeeded or Failed whatever its restart policy.
pub fn phase(spec: &PodSpec, observed: &PodStatus, terminal: bool) -> &'static str {
    let find = |list: &[ContainerStatus], name: &str| list.iter().find(|c| c.name == name).cloned();
    let mut pending_init = 0;
    let mut failed_init = 0;
    for c in spec.init_containers.iter().flatten() {
        match find(&observed.init_containers, &c.name).map(|s| s.state) {
            Some(ContainerState::Terminated { exit_code, .. }) => {
                if exit_code != 0 {
                    failed_init += 1;
                }
            }
            _ => pending_init += 1,
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in &spec.containers {
        let found = find(&observed.containers, &c.name);
        match found.as_ref().map(|s| &s.state) {
            None => unknown += 1,
            Some(ContainerState::Running { .. }) => running += 1,
            Some(ContainerState::Terminated { exit_code, .. }) => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            // Waiting to restart after a run: it counts as stopped, as in kubelet's getPhase.
            Some(ContainerState::Waiting { .. })
                if matches!(
                    found.as_ref().and_then(|s| s.last_state.as_ref()),
                    Some(ContainerState::Terminated { .. })
                ) =>
            {
                stopped += 1
            }
            Some(ContainerState::Waiting { .. }) => waiting += 1,
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if failed_init > 0 && (policy == "Never" || terminal) {
        return "Failed";
    }
    if terminal && running == 0 && stopped == 0 {
        // Stopped before any container ran.
        return "Failed";
    }
    if pending_init > 0 || failed_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" && !terminal {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" || terminal {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn time(t: Timestamp) -> Time {
    Time(whole_seconds(t))
}

fn api_state(s: &ContainerState) -> ApiState {
    match s {
        ContainerState::Waiting { reason, message } => ApiState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: (!message.is_empty()).then(|| message.clone()),
            }),
            ..Default::default()
        },
        ContainerState::Running { started_at } => ApiState {
            running: Some(ContainerStateRunning {
                started_at: Some(time(*started_at)),
            }),
            ..Default::default()
        },
        ContainerState::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => ApiState {
            terminated: Some(ContainerStateTerminated {
                exit_code: *exit_code,
                reason: Some(reason.clone()),
                started_at: Some(time(*started_at)),
                finished_at: Some(time(*finished_at)),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The API status of the containers `names` (spec order), from what the runtime observed;
/// one the runtime does not know yet is waiting in `ContainerCreating` (`PodInitializing`
/// for a regular container while init containers run).
fn container_statuses(
    containers: &[(String, String)],
    observed: &[ContainerStatus],
    waiting_reason: &str,
) -> Vec<ApiContainerStatus> {
    containers
        .iter()
        .map(
            |(name, image)| match observed.iter().find(|c| &c.name == name) {
                Some(c) => ApiContainerStatus {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    image_id: c.image_id.clone(),
                    container_id: (!c.id.is_empty()).then(|| c.id.clone()),
                    state: Some(api_state(&c.state)),
                    last_state: Some(c.last_state.as_ref().map(api_state).unwrap_or_default()),
                    ready: c.ready,
                    started: Some(c.started),
                    restart_count: c.restart_count,
                    ..Default::default()
                },
                None => ApiContainerStatus {
                    name: name.clone(),
                    image: image.clone(),
                    state: Some(api_state(&ContainerState::Waiting {
                        reason: waiting_reason.into(),
                        message: String::new(),
                    })),
                    last_state: Some(ApiState::default()),
                    started: Some(false),
                    ..Default::default()
                },
            },
        )
        .collect()
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: (!ok && !reason.is_empty()).then(|| reason.into()),
        message: (!ok && !message.is_empty()).then_some(message),
        ..Default::default()
    }
}

/// `containers with unknown status: [a], containers with unready status: [b]`.
fn unready_message(unknown: &[&str], unready: &[&str]) -> String {
    let mut parts = Vec::new();
    if !unknown.is_empty() {
        parts.push(format!(
            "containers with unknown status: [{}]",
            unknown.join(" ")
        ));
    }
    if !unready.is_empty() {
        parts.push(format!(
            "containers with unready status: [{}]",
            unready.join(" ")
        ));
    }
    parts.join(", ")
}

/// kubelet's `generateAPIPodStatus`: the status `pod` should have given what the runtime
/// observes, before the merge with the apiserver's ([`merge`]). Condition times are left for
/// the merge to fill.
pub fn generate(pod: &Pod, observed: &PodStatus, host_ip: &str, terminal: bool) -> ApiPodStatus {
    let spec = spec(pod);
    let phase = phase(&spec, observed, terminal);
    let inits: Vec<(String, String)> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    let mut mains: Vec<(String, String)> = spec
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect();
    // Clients expect a fixed order: regular containers by name, init containers as specified.
    mains.sort();
    let initialized_ok = observed.init_containers.len() >= inits.len()
        && inits.iter().all(|(n, _)| {
            observed.init_containers.iter().any(|c| {
                &c.name == n && matches!(c.state, ContainerState::Terminated { exit_code: 0, .. })
            })
        });
    let waiting_reason = if initialized_ok {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let init_statuses = container_statuses(&inits, &observed.init_containers, "PodInitializing");
    let statuses = container_statuses(&mains, &observed.containers, waiting_reason);
    // Completed init containers count as ready, as the kubelet reports them.
    let init_statuses: Vec<ApiContainerStatus> = init_statuses
        .into_iter()
        .map(|mut s| {
            if s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
            {
                s.ready = true;
            }
            s
        })
        .collect();

    let completed = phase == "Succeeded";
    let mut conditions = Vec::with_capacity(5);
    conditions.push(condition(
        "PodReadyToStartContainers",
        observed.sandbox_ready,
        "",
        String::new(),
    ));
    let incomplete: Vec<&str> = inits
        .iter()
        .filter(|(n, _)| {
            !observed.init_containers.iter().any(|c| {
                &c.name == n && matches!(c.state, ContainerState::Terminated { exit_code: 0, .. })
            })
        })
        .map(|(n, _)| n.as_str())
        .collect();
    conditions.push(if completed {
        PodCondition {
            type_: "Initialized".into(),
            status: "True".into(),
            reason: Some("PodCompleted".into()),
            ..Default::default()
        }
    } else {
        condition(
            "Initialized",
            incomplete.is_empty(),
            "ContainersNotInitialized",
            format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            ),
        )
    });
    let unknown: Vec<&str> = spec
        .containers
        .iter()
        .filter(|c| !observed.containers.iter().any(|o| o.name == c.name))
        .map(|c| c.name.as_str())
        .collect();
    let unready: Vec<&str> = observed
        .containers
        .iter()
        .filter(|c| !c.ready && spec.containers.iter().any(|s| s.name == c.name))
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = unknown.is_empty() && unready.is_empty();
    let (containers_cond, mut ready_cond) = if completed {
        let done = |t: &str| PodCondition {
            type_: t.into(),
            status: "False".into(),
            reason: Some("PodCompleted".into()),
            ..Default::default()
        };
        (done("ContainersReady"), done("Ready"))
    } else {
        let msg = unready_message(&unknown, &unready);
        (
            condition(
                "ContainersReady",
                containers_ready,
                "ContainersNotReady",
                msg.clone(),
            ),
            condition("Ready", containers_ready, "ContainersNotReady", msg),
        )
    };
    // Readiness gates: Ready also needs each gate's condition to be True.
    if !completed && containers_ready {
        let have = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let mut gate_msgs = Vec::new();
        for gate in spec.readiness_gates.iter().flatten() {
            let t = &gate.condition_type;
            match have.and_then(|cs| cs.iter().find(|c| &c.type_ == t)) {
                None => gate_msgs.push(format!(
                    "corresponding condition of pod readiness gate {t:?} does not exist."
                )),
                Some(c) if c.status != "True" => gate_msgs.push(format!(
                    "the status of pod readiness gate {t:?} is not \"True\", but {}",
                    c.status
                )),
                Some(_) => {}
            }
        }
        if !gate_msgs.is_empty() {
            ready_cond = condition(
                "Ready",
                false,
                "ReadinessGatesNotReady",
                gate_msgs.join(", "),
            );
        }
    }
    conditions.push(ready_cond);
    conditions.push(containers_cond);
    conditions.push(condition("PodScheduled", true, "", String::new()));

    let ips = &observed.ips;
    ApiPodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: (!host_ip.is_empty()).then(|| host_ip.into()),
        host_ips: (!host_ip.is_empty()).then(|| vec![HostIP { ip: host_ip.into() }]),
        pod_ip: ips.first().cloned(),
        pod_ips: (!ips.is_empty()).then(|| ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

/// The status of a pod the kubelet refuses at admission (`rejectPod`): Failed, with the
/// reason (`OutOfpods`, `OutOfcpu`, ...) and `Pod was rejected: <message>`.
pub fn rejected(reason: &str, message: &str) -> ApiPodStatus {
    ApiPodStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.into()),
        message: Some(format!("Pod was rejected: {message}")),
        ..Default::default()
    }
}

/// The status manager's merge of the kubelet's `new` status into the apiserver's `old`:
/// fields the kubelet does not own are kept; its conditions keep their `lastTransitionTime`
/// while their status holds (else it is `now`); conditions it does not own stay; `startTime`
/// is set once; a terminal phase is never left.
pub fn merge(old: Option<&ApiPodStatus>, new: ApiPodStatus, now: Timestamp) -> ApiPodStatus {
    let now = whole_seconds(now);
    let mut out = old.cloned().unwrap_or_default();
    if old.is_some_and(|o| is_terminal(o.phase.as_deref())) && !is_terminal(new.phase.as_deref()) {
        // Illegal transition: the kubelet's status manager refuses it too.
        return out;
    }
    let old_conditions = out.conditions.take().unwrap_or_default();
    let mut conditions: Vec<PodCondition> = old_conditions
        .iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    for mut c in new.conditions.unwrap_or_default() {
        if !KUBELET_CONDITIONS.contains(&c.type_.as_str()) {
            continue;
        }
        c.last_transition_time = old_conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
            .and_then(|o| o.last_transition_time.clone())
            .or(Some(Time(now)));
        conditions.push(c);
    }
    out.conditions = (!conditions.is_empty()).then_some(conditions);
    out.phase = new.phase;
    out.reason = new.reason;
    out.message = new.message;
    out.host_ip = new.host_ip;
    out.host_ips = new.host_ips;
    out.pod_ip = new.pod_ip;
    out.pod_ips = new.pod_ips;
    out.init_container_statuses = new.init_container_statuses;
    out.container_statuses = new.container_statuses;
    out.start_time = out.start_time.or(new.start_time).or(Some(Time(now)));
    out
}

/// Whether `merged` (from [`merge`]) differs from what the apiserver has: write only then.
pub fn needs_update(old: Option<&ApiPodStatus>, merged: &ApiPodStatus) -> bool {
    old != Some(merged)
}

/// The status patch (a JSON merge patch) that turns `old` into `merged`: the kubelet's
/// fields, absent ones as `null`, and the pod's uid, so that a patch meant for a pod that was
/// deleted and recreated under the same name fails (the uid is immutable) instead of
/// landing on the new pod.
pub fn status_patch(uid: &str, merged: &ApiPodStatus) -> Value {
    let full = serde_json::to_value(merged).unwrap_or_else(|_| json!({}));
    let mut status = serde_json::Map::new();
    for f in KUBELET_FIELDS {
        status.insert((*f).into(), full.get(*f).cloned().unwrap_or(Value::Null));
    }
    json!({"metadata": {"uid": uid}, "status": status})
}

/// Name → image of a pod's containers, for runtimes that need it.
pub fn images(pod: &Pod) -> BTreeMap<String, String> {
    let spec = spec(pod);
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn two_containers() -> Pod {
        pod(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "web", "image": "busybox"}, {"name": "app", "image": "nginx"}],
                     "initContainers": [{"name": "init", "image": "busybox"}]},
            "status": {"phase": "Pending", "qosClass": "BestEffort",
                       "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2027-01-15T07:59:00Z"}]},
        }))
    }

    fn running(name: &str, image: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            id: format!("fake://{name}"),
            image: image.into(),
            image_id: "sha256:1".into(),
            state: ContainerState::Running { started_at: at(1) },
            restart_count: 0,
            last_state: None,
            ready,
            started: true,
        }
    }

    fn done(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            state: ContainerState::Terminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                started_at: at(0),
                finished_at: at(1),
            },
            ready: false,
            started: false,
            ..running(name, "busybox", false)
        }
    }

    fn observed_running() -> PodStatus {
        PodStatus {
            ips: vec!["10.244.0.5".into()],
            sandbox_ready: true,
            init_containers: vec![done("init", 0)],
            containers: vec![
                running("web", "busybox", true),
                running("app", "nginx", true),
            ],
            resync_after: None,
        }
    }

    fn cond<'a>(s: &'a ApiPodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn a_running_pod_has_every_condition_true_and_its_addresses() {
        let p = two_containers();
        let s = merge(
            p.status.as_ref(),
            generate(&p, &observed_running(), "127.0.0.1", false),
            at(2),
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["phase"], "Running");
        assert_eq!(v["podIP"], "10.244.0.5");
        assert_eq!(v["podIPs"], json!([{"ip": "10.244.0.5"}]));
        assert_eq!(v["hostIP"], "127.0.0.1");
        assert_eq!(v["hostIPs"], json!([{"ip": "127.0.0.1"}]));
        assert_eq!(v["qosClass"], "BestEffort", "not the kubelet's: kept");
        assert_eq!(v["startTime"], "2027-01-15T08:00:02Z");
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        for c in s.conditions.as_ref().unwrap() {
            assert_eq!(c.status, "True", "{}", c.type_);
            assert_eq!((c.reason.as_deref(), c.message.as_deref()), (None, None));
        }
        // PodScheduled held True: its transition time is the scheduler's.
        assert_eq!(
            cond(&s, "PodScheduled").last_transition_time,
            Some(Time("2027-01-15T07:59:00Z".parse().unwrap()))
        );
        assert_eq!(cond(&s, "Ready").last_transition_time, Some(Time(at(2))));
        // Container statuses: by name, running, started, ready, with IDs.
        assert_eq!(v["containerStatuses"][0]["name"], "app");
        assert_eq!(v["containerStatuses"][1]["name"], "web");
        let web = &v["containerStatuses"][1];
        assert_eq!(web["state"]["running"]["startedAt"], "2027-01-15T08:00:01Z");
        assert_eq!(web["lastState"], json!({}));
        assert_eq!(
            (web["ready"].clone(), web["started"].clone()),
            (json!(true), json!(true))
        );
        assert_eq!(web["restartCount"], 0);
        assert_eq!(web["containerID"], "fake://web");
        assert_eq!(web["image"], "busybox");
        assert_eq!(web["imageID"], "sha256:1");
        assert_eq!(
            v["initContainerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
        assert_eq!(v["initContainerStatuses"][0]["ready"], true);
    }

    #[test]
    fn nothing_to_write_when_nothing_changed() {
        let mut p = two_containers();
        let first = merge(
            p.status.as_ref(),
            generate(&p, &observed_running(), "127.0.0.1", false),
            at(2),
        );
        assert!(needs_update(p.status.as_ref(), &first));
        // What the apiserver hands back is what was written (whole seconds).
        let back: ApiPodStatus =
            serde_json::from_value(serde_json::to_value(&first).unwrap()).unwrap();
        p.status = Some(back);
        let again = merge(
            p.status.as_ref(),
            generate(&p, &observed_running(), "127.0.0.1", false),
            at(50),
        );
        assert!(!needs_update(p.status.as_ref(), &again), "{again:?}");
        // A container that stops being ready changes Ready and ContainersReady only.
        let mut o = observed_running();
        o.containers[0].ready = false;
        let unready = merge(
            p.status.as_ref(),
            generate(&p, &o, "127.0.0.1", false),
            at(60),
        );
        assert!(needs_update(p.status.as_ref(), &unready));
        let ready = cond(&unready, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [web]")
        );
        assert_eq!(ready.last_transition_time, Some(Time(at(60))));
        assert_eq!(
            cond(&unready, "Initialized").last_transition_time,
            Some(Time(at(2)))
        );
        assert_eq!(unready.start_time, Some(Time(at(2))), "set once");
    }

    #[test]
    fn pending_while_the_sandbox_and_init_containers_are_not_done() {
        let p = two_containers();
        let s = generate(&p, &PodStatus::default(), "127.0.0.1", false);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        let init = cond(&s, "Initialized");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [init]")
        );
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unknown status: [web app]")
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );
        assert_eq!(v["containerStatuses"][0]["started"], false);
        assert!(v.get("podIP").is_none());
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        let spec = |policy: &str| PodSpec {
            restart_policy: Some(policy.into()),
            containers: vec![
                k8s_openapi::api::core::v1::Container {
                    name: "a".into(),
                    ..Default::default()
                },
                k8s_openapi::api::core::v1::Container {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let obs = |a: ContainerStatus, b: ContainerStatus| PodStatus {
            containers: vec![a, b],
            ..Default::default()
        };
        let ok = obs(done("a", 0), done("b", 0));
        let bad = obs(done("a", 0), done("b", 1));
        let mixed = obs(running("a", "i", true), done("b", 1));
        assert_eq!(
            phase(&spec("Always"), &ok, false),
            "Running",
            "will restart"
        );
        assert_eq!(
            phase(&spec("Always"), &ok, true),
            "Succeeded",
            "stopped for good"
        );
        assert_eq!(phase(&spec("Never"), &ok, false), "Succeeded");
        assert_eq!(phase(&spec("Never"), &bad, false), "Failed");
        assert_eq!(phase(&spec("OnFailure"), &bad, false), "Running");
        assert_eq!(phase(&spec("OnFailure"), &bad, true), "Failed");
        assert_eq!(phase(&spec("Never"), &mixed, false), "Running");
        assert_eq!(
            phase(&spec("Always"), &PodStatus::default(), false),
            "Pending"
        );
        assert_eq!(
            phase(&spec("Always"), &PodStatus::default(), true),
            "Failed"
        );
    }

    #[test]
    fn a_container_waiting_to_restart_counts_as_stopped_and_shows_its_last_run() {
        let p = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        let mut c = done("a", 1);
        c.last_state = Some(c.state.clone());
        c.state = ContainerState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting failed container=a pod=p_ns(u)".into(),
        };
        c.restart_count = 1;
        let o = PodStatus {
            containers: vec![c],
            ..Default::default()
        };
        let s = generate(&p, &o, "127.0.0.1", false);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);
        // Waiting without a previous run (pulling, say) keeps the pod Pending.
        let mut w = done("a", 0);
        w.state = ContainerState::Waiting {
            reason: "ErrImagePull".into(),
            message: String::new(),
        };
        let o = PodStatus {
            containers: vec![w],
            ..Default::default()
        };
        assert_eq!(
            generate(&p, &o, "127.0.0.1", false).phase.as_deref(),
            Some("Pending")
        );
    }

    #[test]
    fn a_completed_pod_is_not_ready_for_reason_pod_completed() {
        let p = pod(json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a"}]}}));
        let o = PodStatus {
            containers: vec![done("a", 0)],
            ..Default::default()
        };
        let s = generate(&p, &o, "127.0.0.1", false);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(cond(&s, "Initialized").status, "True");
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let p = pod(json!({
            "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {"conditions": [{"type": "example.com/lb", "status": "False"}]}}));
        let o = PodStatus {
            containers: vec![running("a", "i", true)],
            ..Default::default()
        };
        let s = merge(
            p.status.as_ref(),
            generate(&p, &o, "127.0.0.1", false),
            at(0),
        );
        let ready = cond(&s, "Ready");
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("the status of pod readiness gate \"example.com/lb\" is not \"True\", but False")
        );
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(
            cond(&s, "example.com/lb").status,
            "False",
            "not the kubelet's: kept"
        );
    }

    #[test]
    fn a_terminal_phase_is_never_left_and_rejections_read_as_kubelets() {
        let p = two_containers();
        let failed = merge(
            p.status.as_ref(),
            rejected(
                "OutOfpods",
                "Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2",
            ),
            at(0),
        );
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        assert_eq!(failed.reason.as_deref(), Some("OutOfpods"));
        assert_eq!(
            failed.message.as_deref(),
            Some(
                "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
            )
        );
        assert_eq!(failed.qos_class.as_deref(), Some("BestEffort"));
        let back = merge(
            Some(&failed),
            generate(&p, &observed_running(), "127.0.0.1", false),
            at(5),
        );
        assert_eq!(back, failed);
    }

    #[test]
    fn the_patch_names_the_uid_and_clears_what_is_gone() {
        let p = two_containers();
        let s = merge(
            p.status.as_ref(),
            generate(&p, &observed_running(), "127.0.0.1", false),
            at(2),
        );
        let patch = status_patch("u1", &s);
        assert_eq!(patch["metadata"]["uid"], "u1");
        assert_eq!(patch["status"]["phase"], "Running");
        assert_eq!(patch["status"]["message"], Value::Null);
        assert!(
            patch["status"].get("qosClass").is_none(),
            "only the kubelet's fields"
        );
        assert_eq!(images(&p)["init"], "busybox");
    }
}
